//! Helpers: guest-init re-executed by an exec session as `/.a3s/init __cp-out PATH` or
//! `/.a3s/init __cp-in DEST NAME`, so copying needs no `tar` in the image (the stream format and
//! placement rules are [`a3s_vmm::copy`]); `__layer-out [--pause]` writes the box's changes as
//! an OCI layer ([`a3s_vmm::layer`]), with `--pause` while the workload is stopped, and `__idle` is the workload of a box that only serves exec
//! sessions (a build step).

use std::io::{BufWriter, Write};
use std::path::Path;

use a3s_vmm::copy::{self, GUEST_CP_IN, GUEST_CP_OUT};
use a3s_vmm::layer::{
    self, GUEST_IDLE, GUEST_LAYER_OUT, GUEST_LAYER_PAUSE, GUEST_OWNED, UPPER_MOUNT,
};

/// Runs a helper if `args` (argv without argv[0]) names one; returns its exit code.
pub(crate) fn helper(args: &[String]) -> Option<i32> {
    let result = match args {
        [cmd, path] if cmd == GUEST_CP_OUT => cp_out(Path::new(path)),
        [cmd, dest, name] if cmd == GUEST_CP_IN => cp_in(Path::new(dest), name),
        [cmd] if cmd == GUEST_LAYER_OUT => layer_out(),
        [cmd, opt] if cmd == GUEST_LAYER_OUT && opt == GUEST_LAYER_PAUSE => {
            let _paused = crate::procs::pause_workload();
            layer_out()
        }
        [cmd] if cmd == GUEST_IDLE => idle(),
        [cmd, ..] if cmd == GUEST_CP_OUT || cmd == GUEST_CP_IN => Err(std::io::Error::other(
            "usage: __cp-out PATH | __cp-in DEST NAME",
        )),
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn cp_out(src: &Path) -> std::io::Result<()> {
    let name = copy::base_name(src)?;
    let out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    copy::pack(src, &name, out)?.flush()
}

fn cp_in(dest: &Path, name: &str) -> std::io::Result<()> {
    copy::unpack(std::io::stdin().lock(), name, dest, true).map(drop)
}

fn layer_out() -> std::io::Result<()> {
    let out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    layer::pack_upper(Path::new(UPPER_MOUNT), GUEST_OWNED, out)?.flush()
}

/// Sleeps until a signal ends the process (the box is stopped by its owner).
fn idle() -> std::io::Result<()> {
    loop {
        std::thread::park();
    }
}
