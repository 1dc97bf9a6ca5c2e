//! Storage: reuse across runs, distinct roots per home, atomic creation, modes, concurrency.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use a3s_attestation::Product;
use a3s_simulator::kds::KdsServer;
use a3s_simulator::{ChipConfig, Simulator};

use crate::support::{home, sim, temp_home};

#[test]
fn reopening_a_home_reuses_its_keys() {
    let before = sim().info();
    let reopened = Simulator::open_or_create(home(), Product::Milan).unwrap();
    let after = reopened.info();
    assert_eq!(after.product, Product::Milan);
    for (a, b) in before.products.iter().zip(&after.products) {
        assert_eq!(a.product, b.product);
        assert_eq!(a.ark_fingerprint, b.ark_fingerprint);
        assert_eq!(a.ask_fingerprint, b.ask_fingerprint);
        assert_eq!(a.chips[0], b.chips[0]);
    }
    assert_eq!(
        reopened.ark_der(Product::Turin).unwrap(),
        sim().ark_der(Product::Turin).unwrap()
    );
    // Opening with another default product keeps the others.
    let turin = Simulator::open_or_create(home(), Product::Turin).unwrap();
    assert_eq!(turin.product(), Product::Turin);
    assert_eq!(
        turin.ark_der(Product::Milan).unwrap(),
        sim().ark_der(Product::Milan).unwrap()
    );
}

#[test]
fn fingerprint_is_sha256_of_the_ark() {
    let info = sim().info();
    let milan = info
        .products
        .iter()
        .find(|p| p.product == Product::Milan)
        .unwrap();
    let dir = temp_home();
    let ark = crate::support::write(
        dir.path(),
        "ark.der",
        sim().ark_der(Product::Milan).unwrap(),
    );
    let (ok, out) = crate::support::openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        &ark,
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert!(ok, "{out}");
    let hex = out
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(milan.ark_fingerprint.to_string(), hex);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn stores_keys_privately_and_leaves_no_temporaries() {
    let _ = sim();
    let dir = home().join("simulator");
    assert_eq!(
        entries(&dir),
        [".lock-milan", ".lock-turin", "milan", "turin"]
    );
    let milan = dir.join("milan");
    assert_eq!(
        entries(&milan),
        [
            "ark.der",
            "ark.key",
            "ask.der",
            "ask.key",
            "chips",
            "crl.der",
            "root.json"
        ]
    );
    assert_eq!(mode(&milan.join("ark.key")), 0o600);
    assert_eq!(mode(&milan.join("ask.key")), 0o600);
    assert_eq!(mode(&milan.join("ark.der")), 0o644);
    let chip = milan
        .join("chips")
        .join(sim().default_chip().id().kds_hex(Product::Milan));
    assert_eq!(
        entries(&chip),
        ["chip.json", "secret.bin", "vcek.der", "vcek.key"]
    );
    assert_eq!(mode(&chip.join("vcek.key")), 0o600);
    assert_eq!(mode(&chip.join("secret.bin")), 0o600);
}

/// One fresh home for the tests that need their own: concurrent creation, another ARK,
/// stale temporaries, added chips.
#[test]
fn another_home_gets_another_root_created_once_under_concurrency() {
    let home2 = temp_home();
    // Two openers race on an empty home: one generates, the other waits and reuses.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Simulator::open_or_create(home2.path(), Product::Milan).unwrap());
        let b = s.spawn(|| Simulator::open_or_create(home2.path(), Product::Milan).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let fp = |s: &Simulator| s.info().products[0].ark_fingerprint;
    assert_eq!(fp(&a), fp(&b));
    assert_eq!(a.default_chip().id(), b.default_chip().id());
    assert_ne!(fp(&a), fp(sim()), "another home must have another ARK");
    assert_ne!(a.default_chip().id(), sim().default_chip().id());
    assert_eq!(
        entries(&home2.path().join("simulator")),
        [".lock-milan", "milan"]
    );

    // A temporary directory left by a crash is removed by the next lock holder.
    let stale = home2.path().join("simulator/.tmp-milan-1-0");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("ark.key"), b"half written").unwrap();
    let stale_chip = home2.path().join("simulator/milan/chips/.tmp-0123-1-0");
    std::fs::create_dir(&stale_chip).unwrap();
    // Another product's temporaries belong to that product's lock holder.
    let other = home2.path().join("simulator/.tmp-genoa-1-0");
    std::fs::create_dir(&other).unwrap();
    let mut sim2 = a;
    let config = ChipConfig {
        firmware: (1, 55, 30),
        ..ChipConfig::default_for(Product::Milan)
    };
    let chip = sim2.add_chip(Product::Milan, config).unwrap();
    assert!(!stale.exists());
    assert!(!stale_chip.exists());
    assert!(other.exists());
    std::fs::remove_dir(&other).unwrap();
    assert_eq!(
        sim2.chip(Product::Milan, &chip).unwrap().config().firmware,
        (1, 55, 30)
    );
    let reopened = Simulator::open_or_create(home2.path(), Product::Milan).unwrap();
    assert_eq!(reopened.info().products[0].chips.len(), 2);
    assert_eq!(reopened.default_chip().id(), sim2.default_chip().id());

    // The added chip is served by the KDS, and its VCEK chains to the home's root.
    let server = KdsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(reopened)).unwrap();
    let t = config.tcb;
    let url = format!(
        "{}/vcek/v1/Milan/{}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        server.base_url(),
        chip.kds_hex(Product::Milan),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    );
    let body = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(body, sim2.vcek_der(Product::Milan, &chip).unwrap());
    let dir = temp_home();
    let ark = crate::support::pem_of(dir.path(), "ark", sim2.ark_der(Product::Milan).unwrap());
    let ask = crate::support::pem_of(dir.path(), "ask", sim2.ask_der(Product::Milan).unwrap());
    let vcek = crate::support::pem_of(dir.path(), "vcek", &body);
    let (ok, out) =
        crate::support::openssl(&["verify", "-CAfile", &ark, "-untrusted", &ask, &vcek]);
    assert!(ok, "{out}");
}
