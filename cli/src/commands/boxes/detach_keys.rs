//! Docker's detach keys (`--detach-keys`, default `ctrl-p,ctrl-q`): a key sequence typed
//! into an attached terminal that detaches it, leaving the box running.

/// Docker's default sequence.
pub(super) const DEFAULT: &str = "ctrl-p,ctrl-q";

/// A `--detach-keys` value that is not a sequence of keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid detach keys {0:?}: use comma-separated keys, each a single character or \
     ctrl-<a-z, @, [, \\, ], ^, _>, like ctrl-p,ctrl-q"
)]
pub(crate) struct BadDetachKeys(String);

/// Parses Docker's format: `a`, `ctrl-a`, `ctrl-@`, … separated by commas.
///
/// # Errors
/// [`BadDetachKeys`].
pub(super) fn parse(spec: &str) -> Result<Vec<u8>, BadDetachKeys> {
    let bad = || BadDetachKeys(spec.to_owned());
    let mut keys = Vec::new();
    for key in spec.split(',') {
        let byte = match key.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => ctrl(c.as_bytes()[0]).ok_or_else(bad)?,
            Some(_) => return Err(bad()),
            None if key.len() == 1 && key.is_ascii() => key.as_bytes()[0],
            None => return Err(bad()),
        };
        keys.push(byte);
    }
    Ok(keys)
}

/// The control code of `ctrl-<c>`.
fn ctrl(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a' + 1),
        b'@' => Some(0),
        b'[' | b'\\' | b']' | b'^' | b'_' => Some(c - b'@'),
        _ => None,
    }
}

/// Watches a byte stream for the sequence. Bytes that might start it are held back until the
/// sequence completes (then dropped) or breaks (then passed on), as Docker does.
#[derive(Debug)]
pub(super) struct Detector {
    keys: Vec<u8>,
    held: usize,
}

/// What to do with one chunk of input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// Pass these bytes on.
    Forward(Vec<u8>),
    /// The sequence was typed: pass these bytes (typed before it) on, then detach.
    Detach(Vec<u8>),
}

impl Detector {
    pub(super) fn new(keys: Vec<u8>) -> Self {
        Self { keys, held: 0 }
    }

    pub(super) fn scan(&mut self, input: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return Scan::Detach(out);
                }
                continue;
            }
            // The sequence broke: what was held is ordinary input, and `b` may start it anew.
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    self.held = 0;
                    return Scan::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Scan::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_spellings_and_refuses_the_rest() {
        assert_eq!(parse(DEFAULT), Ok(vec![0x10, 0x11]));
        assert_eq!(parse("ctrl-@,ctrl-[,ctrl-_"), Ok(vec![0x00, 0x1b, 0x1f]));
        assert_eq!(parse("a,ctrl-z"), Ok(vec![b'a', 0x1a]));
        for bad in [
            "",
            "ctrl-",
            "ctrl-pq",
            "ctrl-1",
            "ab",
            "ctrl-p,,ctrl-q",
            "é",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_is_not_forwarded() {
        let mut d = Detector::new(parse(DEFAULT).unwrap());
        assert_eq!(d.scan(b"ls\r\x10"), Scan::Forward(b"ls\r".to_vec()));
        assert_eq!(d.scan(b"\x11rest"), Scan::Detach(Vec::new()));
    }

    #[test]
    fn a_broken_sequence_is_forwarded_whole() {
        let mut d = Detector::new(parse(DEFAULT).unwrap());
        assert_eq!(d.scan(b"\x10x"), Scan::Forward(b"\x10x".to_vec()));
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p is input, the last two detach.
        assert_eq!(d.scan(b"\x10\x10\x11"), Scan::Detach(b"\x10".to_vec()));
    }

    #[test]
    fn without_keys_everything_passes() {
        let mut d = Detector::new(Vec::new());
        assert_eq!(d.scan(b"\x10\x11"), Scan::Forward(b"\x10\x11".to_vec()));
    }
}
