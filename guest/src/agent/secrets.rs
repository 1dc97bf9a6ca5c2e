//! Placing secrets: `/run/secrets` is its own tmpfs (mode 0700), each secret a file of mode
//! 0400 owned by the workload's user. Names are checked again here (the host checks them too):
//! one path component of `[A-Za-z0-9._-]`, not `.` or `..`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};
use nix::unistd::{chown, Gid, Uid};
use zeroize::Zeroizing;

/// Where secrets land in the guest.
pub(crate) const SECRETS_DIR: &str = "/run/secrets";
/// Largest tmpfs for secrets.
const TMPFS_SIZE: &str = "16m";
/// Longest secret name.
const MAX_NAME_LEN: usize = 255;

/// A secret's value with its file name, wiped when dropped.
pub(crate) struct Secret {
    pub(crate) name: String,
    pub(crate) value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// Checks that `name` is a plain file name for `/run/secrets/<name>`.
///
/// # Errors
/// What is wrong with the name.
pub(crate) fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("secret name is empty");
    }
    if name == "." || name == ".." {
        bail!("secret name {name:?} is not a file name");
    }
    if name.contains('/') {
        bail!("secret name {name:?} contains '/': it must be a single file name");
    }
    if name.len() > MAX_NAME_LEN {
        bail!("secret name is longer than {MAX_NAME_LEN} bytes");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        bail!("secret name {name:?} contains {c:?} (allowed: A-Z a-z 0-9 . _ -)");
    }
    Ok(())
}

/// Mounts a fresh tmpfs at `dir` (mode 0700, nosuid, nodev, noexec).
///
/// # Errors
/// When the directory cannot be made or the mount fails.
pub(crate) fn mount_tmpfs(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = format!("mode=0700,size={TMPFS_SIZE}");
    // mount -t tmpfs -o nosuid,nodev,noexec,mode=0700,size=16m tmpfs /run/secrets
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .with_context(|| format!("mounting a tmpfs on {}", dir.display()))
}

/// Writes every secret to `root/<name>` (mode 0400) and makes `root` mode 0700, both owned by
/// `owner` when given. A file that already exists is an error (never overwritten).
///
/// # Errors
/// A bad name, or the first file that cannot be written.
#[cfg(test)]
pub(crate) fn write_all(
    root: &Path,
    secrets: &[Secret],
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    for s in secrets {
        validate_name(&s.name)?;
    }
    prepare_root(root, owner)?;
    for s in secrets {
        write_one(root, s, owner)?;
    }
    Ok(())
}

/// Makes `root` a directory of mode 0700 owned by `owner` when given.
///
/// # Errors
/// When it cannot be created or changed.
pub(crate) fn prepare_root(root: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", root.display()))?;
    chown_to(root, owner)
}

/// Writes `secret` to `root/<name>` with mode 0400, owned by `owner` when given; a file that
/// already exists is an error (never overwritten, never followed).
///
/// # Errors
/// A bad name, or the file cannot be written.
pub(crate) fn write_one(
    root: &Path,
    secret: &Secret,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    validate_name(&secret.name)?;
    let path = root.join(&secret.name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&secret.value)
        .with_context(|| format!("writing {}", path.display()))?;
    // The creation mode is masked by the umask: set it exactly.
    file.set_permissions(fs::Permissions::from_mode(0o400))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    chown_to(&path, owner)
}

/// Where secrets injected into a running box land (`a3s-box secret inject`).
#[derive(Clone, Debug)]
pub(crate) struct InjectTarget {
    /// The secrets directory.
    pub(crate) root: std::path::PathBuf,
    /// Mount a tmpfs there first unless one is mounted already (a box booted without
    /// secrets has none).
    pub(crate) mount_tmpfs: bool,
    /// The workload's uid and gid.
    pub(crate) owner: Option<(u32, u32)>,
}

/// Places a secret injected into the running box: the tmpfs (made on first use), then
/// `root/<name>` with mode 0400; an existing secret is never replaced.
///
/// # Errors
/// A bad name, an existing file, a failed mount or write.
pub(crate) fn place_injected(target: &InjectTarget, secret: &Secret) -> anyhow::Result<()> {
    validate_name(&secret.name)?;
    if target.mount_tmpfs && !is_mount_point(&target.root) {
        mount_tmpfs(&target.root)?;
    }
    prepare_root(&target.root, target.owner)?;
    if fs::symlink_metadata(target.root.join(&secret.name)).is_ok() {
        bail!(
            "/run/secrets/{} already exists: secrets are never replaced (inject another name)",
            secret.name
        );
    }
    write_one(&target.root, secret, target.owner)
}

/// Whether `dir` is the root of its own file system (another device than its parent).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(parent)) = (fs::metadata(dir), dir.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != d.dev())
}

pub(crate) fn chown_to(path: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .with_context(|| format!("giving {} to uid {uid}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn accepts_plain_names_and_rejects_paths_dots_and_odd_characters() {
        for good in ["db", "db.password", "API_KEY", "a-b.c_d", "..x"] {
            validate_name(good).unwrap();
        }
        for bad in [
            "", ".", "..", "a/b", "/etc", "../x", "a b", "a\nb", "é", "a\0b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_name(&"x".repeat(256)).is_err());
        let err = validate_name("a/b").unwrap_err().to_string();
        assert!(err.contains("'/'"), "{err}");
    }

    fn secret(name: &str, value: &[u8]) -> Secret {
        Secret {
            name: name.into(),
            value: Zeroizing::new(value.to_vec()),
        }
    }

    #[test]
    fn writes_files_0400_in_a_0700_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("secrets");
        write_all(
            &root,
            &[secret("db", b"hunter2"), secret("token", b"\x00\xff")],
            None,
        )
        .unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o7777, 0o700);
        for (name, value) in [("db", &b"hunter2"[..]), ("token", &b"\x00\xff"[..])] {
            let path = root.join(name);
            let meta = fs::symlink_metadata(&path).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.mode() & 0o7777, 0o400, "{name}");
            assert_eq!(fs::read(&path).unwrap(), value);
        }
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        write_all(&tmp.path().join("owned"), &[secret("a", b"1")], Some(me)).unwrap();
        assert_eq!(
            fs::metadata(tmp.path().join("owned/a")).unwrap().uid(),
            me.0
        );
    }

    #[test]
    fn injected_secrets_land_0400_and_never_replace_one() {
        let tmp = tempfile::tempdir().unwrap();
        let target = InjectTarget {
            root: tmp.path().join("secrets"),
            mount_tmpfs: false,
            owner: None,
        };
        place_injected(&target, &secret("api", b"v1")).unwrap();
        let path = target.root.join("api");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o400);
        assert_eq!(fs::metadata(&target.root).unwrap().mode() & 0o7777, 0o700);
        let err = place_injected(&target, &secret("api", b"v2")).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"v1");
        assert!(place_injected(&target, &secret("../escape", b"x")).is_err());
        assert!(!tmp.path().join("escape").exists());
        // A plain directory is not a mount point.
        assert!(!is_mount_point(&target.root));
    }

    #[test]
    fn never_overwrites_or_follows_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::os::unix::fs::symlink("/etc/passwd", root.join("db")).unwrap();
        let err = write_all(root, &[secret("db", b"x")], None).unwrap_err();
        assert!(format!("{err:#}").contains("creating"), "{err:#}");
        assert!(write_all(root, &[secret("../x", b"x")], None).is_err());
        assert!(!root.parent().unwrap().join("x").exists());
    }
}
