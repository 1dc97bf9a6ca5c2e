//! Boxes meeting networks: addresses at create, `network connect`/`disconnect` of stopped
//! boxes (a box may be on several bridge networks), release at removal, and plugging a
//! booting box into its bridges.

use std::net::Ipv4Addr;
use std::path::Path;

use a3s_vmm::proto::GuestSetup;

use super::bridge::{self, Tap};
use super::dns::DnsServer;
use super::forward::{self, Forwarders};
use super::inbound::InboundLink;
use super::{Attachment, BoxNet, NetError, NetMode, Network, Networks};
use crate::home::A3sHome;
use crate::state::BoxId;

/// At create: a bridged box gets its address on each of its networks (its directory must
/// exist already). On a failure the addresses given so far are freed again.
///
/// # Errors
/// [`NetError::NoSuchNetwork`], [`NetError::SubnetFull`], a taken `--ip`.
pub fn allocate(
    home: &A3sHome,
    id: &BoxId,
    name: &str,
    mut net: BoxNet,
) -> Result<BoxNet, NetError> {
    if net.mode != NetMode::Bridge {
        return Ok(net);
    }
    if net.network.is_none() {
        return Err(NetError::NotAttached);
    }
    let nets = Networks::open(home);
    let mut done: Vec<Attachment> = Vec::new();
    for mut a in net.attachments() {
        match nets.attach(&a.network, id, &join(name, &net, &a)) {
            Ok(ip) => {
                a.ip = Some(ip);
                done.push(a);
            }
            Err(e) => {
                for d in &done {
                    let _ = nets.detach(&d.network, id);
                }
                return Err(e);
            }
        }
    }
    net.set_attachments(done);
    Ok(net)
}

fn join(name: &str, net: &BoxNet, a: &Attachment) -> super::store::Join {
    super::store::Join {
        name: name.to_owned(),
        aliases: a.aliases.clone(),
        hostname: net.hostname.clone(),
        ip: a.ip,
    }
}

