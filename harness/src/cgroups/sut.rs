//! The runtime's side: berth's cgroup manager for "containers" at nested
//! paths below a cgroup of the case's own (an absolute cgroupsPath, as
//! containerd passes one), with `busybox sleep` processes put into them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use berth::oci::cgroups::{Cgroup, CgroupPaths, manager, resolve};
use berth::oci::error::Error;
use berth_model::cgroups::Controller;
use berth_model::cgroups::IoKey;
use berth_model::cgroups::devices::{Kind, Rule, access_text};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
};
use proptest_state_machine::StateMachineTest;

use super::assertions;
use super::observe::{Prober, Watched, hierarchies, name, subtree_control};
use super::reference::{CgRef, CgState};
use super::transitions::{Outcome, SetLimit, Transition};

/// The system under test.
pub struct Sut {
    /// The case's cgroup name (below each hierarchy's root).
    pub case: String,
    /// The hierarchies the model describes, in its order.
    pub watched: Vec<Watched>,
    /// The processes, by the model's numbers.
    pub procs: BTreeMap<u32, Child>,
    /// The last step.
    pub step: Option<Transition>,
    /// Asks the kernel which devices a cgroup's processes may use.
    pub prober: Prober,
    /// What each cgroup2 root's subtree_control held before the case (berth
    /// enables controllers at the root when a limit needs them).
    pub roots: Vec<(PathBuf, BTreeSet<Controller>)>,
}

/// The CFS period every quota is set with, in µs.
pub const PERIOD: u64 = 100_000;

fn resources(l: SetLimit) -> LinuxResources {
    let mut r = LinuxResourcesBuilder::default();
    r = match l {
        SetLimit::Memory(b) => r.memory(
            LinuxMemoryBuilder::default()
                .limit(b as i64)
                .build()
                .expect("memory"),
        ),
        SetLimit::Pids(n) => r.pids(
            LinuxPidsBuilder::default()
                .limit(n as i64)
                .build()
                .expect("pids"),
        ),
        SetLimit::Shares(s) => r.cpu(LinuxCpuBuilder::default().shares(s).build().expect("cpu")),
        SetLimit::Hugetlb(b) => r.hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(b as i64)
                .build()
                .expect("hugepage limit"),
        ]),
        SetLimit::Swap { limit, total } => r.memory(
            LinuxMemoryBuilder::default()
                .limit(limit as i64)
                .swap(total.map_or(-1, |t| t as i64))
                .build()
                .expect("memory"),
        ),
        SetLimit::Reservation(b) => r.memory(
            LinuxMemoryBuilder::default()
                .reservation(b as i64)
                .build()
                .expect("memory"),
        ),
        SetLimit::Unified { key, value, bad } => r.unified(
            [(key, value.to_string())]
                .into_iter()
                // A value no file takes, so that a mutant writing it harms nothing.
                .chain(bad.map(|b| (b, "x".to_string())))
                .map(|(k, v)| (k.to_string(), v))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
        SetLimit::Cpus(m) => r.cpu(
            LinuxCpuBuilder::default()
                .cpus(super::observe::list(m))
                .build()
                .expect("cpu"),
        ),
        SetLimit::Mems(m) => r.cpu(
            LinuxCpuBuilder::default()
                .mems(super::observe::list(m))
                .build()
                .expect("cpu"),
        ),
        SetLimit::Idle(i) => r.cpu(
            LinuxCpuBuilder::default()
                .idle(i as i64)
                .build()
                .expect("cpu"),
        ),
        SetLimit::IoWeight(w) => r.block_io(
            LinuxBlockIoBuilder::default()
                .weight(w as u16)
                .build()
                .expect("blockIO"),
        ),
        SetLimit::Throttle { key, disk, rate } => {
            let (major, minor) = match (disk, super::observe::disk()) {
                (true, Some(d)) => d,
                _ => super::observe::absent_disk(),
            };
            let t = vec![
                LinuxThrottleDeviceBuilder::default()
                    .major(i64::from(major))
                    .minor(i64::from(minor))
                    .rate(rate)
                    .build()
                    .expect("throttle"),
            ];
            let b = LinuxBlockIoBuilder::default();
            r.block_io(
                match key {
                    IoKey::ReadBps => b.throttle_read_bps_device(t),
                    IoKey::WriteBps => b.throttle_write_bps_device(t),
                    IoKey::ReadIops => b.throttle_read_iops_device(t),
                    IoKey::WriteIops => b.throttle_write_iops_device(t),
                }
                .build()
                .expect("blockIO"),
            )
        }
        SetLimit::Quota(q) => r.cpu(
            LinuxCpuBuilder::default()
                .quota(q as i64)
                .period(PERIOD)
                .build()
                .expect("cpu"),
        ),
    };
    r.build().expect("resources")
}

