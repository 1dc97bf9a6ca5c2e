//! Cross-check: for many input combinations, our launch digest equals what the real
//! `sev-snp-measure` CLI prints. Expected values come only from that CLI.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use a3s_attestation::measure::{
    self, CpuSignature, MeasureError, SnpMeasurementArgs, SnpMeasurementFiles, VmmType,
};

/// Debian `ovmf` package: standard OVMF with SEV metadata but no kernel-hashes section.
const DEBIAN_OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// Debian `ovmf` package: 4 MiB build, footer table without SEV metadata.
const DEBIAN_OVMF_CODE_4M: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

const VCPU_COUNTS: [u32; 5] = [1, 2, 4, 16, 64];
const VCPU_TYPES: [&str; 3] = ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"];
const FEATURES: [u64; 3] = [0x1, 0x21, 0x3d];

/// How a case names the vCPU.
#[derive(Clone, Debug)]
enum Vcpu {
    Type(&'static str),
    Sig(u32),
    Fms(u32, u32, u32),
    Unset,
}

/// One invocation of both implementations.
#[derive(Clone, Debug)]
struct Case {
    ovmf: PathBuf,
    vcpus: u32,
    vcpu: Vcpu,
    vmm: &'static str,
    features: u64,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    ovmf_hash: Option<String>,
}

impl Case {
    fn new(ovmf: &Path, vcpus: u32, vcpu: Vcpu, vmm: &'static str, features: u64) -> Self {
        Self {
            ovmf: ovmf.to_owned(),
            vcpus,
            vcpu,
            vmm,
            features,
            kernel: None,
            initrd: None,
            append: None,
            ovmf_hash: None,
        }
    }

    fn cli_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--mode".into(),
            "snp".into(),
            "--vcpus".into(),
            self.vcpus.to_string(),
            "--vmm-type".into(),
            self.vmm.into(),
            "--ovmf".into(),
            self.ovmf.display().to_string(),
            "--guest-features".into(),
            format!("{:#x}", self.features),
        ];
        match self.vcpu {
            Vcpu::Type(t) => a.extend(["--vcpu-type".into(), t.into()]),
            Vcpu::Sig(s) => a.extend(["--vcpu-sig".into(), format!("{s:#x}")]),
            Vcpu::Fms(f, m, s) => a.extend([
                "--vcpu-family".into(),
                f.to_string(),
                "--vcpu-model".into(),
                m.to_string(),
                "--vcpu-stepping".into(),
                s.to_string(),
            ]),
            Vcpu::Unset => {}
        }
        for (flag, path) in [("--kernel", &self.kernel), ("--initrd", &self.initrd)] {
            if let Some(p) = path {
                a.extend([flag.into(), p.display().to_string()]);
            }
        }
        if let Some(append) = &self.append {
            // `=` form so that command lines starting with '-' stay one argument.
            a.push(format!("--append={append}"));
        }
        if let Some(h) = &self.ovmf_hash {
            a.extend(["--snp-ovmf-hash".into(), h.clone()]);
        }
        a
    }

    fn vcpu_sig(&self) -> Option<CpuSignature> {
        match self.vcpu {
            Vcpu::Type(t) => Some(CpuSignature::from_type_name(t).unwrap()),
            Vcpu::Sig(s) => Some(CpuSignature::from_raw(s)),
            Vcpu::Fms(f, m, s) => Some(CpuSignature::from_fms(f, m, s)),
            Vcpu::Unset => None,
        }
    }

    /// Our digest through the file API, checked equal to the bytes API.
    fn ours(&self) -> Result<String, MeasureError> {
        let mut f = SnpMeasurementFiles::new(&self.ovmf, self.vcpus);
        f.vcpu_sig = self.vcpu_sig();
        f.vmm_type = self.vmm.parse::<VmmType>()?;
        f.guest_features = self.features;
        f.kernel.clone_from(&self.kernel);
        f.initrd.clone_from(&self.initrd);
        f.append.clone_from(&self.append);
        f.ovmf_hash = self
            .ovmf_hash
            .as_deref()
            .map(measure::parse_ovmf_hash)
            .transpose()?;
        let from_files = measure::launch_digest_from_files(&f);

        let ovmf = std::fs::read(&self.ovmf).unwrap();
        let kernel = self.kernel.as_ref().map(|p| std::fs::read(p).unwrap());
        let initrd = self.initrd.as_ref().map(|p| std::fs::read(p).unwrap());
        let mut a = SnpMeasurementArgs::new(&ovmf, self.vcpus);
        a.vcpu_sig = f.vcpu_sig;
        a.vmm_type = f.vmm_type;
        a.guest_features = self.features;
        a.kernel = kernel.as_deref();
        a.initrd = initrd.as_deref();
        a.append = self.append.as_deref();
        a.ovmf_hash = f.ovmf_hash;
        let from_bytes = measure::launch_digest(&a);
        assert_eq!(
            from_files.as_ref().ok(),
            from_bytes.as_ref().ok(),
            "file and bytes APIs disagree for {self:?}"
        );
        from_files.map(hex::encode)
    }
}

