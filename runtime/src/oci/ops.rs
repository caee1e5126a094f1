//! The lifecycle commands after `create`: start, state, kill, delete, pause,
//! resume, update, ps, list. Each locks the container, derives its status from the
//! kernel, and asks [`Status::check`] before acting.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Spec};

use super::cgroups::{self, Cgroup};
use super::create::state_json;
use super::error::{Error, IoContext, Result, SysContext};
use super::hooks;
use super::state::{Locked, OciState, Op, State, Status, Store};

/// A locked container with its state and derived status.
pub struct Container {
    /// The locked directory.
    pub dir: Locked,
    /// The saved state.
    pub state: State,
    /// The status, from the kernel.
    pub status: Status,
}

/// Loads and locks container `id`.
pub fn open(store: &Store, id: &str) -> Result<Container> {
    let dir = store.lock(id)?;
    let state = dir.load()?;
    let status = state.status(dir.dir());
    Ok(Container { dir, state, status })
}

impl Container {
    /// The config.json saved at create time.
    pub fn config(&self) -> Result<Spec> {
        let path = self.dir.dir().join("config.json");
        let data = fs::read(&path).io("reading", &path)?;
        super::spec::read_json(&path, &data)
    }

    fn cgroup(&self) -> Box<dyn Cgroup> {
        cgroups::manager(&self.state.cgroup)
    }

    /// The runtime-spec state.
    pub fn oci_state(&self) -> OciState {
        self.state.oci(self.status)
    }
}

/// `state`: the runtime-spec state of a container.
pub fn state(store: &Store, id: &str) -> Result<OciState> {
    Ok(open(store, id)?.oci_state())
}

/// `start`: lets a created container's init exec the user process.
pub fn start(store: &Store, id: &str) -> Result<()> {
    let c = open(store, id)?;
    c.status.check(id, Op::Start)?;
    let fifo = c.dir.fifo();
    let f: File = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys(|| format!("opening {}", fifo.display()))?
    .into();
    // The init blocks opening the fifo for writing until now; wait for its byte,
    // watching that it is still alive.
    let mut buf = [0u8; 1];
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(100u16));
        if matches!(n, Ok(n) if n > 0) {
            match (&f).read(&mut buf) {
                Ok(1) => break,
                Ok(_) | Err(_) if !c.state.init_alive() => {
                    return Err(Error::Other(format!(
                        "container {id:?}: its init exited before start"
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        } else if !c.state.init_alive() {
            return Err(Error::Other(format!(
                "container {id:?}: its init exited before start"
            )));
        }
    }
    fs::remove_file(&fifo).io("removing", &fifo)?;
    if let Ok(spec) = c.config()
        && let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone())
    {
        let json = state_json(&c.state, Status::Running);
        for e in hooks::run_all("poststart", &h, &json) {
            eprintln!("warning: {e}");
        }
    }
    Ok(())
}

/// Parses a signal as runc does: a number, or a name with or without "SIG".
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Other(format!("invalid signal {s:?}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+')
                .parse()
                .map_err(|_| Error::Other(format!("invalid signal {s:?}")))?
        };
        return Ok(libc::SIGRTMIN() + off);
    }
    name.parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::Other(format!("invalid signal {s:?}")))
}

fn send_signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill with a pid and any signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::ESRCH {
            return Err(Error::Sys {
                what: format!("sending signal {sig} to {pid}"),
                source: e,
            });
        }
    }
    Ok(())
}

/// `kill`: signals the init, or with `all` every process of the container.
pub fn kill_container(store: &Store, id: &str, sig: i32, all: bool) -> Result<()> {
    let c = open(store, id)?;
    if !(all && c.status == Status::Stopped) {
        c.status.check(id, Op::Kill)?;
    }
    if all {
        let cg = c.cgroup();
        for pid in cg.pids()? {
            send_signal(pid, sig)?;
        }
        if c.status == Status::Paused && sig == libc::SIGKILL {
            let _ = cg.thaw();
        }
        return Ok(());
    }
    send_signal(c.state.pid, sig)
}

/// Waits until no process is left in the cgroup (and the init is gone).
fn wait_empty(cg: &dyn Cgroup, st: &State, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut delay = Duration::from_micros(200);
    loop {
        let empty = cg.pids().map(|p| p.is_empty()).unwrap_or(true) && !st.init_alive();
        if empty {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// `delete`: removes a stopped (or created) container; `force` kills a running one.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<()> {
    let c = match open(store, id) {
        Ok(c) => c,
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    if !force {
        c.status.check(id, Op::Delete)?;
    }
    let cg = c.cgroup();
    if c.status != Status::Stopped {
        for pid in cg.pids().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if c.state.init_alive() {
            let _ = kill(Pid::from_raw(c.state.pid), Signal::SIGKILL);
        }
        if c.status == Status::Paused {
            let _ = cg.thaw();
        }
    } else {
        // A stopped container may still have processes (its init died, they did not).
        for pid in cg.pids().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if !wait_empty(cg.as_ref(), &c.state, Duration::from_secs(10)) {
        return Err(Error::Other(format!(
            "container {id:?}: processes still alive after SIGKILL"
        )));
    }
    cg.remove()?;
    let spec = c.config().ok();
    let json = state_json(&c.state, Status::Stopped);
    c.dir.remove()?;
    if let Some(h) = spec.and_then(|s| s.hooks().as_ref().and_then(|h| h.poststop().clone())) {
        for e in hooks::run_all("poststop", &h, &json) {
            eprintln!("warning: {e}");
        }
    }
    Ok(())
}

/// `pause`: freezes every process of a running container.
pub fn pause(store: &Store, id: &str) -> Result<()> {
    let c = open(store, id)?;
    c.status.check(id, Op::Pause)?;
    c.cgroup().freeze()
}

/// `resume`: thaws a paused container.
pub fn resume(store: &Store, id: &str) -> Result<()> {
    let c = open(store, id)?;
    c.status.check(id, Op::Resume)?;
    c.cgroup().thaw()
}

/// `update`: applies new limits.
pub fn update(store: &Store, id: &str, res: &LinuxResources) -> Result<()> {
    let c = open(store, id)?;
    c.status.check(id, Op::Update)?;
    c.cgroup().set(res)
}

/// `ps`: the host pids of every process of the container.
pub fn pids(store: &Store, id: &str) -> Result<Vec<i32>> {
    let c = open(store, id)?;
    if c.status == Status::Stopped {
        return Ok(Vec::new());
    }
    c.cgroup().pids()
}

/// `list`: the state of every container (unreadable ones are skipped).
pub fn list(store: &Store) -> Result<Vec<OciState>> {
    let mut out = Vec::new();
    for id in store.ids()? {
        let dir = store.dir(&id);
        let Ok(data) = fs::read(dir.join("state.json")) else {
            continue;
        };
        let Ok(st) = serde_json::from_slice::<State>(&data) else {
            continue;
        };
        let status = st.status(&dir);
        out.push(st.oci(status));
    }
    Ok(out)
}
