//! cgroup v2: one directory in the unified tree.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxHugepageLimit, LinuxResources};

use super::{Cgroup, mkdir_all, read, wait_until, write};
use crate::oci::error::{Error, Result};

/// A container's cgroup v2 directory.
pub struct V2 {
    dir: PathBuf,
}

/// Controllers berth enables on the way down to a container's cgroup.
const WANTED: [&str; 6] = ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

impl V2 {
    /// The cgroup at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        V2 { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn has(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }

    fn need(&self, file: &str, field: &str) -> Result<()> {
        if self.has(file) {
            Ok(())
        } else {
            Err(Error::Other(format!(
                "{field} is set but {} has no {file} (controller not enabled)",
                self.dir.display()
            )))
        }
    }

    /// Makes the directory without touching any subtree_control (the hybrid
    /// cgroup2 of a v1 host, where berth only places the process).
    pub(crate) fn create_dir_only(&self) -> Result<()> {
        mkdir_all(&self.dir, &|_| Ok(()))
    }

    /// Enables `controllers` in every ancestor's subtree_control, top down, so the
    /// container's cgroup gets their files. Enabling fails on a cgroup that has
    /// processes of its own (the no-internal-process rule); the limits that need
    /// the controller then fail with a message naming the missing file.
    pub(crate) fn enable(&self, controllers: &[&str]) {
        let mut ancestors: Vec<&Path> = self.dir.ancestors().skip(1).collect();
        ancestors.reverse();
        for a in ancestors {
            if !a.join("cgroup.subtree_control").exists() {
                continue;
            }
            let available = read(a, "cgroup.controllers").unwrap_or_default();
            let enabled = read(a, "cgroup.subtree_control").unwrap_or_default();
            let missing: Vec<String> = controllers
                .iter()
                .filter(|c| {
                    available.split(' ').any(|x| x == **c) && !enabled.split(' ').any(|x| x == **c)
                })
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                let _ = write(a, "cgroup.subtree_control", &missing.join(" "));
            }
        }
    }

    pub(crate) fn set_hugepage(&self, l: &LinuxHugepageLimit) -> Result<()> {
        let file = format!("hugetlb.{}.max", l.page_size());
        self.need(&file, "linux.resources.hugepageLimits")?;
        write(&self.dir, &file, &l.limit().to_string())
    }
}

/// OCI cpu shares (2..262144) to a v2 weight (1..10000), as runc converts them.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142
    }
}

/// v1 blkio weight (10..1000) to a v2 io weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + ((u64::from(w).clamp(10, 1000) - 10) * 9999) / 990
    }
}

