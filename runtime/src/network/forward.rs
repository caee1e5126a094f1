//! `net.ipv4.ip_forward`: on while any berth root has a bridge network; the
//! value found before the first one is put back when the last one goes.
//!
//! Roots side by side share one record per network namespace
//! (`/run/berth-ip_forward-NETNS.json`, under an `flock`): the value found
//! first, and which roots hold it on. A holder whose network state is gone (its
//! root was deleted) no longer counts.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Result, io};

const SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";

/// One lock for every namespace's record (never removed: removing a lock
/// file races with its next user).
const LOCK: &str = "/run/berth-ip_forward.lock";

/// The record of this thread's network namespace.
fn record_path() -> String {
    use std::os::unix::fs::MetadataExt;
    let ns = fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    format!("/run/berth-ip_forward-{ns}.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// ip_forward before berth turned it on.
    saved: String,
    /// The network state files of the roots that need it on.
    holders: Vec<String>,
}

fn locked<T>(f: impl FnOnce(&mut Option<Record>) -> Result<T>) -> Result<T> {
    let record = record_path();
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(io("opening", LOCK))?;
    lock.lock().map_err(io("locking", LOCK))?;
    let mut rec: Option<Record> = fs::read(&record)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok());
    if let Some(r) = rec.as_mut() {
        r.holders.retain(|h| Path::new(h).exists());
    }
    let out = f(&mut rec)?;
    match &rec {
        Some(r) => {
            let data = serde_json::to_vec(r).unwrap_or_default();
            crate::oci::state::write_atomic(Path::new(&record), &data).map_err(|e| {
                super::Error::Io {
                    what: "writing",
                    path: record.clone().into(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        }
        None => {
            let _ = fs::remove_file(&record);
        }
    }
    Ok(out)
}

/// `holder` (a root's network state file) needs forwarding on.
pub fn hold(holder: &Path) -> Result<()> {
    let me = holder.display().to_string();
    locked(|rec| {
        let r = rec.get_or_insert_with(|| Record {
            saved: fs::read_to_string(SYSCTL)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "0".into()),
            holders: Vec::new(),
        });
        if !r.holders.contains(&me) {
            r.holders.push(me);
        }
        if fs::read_to_string(SYSCTL)
            .map(|s| s.trim() != "1")
            .unwrap_or(true)
        {
            fs::write(SYSCTL, "1").map_err(io("writing", SYSCTL))?;
        }
        Ok(())
    })
}

/// `holder` needs it no more; the last one puts the old value back.
pub fn release(holder: &Path) -> Result<()> {
    let me = holder.display().to_string();
    locked(|rec| {
        let Some(r) = rec.as_mut() else {
            return Ok(());
        };
        r.holders.retain(|h| *h != me);
        if r.holders.is_empty() {
            fs::write(SYSCTL, &r.saved).map_err(io("writing", SYSCTL))?;
            *rec = None;
        }
        Ok(())
    })
}