/// The `sev-snp-measure` executable, or a failure telling how to install it.
fn sev_snp_measure() -> String {
    let exe = std::env::var("SEV_SNP_MEASURE").unwrap_or_else(|_| "sev-snp-measure".to_owned());
    match Command::new(&exe).arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            eprintln!("cross-checking against {}", version.trim());
            exe
        }
        Ok(out) => panic!(
            "`{exe} --version` failed ({}): {}\nrun `pip install sev-snp-measure==0.0.13` \
             (or the CI setup script)",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{exe}` ({e}); this test needs the reference implementation: \
             run `pip install sev-snp-measure==0.0.13` (or the CI setup script), \
             or set SEV_SNP_MEASURE to its path"
        ),
    }
}

/// Runs the reference CLI; `Ok(stdout)` on success, `Err(stderr)` on failure.
fn reference(exe: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(exe).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn require(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install Debian's OVMF with `apt-get install -y ovmf` (or the CI setup script)"
    );
    p
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/measure")
        .join(name)
}

/// A real kernel/initrd from /boot when present, else deterministic pseudo-random files.
fn boot_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let first = |prefix: &str| {
        std::fs::read_dir("/boot").ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .find(|p| std::fs::File::open(p).is_ok())
        })
    };
    let generated = |name: &str, len: usize, seed: u64| {
        let mut x = seed;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                x.to_be_bytes()[0]
            })
            .collect();
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let kernel = first("vmlinuz").unwrap_or_else(|| generated("vmlinuz", 9 << 20, 1));
    let initrd = first("initrd.img").unwrap_or_else(|| generated("initrd.img", (3 << 20) + 77, 2));
    eprintln!("kernel {}, initrd {}", kernel.display(), initrd.display());
    (kernel, initrd)
}

const CMDLINES: [&str; 5] = [
    "console=ttyS0 loglevel=7",
    "",
    "root=/dev/vda1 ro dm-verity.roothash=4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076 a3s.manifest=sha256:0123",
    "quiet init=/sbin/a3s-guest-init a3s.msg=\"héllo wörld\" -- extra",
    "-leading-dash panic=-1",
];

/// Every case of the matrix.
fn cases(kernel: &Path, initrd: &Path) -> Vec<Case> {
    let debian = require(DEBIAN_OVMF_CODE);
    let debian_4m = require(DEBIAN_OVMF_CODE_4M);
    let amdsev = fixture("ovmf_AmdSev_suffix.bin");
    let mut out = Vec::new();
    let mut n = 0usize;
    let mut next_features = || {
        n += 1;
        FEATURES[n % FEATURES.len()]
    };

    // Debian OVMF_CODE.fd (SEV metadata, no kernel hashes): every vCPU count and type.
    for vcpus in VCPU_COUNTS {
        for t in VCPU_TYPES {
            out.push(Case::new(
                &debian,
                vcpus,
                Vcpu::Type(t),
                "QEMU",
                next_features(),
            ));
        }
    }
    for vmm in ["ec2", "gce"] {
        for vcpus in [1, 4, 64] {
            out.push(Case::new(
                &debian,
                vcpus,
                Vcpu::Type("EPYC-Milan"),
                vmm,
                next_features(),
            ));
        }
    }
    // Debian OVMF_CODE_4M.fd (no SEV metadata).
    for vcpus in [1, 16] {
        for t in VCPU_TYPES {
            out.push(Case::new(
                &debian_4m,
                vcpus,
                Vcpu::Type(t),
                "QEMU",
                next_features(),
            ));
        }
    }
    out.push(Case::new(
        &debian_4m,
        2,
        Vcpu::Unset,
        "ec2",
        next_features(),
    ));
    out.push(Case::new(
        &debian_4m,
        2,
        Vcpu::Unset,
        "gce",
        next_features(),
    ));

    // AmdSev OVMF with kernel, initrd and command line (measured direct boot).
    let with_boot = |mut c: Case, i: usize| {
        c.kernel = Some(kernel.to_owned());
        c.initrd = Some(initrd.to_owned());
        c.append = Some(CMDLINES[i % CMDLINES.len()].to_owned());
        c
    };
    let mut i = 0;
    for vcpus in VCPU_COUNTS {
        for t in VCPU_TYPES {
            i += 1;
            out.push(with_boot(
                Case::new(&amdsev, vcpus, Vcpu::Type(t), "QEMU", next_features()),
                i,
            ));
        }
    }
    for vmm in ["ec2", "gce"] {
        for vcpus in [1, 2, 64] {
            i += 1;
            out.push(with_boot(
                Case::new(&amdsev, vcpus, Vcpu::Unset, vmm, next_features()),
                i,
            ));
        }
    }
    // Kernel only (no initrd, no command line), and no kernel at all.
    for (vmm, vcpu) in [
        ("QEMU", Vcpu::Type("EPYC-v4")),
        ("QEMU", Vcpu::Type("EPYC-Genoa")),
        ("ec2", Vcpu::Type("EPYC-Milan")),
        ("gce", Vcpu::Unset),
    ] {
        for vcpus in [1, 16] {
            let mut c = Case::new(&amdsev, vcpus, vcpu.clone(), vmm, next_features());
            c.kernel = Some(kernel.to_owned());
            out.push(c.clone());
            c.kernel = None;
            out.push(c);
        }
    }
    // Other ways to name the vCPU.
    for vcpu in [
        Vcpu::Sig(0x00a1_0f11),
        Vcpu::Sig(0x00b0_0f00),
        Vcpu::Fms(25, 17, 1),
        Vcpu::Fms(26, 2, 1),
        Vcpu::Fms(23, 49, 0),
    ] {
        out.push(with_boot(
            Case::new(&amdsev, 4, vcpu.clone(), "QEMU", next_features()),
            3,
        ));
        out.push(Case::new(&debian, 2, vcpu, "QEMU", next_features()));
    }
    out
}

/// Runs `f` over `items` on a few threads.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

#[test]
fn launch_digests_match_sev_snp_measure() {
    let exe = sev_snp_measure();
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_inputs(dir.path());
    let cases = cases(&kernel, &initrd);

    let results = par_map(&cases, |c| (reference(&exe, &c.cli_args()), c.ours()));
    let mut report = String::new();
    for (c, (expected, ours)) in cases.iter().zip(&results) {
        match (expected, ours) {
            (Ok(e), Ok(o)) if e == o => {}
            _ => writeln!(
                report,
                "MISMATCH {c:?}\n  sev-snp-measure: {expected:?}\n  ours: {ours:?}"
            )
            .unwrap(),
        }
    }
    eprintln!("{} launch-digest combinations compared", cases.len());
    assert!(report.is_empty(), "{report}");
    assert!(cases.len() >= 76, "matrix shrank to {}", cases.len());
}

#[test]
fn ovmf_hashes_and_precomputed_hash_path_match_sev_snp_measure() {
    let exe = sev_snp_measure();
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_inputs(dir.path());
    let images = [
        require(DEBIAN_OVMF_CODE),
        require(DEBIAN_OVMF_CODE_4M),
        fixture("ovmf_AmdSev_suffix.bin"),
        fixture("ovmf_OvmfX64_suffix.bin"),
    ];
    let mut compared = 0;
    for image in &images {
        let args = [
            "--mode".to_owned(),
            "snp:ovmf-hash".to_owned(),
            "--ovmf".to_owned(),
            image.display().to_string(),
        ];
        let expected = reference(&exe, &args).unwrap();
        let ours = hex::encode(measure::ovmf_hash_from_file(image).unwrap());
        assert_eq!(ours, expected, "OVMF hash of {}", image.display());
        compared += 1;

        // The precomputed-hash path: the OVMF file is still read for its metadata and
        // reset EIP, but its pages are not hashed again.
        for (vcpus, vmm, vcpu) in [
            (1, "QEMU", Vcpu::Type("EPYC-v4")),
            (16, "QEMU", Vcpu::Type("EPYC-Genoa")),
            (4, "ec2", Vcpu::Unset),
            (4, "gce", Vcpu::Unset),
        ] {
            let mut c = Case::new(image, vcpus, vcpu, vmm, 0x21);
            c.ovmf_hash = Some(expected.clone());
            if image.ends_with("ovmf_AmdSev_suffix.bin") {
                c.kernel = Some(kernel.clone());
                c.initrd = Some(initrd.clone());
                c.append = Some(CMDLINES[2].to_owned());
            }
            let reference_digest = reference(&exe, &c.cli_args()).unwrap();
            assert_eq!(c.ours().unwrap(), reference_digest, "{c:?}");
            compared += 1;
        }
    }
    eprintln!("{compared} OVMF-hash combinations compared");
}

#[test]
fn both_refuse_a_kernel_without_kernel_hashes_section() {
    let exe = sev_snp_measure();
    let dir = tempfile::tempdir().unwrap();
    let (kernel, _) = boot_inputs(dir.path());
    for image in [
        require(DEBIAN_OVMF_CODE),
        fixture("ovmf_OvmfX64_suffix.bin"),
    ] {
        let mut c = Case::new(&image, 1, Vcpu::Type("EPYC-v4"), "QEMU", 0x1);
        c.kernel = Some(kernel.clone());
        let stderr = reference(&exe, &c.cli_args()).unwrap_err();
        assert!(stderr.contains("SNP_KERNEL_HASHES"), "{stderr}");
        let ours = c.ours().unwrap_err();
        assert!(
            matches!(
                ours,
                MeasureError::OvmfFile {
                    source: measure::OvmfError::NoKernelHashesSection,
                    ..
                }
            ),
            "{ours:?}"
        );
    }
}
