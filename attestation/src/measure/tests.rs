//! Known-answer tests: every expected digest below is published by sev-snp-measure
//! (`tests/test_guest.py`, v0.0.13) and reproduced by virtee/sev (`tests/measurement.rs`);
//! none is computed by this crate.

use std::path::{Path, PathBuf};

use super::*;

const AMDSEV: &[u8] = include_bytes!("../../tests/fixtures/measure/ovmf_AmdSev_suffix.bin");
const OVMFX64: &[u8] = include_bytes!("../../tests/fixtures/measure/ovmf_OvmfX64_suffix.bin");

const AMDSEV_OVMF_HASH: &str =
    "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74";

const APPEND: &str = "console=ttyS0 loglevel=7";

fn epyc_v4() -> Option<CpuSignature> {
    Some(CpuSignature::from_type_name("EPYC-v4").unwrap())
}

/// Arguments as the upstream tests pass them: kernel = initrd = /dev/null (empty).
fn args<'a>(ovmf: &'a [u8], vcpus: u32, append: &'a str, features: u64) -> SnpMeasurementArgs<'a> {
    let mut a = SnpMeasurementArgs::new(ovmf, vcpus);
    a.vcpu_sig = epyc_v4();
    a.kernel = Some(b"");
    a.initrd = Some(b"");
    a.append = Some(append);
    a.guest_features = features;
    a
}

fn digest_hex(a: &SnpMeasurementArgs<'_>) -> String {
    hex::encode(launch_digest(a).unwrap())
}

#[test]
fn ovmf_hash_of_amdsev_fixture() {
    assert_eq!(hex::encode(ovmf_hash(AMDSEV).unwrap()), AMDSEV_OVMF_HASH);
}

