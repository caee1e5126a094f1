//! `berth-monitor`: what watches a detached container while it runs.
//!
//! `berth monitor` (the big binary: images, networks, the OCI runtime) starts the
//! container and then replaces itself with this small program, keeping its pid,
//! its place as the container's parent and subreaper, and the descriptors of
//! the container's output. This program copies that output into the json-file
//! log until the container's init ends, then replaces itself with `berth
//! monitor … --exited CODE` again, which records the exit, applies the restart
//! policy and cleans up. So the process that lives as long as the container is
//! only this file, `logcopy.rs` and `time.rs`: its resident memory stays small.
//!
//! Usage (written by `berth monitor`, not by people):
//! `berth-monitor PID LOG MAX_SIZE MAX_FILES FD:STREAM[,FD:STREAM] -- NEXT…`
//! (MAX_SIZE 0: no rotation).

#[allow(dead_code)]
#[path = "../../oci/time.rs"]
mod time;

#[path = "../../engine/logcopy.rs"]
mod logcopy;

use std::ffi::{CString, OsString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse(&args) {
        Ok(a) => run(a),
        Err(msg) => {
            eprintln!("berth-monitor: {msg}");
            std::process::exit(125);
        }
    }
}

struct Args {
    pid: i32,
    log: PathBuf,
    max_size: Option<u64>,
    max_files: u32,
    sources: Vec<(i32, &'static str)>,
    next: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let text = |i: usize| -> Result<String, String> {
        args.get(i)
            .and_then(|a| a.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("argument {} missing or not UTF-8", i + 1))
    };
    let num = |i: usize| -> Result<u64, String> {
        let t = text(i)?;
        t.parse().map_err(|_| format!("invalid number {t:?}"))
    };
    let sep = args
        .iter()
        .position(|a| a == "--")
        .ok_or("no -- before the command that follows")?;
    if sep != 5 || sep + 1 >= args.len() {
        return Err("usage: PID LOG MAX_SIZE MAX_FILES FD:STREAM[,FD:STREAM] -- NEXT…".into());
    }
    let mut sources = Vec::new();
    for s in text(4)?.split(',') {
        let (fd, stream) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid source {s:?}"))?;
        let fd: i32 = fd.parse().map_err(|_| format!("invalid fd {fd:?}"))?;
        let stream = match stream {
            "stdout" => "stdout",
            "stderr" => "stderr",
            other => return Err(format!("invalid stream {other:?}")),
        };
        sources.push((fd, stream));
    }
    let max_size = num(2)?;
    Ok(Args {
        pid: i32::try_from(num(0)?).map_err(|_| "invalid pid".to_string())?,
        log: PathBuf::from(&args[1]),
        max_size: (max_size > 0).then_some(max_size),
        max_files: u32::try_from(num(3)?).map_err(|_| "invalid MAX_FILES".to_string())?,
        sources,
        next: args[sep + 1..].to_vec(),
    })
}

fn run(a: Args) -> ! {
    let code = match logcopy::LogWriter::open(a.log.clone(), a.max_size, a.max_files) {
        Ok(mut log) => {
            let sources = a
                .sources
                .iter()
                // SAFETY: the descriptors were handed over by `berth monitor` for
                // this process to own.
                .map(|(fd, s)| (unsafe { OwnedFd::from_raw_fd(*fd) }, *s))
                .collect();
            logcopy::copy_output(a.pid, sources, &mut log)
        }
        Err(e) => {
            eprintln!("berth-monitor: opening {}: {e}", a.log.display());
            // Without a log the container still has to be waited for.
            wait_only(a.pid)
        }
    };
    // Nothing of the container's (its output, a held stdin) goes on.
    // SAFETY: closing descriptors this process no longer uses.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let mut next: Vec<CString> = Vec::new();
    for a in a
        .next
        .into_iter()
        .chain([OsString::from("--exited"), OsString::from(code.to_string())])
    {
        match CString::new(a.into_vec()) {
            Ok(c) => next.push(c),
            Err(_) => std::process::exit(code),
        }
    }
    let mut argv: Vec<*const libc::c_char> = next.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: a NUL-terminated argv of valid C strings; returns only on failure.
    unsafe { libc::execv(argv[0], argv.as_ptr()) };
    eprintln!(
        "berth-monitor: running {:?}: {}",
        next[0],
        std::io::Error::last_os_error()
    );
    // The next berth command finds the container's monitor gone and repairs it.
    std::process::exit(code)
}

fn wait_only(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid with a valid status pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}
