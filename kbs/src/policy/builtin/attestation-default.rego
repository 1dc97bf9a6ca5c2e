# A3S Box KBS default attestation policy.
# Affirming only when the launch measurement is one of the stored reference values
# `snp_launch_measurement` and every reported TCB component meets its stored minimum
# (`snp_min_bootloader`, `snp_min_tee`, `snp_min_snp`, `snp_min_microcode`, `snp_min_fmc`;
# an absent minimum is not checked). No reference measurement stored: nothing is affirmed.
package policy

default allow := false

rv := data.reference_values

measurement_ok if {
	some m in rv.snp_launch_measurement
	lower(m) == input.snp.measurement
}

min_ok(component) if {
	not rv[sprintf("snp_min_%s", [component])]
}

min_ok(component) if {
	input.snp[sprintf("reported_tcb_%s", [component])] >= rv[sprintf("snp_min_%s", [component])]
}

tcb_ok if {
	min_ok("bootloader")
	min_ok("tee")
	min_ok("snp")
	min_ok("microcode")
	min_ok("fmc")
}

allow if {
	measurement_ok
	tcb_ok
	input.snp.policy_debug_allowed == false
}
