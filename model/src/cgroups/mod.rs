//! cgroups: the hierarchies, their processes, controllers and limits.
//!
//! Rules encoded here, from the kernel's Documentation/admin-guide/cgroup-v2.rst
//! and cgroup-v1/*.rst, and from the OCI runtime spec's `linux.resources`:
//!
//! - A hierarchy is a tree of cgroups named by paths from its root "/". v2 has one
//!   hierarchy; v1 has one per mounted controller.
//! - `mkdir` needs the parent to exist and the name to be free; `rmdir` is refused
//!   (EBUSY) while the cgroup has children or processes, and the root cannot go.
//! - A process is in exactly one cgroup of each hierarchy; attaching moves it.
//! - v2 only: a controller is enabled for a cgroup's children in its
//!   `cgroup.subtree_control`, and only if the cgroup itself has it (the root has
//!   every controller); a cgroup with processes of its own may not enable
//!   controllers for children, and a cgroup that enables them may not take
//!   processes (the no-internal-process rule; the root is exempt).
//! - A limit file exists in a v2 cgroup only where its parent enables the
//!   controller (ENOENT otherwise), never at the root; in v1 in every non-root
//!   cgroup of the controller's hierarchy.
//! - Disabling a controller in a cgroup removes its files, and their limits,
//!   from the children; it is refused while a child enables it further down.
//! - What a limit means for a process is the tightest value along its cgroup's
//!   path; a cgroup is frozen if it or any ancestor is.
//! - v1 only: `memory.limit_in_bytes` may not exceed the cgroup's own
//!   `memory.memsw.limit_in_bytes` (memory and swap together), nor the latter
//!   fall below the former: the write fails with EINVAL
//!   (`mem_cgroup_resize_max`). v2 limits swap alone, independently.
//! - v1 only: a cpu quota may not exceed the quota in force above it (the
//!   nearest ancestor's that has one), and a quota may not be set below one a
//!   descendant holds: the write fails with EINVAL (the kernel's CFS bandwidth
//!   check, `tg_cfs_schedulable_down`). v2 takes the smaller of the two instead.
//!   (All quotas here share the 100 ms period, so quotas compare directly.)
//! - `cpu.idle` 1 gives the cgroup the idle weight (v1's shares read 3, the
//!   scheduler's weight for SCHED_IDLE; v2's weight, that scaled to 1..10000
//!   and rounded, 0) and refuses weight writes (EINVAL) while it lasts;
//!   going back to 0 leaves the default weight (1024 / 100), not the one
//!   before (measured on this host's v1).
//! - cpusets (cpus and memory nodes, as masks): one naming a cpu or node
//!   beyond the machine's possible ones is ERANGE; v1 only, a cgroup's set
//!   must hold each child's (EBUSY) and lie within its parent's (EACCES),
//!   and a new cgroup starts empty (v2: empty means the parent's).
//! - Block I/O throttles are per cgroup and per whole disk; a device the
//!   machine does not have is refused (ENODEV), and a limit of "none"
//!   (v1's 0, v2's "max" on all four keys) takes the device's entry away.
//! - Device access ([`devices`]): v1's devices controller (a default and
//!   exceptions per cgroup, a child never gaining what its parent lacks), and
//!   v2's filter programs, every one along the path having to allow.
//! - [`oci`] maps `linux.resources` fields to the files of each version.

pub mod devices;
pub mod oci;

use std::collections::{BTreeMap, BTreeSet};

/// A process, by host pid.
pub type Pid = u32;

/// cgroup controllers the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// cpu (v1: cpu,cpuacct)
    Cpu,
    /// cpuset
    Cpuset,
    /// io (v1: blkio)
    Io,
    /// memory
    Memory,
    /// pids
    Pids,
    /// hugetlb
    Hugetlb,
    /// v1's freezer (v2 has cgroup.freeze in every cgroup)
    Freezer,
    /// v1's devices controller (v2 attaches filter programs instead)
    Devices,
}

