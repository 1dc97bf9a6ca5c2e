//! CRI ImageService over the engine's image store. Pulls and removals go through the
//! engine (audited; the home's signature policy applies to every CRI pull).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use a3s_image::cosign::SignaturePolicy;
use a3s_image::pull::PullOptions;
use a3s_image::registry::{CredentialStore, Credentials, NoProgress, RegistryOptions};
use a3s_image::ImageRef;
use a3s_runtime::engine::Engine;
use base64::Engine as _;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::error::{self, chain};
use crate::images;

/// The ImageService of one engine.
#[derive(Clone, Debug)]
pub(crate) struct Images {
    engine: Engine,
    /// Plain-HTTP registries and mirrors (credentials are added per pull).
    registries: RegistryOptions,
}

impl Images {
    pub(crate) fn new(engine: Engine, registries: RegistryOptions) -> Self {
        Self { engine, registries }
    }

    /// Runs blocking store work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(engine))
            .await
            .map_err(|e| error::join(&e))?
    }
}

fn store_status(e: &a3s_image::StoreError) -> Status {
    Status::internal(format!("reading the image store: {}", chain(e)))
}

fn spec_image(spec: Option<&cri::ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()).filter(|s| !s.is_empty()) {
        Some(s) => Ok(s.to_owned()),
        None => Err(Status::invalid_argument(
            "the request names no image: set ImageSpec.image to a reference or an image id",
        )),
    }
}

/// Credentials from the AuthConfig kubelet passes (user and password, or `auth` =
/// base64 `user:password`); `None` when it passes none.
fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Option<Credentials>, Status> {
    let Some(a) = auth else { return Ok(None) };
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Some(Credentials::new(&a.username, &a.password)));
    }
    if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| {
                Status::invalid_argument("AuthConfig.auth is not base64 of user:password")
            })?;
        let text = String::from_utf8(raw)
            .map_err(|_| Status::invalid_argument("AuthConfig.auth is not UTF-8 user:password"))?;
        let Some((user, pass)) = text.split_once(':') else {
            return Err(Status::invalid_argument(
                "AuthConfig.auth must be base64 of user:password",
            ));
        };
        return Ok(Some(Credentials::new(user, pass)));
    }
    if !a.identity_token.is_empty() || !a.registry_token.is_empty() {
        return Err(Status::unimplemented(
            "identity and registry tokens are not supported for pulls: pass a user name and \
             password (imagePullSecrets of type kubernetes.io/dockerconfigjson with auth)",
        ));
    }
    Ok(None)
}

