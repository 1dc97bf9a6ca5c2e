//! configfs-tsm reports (Linux 6.7+, Documentation/ABI/testing/configfs-tsm): create a report
//! directory, write `privlevel` and `inblob`, read `outblob` and `auxblob`, and check that
//! `generation` did not change while reading (another writer would have raced us).

use std::fs;
use std::path::{Path, PathBuf};

use super::HwError;
use crate::report::trustee::CertType;

/// Host-supplied certificates (`auxblob`), by type.
pub(crate) type CertChain = Vec<(CertType, Vec<u8>)>;

/// A configfs-tsm report directory, removed on drop.
#[derive(Debug)]
struct ReportDir(PathBuf);

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HwError + '_ {
    move |source| HwError::Tsm {
        path: path.display().to_string(),
        source,
    }
}

fn read_generation(dir: &Path) -> Result<String, HwError> {
    let p = dir.join("generation");
    Ok(fs::read_to_string(&p).map_err(io(&p))?.trim().to_owned())
}

/// Gets a report and the host-supplied certificates through configfs-tsm under `report_root`.
pub(crate) fn report(
    report_root: &Path,
    report_data: &[u8; 64],
    vmpl: u32,
) -> Result<(Vec<u8>, CertChain), HwError> {
    let name = format!(
        "a3s-{}-{}",
        std::process::id(),
        std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let dir = report_root.join(name);
    fs::create_dir(&dir).map_err(io(&dir))?;
    let dir = ReportDir(dir);
    let path = |f: &str| dir.0.join(f);

    let provider = fs::read_to_string(path("provider")).map_err(io(&path("provider")))?;
    if provider.trim() != "sev_guest" {
        return Err(HwError::WrongProvider(provider.trim().to_owned()));
    }
    fs::write(path("privlevel"), vmpl.to_string()).map_err(io(&path("privlevel")))?;
    fs::write(path("inblob"), report_data).map_err(io(&path("inblob")))?;
    let before = read_generation(&dir.0)?;
    let report = fs::read(path("outblob")).map_err(io(&path("outblob")))?;
    let aux = match fs::read(path("auxblob")) {
        Ok(b) => b,
        // No certificates from the host is normal on upstream kernels.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&path("auxblob"))(e)),
    };
    if read_generation(&dir.0)? != before {
        return Err(HwError::TsmRace);
    }
    let certs = if aux.is_empty() {
        Vec::new()
    } else {
        super::certtable::parse(&aux)?
    };
    Ok((report, certs))
}
