//! PEM text to DER blocks.

use x509_parser::error::PEMError;
use x509_parser::pem::Pem;

use super::CertError;

/// The label of the only PEM blocks accepted.
const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Decodes every PEM block in `text` and returns their DER contents.
///
/// Lines outside blocks are ignored; CRLF line ends are accepted; a block with another label
/// than `CERTIFICATE` is an error (fail closed).
pub(crate) fn certificate_blocks(text: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let mut blocks = Vec::new();
    for (index, block) in Pem::iter_from_buffer(text).enumerate() {
        let block = match block {
            Ok(block) => block,
            Err(PEMError::MissingHeader) => break,
            Err(source) => return Err(CertError::Pem { index, source }),
        };
        if block.label != CERTIFICATE_LABEL {
            return Err(CertError::PemLabel {
                index,
                label: block.label,
            });
        }
        blocks.push(block.contents);
    }
    Ok(blocks)
}
