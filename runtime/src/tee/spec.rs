//! TEE settings of a box and their validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use a3s_vmm::proto::TeeMode;

/// Guest TCP port on which a TEE box's agent serves RA-TLS (publish it with `-p H:7443` for
/// remote verifiers).
pub const RATLS_GUEST_PORT: u16 = 7443;

/// Largest `--tee-policy` file (Rego policies are a few KiB).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Where one secret comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretSource {
    /// A resource of the box's KBS (`--kbs-url`): `repo/type/tag`.
    Kbs {
        /// The resource path.
        resource: String,
    },
    /// A host file served by the box's ephemeral KBS (read when the box starts).
    File {
        /// Absolute path of the file.
        path: PathBuf,
    },
}

/// `--secret NAME=SOURCE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// File name under `/run/secrets/`.
    pub name: String,
    /// Where it comes from.
    pub source: SecretSource,
}

/// The repository under which the ephemeral KBS serves file secrets.
pub const LOCAL_REPO: &str = "a3s-local";

impl SecretRef {
    /// Parses `NAME=kbs:///repo/type/tag` or `NAME=file:PATH` (relative paths are resolved
    /// against the current directory now, so a later `start` reads the same file).
    ///
    /// # Errors
    /// [`TeeError::Secret`] naming what is wrong.
    pub fn parse(spec: &str) -> Result<Self, TeeError> {
        let bad = |why: &str| TeeError::Secret {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let (name, source) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=kbs:///repo/type/tag or NAME=file:PATH"))?;
        check_secret_name(name).map_err(|why| bad(&why))?;
        let source = if let Some(path) = source.strip_prefix("kbs:///") {
            check_resource(path).map_err(|why| bad(&why))?;
            SecretSource::Kbs {
                resource: path.to_owned(),
            }
        } else if let Some(path) = source.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad("file: needs a path"));
            }
            let p = PathBuf::from(path);
            let abs = if p.is_absolute() {
                p
            } else {
                std::env::current_dir()
                    .map_err(|e| bad(&format!("resolving the relative path: {e}")))?
                    .join(p)
            };
            if !abs.is_file() {
                return Err(bad(&format!("{} is not a readable file", abs.display())));
            }
            SecretSource::File { path: abs }
        } else {
            return Err(bad(
                "the source must start with kbs:/// (a KBS resource) or file: (a host file)",
            ));
        };
        Ok(Self {
            name: name.to_owned(),
            source,
        })
    }

    /// The KBS resource path the guest asks for.
    pub fn resource(&self) -> String {
        match &self.source {
            SecretSource::Kbs { resource } => resource.clone(),
            SecretSource::File { .. } => format!("{LOCAL_REPO}/file/{}", self.name),
        }
    }
}

/// A secret's file name: `[A-Za-z0-9._-]`, at most 128 bytes, not `.` or `..`.
///
/// # Errors
/// Why the name is refused.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("the name must be 1 to 128 characters".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "{name:?} has characters other than letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn check_resource(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "kbs:///{path}: a KBS resource is kbs:///repository/type/tag"
        ));
    }
    Ok(())
}

/// The TEE settings of a box (fixed at create time; no secret values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeSpec {
    /// SEV-SNP hardware or the simulator.
    pub mode: TeeMode,
    /// The KBS for `kbs:///` secrets, as the host reaches it.
    #[serde(default)]
    pub kbs_url: Option<String>,
    /// Secrets placed in `/run/secrets/` before the workload starts.
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    /// Refuse to boot unless the launch measurement is this (96 hex digits).
    #[serde(default)]
    pub expected_measurement: Option<String>,
    /// Rego attestation policy for the ephemeral KBS (`--tee-policy`); default: the launch
    /// measurement must be the expected one.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Host `exec` (and `cp`, `attach`) allowed (`--allow-exec`).
    #[serde(default)]
    pub allow_exec: bool,
}

