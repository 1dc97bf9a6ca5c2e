//! TCG's translation buffer: the host memory QEMU keeps the guest code it translated in.
//!
//! QEMU sizes it at 1 GiB for a system emulator and never gives any of it back: an idle busybox
//! box under TCG held 66 MiB of translated code (as much as its whole guest kernel used), and
//! the balloon cannot return it because it is QEMU's own memory, not the guest's. A bounded
//! buffer is flushed and refilled when full; an idle box translates little after boot.
//! `-accel tcg,tb-size=N` bounds it (MiB). KVM runs guest code natively and has no such buffer.

use crate::accel::Accel;
use crate::qemu::ConfigError;

/// Overrides the translation buffer's size in MiB (`0`: QEMU's own default, 1 GiB).
pub const TB_ENV: &str = "A3S_BOX_TCG_TB_MIB";

/// The default bound in MiB (see bench/footprint.sh for what it saves and costs).
pub const DEFAULT_TB_MIB: u32 = 32;

/// The translation buffer bound from [`TB_ENV`], else [`DEFAULT_TB_MIB`]; `None` for QEMU's
/// default.
///
/// # Errors
/// [`ConfigError::TbSize`] for a value that is not a whole number of MiB.
pub fn tb_mib_from_env() -> Result<Option<u32>, ConfigError> {
    parse(std::env::var(TB_ENV).ok().as_deref()).map_err(ConfigError::TbSize)
}

fn parse(v: Option<&str>) -> Result<Option<u32>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(Some(DEFAULT_TB_MIB)),
        Some(s) => match s.parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!(
                "{TB_ENV}={s:?} is not a size in MiB: use e.g. 32, or 0 for QEMU's default"
            )),
        },
    }
}

/// The `-accel` value for `accel` with the translation buffer bounded to `tb_mib`.
pub fn accel_arg(accel: Accel, tb_mib: Option<u32>) -> String {
    match (accel, tb_mib) {
        (Accel::Tcg, Some(n)) => format!("tcg,tb-size={n}"),
        _ => accel.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_bounded_by_default_and_only_under_tcg() {
        assert_eq!(parse(None), Ok(Some(DEFAULT_TB_MIB)));
        assert_eq!(parse(Some("64")), Ok(Some(64)));
        assert_eq!(parse(Some("0")), Ok(None));
        assert!(parse(Some("big")).unwrap_err().contains(TB_ENV));
        assert_eq!(accel_arg(Accel::Tcg, Some(32)), "tcg,tb-size=32");
        assert_eq!(accel_arg(Accel::Tcg, None), "tcg");
        assert_eq!(accel_arg(Accel::Kvm, Some(32)), "kvm");
    }
}
