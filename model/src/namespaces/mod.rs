//! Namespaces: which namespace of each kind every process is in.
//!
//! The rules encoded here, from clone(2), unshare(2), setns(2), namespaces(7),
//! pid_namespaces(7) and user_namespaces(7):
//!
//! - There are eight kinds. Every process is in exactly one namespace of each kind.
//! - A child starts in its parent's namespaces, except for each kind asked for
//!   in the clone flags, where it gets a new one. When a new user namespace is
//!   asked for together with others, the user namespace is made first and owns
//!   the others.
//! - Every namespace but the initial user namespace is owned by a user
//!   namespace: the new one of the same call, else the creator's.
//! - pid and time are special: `unshare` and `setns` of those change only the
//!   namespace the process's *children* will be in ("pid_for_children").
//! - pid namespaces form a tree. A process has a number in its own pid namespace
//!   and in every ancestor; the first process of a new pid namespace is number 1
//!   there. A process sees exactly the processes of its pid namespace and of its
//!   descendants, each under its number in the viewer's namespace.
//! - When the first process (pid 1) of a pid namespace exits, every other process
//!   of that namespace and of its descendants is killed, and no process can be
//!   created in it any more (the kernel answers ENOMEM).
//! - `setns` into a pid namespace is allowed only into the caller's own or a
//!   descendant; into a user namespace, not into the one the caller is already in.
//! - pid and user namespaces nest at most 32 deep (ENOSPC / EUSERS).
//!
//! Privilege is not modelled: every process is taken to hold the capabilities
//! these calls need, as berth's runtime does when it makes containers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The eight kinds of namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// cgroup root.
    Cgroup,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Mount table.
    Mnt,
    /// Network stack.
    Net,
    /// Process ids.
    Pid,
    /// User and group ids, and capabilities.
    User,
    /// Host and domain name.
    Uts,
    /// Monotonic and boot-time clock offsets.
    Time,
}

impl Kind {
    /// Every kind, in the order the kernel lists them under /proc/PID/ns.
    pub const ALL: [Kind; 8] = [
        Kind::Cgroup,
        Kind::Ipc,
        Kind::Mnt,
        Kind::Net,
        Kind::Pid,
        Kind::Time,
        Kind::User,
        Kind::Uts,
    ];

    /// Whether `unshare`/`setns` of this kind affects only future children.
    pub fn for_children_only(self) -> bool {
        matches!(self, Kind::Pid | Kind::Time)
    }
}

/// A namespace's identity (the inode number /proc/PID/ns/KIND shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsId(pub u32);

/// A process, by its number in the initial pid namespace (its host pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub u32);

/// A set of kinds (the CLONE_NEW* flags of a call).
pub type Flags = BTreeSet<Kind>;

/// Why the kernel refuses an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// ESRCH: no such process.
    NoSuchProcess(Pid),
    /// ENOMEM: the pid namespace's init has exited; no process can be made in it.
    PidNamespaceDead(NsId),
    /// EINVAL: setns into a pid namespace that is not the caller's or below it.
    PidNamespaceNotDescendant(NsId),
    /// EINVAL: setns into the user namespace the caller is already in.
    AlreadyInUserNamespace(NsId),
    /// ENOSPC (pid) / EUSERS (user): nesting deeper than 32.
    TooDeep(Kind),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuchProcess(p) => write!(f, "ESRCH: no process {}", p.0),
            Refusal::PidNamespaceDead(n) => {
                write!(f, "ENOMEM: pid namespace {} has no init any more", n.0)
            }
            Refusal::PidNamespaceNotDescendant(n) => write!(
                f,
                "EINVAL: pid namespace {} is not the caller's or below it",
                n.0
            ),
            Refusal::AlreadyInUserNamespace(n) => {
                write!(f, "EINVAL: already in user namespace {}", n.0)
            }
            Refusal::TooDeep(k) => write!(f, "{:?} namespaces nest at most {MAX_DEPTH} deep", k),
        }
    }
}

/// How deep pid and user namespaces may nest.
pub const MAX_DEPTH: usize = 32;

/// One namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its kind.
    pub kind: Kind,
    /// The user namespace that owns it (`None` only for the initial user namespace).
    pub owner: Option<NsId>,
    /// For pid and user namespaces: the namespace it was made in.
    pub parent: Option<NsId>,
    /// For pid namespaces: false once its init exited.
    pub alive: bool,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The namespace of each kind the process is in.
    pub ns: BTreeMap<Kind, NsId>,
    /// Where its children's pid and time namespaces will be.
    pub for_children: BTreeMap<Kind, NsId>,
    /// Its number in its pid namespace and in every ancestor.
    pub numbers: BTreeMap<NsId, u32>,
}

