//! `cp` between the host and a box.

use std::path::{Path, PathBuf};

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::BoxRecord;
use crate::copy::{self, CopyError};

impl Engine {
    /// `cp BOX:PATH HOSTPATH`; returns the path written. Audited (refusals as `denied`).
    ///
    /// # Errors
    /// Not found, [`CopyError`].
    pub fn copy_out(&self, key: &str, path: &str, dest: &Path) -> Result<PathBuf, EngineError> {
        let rec = self.boxes.find(key)?;
        let result = copy::copy_out(&self.boxes, &rec, path, dest);
        self.record_copy(
            &rec,
            "box.cp_out",
            &format!("{path} -> {}", dest.display()),
            &result,
        )?;
        Ok(result?)
    }

    /// `cp HOSTPATH BOX:PATH`. Audited (refusals as `denied`).
    ///
    /// # Errors
    /// Not found, [`EngineError::NoHostPath`], [`CopyError`].
    pub fn copy_in(&self, key: &str, src: &Path, path: &str) -> Result<(), EngineError> {
        let rec = self.boxes.find(key)?;
        if std::fs::symlink_metadata(src).is_err() {
            return Err(EngineError::NoHostPath(src.to_owned()));
        }
        let result = copy::copy_in(&self.boxes, &rec, src, path);
        self.record_copy(
            &rec,
            "box.cp_in",
            &format!("{} -> {path}", src.display()),
            &result,
        )?;
        Ok(result?)
    }

    fn record_copy<T>(
        &self,
        rec: &BoxRecord,
        action: &str,
        what: &str,
        result: &Result<T, CopyError>,
    ) -> Result<(), EngineError> {
        let (outcome, message) = match result {
            Ok(_) => (Outcome::Success, what.to_owned()),
            Err(
                e @ (CopyError::RefusedInTee(_)
                | CopyError::ReadOnly { .. }
                | CopyError::NotPersistent { .. }),
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
