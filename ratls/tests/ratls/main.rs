//! RA-TLS over real TCP on 127.0.0.1 with evidence from the simulated secure processor.

mod handshake;
mod support;
