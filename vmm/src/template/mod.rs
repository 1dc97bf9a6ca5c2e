//! Start from a saved VM: a plain box restores a VM that was booted once to guest-init's
//! `Ready` and saved, instead of booting its kernel (≈ 0.1 s instead of ≈ 2.5 s under TCG).
//!
//! ```text
//! template   cache/templates/<key>/{state, meta.json}     (0700 directory, 0600 files)
//!   state    the saved VM: `migrate` to `file:` with QEMU's `mapped-ram` capability, so RAM
//!            pages sit at fixed offsets and zero pages are holes (a 512 MiB guest: ≈ 80 MiB
//!            of data); a restore (`-incoming defer`, `migrate-incoming`) reads only those
//! ```
//!
//! Why not map the template's RAM file copy-on-write into every box (restores ≈ 30 ms faster
//! and shares unchanged pages): QEMU's free page reporting discards reported pages with
//! `fallocate(PUNCH_HOLE)` on the backing file even for a private mapping, which would zero
//! the template under every other box; with the file opened read-only, QEMU refuses every
//! discard and the box never gives memory back.
//!
//! The template's kernel command line is the box's up to `rdinit=` plus `a3s.template=1`:
//! guest-init then does only what is the same for every box (mounts, modules other than the
//! disk driver, the channel), says `Ready` and waits. A restore runs QEMU with
//! the box's own command line for everything that is a backend (drives, chardevs, the
//! network's socket, console and QMP paths): migration carries device state, not backends,
//! so the restored VM's disks are the box's. Its first message is [`crate::proto::HostMsg::Resume`]
//! with the box's `a3s.*` arguments, host entropy and the clock; guest-init reseeds its
//! random generator, loads the disk driver (which then reads the box's disks afresh), sets up
//! the network and root filesystem as a cold boot does and says `Ready` again. From there a restored box is driven exactly like a cold one.
//!
//! The key is a hash of what the template boots and how: the template's QEMU arguments
//! (machine, accelerator, CPU, memory, vCPUs, devices, kernel, initrd and command line, with
//! its own paths), and the identity (device, inode, size, modification time) of the kernel,
//! the initrd, the firmware and the QEMU binary, so a changed kernel, initrd (guest-init is
//! in it) or QEMU never restores a stale template. `meta.json` records the key, the state
//! file's SHA-256 and the memory file's identity; a template that does not match them is not
//! used (the box boots cold, with the reason in `inspect`'s `.boot.cold_reason`) and is
//! removed, so the next start makes a new one. So is a template QEMU refuses to restore.
//! The state file is identified, not hashed, at each start (hashing it would cost more than
//! the restore saves): it lives in the user's private cache like the kernel and initrd, and a
//! plain box trusts its host.
//!
//! A box with virtiofs shares (volumes, bind mounts, a pod's shares) restores a template with
//! as many shares, under the same positional tags, each served while it is made by a
//! `virtiofsd` of its own exporting an empty private directory. The guest probes the devices
//! but mounts nothing before `Ready`, so the virtio-fs state QEMU saves (the rings, and
//! virtiofsd's own state through vhost-user's device-state transfer) has no open file; the
//! restore connects the box's daemons, which receive that empty state, and the guest mounts
//! the box's directories after `Resume` as on a cold boot. The key covers virtiofsd's
//! identity: one that cannot migrate fails the save ("does not support migration of internal
//! state"), which is recorded (`<key>.failed`) so the starts of the next
//! [`RETRY_FAILED_AFTER`] boot cold at once instead of each making the template again.
//!
//! A box on bridge networks or a pod network restores a template with NICs of its own (see
//! [`nics`]): a NIC's MAC address is in the saved device state, so the restored guest gives
//! each NIC the box's address before configuring it.
//!
//! Never for TEE boxes (their launch measurement covers the boot) or boxes with extra kernel
//! arguments. `A3S_BOX_RESTORE=off` turns it off.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::file_id::FileId;
use crate::net::Nic;
use crate::qemu::VmConfig;

mod nics;
pub use nics::{parse_macs, template_mac, MACS_ARG};

