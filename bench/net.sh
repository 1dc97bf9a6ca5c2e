#!/usr/bin/env bash
# Network data path: throughput and request latency to a guest HTTP server through a published
# port on the default network, carried by passt (the default forwarder) and by QEMU's slirp
# (A3S_BOX_FORWARDER=slirp, the fallback and the old path), against the same server in an
# identical box reached without any forwarding layer (bridge network: TAP on a Linux bridge,
# straight to the box's address). All boxes run in one private network namespace, so no
# traffic leaves it (a veth pair gives it the default route passt takes its parameters from);
# runs alternate in one session; prints medians and ratios.
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
source bench/home-lib.sh
bench_home
export A3S_BOX_QUIET=1
ns=a3s-test-bench-$$
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
cleanup() {
  in_ns "$box" rm -f bench-tsi bench-slirp bench-br >/dev/null 2>&1 || true
  in_ns "$box" network rm --force bench-net >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  bench_home_cleanup
}
trap cleanup EXIT
in_ns ip link set lo up
# passt needs an interface with an IPv4 default route; nothing answers behind it.
in_ns ip link add a3sbv0 type veth peer name a3sbv1
in_ns ip link set a3sbv0 up
in_ns ip link set a3sbv1 up
in_ns ip addr add 192.0.2.1/24 dev a3sbv0
in_ns ip route add default via 192.0.2.254

size_mb=16
server="mkdir -p /tmp/w && dd if=/dev/zero of=/tmp/w/big bs=1M count=$size_mb 2>/dev/null && echo ok > /tmp/w/small && exec httpd -f -p 80 -h /tmp/w"
in_ns "$box" network create --subnet 10.94.0.0/24 bench-net >/dev/null
in_ns "$box" run -d --name bench-tsi -m 512m -p 0:80 busybox sh -c "$server" >/dev/null &
in_ns env A3S_BOX_FORWARDER=slirp "$box" run -d --name bench-slirp -m 512m -p 0:80 busybox sh -c "$server" >/dev/null &
in_ns "$box" run -d --name bench-br -m 512m --network bench-net --dns 127.0.0.1 busybox sh -c "$server" >/dev/null &
wait
fwd=$(in_ns "$box" inspect bench-tsi | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["boot"]["forwarder"]["forwarder"])')
[ "$fwd" = passt ] || { echo "bench/net.sh: bench-tsi runs on $fwd, not passt (is passt installed?)" >&2; exit 1; }
port=$(in_ns "$box" port bench-tsi | sed 's/.*://')
sport=$(in_ns "$box" port bench-slirp | sed 's/.*://')
ip=$(in_ns "$box" network inspect bench-net | python3 -c 'import json,sys; print([b["ip"] for b in json.load(sys.stdin)[0]["boxes"] if b["name"]=="bench-br"][0])')
tsi="http://127.0.0.1:$port"
slirp="http://127.0.0.1:$sport"
br="http://$ip"
for u in "$tsi" "$slirp" "$br"; do
  for _ in $(seq 300); do in_ns curl -sf -m 5 -o /dev/null "$u/small" && break; sleep 0.3; done
  in_ns curl -sf -m 5 -o /dev/null "$u/small" || { echo "bench/net.sh: $u never answered" >&2; exit 1; }
done

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
tp() { in_ns curl -sf -m 120 -o /dev/null -w '%{speed_download}' "$1/big"; }         # bytes/s
lat() { in_ns curl -sf -m 10 -o /dev/null -w '%{time_starttransfer}' "$1/small"; }  # s, connect + request + first byte

t_tsi=(); t_sl=(); t_br=(); l_tsi=(); l_sl=(); l_br=()
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }
for i in $(seq "$runs"); do
  t_tsi+=("$(tp "$tsi")"); t_sl+=("$(tp "$slirp")"); t_br+=("$(tp "$br")")
  echo "run $i: published port passt $(mb "${t_tsi[-1]}") MB/s, slirp $(mb "${t_sl[-1]}") MB/s, bridge $(mb "${t_br[-1]}") MB/s" >&2
done
for _ in $(seq $((runs * 10))); do
  l_tsi+=("$(lat "$tsi")"); l_sl+=("$(lat "$slirp")"); l_br+=("$(lat "$br")")
done
mt=$(median "${t_tsi[@]}"); ms=$(median "${t_sl[@]}"); mb=$(median "${t_br[@]}")
lt=$(median "${l_tsi[@]}"); ls=$(median "${l_sl[@]}"); lb=$(median "${l_br[@]}")
accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
python3 - "$mt" "$ms" "$mb" "$lt" "$ls" "$lb" "$accel" "$runs" "$size_mb" <<'EOF'
import sys
mt, ms, mb, lt, ls, lb = map(float, sys.argv[1:7])
accel, runs, size = sys.argv[7], sys.argv[8], sys.argv[9]
print(f"network ({accel}, {runs} x {size} MiB GETs, {int(runs)*10} small GETs, alternating):")
print(f"  throughput  published port: passt {mt/1e6:8.1f} MB/s   slirp {ms/1e6:8.1f} MB/s   bridge direct {mb/1e6:8.1f} MB/s")
print(f"              ratio passt/bridge {mt/mb:.3f}   slirp/bridge {ms/mb:.3f}   passt/slirp {mt/ms:.2f}")
print(f"  latency     published port: passt {lt*1e3:8.2f} ms     slirp {ls*1e3:8.2f} ms     bridge direct {lb*1e3:8.2f} ms")
print(f"              ratio passt/bridge {lt/lb:.3f}   slirp/bridge {ls/lb:.3f}")
EOF
