//! Integration tests of `a3s_attestation::measure` against the real `sev-snp-measure` CLI.
//!
//! Needs `sev-snp-measure` (PyPI, 0.0.13) on `PATH` or in `$SEV_SNP_MEASURE`, and Debian's
//! `ovmf` package (`/usr/share/OVMF/`). Missing tools make the test fail, never pass.

#[cfg(test)]
mod crosscheck;
