#!/usr/bin/env bash
# Benchmark of the KBS's release path, in one run:
#
# 1. `GET /kbs/v0/resource` with a Bearer token (a real EAR token from one auth → attest of
#    a simulated guest; 64-byte resource) at 1, 8 and 64 keep-alive clients (wrk), for the
#    broker of BASE (default main: "before"), of this tree ("after") and, when TRUSTEE_KBS
#    names its binary, trustee's own KBS (same token: trustee trusts the JWK in the token's
#    header as its sample configuration does; its default resource policy), alternating per
#    client count: req/s, p50 and p99 latency, the server's thread count at the end of the
#    run, and the ratios (throughput above 1 and p99 below 1: better now / better than trustee).
# 2. Full auth → attest → resource round trips at 1, 8 and 64 concurrent clients without
#    and with the broker's caches (compiled policies, verified VEK chains), toggled inside
#    one process: p50, p99, attestations/s and the ratios (kbs/benches/round_trip.rs).
#
# Usage: bench/kbs.sh [SECONDS_PER_RUN]      default 20
#        BASE=<commit> bench/kbs.sh 10        compare against another revision
#
#        TRUSTEE_KBS=/path/to/trustee/target/release/kbs bench/kbs.sh   with trustee's KBS
#        (how to build it: bench/kbs-lib.sh)
set -euo pipefail

source "$(dirname "$0")/kbs-lib.sh"
kbs_bench_init kbs.sh
secs="${1:-20}"
base="${BASE:-main}"
build_examples resource_server "$base"

# broker BINARY: starts one of our brokers; sets server_pid, server_addr and token.
broker() {
    # A fresh file: the previous server's address must not be read before this one truncates it.
    rm -f "$work/server.out"
    "$1" >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    pids+=("$server_pid")
    token="$(wait_line "$work/server.out" "token " "$server_pid")"
    [ -n "$token" ] || { echo "broker did not start: $(cat "$work/server.err")" >&2; exit 1; }
    server_addr="$(wait_line "$work/server.out" "listening on " "$server_pid")"
}

# load PID ADDR TOKEN CLIENTS -> prints "req/s p50_ms p99_ms threads non2xx"
load() {
    local pid="$1" addr="$2" tok="$3" clients="$4" threads rate p50 p99 errors
    local wthreads=$((clients < 2 ? 1 : 2))
    wrk -t "$wthreads" -c "$clients" -d "${secs}s" --latency \
        -H "Authorization: Bearer $tok" \
        "http://$addr/kbs/v0/resource/default/key/1" >"$work/wrk.out"
    threads="$(awk '/^Threads/ {print $2}' "/proc/$pid/status")"
    rate="$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.out")")"
    errors="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")"
    echo "$rate $p50 $p99 $threads ${errors:-0}"
}

# run BINARY CLIENTS: one of our brokers under load.
run() {
    broker "$1"
    load "$server_pid" "$server_addr" "$token" "$2"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
}

# run_trustee CLIENTS: trustee's KBS under the same load, with a token freshly issued by
# our broker (tokens live five minutes).
run_trustee() {
    broker "$work/after"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    trustee_start
    if ! curl -sf -o /dev/null -H "Authorization: Bearer $token" \
        "http://$trustee_addr/kbs/v0/resource/default/key/1"; then
        echo "trustee's KBS refused the token: $(curl -s -H "Authorization: Bearer $token" \
            "http://$trustee_addr/kbs/v0/resource/default/key/1")" >&2
        exit 1
    fi
    load "$trustee_pid" "$trustee_addr" "$token" "$1"
    trustee_stop
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || b == "-") print "-"; else printf "%.2f", a / b }'; }

echo
echo "1. GET /kbs/v0/resource with a Bearer token, ${secs}s per run (before = $base, after = this tree, trustee = ${TRUSTEE_KBS:-not measured})"
printf '%-7s %10s %10s %10s %8s %8s | %7s %7s %7s | %7s %7s %7s %8s %8s | %5s %5s %5s\n' clients \
    before_r/s after_r/s trust_r/s aft/bef aft/tru b_p50 a_p50 t_p50 b_p99 a_p99 t_p99 \
    p99a/b p99a/t b_thr a_thr t_thr
for clients in 1 8 64; do
    read -r b_rate b_p50 b_p99 b_thr b_err < <(run "$work/before" "$clients")
    read -r a_rate a_p50 a_p99 a_thr a_err < <(run "$work/after" "$clients")
    t_rate=- t_p50=- t_p99=- t_thr=- t_err=0
    if [ -n "${TRUSTEE_KBS:-}" ]; then
        read -r t_rate t_p50 t_p99 t_thr t_err < <(run_trustee "$clients") || true
        [ -n "${t_rate:-}" ] || { echo "the trustee run failed" >&2; exit 1; }
    fi
    [ -n "${b_rate:-}" ] && [ -n "${a_rate:-}" ] || { echo "a broker run failed" >&2; exit 1; }
    if [ "$b_err" != 0 ] || [ "$a_err" != 0 ] || [ "$t_err" != 0 ]; then
        echo "non-2xx answers: before $b_err, after $a_err, trustee $t_err" >&2
        exit 1
    fi
    printf '%-7s %10s %10s %10s %7sx %7sx | %7s %7s %7s | %7s %7s %7s %7sx %7sx | %5s %5s %5s\n' \
        "$clients" "$b_rate" "$a_rate" "$t_rate" "$(ratio "$a_rate" "$b_rate")" \
        "$(ratio "$a_rate" "$t_rate")" "$b_p50" "$a_p50" "$t_p50" "$b_p99" "$a_p99" "$t_p99" \
        "$(ratio "$a_p99" "$b_p99")" "$(ratio "$a_p99" "$t_p99")" "$b_thr" "$a_thr" "$t_thr"
done
echo "(latencies in ms; aft/tru above 1 and p99a/t below 1: faster than trustee's KBS)"

echo
echo "2. auth -> attest -> resource round trips, without and with the caches (this tree)"
(cd "$root" && cargo bench --quiet -p a3s-kbs --bench round_trip 2>/dev/null)
