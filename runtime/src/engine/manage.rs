//! Working with running containers: `exec`, `pause`/`unpause`, `restart`, `top`
//! and `stats`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::container::Container;
use super::{Engine, Error, Result};
use crate::oci::cgroups::{self, Usage};
use crate::oci::exec::{ExecOptions, spawn, wait_exit_code};
use crate::oci::ops;

/// What `berth exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command.
    pub args: Vec<String>,
    /// `-e KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u user[:group]`.
    pub user: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-d`.
    pub detach: bool,
    /// `--privileged`: every capability berth has (the container's seccomp
    /// filter stays, as Docker's does).
    pub privileged: bool,
}

/// The container `what`, which must be running (and not paused).
fn running(e: &Engine, what: &str) -> Result<Container> {
    let c = e.containers.resolve(what)?;
    if !c.state.init_running() {
        return Err(Error::State {
            id: c.id[..12].to_string(),
            msg: "is not running".into(),
        });
    }
    Ok(c)
}

/// `berth exec`: runs a command in a running container with its namespaces,
/// cgroup, capabilities and seccomp filter; returns its exit code (0 with `-d`).
pub fn exec(e: &Engine, what: &str, r: &ExecRequest) -> Result<i32> {
    let c = running(e, what)?;
    if c.state.paused {
        return Err(Error::State {
            id: c.id[..12].to_string(),
            msg: "is paused: unpause it first".into(),
        });
    }
    if r.args.is_empty() {
        return Err(Error::Flag("exec".into(), "give a command to run".into()));
    }
    let spec = ops::open(&e.oci, &c.id)?.config()?;
    let base = spec.process().clone().unwrap_or_default();
    let mut p = serde_json::to_value(&base).map_err(|err| Error::State {
        id: c.id.clone(),
        msg: err.to_string(),
    })?;
    let tty = r.tty && !r.detach;
    p["args"] = json!(r.args);
    p["terminal"] = json!(tty);
    // --init's wrapper is the container's PID 1, not part of an exec'd command.
    let env: Vec<String> = base.env().clone().unwrap_or_default();
    p["env"] = json!(super::config::merge_env(&env, &r.env));
    if let Some(w) = &r.workdir {
        if !w.starts_with('/') {
            return Err(Error::Flag(
                format!("-w {w:?}"),
                "the working directory must be absolute".into(),
            ));
        }
        p["cwd"] = json!(w);
    }
    if let Some(u) = &r.user {
        let snap = e.images.snapshots().get(&c.id)?;
        let (uid, gid, extra) = super::config::resolve_user(&snap.rootfs(), u)?;
        p["user"] = json!({"uid": uid, "gid": gid, "additionalGids": extra});
    }
    if r.privileged {
        let all = super::config::all_caps();
        p["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    }
    let process = serde_json::from_value(p).map_err(|err| Error::State {
        id: c.id.clone(),
        msg: format!("exec process: {err}"),
    })?;
    let opts = ExecOptions {
        id: c.id.clone(),
        process,
        console_socket: None,
        pid_file: None,
        detach: r.detach,
        preserve_fds: 0,
        own_terminal: tty,
    };
    let spawned = if r.detach {
        super::run::with_stdio_null(&[0, 1, 2], || spawn(&e.oci, &opts))?
    } else if r.interactive || tty {
        spawn(&e.oci, &opts)
    } else {
        super::run::with_stdio_null(&[0], || spawn(&e.oci, &opts))?
    }?;
    if r.detach {
        return Ok(0);
    }
    crate::oci::signals::forward_to(spawned.pid);
    if let Some(sock) = &spawned.console {
        crate::tty::proxy(crate::tty::recv_master(sock)?, r.interactive);
    }
    Ok(wait_exit_code(spawned.pid))
}

/// `berth pause` / `unpause`: freezes or thaws every process of the container.
pub fn pause(e: &Engine, what: &str, freeze: bool) -> Result<()> {
    let found = running(e, what)?;
    let _lock = e.containers.lock(&found.id)?;
    let mut c = e.containers.load(&found.id)?;
    match (freeze, c.state.paused) {
        (true, true) => {
            return Err(Error::State {
                id: c.id[..12].to_string(),
                msg: "is already paused".into(),
            });
        }
        (false, false) => {
            return Err(Error::State {
                id: c.id[..12].to_string(),
                msg: "is not paused".into(),
            });
        }
        (true, false) => ops::pause(&e.oci, &c.id)?,
        (false, true) => ops::resume(&e.oci, &c.id)?,
    }
    c.state.paused = freeze;
    e.containers.save(&c)
}

/// One row of `berth top`: a process of the container.
#[derive(Debug, Clone)]
pub struct Process {
    /// Owner's uid.
    pub uid: u32,
    /// Host pid.
    pub pid: i32,
    /// Parent's host pid.
    pub ppid: i32,
    /// Started, in seconds after boot.
    pub start: f64,
    /// CPU time used, seconds.
    pub cpu: f64,
    /// Its command line.
    pub cmd: String,
}

/// `berth top`: the container's processes, from /proc (host pids, as Docker shows).
pub fn top(e: &Engine, what: &str) -> Result<Vec<Process>> {
    let c = running(e, what)?;
    let tick = 100.0; // USER_HZ on Linux
    let mut out = Vec::new();
    for pid in ops::pids(&e.oci, &c.id)? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) in parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = after.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut cmd = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if cmd.is_empty() {
            let name = stat
                .find('(')
                .and_then(|a| stat.rfind(')').map(|b| &stat[a + 1..b]))
                .unwrap_or("?");
            cmd = format!("[{name}]");
        }
        out.push(Process {
            uid,
            pid,
            ppid: num(1) as i32,
            start: num(19) / tick,
            cpu: (num(11) + num(12)) / tick,
            cmd,
        });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// A container's resource use, as `berth stats` shows it.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// CPU use over the sample, in percent of one CPU (100% = one CPU busy).
    pub cpu_percent: f64,
    /// Memory in use (without the page cache's inactive files), bytes.
    pub mem_usage: u64,
    /// Memory limit (the host's memory without one), bytes.
    pub mem_limit: u64,
    /// Network bytes received and sent (all interfaces but loopback).
    pub net: (u64, u64),
    /// Bytes read from and written to block devices.
    pub block: (u64, u64),
    /// Processes.
    pub pids: u64,
}

/// Samples: the cgroup's usage now and the network counters of its namespace.
fn sample(e: &Engine, c: &Container) -> Result<(Usage, (u64, u64), Instant)> {
    let paths = ops::open(&e.oci, &c.id)?.state.cgroup;
    let u = cgroups::usage(&paths);
    Ok((u, net_bytes(c.state.pid), Instant::now()))
}

/// Received and sent bytes of every interface but `lo` in `pid`'s network namespace.
fn net_bytes(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut rx_tx = (0, 0);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        rx_tx.0 += f.first().copied().unwrap_or(0);
        rx_tx.1 += f.get(8).copied().unwrap_or(0);
    }
    rx_tx
}

/// The host's memory, bytes (the limit shown for a container without one).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `berth stats`: each running container's use over `interval`.
pub fn stats(e: &Engine, which: &[String], interval: Duration) -> Result<Vec<Stats>> {
    let containers: Vec<Container> = if which.is_empty() {
        e.containers
            .list()?
            .into_iter()
            .filter(|c| c.state.init_running())
            .collect()
    } else {
        which
            .iter()
            .map(|w| running(e, w))
            .collect::<Result<Vec<_>>>()?
    };
    let first: Vec<_> = containers.iter().map(|c| sample(e, c).ok()).collect();
    std::thread::sleep(interval);
    let host_mem = host_memory();
    let mut out = Vec::new();
    for (c, before) in containers.iter().zip(first) {
        let (Some(before), Ok(after)) = (before, sample(e, c)) else {
            continue;
        };
        let (u0, _, t0) = before;
        let (u1, net, t1) = after;
        let wall = t1.duration_since(t0).as_nanos().max(1) as f64;
        let cpu = u1.cpu_ns.saturating_sub(u0.cpu_ns) as f64 / wall * 100.0;
        out.push(Stats {
            id: c.id.clone(),
            name: c.name.clone(),
            cpu_percent: cpu,
            mem_usage: u1.memory,
            mem_limit: u1
                .memory_limit
                .filter(|l| *l < host_mem)
                .unwrap_or(host_mem),
            net,
            block: (u1.block_read, u1.block_write),
            pids: u1.pids,
        });
    }
    Ok(out)
}

/// `berth restart`: stop (SIGTERM, then SIGKILL after `timeout`) and start
/// again, detached, with the monitor `exe`.
pub fn restart(e: &Engine, exe: &std::path::Path, what: &str, timeout: Duration) -> Result<String> {
    let c = e.containers.resolve(what)?;
    super::monitor::stop(e, &c.id, timeout)?;
    super::monitor::start_detached(e, exe, &c.id, false)
}
