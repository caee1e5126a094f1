//! `create`: from a bundle to a container whose init waits for `start`.
//!
//! The sequence (R = runtime, S1 = stage 1, I = the container's init):
//!
//! ```text
//!  R: load + validate config.json, compile seccomp, make state dir + exec.fifo
//!  R ──clone──▶ S1   (not dumpable; still in the runtime's namespaces)
//!               S1: setns(joined namespaces: user first)
//!               S1: unshare(NEWUSER) ── MapIds ──▶ R writes uid_map/gid_map ── IdsMapped ──▶ S1
//!               S1: unshare(other new namespaces; pid and time apply to children)
//!               S1 ──clone(CLONE_PARENT)──▶ I   (pid 1 of a new pid namespace; R's child)
//!               S1 ── InitPid(pid) ──▶ R ; S1 exits
//!  R: cgroup create, add I, set limits ── Proceed(pid) ──▶ I
//!                                           I: unshare(NEWCGROUP), hostname, mounts, devices
//!  R ◀── RunHooks (only with prestart/createRuntime hooks) ── I
//!  R: prestart + createRuntime hooks ── HooksDone ──▶ I
//!                                           I: createContainer hooks, pivot_root, sysctl,
//!                                              masked/readonly paths, console, user, caps,
//!                                              seccomp, executable lookup
//!  R ◀── Ready ── I ; R writes state + pid file and exits
//!                                           I: open exec.fifo for writing (blocks)
//!  start: reads exec.fifo ─────────────────▶ I: startContainer hooks, exec
//! ```
//!
//! Any failure before Ready is reported to R as `Failed(msg)`; R then kills what it
//! started, removes the cgroup and the state directory, and exits with the message:
//! nothing is left behind.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::cgroups::{self, CgroupPaths};
use super::channel::{self, Channel, Message};
use super::error::{Error, IoContext, Result, SysContext};
use super::hooks;
use super::mounts::{self, MountContext};
use super::namespaces::{self, Plan};
use super::process::Prepared;
use super::spec::{self, Bundle};
use super::state::{self, Locked, OciState, State, Status, Store};
use super::time;

/// What `create` (and `run`) are asked to do.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master, when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// How many fds after stdio to pass to the container.
    pub preserve_fds: u32,
    /// When the process wants a terminal and no console socket is given, keep the
    /// pty master for the caller instead of failing (`run` in the foreground).
    pub own_terminal: bool,
    /// The caller's descriptors the container's processes must close at once
    /// (its locks: a waiting init would otherwise hold them until it execs).
    pub close_in_child: Vec<std::os::fd::RawFd>,
}

/// A created container.
#[derive(Debug)]
pub struct Created {
    /// Host pid of the init.
    pub pid: i32,
    /// The locked state directory (released when dropped).
    pub dir: Locked,
    /// With `own_terminal`: the socket the pty master arrives on.
    pub console: Option<UnixStream>,
}

/// Everything the child stages need, built before cloning.
struct Setup {
    id: String,
    bundle: Bundle,
    plan: Plan,
    join_files: Vec<(LinuxNamespaceType, File, PathBuf)>,
    process: Prepared,
    cgroup: CgroupPaths,
    fifo: PathBuf,
    console: Option<UnixStream>,
    no_pivot: bool,
    preserve_fds: u32,
    chan: Channel,
    /// Runtime-side descriptors the children must not keep: the state lock and
    /// the runtime's end of the channel.
    close_in_child: Vec<std::os::fd::RawFd>,
}

/// Removes what a failed create made, in reverse order, on every early return.
struct Undo<'a> {
    dir: Option<Locked>,
    cgroup: Option<&'a CgroupPaths>,
    pids: Vec<i32>,
}

