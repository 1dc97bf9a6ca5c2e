//! Shared fixtures: one simulator per test binary, brokers over temporary SQLite files.

use std::sync::{Arc, OnceLock};

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_kbs::jwe::{TeeKeyKind, TeeKeyPair};
use a3s_kbs::protocol::{self, Attestation, CompositeEvidence, RuntimeData};
use a3s_kbs::storage::{Namespace, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AdminAuth, AppState, Config};
use a3s_simulator::{GuestContext, ReportRequest, Simulator};
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use p256::ecdsa::SigningKey;
use serde_json::Value;
use tower::ServiceExt;

pub(crate) struct Shared {
    _home: tempfile::TempDir,
    pub(crate) sim: Simulator,
    /// A second, unrelated simulator: its evidence must never be trusted.
    pub(crate) foreign: Simulator,
    _foreign_home: tempfile::TempDir,
}

pub(crate) fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let home = tempfile::tempdir().unwrap();
        let sim = Simulator::open_or_create(home.path(), Product::Milan).unwrap();
        let foreign_home = tempfile::tempdir().unwrap();
        let foreign = Simulator::open_or_create(foreign_home.path(), Product::Milan).unwrap();
        Shared {
            _home: home,
            sim,
            foreign,
            _foreign_home: foreign_home,
        }
    })
}

pub(crate) const MEASUREMENT: [u8; 48] = [0x5a; 48];

/// A simulated guest with `measurement` on `sim`'s default chip.
pub(crate) struct SimAttester {
    pub(crate) sim: &'static Simulator,
    pub(crate) guest: GuestContext,
}

impl SimAttester {
    pub(crate) fn new(measurement: [u8; 48]) -> Self {
        Self {
            sim: &shared().sim,
            guest: GuestContext::launch(measurement),
        }
    }
}

impl Attester for SimAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let mut request = ReportRequest::new(self.guest.clone(), *report_data);
        request.vmpl = vmpl;
        let report = self
            .sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        let p = self.sim.product();
        Ok(Evidence {
            report,
            cert_chain: vec![
                (CertType::Vcek, self.sim.default_chip().vcek_der().to_vec()),
                (CertType::Ask, self.sim.ask_der(p).unwrap().to_vec()),
                (CertType::Ark, self.sim.ark_der(p).unwrap().to_vec()),
            ],
        })
    }

    fn derived_key(&self, _request: &KeyRequest) -> Result<[u8; 32], HwError> {
        Err(HwError::Simulator("not used by the KBS tests".into()))
    }
}

pub(crate) struct Broker {
    pub(crate) state: AppState,
    pub(crate) admin_key: SigningKey,
    pub(crate) storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

pub(crate) fn broker() -> Broker {
    broker_with(|_| {})
}

/// A broker accepting this binary's simulator, admin by key, over a fresh SQLite file,
/// with the test measurement as reference value.
pub(crate) fn broker_with(edit: impl FnOnce(&mut Config)) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(&dir.path().join("kbs.db")).unwrap());
    let admin_key = SigningKey::random(&mut rand_core::OsRng);
    let verifier = EvidenceVerifier::new(None).allow_simulated(shared().sim.roots().unwrap());
    let mut config = Config::new(storage.clone(), verifier);
    config.admin = AdminAuth::key(*admin_key.verifying_key());
    edit(&mut config);
    let state = AppState::new(config).unwrap();
    storage
        .put(
            Namespace::ReferenceValue,
            "snp_launch_measurement",
            serde_json::json!([hex::encode(MEASUREMENT)])
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    storage
        .put(Namespace::Resource, "default/key/1", b"top secret")
        .unwrap();
    Broker {
        state,
        admin_key,
        storage,
        _dir: dir,
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) cookie: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error kind of an ErrorInformation body (asserting the shape).
    pub(crate) fn kind(&self) -> String {
        let v = self.json();
        let t = v["type"].as_str().expect("type is a string");
        assert!(v["detail"].is_string(), "detail is a string: {v}");
        assert_eq!(v.as_object().unwrap().len(), 2, "only type and detail: {v}");
        t.strip_prefix("https://github.com/confidential-containers/kbs/errors/")
            .unwrap_or_else(|| panic!("type URL prefix: {t}"))
            .to_owned()
    }
}

pub(crate) async fn send(state: &AppState, request: Request<Body>) -> Reply {
    let response: Response<Body> = a3s_kbs::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        cookie,
        body,
    }
}

pub(crate) fn json_post(uri: &str, body: &Value, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub(crate) fn get(uri: &str, header: Option<(&str, &str)>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some((k, v)) = header {
        b = b.header(k, v);
    }
    b.body(Body::empty()).unwrap()
}

/// `POST /auth`; returns the cookie and nonce.
pub(crate) async fn auth(state: &AppState) -> (String, String) {
    let r = send(
        state,
        json_post(
            "/kbs/v0/auth",
            &serde_json::to_value(protocol::Request::snp()).unwrap(),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c = r.json();
    assert_eq!(c["extra-params"], "");
    (r.cookie.unwrap(), c["nonce"].as_str().unwrap().to_owned())
}

/// An Attestation answering `nonce` for `key`, from `attester`, whose REPORT_DATA binds
/// `bound_nonce`/`bound_key` (normally the same).
pub(crate) fn attestation(
    attester: &dyn Attester,
    nonce: &str,
    key: &TeePubKeyJson,
    bound_nonce: &str,
    bound_key: &TeePubKeyJson,
) -> Value {
    let rd = protocol::report_data(bound_nonce, &bound_key.0, "").unwrap();
    let evidence = attester.report(&rd, 0).unwrap();
    serde_json::to_value(Attestation {
        init_data: None,
        runtime_data: RuntimeData {
            nonce: nonce.to_owned(),
            tee_pubkey: key.0.clone(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: evidence.to_trustee_json().unwrap(),
            additional_evidence: String::new(),
        },
    })
    .unwrap()
}

pub(crate) struct TeePubKeyJson(pub(crate) Value);

pub(crate) fn tee_key() -> (TeeKeyPair, TeePubKeyJson) {
    let k = TeeKeyPair::generate(TeeKeyKind::P256).unwrap();
    let j = TeePubKeyJson(k.public_jwk());
    (k, j)
}

/// auth + attest with the standard simulated guest; returns (cookie, token, key).
pub(crate) async fn attested(
    state: &AppState,
    measurement: [u8; 48],
) -> (String, String, TeeKeyPair) {
    let (cookie, nonce) = auth(state).await;
    let (key, jwk) = tee_key();
    let att = SimAttester::new(measurement);
    let body = attestation(&att, &nonce, &jwk, &nonce, &jwk);
    let r = send(state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["token"].as_str().unwrap().to_owned();
    (cookie, token, key)
}

pub(crate) fn admin_bearer(key: &SigningKey) -> String {
    format!("Bearer {}", a3s_kbs::client::admin_token(key))
}
