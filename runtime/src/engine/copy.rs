//! `cp` between the host and a box.
//!
//! A running box copies through an exec session of guest-init's copy helper; a stopped box
//! through its volumes' host directories when the path is on one, else through a helper box
//! booted on (a copy of) its layer disk, so `cp` works on stopped boxes as in Docker.

use std::path::{Path, PathBuf};

use super::helper_box::LayerUse;
use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::BoxRecord;
use crate::copy::{self, CopyError};

impl Engine {
    /// `cp BOX:PATH HOSTPATH`; returns the path written. Audited (refusals as `denied`).
    ///
    /// # Errors
    /// Not found, [`CopyError`], the helper box failed.
    pub fn copy_out(&self, key: &str, path: &str, dest: &Path) -> Result<PathBuf, EngineError> {
        let rec = self.boxes.find(key)?;
        let result = match copy::copy_out(&self.boxes, &rec, path, dest) {
            Err(CopyError::NotPersistent { .. }) => {
                self.with_helper_box(&rec, "cp", LayerUse::Read, |helper| {
                    Ok(copy::copy_out(&self.boxes, helper, path, dest)?)
                })
            }
            other => other.map_err(EngineError::from),
        };
        self.record_copy(
            &rec,
            "box.cp_out",
            &format!("{path} -> {}", dest.display()),
            &result,
        )?;
        result
    }

    /// `cp HOSTPATH BOX:PATH`. Audited (refusals as `denied`).
    ///
    /// # Errors
    /// Not found, [`EngineError::NoHostPath`], [`CopyError`], the helper box failed.
    pub fn copy_in(&self, key: &str, src: &Path, path: &str) -> Result<(), EngineError> {
        let rec = self.boxes.find(key)?;
        if std::fs::symlink_metadata(src).is_err() {
            return Err(EngineError::NoHostPath(src.to_owned()));
        }
        let result = match copy::copy_in(&self.boxes, &rec, src, path) {
            Err(CopyError::NotPersistent { .. }) => {
                self.with_helper_box(&rec, "cp", LayerUse::Write, |helper| {
                    Ok(copy::copy_in(&self.boxes, helper, src, path)?)
                })
            }
            other => other.map_err(EngineError::from),
        };
        self.record_copy(
            &rec,
            "box.cp_in",
            &format!("{} -> {path}", src.display()),
            &result,
        )?;
        result
    }

    fn record_copy<T>(
        &self,
        rec: &BoxRecord,
        action: &str,
        what: &str,
        result: &Result<T, EngineError>,
    ) -> Result<(), EngineError> {
        let (outcome, message) = match result {
            Ok(_) => (Outcome::Success, what.to_owned()),
            Err(
                e @ EngineError::Copy(
                    CopyError::RefusedInTee(_)
                    | CopyError::ReadOnly { .. }
                    | CopyError::NotPersistent { .. },
                ),
            ) => (Outcome::Denied, format!("{what}: {e}")),
            Err(e) => (Outcome::Failure, format!("{what}: {e}")),
        };
        self.record(
            &Event::new(action, outcome, message)
                .with_box(rec.id.as_str())
                .with("name", rec.name.as_str())
                .with("state", rec.state.name()),
        )
    }
}
