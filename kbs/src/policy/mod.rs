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

pub mod reference;

use serde_json::Value;

/// Which policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyKind {
    /// Decides the appraisal status of evidence.
    Attestation,
    /// Decides whether a token may read a resource.
    Resource,
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
    let engine = engine_with(rego)?;
    let packages = engine
        .get_packages()
        .map_err(|e| PolicyError::Parse(e.to_string()))?;
    if !packages.iter().any(|p| p == "data.policy") {
        return Err(PolicyError::Parse(format!(
            "the policy must be `package policy` (found {packages:?})"
        )));
    }
    Ok(())
}

/// Evaluates `data.policy.allow` of `rego` with `input` and `data`.
///
/// # Errors
/// [`PolicyError`] when the policy does not parse or `allow` is not a boolean.
pub fn evaluate(rego: &str, input: &Value, data: &Value) -> Result<bool, PolicyError> {
    let mut engine = engine_with(rego)?;
    let to_rego = |v: &Value| {
        regorus::Value::from_json_str(&v.to_string()).map_err(|e| PolicyError::Eval(e.to_string()))
    };
    engine
        .add_data(to_rego(data)?)
        .map_err(|e| PolicyError::Eval(e.to_string()))?;
    engine.set_input(to_rego(input)?);
    let v = engine
        .eval_rule("data.policy.allow".into())
        .map_err(|e| PolicyError::Eval(e.to_string()))?;
    match v {
        regorus::Value::Bool(b) => Ok(b),
        regorus::Value::Undefined => Ok(false),
        other => Err(PolicyError::Eval(format!(
            "data.policy.allow is {other}, not a boolean"
        ))),
    }
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
