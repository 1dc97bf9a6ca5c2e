//! `cp` helpers: guest-init re-executed by an exec session as `/.a3s/init __cp-out PATH` or
//! `/.a3s/init __cp-in DEST NAME`, so copying needs no `tar` in the image. The stream format and
//! placement rules are [`a3s_vmm::copy`].

use std::io::{BufWriter, Write};
use std::path::Path;

use a3s_vmm::copy::{self, GUEST_CP_IN, GUEST_CP_OUT};

/// Runs a helper if `args` (argv without argv[0]) names one; returns its exit code.
pub(crate) fn helper(args: &[String]) -> Option<i32> {
    let result = match args {
        [cmd, path] if cmd == GUEST_CP_OUT => cp_out(Path::new(path)),
        [cmd, dest, name] if cmd == GUEST_CP_IN => cp_in(Path::new(dest), name),
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
