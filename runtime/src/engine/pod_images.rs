//! A confidential pod's container images: only images on the pod's allow-list (fixed at
//! RunPodSandbox and on the VM's measured command line), sent as their registry blobs for
//! guest-init to verify and unpack itself (the stream of [`a3s_vmm::pod_image`]). The host's
//! unpacked copy of an image, which no attestation covers, never enters such a pod.
//!
//! Such a pod shares no directory with the host either, so its containers' CRI mounts
//! (kubelet's `/etc/hosts`, termination log, ConfigMaps, Secrets, tokens) are copies: each
//! host path is packed when the container is created and unpacked by guest-init inside the VM
//! ([`a3s_vmm::pod_image::GUEST_POD_MOUNT_IN`]), at most
//! [`a3s_vmm::pod_image::MAX_POD_MOUNT_BYTES`] of files each. Later changes on either side do
//! not cross: kubelet's updates of ConfigMaps and tokens do not reach the container, and
//! what the container writes stays in the VM.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use a3s_image::LocalImage;
use a3s_vmm::assets::INIT_PATH;
use a3s_vmm::pod_image::{
    mount_copy_dir, GUEST_POD_IMAGE_IN, GUEST_POD_MOUNT_IN, GUEST_POD_RM, MAX_MANIFEST_BYTES,
    MAX_POD_MOUNT_BYTES, POD_MOUNT_NAME,
};
use a3s_vmm::proto::{self, ContainerMount, Frame, Kind, ProcessSpec};

use super::pod_containers::collect;
use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::BoxRecord;
use crate::copy::StdinWriter;
use crate::pods::share::{host_path_is_dir, HostMount, Propagation};
use crate::pods::tee::{PodTee, IMAGES_ANNOTATION};
use crate::pods::{PodError, PodRecord};

