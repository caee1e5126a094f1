//! The namespaces machine: containers run through the berth-runc binary
//! with each of their pid, ipc, uts, network and cgroup namespaces new,
//! the host's, or joined from another container (`path` in the config, as
//! `--network container:` and Kubernetes pods do), processes exec'd into
//! them, and containers stopped; berth-model's
//! [`berth_model::namespaces::Namespaces`] is the reference.
//!
//! Observed after every step: `/proc/<pid>/ns/*` of every process the model
//! says lives (the container inits, the exec'd processes, the harness itself
//! as the host): processes the model puts in one namespace share its inode,
//! processes in different ones do not; that the processes the model says
//! died are gone; and, for a container with a pid namespace of its own, the
//! pids its `/proc` lists are those of the processes the model says it sees.

pub mod assertions;
pub mod observe;
pub mod reference;
pub mod strategies;
pub mod sut;
pub mod transitions;

pub use reference::NsRef;
pub use sut::NsMachine;
