//! Reading the cgroup filesystems: which hierarchies the host has (the
//! model's layout is built from this), and each cgroup's files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use berth::oci::cgroups::{Layout as HostLayout, layout};
use berth_model::cgroups::devices::{MKNOD, READ, WRITE};
use berth_model::cgroups::{Controller, IoKey, Limit};

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
        Controller::Devices => "devices",
    }
}

/// A cgroup2 mount as the model sees it: the controllers its root has.
fn unified(mount: PathBuf) -> Watched {
    let have = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let controllers = WANTED
        .into_iter()
        .filter(|c| have.split_whitespace().any(|n| n == name(*c, true)))
        .collect();
    Watched {
        v2: true,
        controllers,
        mount,
    }
}

/// The hierarchies of this host that the model describes: the unified one
/// (pure v2, with the controllers its root has), or one per v1 controller
/// among the model's and, last, the hybrid cgroup2 mount beside them if there
/// is one (this host's holds hugetlb).
pub fn hierarchies() -> Vec<Watched> {
    match layout() {
        Ok(HostLayout::V2(mount)) => vec![unified(mount)],
        Ok(HostLayout::V1 {
            controllers,
            unified: hybrid,
        }) => {
            let mut out = Vec::new();
            for c in WANTED
                .into_iter()
                .chain([Controller::Freezer, Controller::Devices])
            {
                if let Some(m) = controllers.get(name(c, false)) {
                    out.push(Watched {
                        v2: false,
                        controllers: [c].into(),
                        mount: m.clone(),
                    });
                }
            }
            out.extend(hybrid.map(unified));
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

/// The machine's possible cpus (for [`Limit::Cpus`]) or memory nodes, as a
/// mask.
pub fn possible(l: Limit) -> u64 {
    let file = match l {
        Limit::Mems => "/sys/devices/system/node/possible",
        _ => "/sys/devices/system/cpu/possible",
    };
    // No node directory: one node.
    let text = std::fs::read_to_string(file).unwrap_or_else(|_| "0".into());
    text.trim()
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
        })
        .flat_map(|(a, b)| a..=b)
        .filter(|n| *n < 64)
        .fold(0, |m, n| m | 1 << n)
}

/// A mask as the kernel lists it: "0-1,3" (empty: "").
pub fn list(mask: u64) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut n = 0;
    while n < 64 {
        if mask >> n & 1 == 1 {
            let start = n;
            while n + 1 < 64 && mask >> (n + 1) & 1 == 1 {
                n += 1;
            }
            out.push(if start == n {
                n.to_string()
            } else {
                format!("{start}-{n}")
            });
        }
        n += 1;
    }
    out.join(",")
}

/// The whole disk the machine throttles: the first in /sys/block by name
/// (loop0 here and in the VMs, whose initramfs loads the loop module).
pub fn disk() -> Option<(u32, u32)> {
    static DISK: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *DISK.get_or_init(|| {
        let mut names: Vec<PathBuf> = std::fs::read_dir("/sys/block")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        names
            .iter()
            .find_map(|p| parse_dev(&std::fs::read_to_string(p.join("dev")).ok()?))
    })
}

/// A disk the machine does not have (no driver holds 8:240 here, nor in
/// the VMs: SCSI disks are not loaded there).
pub fn absent_disk() -> (u32, u32) {
    (8..16)
        .map(|m| (m, 240))
        .find(|(a, b)| !Path::new(&format!("/sys/dev/block/{a}:{b}")).exists())
        .unwrap_or((8, 240))
}

/// "MAJOR:MINOR".
fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// v1: the blkio weight file a cgroup has, if any (`blkio.weight` with
/// CFQ, gone since 5.0; `blkio.bfq.weight` while BFQ is loaded). Asked of a
/// cgroup made for the moment: the root has neither.
pub fn v1_weight_file() -> Option<&'static str> {
    static FILE: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *FILE.get_or_init(|| {
        let mount = hierarchies()
            .into_iter()
            .find(|w| !w.v2 && w.controllers.contains(&Controller::Io))?
            .mount;
        let probe = mount.join(format!("berth-harness-weight-{}", std::process::id()));
        std::fs::create_dir(&probe).ok()?;
        let found = ["blkio.weight", "blkio.bfq.weight"]
            .into_iter()
            .find(|f| probe.join(f).exists());
        let _ = std::fs::remove_dir(&probe);
        found
    })
}

