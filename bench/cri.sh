#!/usr/bin/env bash
# Pods through the CRI against the same work through the CLI, alternating in one session:
#   pod start: `crictl runp` + `create` + `start` of a busybox container printing a line, until
#              that line is in the container's CRI log (first output);
#   box start: `a3s-box run --rm busybox echo` until its line is printed (the same VM and image);
#   exec:      `crictl exec -s CONTAINER true` against `a3s-box exec BOX true`, in a running pod
#              container and a running box.
# Prints medians and the ratios CRI/CLI (the CRI path's own overhead). No thresholds.
#
#   bench/cri.sh [RUNS]        (default 5; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source bench/home-lib.sh
bench_box cri
command -v crictl >/dev/null || { echo "bench/cri.sh: crictl missing: run scripts/setup" >&2; exit 1; }
bench_home
work=$(mktemp -d)
sock="$work/cri.sock"
"$box" cri serve --listen "unix://$sock" 2>"$work/serve.log" &
server=$!
cleanup() {
  "$box" rm -f bench-box >/dev/null 2>&1 || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
  bench_home_cleanup
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
crictl() { command crictl --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 300s "$@" 2>/dev/null; }

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

# Warm-up: imports busybox, extracts the kernel, caches the initrd and the image filesystem.
"$box" run --rm busybox true >/dev/null

pod_cfg() {
  printf '{"metadata":{"name":"bench","namespace":"default","uid":"u%s","attempt":0},"log_directory":"%s"}' \
    "$1" "$work/logs-$1" >"$work/pod.json"
  printf '{"metadata":{"name":"c"},"image":{"image":"busybox"},"command":["sh","-c","echo ready; exec sleep 2147483647"],"log_path":"c.log"}' \
    >"$work/c.json"
}

pod_times=() box_times=()
for i in $(seq "$runs"); do
  pod_cfg "$i"
  t0=$(now)
  id=$(crictl runp "$work/pod.json")
  cid=$(crictl create --no-pull "$id" "$work/c.json" "$work/pod.json")
  crictl start "$cid" >/dev/null
  until grep -q ' F ready$' "$work/logs-$i/c.log" 2>/dev/null; do sleep 0.02; done
  t1=$(now)
  crictl rmp -f "$id" >/dev/null
  pod_times+=("$(elapsed "$t0" "$t1")")

  t0=$(now)
  "$box" run --rm busybox echo ready | grep -q '^ready$'
  t1=$(now)
  box_times+=("$(elapsed "$t0" "$t1")")
done

# Exec latency: one running pod container and one running box, alternating calls.
pod_cfg exec
id=$(crictl runp "$work/pod.json")
cid=$(crictl create --no-pull "$id" "$work/c.json" "$work/pod.json")
crictl start "$cid" >/dev/null
"$box" run -d --name bench-box busybox sleep 2147483647 >/dev/null
crictl exec -s "$cid" true >/dev/null; "$box" exec bench-box true
cri_exec=() box_exec=()
for _ in $(seq $((runs * 4))); do
  t0=$(now); crictl exec -s "$cid" true >/dev/null; t1=$(now)
  cri_exec+=("$(elapsed "$t0" "$t1")")
  t0=$(now); "$box" exec bench-box true; t1=$(now)
  box_exec+=("$(elapsed "$t0" "$t1")")
done
crictl rmp -f "$id" >/dev/null

pod=$(median "${pod_times[@]}"); boxm=$(median "${box_times[@]}")
ce=$(median "${cri_exec[@]}"); be=$(median "${box_exec[@]}")
echo "runs: $runs (alternating, accel $("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])'))"
echo "pod start (runp + create + start to first output): median ${pod}s"
echo "box start (a3s-box run to first output):           median ${boxm}s"
echo "ratio pod/box start: $(ratio "$pod" "$boxm")"
echo "exec (crictl exec -s true):   median ${ce}s over $((runs * 4))"
echo "exec (a3s-box exec true):     median ${be}s over $((runs * 4))"
echo "ratio crictl/a3s-box exec: $(ratio "$ce" "$be")"
