use std::io::Write;

use super::*;

/// A real image: one gzip layer with `/etc/os-release` and `/bin/app` (mode 0755), a config,
/// and the OCI manifest naming both by digest.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

fn layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        tar.append_data(&mut h, path, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", hex::encode(Sha256::digest(blob))),
        "size": blob.len(),
    })
}

fn image() -> Image {
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/app"]},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layers = vec![
        layer(&[
            ("etc/os-release", b"ID=test\n", 0o644),
            ("bin/app", b"#!/bin/sh\necho app\n", 0o755),
        ]),
        // A second layer deleting the first one's file (a whiteout) and adding one.
        layer(&[
            ("etc/.wh.os-release", b"", 0o644),
            ("etc/added", b"2\n", 0o600),
        ]),
    ];
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Image {
        manifest,
        config,
        layers,
    }
}

impl Image {
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.manifest)))
    }

    fn stream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.write_all(&(self.manifest.len() as u64).to_be_bytes())
            .unwrap();
        out.extend_from_slice(&self.manifest);
        out.extend_from_slice(&self.config);
        for l in &self.layers {
            out.extend_from_slice(l);
        }
        out
    }
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("c1");
    (t, d)
}

#[test]
fn an_allowed_image_is_unpacked_layer_by_layer() {
    let img = image();
    let (_t, d) = dir();
    let got = receive(img.stream().as_slice(), &[img.digest()], &d).unwrap();
    assert_eq!(
        got,
        Received {
            manifest: img.digest(),
            layers: 2
        }
    );
    let root = d.join("rootfs");
    assert_eq!(
        fs::read_to_string(root.join("bin/app")).unwrap(),
        "#!/bin/sh\necho app\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root.join("bin/app"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!root.join("etc/os-release").exists(), "whiteout applied");
    assert_eq!(fs::read_to_string(root.join("etc/added")).unwrap(), "2\n");
    assert!(!d.join("layer.partial").exists(), "scratch file removed");
}

#[test]
fn an_image_off_the_allow_list_is_refused_before_any_blob_is_read() {
    let img = image();
    let (_t, d) = dir();
    let other = format!("sha256:{}", "0".repeat(64));
    let e = receive(img.stream().as_slice(), &[other], &d).unwrap_err();
    assert!(e.contains("not on this pod's measured allow-list"), "{e}");
    assert!(e.contains(&img.digest()), "{e}");
    assert!(!d.exists(), "nothing left behind");
    let e = receive(img.stream().as_slice(), &[], &d).unwrap_err();
    assert!(e.contains("allow-list"), "{e}");
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_of_it_is_unpacked() {
    let mut img = image();
    let digest = img.digest();
    // The host flips one bit of the second layer: same length, another hash.
    let last = img.layers[1].len() - 10;
    img.layers[1][last] ^= 1;
    let (_t, d) = dir();
    let e = receive(img.stream().as_slice(), &[digest], &d).unwrap_err();
    assert!(e.contains("layer 1"), "{e}");
    assert!(e.contains("not the manifest's"), "{e}");
    assert!(!d.exists(), "the container directory is removed");
}

#[test]
fn a_tampered_config_or_a_short_stream_is_refused() {
    let mut img = image();
    let digest = img.digest();
    img.config[3] ^= 1;
    let (_t, d) = dir();
    let e = receive(img.stream().as_slice(), std::slice::from_ref(&digest), &d).unwrap_err();
    assert!(e.contains("the image config"), "{e}");

    let img = image();
    let mut s = img.stream();
    s.truncate(s.len() - 5);
    let e = receive(s.as_slice(), &[digest], &d).unwrap_err();
    assert!(e.contains("ended after"), "{e}");
    assert!(!d.exists());
}

#[test]
fn a_huge_manifest_length_is_refused_without_reading_it() {
    let (_t, d) = dir();
    let s = (MAX_MANIFEST_BYTES + 1).to_be_bytes();
    let e = receive(s.as_slice(), &[], &d).unwrap_err();
    assert!(e.contains("limit"), "{e}");
}

#[test]
fn an_existing_directory_is_never_reused() {
    let img = image();
    let (_t, d) = dir();
    fs::create_dir(&d).unwrap();
    fs::write(d.join("keep"), b"x").unwrap();
    assert!(receive(img.stream().as_slice(), &[img.digest()], &d).is_err());
    assert!(
        d.join("keep").exists(),
        "another container's files are untouched"
    );
}

#[test]
fn only_container_directories_are_accepted() {
    assert!(container_dir(Path::new("/containers/abc")).is_ok());
    for bad in [
        "/containers",
        "/containers/a/b",
        "/etc",
        "/containers/../etc",
        "containers/a",
    ] {
        assert!(container_dir(Path::new(bad)).is_err(), "{bad}");
    }
}

#[test]
fn mount_copies_go_only_to_a_numbered_mount_of_an_existing_container() {
    for bad in [
        "/containers/x",
        "/containers/x/mounts",
        "/containers/x/mounts/1a",
        "/containers/x/other/1",
        "/containers/../etc/mounts/1",
        "/tmp/x/mounts/1",
    ] {
        let e = mount_dir(Path::new(bad)).unwrap_err();
        assert!(e.contains("not a mount copy"), "{bad}: {e}");
    }
    let e = mount_dir(Path::new("/containers/no-such-container-a3s/mounts/0")).unwrap_err();
    assert!(e.contains("its image comes first"), "{e}");
}

#[test]
fn a_mount_copy_is_unpacked_in_place_and_an_oversized_one_refused() {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("config");
    fs::create_dir_all(src.join("..data")).unwrap();
    fs::write(src.join("..data/app.conf"), "port=80\n").unwrap();
    std::os::unix::fs::symlink("..data/app.conf", src.join("app.conf")).unwrap();
    let stream = a3s_vmm::copy::pack(&src, POD_MOUNT_NAME, Vec::new()).unwrap();
    let (_guard, root) = dir();
    let dest = root.join("mounts/0");
    mount_in(&stream[..], &dest).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("app.conf")).unwrap(),
        "port=80\n"
    );
    // A second copy replaces the first.
    fs::write(src.join("..data/app.conf"), "port=81\n").unwrap();
    let stream = a3s_vmm::copy::pack(&src, POD_MOUNT_NAME, Vec::new()).unwrap();
    mount_in(&stream[..], &dest).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("app.conf")).unwrap(),
        "port=81\n"
    );

    let big = host.path().join("big");
    let size = usize::try_from(MAX_POD_MOUNT_BYTES).unwrap() + (5 << 20);
    fs::write(&big, vec![0u8; size]).unwrap();
    let stream = a3s_vmm::copy::pack(&big, POD_MOUNT_NAME, Vec::new()).unwrap();
    let dest = root.join("mounts/1");
    let e = mount_in(&stream[..], &dest).unwrap_err();
    assert!(e.contains("larger than"), "{e}");
    assert!(!dest.exists());
}
