use std::os::unix::fs::PermissionsExt;

use super::*;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A cache that stores digests of files changed a moment ago (tests write their files just
/// before hashing them; the racy rule has its own test).
fn cache(home: &Path) -> DigestCache {
    let mut c = DigestCache::open(home).unwrap();
    c.racy = Duration::ZERO;
    c
}

fn ctime_ns(p: &Path) -> i128 {
    Stamp::of_metadata(&std::fs::metadata(p).unwrap()).ctime_ns
}

/// Rewrites `p` with `bytes` of the same length and puts its mtime back, as an attacker
/// hiding a change would; repeats until the kernel's coarse clock has moved on, so the change
/// is one a cache keyed by stamps can see at all (the racy rule covers the rest).
fn tamper_keeping_size_and_mtime(p: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(p).unwrap();
    let old_ctime = ctime_ns(p);
    loop {
        std::fs::write(p, bytes).unwrap();
        let ts = |s: i64, n: i64| nix::sys::time::TimeSpec::new(s, n);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &ts(before.atime(), before.atime_nsec()),
            &ts(before.mtime(), before.mtime_nsec()),
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        if ctime_ns(p) != old_ctime {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = std::fs::metadata(p).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec(), after.ino()),
        (
            before.len(),
            before.mtime(),
            before.mtime_nsec(),
            before.ino()
        )
    );
}

#[test]
fn an_unchanged_file_is_hashed_once() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("vmlinux");
    std::fs::write(&f, b"kernel bytes").unwrap();
    let c = cache(home.path());
    assert_eq!(
        c.sha256(&f, "kernel", 1 << 20).unwrap(),
        (sha(b"kernel bytes"), Lookup::Miss)
    );
    assert_eq!(
        c.sha256(&f, "kernel", 1 << 20).unwrap(),
        (sha(b"kernel bytes"), Lookup::Hit)
    );
    // A second process (a new cache object) reads the same entry under the same key.
    assert_eq!(
        cache(home.path()).sha256(&f, "kernel", 1 << 20).unwrap().1,
        Lookup::Hit
    );
}

#[test]
fn a_tampered_artefact_is_hashed_again() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("initrd");
    std::fs::write(&f, b"the real initrd").unwrap();
    let c = cache(home.path());
    c.sha256(&f, "initrd", 1 << 20).unwrap();
    tamper_keeping_size_and_mtime(&f, b"an evil  initrd");
    assert_eq!(
        c.sha256(&f, "initrd", 1 << 20).unwrap(),
        (sha(b"an evil  initrd"), Lookup::Changed)
    );
    // Replaced by another file (a new inode) of the same size: hashed again too.
    let g = home.path().join("other");
    std::fs::write(&g, b"another initrd!").unwrap();
    std::fs::rename(&g, &f).unwrap();
    assert_eq!(
        c.sha256(&f, "initrd", 1 << 20).unwrap(),
        (sha(b"another initrd!"), Lookup::Changed)
    );
}

#[test]
fn a_tampered_cache_entry_is_refused_and_replaced() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("vmlinux");
    std::fs::write(&f, b"kernel").unwrap();
    let c = cache(home.path());
    c.sha256(&f, "kernel", 1 << 20).unwrap();
    let entry = c.entry_path(&f);
    let text = std::fs::read_to_string(&entry).unwrap();
    let real = hex::encode(sha(b"kernel"));
    let forged = hex::encode(sha(b"what the attacker wants measured"));
    assert!(text.contains(&real));

    // The digest changed, the MAC kept: refused, the real digest computed and stored again.
    std::fs::write(&entry, text.replace(&real, &forged)).unwrap();
    assert_eq!(
        c.sha256(&f, "kernel", 1 << 20).unwrap(),
        (sha(b"kernel"), Lookup::Refused)
    );
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Hit);

    // Garbage, or an entry others may write: refused.
    std::fs::write(&entry, b"{not json").unwrap();
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Refused);
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Refused);
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Hit);

    // A valid entry of another file moved to this file's name: refused.
    let g = home.path().join("other");
    std::fs::write(&g, b"kernel").unwrap();
    c.sha256(&g, "kernel", 1 << 20).unwrap();
    std::fs::copy(c.entry_path(&g), &entry).unwrap();
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Refused);

    // An entry made under another home's key: refused.
    let other_home = tempfile::tempdir().unwrap();
    let other = cache(other_home.path());
    other.sha256(&f, "kernel", 1 << 20).unwrap();
    std::fs::copy(other.entry_path(&f), &entry).unwrap();
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Refused);
}

#[test]
fn a_file_changed_moments_ago_is_not_cached() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("vmlinux");
    std::fs::write(&f, b"fresh").unwrap();
    let c = DigestCache::open(home.path()).unwrap();
    assert_eq!(
        c.sha256(&f, "kernel", 1 << 20).unwrap(),
        (sha(b"fresh"), Lookup::Racy)
    );
    assert!(!c.entry_path(&f).exists());
}

#[test]
fn the_cache_is_private_and_bounded() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("vmlinux");
    std::fs::write(&f, vec![7u8; 4096]).unwrap();
    let c = cache(home.path());
    c.sha256(&f, "kernel", 1 << 20).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.path().join(CACHE_DIR)), 0o700);
    assert_eq!(mode(&home.path().join(CACHE_DIR).join("key")), 0o600);
    assert_eq!(mode(&c.entry_path(&f)), 0o600);
    let e = c.sha256(&f, "kernel", 1000).unwrap_err().to_string();
    assert!(
        e.contains("reading the kernel") && e.contains("4096 bytes"),
        "{e}"
    );
    assert!(!format!("{c:?}").contains(&hex::encode(&c.key[..])));
}

#[test]
fn an_exposed_key_is_replaced_voiding_its_entries() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("vmlinux");
    std::fs::write(&f, b"kernel").unwrap();
    cache(home.path()).sha256(&f, "kernel", 1 << 20).unwrap();
    let key = home.path().join(CACHE_DIR).join("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = cache(home.path());
    assert_eq!(c.sha256(&f, "kernel", 1 << 20).unwrap().1, Lookup::Refused);
}
