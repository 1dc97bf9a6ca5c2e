//! Attestation and resource policies in Rego (regorus), and reference values.
//!
//! Both kinds are Rego modules whose `data.policy.allow` is a boolean:
//! - the **attestation policy** sees `input` = the verified SNP claims (trustee's names, under
//!   `snp`) and `data.reference_values` = every stored reference value; `allow` makes the
//!   token's `ear.status` `affirming`, otherwise `contraindicated`;
//! - the **resource policy** sees `input` = the token's claims and `data` =
//!   `{"plugin": "resource", "resource-path": [repo, type, tag], "query": {}}`.
//!
//! Built in: attestation `default` (reference values) and `allow-all`; resource `default`
//! (affirming tokens only), `allow-all` and `deny-all`. Rego v1 syntax is tried first, then
//! v0 (trustee's samples are v0).

pub mod cache;
pub mod ear;
mod input;
pub mod reference;
mod sample;

use serde_json::Value;

/// Which policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKind {
    /// Decides the appraisal status of evidence.
    Attestation,
    /// Decides whether a token may read a resource.
    Resource,
}

/// The id under which trustee's `kbs-client` stores an attestation policy without `--id`;
/// the same policy as `default` here.
pub const DEFAULT_CPU_ID: &str = "default_cpu";

/// The stored id of attestation policy `id`: `default_cpu` and `default` are one policy.
pub fn canonical_id(id: &str) -> &str {
    if id == DEFAULT_CPU_ID {
        "default"
    } else {
        id
    }
}

/// The default attestation policy.
pub const ATTESTATION_DEFAULT: &str = include_str!("builtin/attestation-default.rego");
/// The attestation policy affirming every verified report.
pub const ATTESTATION_ALLOW_ALL: &str = include_str!("builtin/attestation-allow-all.rego");
/// The default resource policy.
pub const RESOURCE_DEFAULT: &str = include_str!("builtin/resource-default.rego");
/// A resource policy allowing every attested client.
pub const RESOURCE_ALLOW_ALL: &str = include_str!("builtin/allow-all.rego");
/// A resource policy denying everything.
pub const RESOURCE_DENY_ALL: &str = include_str!("builtin/deny-all.rego");

/// The built-in policy `name` of `kind`.
pub fn builtin(kind: PolicyKind, name: &str) -> Option<&'static str> {
    match (kind, name) {
        (PolicyKind::Attestation, "default") => Some(ATTESTATION_DEFAULT),
        (PolicyKind::Attestation, "allow-all") => Some(ATTESTATION_ALLOW_ALL),
        (PolicyKind::Resource, "default") => Some(RESOURCE_DEFAULT),
        (PolicyKind::Resource, "allow-all") => Some(RESOURCE_ALLOW_ALL),
        (PolicyKind::Resource, "deny-all") => Some(RESOURCE_DENY_ALL),
        _ => None,
    }
}

/// A policy could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The Rego does not parse (v1 nor v0).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed or `data.policy.allow` is not a boolean.
    #[error("{0}")]
    Eval(String),
}

fn engine_with(rego: &str) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    match engine.add_policy("policy.rego".into(), rego.into()) {
        Ok(_) => Ok(engine),
        Err(v1) => {
            let mut engine = regorus::Engine::new();
            engine.set_rego_v0(true);
            engine
                .add_policy("policy.rego".into(), rego.into())
                .map_err(|_| PolicyError::Parse(v1.to_string()))?;
            Ok(engine)
        }
    }
}

/// Checks that `rego` parses and defines package `policy`.
///
/// # Errors
/// [`PolicyError::Parse`].
pub fn check(rego: &str) -> Result<(), PolicyError> {
    parse(rego).map(|_| ())
}

fn parse(rego: &str) -> Result<regorus::Engine, PolicyError> {
    let engine = engine_with(rego)?;
    let packages = engine
        .get_packages()
        .map_err(|e| PolicyError::Parse(e.to_string()))?;
    if !packages.iter().any(|p| p == "data.policy") {
        return Err(PolicyError::Parse(format!(
            "the policy must be `package policy` (found {packages:?})"
        )));
    }
    Ok(engine)
}

/// Checks that `rego` parses and gives a verdict of `kind` for a sample input, as the
/// broker does before it stores a policy: a policy that cannot be evaluated is refused at
/// upload, never at attestation time.
///
/// # Errors
/// [`PolicyError`] with the reason.
pub fn check_kind(kind: PolicyKind, rego: &str) -> Result<(), PolicyError> {
    compile(kind, rego).map(|_| ())
}

/// How a compiled policy decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decides {
    /// `data.policy.allow`, a boolean (ours, and trustee's resource policies).
    Allow,
    /// The trust-claim rules (`executables`, `hardware`, `configuration`, ...): trustee's
    /// EAR attestation policies.
    TrustVector,
}

