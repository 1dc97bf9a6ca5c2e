//! `/dev/sev-guest` ioctls (linux/include/uapi/linux/sev-guest.h). The crate's only `unsafe`.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use super::HwError;
use crate::key_request::KEY_REQUEST_V1_SIZE;

/// `struct snp_guest_request_ioctl`: 32 bytes with C layout.
#[repr(C)]
#[derive(Debug, Default)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    /// firmware error in the low 32 bits, VMM error in the high 32 bits
    exitinfo2: u64,
}

const _: () = assert!(std::mem::size_of::<GuestRequest>() == 32);

/// `_IOWR('S', nr, struct snp_guest_request_ioctl)`.
const fn iowr(nr: u64) -> u64 {
    (3 << 30) | ((std::mem::size_of::<GuestRequest>() as u64) << 16) | ((b'S' as u64) << 8) | nr
}
/// SNP_GET_REPORT = 0xC0205300.
pub(crate) const SNP_GET_REPORT: u64 = iowr(0);
/// SNP_GET_DERIVED_KEY = 0xC0205301.
pub(crate) const SNP_GET_DERIVED_KEY: u64 = iowr(1);

/// `struct snp_report_req`: user data, VMPL, 28 reserved bytes (96 bytes).
#[repr(C)]
struct ReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}
const _: () = assert!(std::mem::size_of::<ReportReq>() == 96);

/// `struct snp_report_resp`: 4000 bytes: status u32, report size u32, 24 reserved, report.
const REPORT_RESP_LEN: usize = 4000;
/// `struct snp_derived_key_resp`: 64 bytes: status u32, 28 reserved, key[32].
const KEY_RESP_LEN: usize = 64;

/// An open `/dev/sev-guest`.
#[derive(Debug)]
pub(crate) struct SevGuest {
    file: File,
}

impl SevGuest {
    pub(crate) fn open(path: &std::path::Path) -> Result<Self, HwError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| HwError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { file })
    }

    fn request(
        &self,
        op: u64,
        name: &'static str,
        req: *const u8,
        resp: *mut u8,
    ) -> Result<(), HwError> {
        let mut ioctl = GuestRequest {
            msg_version: 1,
            req_data: req as u64,
            resp_data: resp as u64,
            exitinfo2: 0,
        };
        // SAFETY: `ioctl` is a valid snp_guest_request_ioctl whose req/resp pointers point to
        // live buffers of the sizes the kernel expects for `op` (checked by the callers' types);
        // the kernel writes only within them and into `exitinfo2`.
        #[allow(clippy::cast_possible_truncation)]
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), op as libc::c_ulong, &mut ioctl) };
        if rc < 0 {
            return Err(HwError::Ioctl {
                op: name,
                source: std::io::Error::last_os_error(),
                fw_error: ioctl.exitinfo2 & 0xFFFF_FFFF,
                vmm_error: ioctl.exitinfo2 >> 32,
            });
        }
        Ok(())
    }

    /// SNP_GET_REPORT: the raw report bytes.
    pub(crate) fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Vec<u8>, HwError> {
        let req = ReportReq {
            user_data: *report_data,
            vmpl,
            rsvd: [0; 28],
        };
        let mut resp = vec![0u8; REPORT_RESP_LEN];
        self.request(
            SNP_GET_REPORT,
            "SNP_GET_REPORT",
            std::ptr::from_ref(&req).cast(),
            resp.as_mut_ptr(),
        )?;
        parse_report_response(&resp)
    }

    /// SNP_GET_DERIVED_KEY with the 0x20-byte uAPI request (message version 1).
    pub(crate) fn derived_key(
        &self,
        msg_key_req: &[u8; KEY_REQUEST_V1_SIZE],
    ) -> Result<[u8; 32], HwError> {
        let mut resp = [0u8; KEY_RESP_LEN];
        self.request(
            SNP_GET_DERIVED_KEY,
            "SNP_GET_DERIVED_KEY",
            msg_key_req.as_ptr(),
            resp.as_mut_ptr(),
        )?;
        let status = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]);
        if status != 0 {
            return Err(HwError::FirmwareStatus {
                op: "MSG_KEY_REQ",
                status,
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&resp[32..64]);
        Ok(key)
    }
}

/// Reads a MSG_REPORT_RSP: status, report size, then the report.
pub(crate) fn parse_report_response(resp: &[u8]) -> Result<Vec<u8>, HwError> {
    let word = |o: usize| {
        resp.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let status = word(0).ok_or(HwError::ShortResponse)?;
    if status != 0 {
        return Err(HwError::FirmwareStatus {
            op: "MSG_REPORT_REQ",
            status,
        });
    }
    let size = word(4).ok_or(HwError::ShortResponse)? as usize;
    resp.get(32..32 + size)
        .map(<[u8]>::to_vec)
        .ok_or(HwError::ShortResponse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_uapi() {
        assert_eq!(SNP_GET_REPORT, 0xC020_5300);
        assert_eq!(SNP_GET_DERIVED_KEY, 0xC020_5301);
    }

    #[test]
    fn reads_report_response() {
        let mut resp = vec![0u8; REPORT_RESP_LEN];
        resp[4..8].copy_from_slice(&1184u32.to_le_bytes());
        resp[32] = 5;
        let report = parse_report_response(&resp).unwrap();
        assert_eq!(report.len(), 1184);
        assert_eq!(report[0], 5);
        resp[0] = 0x16; // INVALID_PARAM
        assert!(matches!(
            parse_report_response(&resp),
            Err(HwError::FirmwareStatus { status: 0x16, .. })
        ));
        resp[0] = 0;
        resp[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            parse_report_response(&resp),
            Err(HwError::ShortResponse)
        ));
    }
}
