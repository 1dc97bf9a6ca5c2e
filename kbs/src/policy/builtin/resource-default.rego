# A3S Box KBS default resource policy: release a resource only to a token whose CPU
# appraisal is affirming (see the attestation policy).
package policy

default allow := false

allow if {
	input.submods.cpu0["ear.status"] == "affirming"
}
