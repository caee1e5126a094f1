//! cgroups, v1 and v2, behind one trait.
//!
//! [`CgroupPaths`] says where a container's cgroups are; it is computed once at create
//! time from `cgroupsPath` and the host's layout, saved in the state, and every later
//! command builds its [`Cgroup`] from it. The layouts:
//!
//! - **v2**: one unified tree at /sys/fs/cgroup.
//! - **v1**: one tree per controller. A host may also have a cgroup2 mount at
//!   /sys/fs/cgroup/unified ("hybrid", as on the machines this project runs on, where
//!   it holds only hugetlb); the container joins it too, and the controllers found
//!   there and not in v1 (hugetlb) are set there.
//!
//! cgroups-rs was considered and not used: it treats a hybrid host as plain v1 (so
//! hugepage limits on these machines would be lost), and it pulls ~90 crates into
//! every CI build for what is writing values to files.

pub mod devices;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::error::{Error, IoContext, Result};

pub use v1::V1;
pub use v2::V2;

/// Mount point of the cgroup filesystems.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a container's cgroups are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupPaths {
    /// v1: controller (or `name=…` hierarchy) → its directory for this container.
    #[serde(default)]
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 directory: the only one on v2, the hybrid one on v1.
    #[serde(default)]
    pub unified: Option<PathBuf>,
    /// Whether the host is pure v2.
    #[serde(default)]
    pub is_v2: bool,
}

/// What the runtime does with a container's cgroup.
pub trait Cgroup {
    /// Makes the directories (idempotent).
    fn create(&self) -> Result<()>;
    /// Moves process `pid` in.
    fn add(&self, pid: i32) -> Result<()>;
    /// Applies limits.
    fn set(&self, res: &LinuxResources) -> Result<()>;
    /// Freezes every process.
    fn freeze(&self) -> Result<()>;
    /// Thaws them.
    fn thaw(&self) -> Result<()>;
    /// Whether it is frozen.
    fn is_frozen(&self) -> bool;
    /// Every pid inside, recursively.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Removes the directories; the cgroup must be empty.
    fn remove(&self) -> Result<()>;
}

/// The layout of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy only, mounted at the path.
    V2(PathBuf),
    /// Per-controller hierarchies (name → mount point), and maybe a hybrid cgroup2.
    V1 {
        /// controller or `name=…` → mount point
        controllers: BTreeMap<String, PathBuf>,
        /// the cgroup2 mount beside them, if any
        unified: Option<PathBuf>,
    },
}

/// Reads the host's layout from /proc/self/mountinfo.
pub fn layout() -> Result<Layout> {
    let info = fs::read_to_string("/proc/self/mountinfo").io("reading", "/proc/self/mountinfo")?;
    let mut controllers = BTreeMap::new();
    let mut unified = None;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split(' ').nth(4).unwrap_or_default();
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let _source = r.next();
        let opts = r.next().unwrap_or_default();
        match fstype {
            "cgroup2" => {
                if mountpoint == CGROUP_ROOT {
                    return Ok(Layout::V2(PathBuf::from(mountpoint)));
                }
                if unified.is_none() {
                    unified = Some(PathBuf::from(mountpoint));
                }
            }
            "cgroup" => {
                for opt in opts.split(',') {
                    if is_controller(opt) || opt.starts_with("name=") {
                        controllers
                            .entry(opt.to_string())
                            .or_insert_with(|| PathBuf::from(mountpoint));
                    }
                }
            }
            _ => {}
        }
    }
    if controllers.is_empty() {
        match unified {
            Some(u) => Ok(Layout::V2(u)),
            None => Err(Error::Other("no cgroup filesystem is mounted".into())),
        }
    } else {
        Ok(Layout::V1 {
            controllers,
            unified,
        })
    }
}

fn is_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

/// The runtime's own cgroup per hierarchy, from /proc/self/cgroup ("" = v2).
fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string("/proc/self/cgroup").io("reading", "/proc/self/cgroup")?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (
            parts.next(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or("/"),
        );
        if names.is_empty() {
            map.insert(String::new(), path.to_string());
        }
        for name in names.split(',').filter(|n| !n.is_empty()) {
            map.insert(name.to_string(), path.to_string());
        }
    }
    Ok(map)
}

