#!/usr/bin/env bash
# Benchmark: pull + unpack of one image by `a3s-box pull` against `skopeo copy` + `umoci unpack`,
# measured in the same run against the same local registry, plus unpack throughput (MiB/s of
# uncompressed layer tar) for both.
#
# Usage: bench/image.sh [N]     (N runs per tool, default 5; or N=... env)
#
# Needs docker-registry, skopeo, umoci (Debian packages, see scripts/setup). Builds
# `a3s-box` with --release once. The image: busybox plus a copy of a large directory of real
# files (default /usr/lib/python3.11, override with SRC=...), two gzip layers, built by umoci.
set -euo pipefail

N="${N:-${1:-5}}"
SRC="${SRC:-/usr/lib/python3.11}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
for t in docker-registry skopeo umoci; do
    command -v "$t" >/dev/null || { echo "error: $t not found; run scripts/setup" >&2; exit 1; }
done
[[ -d "$SRC" ]] || { echo "error: SRC=$SRC is not a directory" >&2; exit 1; }

tmp="$(mktemp -d)"
rpid=""
cleanup() { [[ -n "$rpid" ]] && kill "$rpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

cargo build --release -q -p a3s-box
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
box="$target_dir/release/a3s-box"

# Registry on a free loopback port.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$tmp/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $tmp/reg}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
docker-registry serve "$tmp/config.yml" >"$tmp/registry.log" 2>&1 &
rpid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; do sleep 0.05; done

# Image: busybox layer + a layer with $SRC.
umoci init --layout "$tmp/oci" >/dev/null
umoci new --image "$tmp/oci:b" >/dev/null
umoci config --image "$tmp/oci:b" --os linux --architecture amd64 --config.entrypoint /bin/sh >/dev/null
umoci unpack --image "$tmp/oci:b" "$tmp/bundle" >/dev/null
mkdir -p "$tmp/bundle/rootfs/bin" && cp /bin/busybox "$tmp/bundle/rootfs/bin/" && ln -s busybox "$tmp/bundle/rootfs/bin/sh"
umoci repack --image "$tmp/oci:b" "$tmp/bundle" >/dev/null && rm -rf "$tmp/bundle"
umoci unpack --image "$tmp/oci:b" "$tmp/bundle" >/dev/null
mkdir -p "$tmp/bundle/rootfs/usr/lib" && cp -a "$SRC" "$tmp/bundle/rootfs/usr/lib/"
umoci repack --image "$tmp/oci:b" "$tmp/bundle" >/dev/null && rm -rf "$tmp/bundle"
ref="127.0.0.1:$port/bench/img:1"
skopeo copy --quiet --dest-tls-verify=false "oci:$tmp/oci:b" "docker://$ref"

# Uncompressed bytes of all layers (what unpacking reads).
raw_bytes=0
compressed=0
for l in $(skopeo inspect --raw --tls-verify=false "docker://$ref" | python3 -c 'import json,sys; print(" ".join(x["digest"] for x in json.load(sys.stdin)["layers"]))'); do
    f="$tmp/oci/blobs/sha256/${l#sha256:}"
    compressed=$((compressed + $(stat -c %s "$f")))
    raw_bytes=$((raw_bytes + $(gzip -dc "$f" | wc -c)))
done
files="$(find "$SRC" | wc -l)"

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }

ours_pull=() base_pull=() ours_unpack=() base_unpack=()
for ((i = 0; i < N; i++)); do
    # a3s-box: registry -> verified blobs -> unpacked rootfs.
    home="$tmp/home$i"
    t0=$(now_ns)
    A3S_HOME="$home" "$box" pull -q "$ref" >/dev/null
    t1=$(now_ns)
    ours_pull+=($(((t1 - t0) / 1000000)))
    # Unpack only: drop the rootfs cache, pull again (all blobs present locally).
    rm -rf "$home"/images/v1/rootfs/*
    t0=$(now_ns)
    A3S_HOME="$home" "$box" pull -q "$ref" >/dev/null
    t1=$(now_ns)
    ours_unpack+=($(((t1 - t0) / 1000000)))
    rm -rf "$home"

    # Baseline: skopeo copy to an OCI layout, umoci unpack.
    t0=$(now_ns)
    skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$tmp/base$i:img"
    t1=$(now_ns)
    umoci unpack --image "$tmp/base$i:img" "$tmp/bundle$i" >/dev/null
    t2=$(now_ns)
    base_pull+=($(((t2 - t0) / 1000000)))
    base_unpack+=($(((t2 - t1) / 1000000)))
    rm -rf "$tmp/base$i" "$tmp/bundle$i"
done

op=$(printf '%s\n' "${ours_pull[@]}" | median)
bp=$(printf '%s\n' "${base_pull[@]}" | median)
ou=$(printf '%s\n' "${ours_unpack[@]}" | median)
bu=$(printf '%s\n' "${base_unpack[@]}" | median)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rate() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.1f MiB/s", (b / 1048576) / (ms / 1000) }'; }

echo "image: 2 layers, $(mib "$compressed") MiB gzip, $(mib "$raw_bytes") MiB uncompressed, $files files from $SRC; N=$N, medians"
printf '%-44s %12s %12s %8s\n' "" "a3s-box" "skopeo+umoci" "ratio"
printf '%-44s %9s ms %9s ms %7sx\n' "pull + unpack (registry on 127.0.0.1)" "$op" "$bp" "$(awk -v a="$bp" -v b="$op" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %9s ms %9s ms %7sx\n' "unpack only (blobs local)" "$ou" "$bu" "$(awk -v a="$bu" -v b="$ou" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %12s %12s\n' "unpack throughput (uncompressed tar)" "$(rate "$raw_bytes" "$ou")" "$(rate "$raw_bytes" "$bu")"
echo "(ratio > 1: a3s-box faster; a3s-box 'unpack only' includes process start, store lookup and the manifest round trip)"
