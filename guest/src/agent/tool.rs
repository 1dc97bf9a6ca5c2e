//! `/run/a3s/bin/a3s-guest`: the workload's view of the agent (guest-init invoked under the
//! name `a3s-guest`).
//!
//! ```text
//! a3s-guest seal   < plaintext > sealed.b64     # one line of standard base64
//! a3s-guest unseal < sealed.b64 > plaintext
//! ```
//!
//! Exit status 0 on success, 1 when sealing or unsealing fails, 2 for usage errors.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use zeroize::Zeroizing;

use super::seal::{self, Failure, MAX_PAYLOAD, OP_SEAL, OP_UNSEAL};

/// The name the tool is installed under (argv[0]'s file name).
pub(crate) const TOOL_NAME: &str = "a3s-guest";
/// Where the tool is installed in TEE boxes.
pub(crate) const TOOL_PATH: &str = "/run/a3s/bin/a3s-guest";

const USAGE: &str = "usage: a3s-guest seal < plaintext > sealed.b64\n       a3s-guest unseal < sealed.b64 > plaintext\n\nSeals data to this box's TEE identity (its launch measurement and policy): only a box with the same measurement on the same (simulated) chip can unseal it.";

/// Makes `link` (normally [`TOOL_PATH`]) run this executable: a symlink to the file behind
/// `/proc/self/exe`, or a copy of it when that path is not reachable.
///
/// # Errors
/// When neither can be made.
pub(crate) fn install(link: &Path) -> anyhow::Result<()> {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use anyhow::Context;

    if let Some(dir) = link.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    let _ = fs::remove_file(link);
    let exe = fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    if exe.is_absolute() && exe.is_file() {
        std::os::unix::fs::symlink(&exe, link)
            .with_context(|| format!("linking {} to {}", link.display(), exe.display()))?;
    } else {
        fs::copy("/proc/self/exe", link)
            .with_context(|| format!("copying this executable to {}", link.display()))?;
        fs::set_permissions(link, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", link.display()))?;
    }
    Ok(())
}

/// Whether this process was started as the tool rather than as PID 1.
pub(crate) fn invoked_as_tool(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == TOOL_NAME)
}

/// Runs the tool with `args` (without argv[0]) on stdin and stdout.
pub(crate) fn main(args: &[OsString]) -> ExitCode {
    let op = match args.first().and_then(|a| a.to_str()) {
        Some("seal") if args.len() == 1 => Op::Seal,
        Some("unseal") if args.len() == 1 => Op::Unseal,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = io::stdout().lock();
    match run(
        op,
        Path::new(seal::SOCKET),
        &mut io::stdin().lock(),
        &mut stdout,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("a3s-guest: {} failed: {message}", op.name());
            ExitCode::from(1)
        }
    }
}

/// What the tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Plaintext in, base64 envelope out.
    Seal,
    /// Base64 envelope in, plaintext out.
    Unseal,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Seal => "seal",
            Self::Unseal => "unseal",
        }
    }
}

/// Reads `input`, asks the agent at `socket`, writes the result to `output`.
///
/// # Errors
/// The message to print after "`<op>` failed: ".
pub(crate) fn run(
    op: Op,
    socket: &Path,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<(), String> {
    let mut data = Zeroizing::new(Vec::new());
    // One byte over the limit tells "too long" from "exactly the limit".
    let limit = u64::try_from(MAX_PAYLOAD * 2).unwrap_or(u64::MAX);
    input
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let out = match op {
        Op::Seal => {
            if data.len() > MAX_PAYLOAD {
                return Err(format!(
                    "the input is longer than the {MAX_PAYLOAD}-byte limit"
                ));
            }
            let envelope = request(socket, OP_SEAL, &data)?;
            let mut line = base64::engine::general_purpose::STANDARD.encode(&*envelope);
            line.push('\n');
            Zeroizing::new(line.into_bytes())
        }
        Op::Unseal => {
            let text: Vec<u8> = data
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let envelope = base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map_err(|e| {
                    format!("the input is not the base64 output of `a3s-guest seal` ({e})")
                })?;
            request(socket, OP_UNSEAL, &envelope)?
        }
    };
    output
        .write_all(&out)
        .and_then(|()| output.flush())
        .map_err(|e| format!("writing standard output: {e}"))
}

fn request(socket: &Path, op: u8, payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    seal::request(socket, op, payload).map_err(|e| match e {
        Failure::Refused(m) => m,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::agent::testing::{SimHost, MEASUREMENT};

    #[test]
    fn install_links_the_running_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("bin/a3s-guest");
        install(&link).unwrap();
        let target = std::fs::read_link(&link).unwrap();
        assert_eq!(target, std::env::current_exe().unwrap());
        // Installing again replaces the link.
        install(&link).unwrap();
    }

    #[test]
    fn dispatches_on_the_program_name() {
        assert!(invoked_as_tool(Some(&"/run/a3s/bin/a3s-guest".into())));
        assert!(invoked_as_tool(Some(&"a3s-guest".into())));
        assert!(!invoked_as_tool(Some(&"/.a3s/init".into())));
        assert!(!invoked_as_tool(Some(&"a3s-guest-init".into())));
        assert!(!invoked_as_tool(None));
    }

    #[test]
    fn seal_prints_one_base64_line_that_unseal_reverses() {
        let tmp = tempfile::tempdir().unwrap();
        let host = SimHost::start(MEASUREMENT);
        let socket = tmp.path().join("agent.sock");
        seal::serve(&socket, Arc::new(host.attester(Duration::from_secs(30)))).unwrap();

        let mut sealed = Vec::new();
        run(
            Op::Seal,
            &socket,
            &mut &b"line one\nline two"[..],
            &mut sealed,
        )
        .unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text
            .trim_end()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')));

        let mut plain = Vec::new();
        run(Op::Unseal, &socket, &mut sealed.as_slice(), &mut plain).unwrap();
        assert_eq!(plain, b"line one\nline two");

        let err = run(
            Op::Unseal,
            &socket,
            &mut &b"@@not base64@@"[..],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.contains("not the base64"), "{err}");
        let mut flipped = base64::engine::general_purpose::STANDARD
            .decode(text.trim_end())
            .unwrap();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x80;
        let flipped = base64::engine::general_purpose::STANDARD.encode(flipped);
        let err = run(
            Op::Unseal,
            &socket,
            &mut flipped.as_bytes(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err, seal::UNSEAL_AUTH_FAILED);
    }

    #[test]
    fn outside_a_tee_box_the_tool_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run(
            Op::Seal,
            &tmp.path().join("agent.sock"),
            &mut &b"x"[..],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.contains("not a TEE box"), "{err}");
    }
}
