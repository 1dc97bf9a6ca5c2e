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
    assert_eq!(
        net.kernel_arg().as_deref(),
        Some("a3s.net=10.88.0.7/24,10.88.0.1")
    );
    assert!(matches!(net.nic(), Some(a3s_vmm::net::Nic::Tap(t)) if t.ifname == "a3s-tp-89abcdef"));
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
fn cap_net_admin_is_read_from_the_effective_set() {
    let with = "Name:\tx\nCapEff:\t000001fffeffffff\n";
    let without = "CapEff:\t000001fffeffefff\n";
    assert!(cap_eff(with).unwrap() & (1 << CAP_NET_ADMIN) != 0);
    assert!(cap_eff(without).unwrap() & (1 << CAP_NET_ADMIN) == 0);
    assert_eq!(cap_eff("nothing"), None);
}
