//! Transitions generated from the reference state: small pools of names
//! (containers go to networks that exist three times in four, so they meet),
//! overlapping and tiny subnets (a /29 and a /30 run out fast), addresses inside,
//! on the edges of and outside the subnets, and a few host ports, so that every
//! refusal comes up often.

use std::net::Ipv4Addr;

use berth_model::network::{Proto, Subnet};
use proptest::prelude::*;

use super::reference::{DEFAULT, RefState};
use super::transitions::{Publish, Transition};

/// Network names.
pub const NETWORKS: [&str; 4] = ["n0", "n1", "n2", "n3"];

/// Subnets: two /24s, a /16 over the first, two /29s side by side, a /30.
pub fn subnets() -> Vec<Subnet> {
    [
        ([10, 66, 0, 0], 24),
        ([10, 66, 1, 0], 24),
        ([10, 66, 0, 0], 16),
        ([10, 67, 0, 0], 29),
        ([10, 67, 0, 8], 29),
        ([10, 68, 0, 0], 30),
        // Over the host's own 10.69.0.1/24 (refused).
        ([10, 69, 0, 0], 16),
    ]
    .into_iter()
    .map(|(a, p)| Subnet::new(Ipv4Addr::from(a), p))
    .collect()
}

/// Container ids (distinct in their first nine characters, as real ids are).
pub fn container(i: usize) -> String {
    format!("{:x}c0ffee01234", 10 + i)
}

/// How many containers the machine uses.
pub const CONTAINERS: usize = 6;

/// A `-p`: a host port of a few (the last of them in the ephemeral range)
/// or none (an ephemeral one), one port or a range of two.
fn publish() -> impl Strategy<Value = Publish> {
    (
        prop_oneof![Just(Ipv4Addr::UNSPECIFIED), Just(Ipv4Addr::LOCALHOST)],
        prop::option::weighted(0.7, 47100u16..47104),
        prop_oneof![3 => Just(1u16), 1 => Just(2)],
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)],
    )
        .prop_map(|(host_ip, host_port, count, proto)| Publish {
            host_ip,
            host_port,
            count,
            proto,
        })
}

/// An address to ask for on `network`: near the start of its subnet (the
/// network address, the gateway, free or taken ones), next to an address
/// already handed out (either side: the edges of IPAM's free ranges), the last
/// host address, its broadcast, or outside.
fn ip_on(state: &RefState, network: &str) -> BoxedStrategy<Option<Ipv4Addr>> {
    let (base, bcast, leased) = match state.model.network(network) {
        Some(n) => (
            u32::from(n.subnet.addr),
            u32::from(n.subnet.broadcast()),
            n.leased.iter().map(|a| u32::from(*a)).collect::<Vec<u32>>(),
        ),
        None => (u32::from(Ipv4Addr::new(10, 66, 0, 0)), 0, Vec::new()),
    };
    let beside = if leased.is_empty() {
        Just(None).boxed()
    } else {
        (prop::sample::select(leased), prop::bool::ANY)
            .prop_map(|(a, up)| {
                Some(Ipv4Addr::from(if up {
                    a.saturating_add(1)
                } else {
                    a.saturating_sub(1)
                }))
            })
            .boxed()
    };
    prop_oneof![
        4 => Just(None),
        3 => (0u32..10).prop_map(move |k| Some(Ipv4Addr::from(base + k))),
        2 => beside,
        1 => Just(Some(Ipv4Addr::from(bcast.saturating_sub(1)))),
        1 => Just(Some(Ipv4Addr::from(bcast))),
        1 => Just(Some(Ipv4Addr::new(192, 168, 200, 7))),
    ]
    .boxed()
}

fn network_name() -> impl Strategy<Value = String> {
    prop::sample::select(NETWORKS.to_vec()).prop_map(str::to_string)
}

