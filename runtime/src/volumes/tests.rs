use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::home::A3sHome;

fn parse(s: &str) -> MountSpec {
    MountSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn why(s: &str) -> String {
    match MountSpec::parse(s) {
        Err(VolumeError::Spec { why, .. }) => why,
        other => panic!("{s}: expected a spec error, got {other:?}"),
    }
}

#[test]
fn parses_named_volumes_and_bind_mounts() {
    let v = parse("data:/var/lib/data");
    assert_eq!(
        v.source,
        MountSource::Volume {
            name: "data".parse().unwrap()
        }
    );
    assert_eq!(v.target, "/var/lib/data");
    assert!(!v.readonly);
    let b = parse("/srv/www:/usr/share/www:ro");
    assert_eq!(
        b.source,
        MountSource::Bind {
            path: PathBuf::from("/srv/www")
        }
    );
    assert!(b.readonly);
    assert!(!parse("/srv:/x:rw").readonly);
    // Normalised guest paths, so duplicates are caught however they are spelt.
    assert_eq!(parse("v1:/a//b/./c/").target, "/a/b/c");
    assert_eq!(parse("/srv/:/x").to_string(), "/srv:/x");
    assert_eq!(
        parse("web.data_1-x:/d:ro").to_string(),
        "web.data_1-x:/d:ro"
    );
}

#[test]
fn rejects_bad_forms_with_the_reason() {
    assert!(why("data").contains("expected SOURCE:/guest/path"));
    assert!(why("/data:bogus").contains("unknown option \"bogus\""));
    assert!(why("./here:/x").contains("is not absolute"));
    assert!(why("rel/dir:/x").contains("is not absolute"));
    assert!(why("~/dir:/x").contains("is not absolute"));
    assert!(why("vol:relative").contains("guest path \"relative\" is not absolute"));
    assert!(why("vol:").contains("guest path is empty"));
    assert!(why(":/x").contains("source"));
    assert!(why("vol:/x:rx").contains("unknown option \"rx\""));
    assert!(why("vol:/x:ro,rw").contains("contradict"));
    assert!(why("vol:/x:ro,").contains("unknown option \"\""));
    assert!(why("vol:/x:ro:extra").contains("too many ':'"));
    assert!(why("vol:/").contains("root directory"));
    assert!(why("vol:/a/../b").contains(".."));
    assert!(why("/a/../b:/x").contains(".."));
    assert!(why("vol:/.a3s/x").contains("reserved"));
    assert!(why("x:/d").contains("not a volume name"));
    assert!(why("-bad:/d").contains("not a volume name"));
    let e = MountSpec::parse("data").unwrap_err();
    assert!(e.hint().unwrap().contains("-v NAME:/guest/path"));
}

#[test]
fn nocopy_is_parsed_alone_and_with_ro_for_named_volumes_only() {
    let v = parse("data:/etc:nocopy");
    assert!(v.nocopy && !v.readonly);
    assert_eq!(v.to_string(), "data:/etc:nocopy");
    let v = parse("data:/etc:ro,nocopy");
    assert!(v.nocopy && v.readonly);
    assert_eq!(v.to_string(), "data:/etc:ro,nocopy");
    assert_eq!(
        parse("data:/etc:nocopy,ro").to_string(),
        "data:/etc:ro,nocopy"
    );
    assert!(!parse("data:/etc:rw").nocopy);
    assert!(why("/srv:/x:nocopy").contains("named volumes only"));
    assert!(why("/srv:/x:ro,nocopy").contains("named volumes only"));
}

#[test]
fn mounts_recorded_before_nocopy_still_load() {
    let old = r#"[{"source":{"type":"volume","name":"data"},"target":"/d","readonly":true}]"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MOUNTS_FILE), old).unwrap();
    let m = load_mounts(dir.path()).unwrap();
    assert!(m[0].readonly && !m[0].nocopy);
    let g: a3s_vmm::proto::GuestMount =
        serde_json::from_str(r#"{"tag":"a3sv0","path":"/d"}"#).unwrap();
    assert!(!g.copy_up);
}

#[test]
fn a_missing_bind_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = parse(&format!("{}:/x", dir.path().display()));
    ok.check_host().unwrap();
    let missing = dir.path().join("nope");
    let m = parse(&format!("{}:/x", missing.display()));
    match m.check_host() {
        Err(e @ VolumeError::MissingHostDir(_)) => {
            assert!(e.to_string().contains("nope"));
            assert!(e.hint().unwrap().contains("mkdir -p"));
        }
        other => panic!("{other:?}"),
    }
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    assert!(parse(&format!("{}:/x", file.display()))
        .check_host()
        .is_err());
}

#[test]
fn duplicate_guest_paths_are_refused() {
    let a = [parse("v1:/d"), parse("/tmp:/d/")];
    assert!(matches!(
        check_targets(&a),
        Err(VolumeError::DuplicateTarget(t)) if t == "/d"
    ));
    check_targets(&[parse("v1:/d"), parse("v2:/e")]).unwrap();
}

#[test]
fn guest_mounts_get_one_tag_each() {
    let g = guest_mounts(&[parse("v1:/d"), parse("/tmp:/e:ro")]);
    assert_eq!(g[0].tag, "a3sv0");
    assert_eq!(g[1].tag, "a3sv1");
    assert_eq!(g[1].path, "/e");
    assert!(g[1].readonly && !g[0].readonly);
    // Named volumes are filled from the image unless nocopy; bind mounts never.
    assert!(g[0].copy_up && !g[1].copy_up);
    assert!(!guest_mounts(&[parse("v1:/d:nocopy")])[0].copy_up);
    assert!(g.iter().all(|m| m.tag.len() <= a3s_vmm::fs::MAX_TAG_LEN));
}

fn store() -> (tempfile::TempDir, Volumes) {
    let dir = tempfile::tempdir().unwrap();
    let v = Volumes::open(&A3sHome::at(dir.path()));
    (dir, v)
}

#[test]
fn create_is_idempotent_and_lists_by_name() {
    let (_d, v) = store();
    let name: VolumeName = "zeta".parse().unwrap();
    let (rec, created) = v.create(&name).unwrap();
    assert!(created);
    let (again, created) = v.create(&name).unwrap();
    assert!(!created);
    assert_eq!(again, rec);
    v.create(&"alpha".parse().unwrap()).unwrap();
    let names: Vec<String> = v
        .list()
        .unwrap()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert!(v.data_dir(&name).is_dir());
    let info = v.info(&rec).unwrap();
    assert_eq!(info.mountpoint, v.data_dir(&name));
    assert!(info.used_by.is_empty());
}

#[test]
fn concurrent_creates_make_each_volume_once() {
    let (_d, v) = store();
    let v = Arc::new(v);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let v = v.clone();
            std::thread::spawn(move || {
                let shared: VolumeName = "shared".parse().unwrap();
                let own: VolumeName = format!("own{i}").parse().unwrap();
                let (s, created_shared) = v.create(&shared).unwrap();
                v.create(&own).unwrap();
                (s, created_shared)
            })
        })
        .collect();
    let results: Vec<(VolumeRecord, bool)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1);
    assert!(results.iter().all(|(r, _)| *r == results[0].0));
    assert_eq!(v.list().unwrap().len(), 9);
}

