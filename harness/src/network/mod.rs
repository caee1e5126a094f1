//! The bridge/IP machine: networks created and removed, containers (processes
//! in their own network namespaces) run on them with fixed or allocated
//! addresses and published ports, connected and disconnected, stopped, and
//! killed with their owner (their leases and ports kept until a later
//! recovery, or until the same container runs again); berth's network store
//! ([`berth::network::Networks`]) is the system under test, berth-model's
//! [`berth_model::network::Networks`] the reference.
//!
//! Observed after every step: bridges, veths and their bridge, the bridges'
//! addresses (netlink, in a network namespace private to the case), the
//! masquerade and DNAT rules of berth's nftables table, the leases in berth's
//! state, each container's own interfaces (address, prefix, MAC) seen from
//! inside its namespace, and that no other link or nftables table exists; and
//! after every step that changed something, real TCP reachability between
//! the containers and to the published ports ([`reach`]).

pub mod assertions;
pub mod observe;
pub mod reach;
pub mod reference;
pub mod strategies;
pub mod sut;
pub mod transitions;

pub use reference::NetRef;
pub use sut::NetMachine;
