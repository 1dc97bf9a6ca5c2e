#!/usr/bin/env bash
# Compose orchestration cost: `compose up -d` of three services (postgres with a health check
# and a volume, a python3 api depending on it being healthy, nginx published on a port,
# depending on the api) until all run and db is healthy, against starting the same three
# boxes by hand with `run -d` in sequence (waiting for db healthy before the api, as the
# dependency says). Real images from scripts/test-images. Everything runs in one private
# network namespace; runs alternate in one session; prints medians and the ratio.
#
#   bench/compose.sh [RUNS]   (default 3; A3S_BOX=path/to/a3s-box, default target/debug/a3s-box;
#                              needs root)
# Measured (2 cores, TCG, shared machine, 2 runs after a warm-up): compose up -d 32.8 s,
# run -d in sequence 32.7 s, ratio 1.002.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
source bench/home-lib.sh
bench_box compose debug
bench_home
ns=a3s-test-bench-compose-$$
work=$(mktemp -d)
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
cleanup() {
  in_ns "$box" compose -f "$work/compose.yaml" down -v >/dev/null 2>&1 || true
  in_ns "$box" rm -f seq-db seq-api seq-web >/dev/null 2>&1 || true
  in_ns "$box" network rm --force seq-net >/dev/null 2>&1 || true
  in_ns "$box" volume rm -f seq-data >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
  # A home this script made holds three loaded images: do not leave them behind.
  bench_home_cleanup
}
trap cleanup EXIT
in_ns ip link set lo up

declare -A ref
while read -r line; do
  name=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["name"])' "$line")
  archive=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["archive"])' "$line")
  ref[$name]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ref"])' "$line")
  "$box" load -i "$archive" >/dev/null
done < <(scripts/test-images nginx postgres python3)

api_cmd='import socket; s=socket.socket(); s.bind(("0.0.0.0",8000)); s.listen(4); print("up", flush=True); [c.close() for c, _ in iter(s.accept, None)]'
cat >"$work/compose.yaml" <<YAML
name: bench
services:
  db:
    image: ${ref[postgres]}
    volumes: ["data:/var/lib/postgresql"]
    healthcheck: {test: ["CMD", "pg_isready", "-h", "127.0.0.1"], interval: 1s, retries: 600}
  api:
    image: ${ref[python3]}
    command: ["python3", "-c", '$api_cmd']
    depends_on: {db: {condition: service_healthy}}
  web:
    image: ${ref[nginx]}
    ports: ["127.0.0.1:18081:80"]
    depends_on: [api]
volumes:
  data:
YAML

now() { date +%s.%N; }
healthy() { in_ns "$box" inspect "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["state"]; sys.exit(0 if s.get("health",{}).get("status")=="healthy" else 1)'; }
running() { in_ns "$box" inspect "$1" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0]["state"]["status"]=="running" else 1)'; }

compose_once() {
  local t0
  t0=$(now)
  in_ns "$box" compose -f "$work/compose.yaml" up -d 2>/dev/null
  running bench-web-1 && running bench-api-1 && healthy bench-db-1
  python3 -c "print($(now) - $t0)"
  in_ns "$box" compose -f "$work/compose.yaml" down -v >/dev/null 2>&1
}

sequence_once() {
  local t0
  t0=$(now)
  in_ns "$box" network create seq-net >/dev/null
  in_ns "$box" run -d --name seq-db --network seq-net --network-alias db -v seq-data:/var/lib/postgresql \
    --health-cmd 'pg_isready -h 127.0.0.1' --health-interval 1s --health-retries 600 "${ref[postgres]}" >/dev/null
  until healthy seq-db; do sleep 0.2; done
  in_ns "$box" run -d --name seq-api --network seq-net --network-alias api "${ref[python3]}" python3 -c "$api_cmd" >/dev/null
  in_ns "$box" run -d --name seq-web --network seq-net -p 127.0.0.1:18082:80 "${ref[nginx]}" >/dev/null
  running seq-api && running seq-web
  python3 -c "print($(now) - $t0)"
  in_ns "$box" rm -f seq-db seq-api seq-web >/dev/null
  in_ns "$box" network rm seq-net >/dev/null
  in_ns "$box" volume rm seq-data >/dev/null
}

# Warm-up, untimed: the first boot of each image builds its read-only root filesystem image
# (erofs + dm-verity, cached per digest), which would be charged to whichever side ran first.
sequence_once >/dev/null
c=() s=()
for i in $(seq "$runs"); do
  c+=("$(compose_once)")
  s+=("$(sequence_once)")
  echo "run $i: compose up -d ${c[-1]} s, run -d in sequence ${s[-1]} s" >&2
done
python3 - "${c[*]}" "${s[*]}" <<'PY'
import statistics, sys
c = [float(x) for x in sys.argv[1].split()]
s = [float(x) for x in sys.argv[2].split()]
mc, ms = statistics.median(c), statistics.median(s)
print(f"compose up -d to all healthy: median {mc:.2f} s over {len(c)} runs")
print(f"run -d in sequence (same three): median {ms:.2f} s")
print(f"ratio compose / sequence: {mc / ms:.3f}")
PY
