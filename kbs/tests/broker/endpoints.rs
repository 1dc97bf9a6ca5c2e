//! Every endpoint and error kind through `app(state).oneshot(..)`.

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn auth_issues_a_challenge_and_a_session_cookie() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let id = cookie.strip_prefix("kbs-session-id=").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 32);
    assert_eq!(nonce.len(), 44);
}

#[tokio::test]
async fn auth_refuses_other_protocol_versions_and_tees() {
    let b = broker();
    let r = send(
        &b.state,
        json_post(
            "/kbs/v0/auth",
            &json!({"version": "0.1.1", "tee": "snp", "extra-params": ""}),
            None,
        ),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("Protocol Version Mismatch"));
    let r = send(
        &b.state,
        json_post(
            "/kbs/v0/auth",
            &json!({"version": "0.4.0", "tee": "tdx", "extra-params": ""}),
            None,
        ),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("tdx"));
}

#[tokio::test]
async fn malformed_json_is_a_serde_error_on_every_json_endpoint() {
    let b = broker();
    for uri in [
        "/kbs/v0/auth",
        "/kbs/v0/attest",
        "/kbs/v0/attestation-policy",
        "/kbs/v0/resource-policy",
        "/kbs/v0/reference-value",
    ] {
        for body in ["{not json", "[]", "{\"version\": 4}", ""] {
            let req = Request::post(uri)
                .header("cookie", "kbs-session-id=00")
                .header("authorization", admin_bearer(&b.admin_key))
                .body(Body::from(body))
                .unwrap();
            let r = send(&b.state, req).await;
            assert_eq!(
                (r.status, r.kind().as_str()),
                (401, "SerdeError"),
                "{uri} {body:?}"
            );
        }
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let b = broker_with(|c| c.limits.max_body_bytes = 1024);
    let big = format!("{{\"version\":\"{}\"}}", "x".repeat(4096));
    let r = send(
        &b.state,
        Request::post("/kbs/v0/auth")
            .body(Body::from(big.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (413, "PayloadTooLarge"));
    let req = Request::post("/kbs/v0/resource/a/b/c")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(big))
        .unwrap();
    assert_eq!(send(&b.state, req).await.status, 413);
}

#[tokio::test]
async fn attest_needs_a_live_session() {
    let b = broker();
    let (_, jwk) = tee_key();
    let body = attestation(&SimAttester::new(MEASUREMENT), "n", &jwk, "n", &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, None)).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "MissingCookie"));
    assert!(r.json()["detail"].as_str().unwrap().contains("cookie"));
    let r = send(
        &b.state,
        json_post("/kbs/v0/attest", &body, Some("kbs-session-id=0123")),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "ExpiredCookie"));
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("unknown or expired"));
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let b = broker_with(|c| c.session_timeout = std::time::Duration::ZERO);
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "ExpiredCookie"));
    assert!(r.json()["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn attest_returns_an_ear_token_marked_simulated() {
    let b = broker();
    let (_, token, key) = attested(&b.state, MEASUREMENT).await;
    let claims = a3s_kbs::jwt::claims_unverified(&token).unwrap();
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "affirming");
    assert_eq!(cpu0["a3s.simulated"], true);
    let ev = &cpu0["ear.veraison.annotated-evidence"];
    assert_eq!(ev["simulated"], true);
    assert_eq!(ev["snp"]["measurement"], hex::encode(MEASUREMENT));
    assert_eq!(ev["runtime_data_claims"]["tee-pubkey"], key.public_jwk());
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"]["crv"], "P-256");
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&{
        let mut v = vec![4u8];
        v.extend(
            URL_SAFE_NO_PAD
                .decode(header["jwk"]["x"].as_str().unwrap())
                .unwrap(),
        );
        v.extend(
            URL_SAFE_NO_PAD
                .decode(header["jwk"]["y"].as_str().unwrap())
                .unwrap(),
        );
        v
    })
    .unwrap();
    a3s_kbs::jwt::verify(&token, &vk, 0).unwrap();
}

#[tokio::test]
async fn a_challenge_cannot_be_answered_twice() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    assert_eq!(
        send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie)))
            .await
            .status,
        200
    );
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("already used"));
}

