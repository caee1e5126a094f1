//! The monitor: one small process per detached container, as Podman's conmon.
//!
//! `berth run -d` (and `start` without `-a`) starts `berth monitor ID` — the same
//! binary, a fresh single-threaded process — and waits only until the monitor
//! says the container started (or why it did not). The monitor leaves the
//! caller's session, becomes a child subreaper, starts the container with
//! `/dev/null` as stdin and pipes as stdout and stderr, and copies what comes out
//! into `<container dir>/<id>-json.log` in Docker's json-file format (one
//! `{"log","stream","time"}` object per line). When the init ends it records the
//! exit code and time and cleans up (OCI container, root mount); `--rm`
//! removes the container too.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use serde_json::json;

use super::container::Status;
use super::run::{finish, launch, remove};
use super::{Engine, Error, IoContext, Result};
use crate::oci::time::now_rfc3339_nanos;

/// The log file of a container.
pub fn log_path(e: &Engine, id: &str) -> std::path::PathBuf {
    e.containers.dir(id).join(format!("{id}-json.log"))
}

/// Starts container `what` detached: spawns `exe monitor` and waits for its word.
pub fn start_detached(e: &Engine, exe: &Path, what: &str, remove_after: bool) -> Result<String> {
    let c = e.containers.resolve(what)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&e.root)
        .arg("--state")
        .arg(&e.state)
        .arg("monitor");
    if remove_after {
        cmd.arg("--rm");
    }
    let mut child = cmd
        .arg(&c.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .io("starting the monitor", exe)?;
    let mut word = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_to_string(&mut word)
            .io("reading from the monitor", exe)?;
    }
    match word.trim_end() {
        "ok" => Ok(c.id),
        "" => Err(Error::State {
            id: c.id,
            msg: format!("the monitor ended without a word ({:?})", child.try_wait()),
        }),
        msg => Err(Error::State {
            id: c.id,
            msg: msg.to_string(),
        }),
    }
}

/// The monitor's work: `report` (the starter's pipe) gets "ok" or the error.
pub fn monitor(e: &Engine, what: &str, mut report: File, remove_after: bool) -> Result<i32> {
    // Out of the starter's session and terminal; orphans of the container come here.
    let _ = nix::unistd::setsid();
    // SAFETY: a plain prctl.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let c = e.containers.resolve(what)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(e, &c.id))
        .io("opening", log_path(e, &c.id))?;
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .io("opening", "/dev/null")?;
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| {
        Error::Oci(crate::oci::Error::Sys {
            what: "pipe".into(),
            source: e,
        })
    })?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| {
        Error::Oci(crate::oci::Error::Sys {
            what: "pipe".into(),
            source: e,
        })
    })?;
    // The container inherits fds 0-2 of this process while it is created.
    let set = |fd: i32, to: i32| {
        // SAFETY: dup2 on descriptors this process owns.
        unsafe { libc::dup2(fd, to) };
    };
    set(devnull.as_raw_fd(), 0);
    set(out_w.as_raw_fd(), 1);
    set(err_w.as_raw_fd(), 2);
    let launched = launch(e, &c.id);
    set(devnull.as_raw_fd(), 1);
    set(devnull.as_raw_fd(), 2);
    drop((out_w, err_w));
    let (id, pid) = match launched {
        Ok(x) => x,
        Err(err) => {
            let _ = writeln!(report, "{err}");
            if remove_after {
                let _ = remove(e, &c.id, true);
            }
            return Err(err);
        }
    };
    let _ = writeln!(report, "ok");
    drop(report);
    let code = copy_logs(pid, [out_r, err_r], log);
    finish(e, &id, code)?;
    if remove_after {
        remove(e, &id, true)?;
    }
    Ok(code)
}

/// Copies the container's output into the log until its init ends; returns the
/// init's exit code.
fn copy_logs(pid: i32, fds: [OwnedFd; 2], mut log: File) -> i32 {
    let streams = ["stdout", "stderr"];
    let mut open = [true, true];
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut code: Option<i32> = None;
    let mut write_line = |stream: &str, line: &[u8]| {
        let v = json!({"log": String::from_utf8_lossy(line), "stream": stream, "time": now_rfc3339_nanos()});
        let _ = writeln!(log, "{v}");
    };
    loop {
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .zip(open)
            .map(|(f, o)| libc::pollfd {
                fd: if o { f.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 200) };
        if n > 0 {
            for i in 0..2 {
                if !open[i] || pfds[i].revents == 0 {
                    continue;
                }
                // SAFETY: reading into our buffer from our descriptor.
                let got =
                    unsafe { libc::read(fds[i].as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    open[i] = false;
                    if !partial[i].is_empty() {
                        write_line(streams[i], &std::mem::take(&mut partial[i]));
                    }
                    continue;
                }
                partial[i].extend_from_slice(&buf[..got as usize]);
                while let Some(nl) = partial[i].iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial[i].drain(..=nl).collect();
                    write_line(streams[i], &line);
                }
            }
        }
        if code.is_none() {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => code = Some(c),
                Ok(WaitStatus::Signaled(_, sig, _)) => code = Some(128 + sig as i32),
                Err(_) => code = Some(255),
                _ => {}
            }
        }
        // Done when the output is closed and the init is gone; output still held
        // open by a process that outlived the init gets a moment more, not forever.
        if let Some(c) = code {
            if !open[0] && !open[1] {
                return c;
            }
            if n <= 0 {
                return c;
            }
        }
    }
}

