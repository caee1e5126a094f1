//! The network state of one data root, and the operations that change it and
//! the kernel together.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ipam::{Pool, Refused};
use super::netlink::{self, Plumbing};
use super::{
    Endpoint, Error, Network, PortSpec, Proto, Published, Result, Subnet, dns, forward, io,
    mac_for, nft, valid_name, veth_name,
};

/// The default network's name.
pub const DEFAULT: &str = "bridge";
/// The default network's subnet unless configured.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/16";
/// The default root's bridge.
const DEFAULT_BRIDGE: &str = "berth0";

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    ports: Vec<Published>,
    next_index: u32,
}

/// The networks of one data root.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
    table: String,
    default_bridge: String,
    default_subnet: Subnet,
}

/// What a container asks for when it starts in bridge mode.
#[derive(Debug, Clone)]
pub struct Attach<'a> {
    /// Its id.
    pub container: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its hostname.
    pub hostname: &'a str,
    /// The networks (the first gets `ip`, if given).
    pub networks: &'a [String],
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `-p`/`-P`.
    pub ports: &'a [PortSpec],
    /// Its /etc/hosts on the host side.
    pub hosts_file: &'a Path,
}

struct Lock(#[allow(dead_code)] fs::File);

impl Networks {
    /// The networks under `root` (`ROOT/network`); the default network's subnet
    /// is `default_subnet` or 172.30.0.0/16. The nftables table and the default
    /// bridge are `berth`/`berth0` for the default root, and carry a hash of the
    /// root otherwise, so that roots side by side stay apart.
    pub fn open(root: &Path, default_subnet: Option<Subnet>) -> Result<Networks> {
        let dir = root.join("network");
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let (table, default_bridge) = if root == Path::new("/var/lib/berth") {
            ("berth".to_string(), DEFAULT_BRIDGE.to_string())
        } else {
            let abs = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
            let h = crate::digest::Digest::of(abs.display().to_string().as_bytes());
            let hex = &h.hex()[..8];
            (format!("berth_{hex}"), format!("bb{hex}"))
        };
        let default_subnet = match default_subnet {
            Some(s) => s,
            None => DEFAULT_SUBNET.parse()?,
        };
        Ok(Networks {
            dir,
            table,
            default_bridge,
            default_subnet,
        })
    }

    /// The nftables table of this root.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The root's network state (also its name among ip_forward's holders).
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn lock(&self) -> Result<Lock> {
        let p = self.dir.join("lock");
        let f = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io("opening", &p))?;
        f.lock().map_err(io("locking", &p))?;
        Ok(Lock(f))
    }

    fn load(&self) -> Result<State> {
        let p = self.state_file();
        let mut data = Vec::new();
        match fs::File::open(&p) {
            Ok(mut f) => {
                f.read_to_end(&mut data).map_err(io("reading", &p))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(io("reading", &p)(e)),
        }
        serde_json::from_slice(&data)
            .map_err(|e| Error::Invalid("network state".into(), format!("{}: {e}", p.display())))
    }

    fn save(&self, s: &State) -> Result<()> {
        let data = serde_json::to_vec_pretty(s)
            .map_err(|e| Error::Invalid("network state".into(), e.to_string()))?;
        let p = self.state_file();
        crate::oci::state::write_atomic(&p, &data).map_err(|e| Error::Io {
            what: "writing",
            path: p.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Makes the kernel's nftables table and ip_forward agree with `s`.
    fn apply(&self, s: &State) -> Result<()> {
        let dnat: Vec<nft::Dnat> = s
            .ports
            .iter()
            .filter_map(|p| {
                s.endpoints
                    .iter()
                    .find(|e| e.container == p.container)
                    .map(|e| (p.port, e.ip))
            })
            .collect();
        if s.networks.is_empty() {
            nft::apply(&nft::render(&self.table, &[], &[]))?;
            forward::release(&self.state_file())
        } else {
            forward::hold(&self.state_file())?;
            nft::apply(&nft::render(&self.table, &s.networks, &dnat))
        }
    }

    /// The networks.
    pub fn list(&self) -> Result<Vec<Network>> {
        Ok(self.load()?.networks)
    }

    /// A network by name, full id or unique id prefix.
    pub fn get(&self, what: &str) -> Result<Network> {
        find(&self.load()?, what).cloned()
    }

    /// The endpoints of `container`.
    pub fn endpoints_of(&self, container: &str) -> Result<Vec<Endpoint>> {
        Ok(self
            .load()?
            .endpoints
            .into_iter()
            .filter(|e| e.container == container)
            .collect())
    }

    /// The endpoints on network `name`.
    pub fn endpoints_on(&self, name: &str) -> Result<Vec<Endpoint>> {
        Ok(self
            .load()?
            .endpoints
            .into_iter()
            .filter(|e| e.network == name)
            .collect())
    }

    /// The ports `container` publishes.
    pub fn ports_of(&self, container: &str) -> Result<Vec<PortSpec>> {
        Ok(self
            .load()?
            .ports
            .into_iter()
            .filter(|p| p.container == container)
            .map(|p| p.port)
            .collect())
    }

    /// Whether anything is held for `container` (cheap when the state is empty).
    pub fn holds(&self, container: &str) -> bool {
        self.load().is_ok_and(|s| {
            s.endpoints.iter().any(|e| e.container == container)
                || s.ports.iter().any(|p| p.container == container)
        })
    }

    /// `network create`.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Network> {
        let _l = self.lock()?;
        let mut s = self.load()?;
        let n = self.create_locked(&mut s, name, subnet, gateway)?;
        Ok(n)
    }

    fn create_locked(
        &self,
        s: &mut State,
        name: &str,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Network> {
        if !valid_name(name) {
            return Err(Error::BadName(name.into()));
        }
        if s.networks.iter().any(|n| n.name == name) {
            return Err(Error::Exists(name.into()));
        }
        // Addresses on the host that are not this root's bridges.
        let ours: Vec<&str> = s.networks.iter().map(|n| n.bridge.as_str()).collect();
        let host: Vec<(String, Ipv4Addr, u8)> = netlink::host_addresses()?
            .into_iter()
            .filter(|(l, _, _)| !ours.contains(&l.as_str()))
            .collect();
        let clash = |sub: &Subnet| -> Option<String> {
            if let Some(n) = s.networks.iter().find(|n| n.subnet.overlaps(sub)) {
                return Some(format!("network {} ({})", n.name, n.subnet));
            }
            host.iter()
                .find(|(_, ip, p)| Subnet::new(*ip, *p).overlaps(sub))
                .map(|(l, ip, p)| format!("{ip}/{p} on the host's {l}"))
        };
        let subnet = match subnet {
            Some(sub) => {
                if let Some(what) = clash(&sub) {
                    return Err(Error::Overlaps { subnet: sub, what });
                }
                sub
            }
            None if name == DEFAULT => {
                let sub = self.default_subnet;
                if let Some(what) = clash(&sub) {
                    return Err(Error::Overlaps { subnet: sub, what });
                }
                sub
            }
            // As Podman: the first free 10.89.N.0/24.
            None => (0..=255u8)
                .map(|i| Subnet::new(Ipv4Addr::new(10, 89, i, 0), 24))
                .find(|c| clash(c).is_none())
                .ok_or_else(|| {
                    Error::Invalid(
                        "subnet".into(),
                        "no free 10.89.N.0/24 is left: give --subnet".into(),
                    )
                })?,
        };
        let gateway = gateway.unwrap_or(subnet.first_host());
        if !subnet.contains(gateway) || gateway == subnet.addr() || gateway == subnet.broadcast() {
            return Err(Error::Invalid(
                "--gateway".into(),
                format!("{gateway} is not a host address of {subnet}"),
            ));
        }
        let id = random_hex()?;
        let bridge = if name == DEFAULT {
            self.default_bridge.clone()
        } else {
            format!("br-{}", &id[..12])
        };
        let n = Network {
            name: name.into(),
            id,
            bridge,
            subnet,
            gateway,
            index: s.next_index,
            created: crate::oci::time::now_rfc3339_nanos(),
        };
        netlink::ensure_bridge(&n.bridge, gateway, subnet.prefix())?;
        s.networks.push(n.clone());
        s.next_index += 1;
        let done = crate::fault::hit("network.after-bridge")
            .map_or(Ok(()), |m| Err(Error::Fault(m)))
            .and_then(|()| self.apply(s))
            .and_then(|()| self.save(s));
        if let Err(e) = done {
            s.networks.retain(|x| x.name != name);
            let _ = netlink::delete_link(&n.bridge);
            let _ = self.apply(s);
            return Err(e);
        }
        Ok(n)
    }

    /// `network rm`: refused while containers are on it.
    pub fn remove(&self, what: &str) -> Result<Network> {
        let _l = self.lock()?;
        let mut s = self.load()?;
        let n = find(&s, what)?.clone();
        let on: Vec<&str> = s
            .endpoints
            .iter()
            .filter(|e| e.network == n.name)
            .map(|e| e.name.as_str())
            .collect();
        if !on.is_empty() {
            return Err(Error::InUse {
                name: n.name.clone(),
                containers: on.join(", "),
            });
        }
        s.networks.retain(|x| x.name != n.name);
        self.save(&s)?;
        netlink::delete_link(&n.bridge)?;
        self.apply(&s)?;
        Ok(n)
    }

    /// Reserves what a container starting in bridge mode needs: an address on
    /// each network (made on first use when it is the default one), its host
    /// ports (refused when published already or bound by another process);
    /// writes the hosts files of the networks' members. Nothing is in the
    /// kernel yet but the bridges and the DNAT rules: [`Networks::plumb`]
    /// follows once the container's namespace exists, and
    /// [`Networks::release`] undoes both.
    pub fn reserve(&self, a: &Attach) -> Result<Vec<Endpoint>> {
        let _l = self.lock()?;
        let mut s = self.load()?;
        // What a container of this id held before (a crash) is given back
        // first; the hosts files of its old networks lose it below.
        let mut hosts_of: Vec<String> = a.networks.to_vec();
        hosts_of.extend(
            s.endpoints
                .iter()
                .filter(|e| e.container == a.container)
                .map(|e| e.network.clone()),
        );
        s.endpoints.retain(|e| e.container != a.container);
        let stale_ports = s.ports.iter().any(|p| p.container == a.container);
        s.ports.retain(|p| p.container != a.container);
        let mut made_default = None;
        for name in a.networks {
            if name == DEFAULT && !s.networks.iter().any(|n| n.name == DEFAULT) {
                made_default = Some(self.create_locked(&mut s, DEFAULT, None, None)?);
            }
        }
        let made = match self.allot(&mut s, a) {
            Ok(m) => m,
            Err(e) => {
                // A refused run leaves nothing: not the default network it
                // made either (berth-harness's bridge/IP machine found it kept).
                // The refusal is what the user hears of; undoing is best effort.
                if let Some(n) = made_default
                    && let Ok(mut saved) = self.load()
                {
                    saved.networks.retain(|x| x.name != n.name);
                    // Its index too (the lock is held: it was the last given).
                    saved.next_index = n.index;
                    let _ = self
                        .save(&saved)
                        .and_then(|()| netlink::delete_link(&n.bridge))
                        .and_then(|()| self.apply(&saved));
                }
                return Err(e);
            }
        };
        self.save(&s)?;
        // The table changes only with ports (a new network applied it already).
        let ported = stale_ports || s.ports.iter().any(|p| p.container == a.container);
        let applied = crate::fault::hit("network.after-reserve")
            .map_or(Ok(()), |m| Err(Error::Fault(m)))
            .and_then(|()| if ported { self.apply(&s) } else { Ok(()) })
            .and_then(|()| refresh_hosts(&s, &hosts_of));
        if let Err(e) = applied {
            drop(_l);
            let _ = self.release(a.container, true);
            // The rules of what a crashed container of this id held left the
            // state above, perhaps never the table (the release finds no port
            // to drop): the table follows what is left (berth-harness's
            // bridge/IP machine found them kept after a failed rerun).
            if stale_ports
                && let Ok(_l) = self.lock()
                && let Ok(left) = self.load()
            {
                let _ = self.apply(&left);
            }
            return Err(e);
        }
        Ok(made)
    }

    /// `reserve`'s addresses and host ports, in `s`.
    fn allot(&self, s: &mut State, a: &Attach) -> Result<Vec<Endpoint>> {
        let mut made = Vec::new();
        for (i, name) in a.networks.iter().enumerate() {
            let n = find(s, name)?.clone();
            let ip = allocate(s, &n, if i == 0 { a.ip } else { None })?;
            let ep = Endpoint {
                container: a.container.into(),
                name: a.name.into(),
                network: n.name.clone(),
                ip,
                mac: mac_for(ip),
                host_veth: veth_name(a.container, n.index),
                ifname: format!("eth{i}"),
                hosts_file: Some(a.hosts_file.to_path_buf()),
                hostname: a.hostname.into(),
            };
            s.endpoints.push(ep.clone());
            made.push(ep);
        }
        if !made.is_empty() {
            for p in a.ports {
                let port = self.pick_port(s, *p)?;
                s.ports.push(Published {
                    container: a.container.into(),
                    port,
                });
            }
        }
        Ok(made)
    }

    /// Makes the veth pairs of `container`'s endpoints, its init being `pid`.
    pub fn plumb(&self, container: &str, pid: i32) -> Result<()> {
        let s = self.load()?;
        for e in s.endpoints.iter().filter(|e| e.container == container) {
            let n = find(&s, &e.network)?;
            netlink::plumb(&Plumbing {
                bridge: &n.bridge,
                bridge_gateway: n.gateway,
                host_veth: &e.host_veth,
                pid,
                ifname: &e.ifname,
                ip: e.ip,
                prefix: n.subnet.prefix(),
                gateway: (e.ifname == "eth0").then_some(n.gateway),
                mac: e.mac,
            })?;
            if let Some(m) = crate::fault::hit("network.after-veth") {
                return Err(Error::Fault(m));
            }
        }
        Ok(())
    }

    /// Gives back everything `container` holds: its veths, addresses, ports and
    /// their rules; its peers' hosts files lose it. With `links` false the veths
    /// are left to the kernel, which deletes them with the namespace when its
    /// last process is gone (deleting them here would wait for an RCU grace
    /// period, tens of milliseconds, for nothing).
    pub fn release(&self, container: &str, links: bool) -> Result<()> {
        let _l = self.lock()?;
        let mut s = self.load()?;
        let gone: Vec<Endpoint> = s
            .endpoints
            .iter()
            .filter(|e| e.container == container)
            .cloned()
            .collect();
        let had_ports = s.ports.iter().any(|p| p.container == container);
        if gone.is_empty() && !had_ports {
            return Ok(());
        }
        s.endpoints.retain(|e| e.container != container);
        s.ports.retain(|p| p.container != container);
        self.save(&s)?;
        let mut first_err = None;
        for e in gone.iter().filter(|_| links) {
            if let Err(err) = netlink::delete_link(&e.host_veth) {
                first_err.get_or_insert(err);
            }
        }
        // The harness's proof that it sees stale rules: this feature leaves a
        // released container's DNAT rules in the table (never enable it elsewhere).
        let had_ports = had_ports && !cfg!(feature = "broken-release-keeps-rules");
        if had_ports && let Err(err) = self.apply(&s) {
            first_err.get_or_insert(err);
        }
        let nets: Vec<String> = gone.iter().map(|e| e.network.clone()).collect();
        if let Err(err) = refresh_hosts(&s, &nets) {
            first_err.get_or_insert(err);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// `network connect` of a running container (init `pid`) to the one
    /// network of `a` (its ports are not looked at).
    pub fn connect(&self, a: &Attach, pid: i32) -> Result<Endpoint> {
        let (container, name, hostname, hosts_file, ip) =
            (a.container, a.name, a.hostname, a.hosts_file, a.ip);
        let network = a.networks.first().map(String::as_str).unwrap_or_default();
        let ep = {
            let _l = self.lock()?;
            let mut s = self.load()?;
            let n = find(&s, network)?.clone();
            if s.endpoints
                .iter()
                .any(|e| e.container == container && e.network == n.name)
            {
                return Err(Error::Connected {
                    container: name.into(),
                    network: n.name,
                });
            }
            let ip = allocate(&s, &n, ip)?;
            let k = (0..)
                .find(|k| {
                    !s.endpoints
                        .iter()
                        .any(|e| e.container == container && e.ifname == format!("eth{k}"))
                })
                .unwrap_or(0);
            let ep = Endpoint {
                container: container.into(),
                name: name.into(),
                network: n.name.clone(),
                ip,
                mac: mac_for(ip),
                host_veth: veth_name(container, n.index),
                ifname: format!("eth{k}"),
                hosts_file: Some(hosts_file.to_path_buf()),
                hostname: hostname.into(),
            };
            s.endpoints.push(ep.clone());
            self.save(&s)?;
            let plumbed = netlink::plumb(&Plumbing {
                bridge: &n.bridge,
                bridge_gateway: n.gateway,
                host_veth: &ep.host_veth,
                pid,
                ifname: &ep.ifname,
                ip,
                prefix: n.subnet.prefix(),
                gateway: (ep.ifname == "eth0").then_some(n.gateway),
                mac: ep.mac,
            })
            .and_then(|()| self.apply(&s))
            .and_then(|()| refresh_hosts(&s, std::slice::from_ref(&n.name)));
            if let Err(e) = plumbed {
                s.endpoints.retain(|x| x != &ep);
                let _ = self.save(&s);
                let _ = netlink::delete_link(&ep.host_veth);
                return Err(e);
            }
            ep
        };
        Ok(ep)
    }

    /// `network disconnect` of a container (init `pid`, when running).
    pub fn disconnect(
        &self,
        container: &str,
        name: &str,
        network: &str,
        pid: Option<i32>,
    ) -> Result<()> {
        let _l = self.lock()?;
        let mut s = self.load()?;
        let n = find(&s, network)?.clone();
        let Some(pos) = s
            .endpoints
            .iter()
            .position(|e| e.container == container && e.network == n.name)
        else {
            return Err(Error::NotConnected {
                container: name.into(),
                network: n.name,
            });
        };
        let ep = s.endpoints.remove(pos);
        self.save(&s)?;
        if let Some(pid) = pid {
            let _ = netlink::unplumb_in(pid, &ep.ifname);
        }
        netlink::delete_link(&ep.host_veth)?;
        self.apply(&s)?;
        refresh_hosts(&s, std::slice::from_ref(&n.name))?;
        if let Some(f) = &ep.hosts_file {
            let own = own_entries(&s, container);
            let _ = dns::write_in_place(f, &dns::hosts(&own, &peers(&s, container)));
        }
        Ok(())
    }

    /// Chooses the host port of `p` (an ephemeral one for 0) and checks that
    /// no container publishes it and no process has it bound.
    fn pick_port(&self, s: &State, p: PortSpec) -> Result<PortSpec> {
        let published = |port: u16| {
            s.ports.iter().find(|q| {
                q.port.host_port == port
                    && q.port.proto == p.proto
                    && (q.port.host_ip == p.host_ip
                        || q.port.host_ip.is_unspecified()
                        || p.host_ip.is_unspecified())
            })
        };
        if p.host_port == 0 {
            // The first port of the kernel's ephemeral range that no
            // container publishes and no process has bound: the same request
            // gets the same port, as Docker's allocator gives them in order.
            let (lo, hi) = local_port_range();
            return (lo..=hi)
                .filter(|port| published(*port).is_none())
                .find(|port| bind_probe(p.host_ip, *port, p.proto).is_ok())
                .map(|host_port| PortSpec { host_port, ..p })
                .ok_or(Error::NoFreePort {
                    host_ip: p.host_ip,
                    proto: p.proto,
                    range: (lo, hi),
                });
        }
        if let Some(q) = published(p.host_port) {
            return Err(Error::PortInUse {
                host_ip: p.host_ip,
                port: p.host_port,
                proto: p.proto,
                by: format!(
                    " (published by container {})",
                    &q.container[..12.min(q.container.len())]
                ),
            });
        }
        if let Err(e) = bind_probe(p.host_ip, p.host_port, p.proto) {
            return Err(Error::PortInUse {
                host_ip: p.host_ip,
                port: p.host_port,
                proto: p.proto,
                by: format!(" (bound by another process: {e})"),
            });
        }
        Ok(p)
    }
}

/// The kernel's ephemeral port range (of the calling thread's network
/// namespace: /proc/sys/net follows the thread that opens it); the kernel's
/// default when it cannot be read.
fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32768, 60999))
}

/// Binds (and lets go of) `ip:port`; the port the kernel gave.
fn bind_probe(ip: Ipv4Addr, port: u16, proto: Proto) -> std::io::Result<u16> {
    match proto {
        Proto::Tcp => TcpListener::bind((ip, port))?
            .local_addr()
            .map(|a| a.port()),
        Proto::Udp => UdpSocket::bind((ip, port))?.local_addr().map(|a| a.port()),
    }
}

fn find<'a>(s: &'a State, what: &str) -> Result<&'a Network> {
    if let Some(n) = s.networks.iter().find(|n| n.name == what || n.id == what) {
        return Ok(n);
    }
    let mut m = s
        .networks
        .iter()
        .filter(|n| !what.is_empty() && n.id.starts_with(what));
    match (m.next(), m.next()) {
        (Some(n), None) => Ok(n),
        _ => Err(Error::NoSuchNetwork(what.into())),
    }
}

fn allocate(s: &State, n: &Network, ip: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    let leased = s
        .endpoints
        .iter()
        .filter(|e| e.network == n.name)
        .map(|e| e.ip);
    let mut pool = Pool::with_leases(n.subnet, n.gateway, leased);
    let got = match ip {
        Some(ip) => pool.allocate_ip(ip),
        None => pool.allocate(),
    };
    got.map_err(|r| match (r, ip) {
        (Refused::Outside, Some(ip)) => Error::AddressOutside {
            ip,
            network: n.name.clone(),
            subnet: n.subnet,
        },
        (Refused::Unavailable, Some(ip)) => Error::AddressInUse {
            ip,
            network: n.name.clone(),
        },
        _ => Error::Exhausted {
            network: n.name.clone(),
            subnet: n.subnet,
        },
    })
}

/// A container's own lines: each of its addresses with its hostname and name.
fn own_entries(s: &State, container: &str) -> Vec<(Ipv4Addr, Vec<String>)> {
    s.endpoints
        .iter()
        .filter(|e| e.container == container)
        .map(|e| {
            let mut names = vec![e.hostname.clone()];
            if e.name != e.hostname {
                names.push(e.name.clone());
            }
            (e.ip, names)
        })
        .collect()
}

/// The other containers on the user-defined networks `container` is on.
fn peers(s: &State, container: &str) -> Vec<(Ipv4Addr, Vec<String>)> {
    let nets: Vec<&str> = s
        .endpoints
        .iter()
        .filter(|e| e.container == container && e.network != DEFAULT)
        .map(|e| e.network.as_str())
        .collect();
    s.endpoints
        .iter()
        .filter(|e| e.container != container && nets.contains(&e.network.as_str()))
        .map(|e| {
            // By name and short id (once, when they are the same).
            let short = &e.container[..12.min(e.container.len())];
            let mut names = vec![e.name.clone()];
            if e.name != short {
                names.push(short.to_string());
            }
            (e.ip, names)
        })
        .collect()
}

/// Rewrites the hosts files of every container on `networks`.
fn refresh_hosts(s: &State, networks: &[String]) -> Result<()> {
    let mut done: Vec<&str> = Vec::new();
    for e in s.endpoints.iter().filter(|e| networks.contains(&e.network)) {
        if done.contains(&e.container.as_str()) {
            continue;
        }
        done.push(&e.container);
        if let Some(f) = &e.hosts_file
            && f.parent().is_some_and(Path::exists)
        {
            dns::write_in_place(
                f,
                &dns::hosts(&own_entries(s, &e.container), &peers(s, &e.container)),
            )?;
        }
    }
    Ok(())
}

fn random_hex() -> Result<String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", "/dev/urandom"))?;
    Ok(hex::encode(b))
}
