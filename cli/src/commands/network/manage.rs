//! `a3s-box network create|ls|inspect|rm|connect|disconnect`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use a3s_runtime::engine::{Engine, EngineError};
use a3s_runtime::network::attach::ConnectOptions;
use a3s_runtime::network::{CreateNetwork, Isolation, NetError, Network, Policy};
use a3s_runtime::A3sHome;

use crate::commands::{engine_error, EngineResult};
use crate::list_format::{print_rows, ListFormat};
use crate::{output, usage_error, ExitStatus};

#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create a bridge network (boxes join it with `run --network NAME`).
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON: subnet, gateway, bridge, isolation, policy, boxes and addresses.
    Inspect(InspectArgs),
    /// Remove networks (refused while boxes are attached, unless --force detaches them).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Attach a stopped box to a network (takes effect at its next boot; a box on a bridge
    /// network already gets one more NIC, with its own address, on this one).
    Connect(ConnectArgs),
    /// Detach a stopped box from a network (with no network left, it boots with none until
    /// connected again).
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Subnet in CIDR form (default: a free /24 of 10.88.0.0/16).
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// The host's address on the bridge (default: the subnet's first address).
    #[arg(long, value_name = "IP")]
    gateway: Option<String>,
    /// none: peers reach each other; strict: they cannot (gateway and outbound still can);
    /// custom: rules from --policy.
    #[arg(long, default_value = "none", value_name = "MODE")]
    isolation: String,
    /// Policy for --isolation custom (TOML or JSON: default and [[rules]] with from, to, ports,
    /// protocol, action).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Network name.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    format: crate::list_format::ListFormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Networks.
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Detach attached boxes first (a running one loses its link immediately).
    #[arg(short, long)]
    force: bool,
    /// Networks.
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Another name the network's DNS answers with the box's address there (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// A fixed address on this network (inside its subnet).
    #[arg(long, value_name = "IP")]
    ip: Option<std::net::Ipv4Addr>,
    /// Network.
    network: String,
    /// Box (name or id).
    r#box: String,
}

#[derive(Debug, Args)]
pub(crate) struct DisconnectArgs {
    /// Network.
    network: String,
    /// Box (name or id).
    r#box: String,
}

/// What `inspect` shows (a stable JSON contract).
#[derive(Serialize)]
struct View {
    name: String,
    id: String,
    subnet: String,
    gateway: String,
    bridge: String,
    isolation: &'static str,
    policy: Option<Policy>,
    /// How boxes reach beyond the network.
    outbound: &'static str,
    created_at: String,
    boxes: Vec<BoxView>,
}

#[derive(Serialize)]
struct BoxView {
    id: String,
    name: String,
    ip: String,
}

fn view(n: &Network) -> View {
    View {
        name: n.name.clone(),
        id: n.id.clone(),
        subnet: n.subnet.to_string(),
        gateway: n.gateway.to_string(),
        bridge: n.bridge(),
        isolation: n.isolation.as_str(),
        policy: n.policy.clone(),
        outbound: if a3s_runtime::network::HostSupport::probe().nftables {
            "nat (nftables masquerade through the host)"
        } else {
            "internal (nftables missing: no NAT, the gateway only)"
        },
        created_at: n.created_at.clone(),
        boxes: n
            .endpoints
            .iter()
            .map(|(id, e)| BoxView {
                id: id.clone(),
                name: e.name.clone(),
                ip: e.ip.to_string(),
            })
            .collect(),
    }
}

/// Usage errors (bad input) exit 2; the rest 125.
fn classify(e: NetError) -> anyhow::Error {
    match e {
        NetError::BadNetworkName(_)
        | NetError::Subnet { .. }
        | NetError::Overlap { .. }
        | NetError::Gateway { .. }
        | NetError::CustomWithoutPolicy
        | NetError::PolicyWithoutCustom
        | NetError::Policy(_) => usage_error(e.into()),
        other => other.into(),
    }
}

pub(crate) fn run(cmd: NetworkCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let engine = Engine::open(&home);
    match cmd {
        NetworkCommand::Create(a) => {
            let isolation =
                Isolation::parse(&a.isolation).map_err(|m| usage_error(anyhow::anyhow!(m)))?;
            let policy = match &a.policy {
                Some(p) => Some(Policy::load(p).map_err(|e| classify(e.into()))?),
                None => None,
            };
            let req = CreateNetwork {
                name: a.name.clone(),
                subnet: a.subnet.clone(),
                gateway: a.gateway.clone(),
                isolation,
                policy,
            };
            match engine.create_network(&req) {
                Ok(n) => {
                    output::line(&n.name)?;
                    Ok(ExitStatus::Success)
                }
                Err(EngineError::Net(e)) => Err(classify(e)),
                Err(e) => Err(engine_error(e)),
            }
        }
        NetworkCommand::Ls(a) => {
            let all = engine.list_networks().engine()?;
            if a.quiet {
                for n in &all {
                    output::line(&n.name)?;
                }
                return Ok(ExitStatus::Success);
            }
            match &a.format.format {
                ListFormat::Json | ListFormat::Template { .. } => {
                    let internal = !a3s_runtime::network::HostSupport::probe().nftables;
                    let rows: Vec<_> = all
                        .iter()
                        .map(|n| crate::docker::network_row(n, internal))
                        .collect();
                    print_rows(&a.format.format, &rows, &[("ID", "NETWORK ID")])?;
                }
                ListFormat::Table => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "{:<20}  {:<18}  {:<15}  {:<9}  BOXES",
                        "NAME", "SUBNET", "GATEWAY", "ISOLATION"
                    )?;
                    for n in &all {
                        writeln!(
                            out,
                            "{:<20}  {:<18}  {:<15}  {:<9}  {}",
                            n.name,
                            n.subnet.to_string(),
                            n.gateway.to_string(),
                            n.isolation.as_str(),
                            n.endpoints.len()
                        )?;
                    }
                }
            }
            Ok(ExitStatus::Success)
        }
        NetworkCommand::Inspect(a) => {
            let views = a
                .names
                .iter()
                .map(|n| engine.inspect_network(n).engine().map(|n| view(&n)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            output::json(&views)?;
            Ok(ExitStatus::Success)
        }
        NetworkCommand::Rm(a) => {
            let mut failed = None;
            for name in &a.names {
                match engine.remove_network(name, a.force) {
                    Ok(_) => output::line(name)?,
                    Err(e) => {
                        let e = engine_error(e);
                        if a.names.len() == 1 {
                            return Err(e);
                        }
                        let _ = writeln!(std::io::stderr(), "error: {e}");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                Some(_) => Err(anyhow::Error::new(crate::ExitCodeError {
                    code: 125,
                    error: anyhow::anyhow!("some networks were not removed"),
                })),
                None => Ok(ExitStatus::Success),
            }
        }
        NetworkCommand::Connect(a) => {
            let opts = ConnectOptions {
                aliases: a.alias.clone(),
                ip: a.ip,
            };
            let (rec, ip) = match engine.connect(&a.network, &a.r#box, &opts) {
                Ok(r) => r,
                Err(EngineError::Net(e @ NetError::Alias(_))) => return Err(usage_error(e.into())),
                Err(e) => return Err(engine_error(e)),
            };
            output::line(&format!("{} {ip}", rec.name))?;
            Ok(ExitStatus::Success)
        }
        NetworkCommand::Disconnect(a) => {
            let rec = engine.disconnect(&a.network, &a.r#box).engine()?;
            output::line(&rec.name)?;
            Ok(ExitStatus::Success)
        }
    }
}
