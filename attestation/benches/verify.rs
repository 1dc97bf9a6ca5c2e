//! Reports verified per second, ours against the `sev` crate, on real fixtures.
//!
//! Certificates are parsed once, outside the timed loop (the "cached chain"); every iteration
//! parses the 1184 report bytes and verifies. Four variants per fixture:
//!
//! | name | per iteration |
//! |------|---------------|
//! | `ours_full` | `Report::from_bytes` + `verify(.., Roots::amd(), 2025-09-01, None)`: ARK pinned (validity only; ARK self-signature and ARK→ASK were checked once per process when `Roots::amd()` was built), ASK→VEK RSA-PSS, VEK validity and extensions (hwID = chip id, SPLs = REPORTED_TCB), ECDSA P-384 |
//! | `ours_cached_vek` | `Report::from_bytes` + `verify_with_vek` with a `VerifiedVek` from one `verify_chain`: key kind, extensions, ECDSA P-384 |
//! | `sev_full` | `AttestationReport::from_bytes` + `(&Chain, &report).verify()`: ARK self-signature, ARK→ASK, ASK→VEK (three RSA-PSS), re-encode the report, ECDSA P-384. No validity periods, no extensions, no key-kind or generation check |
//! | `sev_cached_vek` | `AttestationReport::from_bytes` + `(&vek, &report).verify()`: re-encode, ECDSA P-384 |
//!
//! After the criterion groups, in benchmark mode, a summary measures the same variants
//! again in this process, round-robin so they share machine conditions, and prints reports per
//! second and the ratios `ours_full / sev_full`, `ours_cached_vek / sev_full` and
//! `ours_cached_vek / sev_cached_vek` (above 1 means we are faster). `bench/verify.sh` runs it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use sev::certs::snp::{builtin, ca, Certificate as SevCertificate, Chain as SevChain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use time::macros::datetime;
use time::OffsetDateTime;

use a3s_attestation::certs::{verify_chain, CertChain, Certificate, Roots, VerifiedVek};
use a3s_attestation::verify::{verify, verify_with_vek};
use a3s_attestation::Report;

/// Verification time for our verifier; every fixture's chain is valid then.
const AT: OffsetDateTime = datetime!(2025-09-01 00:00:00 UTC);

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/snp/reports/",
            $name
        ))
    };
}

/// Which `sev` built-in ARK/ASK pair a fixture chains to.
#[derive(Clone, Copy)]
enum Generation {
    Milan,
    Genoa,
    Turin,
}

struct Fixture {
    name: &'static str,
    report: &'static [u8],
    vek_der: &'static [u8],
    generation: Generation,
}

const FIXTURES: [Fixture; 3] = [
    Fixture {
        name: "milan_v2",
        report: fixture!("trustee-test-report.bin"),
        vek_der: fixture!("trustee-test-vcek.der"),
        generation: Generation::Milan,
    },
    Fixture {
        name: "genoa",
        report: fixture!("oak-genoa-oc-report.bin"),
        vek_der: fixture!("oak-genoa-oc-vcek.der"),
        generation: Generation::Genoa,
    },
    Fixture {
        name: "turin_v5",
        report: fixture!("oak-turin-oc-report.bin"),
        vek_der: fixture!("oak-turin-oc-vcek.der"),
        generation: Generation::Turin,
    },
];

/// Everything parsed once per fixture, outside the timed loops.
struct Prepared {
    name: &'static str,
    report: &'static [u8],
    chain: CertChain,
    vek: VerifiedVek,
    sev_chain: SevChain,
}

impl Prepared {
    fn new(f: &Fixture) -> Self {
        let cert = Certificate::from_der(f.vek_der).expect("fixture VEK is a valid certificate");
        let chain = CertChain::from_vek(cert).expect("fixture VEK makes a chain");
        let product = chain.vek().product().expect("fixture VEK names a product");
        let vek = verify_chain(Roots::amd(), product, &chain, AT).expect("fixture chain verifies");

        let (ark, ask) = match f.generation {
            Generation::Milan => (builtin::milan::ark(), builtin::milan::ask()),
            Generation::Genoa => (builtin::genoa::ark(), builtin::genoa::ask()),
            Generation::Turin => (builtin::turin::ark(), builtin::turin::ask()),
        };
        let sev_chain = SevChain {
            ca: ca::Chain {
                ark: ark.expect("sev built-in ARK parses"),
                ask: ask.expect("sev built-in ASK parses"),
            },
            vek: SevCertificate::from_der(f.vek_der).expect("sev parses the fixture VEK"),
        };

        let p = Self {
            name: f.name,
            report: f.report,
            chain,
            vek,
            sev_chain,
        };
        // Every variant must accept the fixture, or the timings mean nothing.
        for v in VARIANTS {
            assert!((v.run)(&p), "{} rejects {}", v.name, p.name);
        }
        p
    }
}

