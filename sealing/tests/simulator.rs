//! Sealing with keys derived by the simulated secure processor through the [`Attester`] trait.
//!
//! One simulated home per test binary (generating it takes seconds), with a second chip.

use std::sync::OnceLock;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::report::trustee::Evidence;
use a3s_attestation::Product;
use a3s_sealing::{
    seal, unseal, AttesterKeySource, GuestFieldSelect, KeyError, KeyParams, RootKey,
    SealingKeySource, UnsealError,
};
use a3s_simulator::{Chip, ChipConfig, ChipId, GuestContext, KeyRequest, Simulator};
use tempfile::TempDir;

struct Fixture {
    _home: TempDir,
    sim: Simulator,
    other_chip: ChipId,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let home = tempfile::Builder::new()
            .prefix("sealing-sim-home-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("creating a temporary home");
        let mut sim =
            Simulator::open_or_create(home.path(), Product::Milan).expect("creating a simulator");
        let other_chip = sim
            .add_chip(Product::Milan, ChipConfig::default_for(Product::Milan))
            .expect("adding a second chip");
        Fixture {
            _home: home,
            sim,
            other_chip,
        }
    })
}

/// A simulator-backed [`Attester`] for one guest on one chip.
struct SimAttester {
    chip: &'static Chip,
    guest: GuestContext,
}

impl Attester for SimAttester {
    fn report(&self, _report_data: &[u8; 64], _vmpl: u32) -> Result<Evidence, HwError> {
        Err(HwError::Simulator("reports are not used by sealing".into()))
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        a3s_simulator::derive::derive_key(self.chip, &self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}

fn guest(measurement: u8, policy: u64) -> GuestContext {
    GuestContext::launch([measurement; 48])
        .with_policy(policy)
        .expect("a valid policy")
}

fn on_default_chip(guest: GuestContext) -> AttesterKeySource<SimAttester> {
    AttesterKeySource::new(SimAttester {
        chip: fixture().sim.default_chip(),
        guest,
    })
}

const POLICY: u64 = 0x3_0000;
const OTHER_POLICY: u64 = 0x3_0001;

#[test]
fn round_trips_for_every_root_key() {
    let source = on_default_chip(guest(1, POLICY));
    for root_key in [RootKey::Vcek, RootKey::Vmrk] {
        let params = KeyParams {
            root_key,
            ..KeyParams::new(GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY)
        };
        let envelope = seal(&source, &params, b"the secret").unwrap();
        assert_eq!(
            unseal(&source, &envelope).unwrap().as_slice(),
            b"the secret"
        );
    }
    // The same guest launched again derives the same key.
    let envelope = seal(&source, &KeyParams::new(GuestFieldSelect::ALL), b"s").unwrap();
    let relaunched = on_default_chip(guest(1, POLICY));
    assert_eq!(unseal(&relaunched, &envelope).unwrap().as_slice(), b"s");
}

#[test]
fn a_different_measurement_fails_only_when_selected() {
    let sealer = on_default_chip(guest(1, POLICY));
    let other = on_default_chip(guest(2, POLICY));

    let bound = seal(
        &sealer,
        &KeyParams::new(GuestFieldSelect::MEASUREMENT),
        b"bound",
    )
    .unwrap();
    assert!(matches!(
        unseal(&other, &bound),
        Err(UnsealError::Authentication)
    ));

    let unbound = seal(&sealer, &KeyParams::new(GuestFieldSelect::POLICY), b"free").unwrap();
    assert_eq!(unseal(&other, &unbound).unwrap().as_slice(), b"free");
}

#[test]
fn a_different_policy_fails_when_selected() {
    let sealer = on_default_chip(guest(1, POLICY));
    let other = on_default_chip(guest(1, OTHER_POLICY));
    let bound = seal(&sealer, &KeyParams::new(GuestFieldSelect::POLICY), b"p").unwrap();
    assert!(matches!(
        unseal(&other, &bound),
        Err(UnsealError::Authentication)
    ));
    let unbound = seal(
        &sealer,
        &KeyParams::new(GuestFieldSelect::MEASUREMENT),
        b"p",
    )
    .unwrap();
    assert_eq!(unseal(&other, &unbound).unwrap().as_slice(), b"p");
}

#[test]
fn a_different_chip_fails() {
    let f = fixture();
    let other_chip = AttesterKeySource::new(SimAttester {
        chip: f.sim.chip(Product::Milan, &f.other_chip).unwrap(),
        guest: guest(1, POLICY),
    });
    let sealer = on_default_chip(guest(1, POLICY));
    for select in [GuestFieldSelect::NONE, GuestFieldSelect::ALL] {
        let envelope = seal(&sealer, &KeyParams::new(select), b"chip").unwrap();
        assert!(matches!(
            unseal(&other_chip, &envelope),
            Err(UnsealError::Authentication)
        ));
    }
}

#[test]
fn the_firmware_refusing_a_key_is_a_key_error() {
    let source = on_default_chip(guest(1, POLICY));
    // The guest's SVN is 0: a higher one is refused by the firmware.
    let params = KeyParams {
        guest_svn: 1,
        ..KeyParams::new(GuestFieldSelect::GUEST_SVN)
    };
    assert!(matches!(
        source.derive(&params),
        Err(KeyError::Hardware(HwError::Simulator(_)))
    ));
    assert!(seal(&source, &params, b"x").is_err());
}

#[test]
fn every_single_bit_flip_fails_under_the_simulator() {
    let source = on_default_chip(guest(1, POLICY));
    let envelope = seal(&source, &KeyParams::new(GuestFieldSelect::ALL), b"hi").unwrap();
    for byte in 0..envelope.len() {
        for bit in 0..8 {
            let mut tampered = envelope.clone();
            tampered[byte] ^= 1 << bit;
            assert!(unseal(&source, &tampered).is_err(), "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn attester_source_debug_shows_no_key_material() {
    assert_eq!(
        format!("{:?}", on_default_chip(guest(1, POLICY))),
        "AttesterKeySource { .. }"
    );
}