/// The block I/O throttles a cgroup holds: v2's `io.max` lines (a key at
/// "max" is none), v1's four `blkio.throttle.*_device` files.
pub fn throttles(dir: &Path, v2: bool) -> BTreeMap<(IoKey, u32, u32), u64> {
    let mut out = BTreeMap::new();
    if v2 {
        for line in read(dir, "io.max").unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            let Some((a, b)) = words.next().and_then(parse_dev) else {
                continue;
            };
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                let key = match k {
                    "rbps" => IoKey::ReadBps,
                    "wbps" => IoKey::WriteBps,
                    "riops" => IoKey::ReadIops,
                    "wiops" => IoKey::WriteIops,
                    _ => continue,
                };
                if v != "max" {
                    out.insert((key, a, b), v.parse().unwrap_or(u64::MAX - 1));
                }
            }
        }
    } else {
        for key in IoKey::ALL {
            for line in read(dir, v1_throttle_file(key)).unwrap_or_default().lines() {
                let mut words = line.split_whitespace();
                if let (Some((a, b)), Some(v)) = (words.next().and_then(parse_dev), words.next()) {
                    out.insert((key, a, b), v.parse().unwrap_or(u64::MAX - 1));
                }
            }
        }
    }
    out
}

/// v1's file of a throttle.
pub fn v1_throttle_file(key: IoKey) -> &'static str {
    match key {
        IoKey::ReadBps => "blkio.throttle.read_bps_device",
        IoKey::WriteBps => "blkio.throttle.write_bps_device",
        IoKey::ReadIops => "blkio.throttle.read_iops_device",
        IoKey::WriteIops => "blkio.throttle.write_iops_device",
    }
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

/// The devices probed, all character devices: (major, minor). /dev/null's,
/// /dev/zero's and /dev/tty's numbers, and 1:0, which no driver has (its
/// open fails with ENXIO once the cgroup let it through).
pub const PROBED: [(u32, u32); 4] = [(1, 3), (1, 5), (5, 0), (1, 0)];

/// The accesses probed: an open for reading, for writing, for both (one
/// request of both bits), and mknod.
pub const ACCESSES: [u8; 4] = [READ, WRITE, READ | WRITE, MKNOD];

/// Asks the kernel itself what a process in a cgroup may do with devices:
/// a forked process joins the cgroup and opens nodes of the probed devices
/// (made in a directory of the prober's own) and makes one; EPERM is the
/// cgroup's refusal, anything else got past it.
pub struct Prober {
    dir: tempfile::TempDir,
    nodes: Vec<std::ffi::CString>,
    made: std::ffi::CString,
}

fn cstring(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("a path without NUL")
}

impl Prober {
    /// The nodes, made.
    pub fn new() -> Prober {
        let dir = tempfile::Builder::new()
            .prefix("berth-harness-dev")
            .tempdir()
            .expect("a directory for device nodes");
        let nodes = PROBED
            .iter()
            .map(|(major, minor)| {
                let path = dir.path().join(format!("c{major}_{minor}"));
                nix::sys::stat::mknod(
                    &path,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(u64::from(*major), u64::from(*minor)),
                )
                .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
                cstring(&path)
            })
            .collect();
        let made = cstring(&dir.path().join("made"));
        Prober { dir, nodes, made }
    }