#[tokio::test]
async fn a_nonce_of_another_session_is_refused_and_spends_the_session() {
    let b = broker();
    let (cookie_a, _nonce_a) = auth(&b.state).await;
    let (_cookie_b, nonce_b) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = attestation(
        &SimAttester::new(MEASUREMENT),
        &nonce_b,
        &jwk,
        &nonce_b,
        &jwk,
    );
    let r = send(
        &b.state,
        json_post("/kbs/v0/attest", &body, Some(&cookie_a)),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("nonce"));
    // The failed session cannot be retried.
    let r = send(
        &b.state,
        json_post("/kbs/v0/attest", &body, Some(&cookie_a)),
    )
    .await;
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("unknown or expired"));
}

#[tokio::test]
async fn evidence_for_another_nonce_or_key_is_a_binding_mismatch() {
    let b = broker();
    let att = SimAttester::new(MEASUREMENT);
    let (_, jwk) = tee_key();
    let (_, other_jwk) = tee_key();
    // Evidence bound to another nonce.
    let (cookie, nonce) = auth(&b.state).await;
    let body = attestation(&att, &nonce, &jwk, "AAAA", &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("REPORT_DATA"));
    // Evidence bound to another TEE key (a man in the middle swapping the key).
    let (cookie, nonce) = auth(&b.state).await;
    let body = attestation(&att, &nonce, &other_jwk, &nonce, &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert!(
        r.json()["detail"].as_str().unwrap().contains("REPORT_DATA"),
        "{:?}",
        r.json()
    );
}

#[tokio::test]
async fn unusable_tee_keys_are_refused() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let mut body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    body["runtime-data"]["tee-pubkey"]["crv"] = json!("P-384");
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("P-384"));
}

#[tokio::test]
async fn simulated_evidence_is_refused_without_allow_simulated() {
    let b = broker_with(|c| c.verifier = a3s_kbs::verifier::EvidenceVerifier::new(None));
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("attestation failed"), "{detail}");
}

#[tokio::test]
async fn evidence_from_an_untrusted_simulator_is_refused() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let att = SimAttester {
        sim: &shared().foreign,
        guest: a3s_simulator::GuestContext::launch(MEASUREMENT),
    };
    let body = attestation(&att, &nonce, &jwk, &nonce, &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
}

#[tokio::test]
async fn tampered_evidence_is_refused() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let mut body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    body["tee-evidence"]["primary_evidence"]["attestation_report"]["measurement"][0] = json!(0);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(
        r.json()["detail"].as_str().unwrap().contains("signature"),
        "{:?}",
        r.json()
    );
    let (cookie, nonce) = auth(&b.state).await;
    let mut body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    body["tee-evidence"]["primary_evidence"] = json!({"attestation_report": {"version": 3}});
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
}

#[tokio::test]
async fn resource_is_released_as_jwe_to_the_attested_key_by_cookie_or_bearer() {
    let b = broker();
    let (cookie, token, key) = attested(&b.state, MEASUREMENT).await;
    for header in [
        ("cookie", cookie.clone()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let r = send(
            &b.state,
            get(
                "/kbs/v0/resource/default/key/1",
                Some((header.0, &header.1)),
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let jwe: a3s_kbs::protocol::JweResponse = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            jwe.protected,
            a3s_kbs::jwe::reserialize_protected_header(&jwe.protected).unwrap()
        );
        assert_eq!(&key.decrypt(&jwe).unwrap()[..], b"top secret");
        assert!(!String::from_utf8_lossy(&r.body).contains("top secret"));
    }
}

#[tokio::test]
async fn resource_needs_a_token() {
    let b = broker();
    let r = send(&b.state, get("/kbs/v0/resource/default/key/1", None)).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "TokenNotFound"));
    // A session that has not attested yet has no token.
    let (cookie, _) = auth(&b.state).await;
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "TokenNotFound"));
    let r = send(
        &b.state,
        get(
            "/kbs/v0/resource/default/key/1",
            Some(("authorization", "Bearer a.b.c")),
        ),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "TokenVerifierError"));
}

#[tokio::test]
async fn tokens_of_another_broker_or_expired_are_refused() {
    let b = broker();
    let other = broker();
    let (_, token, _) = attested(&other.state, MEASUREMENT).await;
    let r = send(
        &b.state,
        get(
            "/kbs/v0/resource/default/key/1",
            Some(("authorization", &format!("Bearer {token}"))),
        ),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "TokenVerifierError"));
    let short = broker_with(|c| c.token_lifetime = std::time::Duration::ZERO);
    let (_, token, _) = attested(&short.state, MEASUREMENT).await;
    let r = send(
        &short.state,
        get(
            "/kbs/v0/resource/default/key/1",
            Some(("authorization", &format!("Bearer {token}"))),
        ),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "TokenVerifierError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn unknown_measurement_gets_a_token_but_no_resource() {
    let b = broker();
    let (cookie, token, _) = attested(&b.state, [0x11; 48]).await;
    let claims = a3s_kbs::jwt::claims_unverified(&token).unwrap();
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "contraindicated");
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "PolicyDeny"));
    assert!(!String::from_utf8_lossy(&r.body).contains("top secret"));
}

