//! Audit events written per second, each fsynced before `record` returns (the real cost of an
//! audited action), against the same line appended without fsync as the baseline.

use std::io::Write;

use a3s_runtime::audit::{AuditLog, Event, Outcome};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn record(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = AuditLog::open(tmp.path().join("audit"));
    let event = Event::new("box.start", Outcome::Success, "started box")
        .with_box("0123456789abcdef")
        .with(
            "image",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_fsync", |b| {
        b.iter(|| log.record(&event).expect("record"))
    });
    let mut plain = std::fs::File::create(tmp.path().join("plain.jsonl")).expect("plain file");
    let line = std::fs::read(tmp.path().join("audit/audit.jsonl")).expect("a line");
    let line = line
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    group.bench_function("append_no_fsync_baseline", |b| {
        b.iter(|| plain.write_all(&line).expect("append"))
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
