//! Reading the cgroup filesystems: which hierarchies the host has (the
//! model's layout is built from this), and each cgroup's files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use berth::oci::cgroups::{Layout as HostLayout, layout};
use berth_model::cgroups::Controller;

/// One hierarchy the machine watches: v2 or not, its controllers, its mount.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The unified hierarchy of a pure v2 host.
    pub v2: bool,
    /// The controllers it holds.
    pub controllers: BTreeSet<Controller>,
    /// Where it is mounted.
    pub mount: PathBuf,
}

/// The controllers berth enables on the way down (v2), as the model names them.
pub const WANTED: [Controller; 6] = [
    Controller::Cpu,
    Controller::Cpuset,
    Controller::Io,
    Controller::Memory,
    Controller::Pids,
    Controller::Hugetlb,
];

/// A controller's name in cgroupfs (v1's mount option, v2's cgroup.controllers).
pub fn name(c: Controller, v2: bool) -> &'static str {
    match c {
        Controller::Cpu => "cpu",
        Controller::Cpuset => "cpuset",
        Controller::Io if v2 => "io",
        Controller::Io => "blkio",
        Controller::Memory => "memory",
        Controller::Pids => "pids",
        Controller::Hugetlb => "hugetlb",
        Controller::Freezer => "freezer",
    }
}

/// The hierarchies of this host that the model describes: the unified one
/// (pure v2, with the controllers its root has), or one per v1 controller
/// among the model's (a hybrid cgroup2 beside v1 is not modelled).
pub fn hierarchies() -> Vec<Watched> {
    match layout() {
        Ok(HostLayout::V2(mount)) => {
            let have =
                std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
            let controllers = WANTED
                .into_iter()
                .filter(|c| have.split_whitespace().any(|n| n == name(*c, true)))
                .collect();
            vec![Watched {
                v2: true,
                controllers,
                mount,
            }]
        }
        Ok(HostLayout::V1 { controllers, .. }) => {
            let mut out = Vec::new();
            for c in WANTED.into_iter().chain([Controller::Freezer]) {
                if let Some(m) = controllers.get(name(c, false)) {
                    out.push(Watched {
                        v2: false,
                        controllers: [c].into(),
                        mount: m.clone(),
                    });
                }
            }
            out
        }
        Err(_) => Vec::new(),
    }
}

/// Every cgroup at or below `dir`, as paths relative to `dir` ("" for itself).
pub fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        out.insert(rel.to_string());
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let n = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                walk(&e.path(), &r, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    if dir.is_dir() {
        walk(dir, "", &mut out);
    }
    out
}

/// A cgroup file, trimmed (None when it is not there).
pub fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The pids in `cgroup.procs`.
pub fn procs(dir: &Path) -> BTreeSet<i32> {
    read(dir, "cgroup.procs")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// v2: the controllers in `cgroup.subtree_control`, among the model's.
pub fn subtree_control(dir: &Path) -> BTreeSet<Controller> {
    let text = read(dir, "cgroup.subtree_control").unwrap_or_default();
    WANTED
        .into_iter()
        .filter(|c| text.split_whitespace().any(|n| n == name(*c, true)))
        .collect()
}

/// The freezer: (the cgroup's own setting, whether its processes are frozen).
pub fn freezer(dir: &Path, v2: bool) -> (bool, bool) {
    if v2 {
        let own = read(dir, "cgroup.freeze").as_deref() == Some("1");
        let eff = read(dir, "cgroup.events").is_some_and(|e| e.lines().any(|l| l == "frozen 1"));
        (own, eff)
    } else {
        let own = read(dir, "freezer.self_freezing").as_deref() == Some("1");
        let eff = read(dir, "freezer.state").as_deref() == Some("FROZEN");
        (own, eff)
    }
}

/// Limit files of one cgroup as (file, content), for the files the machine writes.
pub fn limits(dir: &Path, v2: bool) -> BTreeMap<&'static str, Option<String>> {
    let files: &[&str] = if v2 {
        &[
            "memory.max",
            "memory.low",
            "pids.max",
            "cpu.weight",
            "cpu.max",
        ]
    } else {
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "pids.max",
            "cpu.shares",
            "cpu.cfs_quota_us",
        ]
    };
    files.iter().map(|f| (*f, read(dir, f))).collect()
}
