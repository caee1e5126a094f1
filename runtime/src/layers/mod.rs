//! Layers: image layers unpacked into directories, overlay mounts of them, the
//! read-write layer of a container, and the way back from a container to a layer
//! (diff, commit, export).
//!
//! - [`unpack`]: a layer tar into a fresh directory, safely (nothing outside it is
//!   touched whatever the archive holds), OCI whiteouts turned into overlayfs ones.
//! - [`store`]: one directory per layer, named by its diff_id, unpacked once and
//!   shared by every image and container that uses it.
//! - [`overlay`]: the overlay mount of a stack of layers, however many there are.
//! - [`snapshot`]: a container's read-write layer (upper and work directories).
//! - [`archive`]: a directory tree back into a tar: an upper directory as an OCI
//!   layer (commit), a merged view as a plain root filesystem (export).

pub mod archive;
pub mod changes;
pub mod overlay;
pub mod snapshot;
pub mod store;
pub mod unpack;

mod fsutil;

use std::path::PathBuf;

use crate::digest::Digest;

/// Errors of the layer code. Every variant names the entry, path or layer involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An archive entry that would touch something outside the layer, or that the
    /// format does not allow.
    #[error("archive entry {entry:?}: {reason}")]
    Refused {
        /// the entry's name as the archive has it
        entry: String,
        /// why it is refused
        reason: String,
    },
    /// An archive entry could not be written.
    #[error("archive entry {entry:?}: {what}: {source}")]
    Entry {
        /// the entry's name
        entry: String,
        /// what was being done
        what: &'static str,
        /// the cause
        source: std::io::Error,
    },
    /// The unpacked content does not have the digest the image config names.
    #[error("layer {expected}: its content has digest {actual}")]
    DiffId {
        /// the diff_id from the image config
        expected: Digest,
        /// what the content hashes to
        actual: Digest,
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
    /// Anything else, with its own message.
    #[error("{0}")]
    Other(String),
}

/// Result with the layers' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// The name overlayfs gives the opaque-directory xattr (as root, not in a user namespace).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
