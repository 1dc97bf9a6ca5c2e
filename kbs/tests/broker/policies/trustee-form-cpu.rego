# An attestation policy written in trustee's EAR form (not trustee's file): trust-claim
# rules with AR4SI values, reference values through query_reference_value, the SNP claims
# under input.snp.evidence.
package policy

import rego.v1

# Unrecognised executables, unrecognised hardware, configuration unavailable.
default executables := 33

default hardware := 97

default configuration := 36

executables := 3 if {
	input.snp
	input.snp.evidence.measurement in query_reference_value("snp_launch_measurement")
}

hardware := 2 if {
	input.snp
	tcb := input.snp.evidence.reported_tcb
	tcb.bootloader in query_reference_value("snp_bootloader")
	tcb.microcode in query_reference_value("snp_microcode")
	tcb.snp in query_reference_value("snp_snp_svn")
	tcb.tee in query_reference_value("snp_tee_svn")
}

configuration := 2 if {
	input.snp
	input.snp.evidence.policy.debug_allowed == false
	input.snp.evidence.policy.migrate_ma_allowed == false
	input.snp.evidence.plat_info.smt_enabled == query_reference_value("snp_smt_enabled")
	input.snp.evidence.policy.abi_major == query_reference_value("snp_guest_abi_major")
} else := 3 if {
	input.snp
	input.snp.evidence.policy.debug_allowed == false
}
