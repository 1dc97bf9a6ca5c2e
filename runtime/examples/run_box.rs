//! A minimal front end over the engine: what a CRI server or `compose up` does to run a box.
//!
//! ```text
//! cargo build -p a3s-box && scripts/build-guest-init
//! A3S_HOME=/tmp/a3s cargo run -p a3s-runtime --example run_box -- echo hello
//! ```
//!
//! The monitor process is the `a3s-box` binary (`A3S_BOX_BIN`, default: beside this example's
//! target directory).

use a3s_runtime::boxes::logs::LogRecord;
use a3s_runtime::boxes::{BoxRecord, CreateRequest, DEFAULT_MEM_MIB};
use a3s_runtime::engine::{CreateBox, Engine, RunEvents, RunMode};
use a3s_runtime::A3sHome;

/// Prints the workload's output as it comes.
struct Print;

impl RunEvents for Print {
    fn created(&mut self, rec: &BoxRecord) {
        eprintln!("created {} ({})", rec.name, rec.image_digest);
    }

    fn output(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        use std::io::Write;
        for r in records {
            std::io::stdout().write_all(&r.bytes())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let home = A3sHome::from_env()?;
    let monitor = match std::env::var_os("A3S_BOX_BIN") {
        Some(p) => p.into(),
        // target/<profile>/examples/run_box -> target/<profile>/a3s-box
        None => std::env::current_exe()?
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("a3s-box"))
            .ok_or("cannot find a3s-box; set A3S_BOX_BIN")?,
    };
    let engine = Engine::open(&home).with_monitor(monitor);
    let req = CreateBox {
        request: CreateRequest {
            image: "busybox".into(),
            args: if args.is_empty() {
                vec!["echo".into(), "hello from a box".into()]
            } else {
                args
            },
            vcpus: 1,
            mem_mib: u64::from(DEFAULT_MEM_MIB),
            memory_limit_bytes: None,
            pod_memory_bytes: None,
            auto_remove: true,
            ..CreateRequest::default()
        },
        // The home's signature policy would go here; `None` requires no signature.
        signatures: None,
    };
    let out = engine.run(&req, RunMode::Foreground, &mut Print)?;
    let code = out.exit_code.unwrap_or(0);
    eprintln!("box {} exited with {code}", out.record.name);
    std::process::exit(code);
}
