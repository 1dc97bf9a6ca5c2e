//! `system df`, `system prune` and `container prune`.

use a3s_image::store::DiskUsage;

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::BoxError;
use crate::disk::{self, CachePrune, DiskReport, ImagePrune};
use crate::volumes::VolumeName;

/// What `system prune` removes besides stopped boxes, unused networks, dangling images and
/// unused caches.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemPruneRequest {
    /// Every image no box uses, not just dangling ones.
    pub all_images: bool,
    /// Volumes no box mounts too.
    pub volumes: bool,
}

/// `container prune`'s result.
#[derive(Clone, Debug, Default)]
pub struct ContainerPrune {
    /// Ids of the boxes removed.
    pub removed: Vec<String>,
    /// What they occupied.
    pub freed: DiskUsage,
}

/// One finished stage of `system prune`, reported as it completes (in this order).
#[derive(Debug)]
pub enum SystemPrune<'a> {
    /// Stopped boxes removed.
    Boxes(&'a ContainerPrune),
    /// Unused networks removed.
    Networks(&'a [String]),
    /// Images removed.
    Images(&'a ImagePrune),
    /// Unused volumes removed (only when asked for).
    Volumes(&'a [(VolumeName, DiskUsage)]),
    /// Cache entries removed.
    Caches(&'a CachePrune),
}

impl Engine {
    /// `system df`: allocated bytes per category, and per image, box, volume and cache
    /// entry.
    ///
    /// # Errors
    /// [`disk::DiskError`].
    pub fn df(&self) -> Result<DiskReport, EngineError> {
        Ok(disk::df(&self.home)?)
    }

    /// `ps -s`: the disk a box's own files take (its writable layer, logs and state).
    ///
    /// # Errors
    /// i/o.
    pub fn box_size(&self, rec: &crate::boxes::BoxRecord) -> Result<DiskUsage, EngineError> {
        Ok(disk::box_usage(&self.home, rec)?)
    }

    /// `container prune`: removes every box that is not running through the same remove
    /// path as `rm` (network release included), auditing each as `rm` does.
    ///
    /// # Errors
    /// Box or disk errors.
    pub fn prune_boxes(&self) -> Result<ContainerPrune, EngineError> {
        let mut out = ContainerPrune::default();
        for rec in self.boxes.list()? {
            if rec.state.is_active() {
                continue;
            }
            let size = disk::box_usage(&self.home, &rec)?;
            let rec = match self.boxes.remove(rec.id.as_str(), false) {
                Ok(r) => r,
                // Started meanwhile: no longer stopped.
                Err(BoxError::StillRunning(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            self.record_box("box.remove", &rec, Outcome::Success, "removed (pruned)")?;
            out.freed += size;
            out.removed.push(rec.id.to_string());
        }
        Ok(out)
    }

    /// `system prune`: stopped boxes, unused networks, dangling (or with `all_images`
    /// unused) images, with `volumes` unused volumes, and unused caches, in that order; each
    /// removal audited as the matching single command audits it. `stage` sees each stage as
    /// it completes. Returns the bytes freed.
    ///
    /// # Errors
    /// The first failing stage's error (earlier stages stay done).
    pub fn system_prune(
        &self,
        req: SystemPruneRequest,
        stage: &mut dyn FnMut(SystemPrune<'_>) -> std::io::Result<()>,
    ) -> Result<DiskUsage, EngineError> {
        let boxes = self.prune_boxes()?;
        stage(SystemPrune::Boxes(&boxes))?;
        let mut freed = boxes.freed;
        let networks = self.prune_networks()?;
        stage(SystemPrune::Networks(&networks))?;
        let images = self.prune_images(req.all_images)?;
        stage(SystemPrune::Images(&images))?;
        freed += images.freed();
        if req.volumes {
            let removed = disk::prune_volumes(&self.home)?;
            for (n, size) in &removed {
                self.record(
                    &Event::new("volume.remove", Outcome::Success, "pruned (unused)")
                        .with("volume", n.as_str()),
                )?;
                freed += *size;
            }
            self.record(
                &Event::new(
                    "volume.prune",
                    Outcome::Success,
                    format!("removed {} unused volume(s)", removed.len()),
                )
                .with("volume", ""),
            )?;
            stage(SystemPrune::Volumes(&removed))?;
        }
        let cache = disk::prune_caches(&self.home)?;
        self.record(
            &Event::new(
                "cache.prune",
                Outcome::Success,
                format!("removed {} cache entries", cache.removed.len()),
            )
            .with("removed", cache.removed.clone())
            .with("freed_bytes", cache.freed.allocated),
        )?;
        stage(SystemPrune::Caches(&cache))?;
        freed += cache.freed;
        Ok(freed)
    }
}