/// Where a container's cgroup goes: `cgroups_path` as runc reads it (absolute from
/// each hierarchy's root; relative, or absent meaning `<id>`, under the runtime's own
/// cgroup).
pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
    let rel = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from(id),
    };
    if rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::Other(format!(
            "linux.cgroupsPath {:?}: \"..\" is not allowed",
            rel
        )));
    }
    let own = if rel.is_absolute() {
        BTreeMap::new()
    } else {
        own_cgroups()?
    };
    let place = |mount: &Path, key: &str| -> PathBuf {
        let base = if rel.is_absolute() {
            mount.to_path_buf()
        } else {
            let mine = own.get(key).map(String::as_str).unwrap_or("/");
            mount.join(mine.trim_start_matches('/'))
        };
        base.join(rel.strip_prefix("/").unwrap_or(&rel))
    };
    match layout()? {
        Layout::V2(mount) => Ok(CgroupPaths {
            v1: BTreeMap::new(),
            unified: Some(place(&mount, "")),
            is_v2: true,
        }),
        Layout::V1 {
            controllers,
            unified,
        } => {
            let v1 = controllers
                .iter()
                .filter(|(name, _)| !name.starts_with("name="))
                .map(|(name, mount)| (name.clone(), place(mount, name)))
                .collect();
            Ok(CgroupPaths {
                v1,
                unified: unified.map(|u| place(&u, "")),
                is_v2: false,
            })
        }
    }
}

/// The manager for a container's cgroups.
pub fn manager(paths: &CgroupPaths) -> Box<dyn Cgroup> {
    if paths.is_v2 {
        Box::new(V2::new(paths.unified.clone().unwrap_or_default()))
    } else {
        Box::new(V1::new(
            paths.v1.clone(),
            paths.unified.clone().map(V2::new),
        ))
    }
}