#[test]
fn a_volume_in_use_is_refused_unless_forced_and_prune_keeps_it() {
    let (d, v) = store();
    let box_dir = d
        .path()
        .join("boxes")
        .join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&box_dir).unwrap();
    // Attaching creates the missing volume and records the box as a user (no state.json yet:
    // a box being created counts as a user too).
    let owner: crate::state::BoxId = "0123456789abcdef0123456789abcdef".parse().unwrap();
    v.attach(&box_dir, &owner, &[parse("used:/d"), parse("/tmp:/t")])
        .unwrap();
    v.create(&"idle".parse().unwrap()).unwrap();
    let used: VolumeName = "used".parse().unwrap();
    let users = v.users().unwrap();
    assert_eq!(users[&used].len(), 1);
    assert_eq!(users[&used][0].state, "creating");
    match v.remove(&used, false) {
        Err(e @ VolumeError::InUse { .. }) => {
            assert!(e.to_string().contains("0123456789abcdef"));
            assert!(e.hint().unwrap().contains("--force"));
        }
        other => panic!("{other:?}"),
    }
    // Without --all only anonymous volumes go (Docker 23's rule): "idle" is named.
    assert!(v.prune(false).unwrap().is_empty());
    let pruned = v.prune(true).unwrap();
    assert_eq!(pruned, vec!["idle".parse::<VolumeName>().unwrap()]);
    assert!(v.get(&used).is_ok());
    v.remove(&used, true).unwrap();
    assert!(matches!(v.get(&used), Err(VolumeError::NotFound(_))));
    assert!(matches!(
        v.remove(&used, false),
        Err(VolumeError::NotFound(_))
    ));
    // A box that mounted a force-removed volume fails to resolve it, by name.
    let mounts = load_mounts(&box_dir).unwrap();
    assert!(matches!(
        resolve(&v, &mounts),
        Err(VolumeError::NotFound(n)) if n == "used"
    ));
}

