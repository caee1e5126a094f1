//! Bridge networking: networks and their bridges, veth pairs, IP address
//! management, published ports and NAT, and the DNS files of containers.
//!
//! What berth owns on a host, for one data root:
//! - per network a Linux bridge with the gateway's address, and per container
//!   on it a veth pair: the host end (`bv` + 9 hex of the container id + the
//!   network's number, ≤ 15 characters) on the bridge, the other end in the
//!   container's namespace as `eth0` (`eth1`… for more networks), with its
//!   address, Docker's MAC for it (02:42 + the address), the bridge's MTU and
//!   a default route through the gateway;
//! - one nftables table (`ip berth` for the default root, `ip berth-<hash>`
//!   for any other, so roots side by side never touch each other's rules),
//!   rewritten whole in one `nft` transaction after each change: masquerade of
//!   each subnet on the way out, DNAT of published ports (prerouting for other
//!   hosts, output for the host itself, 127.0.0.1 included through
//!   route_localnet on the bridge), masquerade of hairpin and localhost
//!   traffic, and a forward rule that keeps networks apart;
//! - `net.ipv4.ip_forward`, on while any root has a network, with the value
//!   found before restored when the last one goes ([`forward`]).
//!
//! The state (networks, endpoints, published ports) is one JSON file under
//! `ROOT/network`, changed only under its `flock`, so concurrent `berth run`s
//! never get the same address. Netlink work runs on a tokio current-thread
//! runtime (no threads), after the container's init was cloned.

pub mod dns;
pub mod forward;
pub mod ipam;
pub mod netlink;
pub mod nft;
mod store;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use store::{Attach, DEFAULT, DEFAULT_SUBNET, Networks};

/// Errors of the network code; each names the network, address or port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No network by that name or id.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// A network of that name exists.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// A name Docker's rules refuse.
    #[error("invalid network name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    /// A subnet that overlaps one in use.
    #[error("subnet {subnet} overlaps {what}")]
    Overlaps {
        /// the new subnet
        subnet: Subnet,
        /// what it overlaps
        what: String,
    },
    /// A value that is not what it should be.
    #[error("invalid {0}: {1}")]
    Invalid(String, String),
    /// A network with containers on it.
    #[error("network {name} has active endpoints: {containers}")]
    InUse {
        /// the network
        name: String,
        /// the containers
        containers: String,
    },
    /// Nothing left to hand out.
    #[error("no available IPv4 address on network {network} ({subnet}): the subnet is exhausted")]
    Exhausted {
        /// the network
        network: String,
        /// its subnet
        subnet: Subnet,
    },
    /// An asked-for address that is reserved or taken.
    #[error("address {ip} is already in use (or reserved) on network {network}")]
    AddressInUse {
        /// the address
        ip: Ipv4Addr,
        /// the network
        network: String,
    },
    /// An asked-for address outside the subnet.
    #[error("address {ip} is not in network {network}'s subnet {subnet}")]
    AddressOutside {
        /// the address
        ip: Ipv4Addr,
        /// the network
        network: String,
        /// its subnet
        subnet: Subnet,
    },
    /// A host port published already or bound by another process.
    #[error("bind for {host_ip}:{port}/{proto} failed: port is already allocated{by}")]
    PortInUse {
        /// the host address
        host_ip: Ipv4Addr,
        /// the port
        port: u16,
        /// tcp or udp
        proto: Proto,
        /// by whom, when known
        by: String,
    },
    /// No port of the ephemeral range is free.
    #[error("no free host port for {host_ip}/{proto} in the ephemeral range {}-{}", range.0, range.1)]
    NoFreePort {
        /// the host address
        host_ip: Ipv4Addr,
        /// tcp or udp
        proto: Proto,
        /// the range (ip_local_port_range)
        range: (u16, u16),
    },
    /// The container is on that network already.
    #[error("container {container} is already connected to network {network}")]
    Connected {
        /// the container
        container: String,
        /// the network
        network: String,
    },
    /// The container is not on that network.
    #[error("container {container} is not connected to network {network}")]
    NotConnected {
        /// the container
        container: String,
        /// the network
        network: String,
    },
    /// A netlink request the kernel refused.
    #[error("netlink: {what}: {msg}")]
    Netlink {
        /// what was asked
        what: String,
        /// the kernel's answer
        msg: String,
    },
    /// `nft` refused the rules (or is missing).
    #[error("nftables: {0}")]
    Nft(String),
    /// A fault injected by a test ([`crate::fault`]).
    #[error("{0}")]
    Fault(String),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// Result with the network [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// An IPv4 subnet, written `A.B.C.D/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// `addr/prefix` with the host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(prefix)),
            prefix,
        }
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix.min(32)))
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !Self::mask(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, o: &Subnet) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }

    /// The first address after the network address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet> {
        let bad = |why: &str| Error::Invalid("subnet".into(), format!("{s:?}: {why}"));
        let (a, p) = s.split_once('/').ok_or_else(|| bad("want A.B.C.D/N"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("the prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix must be 8 to 30"));
        }
        let n = Subnet::new(addr, prefix);
        if n.addr != addr {
            return Err(bad(&format!("host bits set (the network is {n})")));
        }
        Ok(n)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP
    Tcp,
    /// UDP
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A `-p` request: host address and port (0: any free one), container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address (0.0.0.0: every address).
    pub host_ip: Ipv4Addr,
    /// Host port; 0 for an ephemeral one.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

