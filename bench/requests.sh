#!/usr/bin/env bash
# Request/response through the default network's forwarder: a client in a box (the python3
# test image) POSTs 2000 bytes to a server on the host's loopback (the gateway 10.0.2.2) over
# one reused connection, each request either in one write or in two (head, then body), through
# passt (the default) and through QEMU's slirp (A3S_BOX_FORWARDER=slirp) as the baseline;
# requests alternate within each box. Prints the median round trip of each and the ratios.
# passt (Debian bookworm's) keeps Nagle's algorithm on its host sockets: the body of a
# two-write request waits for the server's delayed ACK of the head.
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
declare -A one two
for fw in passt slirp; do
  # Captured, not read from a process substitution: a failed run stops the bench.
  out=$(A3S_BOX_FORWARDER=$fw "$box" run --rm -v "$PWD/bench/requests:/b:ro" \
    localhost/a3s-test/python3:latest python3 /b/client.py "$port" "$runs")
  read -r one[$fw] two[$fw] <<< "$out"
done
python3 - "${one[passt]}" "${two[passt]}" "${one[slirp]}" "${two[slirp]}" "$runs" <<'PY'
import sys
p1, p2, s1, s2, runs = map(float, sys.argv[1:])
print(f"request round trip, median of {int(runs)} each (ms):")
print(f"  passt   one write {p1:7.2f}   two writes {p2:7.2f}   two/one {p2 / p1:6.1f}")
print(f"  slirp   one write {s1:7.2f}   two writes {s2:7.2f}   two/one {s2 / s1:6.1f}")
print(f"  passt/slirp: one write {p1 / s1:.2f}, two writes {p2 / s2:.2f}")
PY
