//! What can happen, and what may come of it.

use berth_model::namespaces::Kind;

/// Where a container's namespace of one kind comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The host's (the kind is not in the config).
    Host,
    /// A new one.
    New,
    /// Another container's (`path: /proc/<its init>/ns/<kind>`).
    Join(String),
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `run -d`: a container whose namespaces come from `ns` (a new mount
    /// namespace always).
    Run {
        /// the container
        name: String,
        /// per kind (pid, ipc, uts, net, cgroup)
        ns: Vec<(Kind, Source)>,
    },
    /// `exec -d`: a process in a running container.
    Exec(String),
    /// `kill KILL` then `delete --force`.
    Stop(String),
}

/// What came of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// A namespace to join belongs to a process that is gone.
    NoSuchProcess,
    /// The cgroup namespace to join has lost its root cgroup (the container
    /// that made it was removed): the new container cannot mount cgroupfs.
    CgroupRootGone,
    /// Anything else: never expected.
    Other(String),
}
