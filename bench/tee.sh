#!/usr/bin/env bash
# The cost of the trust pipeline: `a3s-box run --tee-simulate --secret s=file:F busybox true`
# against the plain `a3s-box run busybox true`, alternating in one session, with the digest
# cache of measured artefacts and the kept encrypted layer (the defaults), and as the first box
# of its measurement (no kept layer: it formats its own, as every box did before layers were
# kept; A3S_BOX_MEASURE_CACHE=off too: every start re-hashes the kernel and initrd, as before
# the digest cache). Prints the medians, the added
# time in ms and the ratios, then the median of each phase of a start as the box recorded it
# (`inspect` .timings: prepare, spawn_monitor, plan, tee_prepare, network, vm_boot,
# guest_setup) for plain and TEE starts, and of each TEE step (measure on the host; evidence,
# KBS attestation and secret placement in the guest).
#
#   bench/tee.sh [RUNS]        (default 8; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}
source bench/home-lib.sh
bench_box tee
bench_home
# The plain baseline boots cold like a TEE box (which never restores): the difference is the
# trust pipeline, not the restore (bench/restore.sh measures that).
export A3S_BOX_RESTORE=${A3S_BOX_RESTORE:-off}
work=$(mktemp -d)
trap 'rm -rf "$work"; bench_home_cleanup' EXIT
head -c 64 /dev/urandom | base64 > "$work/secret"

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f}")' "$@"; }

# Warm-up: busybox import, vmlinux extraction, initrd, the simulator's root keys; then let the
# fresh artefacts age past the cache's racy window, and fill the cache.
"$box" run --rm busybox true
"$box" run --rm --tee-simulate --secret "s=file:$work/secret" busybox true
sleep 3
"$box" run --rm --tee-simulate --secret "s=file:$work/secret" busybox true

plain=(); tee=(); nocache=()
for i in $(seq "$runs"); do
  s=$(now); "$box" run --name "bench-plain-$i" busybox true; e=$(now); plain+=("$(echo "($e - $s) * 1000" | bc)")
  "$box" inspect "bench-plain-$i" >> "$work/plain.jsonl"; "$box" rm "bench-plain-$i" >/dev/null
  s=$(now); "$box" run --name "bench-tee-$i" --tee-simulate --secret "s=file:$work/secret" busybox true; e=$(now)
  tee+=("$(echo "($e - $s) * 1000" | bc)")
  "$box" inspect "bench-tee-$i" >> "$work/tee.jsonl"; "$box" rm "bench-tee-$i" >/dev/null
  rm -rf "$A3S_HOME/cache/tee-layers"
  s=$(now); A3S_BOX_MEASURE_CACHE=off "$box" run --name "bench-nc-$i" --tee-simulate --secret "s=file:$work/secret" busybox true; e=$(now)
  nocache+=("$(echo "($e - $s) * 1000" | bc)")
  "$box" inspect "bench-nc-$i" >> "$work/nocache.jsonl"; "$box" rm "bench-nc-$i" >/dev/null
  echo "run $i: plain ${plain[-1]} ms, tee-simulate ${tee[-1]} ms, tee-simulate without the caches ${nocache[-1]} ms" >&2
done
pm=$(median "${plain[@]}"); tm=$(median "${tee[@]}"); nm=$(median "${nocache[@]}")
python3 - "$pm" "$tm" "$nm" "$runs" "$work" <<'PY'
import json, statistics, sys
pm, tm, nm, runs, work = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
print(f"lifecycle ({runs} alternating runs): run --rm busybox true median {pm:.0f} ms")
print(f"  run --tee-simulate --secret s=file:F busybox true, caches       median {tm:.0f} ms: "
      f"added {tm - pm:.0f} ms, ratio {tm / pm:.3f}")
print(f"  the same, no kept layer, A3S_BOX_MEASURE_CACHE=off (before)    median {nm:.0f} ms: "
      f"added {nm - pm:.0f} ms, ratio {nm / pm:.3f}")

def records(name):
    text = open(f"{work}/{name}.jsonl").read()
    dec = json.JSONDecoder(); i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace(): i += 1
        if i >= len(text): break
        recs, i = dec.raw_decode(text, i)
        yield from recs

def phases(name):
    per = {}
    for r in records(name):
        for p in r.get("timings", []):
            per.setdefault(p["name"], []).append(p["ms"])
        tee = r.get("tee") or {}
        if tee:
            per.setdefault("  of which measure (host)", []).append(tee.get("measure_ms", 0))
            for step, ms in tee.get("steps", []):
                per.setdefault("  guest step " + step.split(":")[0], []).append(ms)
    return per

cols = {n: phases(n) for n in ("plain", "tee", "nocache")}
names = []
for n in ("plain", "tee", "nocache"):
    for k in cols[n]:
        if k not in names: names.append(k)
print(f"  {'phase (median ms)':30s} {'plain':>8s} {'tee':>8s} {'tee, no caches':>14s}")
for k in names:
    cell = lambda n: f"{statistics.median(cols[n][k]):8.1f}" if k in cols[n] else f"{'-':>8s}"
    print(f"  {k:30s} {cell('plain')} {cell('tee')} {cell('nocache'):>14s}")
for n in ("plain", "tee", "nocache"):
    tot = [sum(p["ms"] for p in r.get("timings", [])) for r in records(n)]
    print(f"  sum of phases ({n}): median {statistics.median(tot):.0f} ms")
PY
