//! The cgroups machine: nested cgroups made, filled with processes, limited
//! (memory, memory+swap, pids, cpu, hugepages, device rules), frozen,
//! thawed, emptied and removed in random orders through berth's
//! cgroup manager ([`berth::oci::cgroups`]), under whatever layout the host
//! (or VM) has — pure v2, or v1 with its per-controller hierarchies;
//! berth-model's [`berth_model::cgroups::Layout`] is the reference.
//!
//! Each case works below a cgroup of its own in every hierarchy. Observed
//! after every step, in every hierarchy the model has: which cgroups exist,
//! each one's own processes (`cgroup.procs`), v2's `cgroup.subtree_control`
//! and which limit files exist, the limits written, the freezer (the
//! cgroup's own setting and whether its processes are frozen), which of
//! four character devices a process in it may read, write, open for both
//! and mknod (asked of the kernel by a probe process; v1's `devices.list`
//! too); after the case, that nothing of it is left in any hierarchy (the
//! hybrid cgroup2 mount of a v1 host included).

pub mod assertions;
pub mod observe;
pub mod reference;
pub mod strategies;
pub mod sut;
pub mod transitions;

pub use reference::CgRef;
pub use sut::CgMachine;