/// One device rule as OCI's `linux.resources.devices` holds it.
fn device_rule(r: &Rule) -> LinuxDeviceCgroup {
    let typ = match r.kind {
        None => LinuxDeviceType::A,
        Some(Kind::Char) => LinuxDeviceType::C,
        Some(Kind::Block) => LinuxDeviceType::B,
    };
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(r.allow)
        .typ(typ)
        .access(access_text(r.access));
    if let Some(m) = r.major {
        b = b.major(i64::from(m));
    }
    if let Some(m) = r.minor {
        b = b.minor(i64::from(m));
    }
    b.build().expect("device rule")
}

impl Sut {
    /// The case's cgroup, made by berth's manager.
    pub fn new() -> Sut {
        static CASE: AtomicU32 = AtomicU32::new(0);
        let case = format!(
            "berth-harness-{}-{}",
            std::process::id(),
            CASE.fetch_add(1, Ordering::Relaxed)
        );
        let sut = Sut {
            case,
            watched: hierarchies(),
            procs: BTreeMap::new(),
            step: None,
            prober: Prober::new(),
            roots: hierarchies()
                .into_iter()
                .filter(|w| w.v2)
                .map(|w| {
                    let on = subtree_control(&w.mount);
                    (w.mount, on)
                })
                .collect(),
        };
        sut.manager("")
            .create()
            .unwrap_or_else(|e| panic!("the case's cgroup: {e}"));
        sut
    }

    /// berth's paths for a case-relative path.
    pub fn paths(&self, rel: &str) -> CgroupPaths {
        let p = if rel.is_empty() {
            format!("/{}", self.case)
        } else {
            format!("/{}/{rel}", self.case)
        };
        resolve(Some(Path::new(&p)), "unused").unwrap_or_else(|e| panic!("resolve {p}: {e}"))
    }

    /// berth's cgroup manager for a case-relative path.
    pub fn manager(&self, rel: &str) -> Box<dyn Cgroup> {
        manager(&self.paths(rel))
    }

    /// The directory of a case-relative path in watched hierarchy `i`.
    pub fn dir(&self, i: usize, rel: &str) -> PathBuf {
        let base = self.watched[i].mount.join(&self.case);
        if rel.is_empty() { base } else { base.join(rel) }
    }

    /// The real pid of the model's process `n`.
    pub fn pid(&self, n: u32) -> Option<i32> {
        self.procs.get(&n).map(|c| c.id() as i32)
    }

    fn outcome(&self, rel: &str, r: Result<(), Error>) -> Outcome {
        let e = match r {
            Ok(()) => return Outcome::Ok,
            Err(e) => e,
        };
        let exists = self
            .watched
            .iter()
            .enumerate()
            .any(|(i, _)| self.dir(i, rel).is_dir());
        match &e {
            Error::Cgroup { source, .. } | Error::Io { source, .. } => {
                match source.raw_os_error() {
                    // The cgroup there, the file not: its controller is not enabled.
                    Some(libc::ENOENT) if exists => Outcome::NoSuchFile,
                    Some(libc::ENOENT) => Outcome::NoSuchCgroup,
                    Some(libc::EBUSY)
                        if matches!(
                            self.step,
                            Some(Transition::Remove(_) | Transition::Set(..))
                        ) =>
                    {
                        Outcome::Busy
                    }
                    Some(libc::ERANGE) => Outcome::OutOfRange,
                    Some(libc::EACCES) => Outcome::Denied,
                    Some(libc::EBUSY) => Outcome::InternalProcess,
                    Some(libc::EINVAL) => Outcome::Invalid,
                    Some(libc::EPERM) => Outcome::NotPermitted,
                    Some(libc::ENODEV) => Outcome::NoDevice,
                    _ => Outcome::Other(e.to_string()),
                }
            }
            Error::Other(m) if m.contains("is below linux.resources.memory.limit") => {
                Outcome::Invalid
            }
            Error::Other(m)
                if m.contains("has no weight file") || m.contains("needs cgroup v2") =>
            {
                Outcome::Unsupported
            }
            Error::Other(m) if m.contains("is not allowed") => Outcome::BadInput,
            Error::Other(m) if m.contains("controller not enabled") => {
                if exists {
                    Outcome::NoSuchFile
                } else {
                    Outcome::NoSuchCgroup
                }
            }
            _ => Outcome::Other(e.to_string()),
        }
    }

