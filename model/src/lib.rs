//! berth-model: the executable specification that the harness holds the runtime against.
//!
//! Not built yet: issue 4 fills this crate with the namespace, cgroup, union and
//! bridge/IP models described in shared/DESIGN.md ("The model"). It has no I/O, no
//! unsafe code and no dependency on the runtime crate, and it must stay that way.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
