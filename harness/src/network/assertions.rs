//! The comparisons after each step, with diffs a person can read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_model::network::{Kernel, mac_for};

use super::observe::{self, Observed};
use super::reach;
use super::reference::RefState;
use super::strategies::{CONTAINERS, NETWORKS, container};
use super::sut::Sut;
use super::transitions::{Outcome, Transition};

pub use crate::diff;

fn map_set<K: Ord + Clone, V: Ord + Clone>(m: &BTreeMap<K, V>) -> BTreeSet<(K, V)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Every difference between the kernel the model implies and the one observed.
pub fn kernel_diff(want: &Kernel, got: &Kernel) -> Vec<String> {
    [
        diff("bridges", &want.bridges, &got.bridges),
        diff(
            "veths (name, bridge)",
            &map_set(&want.veths),
            &map_set(&got.veths),
        ),
        diff("bridge addresses", &want.addresses, &got.addresses),
        diff("masqueraded subnets", &want.masquerade, &got.masquerade),
        diff("DNAT rules", &map_set(&want.dnat), &map_set(&got.dnat)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The step's outcome is the model's.
pub fn outcome(t: &Transition, want: Option<&Outcome>, got: &Outcome) {
    assert_eq!(
        want,
        Some(got),
        "the outcome of {t:?}: the model says {want:?}, berth did {got:?}"
    );
}

/// The model's kernel, with each network's bridge named as berth named it.
fn expected_kernel(sut: &Sut, r: &RefState) -> Result<Kernel, String> {
    let mut bridge_of = BTreeMap::new();
    for n in sut.nets.list().map_err(|e| format!("network ls: {e}"))? {
        bridge_of.insert(n.name.clone(), n.bridge.clone());
    }
    let name = |b: &String| {
        bridge_of
            .get(b)
            .cloned()
            .unwrap_or_else(|| format!("<{b}>"))
    };
    let k = r.model.kernel();
    Ok(Kernel {
        bridges: k.bridges.iter().map(name).collect(),
        veths: k.veths.iter().map(|(v, b)| (v.clone(), name(b))).collect(),
        addresses: k
            .addresses
            .iter()
            .map(|(b, a, p)| (name(b), *a, *p))
            .collect(),
        masquerade: k.masquerade.clone(),
        dnat: k.dnat.clone(),
    })
}

/// Everything that differs between the runtime and the model now.
pub fn differences(sut: &Sut, r: &RefState) -> Vec<String> {
    let mut out = Vec::new();
    // The store's networks are the model's.
    let got: BTreeSet<(String, String, Ipv4Addr)> = match sut.nets.list() {
        Ok(l) => l
            .iter()
            .map(|n| (n.name.clone(), n.subnet.to_string(), n.gateway))
            .collect(),
        Err(e) => return vec![format!("network ls: {e}")],
    };
    let want: BTreeSet<(String, String, Ipv4Addr)> = NETWORKS
        .iter()
        .chain([&super::reference::DEFAULT])
        .filter_map(|n| r.model.network(n))
        .map(|n| {
            (
                n.name.clone(),
                format!("{}/{}", n.subnet.addr, n.subnet.prefix),
                n.gateway,
            )
        })
        .collect();
    out.extend(diff("networks (name, subnet, gateway)", &want, &got));
    // The leases.
    let mut want_eps = BTreeSet::new();
    for e in r.model.endpoints() {
        want_eps.insert((
            e.container.clone(),
            e.network.clone(),
            e.ip,
            e.host_veth.clone(),
        ));
    }
    let mut got_eps = BTreeSet::new();
    for i in 0..CONTAINERS {
        let c = container(i);
        match sut.nets.endpoints_of(&c) {
            Ok(eps) => got_eps.extend(
                eps.into_iter()
                    .map(|e| (e.container, e.network, e.ip, e.host_veth)),
            ),
            Err(e) => out.push(format!("endpoints of {c}: {e}")),
        }
    }
    out.extend(diff(
        "leases (container, network, address, veth)",
        &want_eps,
        &got_eps,
    ));
    // The host's kernel: exactly the model's links, addresses and rules.
    let want_k = match expected_kernel(sut, r) {
        Ok(k) => k,
        Err(e) => return vec![e],
    };
    let seen: Observed = match observe::host(sut.nets.table()) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    out.extend(kernel_diff(&want_k, &seen.kernel));
    let want_links: BTreeSet<String> = want_k
        .bridges
        .iter()
        .chain(want_k.veths.keys())
        .cloned()
        .collect();
    out.extend(diff(
        "links of the namespace (but lo)",
        &want_links,
        &seen.links,
    ));
    // ip_forward is on while a network exists (berth's record names this
    // root as a holder), and what it was (0 in a new namespace) after.
    let networks = !want_k.bridges.is_empty();
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    if forward.trim() != if networks { "1" } else { "0" } {
        out.push(format!(
            "ip_forward is {} with {} network(s) in the model",
            forward.trim(),
            want_k.bridges.len()
        ));
    }
    let holds = observe::forward_holders().contains(&sut.nets.state_file().display().to_string());
    if holds != networks {
        out.push(format!(
            "berth's ip_forward record {} this root with {} network(s) in the model",
            if holds { "names" } else { "does not name" },
            want_k.bridges.len()
        ));
    }
    let want_tables: BTreeSet<String> = if want_k.bridges.is_empty() {
        BTreeSet::new()
    } else {
        [format!("ip {}", sut.nets.table())].into()
    };
    out.extend(diff("nftables tables", &want_tables, &seen.tables));
    // Each running container sees its endpoints: address, prefix and MAC.
    for c in &r.running {
        let Some(pid) = sut.pid(c) else {
            out.push(format!("{c} runs in the model, not in the runtime"));
            continue;
        };
        let want: BTreeSet<(String, Ipv4Addr, u8)> = r
            .model
            .endpoints()
            .iter()
            .filter(|e| &e.container == c)
            .map(|e| {
                let prefix = r.model.network(&e.network).map_or(0, |n| n.subnet.prefix);
                (berth::network::mac_string(&mac_for(e.ip)), e.ip, prefix)
            })
            .collect();
        match observe::inside(pid) {
            Ok(inside) => {
                let got: BTreeSet<(String, Ipv4Addr, u8)> = inside
                    .values()
                    .flat_map(|(mac, addrs)| addrs.iter().map(move |(a, p)| (mac.clone(), *a, *p)))
                    .collect();
                out.extend(diff(
                    &format!("inside {c} (MAC, address, prefix)"),
                    &want,
                    &got,
                ));
                let bare: Vec<&String> = inside
                    .iter()
                    .filter(|(_, (_, a))| a.is_empty())
                    .map(|(n, _)| n)
                    .collect();
                if !bare.is_empty() {
                    out.push(format!("inside {c}: links without an address {bare:?}"));
                }
            }
            Err(e) => out.push(format!("inside {c}: {e}")),
        }
        // Its /etc/hosts: localhost's lines, its own addresses with its name,
        // and every other container on a user-defined network it is on (not
        // the default one, as Docker), with theirs.
        let mine: BTreeSet<&str> = r
            .model
            .endpoints()
            .iter()
            .filter(|e| &e.container == c && e.network != super::reference::DEFAULT)
            .map(|e| e.network.as_str())
            .collect();
        let want: BTreeSet<String> = LOCALHOST
            .iter()
            .map(|l| l.to_string())
            .chain(
                r.model
                    .endpoints()
                    .iter()
                    .filter(|e| &e.container == c || mine.contains(e.network.as_str()))
                    .map(|e| format!("{}\t{}", e.ip, e.container)),
            )
            .collect();
        let got: BTreeSet<String> = std::fs::read_to_string(sut.hosts_file(c))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        out.extend(diff(&format!("{c}'s /etc/hosts"), &want, &got));
    }
    // Real connections, after a step that changed something (a refused one
    // changed nothing, and the rest above shows it).
    if sut.last == Some(Outcome::Ok) {
        let probes = reach::probes(r);
        let want = reach::expected(r, &probes);
        let patience = |p: &reach::Probe| match want.get(p) {
            Some(Some(_)) => reach::ANSWER_WITHIN,
            _ => reach::DROPPED_AFTER,
        };
        match reach::observe(&probes, patience, &sut.pids(), &sut.listeners) {
            Ok(got) => out.extend(reach::differences(&want, &got)),
            Err(e) => out.push(e),
        }
    }
    out
}

/// The lines every container's /etc/hosts starts with (Docker's).
const LOCALHOST: [&str; 6] = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
];

/// The runtime's state is the model's. Links of a namespace that just lost its
/// last process leave the kernel shortly after (the kernel cleans up network
/// namespaces in the background), so after a stop or a crash a difference is
/// looked at again for up to ten seconds before it counts; nothing is asserted
/// about the time.
pub fn state(sut: &Sut, r: &RefState) {
    let settling = matches!(
        sut.step,
        Some(Transition::Stop { .. } | Transition::Crash { .. })
    );
    let d = crate::settle(if settling { 10 } else { 0 }, || differences(sut, r));
    assert!(
        d.is_empty(),
        "after {:?} ({:?}) the runtime differs from the model:\n  {}",
        sut.step,
        sut.last,
        d.join("\n  ")
    );
}

/// After the case's clean-up: no link, no table, no ip_forward record.
pub fn empty(sut: &Sut) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = observe::host(sut.nets.table()).expect("observe");
        if seen.links.is_empty() && seen.tables.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "left behind: links {:?}, tables {:?}",
            seen.links,
            seen.tables
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    let record = format!("/run/berth-ip_forward-{ino}.json");
    assert!(
        !std::path::Path::new(&record).exists(),
        "{record} was left behind"
    );
}
