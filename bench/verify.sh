#!/usr/bin/env bash
# Benchmark: reports verified per second by a3s-attestation against the sev crate (8.0.0,
# crypto_nossl), on real Milan, Genoa and Turin fixtures, with certificates parsed once.
#
# Usage: bench/verify.sh [criterion args...]     e.g. bench/verify.sh --quiet
#        ROUNDS=11 bench/verify.sh               (summary rounds, default 7)
#
# One `cargo bench` process runs the criterion groups (verify/<fixture>/<variant>, with
# elem/s throughput) and then a summary that times every variant again round-robin and
# prints reports/s and the ratios ours/sev (above 1 means we are faster). See the doc comment
# of attestation/benches/verify.rs for what each variant does per report.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

VERIFY_BENCH_ROUNDS="${ROUNDS:-7}" \
    exec cargo bench -p a3s-attestation --bench verify -- --noplot "$@"
