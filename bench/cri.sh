#!/usr/bin/env bash
# Pod start through the CRI against the same VM started by the CLI, alternating in one session:
#   pod:  `crictl runp` until the pod is Ready (a pod VM: the embedded busybox, sleeping)
#   box:  `a3s-box run -d busybox sleep ...` until the workload runs (the same VM)
# prints both medians and the ratio pod/box (the CRI's own overhead). Containers inside pods are
# not implemented yet, so "runp + create + start to first output" and crictl exec latency are
# not measured here.
#
#   bench/cri.sh [RUNS]        (default 10; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
box=${A3S_BOX:-target/release/a3s-box}
if [ ! -x "$box" ]; then
  echo "bench/cri.sh: building $box" >&2
  cargo build -q --release -p a3s-box
  scripts/build-guest-init --release -q
fi
command -v crictl >/dev/null || { echo "bench/cri.sh: crictl missing: run scripts/setup" >&2; exit 1; }
export A3S_HOME=${A3S_HOME:-$(mktemp -d)}
export A3S_BOX_QUIET=1
work=$(mktemp -d)
sock="$work/cri.sock"
"$box" cri serve --listen "unix://$sock" 2>"$work/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
crictl() { command crictl --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 300s "$@" 2>/dev/null; }

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }

# Warm-up: imports busybox, extracts the kernel, caches the initrd and the image filesystem.
"$box" run --rm busybox true >/dev/null

pod_times=(); box_times=()
for i in $(seq "$runs"); do
  printf '{"metadata":{"name":"bench","namespace":"default","uid":"u%s","attempt":0}}' "$i" > "$work/pod.json"
  t0=$(now); id=$(crictl runp "$work/pod.json"); t1=$(now)
  crictl inspectp "$id" | grep -q SANDBOX_READY || { echo "pod $id not ready" >&2; exit 1; }
  crictl rmp -f "$id" >/dev/null
  pod_times+=("$(python3 -c "print($t1-$t0)")")

  t0=$(now); "$box" run -d --name bench-box busybox sleep 2147483647 >/dev/null; t1=$(now)
  "$box" rm -f bench-box >/dev/null
  box_times+=("$(python3 -c "print($t1-$t0)")")
done
pod=$(median "${pod_times[@]}"); boxm=$(median "${box_times[@]}")
echo "runs: $runs (alternating, accel $("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])'))"
echo "pod start (crictl runp to Ready):        median ${pod}s"
echo "box start (a3s-box run -d, same VM):     median ${boxm}s"
echo "ratio pod/box: $(python3 -c "print(f'{$pod/$boxm:.2f}')")"
