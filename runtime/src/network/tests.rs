use super::*;

#[test]
fn resolve_picks_distinct_free_ports_for_zero() {
    let net = BoxNet {
        ports: vec![PortMap::tcp(0, 80), PortMap::tcp(0, 81)],
        ..BoxNet::default()
    }
    .resolve()
    .unwrap();
    assert_ne!(net.ports[0].host, 0);
    assert_ne!(net.ports[0].host, net.ports[1].host);
    net.check_free().unwrap();
}

#[test]
fn a_port_in_use_is_an_error_naming_it() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let e = BoxNet {
        ports: vec![PortMap::tcp(port, 80)],
        ..BoxNet::default()
    }
    .resolve()
    .unwrap_err();
    assert!(
        matches!(&e, NetError::PortInUse { addr, .. } if *addr == format!("127.0.0.1:{port}/tcp")),
        "{e}"
    );
}

#[test]
fn none_mode_refuses_ports_and_has_no_kernel_arg_or_device() {
    let net = BoxNet {
        mode: NetMode::None,
        ..BoxNet::default()
    };
    assert!(net.kernel_arg().is_none() && net.user_net().is_none());
    assert!(net.nameservers().is_empty());
    let e = BoxNet {
        ports: vec![PortMap::tcp(1, 1)],
        ..net
    }
    .resolve();
    assert!(matches!(e, Err(NetError::PortsWithoutNetwork)));
}

#[test]
fn net_file_round_trips_and_defaults_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(BoxNet::load(dir.path()).unwrap(), BoxNet::default());
    let net = BoxNet {
        ports: vec![PortMap::tcp(5, 6)],
        dns: vec!["1.1.1.1".into()],
        ..BoxNet::default()
    };
    net.save(dir.path()).unwrap();
    assert_eq!(BoxNet::load(dir.path()).unwrap(), net);
    assert_eq!(net.nameservers(), ["1.1.1.1"]);
}

#[test]
fn network_flags_parse_to_modes_or_network_names() {
    assert_eq!(parse_network("tsi").unwrap(), (NetMode::Tsi, None));
    assert_eq!(parse_network("none").unwrap(), (NetMode::None, None));
    assert_eq!(
        parse_network("lan-1").unwrap(),
        (NetMode::Bridge, Some("lan-1".into()))
    );
    assert!(matches!(
        parse_network("bad name"),
        Err(NetError::BadNetworkName(_))
    ));
}