/// `A3S_BOX_RESTORE=off` boots every box cold.
pub const RESTORE_ENV: &str = "A3S_BOX_RESTORE";
/// Kernel argument that makes guest-init stop at the template point.
pub const TEMPLATE_ARG: &str = "a3s.template";
/// Modules a template leaves for its restored copies: the disk driver, which reads each disk's
/// size when it binds (the disks are the box's own). The NIC of a user network is the same
/// device with the same MAC address in every box (only its backend, passt, is the box's), so
/// its driver binds in the template (≈ 50-80 ms less per restore under TCG).
pub const DEFERRED_MODULES: &[&str] = &["virtio_blk"];
/// Bytes of host entropy in `Resume`.
pub const ENTROPY_BYTES: usize = 64;
/// The box's own kernel arguments a template can take after restore.
const BOX_ARGS: &[&str] = &["a3s.image=", "a3s.root=", "a3s.rw=", "a3s.net="];
/// Bumped whenever the template layout or the guest's template protocol changes.
const FORMAT: &str = "a3s-template-v1";
/// The most of `meta.json` read.
const META_LIMIT: u64 = 64 << 10;
/// How long a failure to make a template keeps the starts that need it from trying again.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(15 * 60);
/// The most of a `.failed` record read.
const FAILURE_LIMIT: u64 = 4 << 10;
/// Longest a save or a restore's loading may take.
const MIGRATE_DEADLINE: Duration = Duration::from_secs(60);

/// Whether restoring is enabled (`A3S_BOX_RESTORE` is not `off`).
pub fn enabled() -> bool {
    std::env::var(RESTORE_ENV).as_deref() != Ok("off")
}

/// Why a box boots cold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ineligible {
    /// `A3S_BOX_RESTORE=off`.
    #[error("{RESTORE_ENV}=off")]
    Disabled,
    /// A TEE launch: its measurement covers the boot.
    #[error("a confidential box always boots cold (its measurement covers the boot)")]
    Tee,
    /// Kernel arguments a template does not have.
    #[error("the box has its own kernel arguments ({0})")]
    KernelArgs(String),
    /// Not a command line made by [`crate::qemu::kernel_cmdline`].
    #[error("the kernel command line has no rdinit=")]
    Cmdline,
}

/// The box-independent part of a box's kernel command line (plus [`TEMPLATE_ARG`]) and the
/// box's own arguments, which `Resume` carries.
///
/// # Errors
/// [`Ineligible`] when the line has arguments a template cannot take after restore.
pub fn split_cmdline(cmdline: &str) -> Result<(String, String), Ineligible> {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("rdinit="))
        .ok_or(Ineligible::Cmdline)?;
    let (base, own) = words.split_at(at + 1);
    if let Some(other) = own
        .iter()
        .find(|w| !BOX_ARGS.iter().any(|p| w.starts_with(p)))
    {
        return Err(Ineligible::KernelArgs((*other).to_owned()));
    }
    Ok((
        format!("{} {TEMPLATE_ARG}=1", base.join(" ")),
        own.join(" "),
    ))
}

/// `a3t<pid><n>`: a name for this process's next template TAPs (`-<index>` is added; at
/// most 15 bytes in all, as the kernel wants).
fn tap_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
    format!("a3t{}{n}", std::process::id() % 10_000_000)
}

/// What can be restored for one box: its template's configuration and key.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The template VM (booted in [`Plan::dir`]'s work directory when it is made).
    template: VmConfig,
    /// The box's own `a3s.*` arguments.
    pub args: String,
    /// The template's key (hex).
    pub key: String,
    /// `templates/<key>`.
    pub dir: PathBuf,
}

/// A template's `meta.json`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    format: String,
    key: String,
    state: FileId,
}

/// A template could not be used or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// No template for this key yet.
    #[error("no template yet")]
    Missing,
    /// A template that does not match its record (changed, damaged or from another build).
    #[error("the template {dir} does not match its record ({what}); it was removed")]
    Mismatch {
        /// The template.
        dir: PathBuf,
        /// What differs.
        what: String,
    },
    /// Another start holds the template's lock (it is being made).
    #[error("another start is making the template")]
    Busy,
    /// Booting the template VM failed.
    #[error("booting the template VM: {0}")]
    Boot(#[source] Box<crate::qemu::StartError>),
    /// Saving it failed.
    #[error("saving the template VM: {0}")]
    Save(String),
    /// Making it failed a short while ago; it is not tried again yet.
    #[error(
        "making the template failed {age_secs} s ago ({reason}); it is tried again {} minutes \
         after a failure",
        RETRY_FAILED_AFTER.as_secs() / 60
    )]
    Failed {
        /// The failure, as it was recorded.
        reason: String,
        /// How long ago.
        age_secs: u64,
    },
    /// File i/o.
    #[error("template files: {0}")]
    Io(#[from] std::io::Error),
}

