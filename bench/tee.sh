#!/usr/bin/env bash
# The cost of the trust pipeline: `a3s-box run --tee-simulate --secret s=file:F busybox true`
# against the plain `a3s-box run busybox true`, alternating in one session. Prints both medians,
# the added time in ms and the ratio, then the median of each TEE step as the box recorded it
# (measure on the host; evidence, KBS attestation and secret placement in the guest; plus the
# boot itself from the box's boot record).
#
#   bench/tee.sh [RUNS]        (default 8; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}
box=${A3S_BOX:-target/release/a3s-box}
if [ ! -x "$box" ]; then
  echo "bench/tee.sh: building $box" >&2
  cargo build -q --release -p a3s-box
  scripts/build-guest-init --release -q
fi
export A3S_HOME=${A3S_HOME:-$(mktemp -d)}
export A3S_BOX_QUIET=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 64 /dev/urandom | base64 > "$work/secret"

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f}")' "$@"; }

# Warm-up: busybox import, vmlinux extraction, initrd, the simulator's root keys.
"$box" run --rm busybox true
"$box" run --rm --tee-simulate --secret "s=file:$work/secret" busybox true

plain=(); tee=(); steps="$work/steps.jsonl"
for i in $(seq "$runs"); do
  s=$(now); "$box" run --rm busybox true; e=$(now); plain+=("$(echo "($e - $s) * 1000" | bc)")
  s=$(now); "$box" run --name "bench-tee-$i" --tee-simulate --secret "s=file:$work/secret" busybox true; e=$(now)
  tee+=("$(echo "($e - $s) * 1000" | bc)")
  "$box" inspect "bench-tee-$i" >> "$steps"
  "$box" rm "bench-tee-$i" >/dev/null
  echo "run $i: plain ${plain[-1]} ms, tee-simulate ${tee[-1]} ms" >&2
done
pm=$(median "${plain[@]}"); tm=$(median "${tee[@]}")
python3 - "$pm" "$tm" "$runs" "$steps" <<'PY'
import json, statistics, sys
pm, tm, runs, path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"lifecycle ({runs} alternating runs): run --rm busybox true median {pm:.0f} ms; "
      f"run --tee-simulate --secret s=file:F busybox true median {tm:.0f} ms; "
      f"added {tm - pm:.0f} ms, ratio {tm / pm:.3f}")
per = {}
text = open(path).read()
dec = json.JSONDecoder(); i = 0
while i < len(text):
    while i < len(text) and text[i].isspace(): i += 1
    if i >= len(text): break
    recs, i = dec.raw_decode(text, i)
    for r in recs:
        tee = r.get("tee") or {}
        per.setdefault("measure (host)", []).append(tee.get("measure_ms", 0))
        boot = r.get("boot") or {}
        if "boot_ms" in boot: per.setdefault("boot to guest-init Ready", []).append(boot["boot_ms"])
        for name, ms in tee.get("steps", []):
            per.setdefault(name.split(":")[0] + " (guest)", []).append(ms)
for k, v in per.items():
    print(f"  {k:28s} median {statistics.median(v):7.1f} ms")
PY
