//! `a3s-box simulator info` and `a3s-box simulator kds serve`.

use std::sync::Arc;

use a3s_runtime::A3sHome;
use a3s_simulator::Simulator;
use anyhow::Context;
use serde::Serialize;

use crate::args::{Format, FormatArgs};
use crate::output;
use crate::{usage_error, ExitStatus};

#[derive(Serialize)]
struct ChipView {
    chip_id: String,
    tcb: a3s_attestation::report::Tcb,
    firmware: String,
}

#[derive(Serialize)]
struct ProductView {
    product: &'static str,
    ark_fingerprint: String,
    ask_fingerprint: String,
    chips: Vec<ChipView>,
}

#[derive(Serialize)]
struct InfoView {
    simulated: bool,
    home: String,
    default_product: &'static str,
    products: Vec<ProductView>,
}

fn open() -> anyhow::Result<(A3sHome, Simulator)> {
    let home = A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    let sim = Simulator::open_existing(home.root())
        .context("opening the simulator")?
        .ok_or_else(|| {
            usage_error(anyhow::anyhow!(
                "no simulator in {}: create one with `a3s-box attest report --simulate ...`",
                home.root().display()
            ))
        })?;
    Ok((home, sim))
}

pub(crate) fn info(args: &FormatArgs) -> anyhow::Result<ExitStatus> {
    let (home, sim) = open()?;
    let info = sim.info();
    let view = InfoView {
        simulated: true,
        home: home.root().display().to_string(),
        default_product: info.product.as_str(),
        products: info
            .products
            .iter()
            .map(|p| ProductView {
                product: p.product.as_str(),
                ark_fingerprint: p.ark_fingerprint.to_string(),
                ask_fingerprint: p.ask_fingerprint.to_string(),
                chips: p
                    .chips
                    .iter()
                    .map(|c| ChipView {
                        chip_id: c.id.kds_hex(p.product),
                        tcb: c.config.tcb,
                        firmware: format!(
                            "{}.{}.{}",
                            c.config.firmware.0, c.config.firmware.1, c.config.firmware.2
                        ),
                    })
                    .collect(),
            })
            .collect(),
    };
    match args.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            output::line(&format!(
                "simulated AMD secure processor (not AMD) in {}",
                view.home
            ))?;
            for p in &view.products {
                output::line(&format!("{}:", p.product))?;
                output::rows(&[
                    ("  ark sha256", p.ark_fingerprint.clone()),
                    ("  ask sha256", p.ask_fingerprint.clone()),
                ])?;
                for c in &p.chips {
                    output::line(&format!(
                        "  chip {} tcb {} firmware {}",
                        c.chip_id, c.tcb, c.firmware
                    ))?;
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub(crate) fn serve_kds(listen: std::net::SocketAddr) -> anyhow::Result<ExitStatus> {
    let (_, sim) = open()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "serving simulated KDS on http://{} (A3S_KDS_URL=http://{0})",
            listener.local_addr()?
        );
        a3s_simulator::kds::serve(listener, Arc::new(sim)).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitStatus::Success)
}