#[tokio::test]
async fn missing_resource_is_404_and_bad_paths_are_invalid_request_paths() {
    let b = broker();
    let (cookie, _, _) = attested(&b.state, MEASUREMENT).await;
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/2", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (404, "ResourceNotFound"));
    for uri in [
        "/kbs/v0/resource/a/b",
        "/kbs/v0/resource/a/b/c/d",
        "/kbs/v0/nebula-ca/x",
        "/kbs/v1/auth",
        "/kbs/v0/resource/a/b/%2e%2e",
    ] {
        let r = send(&b.state, get(uri, Some(("cookie", &cookie)))).await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (404, "InvalidRequestPath"),
            "{uri}"
        );
    }
    let r = send(&b.state, get("/kbs/v0/auth", None)).await;
    assert_eq!((r.status, r.kind().as_str()), (405, "MethodNotAllowed"));
    assert!(r.json()["detail"].as_str().unwrap().contains("GET"));
}

/// Issue 18: client input is echoed back bounded, whatever its size.
#[tokio::test]
async fn a_huge_tee_value_is_not_echoed_in_full() {
    let b = broker();
    let body = serde_json::json!({
        "version": "0.4.0",
        "tee": "t".repeat(10_000),
        "extra-params": "",
    });
    let r = send(&b.state, json_post("/kbs/v0/auth", &body, None)).await;
    assert_eq!(r.status, 401);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.len() < 300, "{} bytes echoed", detail.len());
    assert!(detail.contains("10000 bytes"), "{detail}");
}