    fn spawn() -> Child {
        Command::new("/bin/busybox")
            .args(["sleep", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("a process (busybox-static)")
    }

    fn end(&mut self, n: u32) {
        if let Some(mut c) = self.procs.remove(&n) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Applies `t` to the runtime; returns what came of it.
    pub fn step(&mut self, t: &Transition) -> Outcome {
        self.step = Some(t.clone());
        match t {
            Transition::Make(p) => self.outcome(p, self.manager(p).create()),
            Transition::Add(n, p) => {
                let new = !self.procs.contains_key(n);
                if new {
                    self.procs.insert(*n, Self::spawn());
                }
                let pid = self.pid(*n).unwrap_or(0);
                let r = self.manager(p).add(pid);
                if r.is_err() && new {
                    // Placed in some hierarchies before one refused: back to
                    // every root first (a v1 freezer would hold its SIGKILL
                    // if it went into a frozen cgroup), then ended.
                    for w in &self.watched {
                        let _ = std::fs::write(w.mount.join("cgroup.procs"), pid.to_string());
                    }
                    self.end(*n);
                }
                self.outcome(p, r)
            }
            Transition::Set(p, l) => self.outcome(p, self.manager(p).set(&resources(*l))),
            Transition::Devices(p, rules) => {
                let res = LinuxResourcesBuilder::default()
                    .devices(rules.iter().map(device_rule).collect::<Vec<_>>())
                    .build()
                    .expect("resources");
                self.outcome(p, self.manager(p).set(&res))
            }
            Transition::Freeze(p) => self.outcome(p, self.manager(p).freeze()),
            Transition::Thaw(p) => self.outcome(p, self.manager(p).thaw()),
            Transition::Remove(p) => self.outcome(p, self.manager(p).remove()),
            Transition::Exit(n) => {
                self.end(*n);
                Outcome::Ok
            }
        }
    }

    /// Thaws, ends every process, removes the case's cgroups; returns what
    /// could not be done.
    pub fn clean(&mut self) -> Vec<String> {
        let m = self.manager("");
        let _ = m.thaw();
        for rel in super::strategies::PATHS {
            let _ = self.manager(rel).thaw();
        }
        for n in self.procs.keys().copied().collect::<Vec<_>>() {
            self.end(n);
        }
        let mut left = match m.remove() {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!("removing the case's cgroups: {e}")],
        };
        // The roots' subtree_control as they were.
        for (root, before) in &self.roots {
            for c in subtree_control(root).difference(before) {
                let f = root.join("cgroup.subtree_control");
                if let Err(e) = std::fs::write(&f, format!("-{}", name(*c, true))) {
                    left.push(format!("{}: -{}: {e}", f.display(), name(*c, true)));
                }
            }
        }
        left
    }
}

impl Default for Sut {
    fn default() -> Self {
        Sut::new()
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = self.clean();
    }
}

/// The cgroups state machine test.
pub struct CgMachine;

impl StateMachineTest for CgMachine {
    type SystemUnderTest = Sut;
    type Reference = CgRef;

    fn init_test(_ref_state: &CgState) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, ref_state: &CgState, t: Transition) -> Sut {
        let got = sut.step(&t);
        assertions::outcome(&t, ref_state.last.as_ref(), &got);
        sut
    }

    fn check_invariants(sut: &Sut, ref_state: &CgState) {
        assertions::state(sut, ref_state);
    }

    fn teardown(mut sut: Sut, _ref_state: CgState) {
        let left = sut.clean();
        assert!(left.is_empty(), "the case could not be cleaned: {left:?}");
        assertions::empty(&sut);
    }
}
