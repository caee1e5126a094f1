//! Fault injection for the crash tests and berth-harness: with
//! `BERTH_FAULT=POINT:ACTION` in the environment, the process fails (`fail`)
//! or kills itself with SIGKILL (`kill`) when it reaches the named point; in
//! a process that calls berth's library, [`arm`] does the same (fail only)
//! without the environment. The points:
//!
//! - starting a container in the engine: `run.before-mount`, `run.after-mount`,
//!   `run.after-create`, `run.before-start`, `run.after-start`;
//! - creating an OCI container: `create.after-state` (the state directory is
//!   written), `create.after-clone` (the init runs in its namespaces),
//!   `create.after-cgroup` (the init is in its cgroup), `create.after-limits`;
//! - a container's networks: `network.after-reserve` (addresses and ports are
//!   recorded), `network.after-veth` (a veth pair is made and addressed);
//!   `network create`: `network.after-bridge` (its bridge is made and
//!   addressed, the network not yet recorded);
//! - `berth commit`: `commit.after-blob` (the layer's blob is stored),
//!   `commit.after-unpack` (the layer is unpacked, the image not yet recorded).
//!
//! A test sets one and checks that the failed operation leaves nothing (or,
//! for `kill`, that the next berth command finds and repairs what was left).
//! Unset, a point costs one environment lookup and one atomic load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::oci::error::{Error, Result};

static ARMED: Mutex<Option<String>> = Mutex::new(None);
static ANY_ARMED: AtomicBool = AtomicBool::new(false);

/// Makes [`point`] fail at `name` in this process from now on (`None`:
/// nowhere). For tests that call berth's library in-process.
pub fn arm(name: Option<&str>) {
    let mut a = ARMED.lock().unwrap_or_else(|p| p.into_inner());
    *a = name.map(str::to_string);
    ANY_ARMED.store(a.is_some(), Ordering::SeqCst);
}

/// The message of the fault at `name`, when one is set there (and dies there
/// when the action is `kill`).
pub fn hit(name: &str) -> Option<String> {
    if ANY_ARMED.load(Ordering::SeqCst) {
        let a = ARMED.lock().unwrap_or_else(|p| p.into_inner());
        if a.as_deref() == Some(name) {
            return Some(format!("injected fault at {name}"));
        }
    }
    let v = std::env::var_os(VAR)?;
    let v = v.to_string_lossy();
    let (at, action) = v.split_once(':').unwrap_or((&v, "fail"));
    if at != name {
        return None;
    }
    if action == "kill" {
        // SAFETY: kill(2) of this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        return Some(format!("fault {name}: still alive after SIGKILL"));
    }
    Some(format!("injected fault at {name}"))
}

/// The environment variable.
pub const VAR: &str = "BERTH_FAULT";

/// A named step: fails or dies here when `BERTH_FAULT` (or [`arm`]) says so.
pub fn point(name: &str) -> Result<()> {
    hit(name).map_or(Ok(()), |m| Err(Error::Other(m)))
}
