//! What can happen, and what may come of it.

use std::net::Ipv4Addr;

use berth_model::network::{Proto, Subnet};

/// One `-p` of a run: `[HOSTIP:][HOSTPORT:]80[-CEND][/PROTO]`, a range of
/// `count` ports from the container's 80 (and from `host_port`, when one is
/// given; else each gets the first free port of the ephemeral range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The host address (0.0.0.0: all).
    pub host_ip: Ipv4Addr,
    /// The first host port; none: ephemeral ones.
    pub host_port: Option<u16>,
    /// How many ports (a range when more than one).
    pub count: u16,
    /// tcp or udp.
    pub proto: Proto,
}

/// One step of the bridge/IP machine.
#[derive(Debug, Clone)]
pub enum Transition {
    /// `network create NAME --subnet S [--gateway G]`.
    Create {
        /// its name
        name: String,
        /// its subnet (none: the first free 10.89.N.0/24)
        subnet: Option<Subnet>,
        /// `--gateway`
        gateway: Option<Ipv4Addr>,
        /// A fault injected once the bridge is made: the create fails and
        /// must leave nothing.
        fault: Option<&'static str>,
    },
    /// `network rm NAME`.
    Remove {
        /// the network
        name: String,
    },
    /// A container starts on a network (`--ip`, `-p`).
    Run {
        /// the container's id
        container: String,
        /// the network
        network: String,
        /// `--ip`
        ip: Option<Ipv4Addr>,
        /// `-p`
        publish: Option<Publish>,
        /// A fault injected at this step of the run ([`berth::fault`]): the
        /// run fails and must leave nothing.
        fault: Option<&'static str>,
    },
    /// `network connect [--ip] NET CONTAINER` of a running container.
    Connect {
        /// the container
        container: String,
        /// the network
        network: String,
        /// `--ip`
        ip: Option<Ipv4Addr>,
    },
    /// `network disconnect NET CONTAINER`.
    Disconnect {
        /// the container
        container: String,
        /// the network
        network: String,
    },
    /// The container ends; what it held is given back (its namespace, and the
    /// veths in it, go with its last process).
    Stop {
        /// the container
        container: String,
    },
    /// The container and its owner are killed (SIGKILL): its namespace goes,
    /// and its veths with it; nobody gives back its leases and ports, which
    /// stay in berth's store (and its DNAT rules in the kernel) until a
    /// [`Transition::Recover`] or a new run of the same container.
    Crash {
        /// the container
        container: String,
    },
    /// A later berth command finds a crashed container and recovers (the
    /// engine's reconcile): everything it held is given back, deleting what
    /// is left of it.
    Recover {
        /// the container
        container: String,
    },
}

/// What came of a step: ok, or which refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Ok,
    /// A network of that name exists.
    NetworkExists,
    /// Not a name a network may have.
    BadName,
    /// The subnet overlaps another network's.
    Overlaps,
    /// The gateway is not a host address of the subnet.
    BadGateway,
    /// No network of that name.
    NoSuchNetwork,
    /// The network has endpoints.
    NetworkInUse,
    /// No address left.
    Exhausted,
    /// The asked-for address is taken or reserved.
    AddressUnavailable,
    /// The asked-for address is outside the subnet.
    AddressOutside,
    /// The container is on that network already.
    AlreadyConnected,
    /// The container is not on that network.
    NotConnected,
    /// The host port is published already.
    PortInUse,
    /// No port of the ephemeral range is free.
    NoFreePort,
    /// The injected fault (and nothing left of the failed run).
    Fault,
    /// Anything else (the runtime's message): never expected.
    Other(String),
}
