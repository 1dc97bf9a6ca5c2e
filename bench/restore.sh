#!/usr/bin/env bash
# Start from a saved VM (issue 22): `a3s-box run --rm busybox true` booted cold
# (A3S_BOX_RESTORE=off) against restored from the home's template, alternating, in one
# session, then the same with a volume (`-v DIR:/data`); prints the medians, their ratios, the one-off cost of making the template and where
# a restored start's time goes (inspect .timings of named boxes).
#
#   bench/restore.sh [RUNS]        (default 10; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
source bench/home-lib.sh
bench_box restore
bench_home
work=$(mktemp -d)
trap 'rm -rf "$work"; bench_home_cleanup' EXIT

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }
field() { "$box" inspect "$1" | python3 -c "import json,sys; b=json.load(sys.stdin)[0]['boot']; print(b.get('$2'))"; }

# Warm-up: imports busybox, extracts the kernel, builds the initrd, then makes the template.
A3S_BOX_RESTORE=off "$box" run --rm busybox true
"$box" run --name bench-tpl busybox true
echo "template: made in $(field bench-tpl template_ms) ms by the first start (restored: $(field bench-tpl restored))"
"$box" rm bench-tpl >/dev/null

cold_t=(); warm_t=()
for i in $(seq "$runs"); do
  s=$(now); A3S_BOX_RESTORE=off "$box" run --rm busybox true; e=$(now); cold_t+=("$(echo "$e - $s" | bc)")
  s=$(now); "$box" run --rm busybox true; e=$(now); warm_t+=("$(echo "$e - $s" | bc)")
  echo "run $i: cold ${cold_t[-1]} s, restored ${warm_t[-1]} s" >&2
done
cm=$(median "${cold_t[@]}"); wm=$(median "${warm_t[@]}")
echo "run --rm busybox true ($runs alternating runs): cold median ${cm} s, restored median ${wm} s, ratio $(python3 -c "print(f'{$wm/$cm:.3f}')")"

# The same with a volume (a virtiofs share and its virtiofsd, which used to mean a cold boot):
# the first start makes the one-share template.
mkdir -p "$work/vol"
"$box" run --rm -v "$work/vol:/data" busybox true
cold_v=(); warm_v=()
for i in $(seq "$runs"); do
  s=$(now); A3S_BOX_RESTORE=off "$box" run --rm -v "$work/vol:/data" busybox true; e=$(now); cold_v+=("$(echo "$e - $s" | bc)")
  s=$(now); "$box" run --rm -v "$work/vol:/data" busybox true; e=$(now); warm_v+=("$(echo "$e - $s" | bc)")
  echo "volume run $i: cold ${cold_v[-1]} s, restored ${warm_v[-1]} s" >&2
done
cvm=$(median "${cold_v[@]}"); wvm=$(median "${warm_v[@]}")
echo "run --rm -v DIR:/data busybox true ($runs alternating runs): cold median ${cvm} s, restored median ${wvm} s, ratio $(python3 -c "print(f'{$wvm/$cvm:.3f}')")"

# Where the time goes, cold and restored (named boxes, removed after).
for mode in off on; do
  for i in 1 2 3; do
    A3S_BOX_RESTORE=$mode "$box" run --name "bench-ph-$mode-$i" busybox true
    "$box" inspect "bench-ph-$mode-$i" >> "$work/$mode.jsonl"; "$box" rm "bench-ph-$mode-$i" >/dev/null
  done
done
python3 - "$work" <<'PY'
import json, statistics, sys
for mode, label in (("off", "cold"), ("on", "restored")):
    text = open(f"{sys.argv[1]}/{mode}.jsonl").read(); dec = json.JSONDecoder(); i = 0; per = {}
    while i < len(text):
        while i < len(text) and text[i].isspace(): i += 1
        if i >= len(text): break
        recs, i = dec.raw_decode(text, i)
        for r in recs:
            for p in r.get("timings", []): per.setdefault(p["name"], []).append(p["ms"])
            for p in r.get("stop_timings", []): per.setdefault("stop: " + p["name"], []).append(p["ms"])
            load = r.get("boot", {}).get("restore_load_ms")
            if load is not None: per.setdefault("(of which QEMU loading the state)", []).append(load)
    print(f"  {label}: " + ", ".join(f"{k} {statistics.median(v):.0f} ms" for k, v in per.items()))
PY
