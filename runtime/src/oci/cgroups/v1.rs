//! cgroup v1: one directory per controller hierarchy, plus the hybrid cgroup2 if any.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use super::{Cgroup, V2, mkdir_all, read, wait_until, write};
use crate::oci::error::{Error, Result};

/// A container's v1 cgroups.
pub struct V1 {
    dirs: BTreeMap<String, PathBuf>,
    unified: Option<V2>,
}

impl V1 {
    /// From controller → directory, and the hybrid cgroup2 directory.
    pub fn new(dirs: BTreeMap<String, PathBuf>, unified: Option<V2>) -> Self {
        V1 { dirs, unified }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.get(controller).map(PathBuf::as_path)
    }

    /// The directory of `controller`, or an error naming what is missing.
    fn need(&self, controller: &str, field: &str) -> Result<&Path> {
        self.dir(controller).ok_or_else(|| {
            Error::Other(format!(
                "{field} is set but the {controller} cgroup controller is not mounted"
            ))
        })
    }

    fn set_memory(&self, m: &LinuxMemory) -> Result<()> {
        let dir = self.need("memory", "linux.resources.memory")?;
        // Without the file swap accounting is off, unless the cgroup itself
        // is missing (the write then says so).
        let accounting = dir.join("memory.memsw.limit_in_bytes").exists() || !dir.is_dir();
        if let Some(limit) = m.limit() {
            match m.swap() {
                Some(swap) if accounting => {
                    // memsw must stay >= limit: raise whichever keeps that true first.
                    if write(dir, "memory.limit_in_bytes", &limit.to_string()).is_err() {
                        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                        write(dir, "memory.limit_in_bytes", &limit.to_string())?;
                    } else {
                        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                    }
                }
                Some(swap) if swap > 0 && swap != limit => {
                    return Err(Error::Other(format!(
                        "linux.resources.memory.swap {swap}: swap accounting is off on this kernel (no memory.memsw.limit_in_bytes)"
                    )));
                }
                _ => write(dir, "memory.limit_in_bytes", &limit.to_string())?,
            }
        } else if let Some(swap) = m.swap()
            && accounting
        {
            write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
        }
        if let Some(r) = m.reservation() {
            write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(s) = m.swappiness()
            && s <= 100
        {
            write(dir, "memory.swappiness", &s.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write(dir, "memory.oom_control", "1")?;
        }
        Ok(())
    }

    fn set_cpu(&self, c: &LinuxCpu) -> Result<()> {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.realtime_runtime().is_some()
            || c.idle().is_some()
        {
            let dir = self.need("cpu", "linux.resources.cpu")?;
            if let Some(s) = c.shares().filter(|s| *s != 0) {
                write(dir, "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = c.period().filter(|p| *p != 0) {
                write(dir, "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = c.quota().filter(|q| *q != 0) {
                write(dir, "cpu.cfs_quota_us", &q.to_string())?;
            }
            if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
                write(dir, "cpu.rt_period_us", &p.to_string())?;
            }
            if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
                write(dir, "cpu.rt_runtime_us", &r.to_string())?;
            }
            // cpu.idle is in v1's cpu controller too (since 5.15), as runc writes it.
            if let Some(idle) = c.idle() {
                write(dir, "cpu.idle", &idle.to_string())?;
            }
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(
                self.need("cpuset", "linux.resources.cpu.cpus")?,
                "cpuset.cpus",
                cpus,
            )?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(
                self.need("cpuset", "linux.resources.cpu.mems")?,
                "cpuset.mems",
                mems,
            )?;
        }
        Ok(())
    }

    fn set_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        let Some(dir) = self.dir("blkio") else {
            return Err(Error::Other(
                "linux.resources.blockIO is set but the blkio cgroup controller is not mounted"
                    .into(),
            ));
        };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            let file = if dir.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            // (A cgroup that is not there is ENOENT from the write, not this.)
            if dir.is_dir() && !dir.join(file).exists() {
                return Err(Error::Other(format!(
                    "linux.resources.blockIO.weight {w}: this kernel's blkio controller has no weight file (no CFQ/BFQ scheduler)"
                )));
            }
            write(dir, file, &w.to_string())?;
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, list) in throttles {
            for t in list.iter().flatten() {
                write(
                    dir,
                    file,
                    &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                )?;
            }
        }
        Ok(())
    }

    fn set_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let Some(dir) = self.dir("devices") else {
            return Ok(());
        };
        for rule in rules {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            let line = device_rule(rule);
            match write(dir, file, &line) {
                // `a` is refused (EINVAL) while the cgroup has children, and a
                // child removed a moment ago counts until the kernel has taken
                // it offline, a while after rmdir returned (as with cpu
                // quotas, see `lift_quotas`). With no child left, it is
                // written again until the kernel has caught up.
                Err(Error::Cgroup { source, .. })
                    if line == "a"
                        && source.raw_os_error() == Some(libc::EINVAL)
                        && !has_children(dir) =>
                {
                    let mut last = None;
                    if !wait_until(|| match write(dir, file, &line) {
                        Ok(()) => true,
                        Err(e) => {
                            last = Some(e);
                            false
                        }
                    }) {
                        return Err(last.unwrap_or_else(|| {
                            Error::Other(format!("{}: {line} refused", dir.display()))
                        }));
                    }
                }
                r => r?,
            }
        }
        Ok(())
    }
}

/// Whether `dir` has a child cgroup.
fn has_children(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    })
}

