//! Container records: `<data root>/containers/<id>/container.json`, written
//! atomically, each directory locked (flock) by whoever changes the container.
//! Names follow Docker's rules and are unique; a container is found by name,
//! full id or unique id prefix.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, IoContext, Result};
use crate::digest::Digest;

/// What the container runs (kept for commit, inspect and restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunConfig {
    /// The image's or `--entrypoint`'s entrypoint.
    pub entrypoint: Vec<String>,
    /// The command (the image's Cmd unless given).
    pub cmd: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: String,
    /// `user[:group]` as given (resolved in the container at start).
    pub user: String,
    /// The container's hostname.
    pub hostname: String,
    /// Bind mounts, `-v HOST:CONTAINER[:ro|rw]`, checked at create.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// `--tmpfs DIR`.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: bool,
    /// `-m`: memory limit in bytes.
    #[serde(default)]
    pub memory: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: Option<i64>,
    /// `--pids-limit`.
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// `--memory-swap`: memory plus swap in bytes, -1 for unlimited.
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// `--cpu-shares`: relative CPU weight.
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`, as given (checked at create).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// `--cap-add` (CAP_ names, or ALL).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop` (CAP_ names, or ALL).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// `--security-opt no-new-privileges=false` (no_new_privs is on by default).
    #[serde(default)]
    pub new_privileges: bool,
    /// `--security-opt seccomp=…`.
    #[serde(default)]
    pub seccomp: Seccomp,
    /// `--init`.
    #[serde(default)]
    pub init: bool,
    /// `--restart`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--network`.
    #[serde(default)]
    pub network: NetworkMode,
    /// `-t`: a pty.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: stdin kept open.
    #[serde(default)]
    pub interactive: bool,
    /// `--log-opt max-size=…`: rotate the log at this many bytes.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file=…`: how many log files to keep (with max-size).
    #[serde(default)]
    pub log_max_files: Option<u32>,
    /// `-p` (and `-P`'s exposed ports, host port 0): published at each start.
    #[serde(default)]
    pub ports: Vec<crate::network::PortSpec>,
    /// `-P`.
    #[serde(default)]
    pub publish_all: bool,
    /// `--ip`.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
}

/// A resource limit, `--ulimit nofile=1024:2048`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name (nofile, nproc, core, …).
    pub name: String,
    /// Soft limit (-1: unlimited).
    pub soft: i64,
    /// Hard limit (-1: unlimited).
    pub hard: i64,
}

/// The seccomp filter of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "profile")]
pub enum Seccomp {
    /// berth's default profile (Docker's).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile read at create (as `linux.seccomp` JSON).
    Custom(serde_json::Value),
}

/// When the monitor restarts a container that ended.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it exits non-zero, at most `max_retries` times (0: no limit).
    OnFailure {
        /// the most restarts
        max_retries: u32,
    },
    /// Whenever it ends, unless stopped by a user.
    Always,
    /// As always (berth has no daemon to restart containers at boot).
    UnlessStopped,
}

/// The network a container is in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "mode", content = "container")]
pub enum NetworkMode {
    /// A bridge network (its name): `bridge`, the default, or a user-defined one.
    Bridge(String),
    /// Its own namespace with only loopback.
    #[default]
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace (its id).
    Container(String),
}

/// A bind mount from the host, or a volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host path (a volume's `_data`).
    pub source: String,
    /// The volume's name (None: a host directory).
    #[serde(default)]
    pub name: Option<String>,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl RunConfig {
    /// The process's argv: entrypoint then command.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// The state of a container's process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunState {
    /// Created, running or exited.
    pub status: Status,
    /// The init's pid while running.
    pub pid: i32,
    /// The process that waits for the init (a monitor, or a foreground `berth`).
    #[serde(default)]
    pub monitor: i32,
    /// The exit code once exited.
    pub exit_code: i32,
    /// When it last started.
    pub started_at: Option<String>,
    /// When it last ended.
    pub finished_at: Option<String>,
    /// Whether the kernel's OOM killer killed a process of its last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// How often the restart policy restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// A user stopped it (restart policies leave it stopped).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Frozen by `pause`.
    #[serde(default)]
    pub paused: bool,
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    pid > 0 && crate::oci::state::process_start_time(pid).is_some()
}

impl RunState {
    /// Its init runs.
    pub fn init_running(&self) -> bool {
        self.status == Status::Running && alive(self.pid)
    }

    /// Shown as running: its init runs, or the process that waits for it has
    /// not recorded its end yet.
    pub fn shown_running(&self) -> bool {
        self.status == Status::Running && (alive(self.pid) || alive(self.monitor))
    }
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// The image id.
    pub image: Digest,
    /// The image as the user named it.
    pub image_name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// What it runs.
    pub config: RunConfig,
    /// Its process.
    pub state: RunState,
}

/// The container records.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

/// A container's directory, locked while this lives.
pub struct Locked {
    /// The directory.
    pub dir: PathBuf,
    _lock: File,
}

impl Locked {
    /// The lock's descriptor (for a child that must not keep it).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._lock)
    }
}

/// Whether Docker would accept `name`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nimble", "proud", "quiet", "sharp", "steady", "swift", "tender", "vivid", "witty",
    "zealous", "bold", "crisp", "dapper",
];
const NOUNS: &[&str] = &[
    "anchor", "buoy", "cargo", "dock", "ferry", "galley", "harbor", "jetty", "keel", "lantern",
    "mast", "oar", "pier", "quay", "rudder", "sail", "tide", "wharf", "hull", "bow", "stern",
    "helm", "berth", "deck",
];

