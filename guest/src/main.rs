//! `a3s-guest-init`: PID 1 of an A3S Box MicroVM. Build it static (scripts/build-guest-init).

fn main() {
    a3s_guest::main()
}