#[tokio::test]
async fn resource_policy_deny_all_and_allow_all_decide() {
    let b = broker();
    let (cookie, _, _) = attested(&b.state, [0x11; 48]).await;
    let set = |rego: &str| {
        Request::post("/kbs/v0/resource-policy")
            .header("authorization", admin_bearer(&b.admin_key))
            .body(Body::from(
                json!({"policy": URL_SAFE_NO_PAD.encode(rego)}).to_string(),
            ))
            .unwrap()
    };
    assert_eq!(
        send(&b.state, set(a3s_kbs::policy::RESOURCE_ALLOW_ALL))
            .await
            .status,
        200
    );
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        send(&b.state, set(a3s_kbs::policy::RESOURCE_DENY_ALL))
            .await
            .status,
        200
    );
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!((r.status, r.kind().as_str()), (401, "PolicyDeny"));
    let r = send(
        &b.state,
        get(
            "/kbs/v0/resource-policy",
            Some(("authorization", &admin_bearer(&b.admin_key))),
        ),
    )
    .await;
    let rego = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(r.json()["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rego, a3s_kbs::policy::RESOURCE_DENY_ALL);
}

#[tokio::test]
async fn attestation_policy_allow_all_affirms_any_measurement() {
    let b = broker();
    let req = Request::post("/kbs/v0/attestation-policy")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(
            json!({"type": "rego", "policy_id": "default", "policy": URL_SAFE_NO_PAD.encode(a3s_kbs::policy::ATTESTATION_ALLOW_ALL)}).to_string(),
        ))
        .unwrap();
    assert_eq!(send(&b.state, req).await.status, 200);
    let (cookie, _, _) = attested(&b.state, [0x11; 48]).await;
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bad_policies_are_parse_policy_errors() {
    let b = broker();
    for body in [
        json!({"policy": "***"}),
        json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow if {")}),
        json!({"policy": URL_SAFE_NO_PAD.encode("package other\ndefault allow := true")}),
    ] {
        let req = Request::post("/kbs/v0/resource-policy")
            .header("authorization", admin_bearer(&b.admin_key))
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = send(&b.state, req).await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (401, "ParsePolicyError"),
            "{body}"
        );
    }
    let req = Request::post("/kbs/v0/attestation-policy")
        .header("authorization", admin_bearer(&b.admin_key))
        .body(Body::from(
            json!({"type": "opa-wasm", "policy": "AA"}).to_string(),
        ))
        .unwrap();
    assert_eq!(send(&b.state, req).await.kind(), "ParsePolicyError");
}

#[tokio::test]
async fn reference_values_are_set_read_and_checked() {
    let b = broker();
    let auth = admin_bearer(&b.admin_key);
    let msg = |payload: serde_json::Value| json!({"version": "0.1.0", "type": "sample", "payload": STANDARD.encode(payload.to_string())});
    let post_rv = |body: serde_json::Value| {
        Request::post("/kbs/v0/reference-value")
            .header("authorization", auth.clone())
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = send(
        &b.state,
        post_rv(msg(json!({"snp_min_snp": 8, "custom": {"a": 1}}))),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        &b.state,
        get(
            "/kbs/v0/reference-value/snp_min_snp",
            Some(("authorization", &auth)),
        ),
    )
    .await;
    assert_eq!(r.json(), json!(8));
    let r = send(
        &b.state,
        get(
            "/kbs/v0/reference-value/nope",
            Some(("authorization", &auth)),
        ),
    )
    .await;
    assert_eq!(r.status, 404);
    for bad in [
        msg(json!({"snp_launch_measurement": ["abcd"]})),
        msg(json!({"snp_launch_measurement": "ab"})),
        msg(json!({"snp_min_snp": 300})),
        msg(json!({"snp_min_cpu": 1})),
        json!({"version": "0.2.0", "type": "sample", "payload": ""}),
        json!({"version": "0.1.0", "type": "swid", "payload": ""}),
        json!({"version": "0.1.0", "type": "sample", "payload": "!!"}),
    ] {
        let r = send(&b.state, post_rv(bad.clone())).await;
        assert_eq!((r.status, r.kind().as_str()), (401, "RvpsError"), "{bad}");
    }
    // A TCB minimum above what the simulated chip reports makes the default policy refuse.
    let r = send(&b.state, post_rv(msg(json!({"snp_min_snp": 255})))).await;
    assert_eq!(r.status, 200);
    let (cookie, token, _) = attested(&b.state, MEASUREMENT).await;
    assert_eq!(
        a3s_kbs::jwt::claims_unverified(&token).unwrap()["submods"]["cpu0"]["ear.status"],
        "contraindicated"
    );
    let r = send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    assert_eq!(r.kind(), "PolicyDeny");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_key() {
    let b = broker();
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let requests = || {
        vec![
            Request::post("/kbs/v0/resource/a/b/c")
                .body(Body::from("x"))
                .unwrap(),
            Request::delete("/kbs/v0/resource/default/key/1")
                .body(Body::empty())
                .unwrap(),
            Request::post("/kbs/v0/resource-policy")
                .body(Body::from("{\"policy\":\"\"}"))
                .unwrap(),
            Request::get("/kbs/v0/resource-policy")
                .body(Body::empty())
                .unwrap(),
            Request::post("/kbs/v0/attestation-policy")
                .body(Body::from("{\"policy\":\"\"}"))
                .unwrap(),
            Request::post("/kbs/v0/reference-value")
                .body(Body::from(
                    "{\"version\":\"0.1.0\",\"type\":\"sample\",\"payload\":\"\"}",
                ))
                .unwrap(),
            Request::get("/kbs/v0/reference-value/x")
                .body(Body::empty())
                .unwrap(),
        ]
    };
    for auth in [
        None,
        Some(admin_bearer(&stranger)),
        Some("Bearer garbage".to_owned()),
    ] {
        for mut req in requests() {
            if let Some(a) = &auth {
                req.headers_mut()
                    .insert("authorization", a.parse().unwrap());
            }
            let uri = req.uri().clone();
            let r = send(&b.state, req).await;
            assert_eq!(
                (r.status, r.kind().as_str()),
                (401, "AdminAuthAccess"),
                "{uri} {auth:?}"
            );
        }
    }
    // An attestation token is not an admin credential.
    let (_, token, _) = attested(&b.state, MEASUREMENT).await;
    let req = Request::post("/kbs/v0/resource/a/b/c")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&b.state, req).await.kind(), "AdminAuthAccess");
    assert_eq!(
        b.storage
            .get(a3s_kbs::storage::Namespace::Resource, "a/b/c")
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn admin_sets_and_removes_resources() {
    let b = broker();
    let auth = admin_bearer(&b.admin_key);
    let req = Request::put("/kbs/v0/resource/app/db/password")
        .header("authorization", &auth)
        .body(Body::from(vec![0u8, 1, 2, 255]))
        .unwrap();
    assert_eq!(send(&b.state, req).await.status, 200);
    let (cookie, _, key) = attested(&b.state, MEASUREMENT).await;
    let r = send(
        &b.state,
        get(
            "/kbs/v0/resource/app/db/password",
            Some(("cookie", &cookie)),
        ),
    )
    .await;
    let jwe = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(&key.decrypt(&jwe).unwrap()[..], &[0u8, 1, 2, 255]);
    let del = || {
        Request::delete("/kbs/v0/resource/app/db/password")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&b.state, del()).await.status, 200);
    assert_eq!(send(&b.state, del()).await.status, 404);
    let bad = Request::post("/kbs/v0/resource/app/db/..")
        .header("authorization", &auth)
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&b.state, bad).await.kind(), "InvalidRequestPath");
}

