use crate::args::{Format, FormatArgs};
use crate::output;
use crate::ExitStatus;

#[derive(serde::Serialize)]
struct Version {
    version: &'static str,
    commit: Option<&'static str>,
    target: &'static str,
}

pub(crate) fn run(args: &FormatArgs) -> anyhow::Result<ExitStatus> {
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: option_env!("A3S_BOX_COMMIT"),
        target: std::env::consts::ARCH,
    };
    match args.format {
        Format::Json => output::json(&v)?,
        Format::Text => {
            let commit = v.commit.map(|c| format!(" ({c})")).unwrap_or_default();
            output::line(&format!("a3s-box {}{commit} {}-linux", v.version, v.target))?;
        }
    }
    Ok(ExitStatus::Success)
}
