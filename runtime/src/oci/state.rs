//! Container status and the state store.
//!
//! The lifecycle is data: [`Status`] and its predicates decide what each command may
//! do, and `tests::transition_table` checks every (status, operation) pair. The store
//! keeps one directory per container under the runtime root (`--root`); its
//! `state.json` is written to a temporary name and renamed, and every command that
//! changes a container holds an `flock` on the container's directory while it works.
//! The status itself is not trusted from disk: it is recomputed from the kernel
//! (is the init alive, with the same start time; does the exec fifo still exist; is
//! the cgroup frozen).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cgroups::CgroupPaths;
use super::error::{Error, IoContext, Result};

/// The OCI version this runtime reports in state JSON, as runc 1.1 does.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// File name of the fifo that holds a created container's init until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// A container's status, as the runtime spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting it up.
    Creating,
    /// Set up; the user process has not been started.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The init process has exited.
    Stopped,
}

/// The lifecycle operations whose legality depends on the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `start`
    Start,
    /// `kill`
    Kill,
    /// `delete` without `--force`
    Delete,
    /// `pause`
    Pause,
    /// `resume`
    Resume,
    /// `exec`
    Exec,
    /// `update`
    Update,
}

impl Op {
    /// The verb used in error messages.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Kill => "kill",
            Op::Delete => "delete",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Exec => "exec in",
            Op::Update => "update",
        }
    }
}

impl Status {
    /// Whether `op` is allowed in this status (runc's rules).
    pub fn allows(self, op: Op) -> bool {
        use Status::*;
        match op {
            Op::Start => self == Created,
            // runc signals a paused container too (the signal stays pending until thawed).
            Op::Kill => matches!(self, Created | Running | Paused),
            // A created container may be deleted: its init is killed. Running and
            // paused ones need --force.
            Op::Delete => matches!(self, Created | Stopped),
            // runc freezes a created container too.
            Op::Pause => matches!(self, Created | Running),
            Op::Resume => self == Paused,
            Op::Exec => matches!(self, Created | Running),
            Op::Update => matches!(self, Created | Running | Paused),
        }
    }

    /// Ok if `op` is allowed, else the state-transition error.
    pub fn check(self, id: &str, op: Op) -> Result<()> {
        if self.allows(op) {
            Ok(())
        } else {
            Err(Error::BadState {
                id: id.to_string(),
                op: op.verb(),
                status: self,
            })
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime keeps about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The container id.
    pub id: String,
    /// Host pid of the init process (0 while creating).
    pub pid: i32,
    /// The init's start time in clock ticks since boot (guards against pid reuse).
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// Owner of the container (empty: root, as runc).
    pub owner: String,
    /// Annotations of config.json.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `creating` until create finished; afterwards the status is derived.
    pub status: Status,
    /// The container's cgroups.
    pub cgroup: CgroupPaths,
}

/// The runtime-spec state, as `berth-runc state` prints it (runc's field order).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// `ociVersion`
    pub oci_version: String,
    /// `id`
    pub id: String,
    /// `pid`
    pub pid: i32,
    /// `status`
    pub status: Status,
    /// `bundle`
    pub bundle: PathBuf,
    /// `rootfs`
    pub rootfs: PathBuf,
    /// `created`
    pub created: String,
    /// `owner`
    pub owner: String,
    /// `annotations`
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// Checks an id the way runc does.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id.len() > 1024 || id == "." || id == ".." || !id.chars().all(ok_char) {
        return Err(Error::InvalidId(id.to_string()));
    }
    Ok(())
}

/// The runtime root: one directory per container.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A container's directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct Locked {
    dir: PathBuf,
    _lock: File,
}