impl Undo<'_> {
    fn disarm(&mut self) -> Locked {
        self.cgroup = None;
        self.pids.clear();
        self.dir.take().expect("undo disarmed twice")
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(*pid), None);
        }
        if let Some(paths) = self.cgroup {
            let cg = cgroups::manager(paths);
            if let Ok(pids) = cg.pids() {
                for p in pids {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            let _ = cg.remove();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

/// Creates a container; its init waits on the exec fifo when this returns.
pub fn create(store: &Store, opts: &CreateOptions) -> Result<Created> {
    state::validate_id(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    crate::profile::mark("runtime: config.json loaded");
    let spec = &bundle.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or_default());
    let mut join_files = Vec::new();
    for (t, path) in &plan.join {
        join_files.push((*t, namespaces::open(path)?, path.clone()));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Other("config.json: process: missing".into()))?;
    let keep_master = process.terminal() == Some(true) && opts.console_socket.is_none();
    if keep_master && !opts.own_terminal {
        return Err(Error::Other(
            "process.terminal is true: --console-socket is required".into(),
        ));
    }
    let prepared = Prepared::new(process, linux.seccomp().as_ref(), &store.bpf_cache())?;
    crate::profile::mark("runtime: process prepared (seccomp compiled)");
    let cgroup = cgroups::resolve(linux.cgroups_path().as_deref(), &opts.id)?;
    let (console, ours) = super::console::endpoints(opts.console_socket.as_deref(), keep_master)?;

    let dir = store.create(&opts.id)?;
    let mut undo = Undo {
        dir: Some(dir),
        cgroup: None,
        pids: Vec::new(),
    };
    let dir = undo.dir.as_ref().expect("just set");
    let fifo = dir.fifo();
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
        .sys(|| format!("mkfifo {}", fifo.display()))?;
    fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622)).io("chmod", &fifo)?;
    if let Some(uid) = host_root_id(linux.uid_mappings().as_deref()) {
        let gid = host_root_id(linux.gid_mappings().as_deref()).unwrap_or(0);
        nix::unistd::chown(&fifo, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .sys(|| "chown exec.fifo".into())?;
    }
    let mut st = State {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: time::now_rfc3339_nanos(),
        owner: String::new(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        status: Status::Creating,
        cgroup: cgroup.clone(),
    };
    dir.save(&st)?;
    crate::fault::point("create.after-state")?;
    // Later commands (exec, delete's poststop hooks) need the config as it was.
    let config = serde_json::to_vec(spec).map_err(|e| Error::Other(e.to_string()))?;
    state::write_atomic(&dir.dir().join("config.json"), &config)?;
    crate::profile::mark("runtime: state written");

    let (parent_end, child_end) = channel::pair()?;
    let setup = Setup {
        id: opts.id.clone(),
        bundle: bundle.clone(),
        plan,
        join_files,
        process: prepared,
        cgroup: cgroup.clone(),
        fifo: fifo.clone(),
        console,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        chan: child_end,
        close_in_child: [dir.lock_fd(), parent_end.raw_fd()]
            .into_iter()
            .chain(opts.close_in_child.iter().copied())
            .collect(),
    };
    undo.cgroup = Some(&cgroup);
    // SAFETY: this process is single-threaded (the rule of DESIGN.md), so the child
    // may run arbitrary code; it never returns into the caller.
    let stage1 = unsafe { clone_raw(0)? };
    if stage1 == 0 {
        stage1_main(setup);
    }
    drop(setup);
    undo.pids.push(stage1);
    let pid = talk_to_stage1(&parent_end, stage1, &linux)?;
    let _ = waitpid(Pid::from_raw(stage1), None);
    undo.pids = vec![pid];
    crate::profile::mark("runtime: init cloned");
    crate::fault::point("create.after-clone")?;

    let cg = cgroups::manager(&cgroup);
    cg.create()?;
    cg.add(pid)?;
    crate::profile::mark("runtime: cgroup made, init in it");
    crate::fault::point("create.after-cgroup")?;
    let mut resources = linux.resources().clone().unwrap_or_default();
    {
        let mut rules = resources.devices().clone().unwrap_or_default();
        rules.extend(mounts::default_device_rules());
        rules.extend(device_rules_for(
            linux.devices().as_deref().unwrap_or_default(),
        ));
        resources.set_devices(Some(rules));
    }
    cg.set(&resources)?;
    crate::profile::mark("runtime: limits and device rules set");
    crate::fault::point("create.after-limits")?;

    parent_end.send(&Message::Proceed(pid))?;
    st.pid = pid;
    st.pid_start = state::process_start_time(pid).unwrap_or(0);
    loop {
        match parent_end.recv()? {
            Message::RunHooks => {
                let json = state_json(&st, Status::Creating);
                let h = spec.hooks().clone().unwrap_or_default();
                hooks::run(
                    "prestart",
                    h.prestart().as_deref().unwrap_or_default(),
                    &json,
                )?;
                hooks::run(
                    "createRuntime",
                    h.create_runtime().as_deref().unwrap_or_default(),
                    &json,
                )?;
                parent_end.send(&Message::HooksDone)?;
            }
            Message::Ready => break,
            Message::Failed(why) => return Err(Error::Init(why)),
            other => return Err(Error::Other(format!("init channel: unexpected {other:?}"))),
        }
    }
    st.status = Status::Created;
    let dir = undo.dir.as_ref().expect("still armed");
    dir.save(&st)?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    Ok(Created {
        pid,
        dir: undo.disarm(),
        console: ours,
    })
}

/// The host uid that maps to root in the container, if it has mappings.
fn host_root_id(maps: Option<&[oci_spec::runtime::LinuxIdMapping]>) -> Option<u32> {
    maps?
        .iter()
        .find(|m| m.container_id() == 0)
        .map(|m| m.host_id())
}

/// Device cgroup rules allowing the nodes of `linux.devices`.
fn device_rules_for(
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    devices
        .iter()
        .filter_map(|d| {
            oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(d.typ())
                .major(d.major())
                .minor(d.minor())
                .access("rwm")
                .build()
                .ok()
        })
        .collect()
}

/// The state JSON hooks receive on stdin.
pub fn state_json(st: &State, status: Status) -> Vec<u8> {
    let oci: OciState = st.oci(status);
    serde_json::to_vec(&oci).unwrap_or_default()
}

/// Writes a pid file as runc does: to a temporary name, then renamed.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().io("cwd", ".")?.join(path)
    };
    state::write_atomic(&path, pid.to_string().as_bytes())
}

fn talk_to_stage1(chan: &Channel, stage1: i32, linux: &oci_spec::runtime::Linux) -> Result<i32> {
    loop {
        match chan.recv()? {
            Message::MapIds => {
                write_id_map(
                    stage1,
                    "uid_map",
                    linux.uid_mappings().as_deref().unwrap_or_default(),
                )?;
                write_id_map(
                    stage1,
                    "gid_map",
                    linux.gid_mappings().as_deref().unwrap_or_default(),
                )?;
                chan.send(&Message::IdsMapped)?;
            }
            Message::InitPid(pid) => return Ok(pid),
            Message::Failed(why) => return Err(Error::Init(why)),
            other => return Err(Error::Other(format!("init channel: unexpected {other:?}"))),
        }
    }
}

fn write_id_map(pid: i32, file: &str, maps: &[oci_spec::runtime::LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    fs::write(&path, text.as_bytes()).map_err(|e| {
        Error::Other(format!(
            "linux.{}: writing {path}: {e}",
            if file == "uid_map" {
                "uidMappings"
            } else {
                "gidMappings"
            }
        ))
    })
}

/// fork(2) through the raw clone system call, with extra `flags` (CLONE_PARENT).
///
/// # Safety
/// The caller must be single-threaded, and the child must end with `_exit` or exec.
pub unsafe fn clone_raw(flags: libc::c_ulong) -> Result<i32> {
    // SAFETY: no stack pointer: the child continues on a copy of this stack, as fork does.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(Error::Sys {
            what: "clone".into(),
            source: Errno::last(),
        });
    }
    Ok(r as i32)
}

