//! Simulated reports signed per second (ECDSA P-384 with the VCEK, two report encodings), and
//! derived keys per second.

#![allow(clippy::unwrap_used)] // benchmark set-up

use std::hint::black_box;

use a3s_attestation::Product;
use a3s_simulator::{GuestContext, GuestFieldSelect, KeyRequest, ReportRequest, Simulator};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let home = tempfile::tempdir().unwrap();
    let sim = Simulator::open_or_create(home.path(), Product::Milan).unwrap();
    let guest = GuestContext::launch([0x5A; 48]);
    let request = ReportRequest::new(guest.clone(), [0xA5; 64]);

    let mut group = c.benchmark_group("simulator");
    group.throughput(Throughput::Elements(1));
    group.bench_function("report (sign with VCEK)", |b| {
        b.iter(|| sim.report(black_box(&request)).unwrap());
    });
    let key_request = KeyRequest::new(GuestFieldSelect::ALL);
    group.bench_function("derive_key", |b| {
        b.iter(|| {
            sim.derive_key(black_box(&guest), black_box(&key_request))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
