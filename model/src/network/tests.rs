//! The networking rules, one test each, and the laws every sequence keeps.

use std::net::Ipv4Addr;

use super::*;
use proptest::prelude::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

/// TCP `host:port` to the container's port 80.
fn p(host: &str, port: u16) -> Port {
    Port {
        host_ip: ip(host),
        host_port: port,
        proto: Proto::Tcp,
        container_port: 80,
    }
}

fn small() -> Networks {
    let mut n = Networks::new();
    n.create("net1", "berth1", Subnet::new(ip("10.9.0.0"), 29), None)
        .expect("create");
    n
}

#[test]
fn without_a_subnet_the_first_free_10_89_n_is_taken() {
    let mut m = Networks::new();
    m.host_subnet(Subnet::new(ip("10.89.0.1"), 24));
    m.create("a", "a", Subnet::new(ip("10.89.1.0"), 24), None)
        .expect("a");
    assert_eq!(m.free_subnet(), Some(Subnet::new(ip("10.89.2.0"), 24)));
    assert_eq!(
        m.create("b", "b", Subnet::new(ip("10.89.0.0"), 16), None),
        Err(Refusal::SubnetOverlaps("a".into()))
    );
    assert_eq!(
        m.create("b", "b", Subnet::new(ip("10.89.0.128"), 25), None),
        Err(Refusal::SubnetOverlaps("the host".into()))
    );
}

#[test]
fn a_network_name_is_dockers() {
    let mut m = Networks::new();
    let sub = Subnet::new(ip("10.9.0.0"), 24);
    for bad in ["", "-n", "_n", "n/0", "n 0", "n0:"] {
        assert_eq!(
            m.create(bad, "b", sub, None),
            Err(Refusal::BadName(bad.into())),
            "{bad:?}"
        );
    }
    m.create("n0_a.b-c", "b", sub, None).expect("a good name");
}

#[test]
fn allocation_skips_network_gateway_and_broadcast_and_goes_up() {
    let mut n = small();
    for c in ["a", "b", "c", "d", "e"] {
        n.run(c, Mode::Bridge, Some("net1"), None).expect("run");
    }
    let ips: Vec<Ipv4Addr> = n.endpoints().iter().map(|e| e.ip).collect();
    assert_eq!(
        ips,
        ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
    );
    assert_eq!(
        n.run("f", Mode::Bridge, Some("net1"), None),
        Err(Refusal::SubnetExhausted("net1".into()))
    );
    assert!(
        n.containers().all(|(c, _)| c != "f"),
        "a refused run leaves no container"
    );
}

#[test]
fn a_released_address_is_handed_out_again() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    n.run("b", Mode::Bridge, Some("net1"), None).expect("run");
    n.remove_container("a").expect("rm");
    n.run("c", Mode::Bridge, Some("net1"), None).expect("run");
    assert_eq!(
        n.endpoints()
            .iter()
            .find(|e| e.container == "c")
            .map(|e| e.ip),
        Some(ip("10.9.0.2"))
    );
}

#[test]
fn a_fixed_address_must_be_free_and_inside() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), Some(ip("10.9.0.5")))
        .expect("run");
    assert_eq!(
        n.run("b", Mode::Bridge, Some("net1"), Some(ip("10.9.0.5"))),
        Err(Refusal::AddressUnavailable(ip("10.9.0.5")))
    );
    assert_eq!(
        n.run("b", Mode::Bridge, Some("net1"), Some(ip("10.9.0.1"))),
        Err(Refusal::AddressUnavailable(ip("10.9.0.1")))
    );
    assert_eq!(
        n.run("b", Mode::Bridge, Some("net1"), Some(ip("10.9.1.5"))),
        Err(Refusal::AddressOutsideSubnet(ip("10.9.1.5")))
    );
}

#[test]
fn names_are_unique_and_subnets_do_not_overlap() {
    let mut n = small();
    assert_eq!(
        n.create("net1", "x", Subnet::new(ip("10.8.0.0"), 24), None),
        Err(Refusal::NetworkExists("net1".into()))
    );
    assert_eq!(
        n.create("net2", "x", Subnet::new(ip("10.9.0.0"), 16), None),
        Err(Refusal::SubnetOverlaps("net1".into()))
    );
    assert_eq!(
        n.create(
            "net2",
            "x",
            Subnet::new(ip("10.8.0.0"), 24),
            Some(ip("10.8.0.255"))
        ),
        Err(Refusal::BadGateway(ip("10.8.0.255")))
    );
}

#[test]
fn a_network_with_endpoints_cannot_be_removed() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    assert_eq!(n.remove("net1"), Err(Refusal::NetworkInUse("net1".into())));
    n.remove_container("a").expect("rm");
    n.remove("net1").expect("rm");
}

