//! Image commands: pull, push, images, rmi, tag, inspect, history, save, load, login, logout,
//! prune, key generate, sign, verify. Each calls `a3s_image` and formats the result.

pub(crate) mod args;
pub(crate) mod local;
mod progress;
mod sign;
mod transfer;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use a3s_image::cosign::{PublicKey, SignaturePolicy};
use a3s_image::registry::{CredentialStore, NoProgress, Progress, RegistryOptions};
use a3s_image::{ImageRef, ImageStore};
use a3s_runtime::A3sHome;
use anyhow::Context;

use self::args::{ImageCommand, ImageSub, KeySub, RegistryArgs};
use crate::{usage_error, ExitCodeError, ExitStatus};

/// Runs one image command.
pub(crate) fn run(cmd: ImageCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImageCommand::Pull(a) | ImageCommand::Image(ImageSub::Pull(a)) => transfer::pull(&a),
        ImageCommand::Push(a) | ImageCommand::Image(ImageSub::Push(a)) => transfer::push(&a),
        ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => local::list(&a),
        ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => local::rmi(&a),
        ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => local::tag(&a),
        ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => local::save(&a),
        ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => local::load(&a),
        ImageCommand::Login(a) => local::login(&a),
        ImageCommand::Logout(a) => local::logout(&a),
        ImageCommand::Image(ImageSub::Inspect(a)) => local::inspect(&a),
        ImageCommand::Image(ImageSub::History(a)) => local::history(&a),
        ImageCommand::Image(ImageSub::Prune(a)) => local::prune(&a),
        ImageCommand::Image(ImageSub::Sign(a)) => sign::sign(&a),
        ImageCommand::Image(ImageSub::Verify(a)) => sign::verify(&a),
        ImageCommand::Key(KeySub::Generate(a)) => sign::key_generate(&a),
    }
}

pub(crate) fn home() -> anyhow::Result<A3sHome> {
    A3sHome::from_env().map_err(|e| usage_error(e.into()))
}

pub(super) fn store() -> anyhow::Result<ImageStore> {
    let home = home()?;
    Ok(ImageStore::open(home.root().join("images"))?)
}

pub(crate) fn credentials() -> anyhow::Result<CredentialStore> {
    Ok(CredentialStore::new(home()?.root().join("auth.json")))
}

pub(crate) fn parse_ref(s: &str) -> anyhow::Result<ImageRef> {
    s.parse::<ImageRef>().map_err(|e| usage_error(e.into()))
}

pub(crate) fn registry_options(
    reference: &ImageRef,
    args: &RegistryArgs,
) -> anyhow::Result<RegistryOptions> {
    Ok(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        credentials: credentials()?.get(reference.registry())?,
        mirrors: Vec::new(),
    })
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn progress(quiet: bool, verb: &'static str) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else {
        Box::new(progress::Bars::new(verb))
    }
}

pub(super) fn read_key_file(path: &Path) -> anyhow::Result<String> {
    crate::input::read_text_limited(path, crate::input::KEY_MAX_BYTES, "key file")
}

pub(crate) fn public_key(path: &Path) -> anyhow::Result<PublicKey> {
    PublicKey::from_pem(&read_key_file(path)?)
        .with_context(|| format!("reading public key {}", path.display()))
        .map_err(usage_error)
}

/// COSIGN_PASSWORD, else a prompt on the terminal (twice when `confirm`).
pub(super) fn password(confirm: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Some(p) = std::env::var_os("COSIGN_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(p.to_string_lossy().into_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage_error(anyhow::anyhow!(
            "no password: set COSIGN_PASSWORD (no terminal to prompt on)"
        )));
    }
    let p = zeroize::Zeroizing::new(rpassword::prompt_password(
        "Enter password for private key: ",
    )?);
    if confirm {
        let again = zeroize::Zeroizing::new(rpassword::prompt_password(
            "Enter password for private key again: ",
        )?);
        if *again != *p {
            return Err(usage_error(anyhow::anyhow!("passwords do not match")));
        }
    }
    Ok(p)
}

pub(crate) fn signature_policy(explicit: Option<&PathBuf>) -> anyhow::Result<SignaturePolicy> {
    match explicit {
        Some(p) => Ok(SignaturePolicy::load(p, true).map_err(|e| usage_error(e.into()))?),
        None => {
            let default = home()?.root().join("policy").join("signatures.toml");
            Ok(SignaturePolicy::load(&default, false).map_err(|e| usage_error(e.into()))?)
        }
    }
}

/// Marks a verification verdict "no" (exit 1).
pub(super) fn verdict_no(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ExitCodeError { code: 1, error: e })
}

/// Hints from image errors anywhere in the chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<a3s_image::StoreError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::registry::RegistryError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::pull::TransferError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::cosign::VerifyError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::cosign::KeyError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::archive::ArchiveError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::registry::auth::AuthFileError>() {
        e.hint()
    } else {
        None
    }
}
