//! The `a3s-box` command.
fn main() {}