#[test]
fn mac_and_veth_name_follow_docker_and_the_kernel_limit() {
    assert_eq!(mac_for(ip("172.30.0.2")), [0x02, 0x42, 172, 30, 0, 2]);
    let name = veth_name("a-very-long-container-name", 0x1234);
    assert!(name.len() <= 15, "{name}");
    assert_eq!(name, "bvaverylong1234");
}

#[test]
fn container_mode_needs_the_other_container_and_only_bridge_mode_connects() {
    let mut n = small();
    assert_eq!(
        n.run("b", Mode::Container("a".into()), None, None),
        Err(Refusal::NoSuchContainer("a".into()))
    );
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    n.run("b", Mode::Container("a".into()), None, None)
        .expect("run");
    n.run("h", Mode::Host, None, None).expect("run");
    assert_eq!(
        n.connect("h", "net1", None),
        Err(Refusal::NotBridgeMode("h".into()))
    );
    assert_eq!(
        n.connect("a", "net1", None),
        Err(Refusal::AlreadyConnected("a".into(), "net1".into()))
    );
}

#[test]
fn a_host_port_is_published_once_and_0000_conflicts_with_all() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    n.run("b", Mode::Bridge, Some("net1"), None).expect("run");
    n.publish("a", p("127.0.0.1", 8080)).expect("publish");
    assert_eq!(
        n.publish("b", p("127.0.0.1", 8080)),
        Err(Refusal::PortInUse(ip("127.0.0.1"), 8080, Proto::Tcp))
    );
    assert_eq!(
        n.publish("b", p("0.0.0.0", 8080)),
        Err(Refusal::PortInUse(ip("0.0.0.0"), 8080, Proto::Tcp))
    );
    n.publish(
        "b",
        Port {
            proto: Proto::Udp,
            ..p("127.0.0.1", 8080)
        },
    )
    .expect("another protocol");
    n.publish("b", p("127.0.0.2", 8080))
        .expect("another address");
    assert_eq!(
        n.publish("gone", p("127.0.0.1", 9090)),
        Err(Refusal::NoSuchContainer("gone".into()))
    );
    let k = n.kernel();
    assert_eq!(
        k.dnat.get(&(ip("127.0.0.1"), 8080, Proto::Tcp)),
        Some(&(ip("10.9.0.2"), 80))
    );
    n.remove_container("a").expect("rm");
    n.publish("b", p("127.0.0.1", 8080))
        .expect("released with its container");
}

#[test]
fn the_kernel_state_follows_the_model() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    let k = n.kernel();
    assert!(k.bridges.contains("berth1"));
    assert!(k.addresses.contains(&("berth1".into(), ip("10.9.0.1"), 29)));
    assert_eq!(k.veths.get(&veth_name("a", 0)), Some(&"berth1".to_string()));
    assert!(k.masquerade.contains(&Subnet::new(ip("10.9.0.0"), 29)));
}

fn lands(n: &Networks, from: Option<&str>, dst: &str, port: u16) -> Option<(String, u16)> {
    n.tcp_lands(from, ip(dst), port)
}

