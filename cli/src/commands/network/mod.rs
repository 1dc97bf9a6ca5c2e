//! Box networking flags, `a3s-box port` and `a3s-box network ...` (issue 9).

pub(crate) mod manage;

use clap::Args;

use a3s_runtime::network::{parse_dns, parse_network, parse_publish, Attachment, BoxNet, NetMode};

/// `--network`, `-p`, `--dns` on `create`/`run`.
#[derive(Debug, Args)]
pub(crate) struct NetArgs {
    /// Network: tsi (default: outbound via the host, published ports), none (no interface), or
    /// the name of a bridge network (`a3s-box network create`: peers by name, stable address).
    /// Repeat it with bridge networks to join several (one NIC each; the first carries the
    /// default route, --ip and --network-alias).
    #[arg(long, value_name = "MODE")]
    pub(crate) network: Vec<String>,
    /// Publish a guest port: [IP:][HOST:]GUEST[/tcp|/udp], ranges as 8000-8002:80-82. IP
    /// defaults to 127.0.0.1; no HOST (or 0) picks a free port. Works on tsi and bridge
    /// networks.
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST:]GUEST")]
    pub(crate) publish: Vec<String>,
    /// Publish every port the image EXPOSEs on a free 127.0.0.1 port.
    #[arg(short = 'P', long = "publish-all")]
    pub(crate) publish_all: bool,
    /// A fixed address on the bridge network (inside its subnet).
    #[arg(long, value_name = "IP")]
    pub(crate) ip: Option<std::net::Ipv4Addr>,
    /// Another name the bridge network's DNS answers with this box's address (repeatable).
    #[arg(long = "network-alias", value_name = "NAME")]
    pub(crate) network_alias: Vec<String>,
    /// DNS server for the box's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "IP")]
    pub(crate) dns: Vec<String>,
}

impl NetArgs {
    /// The validated settings (host ports are resolved by the runtime).
    pub(crate) fn box_net(&self) -> anyhow::Result<BoxNet> {
        let (mode, network) = match self.network.first() {
            Some(m) => parse_network(m).map_err(|e| crate::usage_error(e.into()))?,
            None => (NetMode::default(), None),
        };
        let mut extra = Vec::new();
        for more in self.network.iter().skip(1) {
            match parse_network(more).map_err(|e| crate::usage_error(e.into()))? {
                (NetMode::Bridge, Some(n)) if mode == NetMode::Bridge => {
                    if network.as_ref() == Some(&n) || extra.iter().any(|a: &Attachment| a.network == n) {
                        return Err(crate::usage_error(anyhow::anyhow!(
                            "--network {n} is given twice"
                        )));
                    }
                    extra.push(Attachment {
                        network: n,
                        ip: None,
                        aliases: Vec::new(),
                        link: None,
                    });
                }
                _ => {
                    return Err(crate::usage_error(anyhow::anyhow!(
                        "only bridge networks can be combined: --network {} --network {more} mixes in a mode (tsi, none)",
                        self.network[0]
                    )))
                }
            }
        }
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.extend(parse_publish(p).map_err(|e| crate::usage_error(e.into()))?);
        }
        let dns = self
            .dns
            .iter()
            .map(|d| parse_dns(d))
            .collect::<Result<_, _>>()
            .map_err(|e| crate::usage_error(e.into()))?;
        let net = BoxNet {
            mode,
            ports,
            dns,
            network,
            ip: self.ip,
            aliases: self.network_alias.clone(),
            extra,
            ..BoxNet::default()
        };
        if net.mode != NetMode::Bridge && (net.ip.is_some() || !net.aliases.is_empty()) {
            return Err(crate::usage_error(
                a3s_runtime::network::NetError::BridgeOnly.into(),
            ));
        }
        Ok(net)
    }
}

/// `a3s-box port BOX`.
#[derive(Debug, Args)]
pub(crate) struct PortArgs {
    /// Box (name or id).
    pub(crate) name: String,
}

/// Prints `GUEST/PROTO -> IP:HOST` per published port.
pub(crate) fn port(a: &PortArgs) -> anyhow::Result<crate::ExitStatus> {
    let home = a3s_runtime::A3sHome::from_env()?;
    let ports = a3s_runtime::engine::Engine::open(&home)
        .ports(&a.name)
        .map_err(crate::commands::engine_error)?;
    for p in &ports {
        crate::output::line(&p.to_string())?;
    }
    Ok(crate::ExitStatus::Success)
}

/// The hint of a network error in a chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    cause
        .downcast_ref::<a3s_runtime::network::NetError>()
        .and_then(a3s_runtime::network::NetError::hint)
}
