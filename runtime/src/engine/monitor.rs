//! The monitor: one small process per detached container, as Podman's conmon.
//!
//! `berth run -d` (and `start` without `-a`) starts `berth monitor ID` — the same
//! binary, a fresh single-threaded process — and waits only until the monitor
//! says the container started (or why it did not). The monitor leaves the
//! caller's session, becomes a child subreaper, starts the container with
//! `/dev/null` as stdin and pipes as stdout and stderr, and then replaces itself
//! with the small `berth-monitor` (same pid, still the container's parent),
//! which copies what comes out into `<container dir>/<id>-json.log` in Docker's
//! json-file format (one `{"log","stream","time"}` object per line, see
//! [`super::logcopy`]). When the init ends, `berth-monitor` replaces itself with
//! `berth monitor … --exited CODE`, which records the exit code and time, applies
//! the restart policy (starting the container again and handing over again) and
//! cleans up (OCI container, root mount, network); `--rm` removes the container
//! too. Without `berth-monitor` beside `berth`, the big process watches itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::container::Status;
use super::logcopy::{LogWriter, copy_output, rotated};
use super::run::{finish, launch, remove_with_volumes as remove};
use super::{Engine, Error, IoContext, Result, sys};

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

/// Sets this process's fd `to` to `fd` (what the container inherits at create).
fn set_fd(fd: i32, to: i32) {
    // SAFETY: dup2 on descriptors this process owns.
    unsafe { libc::dup2(fd, to) };
}

/// How the container's init ended, as `berth-monitor` hands it back to
/// `berth monitor … --exited CODE`.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    /// Its exit code (128 + the signal for a killed one).
    pub code: i32,
    /// When it was started, in milliseconds since the epoch.
    pub began_ms: u64,
    /// The restart policy's current back-off, in milliseconds.
    pub delay_ms: u64,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The monitor's work: `report` (the starter's pipe) gets "ok" or the error.
/// Starts the container, hands the watching over to the small `berth-monitor`
/// (or copies the output itself when that binary is not beside this one),
/// records the exit, applies the restart policy, and cleans up. `exited`: this
/// process is `berth-monitor`'s successor, and the container it watched ended.
pub fn monitor(
    e: &Engine,
    what: &str,
    report: Option<File>,
    remove_after: bool,
    exited: Option<Exited>,
) -> Result<i32> {
    // Out of the starter's session and terminal; orphans of the container come here.
    let _ = nix::unistd::setsid();
    // SAFETY: a plain prctl.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let id = e.containers.resolve(what)?.id;
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .io("opening", "/dev/null")?;
    let mut report = report;
    let mut delay = Duration::from_millis(exited.map(|x| x.delay_ms).unwrap_or(100));
    let mut ended = exited;
    let code = loop {
        if let Some(x) = ended.take() {
            let Some(after) = finish(e, &id, x.code)? else {
                return Ok(x.code);
            };
            let ran = Duration::from_millis(epoch_ms().saturating_sub(x.began_ms));
            match super::run::restart_delay(&after, ran, &mut delay) {
                Some(d) => {
                    std::thread::sleep(d);
                    if !super::run::note_restart(e, &id)? {
                        break x.code;
                    }
                }
                None => break x.code,
            }
        }
        let c = e.containers.load(&id)?;
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
        // `-i`: stdin is a pipe this monitor keeps open (and never writes), so
        // the container's reads wait instead of seeing end of file.
        let stdin = if c.config.interactive && !c.config.tty {
            Some(pipe2(OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?)
        } else {
            None
        };
        // The container inherits fds 0-2 of this process while it is created.
        set_fd(
            stdin
                .as_ref()
                .map(|(r, _)| r.as_raw_fd())
                .unwrap_or(devnull.as_raw_fd()),
            0,
        );
        set_fd(out_w.as_raw_fd(), 1);
        set_fd(err_w.as_raw_fd(), 2);
        let began_ms = epoch_ms();
        let launched = launch(e, &id, report.is_none());
        for fd in 0..=2 {
            set_fd(devnull.as_raw_fd(), fd);
        }
        drop((out_w, err_w));
        let stdin_w = stdin.map(|(_, w)| w);
        let l = match launched {
            Ok(l) => l,
            Err(err) => {
                if let Some(mut r) = report.take() {
                    let _ = writeln!(r, "{err}");
                    if remove_after {
                        let _ = remove(e, &id, true);
                    }
                    return Err(err);
                }
                // A restart that could not start: the container stays exited.
                break 125;
            }
        };
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "ok");
        }
        let sources = match l.master {
            // A pty: one stream, as Docker logs it.
            Some(m) => vec![(m, "stdout")],
            None => vec![(out_r, "stdout"), (err_r, "stderr")],
        };
        let log = LogTarget {
            path: log_path(e, &id),
            max_size: c.config.log_max_size,
            max_files: c.config.log_max_files.unwrap_or(1),
        };
        let next = Successor {
            e,
            id: &id,
            remove_after,
            began_ms,
            delay_ms: delay.as_millis() as u64,
        };
        // Returns only when the small monitor could not take over.
        hand_over(l.pid, &sources, stdin_w.as_ref(), &log, &next);
        let mut writer = LogWriter::open(log.path.clone(), log.max_size, log.max_files)
            .io("opening", &log.path)?;
        let code = copy_output(l.pid, sources, &mut writer);
        drop(stdin_w);
        ended = Some(Exited {
            code,
            began_ms,
            delay_ms: delay.as_millis() as u64,
        });
    };
    if remove_after {
        remove(e, &id, true)?;
    }
    Ok(code)
}