/// `berth logs`: the log's lines (the last `tail`), to `out`/`err` by stream,
/// with their time when `timestamps`; `follow` keeps reading while it runs.
pub fn logs(
    e: &Engine,
    what: &str,
    tail: Option<usize>,
    timestamps: bool,
    follow: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let c = e.containers.resolve(what)?;
    let path = log_path(e, &c.id);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(_) if !follow => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                what: "opening",
                path,
                source: e,
            });
        }
    };
    let mut emit = |line: &str| -> Result<()> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e2| Error::State {
            id: c.id.clone(),
            msg: format!("log line: {e2}"),
        })?;
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        let r = if timestamps {
            write!(w, "{} {text}", v["time"].as_str().unwrap_or(""))
        } else {
            write!(w, "{text}")
        };
        r.and_then(|_| w.flush()).io("writing", "output")
    };
    let mut content = String::new();
    f.read_to_string(&mut content).io("reading", &path)?;
    let complete = content.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let lines: Vec<&str> = content[..complete].lines().collect();
    let skip = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    for l in &lines[skip..] {
        emit(l)?;
    }
    if !follow {
        return Ok(());
    }
    let mut pos = complete as u64;
    let mut rest = String::new();
    loop {
        let running = e
            .containers
            .load(&c.id)
            .map(|c| c.state.status == Status::Running)
            .unwrap_or(false);
        f.seek(SeekFrom::Start(pos)).io("reading", &path)?;
        let mut r = BufReader::new(&f);
        let mut got_any = false;
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).io("reading", &path)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if line.ends_with('\n') {
                rest.push_str(&line);
                emit(rest.trim_end_matches('\n'))?;
                rest.clear();
                got_any = true;
            } else {
                rest.push_str(&line);
            }
        }
        if !running && !got_any {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (polling the record) until the container is no longer running.
pub fn wait_stopped(e: &Engine, id: &str, limit: Option<Duration>) -> Result<Option<i32>> {
    let until = limit.map(|l| Instant::now() + l);
    loop {
        let c = match e.containers.load(id) {
            Ok(c) => c,
            Err(Error::NoSuchContainer(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        if c.state.status != Status::Running {
            return Ok(Some(c.state.exit_code));
        }
        let alive = |pid: i32| pid > 0 && crate::oci::state::process_start_time(pid).is_some();
        if !alive(c.state.pid) && !alive(c.state.monitor) {
            // Nobody is left to record the exit (the monitor was killed): reconcile.
            let _l = e.containers.lock(id)?;
            let mut c = e.containers.load(id)?;
            super::run::reconcile_pub(e, &mut c)?;
            continue;
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `berth stop`: SIGTERM (or the image's stop signal), then SIGKILL after `timeout`.
pub fn stop(e: &Engine, what: &str, timeout: Duration) -> Result<()> {
    let c = e.containers.resolve(what)?;
    if c.state.status != Status::Running {
        return Ok(());
    }
    let _ = crate::oci::ops::kill_container(&e.oci, &c.id, libc::SIGTERM, false);
    if wait_stopped(e, &c.id, Some(timeout))?.is_some() {
        return Ok(());
    }
    let _ = crate::oci::ops::kill_container(&e.oci, &c.id, libc::SIGKILL, true);
    wait_stopped(e, &c.id, Some(Duration::from_secs(30)))?;
    Ok(())
}

/// `berth kill`: a signal to the container's init.
pub fn kill(e: &Engine, what: &str, signal: &str) -> Result<()> {
    let c = e.containers.resolve(what)?;
    if c.state.status != Status::Running {
        return Err(Error::State {
            id: c.id[..12].to_string(),
            msg: "is not running".into(),
        });
    }
    let sig = crate::oci::ops::parse_signal(signal)?;
    crate::oci::ops::kill_container(&e.oci, &c.id, sig, false)?;
    Ok(())
}
