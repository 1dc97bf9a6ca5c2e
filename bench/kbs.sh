#!/usr/bin/env bash
# Benchmark of the KBS's release path, in one run:
#
# 1. `GET /kbs/v0/resource` with a Bearer token (a real EAR token from one auth → attest of
#    a simulated guest; 64-byte resource) at 1, 8 and 64 keep-alive clients (wrk), for the
#    broker of BASE (default main: "before") and of this tree ("after"), alternating per
#    client count: req/s, p50 and p99 latency, the server's thread count at the end of the
#    run, and the ratios after/before (throughput above 1 and p99 below 1: better now).
# 2. Full auth → attest → resource round trips at 1, 8 and 64 concurrent clients without
#    and with the broker's caches (compiled policies, verified VEK chains), toggled inside
#    one process: p50, p99, attestations/s and the ratios (kbs/benches/round_trip.rs).
#
# Usage: bench/kbs.sh [SECONDS_PER_RUN]      default 20
#        BASE=<commit> bench/kbs.sh 10        compare against another revision
#
# Trustee's own KBS cannot be built on these machines (its build needs sources from outside
# the registries they reach), so part 1 compares against our previous broker, which the
# issue measured side by side with trustee's.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-20}"
base="${BASE:-main}"
command -v wrk >/dev/null || { echo "bench/kbs.sh: wrk not installed (scripts/setup)" >&2; exit 1; }

work="$(mktemp -d /tmp/kbs-bench.XXXXXX)"
worktree="$work/base"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    git -C "$root" worktree remove --force "$worktree" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export CARGO_INCREMENTAL=0
export CARGO_TARGET_DIR="$root/target/bench-kbs"
echo "building the resource broker of $base and of this tree (release)..." >&2
git -C "$root" worktree add --detach --quiet "$worktree" "$base"
mkdir -p "$worktree/kbs/examples"
cp "$root/kbs/examples/resource_server.rs" "$worktree/kbs/examples/"
(cd "$worktree" && cargo build --quiet --release -p a3s-kbs --example resource_server)
cp "$CARGO_TARGET_DIR/release/examples/resource_server" "$work/before"
(cd "$root" && cargo build --quiet --release -p a3s-kbs --example resource_server)
cp "$CARGO_TARGET_DIR/release/examples/resource_server" "$work/after"

# wrk's latency figures ("812.00us", "3.10ms", "1.02s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n
    }'
}

# run BINARY CLIENTS -> prints "req/s p50_ms p99_ms threads non2xx"
run() {
    local bin="$1" clients="$2" out addr token pid threads rate p50 p99 errors
    out="$work/server.out"
    "$bin" >"$out" 2>"$work/server.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do
        token="$(sed -n 's/^token //p' "$out")"
        [ -n "$token" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$token" ] || { echo "broker did not start: $(cat "$work/server.err")" >&2; exit 1; }
    addr="$(sed -n 's/^listening on //p' "$out")"
    local wthreads=$((clients < 2 ? 1 : 2))
    wrk -t "$wthreads" -c "$clients" -d "${secs}s" --latency \
        -H "Authorization: Bearer $token" \
        "http://$addr/kbs/v0/resource/default/key/1" >"$work/wrk.out"
    threads="$(awk '/^Threads/ {print $2}' "/proc/$pid/status")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rate="$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.out")")"
    errors="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")"
    echo "$rate $p50 $p99 $threads ${errors:-0}"
}

echo
echo "1. GET /kbs/v0/resource with a Bearer token, ${secs}s per run (before = $base, after = this tree)"
printf '%-7s %11s %11s %7s %9s %9s %9s %9s %8s %9s %9s\n' clients before_r/s after_r/s ratio \
    b_p50_ms a_p50_ms b_p99_ms a_p99_ms p99_ratio b_threads a_threads
for clients in 1 8 64; do
    read -r b_rate b_p50 b_p99 b_thr b_err < <(run "$work/before" "$clients")
    read -r a_rate a_p50 a_p99 a_thr a_err < <(run "$work/after" "$clients")
    if [ "$b_err" != 0 ] || [ "$a_err" != 0 ]; then
        echo "non-2xx answers: before $b_err, after $a_err" >&2
        exit 1
    fi
    ratio="$(awk -v a="$a_rate" -v b="$b_rate" 'BEGIN { printf "%.2f", a / b }')"
    p99r="$(awk -v a="$a_p99" -v b="$b_p99" 'BEGIN { printf "%.2f", a / b }')"
    printf '%-7s %11s %11s %6sx %9s %9s %9s %9s %7sx %9s %9s\n' "$clients" "$b_rate" "$a_rate" \
        "$ratio" "$b_p50" "$a_p50" "$b_p99" "$a_p99" "$p99r" "$b_thr" "$a_thr"
done

echo
echo "2. auth -> attest -> resource round trips, without and with the caches (this tree)"
(cd "$root" && cargo bench --quiet -p a3s-kbs --bench round_trip 2>/dev/null)