impl Controller {
    /// The controllers of a v2 root.
    pub const V2: [Controller; 6] = [
        Controller::Cpu,
        Controller::Cpuset,
        Controller::Io,
        Controller::Memory,
        Controller::Pids,
        Controller::Hugetlb,
    ];
}

/// A limit a cgroup file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// memory.max / memory.limit_in_bytes (bytes)
    MemoryMax,
    /// memory.low / memory.soft_limit_in_bytes (bytes; OCI's
    /// `memory.reservation`): a protection, not a maximum
    MemoryLow,
    /// memory.swap.max (v2: bytes of swap alone)
    SwapMax,
    /// memory.memsw.limit_in_bytes (v1: bytes of memory and swap together)
    MemorySwapMax,
    /// pids.max
    PidsMax,
    /// cpu.max quota per 100 ms period, in µs
    CpuQuota,
    /// cpu.weight (1..10000) / cpu.shares
    CpuWeight,
    /// cpu.idle (0 or 1): the cgroup's tasks run as SCHED_IDLE
    CpuIdle,
    /// io.weight (1..10000)
    IoWeight,
    /// hugetlb.2MB.max / hugetlb.2MB.limit_in_bytes (bytes of 2 MiB pages)
    Hugetlb2M,
    /// cpuset.cpus, as a mask (bit n: cpu n)
    Cpus,
    /// cpuset.mems, as a mask (bit n: memory node n)
    Mems,
    /// One throttle of one block device (major, minor): v2's `io.max` key,
    /// v1's `blkio.throttle.*_device` file.
    IoMax(IoKey, u32, u32),
}

/// The four throttles of a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IoKey {
    /// bytes read per second (`rbps`, `read_bps_device`)
    ReadBps,
    /// bytes written per second (`wbps`, `write_bps_device`)
    WriteBps,
    /// reads per second (`riops`, `read_iops_device`)
    ReadIops,
    /// writes per second (`wiops`, `write_iops_device`)
    WriteIops,
}

impl IoKey {
    /// Every key, in io.max's order.
    pub const ALL: [IoKey; 4] = [
        IoKey::ReadBps,
        IoKey::WriteBps,
        IoKey::ReadIops,
        IoKey::WriteIops,
    ];
}

impl Limit {
    /// The controller the limit belongs to.
    pub fn controller(self) -> Controller {
        match self {
            Limit::MemoryMax | Limit::MemoryLow | Limit::SwapMax | Limit::MemorySwapMax => {
                Controller::Memory
            }
            Limit::PidsMax => Controller::Pids,
            Limit::CpuQuota | Limit::CpuWeight | Limit::CpuIdle => Controller::Cpu,
            Limit::IoWeight | Limit::IoMax(..) => Controller::Io,
            Limit::Hugetlb2M => Controller::Hugetlb,
            Limit::Cpus | Limit::Mems => Controller::Cpuset,
        }
    }