#[test]
fn other_volume_versions_are_refused() {
    let (d, v) = store();
    let name: VolumeName = "vv".parse().unwrap();
    v.create(&name).unwrap();
    let path = d.path().join("volumes/vv/volume.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 7");
    std::fs::write(&path, text).unwrap();
    assert!(matches!(
        v.get(&name),
        Err(VolumeError::Version { found: 7, .. })
    ));
}

#[test]
fn anonymous_volumes_parse_from_a_guest_path_alone() {
    let a = parse("/data");
    assert_eq!(a.source, MountSource::Anonymous);
    assert_eq!(a.target, "/data");
    assert!(copies_up(&a));
    let ro = parse("/var/lib//db/:ro,nocopy");
    assert_eq!(ro.source, MountSource::Anonymous);
    assert_eq!(
        (ro.target.as_str(), ro.readonly, ro.nocopy),
        ("/var/lib/db", true, true)
    );
    assert_eq!(ro.to_string(), "/var/lib/db:ro,nocopy");
    // Two absolute paths are still a bind mount.
    assert!(matches!(parse("/srv:/x").source, MountSource::Bind { .. }));
}

#[test]
fn image_volumes_become_anonymous_mounts_unless_a_mount_targets_them() {
    let mounts = [parse("named:/var/lib/db")];
    let image = ["/var/lib/db".to_owned(), "/cache/".to_owned()];
    let all = with_image_volumes(&mounts, &image).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], mounts[0]);
    assert_eq!(all[1].source, MountSource::Anonymous);
    assert_eq!(all[1].target, "/cache");
    let bad = with_image_volumes(&[], &["relative".to_owned()]).unwrap_err();
    assert!(bad.to_string().contains("VOLUME"), "{bad}");
}

#[test]
fn anonymous_volumes_are_named_per_box_and_removed_with_their_owner_only() {
    let (d, v) = store();
    let ids: Vec<crate::state::BoxId> = ["aa", "bb"]
        .iter()
        .map(|p| p.repeat(16).parse().unwrap())
        .collect();
    let dirs: Vec<PathBuf> = ids
        .iter()
        .map(|id| d.path().join("boxes").join(id.as_str()))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    let a = v
        .attach(&dirs[0], &ids[0], &[parse("/data"), parse("keep:/k")])
        .unwrap();
    let b = v.attach(&dirs[1], &ids[1], &[parse("/data")]).unwrap();
    let name_of = |m: &MountSpec| match &m.source {
        MountSource::Volume { name } => name.clone(),
        other => panic!("{other:?}"),
    };
    let (na, nb) = (name_of(&a[0]), name_of(&b[0]));
    assert_ne!(na, nb);
    assert_eq!(na.as_str().len(), 64);
    assert!(na.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    // mounts.json names the volume, so a restart mounts the same one.
    assert_eq!(load_mounts(&dirs[0]).unwrap(), a);
    let rec = v.get(&na).unwrap();
    assert!(rec.anonymous);
    assert_eq!(rec.owner.as_deref(), Some(ids[0].as_str()));
    assert!(v.info(&rec).unwrap().anonymous);
    assert!(!v.get(&"keep".parse().unwrap()).unwrap().anonymous);
    // While box A exists nothing of it goes; prune keeps volumes in use.
    assert!(v.remove_anonymous(&ids[0]).unwrap().is_empty());
    assert!(v.prune(false).unwrap().is_empty());
    // Box A gone: its anonymous volume goes with it, the named one and B's stay.
    std::fs::remove_dir_all(&dirs[0]).unwrap();
    assert_eq!(v.remove_anonymous(&ids[0]).unwrap(), vec![na.clone()]);
    assert!(matches!(v.get(&na), Err(VolumeError::NotFound(_))));
    assert!(v.get(&nb).is_ok() && v.get(&"keep".parse().unwrap()).is_ok());
    // Box B removed without -v: its volume dangles until prune, which keeps named ones.
    std::fs::remove_dir_all(&dirs[1]).unwrap();
    assert_eq!(v.prune(false).unwrap(), vec![nb]);
    assert!(v.get(&"keep".parse().unwrap()).is_ok());
}