/// 32 random bytes as hex, from the kernel.
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .io("reading", "/dev/urandom")?;
    Ok(hex::encode(b))
}

impl Containers {
    /// The records under `dir`.
    pub fn open(dir: &Path) -> Result<Containers> {
        fs::create_dir_all(dir).io("creating", dir)?;
        Ok(Containers {
            dir: dir.to_path_buf(),
        })
    }

    /// A container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).io("listing", &self.dir)? {
            let e = e.io("listing", &self.dir)?;
            let p = e.path().join("container.json");
            // A directory without a record is one being made or removed.
            if let Ok(data) = fs::read(&p)
                && let Ok(c) = serde_json::from_slice::<Container>(&data)
            {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn resolve(&self, what: &str) -> Result<Container> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name == what || c.id == what) {
            return Ok(c.clone());
        }
        if !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut m = all.iter().filter(|c| c.id.starts_with(what));
            if let Some(c) = m.next() {
                if m.next().is_some() {
                    return Err(Error::Ambiguous(what.to_string()));
                }
                return Ok(c.clone());
            }
        }
        Err(Error::NoSuchContainer(what.to_string()))
    }

    /// A free name: `name` checked, or a generated `adjective_noun`.
    pub fn pick_name(&self, name: Option<&str>) -> Result<String> {
        let all = self.list()?;
        let taken = |n: &str| all.iter().find(|c| c.name == n).map(|c| c.id.clone());
        if let Some(n) = name {
            if !valid_name(n) {
                return Err(Error::BadName(n.to_string()));
            }
            if let Some(id) = taken(n) {
                return Err(Error::NameInUse {
                    name: n.to_string(),
                    id,
                });
            }
            return Ok(n.to_string());
        }
        let seed = random_id()?;
        let bytes = hex::decode(&seed).unwrap_or_default();
        for (i, pair) in bytes.chunks(2).enumerate() {
            let (a, b) = (pair[0] as usize, *pair.get(1).unwrap_or(&0) as usize);
            let mut n = format!(
                "{}_{}",
                ADJECTIVES[a % ADJECTIVES.len()],
                NOUNS[b % NOUNS.len()]
            );
            if i > 4 {
                n.push_str(&i.to_string());
            }
            if taken(&n).is_none() {
                return Ok(n);
            }
        }
        Err(Error::BadName("(no free generated name)".into()))
    }

    /// The lock that makes choosing a name and claiming it one step.
    pub fn names_lock(&self) -> Result<File> {
        let p = self.dir.join(".names.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .io("opening", &p)?;
        f.lock().io("locking", &p)?;
        Ok(f)
    }

    /// Makes a new container's directory, locked.
    pub fn create_dir(&self, id: &str) -> Result<Locked> {
        let dir = self.dir(id);
        fs::create_dir(&dir).io("creating", &dir)?;
        self.lock(id)
    }

    /// Locks a container's directory (waiting for another holder).
    pub fn lock(&self, id: &str) -> Result<Locked> {
        let dir = self.dir(id);
        let f = File::open(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchContainer(id.to_string()),
            _ => Error::Io {
                what: "opening",
                path: dir.clone(),
                source: e,
            },
        })?;
        f.lock().io("locking", &dir)?;
        Ok(Locked { dir, _lock: f })
    }

    /// Writes a container's record.
    pub fn save(&self, c: &Container) -> Result<()> {
        let data = serde_json::to_vec_pretty(c).map_err(|e| Error::State {
            id: c.id.clone(),
            msg: e.to_string(),
        })?;
        crate::oci::state::write_atomic(&self.dir(&c.id).join("container.json"), &data)
            .map_err(Error::Oci)
    }

    /// Reads a container's record again.
    pub fn load(&self, id: &str) -> Result<Container> {
        let p = self.dir(id).join("container.json");
        let data = fs::read(&p).map_err(|_| Error::NoSuchContainer(id.to_string()))?;
        serde_json::from_slice(&data).map_err(|e| Error::State {
            id: id.to_string(),
            msg: format!("{}: {e}", p.display()),
        })
    }

    /// Removes a container's directory.
    pub fn remove_dir(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                what: "removing",
                path: dir,
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "a1", "my_app.v2-x", "1abc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-x", "_x", "a/b", "a b", "a:b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn lookup_by_name_id_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let cs = Containers::open(dir.path()).unwrap();
        let mk = |id: &str, name: &str| {
            let c = Container {
                id: id.into(),
                name: name.into(),
                image: Digest::of(b""),
                image_name: "x".into(),
                created: "2026-01-01T00:00:00Z".into(),
                config: RunConfig::default(),
                state: RunState {
                    status: Status::Created,
                    pid: 0,
                    monitor: 0,
                    exit_code: 0,
                    started_at: None,
                    finished_at: None,
                    ..RunState::default()
                },
            };
            let _l = cs.create_dir(id).unwrap();
            cs.save(&c).unwrap();
        };
        mk("abc123", "first");
        mk("abd456", "second");
        assert_eq!(cs.resolve("first").unwrap().id, "abc123");
        assert_eq!(cs.resolve("abd").unwrap().name, "second");
        assert!(matches!(cs.resolve("ab"), Err(Error::Ambiguous(_))));
        assert!(matches!(cs.resolve("zzz"), Err(Error::NoSuchContainer(_))));
        assert!(matches!(
            cs.pick_name(Some("first")),
            Err(Error::NameInUse { .. })
        ));
        assert!(matches!(cs.pick_name(Some("-bad")), Err(Error::BadName(_))));
        let generated = cs.pick_name(None).unwrap();
        assert!(
            valid_name(&generated) && generated.contains('_'),
            "{generated}"
        );
    }
}
