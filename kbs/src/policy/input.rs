//! The policy input an attestation policy sees for verified SNP claims.

use serde_json::{json, Value};

/// `{"snp": claims + launch_measurement + evidence}`: our (and older trustee policies')
/// flat claim names, and the parsed-report shape newer trustee policies read under
/// `input.snp.evidence`.
pub(crate) fn attestation(claims: &Value) -> Value {
    let c = |k: &str| claims.get(k).cloned().unwrap_or(Value::Null);
    let mut snp = claims.clone();
    if let Some(o) = snp.as_object_mut() {
        o.insert("launch_measurement".into(), c("measurement"));
        o.insert(
            "evidence".into(),
            json!({
                "measurement": c("measurement"),
                "report_data": c("report_data"),
                "host_data": c("host_data"),
                "chip_id": c("chip_id"),
                "vmpl": c("vmpl"),
                "guest_svn": c("guest_svn"),
                "reported_tcb": {
                    "bootloader": c("reported_tcb_bootloader"),
                    "tee": c("reported_tcb_tee"),
                    "snp": c("reported_tcb_snp"),
                    "microcode": c("reported_tcb_microcode"),
                    "fmc": c("reported_tcb_fmc"),
                },
                "policy": {
                    "abi_major": c("policy_abi_major"),
                    "abi_minor": c("policy_abi_minor"),
                    "smt_allowed": c("policy_smt_allowed"),
                    "migrate_ma_allowed": c("policy_migrate_ma"),
                    "debug_allowed": c("policy_debug_allowed"),
                    "single_socket_required": c("policy_single_socket"),
                },
                "plat_info": {
                    "smt_enabled": c("platform_smt_enabled"),
                    "tsme_enabled": c("platform_tsme_enabled"),
                },
            }),
        );
    }
    json!({ "snp": snp })
}
