//! RA-TLS: certificates carrying SEV-SNP evidence and rustls verifiers for them.
//!
//! Not built yet: tracked by issue 4.
