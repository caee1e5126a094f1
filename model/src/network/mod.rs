//! Bridge networking and IP address management.
//!
//! Rules encoded here (Docker's bridge driver as berth follows it; the kernel's
//! 15-character interface names):
//!
//! - A network has a name, a bridge, an IPv4 subnet and a gateway inside it.
//!   Names are unique and subnets may not overlap.
//! - Allocation hands out the lowest free address of the subnet, never the
//!   network address, the broadcast address or the gateway; a released address
//!   is free again; when none is left the subnet is exhausted.
//! - A container in bridge mode gets, per network, an endpoint: an address, a MAC
//!   derived from it as Docker does (`02:42` then the four address bytes), and a
//!   veth pair whose host end (at most 15 characters) joins the bridge.
//! - The other modes: `host` (the host's network namespace, no endpoint), `none`
//!   (loopback only), `container:<other>` (the other container's namespace; the
//!   other must exist).
//! - Published ports are unique per (host address, port, protocol); 0.0.0.0
//!   conflicts with every address. A port asked for without a host port is
//!   the first of the ephemeral range that is free. A network with endpoints cannot be removed.
//! - [`Networks::kernel`] says what must exist in the
//!   kernel for a state: links, addresses, routes and NAT rules, as data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 8..=30.
    pub prefix: u8,
}

impl Subnet {
    /// A subnet; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        let mask = Self::mask_of(prefix);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !Self::mask_of(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.addr)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A network of this name exists.
    NetworkExists(String),
    /// The subnet overlaps this network's.
    SubnetOverlaps(String),
    /// The gateway is not a usable address of the subnet.
    BadGateway(Ipv4Addr),
    /// No such network.
    NoSuchNetwork(String),
    /// The network still has endpoints.
    NetworkInUse(String),
    /// No free address is left.
    SubnetExhausted(String),
    /// The asked-for address is taken or reserved.
    AddressUnavailable(Ipv4Addr),
    /// The asked-for address is outside the subnet.
    AddressOutsideSubnet(Ipv4Addr),
    /// No such container.
    NoSuchContainer(String),
    /// A container of this name exists.
    ContainerExists(String),
    /// The container is already connected to the network.
    AlreadyConnected(String, String),
    /// Only bridge-mode containers join networks.
    NotBridgeMode(String),
    /// The host address, port and protocol are published already.
    PortInUse(Ipv4Addr, u16, Proto),
    /// No port of the ephemeral range is free for the address and protocol.
    NoFreePort(Ipv4Addr, Proto),
    /// Not a name Docker takes: a letter or digit first, then letters,
    /// digits, `_`, `.` and `-`.
    BadName(String),
}

/// Docker's rule for network (and container) names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// tcp
    Tcp,
    /// udp
    Udp,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// Its bridge's name.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Its number, used in veth names.
    pub index: u32,
    /// Addresses handed out.
    pub leased: BTreeSet<Ipv4Addr>,
}

impl Network {
    /// Whether `ip` may ever be handed out.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.addr
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// The lowest free assignable address.
    pub fn next_free(&self) -> Option<Ipv4Addr> {
        let (lo, hi) = (
            u32::from(self.subnet.addr) + 1,
            u32::from(self.subnet.broadcast()),
        );
        (lo..hi)
            .map(Ipv4Addr::from)
            .find(|ip| self.assignable(*ip) && !self.leased.contains(ip))
    }
}

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Endpoints on bridge networks.
    Bridge,
    /// The host's network namespace.
    Host,
    /// Loopback only.
    None,
    /// Another container's network namespace.
    Container(String),
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The container.
    pub container: String,
    /// The network.
    pub network: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC, from the address.
    pub mac: [u8; 6],
    /// The host end of the veth pair (on the bridge).
    pub host_veth: String,
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    /// Host address (0.0.0.0: all).
    pub host_ip: Ipv4Addr,
    /// Host port.
    pub host_port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Port in the container.
    pub container_port: u16,
}

/// Docker's MAC for an address: 02:42 and the four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// The host-side veth name: `bv`, up to 9 characters of the container name, the
/// network's number in hex — at most 15 characters, the kernel's limit.
pub fn veth_name(container: &str, network_index: u32) -> String {
    let short: String = container
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(9)
        .collect();
    let mut name = format!("bv{short}{network_index:x}");
    name.truncate(15);
    name
}

/// The networks, containers, endpoints and published ports of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    networks: BTreeMap<String, Network>,
    containers: BTreeMap<String, (Mode, Vec<(Port, String)>)>,
    endpoints: Vec<Endpoint>,
    next_index: u32,
    /// Containers whose namespace died with nobody to give back what they
    /// held (a crash): see [`Networks::crash`].
    gone: BTreeSet<String>,
    /// Subnets of addresses the host has on its own links: a network may
    /// not overlap them either.
    host: Vec<Subnet>,
}

mod ops;
pub use ops::Kernel;

#[cfg(test)]
mod tests;
