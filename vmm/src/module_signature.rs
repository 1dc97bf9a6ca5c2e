//! Kernel module signatures: the guest's modules are loaded without theirs.
//!
//! Debian signs each module (PKCS#7 appended after the ELF, `scripts/sign-file`). The guest
//! kernel checks that signature on every load but does not require it (no lockdown on our
//! machines, no `module.sig_enforce`), and the modules reach the guest inside the initrd, whose
//! bytes the host built (plain boxes) or the launch measurement covers (TEE boxes); the check
//! adds nothing there and, under TCG, costs tens of milliseconds per module on every boot.
//!
//! Layout at the end of a signed module (`include/linux/module_signature.h`):
//! `[signer][key id][signature] struct module_signature (12 bytes) "~Module signature appended~\n"`,
//! the struct ending in the big-endian signature length.

/// The marker the kernel looks for at a module's end.
const MAGIC: &[u8] = b"~Module signature appended~\n";

/// `sizeof(struct module_signature)`.
const INFO_LEN: usize = 12;

/// `ko` without its appended signature; unchanged when it has none or the trailer is damaged
/// (the kernel then judges it as it would have).
pub fn strip(mut ko: Vec<u8>) -> Vec<u8> {
    if let Some(len) = unsigned_len(&ko) {
        ko.truncate(len);
    }
    ko
}

/// The length of the module without its signature, if it carries a well-formed one.
fn unsigned_len(ko: &[u8]) -> Option<usize> {
    let body = ko.strip_suffix(MAGIC)?;
    let info_at = body.len().checked_sub(INFO_LEN)?;
    let info = &body[info_at..];
    let signer_len = usize::from(info[3]);
    let key_id_len = usize::from(info[4]);
    let sig_len =
        usize::try_from(u32::from_be_bytes([info[8], info[9], info[10], info[11]])).ok()?;
    info_at.checked_sub(sig_len.checked_add(signer_len)?.checked_add(key_id_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(elf: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut ko = elf.to_vec();
        ko.extend_from_slice(sig);
        // PKCS#7: algo, hash, id_type 2, no signer, no key id, padding, length.
        ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
        ko.extend_from_slice(&u32::try_from(sig.len()).unwrap().to_be_bytes());
        ko.extend_from_slice(MAGIC);
        ko
    }

    #[test]
    fn a_signed_module_loses_exactly_its_signature() {
        let elf = b"\x7fELF module body".to_vec();
        assert_eq!(strip(signed(&elf, &[0x30; 700])), elf);
    }

    #[test]
    fn unsigned_or_damaged_modules_are_left_alone() {
        let elf = b"\x7fELF module body".to_vec();
        assert_eq!(strip(elf.clone()), elf);
        // A signature longer than the file: not a trailer we understand.
        let mut bad = signed(&elf, &[1; 4]);
        let len_at = bad.len() - MAGIC.len() - 4;
        bad[len_at..len_at + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert_eq!(strip(bad.clone()), bad);
        // Only the marker.
        assert_eq!(strip(MAGIC.to_vec()), MAGIC.to_vec());
    }
}