/// At removal: frees the box's addresses (best effort: an endpoint whose box is gone is
/// garbage collected anyway).
pub fn release(home: &A3sHome, id: &BoxId, dir: &Path) {
    if let Ok(net) = BoxNet::load(dir) {
        for a in net.attachments() {
            let _ = Networks::open(home).detach(&a.network, id);
        }
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

/// What `network connect` asks for besides the network.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// `--alias`: more names the network's DNS answers with the box's address there.
    pub aliases: Vec<String>,
    /// `--ip`: the address to take there.
    pub ip: Option<Ipv4Addr>,
}

/// `network connect NET BOX`: a stopped box joins `network` at its next boot, as one more
/// network when it is on bridge networks already (one more NIC, its own address and aliases),
/// else as its only one (replacing `tsi` or `none`). Returns its address there (the one it has
/// when it is on `network` already).
///
/// # Errors
/// No such network, a bad alias, a taken or foreign `--ip`, a full subnet.
pub fn connect(
    home: &A3sHome,
    network: &str,
    b: StoppedBox<'_>,
    opts: &ConnectOptions,
) -> Result<Ipv4Addr, NetError> {
    let dir = b.dir;
    let mut net = BoxNet::load(dir)?;
    if let Some(ip) = net
        .attachments()
        .iter()
        .find(|a| a.network == network)
        .and_then(|a| a.ip)
    {
        return Ok(ip);
    }
    for a in &opts.aliases {
        super::check_hostname(a).map_err(|_| NetError::Alias(a.clone()))?;
    }
    let mut all = net.attachments();
    let wanted = Attachment {
        network: network.to_owned(),
        ip: opts.ip,
        aliases: opts.aliases.clone(),
        link: None,
    };
    let ip = Networks::open(home).attach(network, b.id, &join(b.name, &net, &wanted))?;
    all.push(Attachment {
        ip: Some(ip),
        ..wanted
    });
    net.set_attachments(all);
    if let Err(e) = net.save(dir) {
        let _ = Networks::open(home).detach(network, b.id);
        return Err(e);
    }
    Ok(ip)
}

/// `network disconnect NET BOX`: a stopped box leaves `network`. Its next network (if any)
/// becomes its first (the default route); a box left with none boots with no network (`none`)
/// until connected again.
///
/// # Errors
/// A box not on `network`.
pub fn disconnect(home: &A3sHome, network: &str, b: StoppedBox<'_>) -> Result<(), NetError> {
    let dir = b.dir;
    let mut net = BoxNet::load(dir)?;
    if !net.is_on(network) {
        // Make sure the network exists before saying the box is not on it.
        Networks::open(home).get(network)?;
        return Err(NetError::NotConnected {
            name: b.name.to_owned(),
            network: network.to_owned(),
        });
    }
    Networks::open(home).detach(network, b.id)?;
    let rest = net
        .attachments()
        .into_iter()
        .filter(|a| a.network != network)
        .map(|a| Attachment { link: None, ..a })
        .collect();
    net.set_attachments(rest);
    net.save(dir)?;
    Ok(())
}

/// A booting bridged box plugged into its networks: a TAP per network (removed on drop), its
/// share of each network's DNS server and its published ports (both stop on drop), and the
/// networks as they were when the box joined, its first one first.
#[derive(Debug)]
pub struct Plugged {
    /// The TAP devices.
    pub taps: Vec<Tap>,
    /// This monitor's socket of each network's DNS server.
    pub dns: Vec<DnsServer>,
    /// Relays of the box's published ports (to its address on its first network).
    pub forwards: Forwarders,
    /// The networks.
    pub networks: Vec<Network>,
    /// A default-network box's inbound link for its published ports.
    pub inbound: Option<InboundLink>,
    /// Why a default-network box's published ports stay with its forwarder.
    pub inbound_refused: Option<String>,
}

impl Plugged {
    /// The VM's NIC as plugged: a default-network box's ports come in over its inbound link
    /// (the forwarder then holds none), or the forwarder keeps them, with the reason.
    pub fn adjust_nic(&self, nic: Option<&mut a3s_vmm::net::Nic>) {
        let Some(a3s_vmm::net::Nic::User(u)) = nic else {
            return;
        };
        if let Some(link) = &self.inbound {
            u.forwards.clear();
            u.inbound = Some(link.tap());
        }
        u.inbound_refused.clone_from(&self.inbound_refused);
    }
}

/// A default-network box publishing ports: its inbound link and the relays over it, or the
/// reason its forwarder keeps them.
fn plug_inbound(net: &BoxNet, setup: &mut GuestSetup) -> Result<Option<Plugged>, NetError> {
    let (inbound, inbound_refused) = match InboundLink::for_ports(&net.ports)? {
        Ok(None) => return Ok(None),
        Ok(Some(link)) => (Some(link), None),
        Err(why) => (None, Some(why)),
    };
    let forwards = match &inbound {
        Some(link) => {
            setup.interfaces = vec![InboundLink::guest_nic()];
            link.relay(&net.ports)?
        }
        None => Forwarders::none(),
    };
    Ok(Some(Plugged {
        taps: Vec::new(),
        dns: Vec::new(),
        forwards,
        networks: Vec::new(),
        inbound,
        inbound_refused,
    }))
}

/// Before boot: for a default-network box with published ports, its inbound link
/// ([`super::inbound`]). For a bridged box, for each of its networks builds the bridge if needed,
/// creates the box's TAP and refreshes the isolation rules, and joins the network's DNS
/// server; binds its published ports on its first network. The guest learns its NICs
/// (`setup.interfaces`), its nameserver (the first network's DNS server, which also answers
/// for the box's other networks, unless `--dns` says otherwise) and its own names (in
/// `/etc/hosts`; user `--add-host` entries win). Other modes: nothing.
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
    setup.dns_search.clone_from(&net.dns_search);
    setup.dns_options.clone_from(&net.dns_options);
    if net.mode == NetMode::Pod {
        // The pod's namespace, TAP and redirects are the engine's (they outlive the VM).
        setup.interfaces = net.guest_nics();
        return Ok(None);
    }
    if net.mode == NetMode::Tsi {
        return plug_inbound(net, setup);
    }
    if net.mode != NetMode::Bridge {
        return Ok(None);
    }
    if net.network.is_none() {
        return Err(NetError::NotAttached);
    }
    let nets = Networks::open(home);
    let mut joined = Vec::new();
    for a in net.attachments() {
        let _lock = nets.lock()?;
        let n = nets.get_locked(&a.network)?;
        let me = n
            .endpoints
            .get(id.as_str())
            .filter(|e| Some(e.ip) == a.ip)
            .cloned()
            .ok_or_else(|| NetError::LostEndpoint(a.network.clone()))?;
        bridge::ensure(&n)?;
        joined.push((n, me));
    }
    let mut taps = Vec::new();
    let mut dns = Vec::new();
    for (n, _) in &joined {
        taps.push(Tap::create(n, id)?);
        dns.push(DnsServer::start(home, &n.name, n.gateway)?);
    }
    let (first, me) = joined.first().ok_or(NetError::NotAttached)?;
    let forwards = forward::start(&net.ports, me.ip)?;
    if net.dns.is_empty() {
        setup.nameservers = vec![first.gateway.to_string()];
    }
    setup.interfaces = net.guest_nics();
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
        taps,
        dns,
        forwards,
        networks: joined.into_iter().map(|(n, _)| n).collect(),
        inbound: None,
        inbound_refused: None,
    }))
}
