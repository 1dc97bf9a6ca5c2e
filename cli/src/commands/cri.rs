//! `a3s-box cri serve`: the Kubernetes CRI server (kubelet, crictl, critest) on a Unix socket.

use anyhow::Context;
use clap::{Args, Subcommand};

use a3s_cri::{ListenAddr, ServeError, ServeOptions};
use a3s_image::registry::RegistryOptions;
use a3s_runtime::engine::Engine;

use crate::{usage_error, ExitStatus};

#[derive(Debug, Subcommand)]
pub(crate) enum CriCommand {
    /// Serve CRI v1 (RuntimeService and ImageService) until SIGTERM or SIGINT.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The socket: unix:///absolute/path (created owner-only; a stale socket is replaced).
    #[arg(long, default_value = "unix:///run/a3s-box/cri.sock")]
    pub(crate) listen: String,
    /// A registry (host[:port]) that image pulls may reach over plain HTTP, besides loopback
    /// ones; repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub(crate) insecure_registries: Vec<String>,
    /// Send pulls of REGISTRY's images to MIRROR (host[:port]) while they keep their names,
    /// like containerd's hosts.toml mirrors; repeat for several registries.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=MIRROR", value_parser = parse_mirror)]
    pub(crate) mirrors: Vec<(String, String)>,
    /// Where the streaming server behind `crictl exec`, `attach` and `port-forward` listens
    /// (HTTP, no TLS: keep it on loopback); port 0 picks a free port.
    #[arg(
        long = "streaming-address",
        value_name = "IP:PORT",
        default_value = "127.0.0.1:0"
    )]
    pub(crate) streaming: std::net::SocketAddr,
    /// Where the node's CNI network configuration is: the first (lexically) .conf, .conflist
    /// or .json file there gives pods their network namespace, address and port mappings.
    /// With none there, pods get user networking (hostPorts on 127.0.0.1).
    #[arg(long = "cni-conf-dir", value_name = "DIR", default_value = a3s_runtime::network::cni::DEFAULT_CONF_DIR)]
    pub(crate) cni_conf_dir: std::path::PathBuf,
    /// Where CNI plugin binaries are looked up, in order (DIR[:DIR...]).
    #[arg(long = "cni-bin-dir", value_name = "DIR[:DIR...]", default_value = a3s_runtime::network::cni::DEFAULT_BIN_DIRS)]
    pub(crate) cni_bin_dir: String,
}

fn parse_mirror(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((r, m)) if !r.is_empty() && !m.is_empty() && !m.contains('/') => {
            Ok((r.to_owned(), m.to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not REGISTRY=MIRROR (e.g. gcr.io=127.0.0.1:5000; the mirror is host[:port])"
        )),
    }
}

pub(crate) fn run(cmd: CriCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        CriCommand::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitStatus> {
    let listen: ListenAddr = a
        .listen
        .parse()
        .map_err(|e| usage_error(anyhow::Error::new(e)))?;
    let home = a3s_runtime::A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    let engine = Engine::open(&home).with_cni(a3s_runtime::network::cni::CniNode {
        conf_dir: a.cni_conf_dir,
        bin_dirs: a3s_runtime::network::cni::parse_bin_dirs(&a.cni_bin_dir),
    });
    // The server's warnings (a re-attach that failed, a container log it cannot write, a pod
    // VM slow to answer) go to its stderr, which a node's journal keeps.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let opts = ServeOptions {
        listen,
        registries: RegistryOptions {
            insecure_registries: a.insecure_registries,
            credentials: None,
            mirrors: a.mirrors,
        },
        streaming: a.streaming,
    };
    let served = runtime.block_on(a3s_cri::serve(engine, opts, |addr, streaming| {
        eprintln!("CRI listening on {addr} (streaming on http://{streaming})");
    }));
    match served {
        Ok(()) => {}
        // A bad or busy socket path is the caller's to fix.
        Err(ServeError::Listen(e)) => return Err(usage_error(e.into())),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitStatus::Success)
}