    /// Whether the tightest value along the path is what applies (a maximum),
    /// rather than a share relative to siblings (a weight).
    pub fn is_maximum(self) -> bool {
        !matches!(
            self,
            Limit::CpuWeight
                | Limit::IoWeight
                | Limit::MemoryLow
                | Limit::CpuIdle
                | Limit::Cpus
                | Limit::Mems
        )
    }
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// ENOENT: no such cgroup (or no such parent).
    NoSuchCgroup(String),
    /// EEXIST: the cgroup exists.
    Exists(String),
    /// EBUSY: rmdir of a cgroup with children or processes, or of the root.
    Busy(String),
    /// ENOENT: the limit's file is not in this cgroup (controller not enabled by the parent, or the root).
    NoSuchFile(String, Limit),
    /// EINVAL/ENOENT: enabling a controller the cgroup itself does not have.
    ControllerUnavailable(String, Controller),
    /// EBUSY: the no-internal-process rule (v2).
    InternalProcess(String),
    /// No hierarchy holds this controller (v1).
    NotMounted(Controller),
    /// ENOENT: the root cgroup has no cgroup.freeze.
    RootCannotFreeze,
    /// EINVAL (v1): the cpu quota would exceed the one in force above, or
    /// leave a descendant's above its own.
    QuotaAboveParent(String),
    /// EINVAL (v1): the memory limit above the memory+swap limit, or the
    /// memory+swap limit below the memory limit.
    MemoryAboveSwap(String),
    /// EPERM (v1): a device rule would give the cgroup access its parent
    /// does not have.
    DeviceNotPermitted(String),
    /// EINVAL (v1): `a` written to the device rules of a cgroup with children.
    DevicesWithChildren(String),
    /// EINVAL: a cpu weight (shares) written while the cgroup is idle.
    WeightWhileIdle(String),
    /// ERANGE: a cpu (or node) beyond the machine's possible ones.
    OutOfRange(String),
    /// EBUSY (v1): a cpuset narrower than one of its children's.
    ChildOutside(String),
    /// EACCES (v1): a cpuset wider than its parent's.
    AboveParent(String),
    /// ENODEV: a throttle for a block device the machine does not have (or
    /// a partition: throttles are per disk).
    NoSuchDevice(u32, u32),
}

/// The hierarchies of a machine: one for v2, one per controller (group) for v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The hierarchies.
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Pure v2 with every controller at the root.
    pub fn v2() -> Self {
        Layout {
            hierarchies: vec![Hierarchy::new(true, Controller::V2)],
        }
    }

    /// v1 as `cargo xtask vm-test` mounts it: cpu (with cpuacct), cpuset, io
    /// (blkio), memory, pids, hugetlb, freezer and devices each in their own
    /// hierarchy.
    pub fn v1() -> Self {
        use Controller::*;
        Layout {
            hierarchies: [Cpu, Cpuset, Io, Memory, Pids, Hugetlb, Freezer, Devices]
                .into_iter()
                .map(|c| Hierarchy::new(false, [c]))
                .collect(),
        }
    }

    /// The hierarchy that holds `ctl`.
    pub fn for_controller(&mut self, ctl: Controller) -> Result<&mut Hierarchy, Refusal> {
        let v2 = self.hierarchies.first().is_some_and(|h| h.v2);
        let ctl = if v2 && matches!(ctl, Controller::Freezer | Controller::Devices) {
            Controller::Cpu
        } else {
            ctl
        };
        self.hierarchies
            .iter_mut()
            .find(|h| h.controllers.contains(&ctl))
            .ok_or(Refusal::NotMounted(ctl))
    }

    /// `mkdir -p path` in every hierarchy, then `pid` into it in every hierarchy:
    /// what the runtime does for a container's cgroupsPath.
    pub fn place(&mut self, pid: Pid, path: &str) -> Result<(), Refusal> {
        for h in &mut self.hierarchies {
            let at = h.mkdir_all(path)?;
            h.attach(pid, &at)?;
        }
        Ok(())
    }
}

/// One cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    /// Its own processes.
    pub procs: BTreeSet<Pid>,
    /// v2: controllers enabled for its children.
    pub subtree_control: BTreeSet<Controller>,
    /// Limits written to it.
    pub limits: BTreeMap<Limit, u64>,
    /// cgroup.freeze (v2) / freezer.state FROZEN (v1).
    pub frozen: bool,
    /// v1's device state (the devices hierarchy's).
    pub devices: devices::Devices,
    /// v2: what the device program berth attached here decides, if any.
    pub device_filter: Option<devices::Devices>,
}

/// One hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v2 (one hierarchy for all) or a v1 hierarchy of these controllers.
    pub v2: bool,
    /// The controllers it holds.
    pub controllers: BTreeSet<Controller>,
    /// Cgroups by path ("/" is the root).
    pub cgroups: BTreeMap<String, Cgroup>,
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    Some(match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    })
}

