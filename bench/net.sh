#!/usr/bin/env bash
# Network data path: throughput and request latency to a guest HTTP server through a published
# port, against the same server in an identical box reached without any forwarding layer
# (bridge network: TAP on a Linux bridge, straight to the box's address). Published ports:
#   link     default network, the default: the monitor relays over the box's private TAP link
#   passt    default network, A3S_BOX_PUBLISH=forwarder: passt holds the port (the old path)
#   relay    a bridged box's published port: the monitor relays to its bridge address
# All boxes run in one private network namespace, so no traffic leaves it (a veth pair gives
# it the default route passt takes its parameters from); runs alternate in one session;
# prints medians and ratios to bridge direct.
#
#   bench/net.sh [RUNS]     (default 5 throughput runs and 10x as many latency probes;
#                            A3S_BOX=path/to/a3s-box, default target/debug/a3s-box; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source bench/home-lib.sh
bench_box net debug
bench_home
ns=a3s-test-bench-$$
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
names=(bench-link bench-passt bench-relay bench-br)
cleanup() {
  in_ns "$box" rm -f "${names[@]}" >/dev/null 2>&1 || true
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

size_mb=32
server="mkdir -p /tmp/w && dd if=/dev/zero of=/tmp/w/big bs=1M count=$size_mb 2>/dev/null && echo ok > /tmp/w/small && exec httpd -f -p 80 -h /tmp/w"
in_ns "$box" network create --subnet 10.94.0.0/24 bench-net >/dev/null
# One at a time: the first makes the template the others restore from.
in_ns "$box" run -d --name bench-link -m 512m -p 0:80 busybox sh -c "$server" >/dev/null
in_ns env A3S_BOX_PUBLISH=forwarder "$box" run -d --name bench-passt -m 512m -p 0:80 busybox sh -c "$server" >/dev/null
in_ns "$box" run -d --name bench-relay -m 512m -p 0:80 --network bench-net --dns 127.0.0.1 busybox sh -c "$server" >/dev/null
in_ns "$box" run -d --name bench-br -m 512m --network bench-net --dns 127.0.0.1 busybox sh -c "$server" >/dev/null
via() { in_ns "$box" inspect "$1" | python3 -c 'import json,sys; print((json.load(sys.stdin)[0]["boot"].get("published") or {}).get("via"))'; }
[ "$(via bench-link)" = link ] || { echo "bench/net.sh: bench-link's port is not on its link: $(via bench-link)" >&2; exit 1; }
[ "$(via bench-passt)" = passt ] || { echo "bench/net.sh: bench-passt's port is not on passt (is passt installed?)" >&2; exit 1; }
url() { echo "http://127.0.0.1:$(in_ns "$box" port "$1" | sed 's/.*://')"; }
link=$(url bench-link); passt=$(url bench-passt); relay=$(url bench-relay)
ip=$(in_ns "$box" network inspect bench-net | python3 -c 'import json,sys; print([b["ip"] for b in json.load(sys.stdin)[0]["boxes"] if b["name"]=="bench-br"][0])')
br="http://$ip"
for u in "$link" "$passt" "$relay" "$br"; do
  for _ in $(seq 300); do in_ns curl -sf -m 5 -o /dev/null "$u/small" && break; sleep 0.3; done
  in_ns curl -sf -m 5 -o /dev/null "$u/small" || { echo "bench/net.sh: $u never answered" >&2; exit 1; }
done

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
tp() { in_ns curl -sf -m 120 -o /dev/null -w '%{speed_download}' "$1/big"; }         # bytes/s
lat() { in_ns curl -sf -m 10 -o /dev/null -w '%{time_starttransfer}' "$1/small"; }  # s, connect + request + first byte

t_li=(); t_pa=(); t_re=(); t_br=(); l_li=(); l_pa=(); l_re=(); l_br=()
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }
for i in $(seq "$runs"); do
  t_li+=("$(tp "$link")"); t_pa+=("$(tp "$passt")"); t_re+=("$(tp "$relay")"); t_br+=("$(tp "$br")")
  echo "run $i: link $(mb "${t_li[-1]}") MB/s, passt $(mb "${t_pa[-1]}") MB/s, bridged relay $(mb "${t_re[-1]}") MB/s, bridge direct $(mb "${t_br[-1]}") MB/s" >&2
done
for _ in $(seq $((runs * 10))); do
  l_li+=("$(lat "$link")"); l_pa+=("$(lat "$passt")"); l_re+=("$(lat "$relay")"); l_br+=("$(lat "$br")")
done
accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
python3 - "$(median "${t_li[@]}")" "$(median "${t_pa[@]}")" "$(median "${t_re[@]}")" "$(median "${t_br[@]}")" \
  "$(median "${l_li[@]}")" "$(median "${l_pa[@]}")" "$(median "${l_re[@]}")" "$(median "${l_br[@]}")" \
  "$accel" "$runs" "$size_mb" <<'EOF'
import sys
tl, tp, tr, tb, ll, lp, lr, lb = map(float, sys.argv[1:9])
accel, runs, size = sys.argv[9], sys.argv[10], sys.argv[11]
print(f"network ({accel}, {runs} x {size} MiB GETs, {int(runs)*10} small GETs, alternating):")
print(f"  throughput MB/s  link {tl/1e6:7.1f}   passt {tp/1e6:7.1f}   bridged relay {tr/1e6:7.1f}   bridge direct {tb/1e6:7.1f}")
print(f"    ratio to bridge direct: link {tl/tb:.3f}   passt {tp/tb:.3f}   bridged relay {tr/tb:.3f}   (link/passt {tl/tp:.2f})")
print(f"  latency ms       link {ll*1e3:7.2f}   passt {lp*1e3:7.2f}   bridged relay {lr*1e3:7.2f}   bridge direct {lb*1e3:7.2f}")
print(f"    ratio to bridge direct: link {ll/lb:.3f}   passt {lp/lb:.3f}   bridged relay {lr/lb:.3f}")
EOF