impl Engine {
    /// Places `image` at `dir/rootfs` in a confidential pod's VM through guest-init's
    /// verification; refuses (audited) an image whose manifest is not on the allow-list.
    ///
    /// # Errors
    /// [`PodError::Denied`] for an image off the list, missing blobs, the guest's refusal.
    pub(super) fn place_verified_image(
        &self,
        pod: &PodRecord,
        tee: &PodTee,
        boxed: &BoxRecord,
        image: &LocalImage,
        dir: &str,
    ) -> Result<(), EngineError> {
        let digest = image.digest.as_str();
        if !tee.allows(digest) {
            let why = format!(
                "image {} ({digest}) is not on confidential pod {}'s allow-list (annotation \
                 {IMAGES_ANNOTATION}, fixed and measured at RunPodSandbox); run a new pod that \
                 lists it",
                image.reference, pod.id
            );
            self.record(
                &Event::new("container.create", Outcome::Denied, why.as_str())
                    .with("pod", pod.id.as_str())
                    .with("image", image.reference.to_string())
                    .with("digest", digest),
            )?;
            return Err(PodError::Denied(why).into());
        }
        let store = self.image_store()?;
        let manifest_bytes = store.read_blob(&image.digest)?;
        if manifest_bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(PodError::Denied(format!("manifest {digest} is too large")).into());
        }
        let manifest = store.manifest(&image.digest)?;
        let missing = |d: &a3s_image::Digest| {
            PodError::Denied(format!(
                "image {} ({digest}): blob {d} is not in the image store, and a confidential \
                 pod only takes images as their original blobs; pull the image again",
                image.reference
            ))
        };
        // Everything is opened before the guest is asked, so a missing blob fails cleanly.
        let config = store
            .open_blob(&manifest.config.digest)
            .map_err(|_| missing(&manifest.config.digest))?;
        let mut blobs = vec![config];
        for l in &manifest.layers {
            blobs.push(store.open_blob(&l.digest).map_err(|_| missing(&l.digest))?);
        }
        let process = ProcessSpec {
            argv: vec![INIT_PATH.into(), GUEST_POD_IMAGE_IN.into(), dir.into()],
            stdin: true,
            ..ProcessSpec::default()
        };
        let mut conn = self.boxes.exec(boxed, process)?;
        // Under TCG a large layer can stall the stream for a while; the guest's exit ends it.
        conn.set_write_timeout(None)?;
        let sent = send(&mut conn, &manifest_bytes, &mut blobs);
        let _ = proto::write_frame(&mut conn, &Frame::data(Kind::StdinClosed, 0, vec![]));
        let out = collect(conn, None)?;
        if out.code != 0 {
            return Err(PodError::Denied(format!(
                "the pod VM refused image {} ({digest}): {}",
                image.reference,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .into());
        }
        sent.map_err(|e| EngineError::context("sending the image to the pod VM", e))
    }

    /// Checks a confidential pod's container's CRI mounts before anything is sent: each
    /// host path a file or directory within the copy limit.
    ///
    /// # Errors
    /// [`PodError::Invalid`] naming the mount: a missing host path, one that is neither a file
    /// nor a directory, one over the size limit, or one asking for host-to-container
    /// propagation.
    pub(super) fn check_mount_copies(mounts: &[HostMount]) -> Result<(), EngineError> {
        for m in mounts {
            host_path_is_dir(m)?;
            if m.propagation == Propagation::HostToContainer {
                return Err(PodError::Invalid(format!(
                    "mount {} -> {}: a confidential pod takes copies of its mounts, which \
                     cannot follow what the host mounts later; use PROPAGATION_PRIVATE",
                    m.host_path.display(),
                    m.container_path
                ))
                .into());
            }
            let size = a3s_image::store::tree_file_bytes(&m.host_path).map_err(|e| {
                EngineError::context(format!("reading {}", m.host_path.display()), e)
            })?;
            if size > MAX_POD_MOUNT_BYTES {
                return Err(PodError::Invalid(format!(
                    "mount {} -> {}: a confidential pod takes copies of its mounts, and this one \
                     holds more than {MAX_POD_MOUNT_BYTES} bytes; mount less",
                    m.host_path.display(),
                    m.container_path
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Copies container `id`'s CRI mounts (checked with [`Self::check_mount_copies`]) into a
    /// confidential pod's VM (module docs); the mounts as guest-init binds them.
    ///
    /// # Errors
    /// The guest's refusal, naming the mount; i/o.
    pub(super) fn copy_mounts_in(
        &self,
        boxed: &BoxRecord,
        id: &str,
        mounts: &[HostMount],
    ) -> Result<Vec<ContainerMount>, EngineError> {
        let mut out = Vec::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            let dest = mount_copy_dir(id, i);
            let process = ProcessSpec {
                argv: vec![INIT_PATH.into(), GUEST_POD_MOUNT_IN.into(), dest.clone()],
                stdin: true,
                ..ProcessSpec::default()
            };
            let mut conn = self.boxes.exec(boxed, process)?;
            let sent =
                a3s_vmm::copy::pack(&m.host_path, POD_MOUNT_NAME, StdinWriter(&mut conn)).map(drop);
            let _ = proto::write_frame(&mut conn, &Frame::data(Kind::StdinClosed, 0, vec![]));
            let done = collect(conn, None)?;
            if done.code != 0 {
                return Err(PodError::Invalid(format!(
                    "mount {} -> {}: the pod VM refused the copy: {}",
                    m.host_path.display(),
                    m.container_path,
                    String::from_utf8_lossy(&done.stderr).trim()
                ))
                .into());
            }
            sent.map_err(|e| {
                EngineError::context(
                    format!("copying {} into the pod VM", m.host_path.display()),
                    e,
                )
            })?;
            out.push(ContainerMount {
                source: dest,
                target: m.container_path.clone(),
                readonly: m.readonly,
            });
        }
        Ok(out)
    }

    /// Removes a container's directory in a confidential pod's VM (guest-init's helper: host
    /// commands are refused there).
    pub(super) fn remove_verified_root(
        &self,
        boxed: &BoxRecord,
        dir: &str,
    ) -> Result<(), EngineError> {
        let process = ProcessSpec {
            argv: vec![INIT_PATH.into(), GUEST_POD_RM.into(), dir.into()],
            ..ProcessSpec::default()
        };
        let out = collect(self.boxes.exec(boxed, process)?, None)?;
        if out.code != 0 {
            return Err(EngineError::BoxFailed {
                name: boxed.name.clone(),
                message: format!(
                    "removing {dir}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// The image stream: manifest length and bytes, then the config and layer blobs in order.
fn send<R: io::Read>(conn: &mut UnixStream, manifest: &[u8], blobs: &mut [R]) -> io::Result<()> {
    let mut w = StdinWriter(conn);
    w.write_all(&(manifest.len() as u64).to_be_bytes())?;
    w.write_all(manifest)?;
    for b in blobs {
        io::copy(b, &mut w)?;
    }
    Ok(())
}