#[tokio::test]
async fn insecure_admin_allows_and_deny_all_refuses() {
    let open = broker_with(|c| c.admin = a3s_kbs::AdminAuth::InsecureAllowAll);
    let req = Request::post("/kbs/v0/resource/a/b/c")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&open.state, req).await.status, 200);
    let closed = broker_with(|c| c.admin = a3s_kbs::AdminAuth::DenyAll);
    let req = Request::post("/kbs/v0/resource/a/b/c")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&closed.state, req).await.kind(), "AdminAuthAccess");
}

#[tokio::test]
async fn healthz_and_metrics_are_served() {
    let b = broker();
    let r = send(&b.state, get("/healthz", None)).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    let (cookie, _, _) = attested(&b.state, MEASUREMENT).await;
    send(
        &b.state,
        get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
    )
    .await;
    let r = send(&b.state, get("/metrics", None)).await;
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("kbs_auth_total 1"), "{text}");
    assert!(
        text.contains("kbs_attestation_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kbs_resource_total{result=\"released\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kbs_evidence_verification_cpu_seconds_total"),
        "{text}"
    );
}

#[tokio::test]
async fn every_kbs_key_type_gets_its_resource() {
    use a3s_kbs::jwe::{TeeKeyKind, TeeKeyPair};
    let b = broker();
    for kind in [TeeKeyKind::P256, TeeKeyKind::P521, TeeKeyKind::Rsa2048] {
        let key = TeeKeyPair::generate(kind).unwrap();
        let jwk = TeePubKeyJson(key.public_jwk());
        let (cookie, nonce) = auth(&b.state).await;
        let body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
        assert_eq!(
            send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie)))
                .await
                .status,
            200
        );
        let r = send(
            &b.state,
            get("/kbs/v0/resource/default/key/1", Some(("cookie", &cookie))),
        )
        .await;
        let jwe = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(&key.decrypt(&jwe).unwrap()[..], b"top secret", "{kind:?}");
    }
}

#[tokio::test]
async fn init_data_must_match_host_data() {
    let b = broker();
    let doc = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"x\"\n";
    let host_data = a3s_kbs::verifier::init_data_host_data("toml", doc).unwrap();
    {
        use sha2::Digest as _;
        assert_eq!(host_data[..], sha2::Sha256::digest(doc.as_bytes())[..]);
    }
    let mut bound = SimAttester::new(MEASUREMENT);
    bound.guest.host_data = host_data;
    let init = json!({"format": "toml", "body": doc});
    assert_eq!(init_run(&b, &bound, init.clone()).await.status, 200);
    let r = init_run(&b, &SimAttester::new(MEASUREMENT), init).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("HOST_DATA"));
    let r = init_run(
        &b,
        &bound,
        json!({"format": "toml", "body": "algorithm = \"md5\""}),
    )
    .await;
    assert!(r.json()["detail"].as_str().unwrap().contains("md5"));
    let r = init_run(&b, &bound, json!({"format": "yaml", "body": ""})).await;
    assert!(r.json()["detail"].as_str().unwrap().contains("yaml"));
}

async fn init_run(b: &Broker, att: &SimAttester, init: serde_json::Value) -> Reply {
    let (_, jwk) = tee_key();
    let (cookie, nonce) = auth(&b.state).await;
    let mut body = attestation(att, &nonce, &jwk, &nonce, &jwk);
    body["init-data"] = init;
    send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await
}
