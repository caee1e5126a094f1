//! The OCI runtime: a faithful implementation of the OCI runtime spec, driven by
//! `berth-runc` with runc's command line and by the engine in-process.
//!
//! What each module owns:
//! - [`spec`]: reading and validating config.json; the default config `spec` writes.
//! - [`state`]: the lifecycle ([`state::Status`] and its predicates) and the state store.
//! - [`create`]: the create sequence and the container's init (its module doc draws
//!   the runtime ↔ init protocol); [`channel`] carries it.
//! - [`ops`]: start, state, kill, delete, pause, resume, update, ps, list.
//! - [`exec`]: a new process in a running container.
//! - [`mounts`], [`namespaces`], [`process`], [`seccomp`], [`console`], [`hooks`],
//!   [`cgroups`]: the pieces the init and the commands put together.
//!
//! Rules kept here: the process that clones is single-threaded; every child ends
//! with exec or `_exit`; state is written atomically under an flock; a failed
//! create removes everything it made.

pub mod cgroups;
pub mod channel;
pub mod console;
pub mod create;
pub mod default_profile;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod mounts;
pub mod namespaces;
pub mod ops;
pub mod process;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod state;
pub mod time;

pub use error::{Error, Result};
