//! Cosign keys and signatures: key generate, image sign, image verify.

use std::io::Write;
use std::path::Path;

use a3s_image::cosign::PrivateKey;
use a3s_runtime::engine::Engine;
use anyhow::Context;
use serde::Serialize;

use super::{
    args, home, parse_ref, password, public_key, read_key_file, registry_options, verdict_no,
};
use crate::args::Format;
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

pub(super) fn key_generate(a: &args::KeyGenArgs) -> anyhow::Result<ExitStatus> {
    let key_path = a.out_dir.join("cosign.key");
    let pub_path = a.out_dir.join("cosign.pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(usage_error(anyhow::anyhow!(
                "{} already exists; refusing to overwrite a key (choose another --out-dir)",
                p.display()
            )));
        }
    }
    fs_err::create_dir_all(&a.out_dir)?;
    let pw = password(true)?;
    let key = PrivateKey::generate();
    write_new(
        &key_path,
        key.to_encrypted_pem(pw.as_bytes()).as_bytes(),
        0o600,
    )?;
    write_new(&pub_path, key.public_key().to_pem().as_bytes(), 0o644)?;
    eprintln!("Private key written to {}", key_path.display());
    eprintln!("Public key written to {}", pub_path.display());
    Ok(ExitStatus::Success)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

pub(super) fn sign(a: &args::SignArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let pem = read_key_file(&a.key)?;
    let pw = password(false)?;
    let key = PrivateKey::from_pem(&pem, pw.as_bytes())
        .with_context(|| format!("reading private key {}", a.key.display()))
        .map_err(usage_error)?;
    let opts = registry_options(&reference, &a.registry)?;
    let (digest, tag) = Engine::open(&home()?)
        .sign_image(&reference, &opts, &key)
        .engine()?;
    eprintln!("Signed {} ({})", reference, digest);
    output::line(&format!("Pushed signature to {tag}"))?;
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct VerifyView {
    reference: String,
    digest: String,
    verified: bool,
    signer: Option<String>,
    signatures: usize,
    error: Option<String>,
}

pub(super) fn verify(a: &args::VerifyImageArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let key = public_key(&a.key)?;
    let opts = registry_options(&reference, &a.registry)?;
    let verdict = Engine::open(&home()?)
        .verify_image(&reference, &opts, key)
        .engine()?;
    let (view, err) = match verdict.verified {
        Ok((signer, signatures)) => (
            VerifyView {
                reference: reference.to_string(),
                digest: verdict.digest.to_string(),
                verified: true,
                signer: Some(signer),
                signatures,
                error: None,
            },
            None,
        ),
        Err(e) => (
            VerifyView {
                reference: reference.to_string(),
                digest: verdict.digest.to_string(),
                verified: false,
                signer: None,
                signatures: 0,
                error: Some(e.to_string()),
            },
            Some(e),
        ),
    };
    match a.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            if view.verified {
                output::line(&format!(
                    "Verified {} at {}: {} valid signature(s) by key {}",
                    view.reference,
                    view.digest,
                    view.signatures,
                    view.signer.as_deref().unwrap_or_default()
                ))?;
            }
        }
    }
    if let Some(e) = err {
        if a.format == Format::Json {
            return Ok(ExitStatus::Failure);
        }
        return Err(verdict_no(anyhow::Error::new(e)));
    }
    Ok(ExitStatus::Success)
}
