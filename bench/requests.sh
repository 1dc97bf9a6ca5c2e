#!/usr/bin/env bash
# Request/response through the default network's forwarder: a client in a box (the python3
# test image) POSTs 2000 bytes to a server on the host's loopback (the gateway 10.0.2.2) over
# one reused connection, each request either in one write or in two (head, then body), through
# each passt build on this machine (Debian's /usr/bin/passt and the one first on PATH, named
# with A3S_BOX_FORWARDER=passt) and through QEMU's slirp (A3S_BOX_FORWARDER=slirp) as the
# baseline; requests alternate within each box. Prints the median round trip of each and the
# ratios. A passt that keeps Nagle's algorithm on its host sockets (Debian bookworm's) makes
# the body of a two-write request wait for the server's delayed ACK of the head; A3S Box
# then defaults to slirp (`a3s-box info` says which and why).
#
#   bench/requests.sh [RUNS]   (default 20 requests of each kind per box;
#                               A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
source bench/home-lib.sh
bench_box requests
bench_home
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  bench_home_cleanup
}
trap cleanup EXIT

line=$(scripts/test-images python3)
archive=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["archive"])' "$line")
"$box" load -i "$archive" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 bench/requests/server.py "$port" &
server=$!
# Each passt build alone ahead of PATH (a symlink: passt finds its .avx2 beside its target).
declare -a labels envs
n=0
for bin in /usr/bin/passt "$(command -v passt || true)"; do
  [ -x "$bin" ] || continue
  real=$(realpath "$bin")
  case " ${labels[*]} " in *" $real "*) continue ;; esac
  mkdir -p "$A3S_HOME/passt-$n"; ln -sf "$real" "$A3S_HOME/passt-$n/passt"
  labels+=("$real"); envs+=("A3S_BOX_FORWARDER=passt PATH=$A3S_HOME/passt-$n:$PATH"); n=$((n + 1))
done
labels+=(slirp); envs+=("A3S_BOX_FORWARDER=slirp")
results=()
for i in "${!labels[@]}"; do
  # Captured, not read from a process substitution: a failed run stops the bench.
  out=$(env ${envs[$i]} "$box" run --rm -v "$PWD/bench/requests:/b:ro" \
    localhost/a3s-test/python3:latest python3 /b/client.py "$port" "$runs")
  nodelay=-; [ "${labels[$i]}" = slirp ] || { grep -qs TCP_NODELAY "${labels[$i]}" && nodelay=yes || nodelay=no; }
  results+=("${labels[$i]} $nodelay $out")
done
python3 - "$runs" "${results[@]}" <<'PY'
import sys
runs, rows = int(sys.argv[1]), [r.split() for r in sys.argv[2:]]
base = next(r for r in rows if r[0] == "slirp")
b1, b2 = float(base[2]), float(base[3])
print(f"request round trip, median of {runs} each (ms); slirp is the baseline:")
for name, nodelay, one, two in rows:
    one, two = float(one), float(two)
    label = name if name == "slirp" else f"{name} (sets TCP_NODELAY: {nodelay})"
    print(f"  {label}")
    print(f"    one write {one:7.2f}   two writes {two:7.2f}   two/one {two / one:6.1f}"
          f"   vs slirp: one {one / b1:.2f}, two {two / b2:.2f}")
PY