/// How many processes the kernel's OOM killer killed in the cgroup (None when
/// the kernel does not say: no memory controller, or a v1 kernel before 4.13).
pub fn oom_kills(paths: &CgroupPaths) -> Option<u64> {
    let (dir, file) = if paths.is_v2 {
        (paths.unified.as_ref()?, "memory.events")
    } else {
        (paths.v1.get("memory")?, "memory.oom_control")
    };
    let text = fs::read_to_string(dir.join(file)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// What a cgroup has used, as `berth stats` reports it (zeros where the kernel
/// does not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use without inactive file pages (Docker's figure), bytes.
    pub memory: u64,
    /// The memory limit, if any.
    pub memory_limit: Option<u64>,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
    /// Processes (tasks).
    pub pids: u64,
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Reads a cgroup's usage (v1: cpuacct, memory, blkio, pids; v2: the unified files).
pub fn usage(paths: &CgroupPaths) -> Usage {
    let text = |dir: Option<&PathBuf>, file: &str| -> String {
        dir.and_then(|d| fs::read_to_string(d.join(file)).ok())
            .unwrap_or_default()
    };
    let num = |s: String| s.trim().parse::<u64>().ok();
    let limit = |v: Option<u64>| v.filter(|l| *l < (1 << 62));
    let mut u = Usage::default();
    if paths.is_v2 {
        let d = paths.unified.as_ref();
        u.cpu_ns = keyed(&text(d, "cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
        let current = num(text(d, "memory.current")).unwrap_or(0);
        let inactive = keyed(&text(d, "memory.stat"), "inactive_file").unwrap_or(0);
        u.memory = current.saturating_sub(inactive);
        u.memory_limit = limit(num(text(d, "memory.max")));
        for line in text(d, "io.stat").lines() {
            for f in line.split_whitespace().skip(1) {
                match f.split_once('=') {
                    Some(("rbytes", v)) => u.block_read += v.parse().unwrap_or(0),
                    Some(("wbytes", v)) => u.block_write += v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        u.pids = num(text(d, "pids.current")).unwrap_or(0);
    } else {
        let dir = |c: &str| paths.v1.get(c);
        u.cpu_ns = num(text(dir("cpuacct"), "cpuacct.usage")).unwrap_or(0);
        let usage = num(text(dir("memory"), "memory.usage_in_bytes")).unwrap_or(0);
        let inactive =
            keyed(&text(dir("memory"), "memory.stat"), "total_inactive_file").unwrap_or(0);
        u.memory = usage.saturating_sub(inactive);
        u.memory_limit = limit(num(text(dir("memory"), "memory.limit_in_bytes")));
        for line in text(dir("blkio"), "blkio.throttle.io_service_bytes").lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [_, "Read", v] => u.block_read += v.parse().unwrap_or(0),
                [_, "Write", v] => u.block_write += v.parse().unwrap_or(0),
                _ => {}
            }
        }
        u.pids = num(text(dir("pids"), "pids.current")).unwrap_or(0);
    }
    u
}

/// Writes one cgroup file, naming the file and the value on failure.
/// Refuses, before anything is written, what no version can hold: OCI's
/// `memory.swap` counts memory and swap together, so one below
/// `memory.limit` is an error (runc's too); v1's kernel would take the
/// memory limit and then refuse the rest, v2 has nothing to refuse it with.
pub(crate) fn check(res: &LinuxResources) -> Result<()> {
    if let Some(m) = res.memory()
        && let (Some(limit), Some(swap)) = (m.limit(), m.swap())
        && limit > 0
        && swap > 0
        && swap < limit
    {
        return Err(Error::Other(format!(
            "linux.resources.memory.swap {swap} is below linux.resources.memory.limit {limit} (it counts memory and swap together)"
        )));
    }
    Ok(())
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    use std::io::Write as _;
    let path = dir.join(file);
    // Never created: a file the cgroup lacks is ENOENT (its controller is
    // not enabled), not the EACCES of a create in cgroupfs (berth-harness's
    // cgroups machine found cpu.idle's missing file reported as that).
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| Error::Cgroup {
            path,
            value: value.to_string(),
            source,
        })
}

/// Reads one cgroup file, trimmed.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    Ok(fs::read_to_string(&path)
        .io("reading", &path)?
        .trim()
        .to_string())
}

/// Makes `dir` and any missing parents; `on_new` runs for each directory made, parents first.
pub(crate) fn mkdir_all(dir: &Path, on_new: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdir_all(parent, on_new)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => on_new(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Io {
            what: "creating cgroup",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// Reads `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                what: "reading",
                path: procs,
                source: e,
            });
        }
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                procs_recursive(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Removes an (empty) cgroup directory and its empty sub-cgroups, retrying while
/// the last processes finish exiting.
pub(crate) fn rmdir(dir: &Path) -> Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir(&e.path())?;
            }
        }
    }
    let mut delay = std::time::Duration::from_millis(1);
    for attempt in 0.. {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 12 => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => {
                return Err(Error::Io {
                    what: "removing cgroup",
                    path: dir.to_path_buf(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Polls `check` until it holds, for about two seconds.
pub(crate) fn wait_until(mut check: impl FnMut() -> bool) -> bool {
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..40 {
        if check() {
            return true;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(100));
    }
    check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_readable() {
        // Every machine this runs on has some cgroup filesystem.
        let l = layout().expect("layout");
        match l {
            Layout::V2(p) => assert!(p.join("cgroup.controllers").exists()),
            Layout::V1 { controllers, .. } => assert!(!controllers.is_empty()),
        }
    }

    #[test]
    fn absolute_and_relative_paths() {
        let abs = resolve(Some(Path::new("/default/c1")), "c1").expect("resolve");
        let rel = resolve(Some(Path::new("sub/c1")), "c1").expect("resolve");
        let dflt = resolve(None, "c1").expect("resolve");
        for p in abs.v1.values().chain(abs.unified.iter()) {
            assert!(p.ends_with("default/c1"), "{p:?}");
        }
        for p in rel.v1.values().chain(rel.unified.iter()) {
            assert!(p.ends_with("sub/c1"), "{p:?}");
        }
        for p in dflt.v1.values().chain(dflt.unified.iter()) {
            assert!(p.ends_with("c1"), "{p:?}");
        }
        assert!(resolve(Some(Path::new("/a/../../etc")), "c1").is_err());
    }
}
