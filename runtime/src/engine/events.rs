//! `events`: the lifecycle events the runtime recorded (see [`crate::boxes::events`]).

use super::{Engine, EngineError};
use crate::boxes::events::{BoxEvent, EventFilter, EventLog};

impl Engine {
    /// `events`, with Docker's rules: with `--since` or `--until` the stored events in that
    /// window first; then, unless `--until` has passed, new events as they happen until
    /// `--until` passes, `stop()` is true, or `sink` returns `false`.
    ///
    /// # Errors
    /// i/o on the events file.
    pub fn events(
        &self,
        filter: &EventFilter,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&BoxEvent) -> bool,
    ) -> Result<(), EngineError> {
        let log = EventLog::open(self.home.root());
        let stored = filter.since.is_some() || filter.until.is_some();
        let until = filter.until;
        let passed = move || until.is_some_and(|u| u <= time::OffsetDateTime::now_utc());
        log.follow(filter, stored, &|| stop() || passed(), sink)?;
        Ok(())
    }
}
