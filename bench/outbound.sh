#!/usr/bin/env bash
# Outbound traffic on the default network: a box downloads a file from an HTTP server on the
# host's loopback (the gateway 10.0.2.2), through passt (the default forwarder) against QEMU's
# slirp (A3S_BOX_FORWARDER=slirp) as the baseline; one box of each, downloads alternating in one
# session; prints the medians in MB/s and their ratio. The time is the host's, around
# `a3s-box exec` (about 20 ms of each figure is the exec itself, the same for both).
#
#   bench/outbound.sh [RUNS] [MIB]   (default 6 downloads of 64 MiB each;
#                                     A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-6}
size=${2:-64}
source bench/home-lib.sh
bench_box outbound
bench_home
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  "$box" rm -f bench-out-passt bench-out-slirp >/dev/null 2>&1 || true
  rm -rf "$work"
  bench_home_cleanup
}
trap cleanup EXIT

head -c "${size}M" /dev/urandom > "$work/f"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
"$box" run -d --name bench-out-passt busybox sleep 100000 >/dev/null
A3S_BOX_FORWARDER=slirp "$box" run -d --name bench-out-slirp busybox sleep 100000 >/dev/null
for b in passt slirp; do
  got=$("$box" inspect "bench-out-$b" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["boot"]["forwarder"]["forwarder"])')
  [ "$got" = "$b" ] || { echo "bench/outbound.sh: bench-out-$b runs on $got" >&2; exit 1; }
done
fetch() {
  local s e
  s=$(date +%s%N)
  "$box" exec "bench-out-$1" wget -q -O /dev/null "http://10.0.2.2:$port/f" \
    || { echo "bench/outbound.sh: the download into bench-out-$1 failed" >&2; exit 1; }
  e=$(date +%s%N)
  echo $(( e - s ))
}
# A first download each, to warm the guest's paths (TCG translates them once).
fetch passt >/dev/null; fetch slirp >/dev/null
tp=(); ts=()
for i in $(seq "$runs"); do
  tp+=("$(fetch passt)"); ts+=("$(fetch slirp)")
  echo "run $i: passt $((tp[-1] / 1000000)) ms, slirp $((ts[-1] / 1000000)) ms"
done
python3 - "$size" "${tp[*]}" "${ts[*]}" <<'EOF'
import statistics, sys
size = int(sys.argv[1]) * 1024 * 1024
tp = statistics.median(int(x) for x in sys.argv[2].split()) / 1e9
ts = statistics.median(int(x) for x in sys.argv[3].split()) / 1e9
print(f"outbound ({sys.argv[1]} MiB from the host's loopback, medians): "
      f"passt {size / tp / 1e6:.1f} MB/s, slirp {size / ts / 1e6:.1f} MB/s, passt/slirp {ts / tp:.2f}")
EOF
