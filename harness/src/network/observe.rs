//! Reading what is in the kernel: links, addresses, nftables rules, and each
//! container's interfaces from inside its network namespace. Everything is
//! read with `ip` and `nft` run in the case's own network namespace (a child
//! process takes the namespace of the thread that spawns it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use berth_model::network::{Kernel, Proto, Subnet};

/// What one look at the kernel found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Bridges, veths on bridges, addresses on bridges, masquerade and DNAT
    /// rules of berth's table (kernel names).
    pub kernel: Kernel,
    /// Every link of the namespace but `lo`.
    pub links: BTreeSet<String>,
    /// Every nftables table, as `FAMILY NAME`.
    pub tables: BTreeSet<String>,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

/// `ip ARGS` inside the network namespace of process `pid`.
fn ip_in(pid: i32, args: &[&str]) -> Result<String, String> {
    let ns =
        File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("netns of {pid}: {e}"))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("ip");
    cmd.args(args);
    // SAFETY: setns is async-signal-safe; the fd stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd);
    drop(ns);
    out
}

/// The link name of an `ip -o link` line (`2: eth0@if5: <…` → `eth0`).
fn link_name(line: &str) -> String {
    line.split(": ")
        .nth(1)
        .unwrap_or("")
        .split('@')
        .next()
        .unwrap_or("")
        .to_string()
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok()?))
}

/// The roots berth's ip_forward record for this thread's network namespace
/// names as holders (`/run/berth-ip_forward-NETNS.json`; none without it).
pub fn forward_holders() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata("/proc/thread-self/ns/net") else {
        return Vec::new();
    };
    std::fs::read(format!("/run/berth-ip_forward-{}.json", ns.ino()))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| {
            v.get("holders")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The kernel's state in this namespace, with berth's nftables table `table`.
pub fn host(table: &str) -> Result<Observed, String> {
    let mut o = Observed::default();
    for l in ip(&["-o", "-d", "link"])?.lines() {
        let name = link_name(l);
        if name != "lo" {
            o.links.insert(name.clone());
        }
        if l.contains(" bridge ") && !l.contains("bridge_slave") {
            o.kernel.bridges.insert(name.clone());
        }
        if l.contains(" veth ")
            && let Some(m) = l
                .split(" master ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
        {
            o.kernel.veths.insert(name, m.to_string());
        }
    }
    for l in ip(&["-o", "-4", "addr"])?.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() > 3
            && o.kernel.bridges.contains(w[1])
            && let Some((a, p)) = parse_cidr(w[3])
        {
            o.kernel.addresses.insert((w[1].to_string(), a, p));
        }
    }
    for l in run(Command::new("nft").args(["list", "tables"]))?.lines() {
        if let Some(t) = l.strip_prefix("table ") {
            o.tables.insert(t.trim().to_string());
        }
    }
    if !o.tables.contains(&format!("ip {table}")) {
        return Ok(o);
    }
    let rules = run(Command::new("nft").args(["list", "table", "ip", table]))?;
    for l in rules.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["ip", "saddr", sub, "oifname", "!=", _, "masquerade"] = w.as_slice()
            && let Some((a, p)) = parse_cidr(sub)
        {
            o.kernel.masquerade.insert(Subnet::new(a, p));
        }
        let (host_ip, rest) = match w.as_slice() {
            ["ip", "daddr", h, rest @ ..] => match h.parse() {
                Ok(h) => (h, rest),
                Err(_) => continue,
            },
            rest => (Ipv4Addr::UNSPECIFIED, rest),
        };
        if let [proto, "dport", port, "dnat", "to", to] = rest {
            let Some((a, p)) = to.split_once(':') else {
                return Err(format!("a DNAT rule without a port: {l}"));
            };
            let proto = if *proto == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            };
            let parsed = (port.parse::<u16>(), a.parse::<Ipv4Addr>(), p.parse::<u16>());
            let (Ok(port), Ok(a), Ok(p)) = parsed else {
                return Err(format!("a DNAT rule not understood: {l}"));
            };
            o.kernel.dnat.insert((host_ip, port, proto), (a, p));
        }
    }
    Ok(o)
}

/// A container's interfaces but `lo`, seen from inside its namespace: name →
/// (MAC, addresses with their prefixes).
pub type Inside = BTreeMap<String, (String, BTreeSet<(Ipv4Addr, u8)>)>;

/// The interfaces in the network namespace of process `pid`.
pub fn inside(pid: i32) -> Result<Inside, String> {
    let mut out = Inside::new();
    for l in ip_in(pid, &["-o", "link"])?.lines() {
        let name = link_name(l);
        if name == "lo" {
            continue;
        }
        let mac = l
            .split(" link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("")
            .to_string();
        out.insert(name, (mac, BTreeSet::new()));
    }
    for l in ip_in(pid, &["-o", "-4", "addr"])?.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() > 3
            && let Some(e) = out.get_mut(w[1])
            && let Some(cidr) = parse_cidr(w[3])
        {
            e.1.insert(cidr);
        }
    }
    Ok(out)
}
