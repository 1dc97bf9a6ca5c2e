//! Seal and unseal throughput for 4 KiB and 1 MiB plaintexts.
//!
//! | key source | per iteration |
//! |------------|---------------|
//! | `static_key` | AES-256-GCM only: [`StaticKey`] hands out the same key, so this is the envelope's cost (header, fresh nonce from the OS, encrypt or decrypt, tag) |
//! | `sim_derived` | as in a guest: every seal and unseal asks the simulated secure processor for the key (MSG_KEY_REQ semantics, HKDF-SHA384 over the guest fields), then AES-256-GCM |
//!
//! Throughput is reported in bytes of plaintext per second.

use std::hint::black_box;
use std::time::Duration;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::report::trustee::Evidence;
use a3s_attestation::Product;
use a3s_sealing::{
    seal, unseal, AttesterKeySource, GuestFieldSelect, KeyParams, SealingKeySource, StaticKey,
};
use a3s_simulator::{GuestContext, KeyRequest, Simulator};
use criterion::{BenchmarkId, Criterion, Throughput};
use zeroize::Zeroizing;

struct SimAttester<'a> {
    sim: &'a Simulator,
    guest: GuestContext,
}

impl Attester for SimAttester<'_> {
    fn report(&self, _report_data: &[u8; 64], _vmpl: u32) -> Result<Evidence, HwError> {
        Err(HwError::Simulator("reports are not used by sealing".into()))
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.sim
            .derive_key(&self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}

const SIZES: [(&str, usize); 2] = [("4KiB", 4 * 1024), ("1MiB", 1024 * 1024)];

fn bench_source(c: &mut Criterion, name: &str, source: &dyn SealingKeySource) {
    let params = KeyParams::new(GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY);
    for (label, size) in SIZES {
        let plaintext = vec![0x5Au8; size];
        let envelope = seal(source, &params, &plaintext).expect("sealing works");
        assert_eq!(
            unseal(source, &envelope)
                .expect("unsealing works")
                .as_slice(),
            plaintext
        );
        let mut group = c.benchmark_group(format!("sealing/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &plaintext, |b, p| {
            b.iter(|| seal(source, &params, black_box(p)).expect("seal"));
        });
        group.bench_with_input(BenchmarkId::new("unseal", label), &envelope, |b, e| {
            b.iter(|| unseal(source, black_box(e)).expect("unseal"));
        });
        group.finish();
    }
}

fn main() {
    let home = tempfile::Builder::new()
        .prefix("sealing-bench-home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary home");
    let sim = Simulator::open_or_create(home.path(), Product::Milan).expect("a simulator");
    let derived = AttesterKeySource::new(SimAttester {
        sim: &sim,
        guest: GuestContext::launch([0x4D; 48]),
    });
    let fixed = StaticKey::new(Zeroizing::new([7u8; 32]));

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_source(&mut c, "static_key", &fixed);
    bench_source(&mut c, "sim_derived", &derived);
    c.final_summary();
}
