//! Verified images for confidential pods, shared by the host and guest-init.
//!
//! A confidential pod's allow-list of image manifest digests is on the VM's kernel command
//! line ([`IMAGES_ARG`]), which the launch measurement covers: a KBS that accepts the
//! measurement accepts exactly those images. For each container the host runs guest-init as
//! `/.a3s/init __pod-image-in DIR` and sends the image on its stdin:
//!
//! ```text
//! u64 big-endian manifest length | manifest | config blob | layer blobs, in manifest order
//! ```
//!
//! The config and each layer are exactly as many bytes as their manifest descriptor says.
//! The guest accepts the manifest only if its sha256 is on the allow-list, and each blob only
//! if its sha256 is its descriptor's digest; it unpacks layers itself (never a host-unpacked
//! tree). `__pod-rm DIR` removes a container's directory again.

/// The kernel argument carrying a confidential pod's allowed manifest digests
/// (`a3s.pod_images=sha256:<hex>,sha256:<hex>`).
pub const IMAGES_ARG: &str = "a3s.pod_images";
/// The guest-init helper receiving one verified image (`__pod-image-in DIR`).
pub const GUEST_POD_IMAGE_IN: &str = "__pod-image-in";
/// The guest-init helper removing a container directory (`__pod-rm DIR`).
pub const GUEST_POD_RM: &str = "__pod-rm";
/// The guest-init helper receiving a copy of one CRI mount's host path for a confidential
/// pod's container (`__pod-mount-in /containers/ID/mounts/N`, a [`crate::copy`] stream under
/// [`POD_MOUNT_NAME`] on stdin): such a pod shares no directory with the host.
pub const GUEST_POD_MOUNT_IN: &str = "__pod-mount-in";
/// The top-level name a mount's copy travels under.
pub const POD_MOUNT_NAME: &str = "content";
/// The most a mount's copy may hold, in file bytes (kubelet's files, ConfigMaps and Secrets
/// are at most 1 MiB each).
pub const MAX_POD_MOUNT_BYTES: u64 = 16 << 20;
/// Where container directories live in a pod VM.
pub const CONTAINERS_DIR: &str = "/containers";
/// The largest manifest accepted (real ones are a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest config blob accepted.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The box label marking a pod's VM: in a confidential pod its monitor starts the pod's
/// containers (their workload) and runs the helpers above without the host-exec opt-in.
pub const POD_SANDBOX_LABEL: &str = "io.a3s.box.pod-sandbox";
/// At most this many images per pod (the command line is limited to 2048 bytes on x86).
pub const MAX_IMAGES: usize = 8;

/// The allow-list value for [`IMAGES_ARG`] (digests as given, comma-joined).
pub fn images_arg(digests: &[String]) -> String {
    format!("{IMAGES_ARG}={}", digests.join(","))
}

/// The allow-list on a kernel command line; `None` when the argument is absent.
pub fn allowed_images(cmdline: &str) -> Option<Vec<String>> {
    let prefix = format!("{IMAGES_ARG}=");
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(|v| {
            v.split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
}

/// True when `argv` runs one of the pod helpers above (what a confidential pod's monitor
/// lets the runtime run without the exec opt-in: guest-init checks what they receive).
pub fn is_pod_helper(argv: &[String]) -> bool {
    matches!(argv, [init, cmd, _dir]
        if init == crate::assets::INIT_PATH
            && (cmd == GUEST_POD_IMAGE_IN || cmd == GUEST_POD_RM || cmd == GUEST_POD_MOUNT_IN))
}

/// The guest path of mount `index`'s copy for a confidential pod's container `id`.
pub fn mount_copy_dir(id: &str, index: usize) -> String {
    format!("{CONTAINERS_DIR}/{id}/mounts/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_round_trips_through_the_command_line() {
        let d = vec![
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        ];
        let line = format!("console=ttyS0 {} quiet", images_arg(&d));
        assert_eq!(allowed_images(&line), Some(d));
        assert_eq!(allowed_images("console=ttyS0"), None);
        assert_eq!(allowed_images("a3s.pod_images="), Some(vec![]));
    }

    #[test]
    fn only_the_exact_helpers_count() {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(is_pod_helper(&v(&[
            "/.a3s/init",
            "__pod-image-in",
            "/containers/x"
        ])));
        assert!(is_pod_helper(&v(&[
            "/.a3s/init",
            "__pod-rm",
            "/containers/x"
        ])));
        assert!(is_pod_helper(&v(&[
            "/.a3s/init",
            "__pod-mount-in",
            &mount_copy_dir("x", 0)
        ])));
        assert!(!is_pod_helper(&v(&["/.a3s/init", "__cp-in", "/x", "y"])));
        assert!(!is_pod_helper(&v(&["sh", "__pod-rm", "/containers/x"])));
        assert!(!is_pod_helper(&v(&["/.a3s/init", "__pod-rm"])));
    }
}
