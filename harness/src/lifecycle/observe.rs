//! Reading what berth-runc says and what the kernel has: `list`, a process's
//! liveness and executable, and its cgroup's freezer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One container as `berth-runc list --format json` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// "created", "running", "paused", "stopped"
    pub status: String,
    /// its init's pid (0 when stopped)
    pub pid: i32,
}

/// Parses `list --format json` (`null` when empty).
pub fn parse_list(json: &str) -> Result<BTreeMap<String, Listed>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("list --format json: {e}: {json:?}"))?;
    let mut out = BTreeMap::new();
    for c in v.as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or_default().to_string();
        out.insert(
            id,
            Listed {
                status: c["status"].as_str().unwrap_or_default().to_string(),
                pid: c["pid"].as_i64().unwrap_or(0) as i32,
            },
        );
    }
    Ok(out)
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
}

/// The file name of the program `pid` runs.
pub fn program(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// The directory of `pid`'s cgroup that holds the freezer: the unified one
/// on a pure v2 host, the v1 `freezer` one otherwise.
pub fn freezer_dir(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if v2 && names.is_empty() {
            Some(Path::new("/sys/fs/cgroup").join(rel))
        } else if !v2 && names.split(',').any(|n| n == "freezer") {
            Some(Path::new("/sys/fs/cgroup/freezer").join(rel))
        } else {
            None
        }
    })
}

/// Whether the cgroup at `dir` is frozen (v2 `cgroup.events`, v1 `freezer.state`).
pub fn frozen(dir: &Path) -> Option<bool> {
    if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
        return Some(events.lines().any(|l| l == "frozen 1"));
    }
    std::fs::read_to_string(dir.join("freezer.state"))
        .ok()
        .map(|s| s.trim() == "FROZEN")
}
