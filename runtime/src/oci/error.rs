//! The OCI runtime's error type: every variant names the object and the value involved.

use std::path::PathBuf;

/// Errors of the OCI runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json (or a process.json / resources file) is malformed or invalid.
    #[error("{file}: {field}: {msg}")]
    Spec {
        /// the file
        file: PathBuf,
        /// the JSON path of the offending field
        field: String,
        /// what is wrong with it
        msg: String,
    },
    /// A container id that runc would refuse.
    #[error(
        "invalid container id {0:?}: use 1-1024 characters of [A-Za-z0-9_+.-], other than \".\" and \"..\""
    )]
    InvalidId(String),
    /// No container with this id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// A container with this id exists already.
    #[error("container with id {0:?} already exists")]
    Exists(String),
    /// The operation is not allowed in the container's current status.
    #[error("cannot {op} container {id:?}: it is {status}")]
    BadState {
        /// the container
        id: String,
        /// the operation asked for
        op: &'static str,
        /// its status
        status: super::state::Status,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the path involved
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// what was being done, with the object involved
        what: String,
        /// the errno
        source: nix::Error,
    },
    /// A cgroup file refused a value.
    #[error("cgroup {path}: writing {value:?}: {source}")]
    Cgroup {
        /// the cgroup file
        path: PathBuf,
        /// the value written
        value: String,
        /// the kernel's answer
        source: std::io::Error,
    },
    /// The container's init process reported a failure during setup.
    #[error("container init: {0}")]
    Init(String),
    /// A hook failed or timed out.
    #[error("{kind} hook {path}: {msg}")]
    Hook {
        /// prestart, createRuntime, …
        kind: &'static str,
        /// the hook's path
        path: String,
        /// what went wrong
        msg: String,
    },
    /// The seccomp profile could not be compiled or loaded.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// Anything else, with its own message.
    #[error("{0}")]
    Other(String),
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the object to an error from a system call.
pub(crate) trait SysContext<T> {
    fn sys(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what(),
            source,
        })
    }
}

/// Adds the path and the action to an I/O error.
pub(crate) trait IoContext<T> {
    fn io(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            what,
            path: path.into(),
            source,
        })
    }
}
