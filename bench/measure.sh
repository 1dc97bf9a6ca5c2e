#!/usr/bin/env bash
# Benchmark: `a3s-box measure` (SNP launch digest) against sev-snp-measure.
#
# Usage: bench/measure.sh [N]        (N runs per tool and scenario, default 20; or N=... env)
#
# Needs `sev-snp-measure` (pip install sev-snp-measure==0.0.13) and Debian's `ovmf` package.
# The only build step is `cargo run --release -p a3s-box -- measure`; the
# binary it built is then timed directly (process start + file reads + hashing), and `cargo run`
# itself is timed too, for reference. Each scenario first checks that both tools print the
# same digest.
set -euo pipefail

N="${N:-${1:-20}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v sev-snp-measure >/dev/null 2>&1; then
    echo "error: sev-snp-measure not found; run: pip install sev-snp-measure==0.0.13" >&2
    exit 1
fi
for f in /usr/share/OVMF/OVMF_CODE.fd /usr/share/OVMF/OVMF_CODE_4M.fd; do
    [[ -f "$f" ]] || { echo "error: $f missing; run: apt-get install -y ovmf" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# A real kernel/initrd when /boot has them, else random files of typical sizes.
kernel="$(ls /boot/vmlinuz-* 2>/dev/null | head -n1 || true)"
initrd="$(ls /boot/initrd.img-* 2>/dev/null | head -n1 || true)"
if [[ -z "$kernel" || ! -r "$kernel" ]]; then
    head -c $((12 << 20)) /dev/urandom >"$tmp/vmlinuz"
    kernel="$tmp/vmlinuz"
fi
if [[ -z "$initrd" || ! -r "$initrd" ]]; then
    head -c $((64 << 20)) /dev/urandom >"$tmp/initrd.img"
    initrd="$tmp/initrd.img"
fi
amdsev="attestation/tests/fixtures/measure/ovmf_AmdSev_suffix.bin"
append="console=ttyS0 root=/dev/vda1 ro dm-verity.roothash=4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076"

cargo_run=(cargo run --release -q -p a3s-box -- measure)
"${cargo_run[@]}" --help >/dev/null # the build
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
ours_bin="$target_dir/release/a3s-box"
ours=("$ours_bin" measure)

# mean_us CMD...: mean wall time of N runs of CMD, in microseconds.
mean_us() {
    local start end i
    start=$(date +%s%N)
    for ((i = 0; i < N; i++)); do "$@" >/dev/null; done
    end=$(date +%s%N)
    echo $(((end - start) / N / 1000))
}

ms() { awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; }

printf '%-58s %16s %14s %16s %8s\n' "scenario (N=$N)" "sev-snp-measure" "ours (binary)" "ours (cargo run)" "ratio"
bench() {
    local name="$1"
    shift
    local want got
    want="$(sev-snp-measure --mode snp "$@")"
    got="$("${ours[@]}" "$@")"
    if [[ "$want" != "$got" ]]; then
        echo "error: digests differ for $name: sev-snp-measure $want, ours $got" >&2
        exit 1
    fi
    local py bin cr
    py=$(mean_us sev-snp-measure --mode snp "$@")
    bin=$(mean_us "${ours[@]}" "$@")
    cr=$(mean_us "${cargo_run[@]}" "$@")
    printf '%-58s %16s %14s %16s %7sx\n' "$name" "$(ms "$py")" "$(ms "$bin")" "$(ms "$cr")" \
        "$(awk -v a="$py" -v b="$bin" 'BEGIN { printf "%.1f", a / b }')"
}

bench "Debian OVMF_CODE.fd (1.9 MiB), 4 vCPU EPYC-v4, no kernel" \
    --vcpus 4 --vcpu-type EPYC-v4 --ovmf /usr/share/OVMF/OVMF_CODE.fd
bench "Debian OVMF_CODE_4M.fd (3.5 MiB), 64 vCPU EPYC-Genoa" \
    --vcpus 64 --vcpu-type EPYC-Genoa --ovmf /usr/share/OVMF/OVMF_CODE_4M.fd
bench "Debian OVMF_CODE.fd, 4 vCPU ec2, no kernel" \
    --vcpus 4 --vmm-type ec2 --ovmf /usr/share/OVMF/OVMF_CODE.fd
bench "AmdSev OVMF + kernel $(($(stat -c %s "$kernel") >> 20)) MiB + initrd $(($(stat -c %s "$initrd") >> 20)) MiB, 4 vCPU Milan" \
    --vcpus 4 --vcpu-type EPYC-Milan --ovmf "$amdsev" \
    --kernel "$kernel" --initrd "$initrd" --append "$append"

echo
echo "ratio = sev-snp-measure / ours (binary). Debian's OVMF has no SNP_KERNEL_HASHES section, so"
echo "both tools refuse --kernel with it; direct boot is measured with the AmdSev OVMF fixture."