impl Cgroup for V2 {
    fn create(&self) -> Result<()> {
        // Directories first: a level made here must enable the controllers
        // for the one below it too (berth-harness's cgroups machine found
        // a new nested path left without memory.max and the rest).
        mkdir_all(&self.dir, &|_| Ok(()))?;
        self.enable(&WANTED);
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<()> {
        write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn set(&self, res: &LinuxResources) -> Result<()> {
        super::check(res)?;
        // Every unified key is checked before anything is written: one that
        // names another directory or a cgroup core file (but cgroup.freeze).
        let mut unified: Vec<(&String, &String)> = res.unified().iter().flatten().collect();
        unified.sort();
        if let Some((k, _)) = unified
            .iter()
            .find(|(k, _)| k.contains('/') || k.starts_with("cgroup.") && *k != "cgroup.freeze")
        {
            return Err(Error::Other(format!(
                "linux.resources.unified: key {k:?} is not allowed"
            )));
        }
        let d = &self.dir;
        if let Some(rules) = res.devices().as_ref().filter(|r| !r.is_empty()) {
            super::devices::attach(d, rules)?;
        }
        if let Some(m) = res.memory() {
            if let Some(limit) = m.limit() {
                self.need("memory.max", "linux.resources.memory.limit")?;
                write(
                    d,
                    "memory.max",
                    &if limit < 0 {
                        "max".into()
                    } else {
                        limit.to_string()
                    },
                )?;
            }
            if let Some(r) = m.reservation() {
                self.need("memory.low", "linux.resources.memory.reservation")?;
                write(
                    d,
                    "memory.low",
                    &if r < 0 { "max".into() } else { r.to_string() },
                )?;
            }
            if let Some(swap) = m.swap() {
                // OCI's swap is memory+swap; v2's swap.max is swap alone.
                let v = match (swap, m.limit()) {
                    (-1, _) => "max".to_string(),
                    (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                    (s, _) => s.to_string(),
                };
                if self.has("memory.swap.max") {
                    write(d, "memory.swap.max", &v)?;
                } else if swap > 0 && Some(swap) != m.limit() {
                    return Err(Error::Other(format!(
                        "linux.resources.memory.swap {swap}: swap accounting is off on this kernel (no memory.swap.max)"
                    )));
                }
            }
            if m.disable_oom_killer() == Some(true) {
                return Err(Error::Other(
                    "linux.resources.memory.disableOOMKiller: not supported on cgroup v2".into(),
                ));
            }
        }
        if let Some(c) = res.cpu() {
            if let Some(s) = c.shares().filter(|s| *s != 0) {
                self.need("cpu.weight", "linux.resources.cpu.shares")?;
                write(d, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                self.need("cpu.max", "linux.resources.cpu.quota")?;
                let current = read(d, "cpu.max").unwrap_or_else(|_| "max 100000".into());
                let mut parts = current.split(' ');
                let (cur_q, cur_p) = (
                    parts.next().unwrap_or("max").to_string(),
                    parts.next().unwrap_or("100000").to_string(),
                );
                let q = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".into(),
                    None => cur_q,
                };
                let p = c
                    .period()
                    .filter(|p| *p > 0)
                    .map(|p| p.to_string())
                    .unwrap_or(cur_p);
                write(d, "cpu.max", &format!("{q} {p}"))?;
            }
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                self.need("cpuset.cpus", "linux.resources.cpu.cpus")?;
                write(d, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                self.need("cpuset.mems", "linux.resources.cpu.mems")?;
                write(d, "cpuset.mems", mems)?;
            }
            if let Some(idle) = c.idle() {
                write(d, "cpu.idle", &idle.to_string())?;
            }
        }
        if let Some(p) = res.pids() {
            self.need("pids.max", "linux.resources.pids")?;
            write(
                d,
                "pids.max",
                &if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                },
            )?;
        }
        if let Some(b) = res.block_io() {
            if let Some(w) = b.weight().filter(|w| *w != 0) {
                let file = if self.has("io.weight") {
                    "io.weight"
                } else {
                    "io.bfq.weight"
                };
                self.need(file, "linux.resources.blockIO.weight")?;
                write(d, file, &blkio_to_io_weight(w).to_string())?;
            }
            let throttles = [
                ("rbps", b.throttle_read_bps_device()),
                ("wbps", b.throttle_write_bps_device()),
                ("riops", b.throttle_read_iops_device()),
                ("wiops", b.throttle_write_iops_device()),
            ];
            for (key, list) in throttles {
                for t in list.iter().flatten() {
                    self.need("io.max", "linux.resources.blockIO.throttle")?;
                    // A rate of 0 is none, as v1 takes it; io.max refuses 0
                    // (ERANGE) and says "max".
                    let rate = match t.rate() {
                        0 => "max".to_string(),
                        r => r.to_string(),
                    };
                    write(
                        d,
                        "io.max",
                        &format!("{}:{} {key}={rate}", t.major(), t.minor()),
                    )?;
                }
            }
        }
        for l in res.hugepage_limits().iter().flatten() {
            self.set_hugepage(l)?;
        }
        for (k, v) in unified {
            write(d, k, v)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        write(&self.dir, "cgroup.freeze", "1")?;
        if wait_until(|| self.is_frozen()) {
            Ok(())
        } else {
            let _ = write(&self.dir, "cgroup.freeze", "0");
            Err(Error::Other(format!(
                "{}: the cgroup did not report frozen",
                self.dir.display()
            )))
        }
    }

    fn thaw(&self) -> Result<()> {
        write(&self.dir, "cgroup.freeze", "0")?;
        wait_until(|| !self.is_frozen());
        Ok(())
    }

    fn is_frozen(&self) -> bool {
        read(&self.dir, "cgroup.events")
            .map(|ev| ev.lines().any(|l| l == "frozen 1"))
            .unwrap_or(false)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        super::procs_recursive(&self.dir, &mut out)?;
        out.sort_unstable();
        Ok(out)
    }

    fn remove(&self) -> Result<()> {
        super::rmdir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }
}
