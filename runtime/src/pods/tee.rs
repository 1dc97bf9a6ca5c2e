//! Confidential pods: what a RuntimeClass handler and the pod's `io.a3s.box/*` annotations ask
//! of the trust pipeline, validated before anything boots.
//!
//! | handler / annotation | meaning |
//! |---|---|
//! | handler `a3s-simulate`, or `io.a3s.box/tee: simulate` | the simulated SEV-SNP pipeline |
//! | handler `a3s-snp`, or `io.a3s.box/tee: snp` | SEV-SNP hardware |
//! | `io.a3s.box/kbs: http(s)://HOST:PORT` | the KBS the pod VM attests to |
//! | `io.a3s.box/secrets: NAME=kbs:///repo/type/tag,...` | KBS resources placed at `/run/secrets/NAME` |
//! | `io.a3s.box/images: sha256:...,...` | manifest digests the pod's containers may run (measured) |
//! | `io.a3s.box/allow-exec: "true"` | host exec/attach/port-forward allowed (`--allow-exec`) |
//! | `io.a3s.box/expected-measurement: HEX` | refuse to boot unless the launch measures this |
//!
//! Secrets come only from a KBS: a pod author must not name files of the node.

use a3s_vmm::pod_image::{images_arg, MAX_IMAGES};

use super::{PodError, PodSpec};
use crate::tee::spec::{parse_measurement, SecretRef, TeeMode, TeeSpec};

/// RuntimeClass handler of SEV-SNP pods.
pub const HANDLER_SNP: &str = "a3s-snp";
/// RuntimeClass handler of simulated confidential pods.
pub const HANDLER_SIMULATE: &str = "a3s-simulate";
/// `snp` or `simulate`.
pub const TEE_ANNOTATION: &str = "io.a3s.box/tee";
/// The KBS URL.
pub const KBS_ANNOTATION: &str = "io.a3s.box/kbs";
/// `NAME=kbs:///repo/type/tag`, comma-separated.
pub const SECRETS_ANNOTATION: &str = "io.a3s.box/secrets";
/// Allowed image manifest digests, comma-separated.
pub const IMAGES_ANNOTATION: &str = "io.a3s.box/images";
/// `true`: host exec, attach and port-forward are allowed.
pub const ALLOW_EXEC_ANNOTATION: &str = "io.a3s.box/allow-exec";
/// The launch measurement the pod VM must have (96 hex digits).
pub const MEASUREMENT_ANNOTATION: &str = "io.a3s.box/expected-measurement";

/// Annotations that only mean something for a confidential pod.
const TEE_ONLY: [&str; 5] = [
    KBS_ANNOTATION,
    SECRETS_ANNOTATION,
    IMAGES_ANNOTATION,
    ALLOW_EXEC_ANNOTATION,
    MEASUREMENT_ANNOTATION,
];

/// A confidential pod's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTee {
    /// The pod VM's TEE settings (a box's `--tee-*`, `--secret`, `--allow-exec`).
    pub tee: TeeSpec,
    /// Manifest digests the pod's containers may run (`sha256:<hex>`), on the measured
    /// command line.
    pub images: Vec<String>,
}

