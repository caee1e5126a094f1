//! Start-up profile, for `cargo xtask profile-start`: with `BERTH_PROFILE=FILE`
//! in the environment, berth-runc appends one line per step it passes —
//! `<CLOCK_MONOTONIC ns> <pid> <step>` — to FILE, from the runtime and from the
//! container's stage-1 and init processes alike (one descriptor, opened once
//! with O_APPEND and O_CLOEXEC, kept open across the clones and closed by the
//! container's exec). Unset, a mark costs one check of a value read once.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

/// The environment variable.
pub const VAR: &str = "BERTH_PROFILE";

static FILE: OnceLock<Option<OwnedFd>> = OnceLock::new();

fn file() -> Option<&'static OwnedFd> {
    FILE.get_or_init(|| {
        let path = std::env::var_os(VAR)?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()
            .map(OwnedFd::from)
    })
    .as_ref()
}

/// The profile's descriptor, when profiling: the container's processes keep it
/// until their exec.
pub fn raw_fd() -> Option<i32> {
    file().map(|f| f.as_raw_fd())
}

/// Records that this process has reached `step`.
pub fn mark(step: &str) {
    let Some(f) = file() else { return };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ns = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
    let line = format!("{ns} {} {step}\n", std::process::id());
    // One write(2) of a short line to an O_APPEND file: lines of concurrent
    // processes do not interleave. A failed write only loses the mark.
    // SAFETY: writing a valid buffer to an open descriptor.
    let _ = unsafe { libc::write(f.as_raw_fd(), line.as_ptr().cast(), line.len()) };
}
