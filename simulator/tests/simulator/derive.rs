//! Derived keys: determinism, field selection and the firmware's rules.

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::report::trustee::Evidence;
use a3s_attestation::report::{Tcb, TcbLayout, TcbVersion};
use a3s_attestation::Product;
use a3s_simulator::{
    DeriveError, GuestContext, GuestFieldSelect, KeyRequest, KeySelect, ReportRequest, RootKey,
    Simulator,
};

use crate::support::{home, sim};

fn guest() -> GuestContext {
    let mut guest = GuestContext::launch([0xAB; 48])
        .with_policy(0x3_0000)
        .unwrap();
    guest.family_id = [1; 16];
    guest.image_id = [2; 16];
    guest.guest_svn = 5;
    guest.launch_mit_vector = 0b11;
    guest
}

fn committed() -> Tcb {
    sim().default_chip().config().tcb
}

/// A request selecting `select`, with SVN and TCB at their maximum.
fn request(select: GuestFieldSelect) -> KeyRequest {
    let mut req = KeyRequest::new(select);
    req.guest_svn = 5;
    req.tcb_version = committed().encode(TcbLayout::Legacy);
    req.launch_mit_vector = 0b11;
    req
}

fn key(guest: &GuestContext, req: &KeyRequest) -> [u8; 32] {
    *sim().derive_key(guest, req).unwrap().as_bytes()
}

/// Changes of the field behind each select bit: (bit, change to the guest or the request).
type Change = fn(&mut GuestContext, &mut KeyRequest);
fn changes() -> Vec<(GuestFieldSelect, Change)> {
    vec![
        (GuestFieldSelect::POLICY, |g, _| {
            g.policy = a3s_attestation::report::GuestPolicy::new(0x3_0001).unwrap()
        }),
        (GuestFieldSelect::IMAGE_ID, |g, _| g.image_id[15] ^= 1),
        (GuestFieldSelect::FAMILY_ID, |g, _| g.family_id[0] ^= 1),
        (GuestFieldSelect::MEASUREMENT, |g, _| g.measurement[47] ^= 1),
        (GuestFieldSelect::GUEST_SVN, |_, r| r.guest_svn = 4),
        (GuestFieldSelect::TCB_VERSION, |_, r| {
            let mut tcb = r.tcb_version.decode(TcbLayout::Legacy);
            tcb.microcode -= 1;
            r.tcb_version = tcb.encode(TcbLayout::Legacy);
        }),
        (GuestFieldSelect::LAUNCH_MIT_VECTOR, |_, r| {
            r.launch_mit_vector = 0b01
        }),
    ]
}

#[test]
fn same_inputs_give_the_same_key_across_processes() {
    let g = guest();
    let req = request(GuestFieldSelect::ALL);
    let first = key(&g, &req);
    assert_eq!(first, key(&g, &req));
    let reopened = Simulator::open_or_create(home(), Product::Milan).unwrap();
    assert_eq!(&first, reopened.derive_key(&g, &req).unwrap().as_bytes());
}

#[test]
fn every_selected_field_changes_the_key() {
    let base_guest = guest();
    let base_req = request(GuestFieldSelect::ALL);
    let base = key(&base_guest, &base_req);
    for (bit, change) in changes() {
        let (mut g, mut r) = (base_guest.clone(), base_req);
        change(&mut g, &mut r);
        assert_ne!(
            key(&g, &r),
            base,
            "changing the field of {bit:?} must change the key"
        );
        // Selecting only that field: still sensitive to it.
        let (mut g, mut r) = (
            base_guest.clone(),
            KeyRequest {
                field_select: bit,
                ..base_req
            },
        );
        let only = key(&g, &r);
        change(&mut g, &mut r);
        assert_ne!(key(&g, &r), only, "{bit:?} alone");
    }
}

#[test]
fn unselected_fields_do_not_matter() {
    let base_guest = guest();
    for (bit, change) in changes() {
        // Everything but this bit selected.
        let select = GuestFieldSelect::new(GuestFieldSelect::ALL.raw() & !bit.raw()).unwrap();
        let base_req = request(select);
        let base = key(&base_guest, &base_req);
        let (mut g, mut r) = (base_guest.clone(), base_req);
        change(&mut g, &mut r);
        assert_eq!(key(&g, &r), base, "{bit:?} is not selected");
    }
    // The report id and host data are never mixed into VCEK-rooted keys.
    let mut other = guest();
    other.report_id = [9; 32];
    other.host_data = [9; 32];
    let req = request(GuestFieldSelect::ALL);
    assert_eq!(key(&guest(), &req), key(&other, &req));
}

