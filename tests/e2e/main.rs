//! End-to-end tests driving the real `a3s-box` binary.

mod attest;
mod basics;
mod measure;
mod simulate;
mod support;