/// Ends a child: reports `err` to the runtime and exits without running any of the
/// runtime's destructors or atexit handlers.
fn die(chan: &Channel, err: Error) -> ! {
    chan.fail(&err);
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(1) }
}

fn set_not_dumpable() {
    // SAFETY: prctl with constant arguments. A non-dumpable process's /proc/PID/exe
    // cannot be opened by the container (CVE-2019-5736); exec resets it.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Closes every descriptor the container's processes do not need (the
/// caller's locks and pipes would otherwise stay open in an init that waits to
/// be started): all but stdio, the preserved ones, the channel, the console
/// socket and the namespaces to join.
fn close_others(setup: &Setup) {
    let first = 3 + setup.preserve_fds as i32;
    let mut keep: Vec<i32> = setup
        .join_files
        .iter()
        .map(|(_, f, _)| f.as_raw_fd())
        .chain(setup.console.as_ref().map(|c| c.as_raw_fd()))
        .chain([setup.chan.raw_fd()])
        .chain(crate::profile::raw_fd())
        .filter(|fd| *fd >= first)
        .collect();
    keep.sort_unstable();
    let mut lo = first;
    for k in keep.into_iter().chain([i32::MAX]) {
        if k > lo {
            let hi = if k == i32::MAX {
                u32::MAX
            } else {
                (k - 1) as u32
            };
            // SAFETY: close_range(2) on this process's own descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi, 0u32) };
        }
        lo = k.saturating_add(1);
    }
}

fn stage1_main(setup: Setup) -> ! {
    set_not_dumpable();
    for fd in &setup.close_in_child {
        // SAFETY: closing this process's copies of descriptors it does not use.
        unsafe { libc::close(*fd) };
    }
    close_others(&setup);
    if let Err(e) = stage1(&setup) {
        die(&setup.chan, e);
    }
    // SAFETY: see die().
    unsafe { libc::_exit(0) }
}

fn stage1(setup: &Setup) -> Result<()> {
    for (t, file, path) in &setup.join_files {
        namespaces::join(*t, file, path)?;
    }
    if setup.plan.is_new(LinuxNamespaceType::User) {
        unshare(CloneFlags::CLONE_NEWUSER).sys(|| "unshare user namespace".into())?;
        setup.chan.send(&Message::MapIds)?;
        setup.chan.expect(Message::IdsMapped)?;
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .sys(|| "becoming gid 0 in the user namespace".into())?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .sys(|| "becoming uid 0 in the user namespace".into())?;
    }
    let mut flags = CloneFlags::empty();
    for t in &setup.plan.new {
        if !matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Cgroup) {
            flags |= namespaces::flag(*t);
        }
    }
    if !flags.is_empty() {
        unshare(flags).sys(|| format!("unshare namespaces {flags:?}"))?;
    }
    crate::profile::mark("stage1: namespaces made");
    if setup.plan.is_new(LinuxNamespaceType::Time) {
        write_time_offsets(&setup.bundle.spec)?;
    }
    // SAFETY: single-threaded; the child runs init_main, which never returns.
    let pid = unsafe { clone_raw(libc::CLONE_PARENT as libc::c_ulong)? };
    if pid == 0 {
        init_main(setup);
    }
    setup.chan.send(&Message::InitPid(pid))
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        fs::write("/proc/self/timens_offsets", text).io("writing", "/proc/self/timens_offsets")?;
    }
    Ok(())
}