/// A parsed and checked policy, ready to evaluate (cheap to share; see [`cache`]).
#[derive(Clone, Debug)]
pub struct Compiled {
    engine: regorus::Engine,
    decides: Decides,
}

/// The rule path of a trust claim.
fn claim_path(rule: &str) -> String {
    format!("data.policy.{rule}")
}

fn is_missing_rule(e: &anyhow::Error) -> bool {
    e.to_string().contains("not a valid rule path")
}

/// Parses `rego`, finds how it decides and evaluates it against sample inputs.
///
/// # Errors
/// [`PolicyError`] naming why the policy cannot be used.
pub fn compile(kind: PolicyKind, rego: &str) -> Result<Compiled, PolicyError> {
    let engine = parse(rego)?;
    let mut probe = engine.clone();
    let decides = match probe.eval_rule("data.policy.allow".into()) {
        Err(e) if is_missing_rule(&e) => {
            if kind == PolicyKind::Resource {
                return Err(PolicyError::Eval(
                    "a resource policy must define the boolean rule `allow`".into(),
                ));
            }
            let defined = ear::CLAIMS.iter().any(|(_, rule)| {
                let mut p = engine.clone();
                !matches!(p.eval_rule(claim_path(rule)), Err(e) if is_missing_rule(&e))
            });
            if !defined {
                return Err(PolicyError::Eval(
                    "the policy defines neither the boolean rule `allow` nor trust-claim rules \
                     (executables, hardware, configuration, ...) as trustee's EAR policies do"
                        .into(),
                ));
            }
            Decides::TrustVector
        }
        _ => Decides::Allow,
    };
    let compiled = Compiled { engine, decides };
    // Evaluate against samples: unknown functions, type errors and non-boolean results
    // show here, with the reason, instead of at the first attestation.
    let sample = |what: &str, r: Result<(), PolicyError>| {
        r.map_err(|e| PolicyError::Eval(format!("evaluating against a sample {what}: {e}")))
    };
    match kind {
        PolicyKind::Attestation => {
            let input = sample::attestation_input();
            sample(
                "SNP report with no reference values",
                compiled
                    .appraise(&input, &serde_json::json!({}))
                    .map(|_| ()),
            )?;
            sample(
                "SNP report with matching reference values",
                compiled
                    .appraise(&input, &sample::reference_values())
                    .map(|_| ()),
            )?;
        }
        PolicyKind::Resource => {
            sample(
                "token",
                compiled
                    .allows(&sample::token_claims(), &sample::resource_data())
                    .map(|_| ()),
            )?;
        }
    }
    Ok(compiled)
}

impl Compiled {
    /// The trust vector this attestation policy gives the SNP `claims` (as
    /// [`crate::verifier::claims`] returns them) with `reference_values`.
    ///
    /// The input is `input.snp` = the claims (trustee's flat names) plus `launch_measurement`
    /// and `evidence` (trustee's parsed-report shape: `measurement`, `reported_tcb`,
    /// `policy`, `plat_info`); the reference values are `data.reference_values`,
    /// `data.reference` (older trustee policies) and `query_reference_value(name)`.
    ///
    /// # Errors
    /// [`PolicyError::Eval`].
    pub fn appraise(
        &self,
        claims: &Value,
        reference_values: &Value,
    ) -> Result<ear::TrustVector, PolicyError> {
        let mut engine = self.engine.clone();
        let refs = regorus::Value::from(reference_values.clone());
        let lookup = refs.clone();
        engine
            .add_extension(
                "query_reference_value".into(),
                1,
                Box::new(move |args: Vec<regorus::Value>| {
                    let name = args
                        .first()
                        .ok_or_else(|| anyhow::anyhow!("query_reference_value needs a name"))?;
                    Ok(lookup[name].clone())
                }),
            )
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        let mut data = regorus::Value::new_object();
        if let Ok(map) = data.as_object_mut() {
            map.insert(regorus::Value::from("reference_values"), refs.clone());
            map.insert(regorus::Value::from("reference"), refs);
        }
        engine
            .add_data(data)
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        engine.set_input(regorus::Value::from(input::attestation(claims)));
        match self.decides {
            Decides::Allow => Ok(ear::TrustVector::from_allow(eval_allow(&mut engine)?)),
            Decides::TrustVector => {
                let mut v = [0i64; 8];
                for (slot, (_, rule)) in v.iter_mut().zip(ear::CLAIMS) {
                    *slot = match engine.eval_rule(claim_path(rule)) {
                        Err(e) if is_missing_rule(&e) => 0,
                        Err(e) => return Err(PolicyError::Eval(format!("{rule}: {e}"))),
                        Ok(regorus::Value::Undefined) => 0,
                        Ok(x) => x.as_i64().map_err(|_| {
                            PolicyError::Eval(format!("{rule} is {x}, not a trust-claim integer"))
                        })?,
                    };
                }
                Ok(ear::TrustVector(v))
            }
        }
    }

