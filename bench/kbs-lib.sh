# Shared by bench/kbs.sh and bench/kbs-auth.sh (sourced, not run): a work directory removed
# at exit together with the servers the script started, release builds of one KBS example
# at a base revision ("before") and at this tree ("after"), and trustee's own KBS as a third
# contender when TRUSTEE_KBS names its binary.
#
# Trustee's KBS is built from its repository (https://github.com/confidential-containers/trustee),
# with its git dependencies fetched from wherever they can be reached:
#   cargo build --release -p kbs --no-default-features --features coco-as-builtin
# and passed as TRUSTEE_KBS=path/to/target/release/kbs. Without it the scripts say loudly
# that the trustee comparison was not run. At trustee 78962cd, kbs/Cargo.toml turns on
# `all-verifier` for x86_64 whatever the features asked; where the TDX/SGX/CCA SDKs are not
# available, change that one word to `snp-verifier` (the figures compare the SNP path).

kbs_bench_init() {
    local name="$1"
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    command -v wrk >/dev/null || { echo "bench/$name: wrk not installed (scripts/setup)" >&2; exit 1; }
    command -v curl >/dev/null || { echo "bench/$name: curl not installed" >&2; exit 1; }
    work="$(mktemp -d "/tmp/$name.XXXXXX")"
    worktree="$work/base"
    pids=()
    trap kbs_bench_cleanup EXIT
    if [ -n "${TRUSTEE_KBS:-}" ]; then
        [ -x "$TRUSTEE_KBS" ] || { echo "bench/$name: TRUSTEE_KBS=$TRUSTEE_KBS is not an executable" >&2; exit 1; }
    else
        echo "bench/$name: TRUSTEE_KBS is not set: trustee's KBS is NOT measured in this run" >&2
    fi
}

kbs_bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    git -C "$root" worktree remove --force "$worktree" 2>/dev/null || true
    rm -rf "$work"
}

# build_examples EXAMPLE BASE: $work/before (BASE) and $work/after (this tree), release.
build_examples() {
    local example="$1" base="$2"
    export CARGO_INCREMENTAL=0
    export CARGO_TARGET_DIR="$root/target/bench-kbs"
    echo "building the $example of $base and of this tree (release)..." >&2
    git -C "$root" worktree add --detach --quiet "$worktree" "$base"
    mkdir -p "$worktree/kbs/examples"
    # The example uses only the crate's public API, so this tree's copy builds at BASE too.
    cp "$root/kbs/examples/$example.rs" "$worktree/kbs/examples/"
    (cd "$worktree" && cargo build --quiet --release -p a3s-kbs --example "$example") || {
        echo "bench: the $example example does not build at $base (it uses a newer API, e.g." >&2
        echo "serve_per_core); pick a BASE that has it" >&2
        exit 1
    }
    cp "$CARGO_TARGET_DIR/release/examples/$example" "$work/before"
    (cd "$root" && cargo build --quiet --release -p a3s-kbs --example "$example")
    cp "$CARGO_TARGET_DIR/release/examples/$example" "$work/after"
}

# wrk's latency figures ("812.00us", "3.10ms", "1.02s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n
    }'
}

# wait_line FILE PREFIX PID: the rest of FILE's first line starting with PREFIX, once the
# server PID printed it (empty if PID died or a minute passed).
wait_line() {
    local file="$1" prefix="$2" pid="$3" v=""
    for _ in $(seq 600); do
        v="$(sed -n "s/^$prefix//p" "$file" | head -n 1)"
        [ -n "$v" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$v"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# trustee_start: starts trustee's KBS (HTTP on a free loopback port, built-in attestation
# service, sessions in memory, its default resource policy, header JWKs trusted for tokens as
# its sample configuration does) with the 64-byte resource default/key/1 uploaded through its
# admin API. Sets trustee_pid and trustee_addr.
trustee_start() {
    local dir="$work/trustee" port
    rm -rf "$dir"
    mkdir -p "$dir/storage" "$dir/as"
    port="$(free_port)"
    cat >"$dir/kbs.toml" <<EOF
session_storage_type = "Memory"

[http_server]
sockets = ["127.0.0.1:$port"]
insecure_http = true

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"
work_dir = "$dir/as"

[attestation_service.attestation_token_broker]
duration_min = 5

[attestation_service.rvps_config]
type = "BuiltIn"

[admin]
authorization_mode = "InsecureAllowAll"

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "$dir/storage"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
EOF
    RUST_LOG=error "$TRUSTEE_KBS" --config-file "$dir/kbs.toml" >"$dir/out" 2>&1 &
    trustee_pid=$!
    pids+=("$trustee_pid")
    trustee_addr="127.0.0.1:$port"
    head -c 64 /dev/zero | tr '\0' 'B' >"$dir/resource"
    for _ in $(seq 600); do
        if curl -sf -X POST --data-binary @"$dir/resource" \
            "http://$trustee_addr/kbs/v0/resource/default/key/1" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$trustee_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "trustee's KBS did not start: $(tail -n 20 "$dir/out")" >&2
    exit 1
}

trustee_stop() {
    kill "$trustee_pid" 2>/dev/null || true
    wait "$trustee_pid" 2>/dev/null || true
}
