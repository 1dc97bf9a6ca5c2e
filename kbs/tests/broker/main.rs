//! Integration tests of the broker: every endpoint and error kind through `app(state)`,
//! real TCP through our own client, trustee wire formats, PostgreSQL replicas.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod caches;
mod endpoints;
mod postgres;
mod support;
mod tcp;
mod trustee_policy;
mod wire;
