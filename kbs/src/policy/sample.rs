//! Sample inputs a policy is evaluated against before it is stored.

use serde_json::{json, Value};

const MEASUREMENT: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";

/// Verified SNP claims of a plausible Milan report, as [`crate::verifier::claims`] gives.
pub(crate) fn attestation_input() -> Value {
    json!({
        "policy_abi_major": 0, "policy_abi_minor": 0, "policy_smt_allowed": true,
        "policy_migrate_ma": false, "policy_debug_allowed": false,
        "policy_single_socket": false,
        "reported_tcb_bootloader": 3, "reported_tcb_tee": 0, "reported_tcb_snp": 8,
        "reported_tcb_microcode": 115, "reported_tcb_fmc": 0,
        "platform_tsme_enabled": false, "platform_smt_enabled": true,
        "measurement": MEASUREMENT, "report_data": "00".repeat(64),
        "init_data": "00".repeat(32), "host_data": "00".repeat(32),
        "chip_id": "00".repeat(64), "vmpl": 0, "guest_svn": 0,
        "product": "Milan", "simulated": false,
    })
}

/// Reference values that match [`attestation_input`], in our names and trustee's.
pub(crate) fn reference_values() -> Value {
    json!({
        "snp_launch_measurement": [MEASUREMENT],
        "snp_min_bootloader": 3, "snp_min_tee": 0, "snp_min_snp": 8, "snp_min_microcode": 115,
        "snp_bootloader": [3], "snp_microcode": [115], "snp_snp_svn": [8], "snp_tee_svn": [0],
        "snp_smt_enabled": true, "snp_tsme_enabled": false,
        "snp_guest_abi_major": 0, "snp_guest_abi_minor": 0,
        "snp_single_socket": false, "snp_smt_allowed": true,
    })
}

/// The claims of an affirming token.
pub(crate) fn token_claims() -> Value {
    json!({"submods": {"cpu0": {"ear.status": "affirming",
        "ear.trustworthiness-vector": {"executables": 3, "hardware": 2, "configuration": 2},
        "ear.veraison.annotated-evidence": {"snp": attestation_input()}}}})
}

/// The data of a resource request.
pub(crate) fn resource_data() -> Value {
    json!({"plugin": "resource", "resource-path": ["default", "key", "1"], "query": {}})
}
