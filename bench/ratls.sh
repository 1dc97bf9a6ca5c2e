#!/usr/bin/env bash
# Benchmark: an RA-TLS connection (TLS 1.3 handshake with evidence verification, then the
# exporter-bound freshness exchange, simulated SEV-SNP evidence) against a plain rustls
# TLS 1.3 handshake with the same key type (P-384), both over loopback TCP in one process.
#
# Usage: bench/ratls.sh [criterion args...]      e.g. bench/ratls.sh --quiet
#        ROUNDS=9 bench/ratls.sh                 (summary rounds, default 5)
#
# Prints criterion's estimates for handshake/plain_tls13_p384 and handshake/ratls_p384, then
# a summary with connections per second and the ratio of time per connection (ratls/plain).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

RATLS_BENCH_ROUNDS="${ROUNDS:-5}" \
    exec cargo bench -p a3s-ratls --bench handshake -- --noplot "$@"
