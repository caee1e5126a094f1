//! The lifecycle machine: containers created, started, paused, resumed,
//! killed and deleted (with and without `--force`) in random orders, forbidden
//! ones included, through the `berth-runc` binary as containerd would call it;
//! berth-model's [`berth_model::lifecycle::Containers`] is the reference.
//!
//! Observed after every step: the outcome kind (ok, exists, not found, or
//! which status refused it); `berth-runc list` (ids and statuses); from the
//! kernel, for each container, that its init lives (created, running,
//! paused) or not (stopped), that it is the user's program once started and
//! not before, whether its cgroup is frozen; that a deleted container's state
//! directory and cgroup are gone; and no other container in the root.

pub mod assertions;
pub mod observe;
pub mod reference;
pub mod strategies;
pub mod sut;
pub mod transitions;

pub use reference::LifeRef;
pub use sut::LifeMachine;
