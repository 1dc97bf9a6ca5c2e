//! Operations that relax a check. Reviewers: grep for `danger`.

use a3s_attestation::certs::Roots;

use crate::verifier::Verifier;

/// Makes `verifier` accept evidence from the A3S Box simulator whose root of trust is
/// `simulator_roots` (e.g. `Simulator::roots()` of the home that ran the guest), and sets the
/// appraisal policy's `allow_simulated`. Simulated evidence carries its own CBOR tag
/// ([`crate::evidence::TAG_SNP_SIMULATED`]) and is verified against these roots only; hardware
/// evidence is still verified against AMD's roots only, and every verdict says
/// `simulated: true|false`.
///
/// Never use this where a real TEE is required: anyone with the simulator's home can make
/// such evidence for any measurement.
pub fn accept_simulated(verifier: Verifier, simulator_roots: Roots) -> Verifier {
    tracing::warn!("RA-TLS verifier accepts evidence from the A3S Box simulator");
    verifier.accept_simulated(simulator_roots)
}
