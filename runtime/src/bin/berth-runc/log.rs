//! runc's logging: `--log FILE` with `--log-format text|json`; errors also go to stderr.
//! Engines show the `msg` of the last error line of the JSON log to their users.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use berth::oci::time::now_rfc3339;

/// Where log lines go.
pub struct Logger {
    file: Option<File>,
    json: bool,
    debug: bool,
}

impl Logger {
    /// Opens `path` for appending (or logs to stderr when absent).
    pub fn open(path: Option<&Path>, format: &str, debug: bool) -> anyhow::Result<Self> {
        let file = match path {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("opening log file {}: {e}", p.display()))?,
            ),
            None => None,
        };
        Ok(Logger {
            file,
            json: format == "json",
            debug,
        })
    }

    fn line(&self, level: &str, msg: &str) -> String {
        if self.json {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": now_rfc3339() });
            format!("{v}\n")
        } else {
            format!("time={:?} level={level} msg={msg:?}\n", now_rfc3339())
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let line = self.line(level, msg);
        match &self.file {
            Some(f) => {
                let _ = (&*f).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// An error: to the log, and as a plain line to stderr (as runc does).
    pub fn error(&self, msg: &str) {
        if self.file.is_some() {
            self.write("error", msg);
        }
        eprintln!("berth-runc: {msg}");
    }

    /// What berth-runc did, for the log file only (engines read only error lines).
    pub fn info(&self, msg: &str) {
        if self.file.is_some() || self.debug {
            self.write("info", msg);
        }
    }

    /// Detail shown with --debug.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }
}
