//! Named volumes: create, list, inspect, remove, prune.

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::volumes::{VolumeError, VolumeInfo, VolumeName, VolumeRecord, Volumes};

impl Engine {
    fn volumes(&self) -> Volumes {
        Volumes::open(&self.home)
    }

    fn record_volume(
        &self,
        action: &str,
        volume: &str,
        outcome: Outcome,
        message: &str,
    ) -> Result<(), EngineError> {
        self.record(&Event::new(action, outcome, message).with("volume", volume))
    }

    /// `volume create` (an existing volume is left as it is); returns it and whether it was
    /// created. Audited.
    ///
    /// # Errors
    /// [`VolumeError`].
    pub fn create_volume(&self, name: &VolumeName) -> Result<(VolumeRecord, bool), EngineError> {
        let (rec, created) = self.volumes().create(name)?;
        let what = if created {
            "created"
        } else {
            "already existed"
        };
        self.record_volume("volume.create", name.as_str(), Outcome::Success, what)?;
        Ok((rec, created))
    }

    /// `volume ls`: every volume with its users.
    ///
    /// # Errors
    /// [`VolumeError`].
    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, EngineError> {
        let volumes = self.volumes();
        Ok(volumes
            .list()?
            .iter()
            .map(|r| volumes.info(r))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// `volume inspect`.
    ///
    /// # Errors
    /// [`VolumeError::NotFound`].
    pub fn inspect_volume(&self, name: &VolumeName) -> Result<VolumeInfo, EngineError> {
        let volumes = self.volumes();
        Ok(volumes.info(&volumes.get(name)?)?)
    }

    /// `volume rm`: refused while a box mounts it unless `force`; audited either way (a
    /// refusal as `denied`).
    ///
    /// # Errors
    /// [`VolumeError::InUse`], [`VolumeError::NotFound`].
    pub fn remove_volume(
        &self,
        name: &VolumeName,
        force: bool,
    ) -> Result<VolumeRecord, EngineError> {
        match self.volumes().remove(name, force) {
            Ok(rec) => {
                let what = if force { "removed (forced)" } else { "removed" };
                self.record_volume("volume.remove", name.as_str(), Outcome::Success, what)?;
                Ok(rec)
            }
            Err(e) => {
                let outcome = if matches!(e, VolumeError::InUse { .. }) {
                    Outcome::Denied
                } else {
                    Outcome::Failure
                };
                self.record_volume("volume.remove", name.as_str(), outcome, &e.to_string())?;
                Err(e.into())
            }
        }
    }

    /// `volume prune [--all]`: removes every anonymous volume no box mounts (with `all`,
    /// every volume no box mounts); audited per volume and once in sum.
    ///
    /// # Errors
    /// [`VolumeError`].
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<VolumeName>, EngineError> {
        let removed = self.volumes().prune(all)?;
        for n in &removed {
            self.record_volume(
                "volume.remove",
                n.as_str(),
                Outcome::Success,
                "pruned (unused)",
            )?;
        }
        self.record_volume(
            "volume.prune",
            "",
            Outcome::Success,
            &format!("removed {} unused volume(s)", removed.len()),
        )?;
        Ok(removed)
    }
}