/// A device rule as the devices controller reads it: "c 1:3 rwm".
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = rule.typ().unwrap_or_default();
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "*".into())
    };
    if typ.as_str() == "a" {
        return "a".into();
    }
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!(
        "{} {}:{} {}",
        typ.as_str(),
        num(rule.major()),
        num(rule.minor()),
        access
    )
}

impl Cgroup for V1 {
    fn create(&self) -> Result<()> {
        for (name, dir) in &self.dirs {
            if name == "cpuset" {
                // A new cpuset cgroup starts empty, and a cgroup with no cpus or mems
                // refuses tasks: copy the parent's.
                mkdir_all(dir, &|d| {
                    let parent = d.parent().unwrap_or(Path::new("/"));
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if read(d, f)?.is_empty() {
                            write(d, f, &read(parent, f)?)?;
                        }
                    }
                    Ok(())
                })?;
            } else {
                mkdir_all(dir, &|_| Ok(()))?;
            }
        }
        if let Some(u) = &self.unified {
            u.create_dir_only()?;
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<()> {
        for dir in self.dirs.values() {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        if let Some(u) = &self.unified {
            u.add(pid)?;
        }
        Ok(())
    }

    fn set(&self, res: &LinuxResources) -> Result<()> {
        super::check(res)?;
        // Refused before anything is written.
        if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            let mut keys: Vec<_> = unified.keys().cloned().collect();
            keys.sort();
            return Err(Error::Other(format!(
                "linux.resources.unified {keys:?}: needs cgroup v2, and this host's controllers are on v1"
            )));
        }
        if let Some(devices) = res.devices() {
            self.set_devices(devices)?;
        }
        if let Some(m) = res.memory() {
            self.set_memory(m)?;
        }
        if let Some(c) = res.cpu() {
            self.set_cpu(c)?;
        }
        if let Some(p) = res.pids() {
            let dir = self.need("pids", "linux.resources.pids")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(dir, "pids.max", &v)?;
        }
        if let Some(b) = res.block_io() {
            self.set_blkio(b)?;
        }
        if let Some(limits) = res.hugepage_limits() {
            for l in limits {
                if let Some(dir) = self.dir("hugetlb") {
                    write(
                        dir,
                        &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                        &l.limit().to_string(),
                    )?;
                } else if let Some(u) = &self.unified {
                    u.enable(&["hugetlb"]);
                    u.set_hugepage(l)?;
                } else {
                    return Err(Error::Other("linux.resources.hugepageLimits is set but no hugetlb cgroup controller is mounted".into()));
                }
            }
        }
        if let Some(net) = res.network() {
            if let (Some(id), Some(dir)) = (net.class_id(), self.dir("net_cls")) {
                write(dir, "net_cls.classid", &id.to_string())?;
            }
            if let (Some(prios), Some(dir)) = (net.priorities(), self.dir("net_prio")) {
                for p in prios {
                    write(
                        dir,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        let dir = self.need("freezer", "pause")?;
        write(dir, "freezer.state", "FROZEN")?;
        if wait_until(|| {
            read(dir, "freezer.state")
                .map(|s| s == "FROZEN")
                .unwrap_or(false)
        }) {
            Ok(())
        } else {
            let _ = write(dir, "freezer.state", "THAWED");
            Err(Error::Other(format!(
                "{}: the freezer did not reach FROZEN",
                dir.display()
            )))
        }
    }

    fn thaw(&self) -> Result<()> {
        let dir = self.need("freezer", "resume")?;
        write(dir, "freezer.state", "THAWED")?;
        wait_until(|| {
            read(dir, "freezer.state")
                .map(|s| s == "THAWED")
                .unwrap_or(false)
        });
        Ok(())
    }

    fn is_frozen(&self) -> bool {
        self.dir("freezer")
            .and_then(|d| read(d, "freezer.state").ok())
            .map(|s| s == "FROZEN" || s == "FREEZING")
            .unwrap_or(false)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        let dir = self
            .dir("pids")
            .or_else(|| self.dir("memory"))
            .or_else(|| self.dirs.values().next().map(|p| p.as_path()));
        if let Some(dir) = dir {
            super::procs_recursive(dir, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn remove(&self) -> Result<()> {
        let mut first_err = None;
        if let Some(cpu) = self.dir("cpu") {
            lift_quotas(cpu);
        }
        for dir in self.dirs.values() {
            if let Err(e) = super::rmdir(dir) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(u) = &self.unified
            && let Err(e) = u.remove()
        {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// A removed cgroup's CFS quota goes on constraining its parent until the
/// kernel has taken the cgroup offline, a while after rmdir returned: a
/// quota written to the parent just after, below the removed one's, is
/// refused (EINVAL). So before a tree without processes is removed, its
/// quotas are lifted (`-1`), which the kernel applies at once. A tree that
/// still holds a process is left as it is (its removal fails anyway).
fn lift_quotas(dir: &Path) {
    let mut pids = Vec::new();
    if super::procs_recursive(dir, &mut pids).is_err() || !pids.is_empty() {
        return;
    }
    fn walk(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path());
                }
            }
        }
        let f = dir.join("cpu.cfs_quota_us");
        if super::read(dir, "cpu.cfs_quota_us").is_ok_and(|q| q != "-1") {
            // Best effort: a failure only leaves the kernel's delay.
            let _ = std::fs::write(&f, "-1");
        }
    }
    walk(dir);
}
