//! `berth system df`, `system prune` and `info`: what berth holds on disk, what
//! can go, and what this host gives it.

use std::path::Path;

use super::container::Status;
use super::{Engine, Result};
use crate::image::manage::{self, Removal};

/// Bytes of the regular files under `dir` (links not followed, each inode once).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    total
}

/// Bytes in a container's read-write layer.
fn layer_size(e: &Engine, id: &str) -> u64 {
    e.images
        .snapshots()
        .get(id)
        .map(|s| disk_usage(&s.upper()))
        .unwrap_or(0)
}

/// One line of `system df`.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// How many.
    pub total: usize,
    /// How many in use (images used by a container; containers running).
    pub active: usize,
    /// Bytes.
    pub size: u64,
    /// Bytes `system prune` (-a for images) would free.
    pub reclaimable: u64,
}

/// `berth system df`: (images, containers).
pub fn df(e: &Engine) -> Result<(Usage, Usage)> {
    let db = e.images.db()?;
    let containers = e.containers.list()?;
    let used: std::collections::BTreeSet<_> = containers.iter().map(|c| c.image.clone()).collect();
    let mut images = Usage::default();
    for rec in db.images.values() {
        images.total += 1;
        images.size += rec.size();
        if used.contains(rec.id()) {
            images.active += 1;
        } else {
            images.reclaimable += rec.size();
        }
    }
    let mut cs = Usage::default();
    for c in &containers {
        cs.total += 1;
        let size = layer_size(e, &c.id);
        cs.size += size;
        if c.state.init_running() {
            cs.active += 1;
        } else {
            cs.reclaimable += size;
        }
    }
    Ok((images, cs))
}

/// `berth system prune`: removes every container not running, then unused
/// images (dangling ones; every unused one with `all`). Returns the removed
/// containers and the image removal.
pub fn prune(e: &Engine, all: bool) -> Result<(Vec<String>, u64, Removal)> {
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in e.containers.list()? {
        let _ = super::run::repair(e, &c.id);
        let Ok(c) = e.containers.load(&c.id) else {
            continue;
        };
        if c.state.status == Status::Running {
            continue;
        }
        let size = layer_size(e, &c.id);
        // A container started meanwhile is refused by remove: it stays.
        if super::run::remove(e, &c.id, false).is_ok() {
            removed.push(c.id);
            freed += size;
        }
    }
    let images = manage::prune(&e.images, all)?;
    Ok((removed, freed, images))
}

/// What `berth info` reports.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// (name, value) lines.
    pub lines: Vec<(String, String)>,
    /// Kernel features berth needs that this host lacks.
    pub missing: Vec<String>,
}

/// `berth info`.
pub fn info(e: &Engine) -> Result<Info> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut missing = Vec::new();
    let list = e.containers.list()?;
    let running = list.iter().filter(|c| c.state.init_running()).count();
    let paused = list
        .iter()
        .filter(|c| c.state.paused && c.state.status == Status::Running)
        .count();
    out.push(("Containers".into(), list.len().to_string()));
    out.push((" Running".into(), (running - paused).to_string()));
    out.push((" Paused".into(), paused.to_string()));
    out.push((" Stopped".into(), (list.len() - running).to_string()));
    out.push(("Images".into(), e.images.db()?.images.len().to_string()));
    out.push(("Storage Driver".into(), "overlay (kernel overlayfs)".into()));
    out.push(("Logging Driver".into(), "json-file".into()));
    let cg = match crate::oci::cgroups::layout() {
        Ok(crate::oci::cgroups::Layout::V2(_)) => "2 (unified)".to_string(),
        Ok(crate::oci::cgroups::Layout::V1 {
            unified: Some(_), ..
        }) => "1 (with a hybrid cgroup2 mount)".to_string(),
        Ok(crate::oci::cgroups::Layout::V1 { .. }) => "1".to_string(),
        Err(err) => {
            missing.push(format!("cgroups: {err}"));
            "none found".to_string()
        }
    };
    out.push(("Cgroup Driver".into(), "cgroupfs".into()));
    out.push(("Cgroup Version".into(), cg));
    if let Ok(crate::oci::cgroups::Layout::V1 { controllers, .. }) = crate::oci::cgroups::layout() {
        for c in [
            "cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio",
        ] {
            if !controllers.contains_key(c) {
                missing.push(format!("cgroup v1 controller {c} is not mounted"));
            }
        }
    }
    let nets: Vec<String> = e
        .networks
        .list()
        .unwrap_or_default()
        .iter()
        .map(|n| format!("{} ({}, {})", n.name, n.bridge, n.subnet))
        .collect();
    out.push((
        "Network".into(),
        "bridge host none container (modes)".into(),
    ));
    out.push((
        " Networks".into(),
        if nets.is_empty() {
            "none yet (bridge is made on first use)".to_string()
        } else {
            nets.join(", ")
        },
    ));
    out.push((
        " nftables table".into(),
        format!("ip {}", e.networks.table()),
    ));
    if !["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        missing.push("the nft command (apt-get install nftables): bridge networks need it".into());
    }
    let uname = nix::sys::utsname::uname().ok();
    out.push((
        "Kernel Version".into(),
        uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    ));
    out.push((
        "Architecture".into(),
        uname
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default(),
    ));
    out.push((
        "CPUs".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
    ));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    out.push((
        "Total Memory".into(),
        format!("{:.2}GiB", mem as f64 / (1 << 20) as f64),
    ));
    out.push(("Berth Root Dir".into(), e.root.display().to_string()));
    out.push(("Berth State Dir".into(), e.state.display().to_string()));
    out.push((
        "Init Binary".into(),
        super::config::init_binary()
            .unwrap_or("(none: apt-get install tini)")
            .to_string(),
    ));
    // Kernel features berth needs, and whether this kernel has them.
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for fs in ["overlay", "tmpfs", "devpts", "mqueue", "cgroup2"] {
        if !filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs))
        {
            missing.push(format!("filesystem {fs}"));
        }
    }
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"] {
        if !Path::new(&format!("/proc/self/ns/{ns}")).exists() {
            missing.push(format!("{ns} namespaces"));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        missing.push("seccomp".into());
    }
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|v| v.trim() == "0")
        .unwrap_or(true)
    {
        missing.push("user namespaces (max_user_namespaces is 0)".into());
    }
    Ok(Info {
        lines: out,
        missing,
    })
}
