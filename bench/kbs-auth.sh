#!/usr/bin/env bash
# Benchmark: sustained POST /kbs/v0/auth rate at 1, 8 and 64 keep-alive clients (wrk), while
# the sessions every request creates pile up for the whole run, for main's session store
# ("before", built from a `git worktree` of main in this run), this tree's ("after"), a
# floor (this tree's serving path answering a fixed body, no KBS work) and,
# when TRUSTEE_KBS names its binary, trustee's own KBS (sessions in memory, its fastest
# store). Runs alternate per client count; prints req/s, each server's CPU time per request
# (user + system, from /proc: what a request costs the server whatever else the machine is
# doing; req/s at 1 client is mostly how fast an idle vCPU wakes up on this kind of VM), each
# server's RSS at the end of its run, refused requests, and the ratios after/before and
# after/trustee (above 1: faster, or cheaper for the CPU ratio trust/after).
#
# Usage: bench/kbs-auth.sh [SECONDS_PER_RUN]      default 60 (a minute of piling up)
#        BASE=<commit> bench/kbs-auth.sh 10        compare against another revision
#        TRUSTEE_KBS=/path/to/trustee/target/release/kbs bench/kbs-auth.sh
#        (how to build trustee's KBS: bench/kbs-lib.sh)
set -euo pipefail

source "$(dirname "$0")/kbs-lib.sh"
kbs_bench_init kbs-auth.sh
secs="${1:-60}"
base="${BASE:-main}"
build_examples auth_server "$base"
# The floor: the same serving path (runtimes, hyper, axum) answering a fixed body, so the
# figures show how much of a request is the KBS's own work and how much HTTP and the kernel.
(cd "$root" && cargo build --quiet --release -p a3s-kbs --example floor_server)
cp "$CARGO_TARGET_DIR/release/examples/floor_server" "$work/floor"

cat > "$work/auth.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"version":"0.4.0","tee":"snp","extra-params":""}'
wrk.headers["Content-Type"] = "application/json"
LUA

# cpu_ticks PID: user + system clock ticks the process has used (every thread).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# load PID ADDR CLIENTS -> prints "req/s rss_kib non2xx cpu_us_per_request"
load() {
    local pid="$1" addr="$2" clients="$3" rate rss errors ticks requests per_request
    local threads=$((clients < 2 ? 1 : 2))
    ticks="$(cpu_ticks "$pid")"
    wrk -t "$threads" -c "$clients" -d "${secs}s" -s "$work/auth.lua" "http://$addr/kbs/v0/auth" >"$work/wrk.out"
    ticks=$(($(cpu_ticks "$pid") - ticks))
    rss="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
    rate="$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")"
    requests="$(awk '/requests in/ {print $1}' "$work/wrk.out")"
    errors="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")"
    per_request="$(awk -v t="$ticks" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')"
    echo "$rate $rss ${errors:-0} $per_request"
}

# run BINARY CLIENTS: one of our brokers.
run() {
    local pid addr
    # A fresh file: the previous server's address must not be read before this one truncates it.
    rm -f "$work/server.out"
    "$1" >"$work/server.out" 2>/dev/null &
    pid=$!
    pids+=("$pid")
    addr="$(wait_line "$work/server.out" "listening on " "$pid")"
    [ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
    load "$pid" "$addr" "$2"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_trustee() {
    trustee_start
    # The same request must be a valid /auth for trustee too, or the run measures errors.
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
        --data '{"version":"0.4.0","tee":"snp","extra-params":""}' \
        "http://$trustee_addr/kbs/v0/auth" || { echo "trustee refused /auth" >&2; exit 1; }
    load "$trustee_pid" "$trustee_addr" "$1"
    trustee_stop
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || b == "-") print "-"; else printf "%.2f", a / b }'; }

echo "POST /kbs/v0/auth, ${secs}s per run (before = $base, after = this tree, trustee = ${TRUSTEE_KBS:-not measured})"
printf '%-7s %10s %10s %10s %10s %8s %8s %8s | %11s %11s %11s | %8s %8s %8s\n' clients before_r/s \
    after_r/s trust_r/s floor_r/s aft/bef aft/tru aft/flo b_rss a_rss t_rss b_err a_err t_err
cpu_rows=()
for clients in 1 8 64; do
    read -r b_rate b_rss b_err b_cpu < <(run "$work/before" "$clients")
    read -r a_rate a_rss a_err a_cpu < <(run "$work/after" "$clients")
    read -r f_rate _ _ f_cpu < <(run "$work/floor" "$clients")
    t_rate=- t_rss=- t_err=- t_cpu=-
    if [ -n "${TRUSTEE_KBS:-}" ]; then
        read -r t_rate t_rss t_err t_cpu < <(run_trustee "$clients") || true
        [ -n "${t_rate:-}" ] || { echo "the trustee run failed" >&2; exit 1; }
    fi
    [ -n "${b_rate:-}" ] && [ -n "${a_rate:-}" ] || { echo "a broker run failed" >&2; exit 1; }
    printf '%-7s %10s %10s %10s %10s %7sx %7sx %7sx | %8sKiB %8sKiB %8sKiB | %8s %8s %8s\n' "$clients" \
        "$b_rate" "$a_rate" "$t_rate" "$f_rate" "$(ratio "$a_rate" "$b_rate")" \
        "$(ratio "$a_rate" "$t_rate")" "$(ratio "$a_rate" "$f_rate")" \
        "$b_rss" "$a_rss" "$t_rss" "$b_err" "$a_err" "$t_err"
    cpu_rows+=("$(printf '%-7s %10s %10s %10s %10s %7sx %7sx' "$clients" "$b_cpu" "$a_cpu" "$t_cpu" \
        "$f_cpu" "$(ratio "$b_cpu" "$a_cpu")" "$(ratio "$t_cpu" "$a_cpu")")")
done
echo "(${secs}s per run; sessions pile up for the whole run; *_err = non-2xx answers)"
echo
echo "server CPU per request, µs (user + system of every thread; above 1: after is cheaper)"
printf '%-7s %10s %10s %10s %10s %8s %8s\n' clients before after trustee floor bef/aft tru/aft
printf '%s\n' "${cpu_rows[@]}"