/// One way of verifying a report; returns whether it was accepted.
struct Variant {
    name: &'static str,
    run: fn(&Prepared) -> bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "ours_full",
        run: ours_full,
    },
    Variant {
        name: "ours_cached_vek",
        run: ours_cached_vek,
    },
    Variant {
        name: "sev_full",
        run: sev_full,
    },
    Variant {
        name: "sev_cached_vek",
        run: sev_cached_vek,
    },
];

fn ours_full(p: &Prepared) -> bool {
    Report::from_bytes(black_box(p.report))
        .is_ok_and(|r| verify(&r, &p.chain, Roots::amd(), AT, None).is_ok())
}

fn ours_cached_vek(p: &Prepared) -> bool {
    Report::from_bytes(black_box(p.report)).is_ok_and(|r| verify_with_vek(&r, &p.vek).is_ok())
}

fn sev_full(p: &Prepared) -> bool {
    AttestationReport::from_bytes(black_box(p.report))
        .is_ok_and(|r| (&p.sev_chain, &r).verify().is_ok())
}

fn sev_cached_vek(p: &Prepared) -> bool {
    AttestationReport::from_bytes(black_box(p.report))
        .is_ok_and(|r| (&p.sev_chain.vek, &r).verify().is_ok())
}

fn criterion_groups(c: &mut Criterion, prepared: &[Prepared]) {
    for p in prepared {
        let mut group = c.benchmark_group(format!("verify/{}", p.name));
        group.throughput(Throughput::Elements(1));
        for v in VARIANTS {
            group.bench_function(v.name, |b| b.iter(|| (v.run)(p)));
        }
        group.finish();
    }
}

/// Reports per second of `run` over about `budget`.
fn throughput(p: &Prepared, run: fn(&Prepared) -> bool, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while n < 3 || start.elapsed() < budget {
        black_box(run(p));
        n += 1;
    }
    // Precision loss is irrelevant for counts below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures every variant in `rounds` interleaved rounds and prints medians and ratios.
fn summary(prepared: &[Prepared], rounds: usize, budget: Duration, note: &str) {
    println!();
    println!(
        "summary: reports/s, median of {rounds} interleaved rounds of {budget:?} each, one process{note}"
    );
    println!(
        "{:<10} {:>12} {:>16} {:>12} {:>15} {:>11} {:>13} {:>17}",
        "fixture",
        "ours_full",
        "ours_cached_vek",
        "sev_full",
        "sev_cached_vek",
        "full/sev",
        "cached/sev",
        "cached/sev_cached"
    );
    for p in prepared {
        let mut samples = vec![Vec::with_capacity(rounds); VARIANTS.len()];
        for _ in 0..rounds {
            for (i, v) in VARIANTS.iter().enumerate() {
                samples[i].push(throughput(p, v.run, budget));
            }
        }
        let [full, cached, sev, sev_cached]: [f64; 4] = samples
            .into_iter()
            .map(median)
            .collect::<Vec<_>>()
            .try_into()
            .expect("one median per variant");
        println!(
            "{:<10} {:>12.0} {:>16.0} {:>12.0} {:>15.0} {:>10.2}x {:>12.2}x {:>16.2}x",
            p.name,
            full,
            cached,
            sev,
            sev_cached,
            full / sev,
            cached / sev,
            cached / sev_cached
        );
    }
}

fn main() {
    let prepared: Vec<Prepared> = FIXTURES.iter().map(Prepared::new).collect();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_groups(&mut c, &prepared);
    c.final_summary();

    // Criterion's own mode rules: `cargo bench` passes --bench, `cargo test --benches` does
    // not. Under --profile-time and --list the summary is skipped (it would pollute a
    // profile); in test mode one zero-length round only proves it runs.
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a.split('=').next() == Some(flag));
    if has("--list") || has("--profile-time") {
        return;
    }
    if has("--bench") && !has("--test") {
        let rounds = std::env::var("VERIFY_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7);
        summary(&prepared, rounds, Duration::from_millis(300), "");
    } else {
        summary(
            &prepared,
            1,
            Duration::ZERO,
            " (test mode: figures are not measurements)",
        );
    }
}