#[test]
fn precomputed_ovmf_hash_gives_published_digests() {
    let seed = parse_ovmf_hash(AMDSEV_OVMF_HASH).unwrap();
    let cases = [
        ("", 0x21, "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198"),
        ("", 0x1, "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"),
        (APPEND, 0x21, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (APPEND, 0x1, "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
    ];
    for (append, features, expected) in cases {
        let mut a = args(AMDSEV, 1, append, features);
        a.ovmf_hash = Some(seed);
        assert_eq!(
            digest_hex(&a),
            expected,
            "append {append:?} features {features:#x}"
        );
    }
}

#[test]
fn qemu_digests_match_published_values() {
    let cases = [
        (1, APPEND, 0x21, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (1, APPEND, 0x1, "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
        (4, "", 0x21, "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
        (4, "", 0x1, "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
    ];
    for (vcpus, append, features, expected) in cases {
        let a = args(AMDSEV, vcpus, append, features);
        assert_eq!(
            digest_hex(&a),
            expected,
            "{vcpus} vCPUs, features {features:#x}"
        );
    }
}

#[test]
fn ec2_digests_match_published_values() {
    for (features, expected) in [
        (0x21, "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb"),
        (0x1, "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056"),
    ] {
        let mut a = args(AMDSEV, 1, "", features);
        a.vmm_type = VmmType::Ec2;
        assert_eq!(digest_hex(&a), expected);
    }
}

#[test]
fn gce_digests_match_published_values_without_vcpu_signature() {
    for (vcpus, expected) in [
        (1, "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"),
        (4, "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d"),
    ] {
        let mut a = args(AMDSEV, vcpus, "", 0x1);
        a.vmm_type = VmmType::Gce;
        a.vcpu_sig = None;
        assert_eq!(digest_hex(&a), expected);
    }
}

#[test]
fn digests_without_kernel_match_published_values() {
    let cases = [
        (AMDSEV, 0x21, "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
        (AMDSEV, 0x1, "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        (OVMFX64, 0x21, "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"),
        (OVMFX64, 0x1, "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"),
    ];
    for (ovmf, features, expected) in cases {
        let mut a = SnpMeasurementArgs::new(ovmf, 1);
        a.vcpu_sig = epyc_v4();
        a.guest_features = features;
        assert_eq!(digest_hex(&a), expected);
    }
}

#[test]
fn rejects_kernel_with_ovmf_lacking_kernel_hashes_section() {
    let a = args(OVMFX64, 1, "", 0x21);
    let err = launch_digest(&a).unwrap_err();
    assert!(matches!(
        err,
        MeasureError::Ovmf(OvmfError::NoKernelHashesSection)
    ));
    assert!(err.hint().unwrap().contains("AmdSev"));
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/measure")
        .join(name)
}

#[test]
fn file_inputs_give_the_same_published_digest() {
    let mut f = SnpMeasurementFiles::new(fixture_path("ovmf_AmdSev_suffix.bin"), 1);
    f.vcpu_sig = epyc_v4();
    // Empty kernel and initrd (regular files: devices are refused).
    let empty = tempfile::NamedTempFile::new().unwrap();
    f.kernel = Some(empty.path().into());
    f.initrd = Some(empty.path().into());
    f.append = Some(APPEND.to_owned());
    f.guest_features = 0x21;
    assert_eq!(
        hex::encode(launch_digest_from_files(&f).unwrap()),
        "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"
    );
    assert_eq!(
        hex::encode(ovmf_hash_from_file(&f.ovmf).unwrap()),
        AMDSEV_OVMF_HASH
    );
}

#[test]
fn file_errors_name_the_file() {
    let mut f = SnpMeasurementFiles::new(fixture_path("ovmf_OvmfX64_suffix.bin"), 1);
    f.vcpu_sig = epyc_v4();
    let empty = tempfile::NamedTempFile::new().unwrap();
    f.kernel = Some(empty.path().into());
    let err = launch_digest_from_files(&f).unwrap_err();
    assert!(err.to_string().contains("ovmf_OvmfX64_suffix.bin"), "{err}");
    assert!(matches!(
        err,
        MeasureError::OvmfFile {
            source: OvmfError::NoKernelHashesSection,
            ..
        }
    ));

    f.kernel = Some("/nonexistent/vmlinuz".into());
    let err = launch_digest_from_files(&f).unwrap_err();
    assert!(matches!(err, MeasureError::Read { what: "kernel", .. }));
    assert!(err.to_string().contains("/nonexistent/vmlinuz"), "{err}");
}

#[test]
fn precomputed_kernel_hashes_give_the_published_digest() {
    let mut a = args(AMDSEV, 1, APPEND, 0x21);
    let published = digest_hex(&a);
    a.sev_hashes = Some(SevHashes::new(b"", Some(b""), Some(APPEND)));
    assert!(matches!(launch_digest(&a), Err(MeasureError::HashesTwice)));
    a.kernel = None;
    a.initrd = None;
    a.append = None;
    assert_eq!(digest_hex(&a), published);
}

#[test]
fn rejects_inconsistent_arguments() {
    let mut a = SnpMeasurementArgs::new(AMDSEV, 1);
    assert!(matches!(
        launch_digest(&a),
        Err(MeasureError::MissingVcpuSignature)
    ));
    a.vcpu_sig = epyc_v4();
    a.vcpus = 0;
    assert!(matches!(launch_digest(&a), Err(MeasureError::ZeroVcpus)));
    a.vcpus = 1;
    a.initrd = Some(b"");
    assert!(matches!(
        launch_digest(&a),
        Err(MeasureError::InitrdWithoutKernel)
    ));
    a.initrd = None;
    a.append = Some("quiet");
    assert!(matches!(
        launch_digest(&a),
        Err(MeasureError::AppendWithoutKernel)
    ));
    // An empty command line without a kernel is accepted, as by sev-snp-measure.
    a.append = Some("");
    assert!(launch_digest(&a).is_ok());
}

#[test]
fn rejects_images_without_footer_and_odd_sizes() {
    let mut a = SnpMeasurementArgs::new(&[0u8; 8192], 1);
    a.vcpu_sig = epyc_v4();
    assert!(matches!(
        launch_digest(&a),
        Err(MeasureError::Ovmf(OvmfError::MissingFooterTable))
    ));
    assert!(matches!(
        ovmf_hash(&[]),
        Err(MeasureError::Ovmf(OvmfError::EmptyImage))
    ));
    let mut odd = vec![0u8; 100];
    odd.extend_from_slice(AMDSEV);
    assert!(matches!(
        ovmf_hash(&odd),
        Err(MeasureError::Ovmf(OvmfError::SizeNotPageAligned {
            len: 4196
        }))
    ));
}

#[test]
fn parses_ovmf_hash_strictly() {
    assert!(parse_ovmf_hash(AMDSEV_OVMF_HASH).is_ok());
    assert!(parse_ovmf_hash(&AMDSEV_OVMF_HASH[..94]).is_err());
    assert!(parse_ovmf_hash(&format!("{AMDSEV_OVMF_HASH}00")).is_err());
    assert!(parse_ovmf_hash(&AMDSEV_OVMF_HASH.replace('a', "g")).is_err());
}

#[test]
fn parses_vmm_types() {
    assert_eq!("QEMU".parse::<VmmType>().unwrap(), VmmType::Qemu);
    assert_eq!("ec2".parse::<VmmType>().unwrap(), VmmType::Ec2);
    assert_eq!("gce".parse::<VmmType>().unwrap(), VmmType::Gce);
    assert!("azure".parse::<VmmType>().is_err());
}

#[test]
fn every_vcpu_count_changes_the_digest() {
    let mut seen = std::collections::HashSet::new();
    for vcpus in 1..=8 {
        let a = args(AMDSEV, vcpus, "", 0x1);
        assert!(seen.insert(launch_digest(&a).unwrap()));
    }
}

/// Untrusted OVMF images: no byte value in the parsed structures (SEV metadata at 0xaac..0xb10,
/// footer table from 0xf58 to the end), and no truncation, makes the calculator panic; it
/// returns a digest or an error.
#[test]
fn never_panics_on_mutated_or_truncated_images() {
    let run = |image: &[u8]| {
        // Sections may legitimately span gigabytes (a million page updates); parsing such an
        // image is exercised, measuring it would only slow the test down.
        if let Ok(ovmf) = Ovmf::parse(image) {
            let total: u64 = ovmf.sections().iter().map(|s| u64::from(s.size)).sum();
            if total > 64 << 20 {
                return;
            }
        }
        let mut a = args(image, 4, APPEND, 0x1);
        let _ = launch_digest(&a);
        a.vmm_type = VmmType::Ec2;
        let _ = launch_digest(&a);
        let _ = ovmf_hash(image);
    };
    let mut image = AMDSEV.to_vec();
    for i in (0xaa0..0xb20).chain(0xf50..image.len()) {
        let original = image[i];
        for value in [0x00, 0xff, original ^ 0x80, original.wrapping_add(1)] {
            image[i] = value;
            run(&image);
        }
        image[i] = original;
    }
    for start in (0..AMDSEV.len())
        .step_by(7)
        .chain(AMDSEV.len() - 64..AMDSEV.len())
    {
        run(&AMDSEV[start..]);
    }
}

#[test]
fn endless_and_oversized_inputs_are_refused_before_reading_naming_the_limit() {
    let mut f = SnpMeasurementFiles::new("/dev/zero", 1);
    let err = launch_digest_from_files(&f).unwrap_err();
    assert!(
        matches!(
            err,
            MeasureError::NotRegularFile {
                what: "OVMF image",
                ..
            }
        ),
        "{err}"
    );
    // A sparse file 10 MB over the kernel limit: refused from its size, nothing read.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("vmlinux");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_KERNEL_BYTES + 10_000_000)
        .unwrap();
    f.kernel = Some(big.clone());
    let err = launch_digest_from_files(&f).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MeasureError::TooLarge { what: "kernel", .. }),
        "{text}"
    );
    assert!(text.contains(&MAX_KERNEL_BYTES.to_string()), "{text}");
    f.kernel = Some("/dev/zero".into());
    assert!(matches!(
        launch_digest_from_files(&f),
        Err(MeasureError::NotRegularFile { what: "kernel", .. })
    ));
    let err = read_input(&big, "OVMF image").unwrap_err();
    assert!(
        matches!(
            err,
            MeasureError::TooLarge {
                limit: MAX_FIRMWARE_BYTES,
                ..
            }
        ),
        "{err}"
    );
}