#[test]
fn hostnames_and_add_hosts_are_checked() {
    check_hostname("web-1.example").unwrap();
    for bad in ["", "-web", "web-", "we_b", "a..b", &"x".repeat(64)] {
        assert!(check_hostname(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_add_host("db:10.0.0.5").unwrap(),
        ("db".into(), "10.0.0.5".into())
    );
    for (bad, needle) in [
        ("db", "expected NAME:IP"),
        ("db:nope", "not an IP address"),
        ("d b:10.0.0.5", "only letters"),
    ] {
        let e = parse_add_host(bad).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn a_linked_bridge_box_gets_its_address_and_a_tap_nic() {
    let net = BoxNet {
        mode: NetMode::Bridge,
        network: Some("lan".into()),
        ip: Some(Ipv4Addr::new(10, 88, 0, 7)),
        link: Some(Link {
            bridge: "a3s-br-01234567".into(),
            tap: "a3s-tp-89abcdef".into(),
            mac: "02:a3:89:ab:cd:ef".into(),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 88, 0, 1),
        }),
        ..BoxNet::default()
    };
    // Bridge NICs are described in the setup, not on the measured command line.
    assert_eq!(net.kernel_arg(), None);
    assert!(
        matches!(net.nic(), Some(a3s_vmm::net::Nic::Taps(t)) if t.len() == 1 && t[0].ifname == "a3s-tp-89abcdef")
    );
    assert_eq!(
        net.guest_nics(),
        [a3s_vmm::proto::GuestNic {
            mac: "02:a3:89:ab:cd:ef".into(),
            addrs: vec![a3s_vmm::proto::GuestAddr {
                addr: Ipv4Addr::new(10, 88, 0, 7).into(),
                prefix: 24,
            }],
            gateways: vec![Ipv4Addr::new(10, 88, 0, 1).into()],
            routes: Vec::new(),
        }]
    );
    // The network's DNS server on the gateway is the default nameserver.
    assert_eq!(net.nameservers(), ["10.88.0.1"]);
    // Published ports, a fixed address and aliases are bridge features now.
    let bridged = BoxNet {
        ports: vec![PortMap::tcp(0, 80)],
        aliases: vec!["db".into()],
        ..net
    }
    .resolve()
    .unwrap();
    assert_ne!(bridged.ports[0].host, 0);
    let e = BoxNet {
        aliases: vec!["db".into()],
        ..BoxNet::default()
    }
    .resolve()
    .unwrap_err();
    assert!(matches!(e, NetError::BridgeOnly));
    let e = BoxNet {
        aliases: vec!["-bad".into()],
        ..bridged
    }
    .resolve()
    .unwrap_err();
    assert!(matches!(e, NetError::Alias(_)));
}

#[test]
fn old_net_files_load_and_extra_networks_follow_the_first() {
    // A net.json written before boxes could be on several networks.
    let old = r#"{"mode":"bridge","ports":[],"dns":[],"network":"lan","ip":"10.88.0.7","aliases":["db"]}"#;
    let mut net: BoxNet = serde_json::from_str(old).unwrap();
    assert!(net.extra.is_empty());
    assert_eq!(net.attachments().len(), 1);
    assert!(net.is_on("lan") && !net.is_on("back"));
    let back = Attachment {
        network: "back".into(),
        ip: Some(Ipv4Addr::new(10, 89, 0, 3)),
        aliases: vec!["store".into()],
        link: None,
    };
    let mut all = net.attachments();
    all.push(back.clone());
    net.set_attachments(all);
    let json = serde_json::to_string(&net).unwrap();
    let again: BoxNet = serde_json::from_str(&json).unwrap();
    assert_eq!(again.attachments()[1], back);
    // Leaving the first network makes the next one first (and the default route's).
    let rest = again
        .attachments()
        .into_iter()
        .filter(|a| a.network != "lan")
        .collect();
    let mut left = again;
    left.set_attachments(rest);
    assert_eq!(left.network.as_deref(), Some("back"));
    assert_eq!(left.aliases, ["store"]);
    assert!(left.extra.is_empty());
    left.set_attachments(Vec::new());
    assert_eq!(left.mode, NetMode::None);
    // Each network's NIC comes in the guest's setup; only the first carries the gateway.
    let link = |tap: &str, mac: &str, gw: [u8; 4]| Link {
        bridge: "a3s-br-x".into(),
        tap: tap.into(),
        mac: mac.into(),
        prefix: 24,
        gateway: Ipv4Addr::from(gw),
    };
    let two = BoxNet {
        mode: NetMode::Bridge,
        network: Some("lan".into()),
        ip: Some(Ipv4Addr::new(10, 88, 0, 7)),
        link: Some(link("a3s-tp-1", "02:a3:00:00:00:01", [10, 88, 0, 1])),
        extra: vec![Attachment {
            link: Some(link("a3s-tp-2", "02:a3:00:00:00:02", [10, 89, 0, 1])),
            ..back
        }],
        ..BoxNet::default()
    };
    let nics = two.guest_nics();
    assert_eq!(nics.len(), 2);
    assert_eq!(nics[0].gateways, [Ipv4Addr::new(10, 88, 0, 1)]);
    assert_eq!(nics[1].addrs[0].addr, Ipv4Addr::new(10, 89, 0, 3));
    assert!(nics[1].gateways.is_empty());
    assert!(matches!(two.nic(), Some(a3s_vmm::net::Nic::Taps(t)) if t.len() == 2));
}
