//! End-to-end tests driving the real `a3s-box` binary.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod attest;
mod audit;
mod basics;
mod boot_failures;
mod boxes;
mod bridge;
mod build;
mod clock;
mod commands;
mod compose;
mod cri;
// issue 16: pod networking through CNI
mod cri_cni;
// issue 16: pod containers' security contexts, pod sysctls
mod cri_security;
mod cri_stats;
mod cri_tee;
mod disk;
mod hardening;
mod health;
mod image;
mod inject;
mod kbs;
mod layers;
mod measure;
mod net;
mod parity;
mod perf;
mod predict;
mod real_images;
mod reaper;
// issue 22: starting plain boxes from a saved VM
mod restore;
mod rootfs;
mod security;
mod signals;
mod simulate;
mod support;
mod tee;
mod volumes;