impl PodTee {
    /// The confidential settings of `spec` (`None`: a plain pod).
    ///
    /// # Errors
    /// [`PodError::Invalid`] naming the handler or annotation that is wrong.
    pub fn of(spec: &PodSpec) -> Result<Option<Self>, PodError> {
        let bad = |what: &str, why: String| PodError::Invalid(format!("{what}: {why}"));
        let by_handler = match spec.handler.as_str() {
            "" => None,
            HANDLER_SNP => Some(TeeMode::Snp),
            HANDLER_SIMULATE => Some(TeeMode::Simulated),
            other => {
                return Err(bad(
                    "runtime handler",
                    format!(
                        "{other:?} is unknown; this runtime has \"\" (plain pods), \
                         {HANDLER_SNP:?} and {HANDLER_SIMULATE:?}"
                    ),
                ))
            }
        };
        let annotation = |k: &str| spec.annotations.get(k).map(String::as_str);
        let by_annotation = match annotation(TEE_ANNOTATION) {
            None => None,
            Some("snp") => Some(TeeMode::Snp),
            Some("simulate") => Some(TeeMode::Simulated),
            Some(v) => {
                return Err(bad(
                    TEE_ANNOTATION,
                    format!("{v:?} is neither \"snp\" nor \"simulate\""),
                ))
            }
        };
        let mode = match (by_handler, by_annotation) {
            (Some(h), Some(a)) if h != a => {
                return Err(bad(
                    TEE_ANNOTATION,
                    format!(
                        "it asks for another TEE than runtime handler {:?}",
                        spec.handler
                    ),
                ))
            }
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => {
                if let Some(k) = TEE_ONLY.iter().find(|k| spec.annotations.contains_key(**k)) {
                    return Err(bad(
                        k,
                        format!(
                            "only confidential pods take it; add runtime handler \
                             {HANDLER_SIMULATE:?}/{HANDLER_SNP:?} or {TEE_ANNOTATION}"
                        ),
                    ));
                }
                return Ok(None);
            }
        };
        let kbs_url = annotation(KBS_ANNOTATION).map(str::to_owned);
        if let Some(url) = &kbs_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    KBS_ANNOTATION,
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
        }
        let secrets = secrets(annotation(SECRETS_ANNOTATION).unwrap_or(""))?;
        if !secrets.is_empty() && kbs_url.is_none() {
            return Err(bad(
                SECRETS_ANNOTATION,
                format!("secrets come from a KBS: add {KBS_ANNOTATION}"),
            ));
        }
        let images = images(annotation(IMAGES_ANNOTATION).unwrap_or(""))?;
        let allow_exec = match annotation(ALLOW_EXEC_ANNOTATION) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(bad(
                    ALLOW_EXEC_ANNOTATION,
                    format!("{v:?} is neither \"true\" nor \"false\""),
                ))
            }
        };
        let expected_measurement = annotation(MEASUREMENT_ANNOTATION).map(str::to_owned);
        if let Some(m) = &expected_measurement {
            parse_measurement(m).map_err(|e| bad(MEASUREMENT_ANNOTATION, e.to_string()))?;
        }
        Ok(Some(Self {
            tee: TeeSpec {
                mode,
                kbs_url,
                secrets,
                expected_measurement,
                policy: None,
                allow_exec,
            },
            images,
        }))
    }

    /// Kernel arguments of the pod VM (measured): the image allow-list.
    pub fn kernel_args(&self) -> Vec<String> {
        vec![images_arg(&self.images)]
    }

    /// True when `digest` (a manifest digest) may run in this pod.
    pub fn allows(&self, digest: &str) -> bool {
        self.images.iter().any(|d| d == digest)
    }
}

/// The message of `e` with every cause, `: `-joined (a failed TEE step names itself in one
/// of them).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = c.source();
    }
    msg
}

fn secrets(list: &str) -> Result<Vec<SecretRef>, PodError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // Checked before parsing: a `file:` source would make the node read one of its files.
        let kbs = item
            .split_once('=')
            .is_some_and(|(_, src)| src.starts_with("kbs:///"));
        if !kbs {
            return Err(PodError::Invalid(format!(
                "{SECRETS_ANNOTATION}: {item:?} must be NAME=kbs:///repository/type/tag \
                 (pod secrets come from the KBS, never from the node's files)"
            )));
        }
        let s = SecretRef::parse(item)
            .map_err(|e| PodError::Invalid(format!("{SECRETS_ANNOTATION}: {e}")))?;
        if out.iter().any(|o: &SecretRef| o.name == s.name) {
            return Err(PodError::Invalid(format!(
                "{SECRETS_ANNOTATION}: two secrets are named {:?}",
                s.name
            )));
        }
        out.push(s);
    }
    Ok(out)
}

