//! Fault injection for the crash tests: with `BERTH_FAULT=POINT:ACTION` in the
//! environment, the process fails (`fail`) or kills itself with SIGKILL (`kill`)
//! when it reaches the named point. The points are the steps of starting a
//! container (`run.before-mount`, `run.after-mount`, `run.after-create`,
//! `run.before-start`, `run.after-start`); a test sets one and checks that the
//! next berth command finds and repairs what was left. Unset, a point costs one
//! environment lookup.

use crate::oci::error::{Error, Result};

/// The environment variable.
pub const VAR: &str = "BERTH_FAULT";

/// A named step: fails or dies here when `BERTH_FAULT` says so.
pub fn point(name: &str) -> Result<()> {
    let Some(v) = std::env::var_os(VAR) else {
        return Ok(());
    };
    let v = v.to_string_lossy();
    let (at, action) = v.split_once(':').unwrap_or((&v, "fail"));
    if at != name {
        return Ok(());
    }
    match action {
        "kill" => {
            // SAFETY: kill(2) of this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            Err(Error::Other(format!(
                "fault {name}: still alive after SIGKILL"
            )))
        }
        _ => Err(Error::Other(format!("injected fault at {name}"))),
    }
}
