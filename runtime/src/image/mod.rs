//! Images: the content store, references, and the archive formats images come
//! and go in.
//!
//! - [`store`]: blobs by sha256 (verified while written, written atomically), the
//!   image database (images by id, tags), the lock writers take, garbage collection.
//! - [`load`]: `berth load` (OCI layouts as a directory or tar, `docker save`
//!   archives) and `berth import` (a root filesystem tar).
//! - [`save`]: `berth save`, an OCI layout tar (with Docker's manifest.json too).
//! - [`commit`]: a container's changes as a new image.
//! - [`build`]: images made in code (the tests' images, `cargo xtask image`).
//! - [`reference`]: `name:tag` with Docker's rules.
//!
//! An image's id is the digest of its config blob, as Docker's is.

pub mod build;
pub mod commit;
pub mod load;
pub mod manage;
pub mod progress;
pub mod reference;
pub mod save;
pub mod store;

use std::path::PathBuf;

use crate::digest::Digest;

/// Errors of the image code; each names the image, file or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that Docker's grammar refuses.
    #[error("invalid reference format {0:?}: {1}")]
    BadReference(String, String),
    /// No image by that name or id.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An id prefix that more than one image has.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// A blob whose content does not have the digest it was given under.
    #[error("blob {expected}: content has digest {actual}; nothing was stored")]
    DigestMismatch {
        /// the digest the archive or manifest names
        expected: Digest,
        /// what the content hashes to
        actual: Digest,
    },
    /// An archive or layout that is not a valid image.
    #[error("{source_name}: {msg}")]
    Format {
        /// the archive, directory or file
        source_name: String,
        /// what is wrong
        msg: String,
    },
    /// An image still used by a container (or referenced by several names).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A layer could not be unpacked, mounted or archived.
    #[error("{0}")]
    Layer(#[from] crate::layers::Error),
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
}

/// Result with the images' [`Error`].
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

/// The architecture name OCI uses for this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Media types berth writes and reads.
pub mod media {
    /// OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker's manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker's manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
}