impl Images {
    fn pull_blocking(
        engine: &Engine,
        reference: &ImageRef,
        creds: Option<Credentials>,
        mut registry: RegistryOptions,
    ) -> Result<String, Status> {
        let root = engine.home().root().to_path_buf();
        // No AuthConfig: the credentials of `a3s-box login`, as the CLI uses.
        let credentials = match creds {
            Some(c) => Some(c),
            None => CredentialStore::new(root.join("auth.json"))
                .get(reference.registry())
                .map_err(|e| Status::internal(chain(&e)))?,
        };
        let policy_path: PathBuf = root.join("policy").join("signatures.toml");
        let policy = SignaturePolicy::load(&policy_path, false).map_err(|e| {
            Status::failed_precondition(format!(
                "the signature policy {} cannot be used: {}",
                policy_path.display(),
                chain(&e)
            ))
        })?;
        registry.credentials = credentials;
        let opts = PullOptions {
            registry,
            policy,
            verify_keys: Vec::new(),
            skip_unpack: false,
        };
        let pulled = engine
            .pull(reference, &opts, &NoProgress)
            .map_err(|e| error::status(&e))?;
        // The pull itself succeeded (and confidential pods never use the erofs): a failure
        // here is said, and the first create reports it again with its cause.
        if let Err(e) = engine.prepare_filesystem(&pulled.image) {
            eprintln!(
                "warning: building the root filesystem of {reference}: {}",
                chain(&e)
            );
        }
        Ok(pulled.image.digest.to_string())
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let wanted = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let images = self
            .blocking(move |engine| {
                let store = engine.image_store().map_err(|e| error::status(&e))?;
                let list = match wanted {
                    Some(key) => images::find(&store, &key)
                        .map_err(|e| store_status(&e))?
                        .into_iter()
                        .collect(),
                    None => images::all(&store).map_err(|e| store_status(&e))?,
                };
                let mut out = Vec::new();
                for i in &list {
                    let size = unpacked_size(&store, &i.id);
                    out.push(images::to_cri(i, size));
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let key = spec_image(req.image.as_ref())?;
        let verbose = req.verbose;
        let resp = self
            .blocking(move |engine| {
                let store = engine.image_store().map_err(|e| error::status(&e))?;
                // An image that is not there is an empty answer, not an error (CRI).
                let Some(found) = images::find(&store, &key).map_err(|e| store_status(&e))? else {
                    return Ok(cri::ImageStatusResponse::default());
                };
                let manifest = store.manifest(&found.id).map_err(|e| store_status(&e))?;
                let config = store.config_file(&manifest).map_err(|e| store_status(&e))?;
                let image_config = a3s_image::ImageConfig::from(&config);
                let size = unpacked_size(&store, &found.id);
                let mut image = images::to_cri(&found, size);
                let (uid, username) = images::user_of(image_config.user.as_deref());
                image.uid = uid.map(|value| cri::Int64Value { value });
                image.username = username;
                let mut info = std::collections::HashMap::new();
                if verbose {
                    let text = serde_json_string(&image_config)?;
                    info.insert("info".to_owned(), text);
                }
                Ok(cri::ImageStatusResponse {
                    image: Some(image),
                    info,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = request.into_inner();
        let text = spec_image(req.image.as_ref())?;
        let reference: ImageRef = text.parse().map_err(|e| {
            Status::invalid_argument(format!("{text:?} is not an image reference: {e}"))
        })?;
        let creds = credentials(req.auth.as_ref())?;
        let registries = self.registries.clone();
        let image_ref = self
            .blocking(move |engine| Self::pull_blocking(&engine, &reference, creds, registries))
            .await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let key = spec_image(request.into_inner().image.as_ref())?;
        self.blocking(move |engine| {
            let store = engine.image_store().map_err(|e| error::status(&e))?;
            // Removing an image that is not there succeeds (CRI: idempotent).
            let Some(found) = images::find(&store, &key).map_err(|e| store_status(&e))? else {
                return Ok(());
            };
            // Every name of the image goes (kubelet removes by id); boxes still using it
            // refuse the removal.
            for (name, _) in &found.names {
                engine
                    .remove_image(name, false)
                    .map_err(|e| error::status(&e))?;
            }
            engine.prune_images(false).map_err(|e| error::status(&e))?;
            Ok(())
        })
        .await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let usage = self
            .blocking(|engine| {
                let store = engine.image_store().map_err(|e| error::status(&e))?;
                let dir = store.dir().to_path_buf();
                let used = a3s_image::store::disk_usage(&dir)
                    .map_err(|e| Status::internal(format!("measuring {}: {e}", dir.display())))?;
                let inodes = count_inodes(&dir)?;
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                Ok(cri::FilesystemUsage {
                    timestamp,
                    fs_id: Some(cri::FilesystemIdentifier {
                        mountpoint: dir.display().to_string(),
                    }),
                    used_bytes: Some(cri::UInt64Value {
                        value: used.allocated,
                    }),
                    inodes_used: Some(cri::UInt64Value { value: inodes }),
                })
            })
            .await?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        }))
    }
}

/// The unpacked size `crictl images` shows; an image whose size cannot be read is still
/// listed (size 0) and the reason goes to the server's log.
fn unpacked_size(store: &a3s_image::ImageStore, id: &a3s_image::Digest) -> u64 {
    match store.unpacked_size(id) {
        Ok((bytes, _)) => bytes,
        Err(e) => {
            eprintln!("warning: size of image {id}: {}", chain(&e));
            0
        }
    }
}

fn serde_json_string(config: &a3s_image::ImageConfig) -> Result<String, Status> {
    // The same JSON `a3s-box image inspect` prints for the config.
    serde_json::to_string(config).map_err(|e| Status::internal(format!("encoding: {e}")))
}

/// Files and directories under `dir` (the inodes kubelet's image GC watches).
fn count_inodes(dir: &std::path::Path) -> Result<u64, Status> {
    let mut n = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Status::internal(format!("reading {}: {e}", d.display()))),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| Status::internal(format!("reading {}: {e}", d.display())))?;
            n += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_from_user_and_password_or_base64() {
        assert!(credentials(None).expect("none").is_none());
        let c = credentials(Some(&cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }))
        .expect("ok")
        .expect("some");
        assert_eq!(c.username, "u");
        let c = credentials(Some(&cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            ..Default::default()
        }))
        .expect("ok")
        .expect("some");
        assert_eq!(c.username, "alice");
    }

    #[test]
    fn bad_auth_is_refused_with_its_reason() {
        let e = credentials(Some(&cri::AuthConfig {
            auth: "!!!".into(),
            ..Default::default()
        }))
        .expect_err("not base64");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = credentials(Some(&cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("nocolon"),
            ..Default::default()
        }))
        .expect_err("no colon");
        assert!(e.message().contains("user:password"), "{}", e.message());
        let e = credentials(Some(&cri::AuthConfig {
            identity_token: "tok".into(),
            ..Default::default()
        }))
        .expect_err("token");
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }

    #[test]
    fn an_empty_image_spec_is_invalid() {
        assert_eq!(
            spec_image(None).expect_err("none").code(),
            tonic::Code::InvalidArgument
        );
        let blank = cri::ImageSpec {
            image: "  ".into(),
            ..Default::default()
        };
        assert!(spec_image(Some(&blank)).is_err());
    }
}
