//! Building a report from field values: used by the simulator (which then signs it) and to
//! re-encode reports that arrive as JSON.

use super::{offset, GuestPolicy, KeyInfo, Report, ReportError, TcbVersion, REPORT_SIZE};

/// Every field of an attestation report, for encoding. Reserved bytes are always zero.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // field names are the spec's, see the table in `report`
pub struct ReportFields {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub sig_algo: u32,
    pub current_tcb: TcbVersion,
    pub platform_info: u64,
    pub key_info: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: TcbVersion,
    /// CPUID family, model, stepping; must be `None` for version 2 and `Some` after.
    pub cpuid: Option<(u8, u8, u8)>,
    pub chip_id: [u8; 64],
    pub committed_tcb: TcbVersion,
    /// (major, minor, build)
    pub current_version: (u8, u8, u8),
    /// (major, minor, build)
    pub committed_version: (u8, u8, u8),
    pub launch_tcb: TcbVersion,
    /// Version 5 only.
    pub launch_mit_vector: Option<u64>,
    /// Version 5 only.
    pub current_mit_vector: Option<u64>,
    /// Little-endian R, 72 bytes.
    pub signature_r: [u8; 72],
    /// Little-endian S, 72 bytes.
    pub signature_s: [u8; 72],
}

impl ReportFields {
    /// Encodes the fields and parses the result, so what is built obeys every parse rule.
    ///
    /// # Errors
    /// [`ReportError`] when a value breaks a rule (version, algorithm, reserved bits, or a
    /// version-specific field given for a version without it).
    pub fn encode(&self) -> Result<Report, ReportError> {
        GuestPolicy::new(self.policy)?;
        KeyInfo::new(self.key_info)?;
        let mut b = [0u8; REPORT_SIZE];
        put(&mut b, offset::VERSION, &self.version.to_le_bytes());
        put(&mut b, offset::GUEST_SVN, &self.guest_svn.to_le_bytes());
        put(&mut b, offset::POLICY, &self.policy.to_le_bytes());
        put(&mut b, offset::FAMILY_ID, &self.family_id);
        put(&mut b, offset::IMAGE_ID, &self.image_id);
        put(&mut b, offset::VMPL, &self.vmpl.to_le_bytes());
        put(&mut b, offset::SIG_ALGO, &self.sig_algo.to_le_bytes());
        put(
            &mut b,
            offset::CURRENT_TCB,
            &self.current_tcb.0.to_le_bytes(),
        );
        put(
            &mut b,
            offset::PLATFORM_INFO,
            &self.platform_info.to_le_bytes(),
        );
        put(&mut b, offset::KEY_INFO, &self.key_info.to_le_bytes());
        put(&mut b, offset::REPORT_DATA, &self.report_data);
        put(&mut b, offset::MEASUREMENT, &self.measurement);
        put(&mut b, offset::HOST_DATA, &self.host_data);
        put(&mut b, offset::ID_KEY_DIGEST, &self.id_key_digest);
        put(&mut b, offset::AUTHOR_KEY_DIGEST, &self.author_key_digest);
        put(&mut b, offset::REPORT_ID, &self.report_id);
        put(&mut b, offset::REPORT_ID_MA, &self.report_id_ma);
        put(
            &mut b,
            offset::REPORTED_TCB,
            &self.reported_tcb.0.to_le_bytes(),
        );
        match (self.version, self.cpuid) {
            (2, None) => {}
            (v, Some((f, m, s))) if v >= 3 => put(&mut b, offset::CPUID_FAM_ID, &[f, m, s]),
            _ => {
                return Err(ReportError::ReservedNonZero {
                    offset: offset::CPUID_FAM_ID,
                })
            }
        }
        put(&mut b, offset::CHIP_ID, &self.chip_id);
        put(
            &mut b,
            offset::COMMITTED_TCB,
            &self.committed_tcb.0.to_le_bytes(),
        );
        let (maj, min, build) = self.current_version;
        put(&mut b, offset::CURRENT_VERSION, &[build, min, maj]);
        let (maj, min, build) = self.committed_version;
        put(&mut b, offset::COMMITTED_VERSION, &[build, min, maj]);
        put(&mut b, offset::LAUNCH_TCB, &self.launch_tcb.0.to_le_bytes());
        let v5 = self.version >= 5;
        for (value, at) in [
            (self.launch_mit_vector, offset::LAUNCH_MIT_VECTOR),
            (self.current_mit_vector, offset::CURRENT_MIT_VECTOR),
        ] {
            match value {
                Some(v) if v5 => put(&mut b, at, &v.to_le_bytes()),
                Some(_) => return Err(ReportError::ReservedNonZero { offset: at }),
                None => {}
            }
        }
        put(&mut b, offset::SIGNATURE_R, &self.signature_r);
        put(&mut b, offset::SIGNATURE_S, &self.signature_s);
        Report::from_bytes(&b)
    }
}

fn put(b: &mut [u8; REPORT_SIZE], at: usize, value: &[u8]) {
    b[at..at + value.len()].copy_from_slice(value);
}

impl Report {
    /// Every field of this report, for re-encoding with changes (e.g. by the simulator).
    pub fn fields(&self) -> ReportFields {
        ReportFields {
            version: self.version(),
            guest_svn: self.guest_svn(),
            policy: self.policy().raw(),
            family_id: self.family_id(),
            image_id: self.image_id(),
            vmpl: self.vmpl(),
            sig_algo: self.signature_algo(),
            current_tcb: self.current_tcb(),
            platform_info: self.platform_info().0,
            key_info: self.key_info().raw(),
            report_data: self.report_data(),
            measurement: self.measurement(),
            host_data: self.host_data(),
            id_key_digest: self.id_key_digest(),
            author_key_digest: self.author_key_digest(),
            report_id: self.report_id(),
            report_id_ma: self.report_id_ma(),
            reported_tcb: self.reported_tcb(),
            cpuid: self.cpuid(),
            chip_id: self.chip_id(),
            committed_tcb: self.committed_tcb(),
            current_version: self.current_version(),
            committed_version: self.committed_version(),
            launch_tcb: self.launch_tcb(),
            launch_mit_vector: self.launch_mit_vector(),
            current_mit_vector: self.current_mit_vector(),
            signature_r: self.signature_r(),
            signature_s: self.signature_s(),
        }
    }
}
