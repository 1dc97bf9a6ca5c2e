# The older trustee form (v0 syntax): reference values under data.reference, the flat
# claim names trustee's SNP verifier emitted.
package policy

default executables = 33
default hardware = 97

executables = 3 {
	input.snp.launch_measurement == data.reference.snp_launch_measurement[_]
}

hardware = 2 {
	input.snp.reported_tcb_bootloader == data.reference.snp_bootloader[_]
	input.snp.reported_tcb_snp == data.reference.snp_snp_svn[_]
}