/// Where the container's log goes.
struct LogTarget {
    path: std::path::PathBuf,
    max_size: Option<u64>,
    max_files: u32,
}

/// What `berth-monitor` runs when the container has ended.
struct Successor<'a> {
    e: &'a Engine,
    id: &'a str,
    remove_after: bool,
    began_ms: u64,
    delay_ms: u64,
}

/// Replaces this process with `berth-monitor` (beside this binary), which
/// watches the container with a fraction of this process's memory and runs
/// `berth monitor … --exited CODE` when it ends. Returns if that binary is
/// missing or cannot be run; the caller then watches the container itself.
fn hand_over(
    pid: i32,
    sources: &[(OwnedFd, &'static str)],
    stdin_w: Option<&OwnedFd>,
    log: &LogTarget,
    next: &Successor,
) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let small = me.with_file_name("berth-monitor");
    if !small.is_file() {
        return;
    }
    let keep: Vec<i32> = sources
        .iter()
        .map(|(f, _)| f.as_raw_fd())
        .chain(stdin_w.map(|f| f.as_raw_fd()))
        .collect();
    for fd in &keep {
        // SAFETY: clearing FD_CLOEXEC on a descriptor this process owns.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
    }
    let srcs: Vec<String> = sources
        .iter()
        .map(|(f, s)| format!("{}:{s}", f.as_raw_fd()))
        .collect();
    let mut cmd = Command::new(&small);
    cmd.arg(pid.to_string())
        .arg(&log.path)
        .arg(log.max_size.unwrap_or(0).to_string())
        .arg(log.max_files.to_string())
        .arg(srcs.join(","))
        .arg("--")
        .arg(&me)
        .arg("--root")
        .arg(&next.e.root)
        .arg("--state")
        .arg(&next.e.state)
        .arg("monitor");
    if next.remove_after {
        cmd.arg("--rm");
    }
    cmd.arg("--began")
        .arg(next.began_ms.to_string())
        .arg("--delay")
        .arg(next.delay_ms.to_string())
        .arg(next.id);
    // Only fails (and returns) when the exec does.
    let _ = cmd.exec();
    for fd in &keep {
        // SAFETY: as above, back to close-on-exec for the fallback.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// What `berth logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Keep reading while the container runs.
    pub follow: bool,
    /// Only lines from this time on (nanoseconds since the epoch).
    pub since: Option<i128>,
    /// Only lines before this time.
    pub until: Option<i128>,
}

/// `berth logs`: the log's lines (rotated files first), to `out`/`err` by stream.
pub fn logs(
    e: &Engine,
    what: &str,
    o: &LogOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let c = e.containers.resolve(what)?;
    let path = log_path(e, &c.id);
    let keep = c.config.log_max_files.unwrap_or(1);
    let mut emit = |line: &str| -> Result<()> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e2| Error::State {
            id: c.id.clone(),
            msg: format!("log line: {e2}"),
        })?;
        let time = v["time"].as_str().unwrap_or("");
        let t = crate::oci::time::parse_rfc3339_nanos(time).unwrap_or(0);
        if o.since.is_some_and(|s| t < s) || o.until.is_some_and(|u| t >= u) {
            return Ok(());
        }
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        let r = if o.timestamps {
            write!(w, "{time} {text}")
        } else {
            write!(w, "{text}")
        };
        r.and_then(|_| w.flush()).io("writing", "output")
    };
    let mut older = String::new();
    for i in (1..keep).rev() {
        if let Ok(mut f) = File::open(rotated(&path, i)) {
            f.read_to_string(&mut older)
                .io("reading", rotated(&path, i))?;
        }
    }
    let mut f = File::open(&path).ok();
    let mut cur = String::new();
    if let Some(f) = f.as_mut() {
        f.read_to_string(&mut cur).io("reading", &path)?;
    }
    // The current file's unfinished last line is read again when following.
    let complete = cur.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let lines: Vec<&str> = older.lines().chain(cur[..complete].lines()).collect();
    let skip = o.tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    for l in &lines[skip..] {
        emit(l)?;
    }
    if !o.follow {
        return Ok(());
    }
    let mut pos = complete as u64;
    let inode = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).map(|m| m.ino()).ok()
    };
    let mut ino = f.as_ref().and_then(|_| inode(&path));
    let mut rest = String::new();
    loop {
        let running = e
            .containers
            .load(&c.id)
            .map(|c| c.state.status == Status::Running)
            .unwrap_or(false);
        // Rotated (a new file) or truncated: read the new one from its start.
        let now_ino = inode(&path);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if now_ino != ino || len < pos {
            ino = now_ino;
            pos = 0;
            rest.clear();
            f = File::open(&path).ok();
        } else if f.is_none() {
            f = File::open(&path).ok();
        }
        let mut got_any = false;
        if let Some(file) = f.as_mut() {
            file.seek(SeekFrom::Start(pos)).io("reading", &path)?;
            let mut r = BufReader::new(&*file);
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
        if !c.state.shown_running() {
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

/// Marks a container stopped by its user (its restart policy then leaves it
/// stopped) and thaws it if paused (so the signal that follows is handled).
fn stopped_by_user(e: &Engine, id: &str) -> Result<super::container::Container> {
    let _l = e.containers.lock(id)?;
    let mut c = e.containers.load(id)?;
    c.state.stopped_by_user = true;
    e.containers.save(&c)?;
    Ok(c)
}

/// Thaws a paused container after a signal was sent to it.
fn thaw(e: &Engine, c: &super::container::Container) {
    if c.state.paused {
        let _ = crate::oci::ops::resume(&e.oci, &c.id);
        if let Ok(_l) = e.containers.lock(&c.id)
            && let Ok(mut c) = e.containers.load(&c.id)
        {
            c.state.paused = false;
            let _ = e.containers.save(&c);
        }
    }
}

/// `berth stop`: SIGTERM, then SIGKILL after `timeout`; a restart policy leaves
/// it stopped.
pub fn stop(e: &Engine, what: &str, timeout: Duration) -> Result<()> {
    let id = e.containers.resolve(what)?.id;
    let c = stopped_by_user(e, &id)?;
    if c.state.status != Status::Running {
        return Ok(());
    }
    let _ = crate::oci::ops::kill_container(&e.oci, &c.id, libc::SIGTERM, false);
    thaw(e, &c);
    if wait_stopped(e, &c.id, Some(timeout))?.is_some() {
        return Ok(());
    }
    let _ = crate::oci::ops::kill_container(&e.oci, &c.id, libc::SIGKILL, true);
    wait_stopped(e, &c.id, Some(Duration::from_secs(30)))?;
    Ok(())
}

/// `berth kill`: a signal to the container's init (SIGKILL also ends its
/// restart policy's work, as a stop does).
pub fn kill(e: &Engine, what: &str, signal: &str) -> Result<()> {
    let c = e.containers.resolve(what)?;
    if c.state.status != Status::Running {
        return Err(Error::State {
            id: c.id[..12].to_string(),
            msg: "is not running".into(),
        });
    }
    let sig = crate::oci::ops::parse_signal(signal)?;
    let c = if sig == libc::SIGKILL {
        stopped_by_user(e, &c.id)?
    } else {
        c
    };
    crate::oci::ops::kill_container(&e.oci, &c.id, sig, false)?;
    thaw(e, &c);
    Ok(())
}