/// The namespaces of a machine and its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    spaces: BTreeMap<NsId, Namespace>,
    procs: BTreeMap<Pid, Process>,
    next_ns: u32,
    next_number: BTreeMap<NsId, u32>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespaces {
    /// A machine with the initial namespaces and its init, pid 1.
    pub fn new() -> Self {
        let mut m = Namespaces {
            spaces: BTreeMap::new(),
            procs: BTreeMap::new(),
            next_ns: 1,
            next_number: BTreeMap::new(),
        };
        let user = m.make(Kind::User, None, None);
        let mut ns = BTreeMap::new();
        for k in Kind::ALL {
            let id = if k == Kind::User {
                user
            } else {
                m.make(k, Some(user), None)
            };
            ns.insert(k, id);
        }
        let pid_ns = ns[&Kind::Pid];
        let for_children = [(Kind::Pid, pid_ns), (Kind::Time, ns[&Kind::Time])].into();
        let number = m.allocate(pid_ns);
        m.procs.insert(
            Pid(number),
            Process {
                ns,
                for_children,
                numbers: [(pid_ns, number)].into(),
            },
        );
        m
    }

    fn make(&mut self, kind: Kind, owner: Option<NsId>, parent: Option<NsId>) -> NsId {
        let id = NsId(self.next_ns);
        self.next_ns += 1;
        self.spaces.insert(
            id,
            Namespace {
                kind,
                owner,
                parent,
                alive: true,
            },
        );
        id
    }

    fn allocate(&mut self, pid_ns: NsId) -> u32 {
        let n = self.next_number.entry(pid_ns).or_insert(0);
        *n += 1;
        *n
    }

    fn proc(&self, pid: Pid) -> Result<&Process, Refusal> {
        self.procs.get(&pid).ok_or(Refusal::NoSuchProcess(pid))
    }

    /// The chain of `id`'s ancestors (pid or user namespaces), itself first.
    pub fn ancestry(&self, id: NsId) -> Vec<NsId> {
        let mut out = vec![id];
        let mut cur = id;
        while let Some(p) = self.spaces.get(&cur).and_then(|n| n.parent) {
            out.push(p);
            cur = p;
        }
        out
    }

    /// New namespaces for `flags`, made by a process whose namespaces are `base`
    /// (and whose children would go to `children`): returns the changed map.
    fn new_namespaces(
        &mut self,
        base: &BTreeMap<Kind, NsId>,
        children: &BTreeMap<Kind, NsId>,
        flags: &Flags,
    ) -> Result<BTreeMap<Kind, NsId>, Refusal> {
        let mut ns = base.clone();
        if flags.contains(&Kind::User) {
            let parent = base[&Kind::User];
            if self.ancestry(parent).len() >= MAX_DEPTH {
                return Err(Refusal::TooDeep(Kind::User));
            }
            let id = self.make(Kind::User, Some(parent), Some(parent));
            ns.insert(Kind::User, id);
        }
        let owner = ns[&Kind::User];
        for &k in flags.iter().filter(|k| **k != Kind::User) {
            let id = if k == Kind::Pid {
                let parent = children[&Kind::Pid];
                if self.ancestry(parent).len() >= MAX_DEPTH {
                    return Err(Refusal::TooDeep(Kind::Pid));
                }
                self.make(k, Some(owner), Some(parent))
            } else {
                self.make(k, Some(owner), None)
            };
            ns.insert(k, id);
        }
        Ok(ns)
    }

    /// clone(2) (clone3, for time): a child of `parent` with new namespaces for `flags`.
    pub fn spawn(&mut self, parent: Pid, flags: &Flags) -> Result<Pid, Refusal> {
        let p = self.proc(parent)?.clone();
        let target_pid_ns = p.for_children[&Kind::Pid];
        if !self.spaces[&target_pid_ns].alive {
            return Err(Refusal::PidNamespaceDead(target_pid_ns));
        }
        let mut base = p.ns.clone();
        base.insert(Kind::Pid, target_pid_ns);
        base.insert(Kind::Time, p.for_children[&Kind::Time]);
        let ns = self.new_namespaces(&base, &p.for_children, flags)?;
        let mut numbers = BTreeMap::new();
        for id in self.ancestry(ns[&Kind::Pid]) {
            let n = self.allocate(id);
            numbers.insert(id, n);
        }
        let host = Pid(numbers[self.ancestry(ns[&Kind::Pid]).last().expect("a root")]);
        let for_children = [(Kind::Pid, ns[&Kind::Pid]), (Kind::Time, ns[&Kind::Time])].into();
        self.procs.insert(
            host,
            Process {
                ns,
                for_children,
                numbers,
            },
        );
        Ok(host)
    }

    /// unshare(2): new namespaces for `flags`; pid and time ones only for future children.
    pub fn unshare(&mut self, pid: Pid, flags: &Flags) -> Result<(), Refusal> {
        let p = self.proc(pid)?.clone();
        let made = self.new_namespaces(&p.ns, &p.for_children, flags)?;
        let proc = self.procs.get_mut(&pid).expect("checked above");
        for k in flags {
            if k.for_children_only() {
                proc.for_children.insert(*k, made[k]);
            } else {
                proc.ns.insert(*k, made[k]);
            }
        }
        Ok(())
    }

    /// setns(2): `pid` joins `target`'s namespace of `kind`.
    pub fn setns(&mut self, pid: Pid, target: Pid, kind: Kind) -> Result<(), Refusal> {
        let me = self.proc(pid)?.clone();
        let theirs = self.proc(target)?.ns[&kind];
        match kind {
            Kind::Pid if !self.ancestry(theirs).contains(&me.ns[&Kind::Pid]) => {
                return Err(Refusal::PidNamespaceNotDescendant(theirs));
            }
            Kind::User if theirs == me.ns[&Kind::User] => {
                return Err(Refusal::AlreadyInUserNamespace(theirs));
            }
            _ => {}
        }
        let proc = self.procs.get_mut(&pid).expect("checked above");
        if kind.for_children_only() {
            proc.for_children.insert(kind, theirs);
        }
        if kind != Kind::Pid {
            // A time namespace applies at once (and to children); pid only to children.
            proc.ns.insert(kind, theirs);
        }
        Ok(())
    }

    /// The process exits. If it was pid 1 of its pid namespace, every process of
    /// that namespace and of its descendants dies with it. Returns who died.
    pub fn exit(&mut self, pid: Pid) -> Result<Vec<Pid>, Refusal> {
        let p = self.proc(pid)?.clone();
        let own = p.ns[&Kind::Pid];
        let mut dead = vec![pid];
        if p.numbers[&own] == 1 {
            for id in self.spaces.keys().copied().collect::<Vec<_>>() {
                if self.spaces[&id].kind == Kind::Pid && self.ancestry(id).contains(&own) {
                    self.spaces.get_mut(&id).expect("listed").alive = false;
                }
            }
            dead.extend(
                self.procs
                    .iter()
                    .filter(|(q, pr)| **q != pid && self.ancestry(pr.ns[&Kind::Pid]).contains(&own))
                    .map(|(q, _)| *q),
            );
        }
        for d in &dead {
            self.procs.remove(d);
        }
        Ok(dead)
    }

    /// The namespace of `kind` that `pid` is in.
    pub fn ns_of(&self, pid: Pid, kind: Kind) -> Result<NsId, Refusal> {
        Ok(self.proc(pid)?.ns[&kind])
    }

    /// A namespace.
    pub fn namespace(&self, id: NsId) -> Option<&Namespace> {
        self.spaces.get(&id)
    }

    /// Every live process.
    pub fn processes(&self) -> impl Iterator<Item = (Pid, &Process)> {
        self.procs.iter().map(|(p, pr)| (*p, pr))
    }

    /// What `viewer` sees in /proc: its number for each process it can see.
    pub fn visible(&self, viewer: Pid) -> Result<BTreeMap<u32, Pid>, Refusal> {
        let view_ns = self.proc(viewer)?.ns[&Kind::Pid];
        Ok(self
            .procs
            .iter()
            .filter_map(|(p, pr)| pr.numbers.get(&view_ns).map(|n| (*n, *p)))
            .collect())
    }

    /// The number of `pid` in its own pid namespace (what getpid() returns).
    pub fn own_number(&self, pid: Pid) -> Result<u32, Refusal> {
        let p = self.proc(pid)?;
        Ok(p.numbers[&p.ns[&Kind::Pid]])
    }
}

#[cfg(test)]
mod tests;