#[test]
fn tcp_reaches_the_same_network_the_host_and_published_ports_only() {
    let mut n = small();
    n.create("net2", "berth2", Subnet::new(ip("10.9.1.0"), 24), None)
        .expect("create");
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run a"); // 10.9.0.2
    n.run("b", Mode::Bridge, Some("net1"), None).expect("run b"); // 10.9.0.3
    n.run("c", Mode::Bridge, Some("net2"), None).expect("run c"); // 10.9.1.2
    n.run("d", Mode::Container("c".into()), None, None)
        .expect("run d");
    let at = |c: &str, port| Some((c.to_string(), port));
    assert_eq!(lands(&n, None, "10.9.1.2", 80), at("c", 80));
    assert_eq!(lands(&n, Some("a"), "10.9.0.3", 80), at("b", 80));
    assert_eq!(lands(&n, Some("a"), "10.9.0.2", 80), at("a", 80), "itself");
    assert_eq!(lands(&n, Some("a"), "10.9.1.2", 80), None, "isolated");
    assert_eq!(
        lands(&n, Some("d"), "10.9.1.2", 80),
        at("c", 80),
        "c's namespace"
    );
    assert_eq!(
        lands(&n, None, "127.0.0.1", 8080),
        None,
        "nothing published"
    );
    n.publish("c", p("0.0.0.0", 8080)).expect("publish");
    n.publish("b", p("127.0.0.1", 8081)).expect("publish");
    assert_eq!(lands(&n, None, "127.0.0.1", 8080), at("c", 80));
    assert_eq!(
        lands(&n, None, "10.9.0.1", 8080),
        at("c", 80),
        "any gateway"
    );
    assert_eq!(
        lands(&n, Some("a"), "10.9.0.1", 8080),
        at("c", 80),
        "via the host"
    );
    assert_eq!(
        lands(&n, Some("c"), "10.9.1.1", 8080),
        at("c", 80),
        "hairpin"
    );
    assert_eq!(
        lands(&n, Some("a"), "10.9.1.1", 8080),
        None,
        "not its gateway"
    );
    assert_eq!(lands(&n, None, "127.0.0.1", 8081), at("b", 80));
    assert_eq!(lands(&n, None, "10.9.0.1", 8081), None, "loopback only");
    assert_eq!(
        lands(&n, Some("a"), "10.9.0.1", 8081),
        None,
        "loopback only"
    );
    n.connect("b", "net2", None).expect("connect"); // 10.9.1.3
    assert_eq!(lands(&n, Some("c"), "10.9.1.3", 80), at("b", 80));
    assert_eq!(
        lands(&n, Some("c"), "10.9.0.3", 80),
        None,
        "b's other network"
    );
    n.disconnect("b", "net1").expect("disconnect");
    assert_eq!(
        lands(&n, None, "127.0.0.1", 8081),
        at("b", 80),
        "to the first endpoint left"
    );
    n.disconnect("b", "net2").expect("disconnect");
    assert_eq!(lands(&n, None, "127.0.0.1", 8081), None, "no endpoint");
    let mut u = Port {
        proto: Proto::Udp,
        ..p("0.0.0.0", 8082)
    };
    n.publish("a", u).expect("publish udp");
    assert_eq!(lands(&n, None, "127.0.0.1", 8082), None, "udp only");
    u.proto = Proto::Tcp;
    n.publish("a", u).expect("publish tcp");
    assert_eq!(lands(&n, None, "127.0.0.1", 8082), at("a", 80));
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Remove(u8),
    Run(u8, u8),
    Connect(u8, u8),
    Disconnect(u8, u8),
    Publish(u8, u16),
    Rm(u8),
    Crash(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3, 0u8..4).prop_map(|(n, s)| Op::Create(n, s)),
        1 => (0u8..3).prop_map(Op::Remove),
        3 => (0u8..8, 0u8..3).prop_map(|(c, n)| Op::Run(c, n)),
        2 => (0u8..8, 0u8..3).prop_map(|(c, n)| Op::Connect(c, n)),
        1 => (0u8..8, 0u8..3).prop_map(|(c, n)| Op::Disconnect(c, n)),
        2 => (0u8..8, 8000u16..8004).prop_map(|(c, p)| Op::Publish(c, p)),
        2 => (0u8..8).prop_map(Op::Rm),
        1 => (0u8..8).prop_map(Op::Crash),
    ]
}

/// No address twice in a network, none reserved, leases equal endpoints, every
/// endpoint's container and network exist, veth names unique and short.
fn check(n: &Networks) {
    let mut veths = BTreeSet::new();
    for e in n.endpoints() {
        let net = n.network(&e.network).expect("endpoint on a live network");
        assert!(
            n.containers().any(|(c, _)| c == e.container),
            "dangling endpoint"
        );
        assert!(net.assignable(e.ip), "{} reserved", e.ip);
        assert!(veths.insert(e.host_veth.clone()) && e.host_veth.len() <= 15);
    }
    for name in ["n0", "n1", "n2"] {
        if let Some(net) = n.network(name) {
            let ips: Vec<_> = n
                .endpoints()
                .iter()
                .filter(|e| e.network == name)
                .map(|e| e.ip)
                .collect();
            let set: BTreeSet<_> = ips.iter().copied().collect();
            assert_eq!(ips.len(), set.len(), "duplicate address");
            assert_eq!(
                set, net.leased,
                "leases are exactly the endpoints' addresses"
            );
        }
    }
}

proptest! {
    #[test]
    fn every_sequence_keeps_the_laws(ops in proptest::collection::vec(op(), 1..60)) {
        let mut n = Networks::new();
        for o in ops {
            let _ = match o {
                // Small subnets so exhaustion happens; some overlap on purpose.
                Op::Create(i, s) => n.create(&format!("n{i}"), &format!("br{i}"), Subnet::new(Ipv4Addr::new(10, 7, s / 2, 0), 29), None),
                Op::Remove(i) => n.remove(&format!("n{i}")),
                Op::Run(c, i) => n.run(&format!("c{c}"), Mode::Bridge, Some(&format!("n{i}")), None),
                Op::Connect(c, i) => n.connect(&format!("c{c}"), &format!("n{i}"), None),
                Op::Disconnect(c, i) => n.disconnect(&format!("c{c}"), &format!("n{i}")),
                Op::Publish(c, p) => n.publish(&format!("c{c}"), Port { host_ip: Ipv4Addr::UNSPECIFIED, host_port: p, proto: Proto::Tcp, container_port: 80 }),
                Op::Rm(c) => n.remove_container(&format!("c{c}")),
                Op::Crash(c) => n.crash(&format!("c{c}")),
            };
            check(&n);
        }
    }
}

