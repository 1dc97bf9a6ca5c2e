//! Design notes and measurements (documentation only).
//!
//! Filled in with the benchmark figures; see the README of the repository for usage.
