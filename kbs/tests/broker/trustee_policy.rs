//! Issue 17: attestation policies in trustee's EAR form (trust-claim rules,
//! `query_reference_value`, the `default_cpu` id) and trustee-shaped reference values give
//! trustee's verdicts next to our own policies; a policy that cannot be evaluated is refused
//! at upload; a changed policy takes effect at once.

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{admin_bearer, attested, broker, get, send, Broker, MEASUREMENT};

const TRUSTEE_FORM: &str = include_str!("policies/trustee-form-cpu.rego");
const LEGACY_FORM: &str = include_str!("policies/trustee-legacy-form.rego");

async fn set_attestation_policy(b: &Broker, id: Option<&str>, rego: &str) -> crate::support::Reply {
    let mut body = json!({"type": "rego", "policy": URL_SAFE_NO_PAD.encode(rego)});
    if let Some(id) = id {
        body["policy_id"] = json!(id);
    }
    let req = Request::post("/kbs/v0/attestation-policy")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(&b.state, req).await
}

async fn set_reference_values(b: &Broker, values: Value) {
    let msg = json!({"version": "0.1.0", "type": "sample",
        "payload": STANDARD.encode(values.to_string())});
    let req = Request::post("/kbs/v0/reference-value")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(msg.to_string()))
        .unwrap();
    let r = send(&b.state, req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Attests `measurement`; returns the cpu0 submod of the token and the resource status.
async fn verdict(b: &Broker, measurement: [u8; 48]) -> (Value, u16) {
    let (cookie, token, _) = attested(&b.state, measurement).await;
    let claims = a3s_kbs::jwt::claims_unverified(&token).unwrap();
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    (claims["submods"]["cpu0"].clone(), r.status)
}

/// Trustee-shaped reference values matching the simulated guest's report.
fn trustee_values(snp: &Value) -> Value {
    json!({
        "snp_launch_measurement": [hex::encode(MEASUREMENT)],
        "snp_bootloader": [snp["reported_tcb_bootloader"]],
        "snp_microcode": [snp["reported_tcb_microcode"]],
        "snp_snp_svn": [snp["reported_tcb_snp"]],
        "snp_tee_svn": [snp["reported_tcb_tee"]],
        "snp_smt_enabled": snp["platform_smt_enabled"],
        "snp_guest_abi_major": snp["policy_abi_major"],
    })
}

#[tokio::test]
async fn a_trustee_form_policy_stored_as_default_cpu_gives_trustee_verdicts() {
    let b = broker();
    // kbs-client without --id stores the policy as `default_cpu`: it must take effect.
    let r = set_attestation_policy(&b, Some("default_cpu"), TRUSTEE_FORM).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Only the launch measurement is registered: the hardware is unrecognised.
    let (cpu0, status) = verdict(&b, MEASUREMENT).await;
    assert_eq!(cpu0["ear.status"], "contraindicated", "{cpu0}");
    assert_eq!(cpu0["ear.trustworthiness-vector"]["hardware"], 97, "{cpu0}");
    assert_eq!(cpu0["ear.trustworthiness-vector"]["executables"], 3);
    assert_eq!(status, 401);
    let snp = cpu0["ear.veraison.annotated-evidence"]["snp"].clone();

    set_reference_values(&b, trustee_values(&snp)).await;
    let (cpu0, status) = verdict(&b, MEASUREMENT).await;
    assert_eq!(cpu0["ear.status"], "affirming", "{cpu0}");
    assert_eq!(
        cpu0["ear.trustworthiness-vector"],
        json!({"executables": 3, "hardware": 2, "configuration": 2})
    );
    assert_eq!(
        status, 200,
        "the default resource policy releases to affirming tokens"
    );

    // An unregistered launch is a warning (executables 33): no resource.
    let (cpu0, status) = verdict(&b, [0x11; 48]).await;
    assert_eq!(cpu0["ear.status"], "warning", "{cpu0}");
    assert_eq!(status, 401);

    // A TCB outside trustee's list: hardware 97, contraindicated.
    let mut values = trustee_values(&snp);
    values["snp_bootloader"] = json!([snp["reported_tcb_bootloader"].as_u64().unwrap() + 1]);
    set_reference_values(&b, values).await;
    let (cpu0, _) = verdict(&b, MEASUREMENT).await;
    assert_eq!(cpu0["ear.status"], "contraindicated", "{cpu0}");

    // A configuration that differs from the reference falls back to "no known
    // vulnerabilities" (3), still affirming.
    let mut values = trustee_values(&snp);
    values["snp_smt_enabled"] = json!(!snp["platform_smt_enabled"].as_bool().unwrap());
    set_reference_values(&b, values).await;
    let (cpu0, _) = verdict(&b, MEASUREMENT).await;
    assert_eq!(cpu0["ear.trustworthiness-vector"]["configuration"], 3);
    assert_eq!(cpu0["ear.status"], "affirming");
}

#[tokio::test]
async fn the_older_trustee_form_and_ours_work_side_by_side() {
    let b = broker();
    let (cpu0, _) = verdict(&b, MEASUREMENT).await;
    let snp = cpu0["ear.veraison.annotated-evidence"]["snp"].clone();
    set_reference_values(&b, trustee_values(&snp)).await;
    // Ours (the built-in default) reads `snp_launch_measurement` from the same store.
    let (cpu0, status) = verdict(&b, MEASUREMENT).await;
    assert_eq!(
        (cpu0["ear.status"].as_str(), status),
        (Some("affirming"), 200)
    );
    assert_eq!(
        set_attestation_policy(&b, None, LEGACY_FORM).await.status,
        200
    );
    let (cpu0, status) = verdict(&b, MEASUREMENT).await;
    assert_eq!(cpu0["ear.status"], "affirming", "{cpu0}");
    assert_eq!(status, 200);
    let (cpu0, _) = verdict(&b, [0x11; 48]).await;
    assert_eq!(cpu0["ear.status"], "warning", "{cpu0}");
}

#[tokio::test]
async fn a_changed_policy_takes_effect_at_once() {
    let b = broker();
    let (cpu0, _) = verdict(&b, [0x11; 48]).await;
    assert_eq!(cpu0["ear.status"], "contraindicated");
    let allow_all = a3s_kbs::policy::ATTESTATION_ALLOW_ALL;
    assert_eq!(
        set_attestation_policy(&b, None, allow_all).await.status,
        200
    );
    let (cpu0, status) = verdict(&b, [0x11; 48]).await;
    assert_eq!(
        (cpu0["ear.status"].as_str(), status),
        (Some("affirming"), 200)
    );
    let deny = "package policy\n\ndefault allow := false\n";
    assert_eq!(
        set_attestation_policy(&b, Some("default_cpu"), deny)
            .await
            .status,
        200
    );
    let (cpu0, status) = verdict(&b, MEASUREMENT).await;
    assert_eq!(
        (cpu0["ear.status"].as_str(), status),
        (Some("contraindicated"), 401)
    );
    assert!(b.state.policies.len() >= 2, "compiled once per text");
}

#[tokio::test]
async fn a_policy_that_cannot_be_evaluated_is_refused_at_upload() {
    let b = broker();
    for (rego, reason) in [
        (
            "package policy\n\ndefault x := 1\n",
            "neither the boolean rule `allow`",
        ),
        (
            "package policy\n\nimport rego.v1\n\nallow if no_such_function(input.snp)\n",
            "no_such_function",
        ),
        (
            "package policy\n\ndefault allow := \"yes\"\n",
            "not a boolean",
        ),
        (
            "package policy\n\ndefault executables := \"three\"\n",
            "not a trust-claim integer",
        ),
    ] {
        let r = set_attestation_policy(&b, None, rego).await;
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            (r.status, r.kind().as_str()),
            (401, "ParsePolicyError"),
            "{rego}: {detail}"
        );
        assert!(detail.contains(reason), "{rego}: {detail}");
    }
    // Nothing was stored: the built-in default still decides.
    let (cpu0, _) = verdict(&b, [0x11; 48]).await;
    assert_eq!(cpu0["ear.status"], "contraindicated");
    // A trust-vector policy is an attestation policy only.
    let req = Request::post("/kbs/v0/resource-policy")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(
            json!({"policy": URL_SAFE_NO_PAD.encode(TRUSTEE_FORM)}).to_string(),
        ))
        .unwrap();
    let r = send(&b.state, req).await;
    assert_eq!(r.kind(), "ParsePolicyError");
}