#[test]
fn a_crashed_container_keeps_its_leases_and_ports_until_given_back() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run a"); // 10.9.0.2
    n.publish("a", p("0.0.0.0", 8080)).expect("publish");
    n.run("b", Mode::Bridge, Some("net1"), None).expect("run b"); // 10.9.0.3
    n.crash("a").expect("crash");
    assert!(n.is_gone("a"));
    let k = n.kernel();
    // Its veth went with its namespace; its DNAT rule stays.
    assert!(!k.veths.contains_key(&veth_name("a", 0)));
    assert!(k.veths.contains_key(&veth_name("b", 0)));
    assert_eq!(
        k.dnat.get(&(ip("0.0.0.0"), 8080, Proto::Tcp)),
        Some(&(ip("10.9.0.2"), 80))
    );
    // Its address and port are still taken; nothing reaches it.
    n.run("c", Mode::Bridge, Some("net1"), Some(ip("10.9.0.2")))
        .expect_err("address still leased");
    n.run("c", Mode::Bridge, Some("net1"), None).expect("run c");
    assert_eq!(n.endpoints().last().map(|e| e.ip), Some(ip("10.9.0.4")));
    assert_eq!(
        n.publish("c", p("127.0.0.1", 8080)),
        Err(Refusal::PortInUse(ip("127.0.0.1"), 8080, Proto::Tcp))
    );
    assert_eq!(lands(&n, None, "10.9.0.2", 80), None);
    assert_eq!(lands(&n, None, "127.0.0.1", 8080), None);
    assert_eq!(lands(&n, Some("b"), "10.9.0.2", 80), None);
    assert_eq!(lands(&n, Some("a"), "10.9.0.3", 80), None);
    assert_eq!(lands(&n, Some("b"), "10.9.0.4", 80), Some(("c".into(), 80)));
    // The network is still in use.
    n.remove_container("b").expect("rm b");
    n.remove_container("c").expect("rm c");
    assert_eq!(n.remove("net1"), Err(Refusal::NetworkInUse("net1".into())));
    // A new run of the same container gives back what it held first.
    n.run("a", Mode::Bridge, Some("net1"), None)
        .expect("run a again");
    assert!(!n.is_gone("a"));
    assert_eq!(
        n.endpoints().iter().map(|e| e.ip).collect::<Vec<_>>(),
        [ip("10.9.0.2")]
    );
    n.publish("a", p("0.0.0.0", 8080))
        .expect("its old port was given back");
    // A recovery gives back everything.
    n.crash("a").expect("crash");
    n.remove_container("a").expect("recover");
    assert!(!n.is_gone("a") && n.endpoints().is_empty());
    n.remove("net1").expect("free again");
    assert_eq!(n.crash("a"), Err(Refusal::NoSuchContainer("a".into())));
}

#[test]
fn unknown_networks_and_reused_container_names_are_refused() {
    let mut n = small();
    assert_eq!(
        n.run("a", Mode::Bridge, Some("nope"), None),
        Err(Refusal::NoSuchNetwork("nope".into()))
    );
    assert_eq!(n.remove("nope"), Err(Refusal::NoSuchNetwork("nope".into())));
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    assert_eq!(
        n.run("a", Mode::None, None, None),
        Err(Refusal::ContainerExists("a".into()))
    );
}

#[test]
fn an_ephemeral_port_is_the_first_free_one_of_the_range() {
    let mut n = small();
    n.run("a", Mode::Bridge, Some("net1"), None).expect("run");
    n.publish("a", p("0.0.0.0", 9001)).expect("publish");
    // 0.0.0.0 takes every address: 9001 is skipped for 127.0.0.1 too.
    assert_eq!(
        n.free_host_port(p("127.0.0.1", 0), 9001, 9003)
            .map(|q| q.host_port),
        Ok(9002)
    );
    n.publish("a", p("127.0.0.1", 9002)).expect("publish");
    assert_eq!(
        n.free_host_port(p("0.0.0.0", 0), 9001, 9003)
            .map(|q| q.host_port),
        Ok(9003)
    );
    n.publish("a", p("0.0.0.0", 9003)).expect("publish");
    assert_eq!(
        n.free_host_port(p("127.0.0.1", 0), 9001, 9003),
        Err(Refusal::NoFreePort(ip("127.0.0.1"), Proto::Tcp))
    );
    let udp = Port {
        proto: Proto::Udp,
        ..p("127.0.0.1", 0)
    };
    assert_eq!(
        n.free_host_port(udp, 9001, 9003).map(|q| q.host_port),
        Ok(9001)
    );
}