#[test]
fn root_key_select_and_vmpl_change_the_key() {
    let g = guest();
    let vcek = request(GuestFieldSelect::MEASUREMENT);
    let vmrk = KeyRequest {
        root_key: RootKey::Vmrk,
        ..vcek
    };
    assert_ne!(key(&g, &vcek), key(&g, &vmrk));
    // The VMRK is the guest's own: another guest (another report id) gets another key.
    let mut other = g.clone();
    other.report_id[0] ^= 1;
    assert_ne!(key(&g, &vmrk), key(&other, &vmrk));
    assert_eq!(key(&g, &vcek), key(&other, &vcek));
    assert_ne!(key(&g, &vcek), key(&g, &KeyRequest { vmpl: 1, ..vcek }));
    assert_eq!(
        key(&g, &vcek),
        key(
            &g,
            &KeyRequest {
                key_select: KeySelect::Vcek,
                ..vcek
            }
        )
    );
}

#[test]
fn refuses_requests_that_break_the_firmware_rules() {
    let sim = sim();
    let mut g = guest();
    g.vmpl = 1;
    let req = KeyRequest {
        vmpl: 1,
        ..request(GuestFieldSelect::ALL)
    };
    assert!(sim.derive_key(&g, &req).is_ok());
    let err = |r: KeyRequest| sim.derive_key(&g, &r).unwrap_err();
    assert_eq!(
        err(KeyRequest { vmpl: 0, ..req }),
        DeriveError::VmplBelowGuest {
            requested: 0,
            guest: 1
        }
    );
    assert_eq!(
        err(KeyRequest { vmpl: 4, ..req }),
        DeriveError::VmplOutOfRange(4)
    );
    assert_eq!(
        err(KeyRequest {
            guest_svn: 6,
            ..req
        }),
        DeriveError::SvnAboveGuest {
            requested: 6,
            guest: 5
        }
    );
    assert_eq!(
        err(KeyRequest {
            key_select: KeySelect::Vlek,
            ..req
        }),
        DeriveError::NoVlek
    );
    let committed = committed();
    for above in [
        Tcb {
            microcode: committed.microcode + 1,
            ..committed
        },
        Tcb {
            snp: committed.snp + 1,
            ..committed
        },
        Tcb {
            bootloader: committed.bootloader + 1,
            ..committed
        },
        Tcb {
            tee: committed.tee + 1,
            ..committed
        },
    ] {
        let r = KeyRequest {
            tcb_version: above.encode(TcbLayout::Legacy),
            ..req
        };
        assert!(
            matches!(err(r), DeriveError::TcbAboveCommitted { .. }),
            "{above}"
        );
    }
    // Reserved TCB bytes set (byte 3 is reserved in the Milan layout).
    let reserved = TcbVersion(req.tcb_version.0 | 1 << 24);
    assert!(matches!(
        err(KeyRequest {
            tcb_version: reserved,
            ..req
        }),
        DeriveError::TcbAboveCommitted { .. }
    ));
    // Lower TCBs and SVNs are allowed.
    assert!(sim
        .derive_key(
            &g,
            &KeyRequest {
                guest_svn: 0,
                tcb_version: TcbVersion(0),
                ..req
            }
        )
        .is_ok());
}

#[test]
fn derived_keys_never_print() {
    let k = sim()
        .derive_key(&guest(), &request(GuestFieldSelect::NONE))
        .unwrap();
    assert_eq!(format!("{k:?}"), "DerivedKey([redacted])");
    let rsp = k.to_response();
    assert_eq!(&rsp[..0x20], &[0; 0x20]);
    assert_eq!(&rsp[0x20..], k.as_bytes());
    assert!(!format!("{:?}", sim().default_chip()).contains(&hex::encode(k.as_bytes())));
    assert!(format!("{:?}", sim().default_chip()).contains("[redacted]"));
}

/// A simulator-backed [`Attester`]: the simulator takes the very request type the hardware
/// attester sends, so it can stand in for the hardware without conversions.
struct SimAttester<'a> {
    sim: &'a Simulator,
    guest: GuestContext,
}

impl Attester for SimAttester<'_> {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let request = ReportRequest {
            vmpl,
            ..ReportRequest::new(self.guest.clone(), *report_data)
        };
        Ok(Evidence {
            report: self
                .sim
                .report(&request)
                .map_err(|e| HwError::Simulator(e.to_string()))?,
            cert_chain: Vec::new(),
        })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.sim
            .derive_key(&self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}

#[test]
fn the_simulator_serves_the_attesters_key_requests() {
    let attester = SimAttester {
        sim: sim(),
        guest: guest(),
    };
    let req = request(GuestFieldSelect::ALL);
    // A request as it crosses the wire (0x28 bytes) derives the same key as the typed one.
    let parsed = KeyRequest::from_bytes(&req.to_bytes()).unwrap();
    assert_eq!(attester.derived_key(&parsed).unwrap(), key(&guest(), &req));
    assert!(matches!(
        attester.derived_key(&KeyRequest { vmpl: 4, ..req }),
        Err(HwError::Simulator(_))
    ));
    let evidence = attester.report(&[7; 64], 0).unwrap();
    assert_eq!(evidence.report.report_data(), [7; 64]);
}
