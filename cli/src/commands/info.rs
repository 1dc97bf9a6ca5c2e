use std::path::Path;

use a3s_attestation::hw::GuestInterfaces;
use a3s_vmm::host;
use serde::Serialize;

use crate::args::{Format, FormatArgs};
use crate::output;
use crate::ExitStatus;

#[derive(Serialize)]
struct Info {
    version: &'static str,
    kernel: Option<String>,
    home: Option<String>,
    kvm: a3s_vmm::accel::KvmKind,
    accel: Option<&'static str>,
    accel_reason: String,
    qemu_version: Option<String>,
    sev_snp_guest: GuestInterfaces,
    sev_host_device: bool,
    sev_snp_host_enabled: bool,
    network: NetworkSupport,
    /// Whether the host's KSM merges plain boxes' identical pages.
    memory_sharing: a3s_vmm::host_pages::Ksm,
}

/// Network modes this host can run (issue 9).
#[derive(Serialize)]
struct NetworkSupport {
    tsi: bool,
    none: bool,
    bridge: bool,
    nftables: bool,
    /// A `tsi` box's published ports can come in over a private link (else passt holds them).
    publish_link: bool,
    /// What carries a `tsi` box's outbound traffic, and why.
    forwarder: ForwarderInfo,
    probe: a3s_runtime::network::HostSupport,
}

/// The forwarder a `tsi` box would get now; none, with the error, for a bad override.
#[derive(Serialize)]
struct ForwarderInfo {
    forwarder: Option<a3s_vmm::passt::Forwarder>,
    reason: String,
}

impl ForwarderInfo {
    fn probe() -> Self {
        match a3s_vmm::passt::choose() {
            Ok(c) => Self {
                forwarder: Some(c.forwarder),
                reason: c.reason,
            },
            Err(e) => Self {
                forwarder: None,
                reason: e.to_string(),
            },
        }
    }

    fn text(&self) -> String {
        let name = self
            .forwarder
            .map_or("none", a3s_vmm::passt::Forwarder::name);
        format!("{name} ({})", self.reason)
    }
}

/// `ok` when nothing in `needs` is missing, else `otherwise` with what is.
fn needs_text(needs: &[(bool, &str)], ok: &str, otherwise: &str) -> String {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(have, _)| !have)
        .map(|(_, what)| *what)
        .collect();
    if missing.is_empty() {
        ok.into()
    } else {
        format!("{otherwise} (missing: {})", missing.join(", "))
    }
}

fn bridge_text(p: &a3s_runtime::network::HostSupport) -> String {
    needs_text(
        &[
            (p.net_admin, "CAP_NET_ADMIN (root)"),
            (p.bridge, "bridge module"),
            (p.tun, "/dev/net/tun"),
        ],
        "yes",
        "no",
    )
}

fn publish_text(p: &a3s_runtime::network::HostSupport) -> String {
    needs_text(
        &[
            (p.net_admin, "CAP_NET_ADMIN (root)"),
            (p.tun, "/dev/net/tun"),
        ],
        "private link",
        "forwarder",
    )
}

fn ksm_text(k: a3s_vmm::host_pages::Ksm) -> String {
    use a3s_vmm::host_pages::Ksm;
    match k {
        Ksm::On => "on (plain boxes share identical pages; confidential boxes never)".into(),
        Ksm::Off => {
            "off (echo 1 > /sys/kernel/mm/ksm/run lets plain boxes share identical pages)".into()
        }
        Ksm::Unavailable => "not in this kernel".into(),
    }
}

pub(crate) fn run(args: &FormatArgs) -> anyhow::Result<ExitStatus> {
    let virt = host::probe();
    let (accel, accel_reason) = match &virt.accel {
        Ok(c) => (Some(c.accel.as_str()), c.reason.clone()),
        Err(e) => (None, e.clone()),
    };
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
        home: a3s_runtime::A3sHome::from_env()
            .ok()
            .map(|h| h.root().display().to_string()),
        kvm: virt.kvm,
        accel,
        accel_reason,
        qemu_version: virt.qemu_version,
        sev_snp_guest: GuestInterfaces::probe(Path::new("/")),
        sev_host_device: virt.sev_host_device,
        sev_snp_host_enabled: virt.sev_snp_host_enabled,
        network: {
            let probe = a3s_runtime::network::HostSupport::probe();
            NetworkSupport {
                tsi: probe.tsi,
                none: true,
                bridge: probe.bridge_ok(),
                nftables: probe.nftables,
                publish_link: probe.inbound_link_ok(),
                forwarder: ForwarderInfo::probe(),
                probe,
            }
        },
        memory_sharing: a3s_vmm::host_pages::Ksm::probe(Path::new("/")),
    };
    match args.format {
        Format::Json => output::json(&info)?,
        Format::Text => {
            let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
            let kvm = serde_json::to_value(info.kvm)?;
            output::rows(&[
                ("a3s-box", info.version.to_owned()),
                ("kernel", info.kernel.unwrap_or_else(|| "unknown".into())),
                ("home", info.home.unwrap_or_else(|| "unset".into())),
                ("kvm", kvm.as_str().unwrap_or("unknown").to_owned()),
                (
                    "accelerator",
                    format!("{} ({})", info.accel.unwrap_or("none"), info.accel_reason),
                ),
                (
                    "qemu",
                    info.qemu_version
                        .unwrap_or_else(|| format!("{} not found", host::QEMU_BINARY)),
                ),
                (
                    "sev-snp guest (/dev/sev-guest)",
                    yes_no(info.sev_snp_guest.sev_guest_device),
                ),
                (
                    "sev-snp guest (configfs-tsm)",
                    yes_no(info.sev_snp_guest.configfs_tsm),
                ),
                ("sev host device (/dev/sev)", yes_no(info.sev_host_device)),
                (
                    "sev-snp host enabled (kvm_amd)",
                    yes_no(info.sev_snp_host_enabled),
                ),
                ("network tsi", yes_no(info.network.tsi)),
                ("network none", yes_no(info.network.none)),
                ("network bridge", bridge_text(&info.network.probe)),
                ("nftables (isolation, NAT)", yes_no(info.network.nftables)),
                ("outbound (tsi)", info.network.forwarder.text()),
                ("published ports (tsi)", publish_text(&info.network.probe)),
                ("memory sharing (KSM)", ksm_text(info.memory_sharing)),
            ])?;
        }
    }
    Ok(ExitStatus::Success)
}