/// Set in the init once it told the runtime it is ready: errors after that have
/// no runtime to report to, and go to the container's stderr.
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init_main(setup: &Setup) -> ! {
    set_not_dumpable();
    match init(setup) {
        Ok(never) => match never {},
        Err(e) => {
            if READY_SENT.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!("berth-runc init: {e}");
            }
            die(&setup.chan, e)
        }
    }
}

fn init(setup: &Setup) -> Result<std::convert::Infallible> {
    let chan = &setup.chan;
    let pid = match chan.recv()? {
        Message::Proceed(pid) => pid,
        Message::Failed(why) => return Err(Error::Init(why)),
        other => return Err(Error::Other(format!("init channel: unexpected {other:?}"))),
    };
    crate::profile::mark("init: told to proceed");
    nix::unistd::setsid().sys(|| "setsid".into())?;
    let spec = &setup.bundle.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    if setup.plan.is_new(LinuxNamespaceType::Cgroup) {
        unshare(CloneFlags::CLONE_NEWCGROUP).sys(|| "unshare cgroup namespace".into())?;
    }
    if setup.plan.is_new(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).sys(|| format!("hostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            set_domainname(d)?;
        }
    }
    // Held across pivot_root; reopened for writing through /proc once set up.
    let fifo = nix::fcntl::open(&setup.fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .sys(|| format!("opening {}", setup.fifo.display()))?;

    let mount_ns_joined = setup
        .join_files
        .iter()
        .any(|(t, _, _)| *t == LinuxNamespaceType::Mount);
    let rootfs = &setup.bundle.rootfs;
    let mounts_list = spec.mounts().clone().unwrap_or_default();
    let propagation = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|p| !p.is_empty())
        .and_then(mounts::propagation_flag);
    let ctx = MountContext {
        rootfs,
        bundle: &setup.bundle.dir,
        userns: setup.plan.has(LinuxNamespaceType::User),
        cgroupns: setup.plan.has(LinuxNamespaceType::Cgroup),
        cgroup: &setup.cgroup,
    };
    if !mount_ns_joined {
        mounts::prepare_root(rootfs, propagation)?;
        let root = File::open(rootfs).io("opening rootfs", rootfs)?;
        for m in &mounts_list {
            mounts::mount_entry(&ctx, &root, m)?;
        }
        let dev_is_bound = mounts_list.iter().any(|m| {
            m.destination() == Path::new("/dev")
                && m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        });
        if !dev_is_bound {
            mounts::create_devices(&ctx, &root, linux.devices().as_deref().unwrap_or_default())?;
            mounts::dev_links(&root)?;
        }
        crate::profile::mark("init: mounts and devices made");
    }
    let hooks_cfg = spec.hooks().clone().unwrap_or_default();
    if hooks_cfg.prestart().as_ref().is_some_and(|h| !h.is_empty())
        || hooks_cfg
            .create_runtime()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
    {
        chan.send(&Message::RunHooks)?;
        chan.expect(Message::HooksDone)?;
    }
    let st = hook_state(setup, pid, Status::Creating);
    hooks::run(
        "createContainer",
        hooks_cfg.create_container().as_deref().unwrap_or_default(),
        &st,
    )?;
    if !mount_ns_joined {
        mounts::enter_root(rootfs, setup.no_pivot)?;
        crate::profile::mark("init: pivot_root");
        for (k, v) in linux.sysctl().clone().unwrap_or_default() {
            let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            fs::write(&path, v.as_bytes())
                .map_err(|e| Error::Other(format!("linux.sysctl.{k} = {v:?}: {e}")))?;
        }
        mounts::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
        mounts::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
        let readonly = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        mounts::finish_root(propagation, readonly)?;
        crate::profile::mark("init: sysctls, masked and read-only paths");
    }
    if setup.process.terminal {
        let sock = setup
            .console
            .as_ref()
            .ok_or_else(|| Error::Other("process.terminal needs --console-socket".into()))?;
        let slave = super::console::create_and_send(sock)?;
        bind_console(&slave);
        super::console::make_controlling(slave)?;
    }
    let setgroups_allowed = fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);
    setup.process.apply(setgroups_allowed)?;
    let exe = setup.process.resolve_executable()?;
    crate::profile::mark("init: capabilities, user and seccomp applied");
    chan.send(&Message::Ready)?;
    READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);

    // Wait for `start`: opening the fifo for writing blocks until it is opened for reading.
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let wfd: OwnedFd = nix::fcntl::open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys(|| "opening exec.fifo (is /proc mounted in the container?)".into())?;
    nix::unistd::write(&wfd, b"0").sys(|| "writing exec.fifo".into())?;
    drop(wfd);
    drop(fifo);
    crate::profile::mark("init: started");
    hooks::run(
        "startContainer",
        hooks_cfg.start_container().as_deref().unwrap_or_default(),
        &hook_state(setup, pid, Status::Created),
    )?;
    crate::profile::mark("init: exec");
    Err(setup.process.exec(&exe, 3 + setup.preserve_fds))
}

/// The state JSON the in-container hooks receive.
fn hook_state(setup: &Setup, pid: i32, status: Status) -> Vec<u8> {
    let st = OciState {
        oci_version: state::OCI_VERSION.into(),
        id: setup.id.clone(),
        pid,
        status,
        bundle: setup.bundle.dir.clone(),
        rootfs: setup.bundle.rootfs.clone(),
        created: String::new(),
        owner: String::new(),
        annotations: setup
            .bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    };
    serde_json::to_vec(&st).unwrap_or_default()
}

/// Binds the pty slave over /dev/console, as runc does.
fn bind_console(slave: &OwnedFd) {
    let src = format!("/proc/self/fd/{}", slave.as_raw_fd());
    if let Ok(real) = fs::read_link(&src) {
        if !Path::new("/dev/console").exists() {
            let _ = File::create("/dev/console");
        }
        let _ = nix::mount::mount(
            Some(&real),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        );
    }
}

fn set_domainname(d: &str) -> Result<()> {
    // SAFETY: a valid buffer and its length.
    let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
    Errno::result(r)
        .map(drop)
        .sys(|| format!("domainname {d:?}"))
}