impl Hierarchy {
    /// An empty hierarchy with just its root.
    pub fn new(v2: bool, controllers: impl IntoIterator<Item = Controller>) -> Self {
        Hierarchy {
            v2,
            controllers: controllers.into_iter().collect(),
            cgroups: [("/".to_string(), Cgroup::default())].into(),
        }
    }

    fn get(&self, path: &str) -> Result<&Cgroup, Refusal> {
        self.cgroups
            .get(path)
            .ok_or_else(|| Refusal::NoSuchCgroup(path.into()))
    }

    fn has_children(&self, path: &str) -> bool {
        self.cgroups.keys().any(|p| parent_of(p) == Some(path))
    }

    /// The controllers `path` has (v2: what its parent enables; the root: all).
    pub fn available(&self, path: &str) -> BTreeSet<Controller> {
        match parent_of(path) {
            _ if !self.v2 => self.controllers.clone(),
            None => self.controllers.clone(),
            Some(p) => self
                .cgroups
                .get(p)
                .map(|c| c.subtree_control.clone())
                .unwrap_or_default(),
        }
    }

    /// `mkdir`.
    pub fn mkdir(&mut self, path: &str) -> Result<(), Refusal> {
        let parent = parent_of(path).ok_or_else(|| Refusal::Exists(path.into()))?;
        self.get(parent)?;
        if self.cgroups.contains_key(path) {
            return Err(Refusal::Exists(path.into()));
        }
        // v1's device state starts as a copy of the parent's.
        let devices = self.cgroups[parent].devices.clone();
        self.cgroups.insert(
            path.into(),
            Cgroup {
                devices,
                ..Cgroup::default()
            },
        );
        Ok(())
    }