impl TeeSpec {
    /// Checks the settings that do not need the boot artefacts; `has_network`: the box has a
    /// network (user networking or bridge networks), over which the guest reaches the KBS.
    ///
    /// # Errors
    /// [`TeeError`] naming the flag.
    pub fn validate(&self, has_network: bool) -> Result<(), TeeError> {
        if let Some(m) = &self.expected_measurement {
            parse_measurement(m)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.secrets {
            if !seen.insert(s.name.as_str()) {
                return Err(TeeError::Secret {
                    spec: s.name.clone(),
                    why: "two secrets have this name".into(),
                });
            }
            if matches!(s.source, SecretSource::Kbs { .. }) && self.kbs_url.is_none() {
                return Err(TeeError::Secret {
                    spec: format!("{}=kbs:///{}", s.name, s.resource()),
                    why: "kbs:/// secrets need --kbs-url".into(),
                });
            }
        }
        let files = self.has_file_secrets();
        if files
            && self
                .secrets
                .iter()
                .any(|s| matches!(s.source, SecretSource::Kbs { .. }))
        {
            return Err(TeeError::Secret {
                spec: self
                    .secrets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                why: "one box takes its secrets either from files or from --kbs-url, not both"
                    .into(),
            });
        }
        if !self.secrets.is_empty() && !has_network {
            return Err(TeeError::NoNetwork);
        }
        if let Some(url) = &self.kbs_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(TeeError::KbsUrl(url.clone()));
            }
        }
        if let Some(p) = &self.policy {
            let text = crate::bounded::read_to_string(p, MAX_POLICY_BYTES).map_err(|e| {
                TeeError::Policy {
                    path: p.clone(),
                    why: e.to_string(),
                }
            })?;
            a3s_kbs::policy::check_kind(a3s_kbs::policy::PolicyKind::Attestation, &text).map_err(
                |e| TeeError::Policy {
                    path: p.clone(),
                    why: e.to_string(),
                },
            )?;
        }
        Ok(())
    }

    /// True when the evidence is simulated.
    pub fn simulated(&self) -> bool {
        self.mode == TeeMode::Simulated
    }

    /// True when the ephemeral KBS is needed.
    pub fn has_file_secrets(&self) -> bool {
        self.secrets
            .iter()
            .any(|s| matches!(s.source, SecretSource::File { .. }))
    }
}

/// Parses a 48-byte measurement given as hex.
///
/// # Errors
/// [`TeeError::Measurement`].
pub fn parse_measurement(text: &str) -> Result<[u8; 48], TeeError> {
    let bytes =
        hex::decode(text.trim()).map_err(|e| TeeError::Measurement(format!("{text:?}: {e}")))?;
    <[u8; 48]>::try_from(bytes.as_slice()).map_err(|_| {
        TeeError::Measurement(format!(
            "{text:?} is {} bytes; a launch measurement is 48 bytes (96 hex digits)",
            bytes.len()
        ))
    })
}

/// What a TEE box's last launch was, for `inspect` and `attest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeRecord {
    /// `snp` or `simulated`.
    pub mode: TeeMode,
    /// Evidence comes from the simulator (never true for `snp`).
    pub simulated: bool,
    /// The launch measurement of the last boot, hex.
    pub measurement: String,
    /// The expected one, when given.
    #[serde(default)]
    pub expected_measurement: Option<String>,
    /// Time spent measuring the boot artefacts.
    #[serde(default)]
    pub measure_ms: u64,
    /// Steps the guest agent reported, in order (`name` or `name:detail`, with ms).
    #[serde(default)]
    pub steps: Vec<(String, u64)>,
    /// The box's first boot started from the encrypted layer an earlier box of this
    /// measurement made ([`super::layer_cache`]) instead of formatting its own.
    #[serde(default)]
    pub layer_prefilled: bool,
}

