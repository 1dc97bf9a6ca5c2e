//! `compose up`, `down`, `ps` and the per-service lifecycle: a [`Plan`] carried out with the
//! same operations `network create`, `volume create`, `create`, `start`, `stop` and `rm` use,
//! so each step is audited like its single-box twin.
//!
//! What a project owns is recorded in `A3S_HOME/compose/<project>.json` (the boxes, networks
//! and volumes `up` made), so `down` removes exactly those and `--remove-orphans` finds boxes
//! of services since deleted from the file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use a3s_image::cosign::SignaturePolicy;
use serde::{Deserialize, Serialize};

use super::{Engine, EngineError};
use crate::boxes::health::HealthStatus;
use crate::boxes::{BoxRecord, BoxState};
use crate::compose::{ComposeError, Condition, Plan, PlannedBox};
use crate::network::NetError;
use crate::state::StateError;
use crate::volumes::VolumeName;

/// What a front end hears while a compose operation proceeds.
pub trait ComposeEvents {
    /// `what` happened to `object` (`Network shop_default`, `Box shop-db-1`): `Created`,
    /// `Started`, `Running`, `Healthy`, `Stopped`, `Removed`, ...
    fn step(&mut self, object: &str, what: &str) {
        let _ = (object, what);
    }
}

impl ComposeEvents for () {}

/// What a project made, as `up` recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectState {
    /// Box names by service.
    pub boxes: std::collections::BTreeMap<String, String>,
    /// Networks compose created.
    pub networks: BTreeSet<String>,
    /// Volumes compose created.
    pub volumes: BTreeSet<String>,
}

/// When `up` replaces a service's existing box with a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recreate {
    /// When the service's definition changed since the box was made (its config hash).
    #[default]
    Changed,
    /// Always (`--force-recreate`).
    Always,
    /// Never (`--no-recreate`).
    Never,
}

/// How long `up` waits for one dependency to reach its condition.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(600);

impl Engine {
    fn compose_state_path(&self, project: &str) -> PathBuf {
        self.home
            .root()
            .join("compose")
            .join(format!("{project}.json"))
    }

