//! `a3s-box secret inject` (issue 17): a secret reaches a running `--tee-simulate` box over
//! RA-TLS after its evidence verified with a fresh nonce, lands in `/run/secrets/NAME`
//! (tmpfs, 0400) and is audited by name only; nothing is delivered to a box whose evidence
//! does not meet the expected measurement, to a plain box, or to a stopped one; bad NAME and
//! PATH forms and oversized or endless inputs are refused before anything is sent.
//!
//! Shares tee.rs's home (its simulator) and boot lock; one VM boot.

use crate::support::write_file;
use crate::tee::{assert_never_on_host, boot_lock, shared, wait_for_log};

const INJECTED: &str = "injected-secret-3c9e51d7-never-on-the-host";
const REFUSED: &str = "refused-secret-8a41f0c2-never-delivered";

#[test]
fn inject_reaches_a_running_tee_box_only_after_its_evidence_verifies() {
    let s = shared();
    let env = &s.env;
    let value = write_file(env.home.path(), "inject-value.txt", INJECTED.as_bytes());
    let refused = write_file(env.home.path(), "inject-refused.txt", REFUSED.as_bytes());

    // Refused before anything is sent: bad names and sources, endless and oversized files.
    let big = env.path("inject-big.bin");
    std::fs::write(&big, vec![b'x'; 11 << 20]).unwrap();
    let bad: &[(String, &str)] = &[
        (format!("a/b=file:{value}"), "characters other than"),
        (format!("..=file:{value}"), "not a file name"),
        (format!("noequals:{value}"), "expected NAME="),
        ("x=kbs:///default/a/b".to_owned(), "NAME=file:PATH"),
        ("x=file:/dev/zero".to_owned(), "not a readable file"),
        (
            "x=file:/definitely/missing".to_owned(),
            "not a readable file",
        ),
        (format!("x=file:{}", big.display()), "exceeds 1048576 bytes"),
    ];
    for (spec, why) in bad {
        let r = env.run(&["secret", "inject", "no-such-box", spec]);
        assert_eq!(r.code, 2, "{spec}: {r:?}");
        assert!(r.stderr.contains(why), "{spec}: wanted {why:?}: {r:?}");
    }

    // A plain box has no evidence to verify.
    let plain = env.run(&["create", "--name", "inject-plain", "busybox", "true"]);
    assert_eq!(plain.code, 0, "{plain:?}");
    let spec = format!("api=file:{value}");
    let r = env.run(&["secret", "inject", "inject-plain", &spec]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not a TEE box"), "{r:?}");
    assert_eq!(env.run(&["rm", "inject-plain"]).code, 0);

    let _boot = boot_lock();
    let r = env.run(&[
        "run",
        "-d",
        "--name",
        "tee-inject",
        "--tee-simulate",
        "busybox",
        "sh",
        "-c",
        "until [ -f /run/secrets/api ]; do sleep 0.2; done; \
         sha256sum /run/secrets/api; stat -c 'mode=%a uid=%u' /run/secrets/api; \
         grep ' /run/secrets ' /proc/mounts; echo FIRST-SEEN; \
         until [ -f /run/secrets/last ]; do sleep 0.2; done; \
         echo LISTING $(ls /run/secrets) END; sleep 600",
    ]);
    assert_eq!(r.code, 0, "{r:?}");

    // A wrong expected measurement: the evidence is refused and nothing is delivered.
    let wrong = "11".repeat(48);
    let spec_refused = format!("denied=file:{refused}");
    let r = env.run(&[
        "secret",
        "inject",
        "tee-inject",
        &spec_refused,
        "--expected-measurement",
        &wrong,
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not delivered"), "{r:?}");
    assert!(r.stderr.contains("did not verify"), "{r:?}");

    // The box's own recorded measurement: delivered.
    let r = env.run(&["secret", "inject", "tee-inject", &spec, "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(v["attestation"]["verified"], true, "{v}");
    assert_eq!(v["attestation"]["simulated"], true, "{v}");
    assert_eq!(
        v["attestation"]["measurement"],
        s.measurement.as_str(),
        "{v}"
    );
    let logs = wait_for_log(env, "tee-inject", "FIRST-SEEN");
    assert!(
        logs.contains(&crate::tee::sha256_hex(INJECTED.as_bytes())),
        "{logs}"
    );
    assert!(logs.contains("mode=400 uid=0"), "{logs}");
    assert!(logs.contains("tmpfs"), "/run/secrets is a tmpfs: {logs}");

    // A name already present is never replaced.
    let r = env.run(&["secret", "inject", "tee-inject", &spec]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");

    // The refused secret never arrived: the box lists only what was delivered.
    let last = format!("last=file:{value}");
    assert_eq!(env.run(&["secret", "inject", "tee-inject", &last]).code, 0);
    let logs = wait_for_log(env, "tee-inject", "LISTING");
    let listing = logs
        .lines()
        .find(|l| l.starts_with("LISTING"))
        .unwrap()
        .to_owned();
    assert_eq!(listing, "LISTING api last END", "{logs}");

    // Audited by name, with the verdicts; never the value.
    let audit = env
        .run(&[
            "audit",
            "--action",
            "tee.secret_inject",
            "--box",
            "tee-inject",
            "--format",
            "json",
        ])
        .stdout;
    assert!(audit.contains("\"api\""), "{audit}");
    assert!(audit.contains("\"denied\""), "{audit}");
    assert!(audit.contains("\"success\""), "{audit}");
    assert!(
        !audit.contains(INJECTED) && !audit.contains(REFUSED),
        "{audit}"
    );

    // A stopped box is refused.
    assert_eq!(env.run(&["stop", "tee-inject"]).code, 0);
    let spec_late = format!("late=file:{value}");
    let r = env.run(&["secret", "inject", "tee-inject", &spec_late]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("not running"), "{r:?}");

    assert_eq!(env.run(&["rm", "-f", "tee-inject"]).code, 0);
    assert_never_on_host(env, INJECTED, &["inject-value.txt"]);
    assert_never_on_host(env, REFUSED, &["inject-refused.txt"]);
}
