//! OCI hooks: run a program with the state JSON on stdin, its env and args, and a timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::error::{Error, Result};

/// Runs `hooks` in order; the first failure stops them and is returned.
pub fn run(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    for h in hooks {
        run_one(kind, h, state_json)?;
    }
    Ok(())
}

/// Runs every hook, collecting failures as warnings (poststart, poststop).
pub fn run_all(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Vec<Error> {
    hooks
        .iter()
        .filter_map(|h| run_one(kind, h, state_json).err())
        .collect()
}

fn run_one(kind: &'static str, h: &Hook, state_json: &[u8]) -> Result<()> {
    let path = h.path().display().to_string();
    let err = |msg: String| Error::Hook {
        kind,
        path: path.clone(),
        msg,
    };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .stdin(Stdio::piped());
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| err(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state_json);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(err(format!("exited with {status}"))),
            Ok(None) => {}
            Err(e) => return Err(err(format!("waiting: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "timed out after {}s",
                h.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
