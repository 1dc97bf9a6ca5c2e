//! CRI image records from the image store, and the lookup kubelet and crictl rely on: an
//! image is named by its id (`sha256:<manifest digest>`, or a unique hex prefix of it), by a
//! reference (`busybox`, `127.0.0.1:5000/app:v1`) or by a digest reference (`app@sha256:…`).

use a3s_image::store::RefRecord;
use a3s_image::{Digest, ImageRef, ImageStore, StoreError};
use k8s_cri::v1 as cri;

/// One image of the store with every name that points at it.
#[derive(Debug)]
pub(crate) struct StoredImage {
    /// The single-platform manifest digest: the CRI image id.
    pub(crate) id: Digest,
    /// The references naming it.
    pub(crate) names: Vec<(ImageRef, RefRecord)>,
}

/// Every image in the store, grouped by manifest, in the store's order.
pub(crate) fn all(store: &ImageStore) -> Result<Vec<StoredImage>, StoreError> {
    let mut out: Vec<StoredImage> = Vec::new();
    for (r, rec) in store.refs()? {
        match out.iter_mut().find(|i| i.id == rec.manifest) {
            Some(i) => i.names.push((r, rec)),
            None => out.push(StoredImage {
                id: rec.manifest.clone(),
                names: vec![(r, rec)],
            }),
        }
    }
    Ok(out)
}

/// The image `key` names, or `None` when the store has none (an unparsable key names none).
pub(crate) fn find(store: &ImageStore, key: &str) -> Result<Option<StoredImage>, StoreError> {
    let images = all(store)?;
    let key = key.trim();
    if key.is_empty() {
        return Ok(None);
    }
    // An id, with or without `sha256:`, possibly shortened (crictl shows 13 characters).
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits = images.iter().filter(|i| i.id.hex().starts_with(hex));
        if let (Some(_), None) = (hits.next(), hits.next()) {
            return Ok(images.into_iter().find(|i| i.id.hex().starts_with(hex)));
        }
    }
    let Ok(reference) = key.parse::<ImageRef>() else {
        return Ok(None);
    };
    let manifest = match store.lookup(&reference) {
        Ok(rec) => rec.manifest,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(images.into_iter().find(|i| i.id == manifest))
}

/// The CRI record of `image` (`size` is its unpacked size, as `crictl images` shows).
pub(crate) fn to_cri(image: &StoredImage, size: u64) -> cri::Image {
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    for (r, rec) in &image.names {
        if r.tag().is_some() {
            repo_tags.push(r.to_string());
        }
        // The digest a registry pull by digest would name: the index when there is one.
        let d = rec.index.as_ref().unwrap_or(&rec.manifest);
        let by_digest = format!("{}@{d}", r.name());
        if !repo_digests.contains(&by_digest) {
            repo_digests.push(by_digest);
        }
    }
    cri::Image {
        id: image.id.to_string(),
        repo_tags,
        repo_digests,
        size,
        uid: None,
        username: String::new(),
        spec: Some(cri::ImageSpec {
            image: image.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// The numeric user of an image's `USER` (`1000`, `1000:1000`) or its name (`nobody`), as
/// CRI splits it between `uid` and `username`.
pub(crate) fn user_of(user: Option<&str>) -> (Option<i64>, String) {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return (None, String::new());
    };
    let name = user.split(':').next().unwrap_or(user);
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_users_as_cri_does() {
        assert_eq!(user_of(None), (None, String::new()));
        assert_eq!(user_of(Some("1000:100")), (Some(1000), String::new()));
        assert_eq!(user_of(Some("0")), (Some(0), String::new()));
        assert_eq!(user_of(Some("nobody")), (None, "nobody".to_owned()));
    }

    #[test]
    fn lists_and_finds_images_by_id_prefix_and_reference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("store");
        // The store keeps names only for content it holds.
        let a = store.write_blob_bytes(b"manifest a").expect("blob");
        let b = store.write_blob_bytes(b"manifest b").expect("blob");
        let index = store.write_blob_bytes(b"index").expect("blob");
        let rec = |m: &Digest, i: Option<&Digest>| RefRecord {
            manifest: m.clone(),
            index: i.cloned(),
        };
        let r1: ImageRef = "busybox:latest".parse().expect("ref");
        let r2: ImageRef = "127.0.0.1:5000/app:v1".parse().expect("ref");
        let r3: ImageRef = "busybox:1.36".parse().expect("ref");
        store.set_ref(&r1, rec(&a, Some(&index))).expect("set");
        store.set_ref(&r2, rec(&b, None)).expect("set");
        store.set_ref(&r3, rec(&a, Some(&index))).expect("set");

        let images = all(&store).expect("all");
        assert_eq!(images.len(), 2);
        let busybox = images.iter().find(|i| i.id == a).expect("a listed");
        assert_eq!(busybox.names.len(), 2);
        let c = to_cri(busybox, 42);
        assert_eq!(c.id, a.to_string());
        assert_eq!(c.size, 42);
        assert_eq!(c.repo_tags.len(), 2);
        assert!(c
            .repo_tags
            .contains(&"docker.io/library/busybox:latest".to_owned()));
        assert_eq!(
            c.repo_digests,
            vec![format!("docker.io/library/busybox@{index}")]
        );

        for key in [
            a.to_string(),
            a.hex().to_owned(),
            a.hex()[..12].to_owned(),
            "busybox".to_owned(),
            "docker.io/library/busybox:1.36".to_owned(),
        ] {
            let found = find(&store, &key).expect("lookup").expect(&key);
            assert_eq!(found.id, a, "{key}");
        }
        let app = find(&store, "127.0.0.1:5000/app:v1")
            .expect("lookup")
            .expect("app");
        assert_eq!(app.id, b);
        assert!(find(&store, "busybox:missing").expect("lookup").is_none());
        assert!(find(&store, "").expect("lookup").is_none());
        assert!(find(&store, "NOT A REF!").expect("lookup").is_none());
        assert!(find(&store, &Digest::of(b"other").to_string())
            .expect("lookup")
            .is_none());
    }
}