impl Plan {
    /// The template for `config` (a box's configuration, its user network's forwarder
    /// chosen) under `templates` (`A3S_HOME/cache/templates`).
    ///
    /// # Errors
    /// [`Ineligible`]: the box boots cold.
    pub fn for_box(config: &VmConfig, templates: &Path) -> Result<Self, Ineligible> {
        if !enabled() {
            return Err(Ineligible::Disabled);
        }
        if config.snp.is_some() {
            return Err(Ineligible::Tee);
        }
        let (cmdline, mut args) = split_cmdline(&config.cmdline)?;
        // A bridge or pod NIC's TAP is named for the process making the template, so makes
        // of different templates never meet; the key sees one fixed name.
        let template_net = |tap_prefix: &str| match &config.net {
            None => None,
            // The inbound link is a device like the user NIC (same MAC in every box); its
            // TAP is the box's, which the template VM uses while it is made.
            Some(Nic::User(u)) => Some(Nic::User(crate::net::UserNet {
                forwards: Vec::new(),
                forwarder: u.forwarder,
                inbound: u.inbound.clone(),
                inbound_refused: None,
            })),
            // Bridge and pod NICs: the template's own TAPs and addresses.
            Some(other) => {
                nics::for_template(other, |i| format!("{tap_prefix}-{i}")).map(|(n, _)| n)
            }
        };
        if let Some((_, macs)) = config
            .net
            .as_ref()
            .and_then(|n| nics::for_template(n, |_| String::new()))
        {
            args = format!("{args} {macs}");
        }
        let template_in = |dir: &Path, tap_prefix: &str| VmConfig {
            cmdline: cmdline.clone(),
            channel_socket: dir.join("ctl.sock"),
            qmp_socket: Some(dir.join("qmp.sock")),
            console_log: dir.join("console.log"),
            qemu_log: dir.join("qemu.log"),
            net: template_net(tap_prefix),
            disks: config
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| crate::disk::Disk {
                    path: dir.join(format!("disk{i}")),
                    readonly: d.readonly,
                    serial: d.serial.clone(),
                })
                .collect(),
            shares: config
                .shares
                .iter()
                .enumerate()
                // Socket names as short as `ctl.sock`: a unix socket path has 107 bytes.
                .map(|(i, s)| crate::fs::Share {
                    tag: s.tag.clone(),
                    host_dir: dir.join(format!("fs{i}")),
                    socket: dir.join(format!("fs{i}.sock")),
                    readonly: s.readonly,
                    keep_cache: s.keep_cache,
                    log: dir.join(format!("fs{i}.log")),
                })
                .collect(),
            ..config.clone()
        };
        // The key covers the arguments with a fixed directory (where it is made varies).
        let mut files = vec![
            config.kernel.clone(),
            config.initrd.clone(),
            config.machine.firmware().to_owned(),
            crate::host::qemu_path().unwrap_or_default(),
        ];
        // The template's virtio-fs devices carry virtiofsd's migration state: another
        // virtiofsd (one that cannot migrate, say) makes another template.
        if !config.shares.is_empty() {
            files.push(crate::fs::locate_virtiofsd().unwrap_or_default());
        }
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let key = key(
            &crate::qemu::qemu_args(&template_in(Path::new("/template"), "a3t")),
            &files,
        );
        let dir = templates.join(&key);
        Ok(Self {
            template: template_in(
                &dir.with_extension(format!("tmp-{}", std::process::id())),
                &tap_prefix(),
            ),
            args,
            key,
            dir,
        })
    }

    /// The saved state.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The box's configuration for restoring this template: its own backends, the template's
    /// command line (the kernel is not booted again), waiting for the saved state.
    pub fn restore_config(&self, config: &VmConfig) -> VmConfig {
        VmConfig {
            cmdline: self.template.cmdline.clone(),
            incoming: true,
            ..config.clone()
        }
    }

    /// Checks the template against its record; a mismatched one is removed.
    ///
    /// # Errors
    /// [`TemplateError::Missing`], [`TemplateError::Failed`] (none, and making it failed
    /// recently) or [`TemplateError::Mismatch`].
    pub fn check(&self) -> Result<(), TemplateError> {
        // A record is a few hundred bytes; a larger file is not one of ours (a mismatch).
        let read = std::fs::File::open(self.dir.join("meta.json")).and_then(|f| {
            let mut m = Vec::new();
            f.take(META_LIMIT).read_to_end(&mut m).map(|_| m)
        });
        let meta = match read {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.recent_failure().unwrap_or(TemplateError::Missing))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(what) = self.mismatch(&meta) else {
            // When it was last used, for [`prune`]; not part of the record.
            let _ = std::fs::File::open(self.dir.join("meta.json"))
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(());
        };
        self.discard();
        Err(TemplateError::Mismatch {
            dir: self.dir.clone(),
            what,
        })
    }

    fn mismatch(&self, meta: &[u8]) -> Option<String> {
        let Ok(meta) = serde_json::from_slice::<Meta>(meta) else {
            return Some("meta.json is not a template record".into());
        };
        if meta.format != FORMAT || meta.key != self.key {
            return Some("it is for another kernel, initrd, QEMU or machine".into());
        }
        match FileId::of(&self.state()) {
            Ok(id) if id == meta.state => None,
            Ok(_) => Some("the state file changed".into()),
            Err(e) => Some(format!("the state file: {e}")),
        }
    }

    /// `templates/<key>.failed`: why the last attempt to make this template failed.
    fn failure_record(&self) -> PathBuf {
        self.dir.with_extension("failed")
    }

    /// Keeps why making the template failed, so the starts of the next
    /// [`RETRY_FAILED_AFTER`] boot cold at once instead of each booting a template VM that
    /// fails the same way (a virtiofsd that cannot migrate its state fails every save).
    fn record_failure(&self, e: &TemplateError) {
        let record = self.failure_record();
        let mut reason = e.to_string();
        // Well under what is read back, cut where a character starts.
        let cut = (0..=reason.len().min(2048))
            .rev()
            .find(|&i| reason.is_char_boundary(i))
            .unwrap_or(0);
        reason.truncate(cut);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&record)
            .and_then(|mut f| f.write_all(reason.as_bytes()));
        if written.is_err() {
            let _ = std::fs::remove_file(&record);
        }
    }

    /// The recorded failure, when it is recent enough to trust.
    fn recent_failure(&self) -> Option<TemplateError> {
        let record = self.failure_record();
        let age = std::fs::metadata(&record)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())?;
        if age >= RETRY_FAILED_AFTER {
            let _ = std::fs::remove_file(&record);
            return None;
        }
        let mut reason = Vec::new();
        std::fs::File::open(&record)
            .and_then(|f| f.take(FAILURE_LIMIT).read_to_end(&mut reason))
            .ok()?;
        Some(TemplateError::Failed {
            reason: String::from_utf8_lossy(&reason).into_owned(),
            age_secs: age.as_secs(),
        })
    }

    /// Removes the template (boxes restored from it do not use it any more).
    pub fn discard(&self) {
        let gone = self
            .dir
            .with_extension(format!("gone-{}", std::process::id()));
        if std::fs::rename(&self.dir, &gone).is_ok() {
            let _ = std::fs::remove_dir_all(&gone);
        }
    }

    /// Boots the template VM, saves it and publishes it atomically as [`Plan::dir`]. Another
    /// start making the same template meanwhile gets [`TemplateError::Busy`].
    ///
    /// # Errors
    /// [`TemplateError`].
    pub fn create(&self) -> Result<(), TemplateError> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.with_extension("lock"))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(TemplateError::Busy);
        }
        if self.dir.join("meta.json").exists() {
            return Ok(());
        }
        let work = self
            .template
            .channel_socket
            .parent()
            .unwrap_or(Path::new("/"))
            .to_owned();
        let _ = std::fs::remove_dir_all(&work);
        std::fs::DirBuilder::new().mode(0o700).create(&work)?;
        let result = self.make(&work);
        match &result {
            Ok(()) => {
                let _ = std::fs::remove_file(self.failure_record());
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                self.record_failure(e);
            }
        }
        prune(parent, &self.dir);
        result
    }

    fn make(&self, work: &Path) -> Result<(), TemplateError> {
        for d in &self.template.disks {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&d.path)?;
            f.set_len(1 << 20)?;
        }
        for s in &self.template.shares {
            std::fs::DirBuilder::new().mode(0o700).create(&s.host_dir)?;
        }
        let vm =
            crate::qemu::Vm::start(&self.template).map_err(|e| TemplateError::Boot(Box::new(e)))?;
        let state = work.join("state");
        // QEMU creates it with its umask; made private before anything is written to it.
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&state)?;
        let qmp_path = self.template.qmp_socket.clone().unwrap_or_default();
        let saved = (|| {
            let mut qmp = crate::qmp::Qmp::connect(&qmp_path)?;
            qmp.execute("stop")?;
            qmp.execute_with("migrate-set-capabilities", mapped_ram())?;
            qmp.execute_with(
                "migrate",
                serde_json::json!({ "uri": format!("file:{}", state.display()) }),
            )?;
            wait_migration(&mut qmp)
        })();
        drop(vm);
        saved.map_err(|e| TemplateError::Save(e.to_string()))?;
        std::fs::File::open(&state)?.sync_all()?;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600))?;
        for d in &self.template.disks {
            let _ = std::fs::remove_file(&d.path);
        }
        for s in ["ctl.sock", "qmp.sock"] {
            let _ = std::fs::remove_file(work.join(s));
        }
        for s in &self.template.shares {
            let _ = std::fs::remove_dir(&s.host_dir);
            for f in [&s.socket, &crate::fs::pid_file(&s.socket), &s.log] {
                let _ = std::fs::remove_file(f);
            }
        }
        let meta = Meta {
            format: FORMAT.into(),
            key: self.key.clone(),
            state: FileId::of(&state)?,
        };
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(work.join("meta.json"))?;
        f.write_all(&serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(work, &self.dir)?;
        if let Some(parent) = self.dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }
}

