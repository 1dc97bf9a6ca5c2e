#!/usr/bin/env bash
# What the guest's KBS client costs a confidential box under TCG, and why: the client
# (kbs/examples/attest_rounds.rs: a fresh TEE key, /auth + /attest, one resource) runs ROUNDS
# times in one process against a native broker, natively (the baseline: roughly what a KVM or
# SEV-SNP guest pays) and under qemu-x86_64, the TCG translator a box's vCPU runs on here.
# A box attests once per boot, so its `kbs_attest` and `secret` steps are first rounds; the
# later rounds show what is left once the code has been translated. Prints the medians of
# first and later rounds and their ratios. The simulator's signing (the host's part) is
# reported apart and counted in neither.
#
#   bench/kbs-client.sh [ROUNDS] [PROCESSES]   (default 5 rounds in each of 5 processes)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
procs=${2:-5}
[ "$rounds" -ge 2 ] || { echo "bench/kbs-client.sh: ROUNDS must be 2 or more" >&2; exit 2; }
command -v qemu-x86_64 >/dev/null || {
  echo "bench/kbs-client.sh: qemu-x86_64 is missing (scripts/setup installs qemu-user)" >&2
  exit 1
}
cargo build -q --release -p a3s-kbs --example attest_rounds
tool=target/release/examples/attest_rounds
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
"$tool" serve "$work" "$work/addr" &
server=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { echo "bench/kbs-client.sh: the broker did not start" >&2; exit 1; }
url="http://$(cat "$work/addr")"
# Alternating native and TCG processes, each a fresh process (nothing translated yet).
for p in $(seq "$procs"); do
  "$tool" client "$work" "$url" "$rounds" | sed "s/^/native $p /" >> "$work/rounds"
  qemu-x86_64 -cpu max "$tool" client "$work" "$url" "$rounds" | sed "s/^/tcg $p /" >> "$work/rounds"
done
python3 - "$work/rounds" "$rounds" "$procs" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rounds, procs = int(sys.argv[2]), int(sys.argv[3])
def med(how, first, col):
    # Each process's lines in order: its first round, then the later ones.
    seen, v = set(), []
    for r in rows:
        if r[0] != how:
            continue
        is_first = r[1] not in seen
        seen.add(r[1])
        if is_first == first:
            v.append(float(r[2 + col]))
    return statistics.median(v)
print(f"KBS client, medians over {procs} processes x {rounds} rounds (ms):")
print(f"  {'':24s} {'attest':>9s} {'resource':>9s}   (simulator signing, not counted: {'evidence':>6s})")
fig = {}
for how in ("native", "tcg"):
    for first in (True, False):
        label = f"{how} {'first round' if first else 'later rounds'}"
        a, e, r = (med(how, first, c) for c in range(3))
        fig[(how, first)] = (a, r)
        print(f"  {label:24s} {a:9.2f} {r:9.2f}   {e:6.2f}")
tf, tl, nf = fig[("tcg", True)], fig[("tcg", False)], fig[("native", True)]
print(f"  tcg first / tcg later:   attest {tf[0] / tl[0]:6.1f}  resource {tf[1] / tl[1]:6.1f}"
      "   (translating code that runs once)")
print(f"  tcg first / native first: attest {tf[0] / nf[0]:6.1f}  resource {tf[1] / nf[1]:6.1f}")
PY
