//! A minimal, strict DER reader for the few ASN.1 shapes AMD certificates use.
//!
//! x509-parser handles the certificate envelope; this reader handles the small values inside
//! AMD's extensions and the RSASSA-PSS parameters, where we want exact, minimal encodings and
//! no trailing bytes.

/// DER tag of INTEGER.
pub(crate) const TAG_INTEGER: u8 = 0x02;
/// DER tag of OCTET STRING.
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
/// DER tag of NULL.
pub(crate) const TAG_NULL: u8 = 0x05;
/// DER tag of OBJECT IDENTIFIER.
pub(crate) const TAG_OID: u8 = 0x06;
/// DER tag of IA5String.
pub(crate) const TAG_IA5_STRING: u8 = 0x16;
/// DER tag of a constructed SEQUENCE.
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// Context-specific constructed tag `[n]` (EXPLICIT tagging).
pub(crate) const fn context(n: u8) -> u8 {
    0xA0 | n
}

/// Reads consecutive DER TLVs from a byte slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element that must carry `tag` and returns its contents.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        let (&actual, after_tag) = self.rest.split_first().ok_or("unexpected end of data")?;
        if actual != tag {
            return Err("unexpected tag");
        }
        let (&first, after_len) = after_tag.split_first().ok_or("missing length")?;
        let (len, after_len) = match first {
            0x00..=0x7F => (usize::from(first), after_len),
            0x81 => {
                let (&b, rest) = after_len.split_first().ok_or("truncated length")?;
                if b < 0x80 {
                    return Err("non-minimal length");
                }
                (usize::from(b), rest)
            }
            0x82 => {
                let [hi, lo, rest @ ..] = after_len else {
                    return Err("truncated length");
                };
                let len = usize::from(*hi) << 8 | usize::from(*lo);
                if len < 0x100 {
                    return Err("non-minimal length");
                }
                (len, rest)
            }
            _ => return Err("unsupported length form"),
        };
        if after_len.len() < len {
            return Err("length exceeds data");
        }
        let (contents, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(contents)
    }

    /// Reads an element with `tag` only if it is the next one.
    pub(crate) fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, &'static str> {
        if self.peek_tag() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Succeeds only if every byte has been consumed.
    pub(crate) fn finish(self) -> Result<(), &'static str> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

/// Reads exactly one element with `tag` spanning all of `input`.
pub(crate) fn read_single(input: &[u8], tag: u8) -> Result<&[u8], &'static str> {
    let mut reader = Reader::new(input);
    let contents = reader.read(tag)?;
    reader.finish()?;
    Ok(contents)
}

/// Outcome of decoding a DER INTEGER that must be a small non-negative number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SmallUint {
    /// The value fits.
    Fits(u32),
    /// The value is valid DER but too large or negative; carries the encoded bytes in hex.
    OutOfRange(String),
}

/// Decodes the contents of a DER INTEGER as a non-negative integer that fits in a `u32`.
pub(crate) fn uint_contents(contents: &[u8]) -> Result<SmallUint, &'static str> {
    match contents {
        [] => Err("empty integer"),
        [0x00, next, ..] if next & 0x80 == 0 => Err("non-minimal integer"),
        [0xFF, next, ..] if next & 0x80 != 0 => Err("non-minimal integer"),
        [first, ..] if first & 0x80 != 0 => Ok(SmallUint::OutOfRange(hex::encode(contents))),
        _ => {
            let magnitude = contents.strip_prefix(&[0x00]).unwrap_or(contents);
            if magnitude.len() > 4 {
                return Ok(SmallUint::OutOfRange(hex::encode(contents)));
            }
            let value = magnitude
                .iter()
                .fold(0_u32, |acc, &b| acc << 8 | u32::from(b));
            Ok(SmallUint::Fits(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![TAG_OCTET_STRING, 0x81, 0x80];
        long.extend([0xAB; 0x80]);
        assert_eq!(read_single(&long, TAG_OCTET_STRING).unwrap().len(), 0x80);
        assert_eq!(
            read_single(&[0x02, 0x01, 0x07], TAG_INTEGER),
            Ok(&[7_u8][..])
        );
    }

    #[test]
    fn rejects_non_minimal_lengths_and_trailing_bytes() {
        assert!(read_single(&[0x02, 0x81, 0x01, 0x07], TAG_INTEGER).is_err());
        assert!(read_single(&[0x02, 0x82, 0x00, 0x01, 0x07], TAG_INTEGER).is_err());
        assert!(read_single(&[0x02, 0x01, 0x07, 0x00], TAG_INTEGER).is_err());
        assert!(read_single(&[0x02, 0x05, 0x07], TAG_INTEGER).is_err());
        assert!(read_single(&[0x04, 0x01, 0x07], TAG_INTEGER).is_err());
        assert!(read_single(&[], TAG_INTEGER).is_err());
    }

    #[test]
    fn decodes_small_unsigned_integers_strictly() {
        assert_eq!(uint_contents(&[0x00]), Ok(SmallUint::Fits(0)));
        assert_eq!(uint_contents(&[0x00, 0xD9]), Ok(SmallUint::Fits(217)));
        assert_eq!(uint_contents(&[0x01, 0x00]), Ok(SmallUint::Fits(256)));
        assert!(matches!(
            uint_contents(&[0x80]),
            Ok(SmallUint::OutOfRange(_))
        ));
        assert!(matches!(
            uint_contents(&[0x01, 0, 0, 0, 0]),
            Ok(SmallUint::OutOfRange(_))
        ));
        assert!(uint_contents(&[0x00, 0x05]).is_err());
        assert!(uint_contents(&[0xFF, 0x85]).is_err());
        assert!(uint_contents(&[]).is_err());
    }
}
