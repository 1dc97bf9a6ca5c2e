//! `measure --image`: the launch measurement a box would get, before it exists.
//!
//! Nothing here computes a measurement of its own: the request is resolved by the code
//! `create` uses, the boot plan by the code `start` uses, and the digest by the function the
//! monitor measures the real launch with ([`crate::tee::launch::measure_config`]), so a
//! prediction and the launch cannot drift apart.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Engine, EngineError};
use crate::boxes::CreateRequest;
use crate::tee::launch;
use crate::tee::spec::TeeMode;
use crate::tee::TeeError;

/// A predicted launch measurement and what it covers.
#[derive(Clone, Debug, Serialize)]
pub struct PredictedMeasurement {
    /// The launch digest, 96 hex digits (what `inspect .tee.measurement` shows after `run`).
    pub measurement: String,
    /// `simulated` or `snp`.
    pub mode: TeeMode,
    /// Whether the evidence of such a box is simulated.
    pub simulated: bool,
    /// The image digest the box launches.
    pub image_digest: String,
    /// What was measured.
    pub inputs: MeasuredInputs,
}

/// The inputs of a launch measurement.
#[derive(Clone, Debug, Serialize)]
pub struct MeasuredInputs {
    /// The firmware (qboot for a simulated microvm launch, OVMF for SNP).
    pub firmware: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: PathBuf,
    /// The measured kernel command line (image digest and root hash included).
    pub cmdline: String,
    /// vCPUs.
    pub vcpus: u32,
    /// The vCPU type the launch is measured with.
    pub vcpu_type: String,
}

impl Engine {
    /// The launch measurement a box created from `req` would get on this host. Builds the
    /// boot assets and the image's filesystem when they are not built yet, like `start`.
    ///
    /// # Errors
    /// [`TeeError::NotConfidential`] when `req` is not a TEE box; those of `create`'s resolution and
    /// `start`'s preparation; [`TeeError::Measure`].
    pub fn predict_measurement(
        &self,
        req: &CreateRequest,
    ) -> Result<PredictedMeasurement, EngineError> {
        let tee = req.tee.as_ref().ok_or(TeeError::NotConfidential)?;
        let (spec, image_digest, plan) = self.boxes.predict_plan(req)?;
        // Only the boot artefacts of the config are read: no socket or log is created.
        let config = plan.vm_config(Path::new("/nonexistent-box-dir"), &spec);
        let measured = launch::measure_config(tee.mode, &config)?;
        let inputs = launch::launch_inputs(tee.mode, &config)?;
        Ok(PredictedMeasurement {
            measurement: hex::encode(measured.digest),
            mode: tee.mode,
            simulated: tee.simulated(),
            image_digest,
            inputs: MeasuredInputs {
                firmware: inputs.firmware.to_path_buf(),
                kernel: inputs.kernel.to_path_buf(),
                initrd: inputs.initrd.to_path_buf(),
                cmdline: inputs.cmdline.to_owned(),
                vcpus: inputs.vcpus,
                vcpu_type: launch::vcpu_type(tee.mode).to_owned(),
            },
        })
    }
}
