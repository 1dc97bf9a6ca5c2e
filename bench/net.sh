#!/usr/bin/env bash
# Network data path: throughput and request latency to a guest HTTP server through a published
# port (tsi: QEMU user networking's hostfwd on 127.0.0.1) against the same server in an
# identical box reached without any forwarding layer (bridge network: TAP on a Linux bridge,
# straight to the box's address). Both boxes run in one private network namespace, so no
# traffic leaves it; runs alternate in one session; prints medians and ratios.
#
#   bench/net.sh [RUNS]     (default 5 throughput runs and 10x as many latency probes;
#                            A3S_BOX=path/to/a3s-box, default target/debug/a3s-box; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
box=$(realpath "${A3S_BOX:-target/debug/a3s-box}")
if [ ! -x "$box" ]; then
  echo "bench/net.sh: building $box" >&2
  cargo build -q -p a3s-box
  scripts/build-guest-init -q
fi
export A3S_HOME=${A3S_HOME:-$(mktemp -d)}
export A3S_BOX_QUIET=1
ns=a3s-test-bench-$$
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
cleanup() {
  in_ns "$box" rm -f bench-tsi bench-br >/dev/null 2>&1 || true
  in_ns "$box" network rm --force bench-net >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
in_ns ip link set lo up

size_mb=16
server="mkdir -p /tmp/w && dd if=/dev/zero of=/tmp/w/big bs=1M count=$size_mb 2>/dev/null && echo ok > /tmp/w/small && exec httpd -f -p 80 -h /tmp/w"
in_ns "$box" network create --subnet 10.94.0.0/24 bench-net >/dev/null
in_ns "$box" run -d --name bench-tsi -m 512m -p 0:80 busybox sh -c "$server" >/dev/null &
in_ns "$box" run -d --name bench-br -m 512m --network bench-net --dns 127.0.0.1 busybox sh -c "$server" >/dev/null &
wait
port=$(in_ns "$box" port bench-tsi | sed 's/.*://')
ip=$(in_ns "$box" network inspect bench-net | python3 -c 'import json,sys; print([b["ip"] for b in json.load(sys.stdin)[0]["boxes"] if b["name"]=="bench-br"][0])')
tsi="http://127.0.0.1:$port"
br="http://$ip"
for u in "$tsi" "$br"; do
  for _ in $(seq 300); do in_ns curl -sf -m 5 -o /dev/null "$u/small" && break; sleep 0.3; done
  in_ns curl -sf -m 5 -o /dev/null "$u/small" || { echo "bench/net.sh: $u never answered" >&2; exit 1; }
done

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
tp() { in_ns curl -sf -m 120 -o /dev/null -w '%{speed_download}' "$1/big"; }         # bytes/s
lat() { in_ns curl -sf -m 10 -o /dev/null -w '%{time_starttransfer}' "$1/small"; }  # s, connect + request + first byte

t_tsi=(); t_br=(); l_tsi=(); l_br=()
for i in $(seq "$runs"); do
  t_tsi+=("$(tp "$tsi")"); t_br+=("$(tp "$br")")
  echo "run $i: published port $(python3 -c "print(f'{${t_tsi[-1]}/1e6:.1f}')") MB/s, bridge $(python3 -c "print(f'{${t_br[-1]}/1e6:.1f}')") MB/s" >&2
done
for _ in $(seq $((runs * 10))); do
  l_tsi+=("$(lat "$tsi")"); l_br+=("$(lat "$br")")
done
mt=$(median "${t_tsi[@]}"); mb=$(median "${t_br[@]}")
lt=$(median "${l_tsi[@]}"); lb=$(median "${l_br[@]}")
accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
python3 - "$mt" "$mb" "$lt" "$lb" "$accel" "$runs" "$size_mb" <<'EOF'
import sys
mt, mb, lt, lb = map(float, sys.argv[1:5])
accel, runs, size = sys.argv[5], sys.argv[6], sys.argv[7]
print(f"network ({accel}, {runs} x {size} MiB GETs, {int(runs)*10} small GETs, alternating):")
print(f"  throughput  published port (tsi hostfwd) {mt/1e6:8.1f} MB/s   bridge direct {mb/1e6:8.1f} MB/s   ratio tsi/bridge {mt/mb:.3f}")
print(f"  latency     published port (tsi hostfwd) {lt*1e3:8.2f} ms     bridge direct {lb*1e3:8.2f} ms     ratio tsi/bridge {lt/lb:.3f}")
EOF