    /// The recorded state of `project` (empty when it has none).
    ///
    /// # Errors
    /// A malformed state file.
    pub fn compose_state(&self, project: &str) -> Result<ProjectState, EngineError> {
        let path = self.compose_state_path(project);
        match fs_err::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| EngineError::context(format!("reading {}", path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProjectState::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_compose_state(&self, project: &str, s: &ProjectState) -> Result<(), EngineError> {
        let path = self.compose_state_path(project);
        if s == &ProjectState::default() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => return Ok(()),
            }
        }
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
        a3s_vmm::assets::write_atomic(&path, &json)?;
        Ok(())
    }

    /// `compose up`: networks, volumes, then each box in dependency order, each started once
    /// what it depends on reached its condition. A box that exists already is removed and made
    /// again when `recreate` says so (by default: its service's definition changed), else
    /// started if stopped and left alone if running.
    ///
    /// # Errors
    /// The first failing step; a dependency that exits or turns unhealthy.
    pub fn compose_up(
        &self,
        plan: &Plan,
        signatures: Option<&SignaturePolicy>,
        recreate: Recreate,
        events: &mut dyn ComposeEvents,
    ) -> Result<(), EngineError> {
        let mut state = self.compose_state(&plan.project)?;
        for n in &plan.networks {
            let name = &n.request.name;
            match self.networks().get(name) {
                Ok(_) => {}
                Err(NetError::NoSuchNetwork(_)) if n.external => {
                    return Err(NetError::NoSuchNetwork(name.clone()).into())
                }
                Err(NetError::NoSuchNetwork(_)) => {
                    self.create_network(&n.request)?;
                    state.networks.insert(name.clone());
                    self.save_compose_state(&plan.project, &state)?;
                    events.step(&format!("Network {name}"), "Created");
                }
                Err(e) => return Err(e.into()),
            }
        }
        for v in &plan.volumes {
            let name: VolumeName = v.name.parse()?;
            if v.external {
                self.inspect_volume(&name)?;
                continue;
            }
            if self.create_volume(&name)?.1 {
                state.volumes.insert(v.name.clone());
                self.save_compose_state(&plan.project, &state)?;
                events.step(&format!("Volume {}", v.name), "Created");
            }
        }
        for b in &plan.boxes {
            self.wait_dependencies(b, events)?;
            let existing = match self.boxes.find(&b.name) {
                Ok(rec) => Some(rec),
                Err(crate::boxes::BoxError::State(StateError::NotFound(_))) => None,
                Err(e) => return Err(e.into()),
            };
            let existing = match existing {
                Some(rec) if must_recreate(&rec, b, recreate, self.image_digest(b)?.as_deref()) => {
                    self.remove(rec.id.as_str(), true)?;
                    events.step(&format!("Box {}", b.name), "Recreate");
                    None
                }
                other => other,
            };
            let rec = match existing {
                Some(rec) => rec,
                None => {
                    let rec = self.create(&super::CreateBox {
                        request: b.request.clone(),
                        signatures: signatures.cloned(),
                    })?;
                    state.boxes.insert(b.service.clone(), b.name.clone());
                    self.save_compose_state(&plan.project, &state)?;
                    events.step(&format!("Box {}", b.name), "Created");
                    rec
                }
            };
            state.boxes.insert(b.service.clone(), b.name.clone());
            if rec.state.is_active() {
                events.step(&format!("Box {}", b.name), "Running");
            } else {
                self.start(rec.id.as_str())?;
                events.step(&format!("Box {}", b.name), "Started");
            }
        }
        self.save_compose_state(&plan.project, &state)
    }

    /// The manifest digest `b`'s image reference resolves to in the store now (`None`: not
    /// stored, so `create` pulls or imports it and there is nothing to compare).
    fn image_digest(&self, b: &PlannedBox) -> Result<Option<String>, EngineError> {
        let Ok(reference) = b.request.image.parse::<a3s_image::ImageRef>() else {
            return Ok(None);
        };
        match self.image_store()?.resolve(&reference) {
            Ok(image) => Ok(Some(image.digest.to_string())),
            Err(a3s_image::StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until each of `b`'s dependencies reached its condition.
    fn wait_dependencies(
        &self,
        b: &PlannedBox,
        events: &mut dyn ComposeEvents,
    ) -> Result<(), EngineError> {
        for (dep, cond) in &b.depends_on {
            let fail = |why: String| ComposeError::Dependency {
                service: b.service.clone(),
                dependency: dep.clone(),
                why,
            };
            let until = Instant::now() + DEPENDENCY_TIMEOUT;
            loop {
                let rec = self.boxes.find(dep)?;
                match reached(&rec, *cond) {
                    Reached::Yes => break,
                    Reached::Never(why) => return Err(compose_error(fail(why))),
                    Reached::NotYet if Instant::now() >= until => {
                        return Err(compose_error(fail(format!(
                            "did not get there within {} s",
                            DEPENDENCY_TIMEOUT.as_secs()
                        ))))
                    }
                    Reached::NotYet => std::thread::sleep(Duration::from_millis(200)),
                }
            }
            if *cond == Condition::Healthy {
                events.step(&format!("Box {dep}"), "Healthy");
            }
        }
        Ok(())
    }

    /// `compose down`: removes the project's boxes (last started first), then the networks
    /// compose created, and with `volumes` the volumes too. Boxes recorded for services no
    /// longer in the file are removed with `remove_orphans`, else named in an error.
    ///
    /// # Errors
    /// The first failing removal; [`ComposeError::Unsupported`] naming orphans.
    pub fn compose_down(
        &self,
        plan: &Plan,
        volumes: bool,
        remove_orphans: bool,
        events: &mut dyn ComposeEvents,
    ) -> Result<(), EngineError> {
        let mut state = self.compose_state(&plan.project)?;
        let planned: BTreeSet<&str> = plan.boxes.iter().map(|b| b.service.as_str()).collect();
        let orphans: Vec<(String, String)> = state
            .boxes
            .iter()
            .filter(|(svc, _)| !planned.contains(svc.as_str()))
            .map(|(s, b)| (s.clone(), b.clone()))
            .collect();
        let mut doomed: Vec<(String, String)> = plan
            .boxes
            .iter()
            .rev()
            .map(|b| (b.service.clone(), b.name.clone()))
            .collect();
        if remove_orphans {
            doomed.extend(orphans);
        } else if let Some((svc, name)) = orphans.first() {
            events.step(
                &format!("Box {name}"),
                &format!("Orphan (service {svc} is not in the file; --remove-orphans removes it)"),
            );
        }
        for (svc, name) in doomed {
            // `down -v` removes the boxes' anonymous volumes with them, as Compose does.
            match self.remove_with_volumes(&name, true, volumes) {
                Ok(_) => events.step(&format!("Box {name}"), "Removed"),
                Err(EngineError::Box(crate::boxes::BoxError::State(StateError::NotFound(_)))) => {}
                Err(e) => return Err(e),
            }
            state.boxes.remove(&svc);
            self.save_compose_state(&plan.project, &state)?;
        }
        let orphaned_left = !state.boxes.is_empty();
        for n in plan.networks.iter().filter(|n| !n.external) {
            let name = &n.request.name;
            if orphaned_left
                && self
                    .networks()
                    .get(name)
                    .is_ok_and(|net| !net.endpoints.is_empty())
            {
                continue;
            }
            match self.remove_network(name, false) {
                Ok(_) => events.step(&format!("Network {name}"), "Removed"),
                Err(EngineError::Net(NetError::NoSuchNetwork(_))) => {}
                Err(e) => return Err(e),
            }
            state.networks.remove(name);
            self.save_compose_state(&plan.project, &state)?;
        }
        if volumes {
            for v in plan.volumes.iter().filter(|v| !v.external) {
                let name: VolumeName = v.name.parse()?;
                match self.remove_volume(&name, false) {
                    Ok(_) => events.step(&format!("Volume {}", v.name), "Removed"),
                    Err(EngineError::Volume(crate::volumes::VolumeError::NotFound(_))) => {}
                    Err(e) => return Err(e),
                }
                state.volumes.remove(&v.name);
                self.save_compose_state(&plan.project, &state)?;
            }
        }
        Ok(())
    }

    /// `compose ps`: each service's box as it is now (`None`: not created).
    ///
    /// # Errors
    /// State errors.
    pub fn compose_ps(&self, plan: &Plan) -> Result<Vec<(String, Option<BoxRecord>)>, EngineError> {
        plan.boxes
            .iter()
            .map(|b| match self.boxes.find(&b.name) {
                Ok(r) => Ok((b.service.clone(), Some(r))),
                Err(crate::boxes::BoxError::State(StateError::NotFound(_))) => {
                    Ok((b.service.clone(), None))
                }
                Err(e) => Err(e.into()),
            })
            .collect()
    }

    /// The box of `service` (for `compose logs/exec/start/stop/restart SERVICE`).
    ///
    /// # Errors
    /// [`ComposeError::NoService`].
    pub fn compose_box<'p>(
        &self,
        plan: &'p Plan,
        service: &str,
    ) -> Result<&'p PlannedBox, EngineError> {
        plan.boxes
            .iter()
            .find(|b| b.service == service)
            .ok_or_else(|| compose_error(ComposeError::NoService(service.to_owned())))
    }
}

enum Reached {
    Yes,
    NotYet,
    Never(String),
}

fn reached(rec: &BoxRecord, cond: Condition) -> Reached {
    match (cond, &rec.state) {
        (Condition::Started, BoxState::Running { .. }) => Reached::Yes,
        (Condition::Healthy, BoxState::Running { .. }) => {
            match rec.health.as_ref().map(|h| h.status) {
                Some(HealthStatus::Healthy) => Reached::Yes,
                Some(HealthStatus::Unhealthy) => Reached::Never("is unhealthy".into()),
                Some(HealthStatus::Starting) => Reached::NotYet,
                None if rec.spec.health.is_none() => {
                    Reached::Never("has no healthcheck (service_healthy needs one)".into())
                }
                None => Reached::NotYet,
            }
        }
        (Condition::CompletedSuccessfully, BoxState::Exited { exit_code: 0, .. }) => Reached::Yes,
        (_, BoxState::Exited { exit_code, error }) => Reached::Never(match error {
            Some(e) => format!("exited with code {exit_code}: {e}"),
            None => format!("exited with code {exit_code}"),
        }),
        _ => Reached::NotYet,
    }
}

fn compose_error(e: ComposeError) -> EngineError {
    EngineError::Compose(e)
}

/// Whether `up` replaces `rec`, the existing box of `b`'s service: its definition changed
/// (a box without a recorded hash counts as changed, as in Docker Compose), or its image
/// reference now names another image (`image`: the digest it resolves to in the store now, as
/// after `compose pull` or a rebuild).
fn must_recreate(rec: &BoxRecord, b: &PlannedBox, recreate: Recreate, image: Option<&str>) -> bool {
    use crate::compose::render::CONFIG_HASH_LABEL;
    match recreate {
        Recreate::Always => true,
        Recreate::Never => false,
        Recreate::Changed => {
            rec.spec.labels.get(CONFIG_HASH_LABEL) != b.request.labels.get(CONFIG_HASH_LABEL)
                || image.is_some_and(|d| d != rec.image_digest)
        }
    }
}
