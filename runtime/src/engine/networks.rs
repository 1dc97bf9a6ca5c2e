//! Networks: create, list, inspect, remove, connect, disconnect, prune.

use std::net::Ipv4Addr;

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::BoxRecord;
use crate::network::attach::{self, ConnectOptions, StoppedBox};
use crate::network::{BoxNet, CreateNetwork, NetError, Network, Networks, PortMap};

fn net_event(action: &str, outcome: Outcome, message: &str, network: &str) -> Event {
    Event::new(action, outcome, message).with("network", network)
}

impl Engine {
    pub(super) fn networks(&self) -> Networks {
        Networks::open(&self.home)
    }

    /// `network create`; audited either way.
    ///
    /// # Errors
    /// [`NetError`] (bad name, subnet, overlap, policy, ...).
    pub fn create_network(&self, req: &CreateNetwork) -> Result<Network, EngineError> {
        match self.networks().create(req) {
            Ok(n) => {
                self.record(
                    &net_event("network.create", Outcome::Success, "created", &n.name)
                        .with("subnet", n.subnet.to_string())
                        .with("isolation", n.isolation.as_str()),
                )?;
                Ok(n)
            }
            Err(e) => {
                self.record(&net_event(
                    "network.create",
                    Outcome::Failure,
                    &e.to_string(),
                    &req.name,
                ))?;
                Err(e.into())
            }
        }
    }

    /// `network ls`.
    ///
    /// # Errors
    /// i/o.
    pub fn list_networks(&self) -> Result<Vec<Network>, EngineError> {
        Ok(self.networks().list()?)
    }

    /// `network inspect`.
    ///
    /// # Errors
    /// [`NetError::NoSuchNetwork`].
    pub fn inspect_network(&self, name: &str) -> Result<Network, EngineError> {
        Ok(self.networks().get(name)?)
    }

    /// `network rm`: refused while boxes are attached unless `force` detaches them;
    /// audited either way (a refusal as `denied`).
    ///
    /// # Errors
    /// [`NetError::InUse`], [`NetError::NoSuchNetwork`].
    pub fn remove_network(&self, name: &str, force: bool) -> Result<Network, EngineError> {
        match self.networks().remove(name, force) {
            Ok(n) => {
                let detached: Vec<String> = n.endpoints.values().map(|e| e.name.clone()).collect();
                self.record(
                    &net_event("network.remove", Outcome::Success, "removed", name)
                        .with("detached", detached.join(",")),
                )?;
                Ok(n)
            }
            Err(e) => {
                let outcome = if matches!(e, NetError::InUse { .. }) {
                    Outcome::Denied
                } else {
                    Outcome::Failure
                };
                self.record(&net_event("network.remove", outcome, &e.to_string(), name))?;
                Err(e.into())
            }
        }
    }

    /// Removes every network no box is attached to, auditing each as `network rm` does;
    /// returns their names.
    ///
    /// # Errors
    /// [`NetError`].
    pub fn prune_networks(&self) -> Result<Vec<String>, EngineError> {
        let nets = self.networks();
        let mut removed = Vec::new();
        for n in nets.list()? {
            if !n.endpoints.is_empty() {
                continue;
            }
            match nets.remove(&n.name, false) {
                Ok(_) => {
                    self.record(
                        &Event::new("network.remove", Outcome::Success, "removed (pruned)")
                            .with("network", n.name.as_str()),
                    )?;
                    removed.push(n.name);
                }
                Err(NetError::InUse { .. }) => {}
                Err(e) => {
                    self.record(
                        &Event::new("network.remove", Outcome::Failure, e.to_string())
                            .with("network", n.name.as_str()),
                    )?;
                    return Err(e.into());
                }
            }
        }
        Ok(removed)
    }

    /// `port BOX`: the box's published ports.
    ///
    /// # Errors
    /// Not found, a malformed `net.json`.
    pub fn ports(&self, key: &str) -> Result<Vec<PortMap>, EngineError> {
        let rec = self.boxes.find(key)?;
        Ok(BoxNet::load(&self.boxes.box_dir(&rec.id))?.ports)
    }

    /// The stopped box `key`, for `connect`/`disconnect`.
    fn stopped_box(&self, key: &str) -> Result<BoxRecord, NetError> {
        let rec = self
            .boxes
            .find(key)
            .map_err(|e| NetError::Io(std::io::Error::other(e.to_string())))?;
        if rec.state.is_active() {
            return Err(NetError::BoxRunning(rec.name));
        }
        Ok(rec)
    }

    /// Runs `f` on the stopped box `key` (as the network layer sees it).
    fn on_stopped_box<T>(
        &self,
        key: &str,
        f: impl FnOnce(StoppedBox<'_>) -> Result<T, NetError>,
    ) -> Result<(BoxRecord, T), NetError> {
        let rec = self.stopped_box(key)?;
        let dir = self.boxes.box_dir(&rec.id);
        let out = f(StoppedBox {
            id: &rec.id,
            name: &rec.name,
            dir: &dir,
        })?;
        Ok((rec, out))
    }

    /// `network connect [--alias A] [--ip IP] NET BOX`: a stopped box joins `network` at its
    /// next boot (one more network when it is on one already); returns the box and its address
    /// there. Audited either way.
    ///
    /// # Errors
    /// A running box, no such network, a bad alias, a taken `--ip`.
    pub fn connect(
        &self,
        network: &str,
        key: &str,
        opts: &ConnectOptions,
    ) -> Result<(BoxRecord, Ipv4Addr), EngineError> {
        let result = self.on_stopped_box(key, |b| attach::connect(&self.home, network, b, opts));
        match result {
            Ok((rec, ip)) => {
                self.record(
                    &net_event(
                        "network.connect",
                        Outcome::Success,
                        "connected (applies at next boot)",
                        network,
                    )
                    .with_box(rec.id.as_str())
                    .with("name", rec.name.as_str())
                    .with("ip", ip.to_string()),
                )?;
                Ok((rec, ip))
            }
            Err(e) => {
                self.record(
                    &net_event("network.connect", Outcome::Failure, &e.to_string(), network)
                        .with("box", key),
                )?;
                Err(e.into())
            }
        }
    }

    /// `network disconnect NET BOX`: a stopped box leaves `network` (with no network left, it
    /// boots with none until connected again). Audited either way.
    ///
    /// # Errors
    /// A running box, or one not on `network`.
    pub fn disconnect(&self, network: &str, key: &str) -> Result<BoxRecord, EngineError> {
        let result = self
            .on_stopped_box(key, |b| attach::disconnect(&self.home, network, b))
            .map(|(rec, ())| rec);
        match result {
            Ok(rec) => {
                self.record(
                    &net_event(
                        "network.disconnect",
                        Outcome::Success,
                        "disconnected (applies at next boot)",
                        network,
                    )
                    .with_box(rec.id.as_str())
                    .with("name", rec.name.as_str()),
                )?;
                Ok(rec)
            }
            Err(e) => {
                self.record(
                    &net_event(
                        "network.disconnect",
                        Outcome::Failure,
                        &e.to_string(),
                        network,
                    )
                    .with("box", key),
                )?;
                Err(e.into())
            }
        }
    }
}
