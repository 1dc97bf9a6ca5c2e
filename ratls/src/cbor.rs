//! The deterministic CBOR subset RA-TLS evidence uses (RFC 8949 §4.2.1 "core deterministic
//! encoding"): unsigned integers, byte strings, text strings, arrays, maps and tags, every
//! length definite and in its shortest form. Anything else (negative integers, floats, simple
//! values, indefinite lengths, reserved additional information, over-long heads) is an error,
//! so one value has exactly one encoding and the parser never guesses.

use crate::evidence::ParseError;

/// CBOR major types (RFC 8949 §3.1).
pub(crate) const UINT: u8 = 0;
pub(crate) const BYTES: u8 = 2;
pub(crate) const TEXT: u8 = 3;
pub(crate) const ARRAY: u8 = 4;
pub(crate) const MAP: u8 = 5;
pub(crate) const TAG: u8 = 6;

fn major_name(major: u8) -> &'static str {
    match major {
        0 => "unsigned integer",
        1 => "negative integer",
        2 => "byte string",
        3 => "text string",
        4 => "array",
        5 => "map",
        6 => "tag",
        _ => "float or simple value",
    }
}

/// Reads items from a buffer, front to back, checking the deterministic encoding rules.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    /// The offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or(ParseError::Truncated { offset: self.pos })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// Reads an item head of major type `want`, returning its argument.
    fn head(&mut self, want: u8, what: &'static str) -> Result<u64, ParseError> {
        let offset = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        if major != want {
            return Err(ParseError::WrongType {
                offset,
                expected: what,
                found: major_name(major),
            });
        }
        let info = initial & 0x1F;
        let (arg, min) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (be(self.take(2)?), 0x100),
            26 => (be(self.take(4)?), 0x1_0000),
            27 => (be(self.take(8)?), 0x1_0000_0000),
            31 => {
                return Err(ParseError::NotDeterministic {
                    offset,
                    why: "indefinite length",
                })
            }
            _ => {
                return Err(ParseError::NotDeterministic {
                    offset,
                    why: "reserved additional information",
                })
            }
        };
        if arg < min {
            return Err(ParseError::NotDeterministic {
                offset,
                why: "length or value not in its shortest form",
            });
        }
        Ok(arg)
    }

    fn len(&mut self, major: u8, what: &'static str) -> Result<usize, ParseError> {
        let offset = self.pos;
        let n = self.head(major, what)?;
        usize::try_from(n).map_err(|_| ParseError::Truncated { offset })
    }

    pub(crate) fn tag(&mut self) -> Result<u64, ParseError> {
        self.head(TAG, "tag")
    }

    pub(crate) fn uint(&mut self, what: &'static str) -> Result<u64, ParseError> {
        self.head(UINT, what)
    }

    pub(crate) fn array(&mut self, what: &'static str) -> Result<usize, ParseError> {
        self.len(ARRAY, what)
    }

    pub(crate) fn map(&mut self, what: &'static str) -> Result<usize, ParseError> {
        self.len(MAP, what)
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let n = self.len(BYTES, what)?;
        self.take(n)
    }

    pub(crate) fn text(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        let offset = self.pos;
        let n = self.len(TEXT, what)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| ParseError::InvalidUtf8 { offset })
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), ParseError> {
        if self.pos != self.input.len() {
            return Err(ParseError::TrailingBytes { offset: self.pos });
        }
        Ok(())
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Appends an item head in its shortest form.
pub(crate) fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    // The match arms bound `arg`, so each narrowing below is exact.
    #[allow(clippy::cast_possible_truncation)]
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xFF => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xFFFF => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_in_shortest_form() {
        for arg in [
            0,
            23,
            24,
            0xFF,
            0x100,
            0xFFFF,
            0x1_0000,
            0xFFFF_FFFF,
            1 << 32,
        ] {
            let mut out = Vec::new();
            head(&mut out, UINT, arg);
            let mut r = Reader::new(&out);
            assert_eq!(r.uint("n").unwrap(), arg);
            r.finish().unwrap();
        }
        let mut out = Vec::new();
        head(&mut out, BYTES, 1184);
        assert_eq!(out, [0x59, 0x04, 0xA0]);
    }

    #[test]
    fn rejects_over_long_heads() {
        // 24 encoded in two bytes is fine; 23 in two bytes is not.
        assert!(Reader::new(&[0x18, 24]).uint("n").is_ok());
        for input in [
            &[0x18, 23][..],
            &[0x19, 0x00, 0xFF],
            &[0x1A, 0, 0, 0xFF, 0xFF],
            &[0x1B, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert!(matches!(
                Reader::new(input).uint("n"),
                Err(ParseError::NotDeterministic { offset: 0, .. })
            ));
        }
    }

    #[test]
    fn rejects_indefinite_and_reserved_lengths() {
        for input in [[0x5F], [0x9F], [0x1C], [0x1E]] {
            let major = input[0] >> 5;
            let err = Reader::new(&input).head(major, "x").unwrap_err();
            assert!(
                matches!(err, ParseError::NotDeterministic { .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn names_the_type_it_found() {
        let err = Reader::new(&[0x20]).bytes("report").unwrap_err();
        assert!(matches!(
            err,
            ParseError::WrongType {
                expected: "report",
                found: "negative integer",
                ..
            }
        ));
    }

    #[test]
    fn rejects_lengths_past_the_end() {
        assert!(matches!(
            Reader::new(&[0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).bytes("b"),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x43, 1, 2]).bytes("b"),
            Err(ParseError::Truncated { offset: 1 })
        ));
    }
}