/// A network for a container: one that exists three times in four (when one
/// does), so that containers meet on networks often; else any name, the
/// default network's ("bridge", made by the first run that asks for it)
/// among them.
fn target_network(state: &RefState) -> BoxedStrategy<String> {
    let names: Vec<&str> = NETWORKS.iter().copied().chain([DEFAULT]).collect();
    let existing: Vec<String> = names
        .iter()
        .filter(|n| state.model.network(n).is_some())
        .map(|n| n.to_string())
        .collect();
    let any = prop::sample::select(names).prop_map(str::to_string);
    if existing.is_empty() {
        any.boxed()
    } else {
        prop_oneof![3 => prop::sample::select(existing), 1 => any].boxed()
    }
}

/// The transitions that may follow `state`.
pub fn transitions(state: &RefState) -> BoxedStrategy<Transition> {
    let subnets = subnets();
    // Now and then a name no network may have.
    let name = prop_oneof![
        7 => network_name().boxed(),
        1 => prop::sample::select(vec!["-n0", "n/0", "n 0", "", "n0:"]).prop_map(str::to_string).boxed(),
    ];
    let create = (
        name,
        prop::sample::select(subnets),
        prop::option::weighted(0.3, 0u32..4),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.1, Just("network.after-bridge")),
    )
        .prop_map(|(name, subnet, gw, auto, fault)| {
            // A gateway of the subnet's end, or its network address (refused).
            let gateway = gw.map(|k| match k {
                0 => subnet.addr,
                1 => subnet.broadcast(),
                _ => Ipv4Addr::from(u32::from(subnet.broadcast()) - 1),
            });
            // Now and then no --subnet at all (nor --gateway): berth picks one.
            if auto {
                Transition::Create {
                    name,
                    subnet: None,
                    gateway: None,
                    fault,
                }
            } else {
                Transition::Create {
                    name,
                    subnet: Some(subnet),
                    gateway,
                    fault,
                }
            }
        });
    let remove = prop_oneof![4 => network_name(), 1 => Just(DEFAULT.to_string())]
        .prop_map(|name| Transition::Remove { name });
    let mut arms: Vec<(u32, BoxedStrategy<Transition>)> =
        vec![(3, create.boxed()), (1, remove.boxed())];
    let idle: Vec<String> = (0..CONTAINERS)
        .map(container)
        .filter(|c| !state.running.contains(c))
        .collect();
    if !idle.is_empty() {
        let st = state.clone();
        let run = (prop::sample::select(idle), target_network(state))
            .prop_flat_map(move |(container, network)| {
                (
                    Just(container),
                    ip_on(&st, &network),
                    prop::option::weighted(0.4, publish()),
                    Just(network),
                    prop::option::weighted(
                        0.15,
                        prop::sample::select(vec!["network.after-reserve", "network.after-veth"]),
                    ),
                )
            })
            .prop_map(|(container, ip, publish, network, fault)| Transition::Run {
                container,
                network,
                ip,
                publish,
                fault,
            });
        arms.push((4, run.boxed()));
    }
    let running: Vec<String> = state.running.iter().cloned().collect();
    if !running.is_empty() {
        let st = state.clone();
        let connect = (prop::sample::select(running.clone()), target_network(state))
            .prop_flat_map(move |(container, network)| {
                (Just(container), ip_on(&st, &network), Just(network))
            })
            .prop_map(|(container, ip, network)| Transition::Connect {
                container,
                network,
                ip,
            });
        let disconnect = (prop::sample::select(running.clone()), target_network(state))
            .prop_map(|(container, network)| Transition::Disconnect { container, network });
        let stop = prop::sample::select(running.clone())
            .prop_map(|container| Transition::Stop { container });
        let crash =
            prop::sample::select(running).prop_map(|container| Transition::Crash { container });
        arms.push((2, connect.boxed()));
        arms.push((2, disconnect.boxed()));
        arms.push((1, stop.boxed()));
        arms.push((1, crash.boxed()));
    }
    // A crashed container is recovered, or runs again (above) first.
    let crashed: Vec<String> = (0..CONTAINERS)
        .map(container)
        .filter(|c| state.model.is_gone(c))
        .collect();
    if !crashed.is_empty() {
        let recover =
            prop::sample::select(crashed).prop_map(|container| Transition::Recover { container });
        arms.push((1, recover.boxed()));
    }
    proptest::strategy::Union::new_weighted(arms).boxed()
}