impl Store {
    /// A store at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where compiled seccomp programs are cached (a name no container id can take).
    pub fn bpf_cache(&self) -> PathBuf {
        self.root.join("bpf:cache")
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Makes the directory of a new container and locks it; refuses an existing id.
    pub fn create(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        fs::create_dir_all(&self.root).io("creating runtime root", &self.root)?;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()));
            }
            Err(e) => {
                return Err(Error::Io {
                    what: "creating",
                    path: dir,
                    source: e,
                });
            }
        }
        let lock = File::open(&dir).io("opening", &dir)?;
        lock.lock().io("locking", &dir)?;
        Ok(Locked { dir, _lock: lock })
    }

    /// Locks the directory of an existing container.
    pub fn lock(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = self.dir(id);
        let lock = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()));
            }
            Err(e) => {
                return Err(Error::Io {
                    what: "opening",
                    path: dir,
                    source: e,
                });
            }
        };
        lock.lock().io("locking", &dir)?;
        if !dir.join("state.json").exists() {
            // Removed (or never finished) while we waited for the lock.
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(Locked { dir, _lock: lock })
    }

    /// The ids of every container in the store, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => {
                return Err(Error::Io {
                    what: "reading",
                    path: self.root.clone(),
                    source: e,
                });
            }
        };
        for entry in entries.flatten() {
            if entry.path().join("state.json").exists()
                && let Some(name) = entry.file_name().to_str()
            {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

impl Locked {
    /// The container's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The descriptor holding the lock (children close their copy of it).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._lock)
    }

    /// Path of the exec fifo.
    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Reads state.json.
    pub fn load(&self) -> Result<State> {
        let path = self.dir.join("state.json");
        let data = fs::read(&path).io("reading", &path)?;
        serde_json::from_slice(&data).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Writes state.json atomically.
    pub fn save(&self, state: &State) -> Result<()> {
        let json = serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.dir.join("state.json"), &json)
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).io("removing", &self.dir)
    }
}

/// Writes `data` to a temporary name beside `path`, then renames it into place.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).io("creating", &tmp)?;
    f.write_all(data).io("writing", &tmp)?;
    drop(f);
    fs::rename(&tmp, path).io("renaming into place", path)
}

/// Start time (field 22 of /proc/PID/stat) of a live, non-zombie process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3; field 22 is the 20th from here.
    fields.nth(18)?.parse().ok()
}

impl State {
    /// Whether the init process is this container's and still alive.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid) == Some(self.pid_start)
    }

    /// The status, derived from the kernel.
    pub fn status(&self, dir: &Path) -> Status {
        if self.status == Status::Creating {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        // Frozen first: runc reports a paused created container as paused too.
        if super::cgroups::manager(&self.cgroup).is_frozen() {
            return Status::Paused;
        }
        if dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        Status::Running
    }

    /// The runtime-spec view of this state.
    pub fn oci(&self, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, as runc tests it: every forbidden pair must be refused.
    #[test]
    fn transition_table() {
        use Op::*;
        use Status::*;
        let statuses = [Creating, Created, Running, Paused, Stopped];
        let ops = [Start, Kill, Delete, Pause, Resume, Exec, Update];
        let allowed: &[(Status, Op)] = &[
            (Created, Start),
            (Created, Kill),
            (Running, Kill),
            (Paused, Kill),
            (Created, Delete),
            (Stopped, Delete),
            (Created, Pause),
            (Running, Pause),
            (Paused, Resume),
            (Created, Exec),
            (Running, Exec),
            (Created, Update),
            (Running, Update),
            (Paused, Update),
        ];
        for s in statuses {
            for op in ops {
                let want = allowed.contains(&(s, op));
                assert_eq!(s.allows(op), want, "{s} {op:?}");
                let res = s.check("c1", op);
                assert_eq!(res.is_ok(), want);
                if let Err(e) = res {
                    assert_eq!(
                        e.to_string(),
                        format!("cannot {} container \"c1\": it is {s}", op.verb())
                    );
                }
            }
        }
    }

    #[test]
    fn ids() {
        for good in ["a", "abc-1_2+3.4", "A.b", &"x".repeat(1024)] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", "../x", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