    /// The probed (major, minor, access) a process in the cgroup whose
    /// `cgroup.procs` is `procs` may use.
    pub fn allowed(&self, procs: &Path) -> Result<BTreeSet<(u32, u32, u8)>, String> {
        const N: usize = PROBED.len() * ACCESSES.len();
        let procs = cstring(procs);
        let mut fds = [0i32; 2];
        // SAFETY: a pipe into a two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the child makes raw system calls only (no allocation, no
        // locks) and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                let mut out = [0u8; N];
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(2);
                }
                libc::close(fd);
                let mut i = 0;
                for (d, (major, minor)) in PROBED.iter().enumerate() {
                    for a in ACCESSES {
                        let (r, errno) = if a == MKNOD {
                            libc::unlink(self.made.as_ptr());
                            let dev = libc::makedev(*major, *minor);
                            let r = libc::mknod(self.made.as_ptr(), libc::S_IFCHR | 0o600, dev);
                            let errno = *libc::__errno_location();
                            libc::unlink(self.made.as_ptr());
                            (r, errno)
                        } else {
                            let mode = match a {
                                READ => libc::O_RDONLY,
                                WRITE => libc::O_WRONLY,
                                _ => libc::O_RDWR,
                            };
                            let flags = mode | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
                            let fd = libc::open(self.nodes[d].as_ptr(), flags);
                            let errno = *libc::__errno_location();
                            if fd >= 0 {
                                libc::close(fd);
                            }
                            (fd, errno)
                        };
                        out[i] = if r >= 0 {
                            0
                        } else {
                            match errno {
                                libc::EPERM => 1,
                                libc::EACCES => 3,
                                _ => 0,
                            }
                        };
                        i += 1;
                    }
                }
                let ok = libc::write(fds[1], out.as_ptr().cast(), N) == N as isize;
                libc::_exit(if ok { 0 } else { 3 });
            }
        }
        // SAFETY: our end of the pipe; the child's is closed here.
        unsafe { libc::close(fds[1]) };
        let mut out = [0u8; N];
        // SAFETY: reading into a buffer of N bytes.
        let n = unsafe { libc::read(fds[0], out.as_mut_ptr().cast(), N) };
        // SAFETY: closing our descriptor and waiting for our own child.
        let mut status = 0;
        unsafe {
            libc::close(fds[0]);
            libc::waitpid(pid, &mut status, 0);
        }
        if pid < 0 || n != N as isize {
            let why = match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                _ if pid < 0 => "fork failed".to_string(),
                (true, 2) => "it could not join the cgroup".to_string(),
                (true, code) => format!("it exited with {code}"),
                _ => format!("wait status {status}"),
            };
            return Err(format!(
                "the probe in {} failed: {why}",
                procs.to_string_lossy()
            ));
        }
        if out.contains(&3) {
            return Err(format!(
                "the probe's nodes in {} cannot be opened (EACCES: a nodev mount?)",
                self.dir.path().display()
            ));
        }
        let mut allowed = BTreeSet::new();
        let grid = PROBED
            .iter()
            .flat_map(|(ma, mi)| ACCESSES.iter().map(move |a| (*ma, *mi, *a)));
        for ((major, minor, a), r) in grid.zip(out) {
            if r == 0 {
                allowed.insert((major, minor, a));
            }
        }
        Ok(allowed)
    }

    /// What a process in `dir` may use: it joins `dir` (v1) or, v2, a
    /// leaf made below it for the moment (v2 lets no process into a cgroup
    /// that enables controllers for its children; a leaf's programs are
    /// its parent's).
    pub fn allowed_in(&self, dir: &Path, v2: bool) -> Result<BTreeSet<(u32, u32, u8)>, String> {
        if !v2 {
            return self.allowed(&dir.join("cgroup.procs"));
        }
        let leaf = dir.join("berth-probe");
        std::fs::create_dir(&leaf).map_err(|e| format!("mkdir {}: {e}", leaf.display()))?;
        let r = self.allowed(&leaf.join("cgroup.procs"));
        let mut gone = std::fs::remove_dir(&leaf);
        for _ in 0..100 {
            if gone.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            gone = std::fs::remove_dir(&leaf);
        }
        gone.map_err(|e| format!("rmdir {}: {e}", leaf.display()))?;
        r
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}

/// v1: the lines of `devices.list`.
pub fn devices_list(dir: &Path) -> BTreeSet<String> {
    read(dir, "devices.list")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
