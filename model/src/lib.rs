//! berth-model: the executable specification that the harness holds the runtime against.
//!
//! Written to be read: every operation returns the refusal the kernel (or the
//! runtime) gives, and every query answers what the harness can observe. It has no
//! I/O, no unsafe code, no dependency on the runtime crate, and is deterministic.
//!
//! Parts (shared/DESIGN.md, "The model"):
//! - [`namespaces`]: processes, the eight namespace kinds, the pid and user
//!   namespace trees.
//! - [`cgroups`]: v2 and v1 hierarchies, controllers, limits, the freezer, and
//!   how OCI's `linux.resources` becomes cgroup files.
//! - [`network`]: bridge networks, IP allocation, endpoints, the four modes,
//!   published ports, and the kernel objects a state implies.
//! - [`union`]: layers with whiteouts and opaque markers, the overlay view,
//!   container writes with copy-up, and commit.
//! - [`lifecycle`]: create, start, pause, resume, kill and delete, and which
//!   status allows which.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cgroups;
pub mod lifecycle;
pub mod namespaces;
pub mod network;
pub mod union;
