//! `a3s-guest-init`: PID 1 of an A3S Box MicroVM. Build it static (scripts/build-guest-init).
//! Invoked as `a3s-guest` (TEE boxes link `/run/a3s/bin/a3s-guest` to it), it is the
//! workload's sealing tool instead.

fn main() -> std::process::ExitCode {
    if a3s_guest::invoked_as_tool() {
        return a3s_guest::tool_main();
    }
    a3s_guest::main()
}
