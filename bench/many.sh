#!/usr/bin/env bash
# Many boxes at once, each figure against a baseline from the same run:
#  1. start time: N `run -d` started together against the same N started one after another
#     (wall time of the whole batch; ratio concurrent/sequential: below 1 when boots overlap
#     well, above 1 when they fight for the host's cores);
#  2. host memory: N idle busybox boxes against BASE idle ones (QEMU + monitor + passt resident
#     memory summed, anonymous + file pages, and the drop in the host's MemAvailable), per box.
#
#   bench/many.sh [N] [BASE]   (default 20 and 5; A3S_BOX=path/to/a3s-box, default
#                               target/release; MEM=128: each box's --memory, the
#                               workload's limit, a 259 MiB VM)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
base=${2:-5}
mem=${MEM:-128}
source bench/home-lib.sh
bench_box many
bench_home
# N boots share the host's cores: give each the wall time that takes (CPU time stays bounded).
export A3S_BOX_BOOT_TIMEOUT_SECS=${A3S_BOX_BOOT_TIMEOUT_SECS:-900}
cleanup() {
  ids=$("$box" ps -aq 2>/dev/null | tr '\n' ' ')
  [ -n "$ids" ] && "$box" rm -f $ids >/dev/null 2>&1
  bench_home_cleanup
}
trap cleanup EXIT
. bench/mem-lib.sh
now() { date +%s.%N; }
start() { "$box" run -d --name "$1" -m "${mem}m" busybox sleep 100000 >/dev/null; }
rm_all() { "$box" rm -f "$@" >/dev/null; }

# Warm-up: imports busybox, extracts the vmlinux, builds the initrd.
"$box" run --rm busybox true

# 1. Sequential, concurrent twice, and sequential again at the end (with N boxes idling), so
#    neither always goes first on a host whose load drifts; each batch removed before the next.
seq_ms=(); con_ms=()
batch_seq() {
  local s e i; s=$(now)
  for i in $(seq "$n"); do start "many-s$i"; done
  e=$(now); seq_ms+=("$(echo "($e - $s) * 1000" | bc)")
  rm_all $(for i in $(seq "$n"); do echo "many-s$i"; done)
}
batch_con() {
  local s e i fail=0; s=$(now)
  for i in $(seq "$n"); do start "many-c$i" & done
  for job in $(jobs -p); do wait "$job" || fail=1; done
  e=$(now); con_ms+=("$(echo "($e - $s) * 1000" | bc)")
  [ "$fail" = 0 ] || { echo "bench/many.sh: a concurrent run -d failed" >&2; exit 1; }
  running=$("$box" ps -q | wc -l)
  [ "$running" -ge "$n" ] || { echo "bench/many.sh: only $running of $n boxes run" >&2; exit 1; }
}
batch_seq; echo "sequential: ${seq_ms[-1]} ms" >&2
batch_con; echo "concurrent: ${con_ms[-1]} ms" >&2
rm_all $(for i in $(seq "$n"); do echo "many-c$i"; done)
batch_con; echo "concurrent: ${con_ms[-1]} ms" >&2
rm_all $(for i in $(seq "$n"); do echo "many-c$i"; done)

# 2. Memory: BASE idle boxes, then N.
pids() { local i; for i in $(seq "$1"); do pids_of "many-c$i"; done; }
sleep 3
before=$(avail)
for i in $(seq "$base"); do start "many-c$i" & done
wait
read -r a5 f5 < <(settle $(pids "$base"))
after5=$(avail)
for i in $(seq $((base + 1)) "$n"); do start "many-c$i" & done
wait
read -r an fn < <(settle $(pids "$n"))
aftern=$(avail)
batch_seq; echo "sequential: ${seq_ms[-1]} ms (with $n idle boxes up)" >&2

accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
python3 - "$accel" "$mem" "$n" "$base" "$a5" "$f5" "$an" "$fn" "$before" "$after5" "$aftern" \
  "${seq_ms[0]}" "${con_ms[0]}" "${con_ms[1]}" "${seq_ms[1]}" <<'PY'
import sys
a = sys.argv
accel, mem, n, base = a[1], a[2], int(a[3]), int(a[4])
a5, f5, an, fn, before, after5, aftern = (int(x) / 1024 for x in a[5:12])
s1, c1, c2, s2 = (float(x) for x in a[12:16])
print(f"many boxes ({accel}, --memory {mem}m, busybox sleep):")
print(f"  {n} x run -d   sequential {s1/1000:7.1f} s   concurrent {c1/1000:7.1f} s, {c2/1000:7.1f} s   "
      f"sequential again (with {n} up) {s2/1000:7.1f} s")
print(f"                 ratio concurrent/sequential {((c1 + c2) / 2) / s1:.2f}   "
      f"per box: sequential {s1/n:.0f} ms, concurrent {(c1 + c2) / 2 / n:.0f} ms")
print(f"  memory, QEMU + monitor + passt resident (anon + file), MiB:")
print(f"    {base:2d} idle boxes {a5:8.1f} + {f5:6.1f}   {a5/base:6.1f} anon per box   "
      f"MemAvailable fell {before - after5:8.1f} ({(before - after5)/base:.1f} per box)")
print(f"    {n:2d} idle boxes {an:8.1f} + {fn:6.1f}   {an/n:6.1f} anon per box   "
      f"MemAvailable fell {before - aftern:8.1f} ({(before - aftern)/n:.1f} per box)")
print(f"    ratio {n}/{base}: anon {an/a5:.2f} (x{n/base:.0f} boxes), MemAvailable drop {(before - aftern)/(before - after5):.2f}")
PY
