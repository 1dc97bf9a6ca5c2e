//! Box networking flags and `a3s-box port` (issue 9).

use clap::Args;

use a3s_runtime::network::{parse_dns, parse_publish, BoxNet, NetMode};

/// `--network`, `-p`, `--dns` on `create`/`run`.
#[derive(Debug, Args)]
pub(crate) struct NetArgs {
    /// Network mode: tsi (default: outbound via the host, published ports) or none (no interface).
    #[arg(long, value_name = "MODE")]
    pub(crate) network: Option<String>,
    /// Publish a guest TCP port on host 127.0.0.1 (HOST:GUEST[/tcp]; HOST 0 picks a free port).
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    pub(crate) publish: Vec<String>,
    /// DNS server for the box's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "IP")]
    pub(crate) dns: Vec<String>,
}

impl NetArgs {
    /// The validated settings (host ports are resolved by the runtime).
    pub(crate) fn box_net(&self) -> anyhow::Result<BoxNet> {
        let mode = match &self.network {
            Some(m) => NetMode::parse(m).map_err(|e| crate::usage_error(e.into()))?,
            None => NetMode::default(),
        };
        let ports = self
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<_, _>>()
            .map_err(|e| crate::usage_error(e.into()))?;
        let dns = self
            .dns
            .iter()
            .map(|d| parse_dns(d))
            .collect::<Result<_, _>>()
            .map_err(|e| crate::usage_error(e.into()))?;
        Ok(BoxNet { mode, ports, dns })
    }
}

/// `a3s-box port BOX`.
#[derive(Debug, Args)]
pub(crate) struct PortArgs {
    /// Box (name or id).
    pub(crate) name: String,
}

/// Prints `GUEST/tcp -> 127.0.0.1:HOST` per published port.
pub(crate) fn port(a: &PortArgs) -> anyhow::Result<crate::ExitStatus> {
    let home = a3s_runtime::A3sHome::from_env()?;
    let boxes = a3s_runtime::boxes::Boxes::open(&home);
    let rec = boxes.find(&a.name)?;
    let net = BoxNet::load(&boxes.box_dir(&rec.id))?;
    for p in &net.ports {
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
