//! Integration tests: a real streaming server on 127.0.0.1, a backend that runs real host
//! processes (pipes or a pty) and connects to real TCP servers, and client-go's own
//! remotecommand and portforward code (tests/tools/streamclient) as the peer.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::cast_possible_truncation)] // test payloads are built from truncated counters

mod crictl;
mod exec;
mod hostile;
mod portforward;
mod support;
