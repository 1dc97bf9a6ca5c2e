//! Boxes meeting networks: addresses at create, `network connect`/`disconnect` of stopped
//! boxes, release at removal, and plugging a booting box into its bridge.

use std::net::Ipv4Addr;
use std::path::Path;

use a3s_vmm::proto::GuestSetup;

use super::bridge::{self, Tap};
use super::dns::DnsServer;
use super::forward::{self, Forwarders};
use super::{BoxNet, NetError, NetMode, Network, Networks};
use crate::home::A3sHome;
use crate::state::BoxId;

/// At create: a bridged box gets its address (its directory must exist already).
///
/// # Errors
/// [`NetError::NoSuchNetwork`], [`NetError::SubnetFull`].
pub fn allocate(
    home: &A3sHome,
    id: &BoxId,
    name: &str,
    mut net: BoxNet,
) -> Result<BoxNet, NetError> {
    if net.mode != NetMode::Bridge {
        return Ok(net);
    }
    let network = net.network.clone().ok_or(NetError::NotAttached)?;
    net.ip = Some(Networks::open(home).attach(&network, id, &join(name, &net))?);
    Ok(net)
}

fn join(name: &str, net: &BoxNet) -> super::store::Join {
    super::store::Join {
        name: name.to_owned(),
        aliases: net.aliases.clone(),
        hostname: net.hostname.clone(),
        ip: net.ip,
    }
}

/// At removal: frees the box's address (best effort: an endpoint whose box is gone is garbage
/// collected anyway).
pub fn release(home: &A3sHome, id: &BoxId, dir: &Path) {
    if let Ok(BoxNet {
        network: Some(n), ..
    }) = BoxNet::load(dir)
    {
        let _ = Networks::open(home).detach(&n, id);
    }
}

/// The stopped box a `connect`/`disconnect` changes, as the caller found it (the caller checks
/// that it is not running and holds no lock across the call).
#[derive(Clone, Copy, Debug)]
pub struct StoppedBox<'a> {
    /// Its id.
    pub id: &'a BoxId,
    /// Its name.
    pub name: &'a str,
    /// Its directory (where `net.json` lives).
    pub dir: &'a Path,
}

/// `network connect NET BOX`: a stopped box joins `network` at its next boot. Returns its
/// address (the one it has when it is already on `network`).
///
/// # Errors
/// A running box, a box on another network, a box with published ports, no such network.
pub fn connect(home: &A3sHome, network: &str, b: StoppedBox<'_>) -> Result<Ipv4Addr, NetError> {
    let dir = b.dir;
    let mut net = BoxNet::load(dir)?;
    match (&net.network, net.ip) {
        (Some(n), Some(ip)) if n == network => return Ok(ip),
        (Some(n), _) => {
            return Err(NetError::AlreadyConnected {
                name: b.name.to_owned(),
                network: n.clone(),
            })
        }
        _ => {}
    }
    // Its own address and aliases belonged to its previous network (if any).
    net.ip = None;
    let ip = Networks::open(home).attach(network, b.id, &join(b.name, &net))?;
    net.mode = NetMode::Bridge;
    net.network = Some(network.to_owned());
    net.ip = Some(ip);
    net.link = None;
    if let Err(e) = net.save(dir) {
        let _ = Networks::open(home).detach(network, b.id);
        return Err(e);
    }
    Ok(ip)
}

/// `network disconnect NET BOX`: a stopped box leaves `network` and boots with no network
/// (`none`) until connected again.
///
/// # Errors
/// A running box, or one not on `network`.
pub fn disconnect(home: &A3sHome, network: &str, b: StoppedBox<'_>) -> Result<(), NetError> {
    let dir = b.dir;
    let mut net = BoxNet::load(dir)?;
    if net.network.as_deref() != Some(network) {
        // Make sure the network exists before saying the box is not on it.
        Networks::open(home).get(network)?;
        return Err(NetError::NotConnected {
            name: b.name.to_owned(),
            network: network.to_owned(),
        });
    }
    Networks::open(home).detach(network, b.id)?;
    net.mode = NetMode::None;
    net.network = None;
    net.ip = None;
    net.link = None;
    net.save(dir)?;
    Ok(())
}

/// A booting bridged box plugged into its network: the TAP (removed on drop), its share of
/// the network's DNS server and its published ports (both stop on drop), and the network as
/// it was when the box joined.
#[derive(Debug)]
pub struct Plugged {
    /// The TAP device.
    pub tap: Tap,
    /// This monitor's socket of the network's DNS server.
    pub dns: DnsServer,
    /// Relays of the box's published ports.
    pub forwards: Forwarders,
    /// The network.
    pub network: Network,
}

/// Before boot: for a bridged box, builds the bridge if needed, creates the box's TAP and
/// refreshes the isolation rules, joins the network's DNS server (the guest's nameserver
/// unless `--dns` says otherwise) and binds its published ports; the box's own names go to
/// its `/etc/hosts` (user `--add-host` entries win). Other modes: nothing.
///
/// # Errors
/// A vanished network or endpoint, a failed `ip`/`nft` command, a port taken since create.
pub fn plug(
    home: &A3sHome,
    id: &BoxId,
    net: &BoxNet,
    setup: &mut GuestSetup,
) -> Result<Option<Plugged>, NetError> {
    setup.nameservers = net.nameservers();
    if net.mode != NetMode::Bridge {
        return Ok(None);
    }
    let name = net.network.clone().ok_or(NetError::NotAttached)?;
    let nets = Networks::open(home);
    let (n, me) = {
        let _lock = nets.lock()?;
        let n = nets.get_locked(&name)?;
        let me = n
            .endpoints
            .get(id.as_str())
            .filter(|e| Some(e.ip) == net.ip)
            .cloned()
            .ok_or_else(|| NetError::LostEndpoint(name.clone()))?;
        bridge::ensure(&n)?;
        (n, me)
    };
    let tap = Tap::create(&n, id)?;
    let dns = DnsServer::start(home, &n.name, n.gateway)?;
    let forwards = forward::start(&net.ports, me.ip)?;
    if net.dns.is_empty() {
        setup.nameservers = vec![n.gateway.to_string()];
    }
    for own in std::iter::once(&me.name)
        .chain(&me.hostname)
        .chain(std::iter::once(&setup.hostname).filter(|h| !h.is_empty()))
    {
        setup
            .hosts
            .entry(own.clone())
            .or_insert_with(|| me.ip.to_string());
    }
    Ok(Some(Plugged {
        tap,
        dns,
        forwards,
        network: n,
    }))
}