    /// `mkdir -p`: every missing cgroup on the way to `path`; returns the
    /// path in canonical form ("/" for the root).
    pub fn mkdir_all(&mut self, path: &str) -> Result<String, Refusal> {
        let mut acc = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            acc.push('/');
            acc.push_str(part);
            match self.mkdir(&acc) {
                Ok(()) | Err(Refusal::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(if acc.is_empty() { "/".into() } else { acc })
    }

    /// `rmdir`: only an empty leaf.
    pub fn rmdir(&mut self, path: &str) -> Result<(), Refusal> {
        let cg = self.get(path)?;
        if path == "/" || !cg.procs.is_empty() || self.has_children(path) {
            return Err(Refusal::Busy(path.into()));
        }
        self.cgroups.remove(path);
        Ok(())
    }

    /// Writing `pid` to cgroup.procs: moves it here from wherever it was.
    pub fn attach(&mut self, pid: Pid, path: &str) -> Result<(), Refusal> {
        let cg = self.get(path)?;
        if self.v2 && path != "/" && !cg.subtree_control.is_empty() {
            return Err(Refusal::InternalProcess(path.into()));
        }
        for c in self.cgroups.values_mut() {
            c.procs.remove(&pid);
        }
        self.cgroups
            .get_mut(path)
            .expect("checked")
            .procs
            .insert(pid);
        Ok(())
    }

    /// A process exits: it leaves its cgroup.
    pub fn exit(&mut self, pid: Pid) {
        for c in self.cgroups.values_mut() {
            c.procs.remove(&pid);
        }
    }

    /// Where `pid` is, if anywhere.
    pub fn cgroup_of(&self, pid: Pid) -> Option<&str> {
        self.cgroups
            .iter()
            .find(|(_, c)| c.procs.contains(&pid))
            .map(|(p, _)| p.as_str())
    }

    /// v2: `+controller` in `path`'s cgroup.subtree_control.
    pub fn enable(&mut self, path: &str, ctl: Controller) -> Result<(), Refusal> {
        let cg = self.get(path)?;
        if !self.available(path).contains(&ctl) {
            return Err(Refusal::ControllerUnavailable(path.into(), ctl));
        }
        if path != "/" && !cg.procs.is_empty() {
            return Err(Refusal::InternalProcess(path.into()));
        }
        self.cgroups
            .get_mut(path)
            .expect("checked")
            .subtree_control
            .insert(ctl);
        Ok(())
    }

    /// v2: `-controller`; refused while a child still enables it for its own children.
    pub fn disable(&mut self, path: &str, ctl: Controller) -> Result<(), Refusal> {
        self.get(path)?;
        let child_uses = self
            .cgroups
            .iter()
            .any(|(p, c)| parent_of(p) == Some(path) && c.subtree_control.contains(&ctl));
        if child_uses {
            return Err(Refusal::Busy(path.into()));
        }
        self.cgroups
            .get_mut(path)
            .expect("checked")
            .subtree_control
            .remove(&ctl);
        // The children lose the controller's files, and the limits in them.
        for (p, c) in self.cgroups.iter_mut() {
            if parent_of(p) == Some(path) {
                c.limits.retain(|l, _| l.controller() != ctl);
            }
        }
        Ok(())
    }

    /// Whether `path` has `limit`'s file: it exists, is not the root, and
    /// has the controller.
    fn has_file(&self, path: &str, limit: Limit) -> Result<(), Refusal> {
        self.get(path)?;
        if path == "/" || !self.available(path).contains(&limit.controller()) {
            return Err(Refusal::NoSuchFile(path.into(), limit));
        }
        Ok(())
    }

    /// Writes one throttle of block device `major:minor` (`u64::MAX`: none,
    /// which takes the key away; the device's entry goes with its last key).
    /// `disk` says whether the machine has that whole disk.
    pub fn set_io_max(
        &mut self,
        path: &str,
        key: IoKey,
        (major, minor): (u32, u32),
        value: u64,
        disk: bool,
    ) -> Result<(), Refusal> {
        let limit = Limit::IoMax(key, major, minor);
        self.has_file(path, limit)?;
        if !disk {
            return Err(Refusal::NoSuchDevice(major, minor));
        }
        let limits = &mut self.cgroups.get_mut(path).expect("checked").limits;
        if value == u64::MAX {
            limits.remove(&limit);
        } else {
            limits.insert(limit, value);
        }
        Ok(())
    }

    /// Writes cpuset.cpus or cpuset.mems: `mask` within `possible` (the
    /// machine's cpus or nodes); on v1 also within the parent's (the root's
    /// being `possible`) and over every child's.
    pub fn set_cpuset(
        &mut self,
        path: &str,
        limit: Limit,
        mask: u64,
        possible: u64,
    ) -> Result<(), Refusal> {
        self.has_file(path, limit)?;
        if mask & !possible != 0 {
            return Err(Refusal::OutOfRange(path.into()));
        }
        if !self.v2 {
            let of = |p: &str| {
                if p == "/" {
                    Some(possible)
                } else {
                    self.cgroups[p].limits.get(&limit).copied()
                }
            };
            let children_inside = self
                .cgroups
                .keys()
                .filter(|c| parent_of(c) == Some(path))
                .all(|c| of(c).is_none_or(|m| m & !mask == 0));
            if !children_inside {
                return Err(Refusal::ChildOutside(path.into()));
            }
            if parent_of(path)
                .and_then(of)
                .is_some_and(|par| mask & !par != 0)
            {
                return Err(Refusal::AboveParent(path.into()));
            }
        }
        self.cgroups
            .get_mut(path)
            .expect("checked")
            .limits
            .insert(limit, mask);
        Ok(())
    }

    /// Writes a limit file (`u64::MAX`: no limit, v2's "max", v1's -1).
    pub fn set(&mut self, path: &str, limit: Limit, value: u64) -> Result<(), Refusal> {
        self.has_file(path, limit)?;
        if !self.v2 && limit == Limit::CpuQuota && !self.v1_quota_fits(path, value) {
            return Err(Refusal::QuotaAboveParent(path.into()));
        }
        let own = |l: Limit| self.cgroups[path].limits.get(&l).copied();
        let refused = match limit {
            Limit::MemoryMax => own(Limit::MemorySwapMax).is_some_and(|sw| value > sw),
            Limit::MemorySwapMax => own(Limit::MemoryMax).is_some_and(|m| value < m),
            _ => false,
        };
        if !self.v2 && refused {
            return Err(Refusal::MemoryAboveSwap(path.into()));
        }
        let idle = own(Limit::CpuIdle) == Some(1);
        if limit == Limit::CpuWeight && idle {
            return Err(Refusal::WeightWhileIdle(path.into()));
        }
        let weight = match limit {
            Limit::CpuIdle if value == 1 && !idle => Some(if self.v2 { 0 } else { 3 }),
            Limit::CpuIdle if value == 0 && idle => Some(if self.v2 { 100 } else { 1024 }),
            _ => None,
        };
        let limits = &mut self.cgroups.get_mut(path).expect("checked").limits;
        if let Some(w) = weight {
            limits.insert(Limit::CpuWeight, w);
        }
        limits.insert(limit, value);
        Ok(())
    }

    /// v1: whether `path` may take cpu quota `value`: with it, no cgroup at
    /// or below `path` holds a quota above the one in force over it.
    fn v1_quota_fits(&self, path: &str, value: u64) -> bool {
        // No quota (-1, `u64::MAX` here) takes the one in force above.
        let own = |p: &str| {
            if p == path {
                Some(value)
            } else {
                self.cgroups
                    .get(p)
                    .and_then(|c| c.limits.get(&Limit::CpuQuota).copied())
            }
            .filter(|q| *q != u64::MAX)
        };
        // The quota in force at `p`: its own, else the nearest ancestor's.
        let in_force = |p: &str| self.chain(p).into_iter().find_map(own);
        let below = format!("{path}/");
        self.cgroups
            .keys()
            .filter(|p| *p == path || p.starts_with(&below))
            .all(|p| match (own(p), parent_of(p).and_then(in_force)) {
                (Some(q), Some(above)) => q <= above,
                _ => true,
            })
    }

    /// The paths from the root down to `path`.
    fn chain<'a>(&self, path: &'a str) -> Vec<&'a str> {
        let mut out = vec![path];
        let mut cur = path;
        while let Some(p) = parent_of(cur) {
            out.push(p);
            cur = p;
        }
        out
    }

