use std::path::Path;

use super::*;
use crate::compose::load;

fn project(text: &str) -> Project {
    load(text, Path::new("/srv/shop"), None).unwrap()
}

#[test]
fn names_and_order_follow_docker_compose() {
    let p = project(
        "services:\n  web:\n    image: n\n    depends_on: [api]\n    ports: ['8080:80']\n  api:\n    image: p\n    depends_on:\n      db: {condition: service_healthy}\n  db:\n    image: pg\n    volumes: ['data:/var/lib/pg']\nvolumes:\n  data:\n",
    );
    let plan = plan(&p).unwrap();
    assert_eq!(
        plan.boxes
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["shop-db-1", "shop-api-1", "shop-web-1"]
    );
    assert_eq!(plan.networks[0].request.name, "shop_default");
    assert_eq!(plan.volumes[0].name, "shop_data");
    let db = &plan.boxes[0].request;
    assert!(
        matches!(&db.mounts[0].source, crate::volumes::MountSource::Volume { name } if name.as_str() == "shop_data")
    );
    assert_eq!(db.net.network.as_deref(), Some("shop_default"));
    assert_eq!(db.net.aliases, ["db"]);
    assert_eq!(
        plan.boxes[1].depends_on,
        [("shop-db-1".to_owned(), Condition::Healthy)]
    );
    assert_eq!(plan.boxes[2].request.net.ports[0].host, 8080);
}

#[test]
fn cycles_and_settings_the_runtime_cannot_do_are_refused() {
    let e = plan(&project(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("cycle among: a, b"), "{e}");
    let e = plan(&project(
        "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {file: ./s.txt}\n",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("x-a3s"), "{e}");
}

#[test]
fn a_confidential_service_gets_its_tee_spec_and_the_project_network() {
    let p = project(
        "services:\n  vault:\n    image: x\n    secrets: [token]\n    x-a3s:\n      tee: simulate\nsecrets:\n  token: {file: ./token.txt}\n",
    );
    let b = &plan(&p).unwrap().boxes[0];
    let tee = b.request.tee.as_ref().unwrap();
    assert_eq!(tee.mode, a3s_vmm::proto::TeeMode::Simulated);
    assert_eq!(tee.secrets[0].name, "token");
    assert!(
        matches!(&tee.secrets[0].source, SecretSource::File { path } if path == Path::new("/srv/shop/./token.txt"))
    );
    assert_eq!(b.request.net.mode, crate::network::NetMode::Bridge);
    assert_eq!(b.request.net.network.as_deref(), Some("shop_default"));
    assert!(!tee.allow_exec);
}

#[test]
fn strict_networks_and_fixed_addresses_reach_the_requests() {
    let p = project(
        "services:\n  a:\n    image: x\n    networks:\n      lan: {ipv4_address: 10.99.0.9, aliases: [alpha]}\nnetworks:\n  lan:\n    ipam:\n      config: [{subnet: 10.99.0.0/24}]\n    x-a3s: {isolation: strict}\n",
    );
    let plan = plan(&p).unwrap();
    assert_eq!(
        plan.networks.len(),
        1,
        "no default network when nobody uses it"
    );
    assert_eq!(plan.networks[0].request.isolation, Isolation::Strict);
    assert_eq!(
        plan.networks[0].request.subnet.as_deref(),
        Some("10.99.0.0/24")
    );
    let net = &plan.boxes[0].request.net;
    assert_eq!(net.ip, Some("10.99.0.9".parse().unwrap()));
    assert_eq!(net.aliases, ["a", "alpha"]);
}

#[test]
fn a_service_on_several_networks_joins_each_with_its_aliases_first_by_name() {
    let p = project(
        "services:\n  api:\n    image: x\n    networks:\n      front: {aliases: [www]}\n      back: {ipv4_address: 10.98.0.9}\nnetworks:\n  front:\n  back:\n    ipam:\n      config: [{subnet: 10.98.0.0/24}]\n",
    );
    let net = &plan(&p).unwrap().boxes[0].request.net;
    let all = net.attachments();
    let names: Vec<&str> = all.iter().map(|a| a.network.as_str()).collect();
    assert_eq!(names, ["shop_back", "shop_front"]);
    assert_eq!(all[0].ip, Some("10.98.0.9".parse().unwrap()));
    assert_eq!(all[0].aliases, ["api"]);
    assert_eq!(all[1].aliases, ["api", "www"]);
}

#[test]
fn a_volume_entry_without_a_source_is_an_anonymous_volume() {
    let p = project(
        "services:\n  db:\n    image: pg\n    volumes: ['/var/lib/pg', '/cache:ro', 'data:/d']\nvolumes:\n  data:\n",
    );
    let plan = plan(&p).unwrap();
    let m = &plan.boxes[0].request.mounts;
    use crate::volumes::MountSource;
    assert_eq!(m[0].source, MountSource::Anonymous);
    assert_eq!(m[0].target, "/var/lib/pg");
    assert_eq!(m[1].source, MountSource::Anonymous);
    assert!(m[1].readonly);
    assert!(matches!(&m[2].source, MountSource::Volume { name } if name.as_str() == "shop_data"));
    // Anonymous volumes are the boxes' own: the project declares none.
    assert_eq!(plan.volumes.len(), 1);
}
