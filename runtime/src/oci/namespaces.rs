//! Namespace kinds: their clone flags, their /proc names, and the order they are entered.

use std::fs::File;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::error::{Error, Result, SysContext};

/// The clone flag of a namespace kind.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Every kind, in the order they are joined: user first (the others may belong to
/// it), mount last (its paths would no longer resolve after it).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// The namespaces of a container: which are new and which are joined (and where).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Kinds created fresh.
    pub new: Vec<LinuxNamespaceType>,
    /// Kinds joined, with the open namespace file.
    pub join: Vec<(LinuxNamespaceType, std::path::PathBuf)>,
}

impl Plan {
    /// From `linux.namespaces`.
    pub fn from_spec(list: &[LinuxNamespace]) -> Self {
        let mut p = Plan::default();
        for t in JOIN_ORDER {
            if let Some(ns) = list.iter().find(|n| n.typ() == t) {
                match ns.path() {
                    Some(path) => p.join.push((t, path.clone())),
                    None => p.new.push(t),
                }
            }
        }
        p
    }

    /// Whether kind `t` is new.
    pub fn is_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    /// Whether kind `t` is either new or joined (the container does not share the host's).
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.is_new(t) || self.join.iter().any(|(k, _)| *k == t)
    }
}

/// Opens a namespace file to join later.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::Io {
        what: "opening namespace",
        path: path.to_path_buf(),
        source: e,
    })
}

/// Joins the namespace open as `file`.
pub fn join(t: LinuxNamespaceType, file: &File, path: &Path) -> Result<()> {
    setns(file, flag(t)).sys(|| format!("joining {} namespace {}", proc_name(t), path.display()))
}