/// Templates kept per home: one per (memory, vCPUs, network, ...) in use, and those of a
/// kernel, initrd or QEMU that changed until they are the least recently used.
const MAX_TEMPLATES: usize = 6;

/// Removes what is left of interrupted makes and removals (their process is gone) and all but
/// the [`MAX_TEMPLATES`] most recently used templates in `templates` (never `keep`).
fn prune(templates: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(templates) else {
        return;
    };
    let mut kept = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover = name
            .rsplit_once(".tmp-")
            .or_else(|| name.rsplit_once(".gone-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        let stale_failure = name.ends_with(".failed")
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= RETRY_FAILED_AFTER);
        if leftover {
            let _ = std::fs::remove_dir_all(&path);
        } else if stale_failure {
            let _ = std::fs::remove_file(&path);
        } else if path != keep && !name.contains('.') && path.is_dir() {
            let used = std::fs::metadata(path.join("meta.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            kept.push((used, path));
        }
    }
    kept.sort();
    let excess = (kept.len() + 1).saturating_sub(MAX_TEMPLATES);
    for (_, path) in kept.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(path.with_extension("lock"));
    }
}

/// `migrate-set-capabilities` turning `mapped-ram` on (for the save and the restore): each
/// RAM page at its own offset of the file, zero pages left out.
pub fn mapped_ram() -> serde_json::Value {
    serde_json::json!({
        "capabilities": [{ "capability": "mapped-ram", "state": true }]
    })
}

/// Waits until the migration (a save, or a restore's loading) completed.
///
/// # Errors
/// QEMU reports it failed, or it took longer than a minute.
pub fn wait_migration(qmp: &mut crate::qmp::Qmp) -> Result<(), crate::qmp::QmpError> {
    let deadline = Instant::now() + MIGRATE_DEADLINE;
    loop {
        let info = qmp.execute("query-migrate")?;
        match info.get("status").and_then(serde_json::Value::as_str) {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => {
                return Err(crate::qmp::QmpError::Refused {
                    command: "migrate".into(),
                    message: info
                        .get("error-desc")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("migration failed")
                        .to_owned(),
                })
            }
            _ if Instant::now() > deadline => {
                return Err(crate::qmp::QmpError::Refused {
                    command: "migrate".into(),
                    message: format!("not done after {} s", MIGRATE_DEADLINE.as_secs()),
                })
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// The template key: SHA-256 over the format, the template's QEMU arguments and the identity
/// of the files it boots (truncated to 32 hex digits). Pure.
fn key(args: &[OsString], files: &[&Path]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    for a in args {
        h.update([0]);
        h.update(a.as_encoded_bytes());
    }
    for f in files {
        h.update([1]);
        h.update(f.as_os_str().as_encoded_bytes());
        if let Ok(id) = FileId::of(f) {
            h.update(format!("{}:{}:{}:{}", id.dev, id.ino, id.len, id.mtime_ns).as_bytes());
        }
    }
    hex(&h.finalize())[..32].to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`ENTROPY_BYTES`] from the host's CSPRNG, hex, for `Resume`.
///
/// # Errors
/// `/dev/urandom` could not be read.
pub fn host_entropy() -> std::io::Result<String> {
    let mut buf = [0u8; ENTROPY_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;
    use crate::qemu::{kernel_cmdline, Machine};

    const HASH: &str = "e04bb9685e16a1c997625e592692ab10df7edf69d56feacab13df8b9a769d99f";

    fn box_config() -> VmConfig {
        VmConfig {
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            mem_mib: 512,
            vcpus: 1,
            kernel: "/k/vmlinux".into(),
            initrd: "/c/initrd.img".into(),
            cmdline: kernel_cmdline(
                Accel::Tcg,
                Some(2_596_073),
                &[
                    "a3s.image=sha256:ab".into(),
                    format!("a3s.root=493,{HASH}"),
                    "a3s.rw=ext4".into(),
                    "a3s.net=10.0.2.15/24,10.0.2.2".into(),
                ],
            ),
            channel_socket: "/b/ctl.sock".into(),
            qmp_socket: Some("/b/qmp.sock".into()),
            console_log: "/b/console.log".into(),
            qemu_log: "/b/qemu.log".into(),
            boot_cpu_budget_secs: 25,
            boot_timeout_secs: 180,
            boot_attempts: 3,
            net: Some(crate::net::Nic::User(crate::net::UserNet {
                forwards: vec![],
                forwarder: Some(crate::passt::Forwarder::Passt),
                ..crate::net::UserNet::default()
            })),
            disks: vec![
                crate::disk::Disk {
                    path: "/i/root.erofs".into(),
                    readonly: true,
                    serial: crate::disk::ROOT_SERIAL.into(),
                },
                crate::disk::Disk {
                    path: "/b/rw.img".into(),
                    readonly: false,
                    serial: crate::disk::RW_SERIAL.into(),
                },
            ],
            shares: vec![],
            snp: None,
            balloon: true,
            tcg_tb_mib: Some(32),
            huge_pages: false,
            mergeable: true,
            incoming: false,
        }
    }

    #[test]
    fn the_command_line_splits_into_template_and_box_parts() {
        let (template, own) = split_cmdline(&box_config().cmdline).unwrap();
        assert!(
            template.ends_with("rdinit=/.a3s/init a3s.template=1"),
            "{template}"
        );
        assert!(!template.contains("a3s.root"), "{template}");
        assert_eq!(
            own,
            format!(
                "a3s.image=sha256:ab a3s.root=493,{HASH} a3s.rw=ext4 a3s.net=10.0.2.15/24,10.0.2.2"
            )
        );
        assert_eq!(
            split_cmdline("console=ttyS0 rdinit=/.a3s/init a3s.root=1,x init=/bin/sh"),
            Err(Ineligible::KernelArgs("init=/bin/sh".into()))
        );
        assert_eq!(split_cmdline("console=ttyS0"), Err(Ineligible::Cmdline));
    }

    #[test]
    fn boxes_differing_only_in_their_own_parts_share_a_template() {
        let t = Path::new("/h/cache/templates");
        let a = Plan::for_box(&box_config(), t).unwrap();
        let mut other = box_config();
        other.cmdline = other.cmdline.replace("a3s.root=493", "a3s.root=900");
        other.channel_socket = "/b2/ctl.sock".into();
        other.disks[1].path = "/b2/rw.img".into();
        if let Some(crate::net::Nic::User(u)) = &mut other.net {
            u.forwards.push(crate::net::HostFwd {
                udp: false,
                host_ip: std::net::Ipv4Addr::LOCALHOST,
                host: 8080,
                guest: 80,
            });
        }
        let b = Plan::for_box(&other, t).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.dir, t.join(&a.key));
        assert!(b.args.contains("a3s.root=900"));
    }

    #[test]
    fn memory_vcpus_machine_kernel_and_devices_each_change_the_key() {
        let t = Path::new("/t");
        let base = Plan::for_box(&box_config(), t).unwrap().key;
        let changes: [fn(&mut VmConfig); 8] = [
            |c| c.mem_mib = 1024,
            |c| c.vcpus = 2,
            |c| c.machine = Machine::Q35,
            |c| c.kernel = "/k2/vmlinux".into(),
            |c| c.initrd = "/c/initrd-2.img".into(),
            |c| c.balloon = false,
            |c| c.net = None,
            |c| {
                c.cmdline = c
                    .cmdline
                    .replace("tsc_early_khz=2596073", "tsc_early_khz=1")
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut c = box_config();
            change(&mut c);
            assert_ne!(Plan::for_box(&c, t).unwrap().key, base, "change {i}");
        }
    }

    fn with_shares(config: &mut VmConfig, dir: &str, n: usize) {
        config.shares = (0..n)
            .map(|i| crate::fs::Share {
                tag: format!("a3s-{i}"),
                host_dir: format!("/data/{dir}/{i}").into(),
                socket: format!("/b/{dir}/fs{i}.sock").into(),
                readonly: i == 0,
                keep_cache: false,
                log: format!("/b/{dir}/fs{i}.log").into(),
            })
            .collect();
    }

    #[test]
    fn boxes_with_as_many_shares_share_a_template_serving_its_own_empty_directories() {
        let t = Path::new("/t");
        let none = Plan::for_box(&box_config(), t).unwrap();
        let (mut a, mut b, mut three) = (box_config(), box_config(), box_config());
        with_shares(&mut a, "a", 2);
        with_shares(&mut b, "b", 2);
        b.shares[0].readonly = false;
        b.shares[1].keep_cache = true;
        with_shares(&mut three, "c", 3);
        let (pa, pb) = (Plan::for_box(&a, t).unwrap(), Plan::for_box(&b, t).unwrap());
        // Directories, sockets and daemon options are the box's own; the count is not.
        assert_eq!(pa.key, pb.key);
        assert_ne!(pa.key, none.key);
        assert_ne!(Plan::for_box(&three, t).unwrap().key, pa.key);
        // The template serves directories of its own, under the box's tags.
        let work = pa.template.channel_socket.parent().unwrap().to_owned();
        for (i, s) in pa.template.shares.iter().enumerate() {
            assert_eq!(s.tag, a.shares[i].tag);
            for p in [&s.host_dir, &s.socket, &s.log] {
                assert!(
                    p.starts_with(&work),
                    "{} outside {}",
                    p.display(),
                    work.display()
                );
            }
        }
        // A restore serves the box's own directories.
        assert_eq!(pa.restore_config(&a).shares, a.shares);
    }

    #[test]
    fn boxes_on_as_many_bridges_share_a_template_and_take_their_own_addresses_after_restore() {
        let t = Path::new("/t");
        let on_bridges = |macs: &[&str]| {
            let mut c = box_config();
            c.net = Some(Nic::Taps(
                macs.iter()
                    .enumerate()
                    .map(|(i, m)| crate::net::TapNet {
                        ifname: format!("a3s-{m}-{i}"),
                        mac: (*m).into(),
                    })
                    .collect(),
            ));
            c
        };
        let a = Plan::for_box(&on_bridges(&["02:a3:00:00:00:01", "02:a3:00:00:00:02"]), t).unwrap();
        let b = Plan::for_box(&on_bridges(&["02:a3:00:00:00:03", "02:a3:00:00:00:04"]), t).unwrap();
        let one = Plan::for_box(&on_bridges(&["02:a3:00:00:00:05"]), t).unwrap();
        assert_eq!(a.key, b.key, "TAP names and addresses are the box's own");
        assert_ne!(a.key, one.key);
        assert_ne!(a.key, Plan::for_box(&box_config(), t).unwrap().key);
        assert!(
            b.args.ends_with(
                "a3s.macs=02:a3:7e:00:00:00/02:a3:00:00:00:03,02:a3:7e:00:00:01/02:a3:00:00:00:04"
            ),
            "{}",
            b.args
        );
        // The template's own TAPs (named for this process, at most 15 bytes) and addresses.
        let Some(Nic::Taps(taps)) = &a.template.net else {
            panic!("{:?}", a.template.net)
        };
        for (i, tap) in taps.iter().enumerate() {
            assert_eq!(tap.mac, template_mac(i));
            assert!(
                tap.ifname.starts_with("a3t") && tap.ifname.len() <= 15,
                "{}",
                tap.ifname
            );
        }
        assert!(!Plan::for_box(&box_config(), t)
            .unwrap()
            .args
            .contains("a3s.macs"));
    }

    /// Sets `path`'s modification time `by` into the past.
    fn backdate(path: &Path, by: Duration) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - by)
            .unwrap();
    }

    #[test]
    fn a_failed_make_is_not_retried_until_its_record_expires() {
        let home = tempfile::tempdir().unwrap();
        let plan = Plan::for_box(&box_config(), home.path()).unwrap();
        std::fs::create_dir_all(home.path()).unwrap();
        plan.record_failure(&TemplateError::Save(
            "no migration of internal state".into(),
        ));
        let record = plan.failure_record();
        assert_eq!(
            std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = plan.check().unwrap_err();
        assert!(
            matches!(&err, TemplateError::Failed { reason, .. } if reason.contains("internal state")),
            "{err:?}"
        );
        assert!(err.to_string().contains("tried again 15 minutes"), "{err}");
        backdate(&record, RETRY_FAILED_AFTER);
        assert!(matches!(plan.check(), Err(TemplateError::Missing)));
        assert!(!record.exists(), "an expired record is removed");
        // A long reason is cut where a character starts.
        plan.record_failure(&TemplateError::Save("é".repeat(3000)));
        let Err(TemplateError::Failed { reason, .. }) = plan.check() else {
            panic!("no record")
        };
        assert!(
            reason.len() <= 2048 && reason.ends_with('é'),
            "{}",
            reason.len()
        );
    }

    #[test]
    fn tee_boxes_and_own_kernel_args_boot_cold() {
        let t = Path::new("/t");
        let mut c = box_config();
        c.snp = Some(crate::snp::SnpConfig {
            firmware: "/fw".into(),
            policy: crate::snp::DEFAULT_POLICY,
        });
        assert_eq!(Plan::for_box(&c, t).unwrap_err(), Ineligible::Tee);
        let mut c = box_config();
        c.cmdline.push_str(" loglevel=7");
        assert!(matches!(
            Plan::for_box(&c, t).unwrap_err(),
            Ineligible::KernelArgs(_)
        ));
    }

    #[test]
    fn a_restore_waits_for_the_saved_state_with_the_boxs_backends() {
        let plan = Plan::for_box(&box_config(), Path::new("/t")).unwrap();
        let c = plan.restore_config(&box_config());
        let args: Vec<String> = crate::qemu::qemu_args(&c)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let s = args.join(" ");
        assert!(s.starts_with("-M microvm,acpi=on -bios"), "{s}");
        assert!(s.ends_with(" -incoming defer"), "{s}");
        assert!(!crate::qemu::qemu_args(&box_config())
            .iter()
            .any(|a| a == "-incoming"));
        // The box's own backends, the template's command line.
        assert!(s.contains("file=/b/rw.img,"), "{s}");
        assert!(s.contains("path=/b/ctl.sock,"), "{s}");
        assert!(
            s.contains("a3s.template=1") && !s.contains("a3s.root="),
            "{s}"
        );
    }

    #[test]
    fn a_template_that_does_not_match_its_record_is_refused_and_removed() {
        let home = tempfile::tempdir().unwrap();
        let plan = Plan::for_box(&box_config(), home.path()).unwrap();
        assert!(matches!(plan.check(), Err(TemplateError::Missing)));
        std::fs::create_dir_all(&plan.dir).unwrap();
        std::fs::write(plan.state(), b"state").unwrap();
        let meta = Meta {
            format: FORMAT.into(),
            key: plan.key.clone(),
            state: FileId::of(&plan.state()).unwrap(),
        };
        std::fs::write(
            plan.dir.join("meta.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        plan.check().unwrap();
        // One byte more in the state file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(plan.state())
            .unwrap()
            .write_all(b"x")
            .unwrap();
        let err = plan.check().unwrap_err();
        assert!(err.to_string().contains("the state file changed"), "{err}");
        assert!(!plan.dir.exists(), "a mismatched template is removed");
        // A record for another key.
        std::fs::create_dir_all(&plan.dir).unwrap();
        std::fs::write(plan.state(), b"state").unwrap();
        let other = Meta {
            key: "0".repeat(32),
            state: FileId::of(&plan.state()).unwrap(),
            ..meta
        };
        std::fs::write(
            plan.dir.join("meta.json"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        assert!(plan
            .check()
            .unwrap_err()
            .to_string()
            .contains("another kernel"));
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_and_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let t = |name: &str, age_secs: u64| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            let f = std::fs::File::create(p.join("meta.json")).unwrap();
            f.set_modified(std::time::SystemTime::now() - Duration::from_secs(age_secs))
                .unwrap();
            p
        };
        // `keep` was just made; of the others the MAX_TEMPLATES - 1 most recently used stay.
        let keep = t("keep", 100);
        let others: Vec<PathBuf> = (0..MAX_TEMPLATES + 1)
            .map(|i| t(&format!("t{i}"), 10 * i as u64))
            .collect();
        let dead = t("ff.tmp-4000000000", 0);
        let alive = t(&format!("gg.tmp-{}", std::process::id()), 0);
        let stale_failure = dir.path().join("ab.failed");
        std::fs::write(&stale_failure, "old").unwrap();
        backdate(&stale_failure, RETRY_FAILED_AFTER);
        let fresh_failure = dir.path().join("cd.failed");
        std::fs::write(&fresh_failure, "new").unwrap();
        prune(dir.path(), &keep);
        assert!(keep.exists());
        for (i, p) in others.iter().enumerate() {
            assert_eq!(p.exists(), i < MAX_TEMPLATES - 1, "{}", p.display());
        }
        assert!(!stale_failure.exists(), "an expired failure record stays");
        assert!(
            fresh_failure.exists(),
            "a recent failure record was removed"
        );
        assert!(!dead.exists(), "a dead process's leftover stays");
        assert!(alive.exists(), "a running make was removed");
    }

    #[test]
    fn host_entropy_is_fresh_hex() {
        let a = host_entropy().unwrap();
        assert_eq!(a.len(), ENTROPY_BYTES * 2);
        assert_ne!(a, host_entropy().unwrap());
    }
}