/// A TEE setting is wrong, or a TEE step failed on the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// Bad `--secret`.
    #[error("--secret {spec:?}: {why}")]
    Secret {
        /// As given.
        spec: String,
        /// Why.
        why: String,
    },
    /// Bad `--expected-measurement`.
    #[error("--expected-measurement {0}")]
    Measurement(String),
    /// Bad `--kbs-url`.
    #[error("--kbs-url {0:?} must start with http:// or https://")]
    KbsUrl(String),
    /// Bad `--tee-policy`.
    #[error("--tee-policy {}: {why}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Secrets with `--network none`.
    #[error(
        "secrets are fetched from the KBS over the box's network, and --network none has none"
    )]
    NoNetwork,
    /// The measured launch is not the expected one.
    #[error(
        "launch measurement mismatch: expected {expected}, the boot artefacts measure {actual}"
    )]
    MeasurementMismatch {
        /// `--expected-measurement`.
        expected: String,
        /// What the artefacts measure.
        actual: String,
    },
    /// A measurement was asked of a box that is not confidential.
    #[error("only confidential boxes have a launch measurement: add --tee-simulate (or --tee-enable on an SEV-SNP host)")]
    NotConfidential,
    /// `--tee-enable` on a host that cannot launch SEV-SNP guests.
    #[error("--tee-enable: {0}")]
    NoSnp(String),
    /// The boot artefacts could not be measured.
    #[error("measuring the launch: {0}")]
    Measure(String),
    /// The simulator could not be opened.
    #[error("the SEV-SNP simulator: {0}")]
    Simulator(String),
    /// The ephemeral KBS failed.
    #[error("the box's local KBS: {0}")]
    LocalKbs(String),
    /// An audit event could not be written, so the step it records must not happen.
    #[error("writing the audit event: {0}")]
    Audit(String),
    /// `attest` reached no verdict.
    #[error("attestation: {0}")]
    Attest(String),
    /// Host exec, cp or attach in a TEE box without `--allow-exec`.
    #[error("{what} refused: box {name} runs in TEE mode and was not started with --allow-exec")]
    ExecRefused {
        /// `exec`, `cp` or `attach`.
        what: String,
        /// The box.
        name: String,
    },
}

impl TeeError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Secret { .. } => Some(
                "e.g. --secret db=kbs:///default/db/password --kbs-url http://kbs:8080 or --secret api=file:./api.key"
                    .into(),
            ),
            Self::Measurement(_) => {
                Some("`a3s-box inspect BOX` shows the measured value of a box".into())
            }
            Self::MeasurementMismatch { .. } => Some(
                "the kernel, initrd (guest agent, image) or command line differ from what was expected; `a3s-box measure --image IMAGE` with the same --tee-*, --cpus, --kernel-arg and --network flags prints what this host will measure".into(),
            ),
            Self::NoNetwork => Some("use the default network (tsi) or a bridge network, or drop the secrets".into()),
            Self::NoSnp(_) => Some("use --tee-simulate on hosts without SEV-SNP".into()),
            Self::ExecRefused { .. } => Some(
                "recreate the box with --allow-exec if the host may run commands in it".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kbs_and_file_secrets() {
        let s = SecretRef::parse("db=kbs:///default/db/password").unwrap();
        assert_eq!(s.resource(), "default/db/password");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "v").unwrap();
        let s = SecretRef::parse(&format!("api.key=file:{}", f.display())).unwrap();
        assert_eq!(s.source, SecretSource::File { path: f });
        assert_eq!(s.resource(), "a3s-local/file/api.key");
    }

    #[test]
    fn refuses_bad_secrets_by_what_is_wrong() {
        for (spec, needle) in [
            ("nosource", "expected NAME="),
            ("../x=kbs:///a/b/c", "characters other than"),
            ("..=kbs:///a/b/c", "not a file name"),
            ("x=kbs:///a/b", "repository/type/tag"),
            ("x=kbs:///a/../c", "repository/type/tag"),
            ("x=http://a/b/c", "must start with kbs:///"),
            ("x=file:", "needs a path"),
            ("x=file:/definitely/not/here", "not a readable file"),
        ] {
            let e = SecretRef::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn validation_names_the_flag() {
        let mut spec = TeeSpec {
            mode: TeeMode::Simulated,
            kbs_url: None,
            secrets: vec![SecretRef::parse("db=kbs:///a/b/c").unwrap()],
            expected_measurement: None,
            policy: None,
            allow_exec: false,
        };
        assert!(spec
            .validate(true)
            .unwrap_err()
            .to_string()
            .contains("need --kbs-url"));
        spec.kbs_url = Some("ftp://x".into());
        assert!(matches!(spec.validate(true), Err(TeeError::KbsUrl(_))));
        spec.kbs_url = Some("http://127.0.0.1:1".into());
        assert!(matches!(spec.validate(false), Err(TeeError::NoNetwork)));
        spec.validate(true).unwrap();
        spec.expected_measurement = Some("abcd".into());
        assert!(spec
            .validate(true)
            .unwrap_err()
            .to_string()
            .contains("48 bytes"));
        spec.expected_measurement = Some("zz".repeat(48));
        assert!(matches!(spec.validate(true), Err(TeeError::Measurement(_))));
        spec.expected_measurement = None;
        spec.secrets.push(spec.secrets[0].clone());
        assert!(spec
            .validate(true)
            .unwrap_err()
            .to_string()
            .contains("two secrets"));
    }
}