fn images(list: &str) -> Result<Vec<String>, PodError> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let d: a3s_image::Digest = item.parse().map_err(|e| {
            PodError::Invalid(format!(
                "{IMAGES_ANNOTATION}: {e} (list image manifest digests, as `crictl inspecti` \
                 shows in repoDigests)"
            ))
        })?;
        if !out.contains(&d.to_string()) {
            out.push(d.to_string());
        }
    }
    if out.len() > MAX_IMAGES {
        return Err(PodError::Invalid(format!(
            "{IMAGES_ANNOTATION}: {} images; a pod allows at most {MAX_IMAGES} (they are on \
             the measured kernel command line)",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(handler: &str, annotations: &[(&str, &str)]) -> PodSpec {
        PodSpec {
            name: "p".into(),
            namespace: "default".into(),
            uid: "u".into(),
            attempt: 0,
            labels: Default::default(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            hostname: None,
            dns_servers: vec![],
            dns_searches: vec![],
            dns_options: vec![],
            ports: vec![],
            handler: handler.into(),
            ..PodSpec::default()
        }
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn a_plain_pod_has_no_tee() {
        assert_eq!(PodTee::of(&spec("", &[("app", "x")])).unwrap(), None);
    }

    #[test]
    fn the_handler_or_the_annotation_choose_the_tee() {
        let t = PodTee::of(&spec(HANDLER_SIMULATE, &[])).unwrap().unwrap();
        assert_eq!(t.tee.mode, TeeMode::Simulated);
        assert!(!t.tee.allow_exec);
        assert!(t.images.is_empty());
        let t = PodTee::of(&spec("", &[(TEE_ANNOTATION, "snp")]))
            .unwrap()
            .unwrap();
        assert_eq!(t.tee.mode, TeeMode::Snp);
        let both = spec(HANDLER_SIMULATE, &[(TEE_ANNOTATION, "simulate")]);
        assert_eq!(
            PodTee::of(&both).unwrap().unwrap().tee.mode,
            TeeMode::Simulated
        );
    }

    #[test]
    fn annotations_fill_the_tee_settings() {
        let (a, b) = (digest('a'), digest('b'));
        let images = format!("{a}, {b},{a}");
        let m = "ab".repeat(48);
        let t = PodTee::of(&spec(
            HANDLER_SIMULATE,
            &[
                (KBS_ANNOTATION, "http://127.0.0.1:8080"),
                (
                    SECRETS_ANNOTATION,
                    "db=kbs:///default/db/password, api=kbs:///a/b/c",
                ),
                (IMAGES_ANNOTATION, &images),
                (ALLOW_EXEC_ANNOTATION, "true"),
                (MEASUREMENT_ANNOTATION, &m),
            ],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(t.tee.kbs_url.as_deref(), Some("http://127.0.0.1:8080"));
        let names: Vec<_> = t.tee.secrets.iter().map(|s| s.resource()).collect();
        assert_eq!(names, ["default/db/password", "a/b/c"]);
        assert_eq!(t.images, [a.clone(), b.clone()]);
        assert!(t.allows(&b) && !t.allows(&digest('c')));
        assert!(t.tee.allow_exec);
        assert_eq!(t.tee.expected_measurement.as_deref(), Some(m.as_str()));
        assert_eq!(t.kernel_args(), [format!("a3s.pod_images={a},{b}")]);
        t.tee.validate(true).unwrap();
    }

    #[test]
    fn wrong_settings_name_what_is_wrong() {
        let many = (0..9)
            .map(|i| format!("sha256:{i:064}"))
            .collect::<Vec<_>>()
            .join(",");
        for (handler, ann, needle) in [
            ("runc", vec![], "runtime handler: \"runc\" is unknown"),
            ("", vec![(TEE_ANNOTATION, "tdx")], "neither \"snp\""),
            (
                HANDLER_SNP,
                vec![(TEE_ANNOTATION, "simulate")],
                "another TEE",
            ),
            (
                "",
                vec![(SECRETS_ANNOTATION, "a=kbs:///x/y/z")],
                "only confidential pods",
            ),
            (
                HANDLER_SIMULATE,
                vec![(KBS_ANNOTATION, "ftp://k")],
                "http://",
            ),
            (
                HANDLER_SIMULATE,
                vec![(SECRETS_ANNOTATION, "a=kbs:///x/y/z")],
                "add io.a3s.box/kbs",
            ),
            (
                HANDLER_SIMULATE,
                vec![(SECRETS_ANNOTATION, "a=file:/etc/shadow")],
                "never from the node",
            ),
            (
                HANDLER_SIMULATE,
                vec![(SECRETS_ANNOTATION, "../a=kbs:///x/y/z")],
                "characters other",
            ),
            (
                HANDLER_SIMULATE,
                vec![(IMAGES_ANNOTATION, "busybox:latest")],
                "manifest digests",
            ),
            (
                HANDLER_SIMULATE,
                vec![(IMAGES_ANNOTATION, many.as_str())],
                "at most 8",
            ),
            (
                HANDLER_SIMULATE,
                vec![(ALLOW_EXEC_ANNOTATION, "yes")],
                "neither \"true\"",
            ),
            (
                HANDLER_SIMULATE,
                vec![(MEASUREMENT_ANNOTATION, "abcd")],
                "48 bytes",
            ),
        ] {
            let e = PodTee::of(&spec(handler, &ann)).unwrap_err().to_string();
            assert!(e.contains(needle), "{handler} {ann:?}: {e}");
        }
    }
}