    /// Whether this resource policy allows `input` (token claims) with `data`.
    ///
    /// # Errors
    /// [`PolicyError::Eval`].
    pub fn allows(&self, input: &Value, data: &Value) -> Result<bool, PolicyError> {
        let mut engine = self.engine.clone();
        engine
            .add_data(regorus::Value::from(data.clone()))
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        engine.set_input(regorus::Value::from(input.clone()));
        eval_allow(&mut engine)
    }
}

fn eval_allow(engine: &mut regorus::Engine) -> Result<bool, PolicyError> {
    match engine.eval_rule("data.policy.allow".into()) {
        Ok(regorus::Value::Bool(b)) => Ok(b),
        Ok(regorus::Value::Undefined) => Ok(false),
        Ok(other) => Err(PolicyError::Eval(format!(
            "data.policy.allow is {other}, not a boolean"
        ))),
        Err(e) => Err(PolicyError::Eval(e.to_string())),
    }
}

/// Evaluates `data.policy.allow` of `rego` with `input` and `data` (no cache; the broker
/// uses [`cache::PolicyCache`]).
///
/// # Errors
/// [`PolicyError`] when the policy does not parse or `allow` is not a boolean.
pub fn evaluate(rego: &str, input: &Value, data: &Value) -> Result<bool, PolicyError> {
    let mut engine = parse(rego)?;
    engine
        .add_data(regorus::Value::from(data.clone()))
        .map_err(|e| PolicyError::Eval(e.to_string()))?;
    engine.set_input(regorus::Value::from(input.clone()));
    eval_allow(&mut engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snp(measurement: &str, snp_svn: u64) -> Value {
        json!({"snp": {"measurement": measurement, "reported_tcb_bootloader": 3,
            "reported_tcb_tee": 0, "reported_tcb_snp": snp_svn, "reported_tcb_microcode": 115,
            "reported_tcb_fmc": 0, "policy_debug_allowed": false}})
    }

    #[test]
    fn builtin_policies_parse() {
        for (k, n) in [
            (PolicyKind::Attestation, "default"),
            (PolicyKind::Attestation, "allow-all"),
            (PolicyKind::Resource, "default"),
            (PolicyKind::Resource, "allow-all"),
            (PolicyKind::Resource, "deny-all"),
        ] {
            check(builtin(k, n).unwrap()).unwrap();
        }
        assert!(builtin(PolicyKind::Attestation, "deny").is_none());
    }

    #[test]
    fn default_attestation_policy_needs_a_reference_measurement_and_tcb_minimums() {
        let m = "ab".repeat(48);
        let rv = |extra: Value| {
            let mut v = json!({"reference_values": {"snp_launch_measurement": [m.to_uppercase()]}});
            if let (Some(o), Some(e)) = (v["reference_values"].as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        };
        assert!(evaluate(ATTESTATION_DEFAULT, &snp(&m, 8), &rv(json!({}))).unwrap());
        assert!(!evaluate(
            ATTESTATION_DEFAULT,
            &snp(&"cd".repeat(48), 8),
            &rv(json!({}))
        )
        .unwrap());
        assert!(!evaluate(
            ATTESTATION_DEFAULT,
            &snp(&m, 8),
            &json!({"reference_values": {}})
        )
        .unwrap());
        assert!(evaluate(
            ATTESTATION_DEFAULT,
            &snp(&m, 8),
            &rv(json!({"snp_min_snp": 8}))
        )
        .unwrap());
        assert!(!evaluate(
            ATTESTATION_DEFAULT,
            &snp(&m, 7),
            &rv(json!({"snp_min_snp": 8}))
        )
        .unwrap());
    }

    #[test]
    fn resource_policies_decide_by_status() {
        let affirming = json!({"submods": {"cpu0": {"ear.status": "affirming"}}});
        let contra = json!({"submods": {"cpu0": {"ear.status": "contraindicated"}}});
        let data = json!({"plugin": "resource", "resource-path": ["a", "b", "c"], "query": {}});
        assert!(evaluate(RESOURCE_DEFAULT, &affirming, &data).unwrap());
        assert!(!evaluate(RESOURCE_DEFAULT, &contra, &data).unwrap());
        assert!(evaluate(RESOURCE_ALLOW_ALL, &contra, &data).unwrap());
        assert!(!evaluate(RESOURCE_DENY_ALL, &affirming, &data).unwrap());
    }

    #[test]
    fn accepts_trustee_v0_policies_and_rejects_garbage() {
        let v0 = "package policy\ndefault allow = false\nallow { data[\"resource-path\"][0] == \"a\" }\n";
        check(v0).unwrap();
        let data = json!({"plugin": "resource", "resource-path": ["a", "b", "c"]});
        assert!(evaluate(v0, &json!({}), &data).unwrap());
        assert!(matches!(
            check("package policy\nallow if {"),
            Err(PolicyError::Parse(_))
        ));
        assert!(matches!(
            check("package other\ndefault allow := true"),
            Err(PolicyError::Parse(_))
        ));
    }
}