    /// The limit that applies in `path`: for a maximum, the tightest along the
    /// path (`None`: unlimited); for a weight, the cgroup's own.
    pub fn effective(&self, path: &str, limit: Limit) -> Result<Option<u64>, Refusal> {
        self.get(path)?;
        if !limit.is_maximum() {
            return Ok(self.cgroups[path].limits.get(&limit).copied());
        }
        Ok(self
            .chain(path)
            .into_iter()
            .filter_map(|p| {
                self.cgroups
                    .get(p)
                    .and_then(|c| c.limits.get(&limit).copied())
            })
            .min())
    }

    /// cgroup.freeze = 1 (v2; v1's freezer hierarchy the same).
    pub fn freeze(&mut self, path: &str, frozen: bool) -> Result<(), Refusal> {
        self.get(path)?;
        if path == "/" {
            return Err(Refusal::RootCannotFreeze);
        }
        self.cgroups.get_mut(path).expect("checked").frozen = frozen;
        Ok(())
    }

    /// Whether processes in `path` are frozen: it or an ancestor is.
    pub fn is_frozen(&self, path: &str) -> bool {
        self.chain(path)
            .into_iter()
            .any(|p| self.cgroups.get(p).is_some_and(|c| c.frozen))
    }

    /// Every pid in `path` and below it (what `runc ps` lists).
    pub fn pids_below(&self, path: &str) -> BTreeSet<Pid> {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.cgroups
            .iter()
            .filter(|(p, _)| *p == path || p.starts_with(&prefix))
            .flat_map(|(_, c)| c.procs.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests;
