//! `exec`: a new process in a running container's namespaces and cgroup.
//!
//! The runtime joins the container's pid (and time) namespace for its children,
//! clones the child, which joins the others (user first, mount last), and moves it
//! into the container's cgroup before letting it go on; the child applies the
//! process (user, capabilities, the container's seccomp profile) and execs.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::cgroups;
use super::channel::{self, Message};
use super::create::{clone_raw, write_pid_file};
use super::error::{Error, Result};
use super::namespaces::{self, JOIN_ORDER, Plan};
use super::ops;
use super::process::Prepared;
use super::state::{Op, Store};

/// What `exec` is asked to do.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The container.
    pub id: String,
    /// The process to run.
    pub process: Process,
    /// Where to send the pty master.
    pub console_socket: Option<PathBuf>,
    /// Where to write the process's pid.
    pub pid_file: Option<PathBuf>,
    /// Return once started instead of waiting for the process.
    pub detach: bool,
    /// How many fds after stdio to pass on.
    pub preserve_fds: u32,
    /// When the process wants a terminal and no console socket is given, keep the
    /// pty master for the caller ([`spawn`] returns the socket it arrives on).
    pub own_terminal: bool,
}

/// A process started by [`spawn`].
#[derive(Debug)]
pub struct Spawned {
    /// Its host pid (a child of this process).
    pub pid: i32,
    /// With `own_terminal`: the socket the pty master arrives on.
    pub console: Option<UnixStream>,
}

/// The outcome of `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Detached: the process runs with this host pid.
    Started(i32),
    /// Waited: the process exited with this code (128+N for signal N).
    Exited(i32),
}

/// Runs `opts.process` in container `opts.id`: waits for it unless detached.
pub fn exec(store: &Store, opts: &ExecOptions) -> Result<ExecOutcome> {
    let s = spawn(store, opts)?;
    if opts.detach {
        return Ok(ExecOutcome::Started(s.pid));
    }
    super::signals::forward_to(s.pid);
    Ok(ExecOutcome::Exited(wait_exit_code(s.pid)))
}

/// Starts `opts.process` in container `opts.id` and returns once it runs.
pub fn spawn(store: &Store, opts: &ExecOptions) -> Result<Spawned> {
    let (init_pid, cgroup, spec) = {
        let c = ops::open(store, &opts.id)?;
        c.status.check(&opts.id, Op::Exec)?;
        (c.state.pid, c.state.cgroup.clone(), c.config()?)
        // The lock is released here: a long exec must not block kill or delete.
    };
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or_default());
    let mut files: Vec<(LinuxNamespaceType, File, PathBuf)> = Vec::new();
    for t in JOIN_ORDER {
        if plan.has(t) {
            let path = PathBuf::from(format!("/proc/{init_pid}/ns/{}", namespaces::proc_name(t)));
            files.push((t, namespaces::open(&path)?, path));
        }
    }
    let keep_master = opts.process.terminal() == Some(true) && opts.console_socket.is_none();
    if keep_master && !opts.own_terminal {
        return Err(Error::Other(
            "a terminal (-t) needs --console-socket".into(),
        ));
    }
    let prepared = Prepared::new(&opts.process, linux.seccomp().as_ref(), &store.bpf_cache())?;
    let (console, ours) = super::console::endpoints(opts.console_socket.as_deref(), keep_master)?;
    // pid and time namespaces apply to children: join them here.
    for (t, f, p) in &files {
        if matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
            namespaces::join(*t, f, p)?;
        }
    }
    let (parent_end, child_end) = channel::pair()?;
    // SAFETY: single-threaded; the child never returns.
    let pid = unsafe { clone_raw(0)? };
    if pid == 0 {
        // SAFETY: prctl with constants (see create::set_not_dumpable).
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        // SAFETY: the child's copy of the runtime's end of the channel.
        unsafe { libc::close(parent_end.raw_fd()) };
        let run = || -> Result<std::convert::Infallible> {
            for (t, f, p) in &files {
                if !matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
                    namespaces::join(*t, f, p)?;
                }
            }
            child_end.expect(Message::Proceed(0))?;
            nix::unistd::setsid().map_err(|e| Error::Sys {
                what: "setsid".into(),
                source: e,
            })?;
            if prepared.terminal {
                let sock = console
                    .as_ref()
                    .ok_or_else(|| Error::Other("terminal needs --console-socket".into()))?;
                let slave = super::console::create_and_send(sock)?;
                super::console::make_controlling(slave)?;
            }
            let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
                .map(|s| s.trim() != "deny")
                .unwrap_or(true);
            prepared.apply(setgroups_allowed)?;
            let exe = prepared.resolve_executable()?;
            child_end.send(&Message::Ready)?;
            Err(prepared.exec(&exe, 3 + opts.preserve_fds))
        };
        let Err(e) = run();
        child_end.fail(&e);
        // SAFETY: _exit in the child.
        unsafe { libc::_exit(127) }
    }
    drop(child_end);
    let guard = KillOnDrop(pid);
    cgroups::manager(&cgroup).add(pid)?;
    parent_end.send(&Message::Proceed(0))?;
    parent_end.expect(Message::Ready)?;
    std::mem::forget(guard);
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    Ok(Spawned { pid, console: ours })
}

/// Waits for a child and turns its end into a shell-style exit code.
pub fn wait_exit_code(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.0), None);
    }
}

/// A process for `exec ID ARGS…`: the container's process with these changes.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    /// argv
    pub args: Vec<String>,
    /// extra KEY=VALUE
    pub env: Vec<String>,
    /// working directory
    pub cwd: Option<PathBuf>,
    /// allocate a pty
    pub tty: bool,
    /// uid[:gid]
    pub user: Option<(u32, Option<u32>)>,
    /// extra capabilities
    pub caps: Vec<String>,
    /// set no_new_privs
    pub no_new_privs: bool,
}

/// Builds the exec process from the container's config and `a`.
pub fn process_from_args(store: &Store, id: &str, a: &ExecArgs) -> Result<Process> {
    let c = ops::open(store, id)?;
    let spec = c.config()?;
    let base = spec.process().clone().unwrap_or_default();
    let mut v = serde_json::to_value(&base).map_err(|e| Error::Other(e.to_string()))?;
    v["args"] = serde_json::json!(a.args);
    v["terminal"] = serde_json::json!(a.tty);
    let mut env: Vec<String> = base.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    v["env"] = serde_json::json!(env);
    if let Some(cwd) = &a.cwd {
        v["cwd"] = serde_json::json!(cwd);
    }
    if let Some((uid, gid)) = a.user {
        v["user"]["uid"] = serde_json::json!(uid);
        if let Some(g) = gid {
            v["user"]["gid"] = serde_json::json!(g);
        }
    }
    if a.no_new_privs {
        v["noNewPrivileges"] = serde_json::json!(true);
    }
    for cap in &a.caps {
        let cap = if cap.starts_with("CAP_") {
            cap.clone()
        } else {
            format!("CAP_{}", cap.to_ascii_uppercase())
        };
        for set in [
            "bounding",
            "effective",
            "permitted",
            "ambient",
            "inheritable",
        ] {
            if !v["capabilities"].is_object() {
                v["capabilities"] = serde_json::json!({});
            }
            let list = v["capabilities"][set]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut list: Vec<serde_json::Value> = list;
            if !list.iter().any(|x| x == &serde_json::json!(cap)) {
                list.push(serde_json::json!(cap));
            }
            v["capabilities"][set] = serde_json::Value::Array(list);
        }
    }
    serde_json::from_value(v).map_err(|e| Error::Other(format!("exec process: {e}")))
}