impl PortSpec {
    /// Docker's `-p` forms: `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`
    /// (`HOSTIP::CPORT` too), each port possibly a range `A-B` of equal length;
    /// no host port, or 0, is an ephemeral one for each container port.
    pub fn parse(s: &str) -> Result<Vec<PortSpec>> {
        let bad = |why: &str| Error::Invalid("--publish".into(), format!("{s:?}: {why}"));
        let (body, proto) = match s.rsplit_once('/') {
            Some((b, "tcp")) => (b, Proto::Tcp),
            Some((b, "udp")) => (b, Proto::Udp),
            Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = body.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [i, h, c] => (*i, *h, *c),
            _ => return Err(bad("want [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]")),
        };
        let host_ip: Ipv4Addr = if ip.is_empty() {
            Ipv4Addr::UNSPECIFIED
        } else {
            ip.parse()
                .map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?
        };
        let range = |r: &str| -> Result<(u16, u16)> {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let p = |x: &str| -> Result<u16> {
                match x.parse::<u16>() {
                    Ok(0) => Err(bad("port 0")),
                    Ok(n) => Ok(n),
                    Err(_) => Err(bad(&format!("{x:?} is not a port (1-65535)"))),
                }
            };
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                return Err(bad(&format!("empty range {r}")));
            }
            Ok((a, b))
        };
        let (c0, c1) = range(ctr)?;
        // No host port, or 0 (as Docker takes it): an ephemeral one for each.
        let ephemeral = host.is_empty() || host == "0";
        let (h0, h1) = if ephemeral { (0, 0) } else { range(host)? };
        if !ephemeral && h1 - h0 != c1 - c0 {
            return Err(bad("host and container port ranges differ in length"));
        }
        Ok((0..=(c1 - c0))
            .map(|i| PortSpec {
                host_ip,
                host_port: if ephemeral { 0 } else { h0 + i },
                container_port: c0 + i,
                proto,
            })
            .collect())
    }
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Its bridge.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// Its number (in veth names).
    pub index: u32,
    /// When it was made (RFC 3339).
    pub created: String,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's id.
    pub container: String,
    /// The container's name (for the other containers' /etc/hosts).
    pub name: String,
    /// The network's name.
    pub network: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The name inside the container (`eth0`, …).
    pub ifname: String,
    /// The container's hosts file, rewritten when the network's members change.
    pub hosts_file: Option<PathBuf>,
    /// The container's hostname.
    pub hostname: String,
}

/// A published port of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The container's id.
    pub container: String,
    /// What is published (the host port chosen when it was 0); it goes to
    /// the container's first endpoint.
    pub port: PortSpec,
}

/// Docker's MAC for an address: 02:42 and the four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:…`.
pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host end of a container's veth on network number `index`: `bv`, 9 hex
/// digits of the id, the number in hex (≤ 15 characters, the kernel's limit).
pub fn veth_name(container_id: &str, index: u32) -> String {
    let mut n = format!("bv{}{index:x}", &container_id[..9.min(container_id.len())]);
    n.truncate(15);
    n
}

/// Docker's network and container name rule.
pub fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse() {
        let s: Subnet = "172.30.0.0/16".parse().expect("ok");
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 30, 255, 255));
        assert_eq!(s.to_string(), "172.30.0.0/16");
        for bad in [
            "172.30.0.1/16",
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/x",
            "300.0.0.0/8",
        ] {
            let e = bad.parse::<Subnet>().expect_err(bad).to_string();
            assert!(e.starts_with("invalid subnet: ") && e.contains(bad), "{e}");
        }
        assert!(s.overlaps(&"172.30.5.0/24".parse().expect("ok")));
        assert!(!s.overlaps(&"172.31.0.0/16".parse().expect("ok")));
    }

    #[test]
    fn publish_forms() {
        let p = |s: &str| PortSpec::parse(s).expect(s);
        let one = |ip: [u8; 4], h, c, proto| PortSpec {
            host_ip: Ipv4Addr::from(ip),
            host_port: h,
            container_port: c,
            proto,
        };
        assert_eq!(p("8080:80"), vec![one([0; 4], 8080, 80, Proto::Tcp)]);
        assert_eq!(p("80"), vec![one([0; 4], 0, 80, Proto::Tcp)]);
        assert_eq!(
            p("127.0.0.1:53:53/udp"),
            vec![one([127, 0, 0, 1], 53, 53, Proto::Udp)]
        );
        assert_eq!(
            p("127.0.0.1::80"),
            vec![one([127, 0, 0, 1], 0, 80, Proto::Tcp)]
        );
        assert_eq!(p("9000-9001:90-91").len(), 2);
        // Host port 0 is an ephemeral one too, as Docker takes it.
        assert_eq!(p("0:80"), vec![one([0; 4], 0, 80, Proto::Tcp)]);
        assert_eq!(
            p("127.0.0.1:0:80-81/udp"),
            vec![
                one([127, 0, 0, 1], 0, 80, Proto::Udp),
                one([127, 0, 0, 1], 0, 81, Proto::Udp)
            ]
        );
        for bad in [
            "x",
            "8080:80/sctp",
            "1:2:3:4",
            "80:0",
            "0-1:80-81",
            "70000:80",
            "1-3:1-2",
            "a.b:1:2",
        ] {
            let e = PortSpec::parse(bad).expect_err(bad).to_string();
            assert!(
                e.starts_with("invalid --publish: ") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn veth_names_fit_the_kernel() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(veth_name(&id, 0), "bv0123456780");
        assert!(veth_name(&id, u32::MAX).len() <= 15);
        assert_eq!(
            mac_string(&mac_for(Ipv4Addr::new(172, 30, 0, 2))),
            "02:42:ac:1e:00:02"
        );
    }
}
