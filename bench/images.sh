#!/usr/bin/env bash
# Real images (issue 15), one run on one host, every box at the DEFAULT memory:
#   - boot: `a3s-box run --rm IMAGE true` medians for busybox, nginx, python3, postgres and the
#     600 MiB-file image, as ratios to the busybox median measured in the same rounds;
#   - first start of each image after `load` (building its filesystem image) vs a cached start;
#   - host RSS (QEMU + monitor) of an idle box per image (its own workload, 5 s after ready);
#   - disk bytes per image: growth of A3S_HOME (du, allocated bytes) from `load` plus the first
#     start, as a ratio to the image's unpacked size (from scripts/test-images).
# No thresholds: it prints numbers. Images come from scripts/test-images (cached).
#
#   bench/images.sh [RUNS]     (default 5; A3S_BOX=path/to/a3s-box, default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if [ -z "${A3S_BOX:-}" ]; then
  cargo build -q --release -p a3s-box
  scripts/build-guest-init --release -q
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  A3S_BOX=$target_dir/release/a3s-box
fi
box=$A3S_BOX

lines=$(scripts/test-images nginx python3 postgres big) || {
  rc=$?
  [ "$rc" = 3 ] && echo "bench/images.sh: the apt mirror is unreachable; cannot build the test images" >&2
  exit "$rc"
}
A3S_HOME=$(mktemp -d)
export A3S_HOME
export A3S_BOX_QUIET=1
trap '"$box" rm -f bench-idle >/dev/null 2>&1 || true; rm -rf "$A3S_HOME"' EXIT

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
declare -A ref unpacked archive
while IFS= read -r l; do
  n=$(field "$l" name)
  ref[$n]=$(field "$l" ref)
  unpacked[$n]=$(field "$l" unpacked_bytes)
  archive[$n]=$(field "$l" archive)
done <<<"$lines"
ref[busybox]=busybox

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }
median() { python3 -c 'import sys,statistics; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
mib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1048576:.1f}')" "$1"; }
disk() { du -s --block-size=1 "$A3S_HOME" | cut -f1; }
inspect() { "$box" inspect "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]$2)"; }
boot() { local s; s=$(now); "$box" run --rm --entrypoint '' "${ref[$1]}" true >/dev/null; since "$s"; }

# Warm-up: the kernel cache and the busybox image, so that what follows is per image.
"$box" run --rm busybox true
boot busybox >/dev/null

images=(nginx python3 postgres big)
declare -A first disk_bytes
for n in "${images[@]}"; do
  d0=$(disk)
  "$box" load -i "${archive[$n]}" >/dev/null
  first[$n]=$(boot "$n")
  disk_bytes[$n]=$(($(disk) - d0))
  echo "first start of $n: ${first[$n]} s" >&2
done

declare -A times
all=(busybox "${images[@]}")
for i in $(seq "$runs"); do
  for n in "${all[@]}"; do times[$n]+=" $(boot "$n")"; done
  echo "round $i:$(for n in "${all[@]}"; do printf ' %s %s' "$n" "${times[$n]##* }"; done)" >&2
done
declare -A med
for n in "${all[@]}"; do med[$n]=$(median ${times[$n]}); done

rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
idle_rss() { # image, then the command that keeps it busy-idle ("" = the image's own)
  local n=$1; shift
  "$box" run -d --name bench-idle "${ref[$n]}" "$@" >/dev/null
  case "$n" in
    postgres) until "$box" exec bench-idle pg_isready -q -h 127.0.0.1; do sleep 1; done ;;
    nginx) until "$box" exec bench-idle test -s /run/nginx.pid; do sleep 1; done ;;
  esac
  sleep 5
  local q m
  q=$(inspect bench-idle '["state"]["qemu_pid"]')
  m=$(inspect bench-idle '["state"]["monitor_pid"]')
  echo "$(($(rss_kib "$q") / 1024)) $(($(rss_kib "$m") / 1024))"
  "$box" rm -f bench-idle >/dev/null
}
declare -A rss
rss[busybox]=$(idle_rss busybox sleep 3600)
rss[nginx]=$(idle_rss nginx)
rss[python3]=$(idle_rss python3 python3 -c 'import time; time.sleep(3600)')
rss[postgres]=$(idle_rss postgres)
rss[big]=$(idle_rss big sleep 3600)

accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
echo "real images ($accel, default memory, $runs rounds; boot = a3s-box run --rm IMAGE true, median)"
for n in "${all[@]}"; do
  read -r q m <<<"${rss[$n]}"
  line=$(printf '%-8s boot %6s s = x%s busybox' "$n" "${med[$n]}" "$(ratio "${med[$n]}" "${med[busybox]}")")
  if [ "$n" != busybox ]; then
    line+=$(printf ' | first start %6s s = x%s cached | unpacked %6s MiB, disk %6s MiB = x%s' \
      "${first[$n]}" "$(ratio "${first[$n]}" "${med[$n]}")" "$(mib "${unpacked[$n]}")" \
      "$(mib "${disk_bytes[$n]}")" "$(ratio "${disk_bytes[$n]}" "${unpacked[$n]}")")
  fi
  echo "$line | idle RSS QEMU $q MiB + monitor $m MiB"
done
