//! The engine: containers as a user of `berth` sees them — made from images,
//! named, run, committed, removed. It composes the image and layer stores and
//! hands a bundle (config.json + the container's overlay root) to the same
//! [`crate::oci`] code that `berth-runc` uses.
//!
//! What is here now: container records with Docker's names and id lookup
//! ([`container`]), the OCI config built from an image's config
//! ([`config`]), and create / foreground run / rm / commit / diff / export
//! ([`run`]). The per-container monitor (detached runs, logs, restart
//! policies), exec, stop/kill and networking come with their issues.

pub mod config;
pub mod container;
pub mod cp;
pub mod logcopy;
pub mod manage;
pub mod monitor;
pub mod netcmd;
pub mod network;
pub mod run;
pub mod system;
pub mod volume;

use std::path::{Path, PathBuf};

use crate::image::store::ImageStore;
// `logcopy` names it `super::time`, so that it also compiles into berth-monitor.
use crate::oci::time;

/// Errors of the engine; each names the container, image or value involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container by that name or id.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// An id prefix that several containers have.
    #[error("container id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// A name Docker's rules refuse.
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+")]
    BadName(String),
    /// A name another container has.
    #[error("the container name {name:?} is already in use by container {id:?}")]
    NameInUse {
        /// the name
        name: String,
        /// the container that has it
        id: String,
    },
    /// An operation the container's state does not allow.
    #[error("container {id}: {msg}")]
    State {
        /// the container
        id: String,
        /// what is wrong
        msg: String,
    },
    /// A flag with a value it cannot take.
    #[error("invalid {0}: {1}")]
    Flag(String, String),
    /// A `-u` value that cannot be resolved in the container.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// From the image code.
    #[error("{0}")]
    Image(#[from] crate::image::Error),
    /// From the layer code.
    #[error("{0}")]
    Layer(#[from] crate::layers::Error),
    /// From the OCI runtime.
    #[error("{0}")]
    Oci(#[from] crate::oci::Error),
    /// From the network code.
    #[error("{0}")]
    Network(#[from] crate::network::Error),
    /// A failure already described in full (by a helper process).
    #[error("{0}")]
    Message(String),
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

/// Result with the engine's [`Error`].
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

/// A failed system call, as the OCI runtime reports one.
pub(crate) fn sys(what: &str, source: nix::errno::Errno) -> Error {
    Error::Oci(crate::oci::Error::Sys {
        what: what.to_string(),
        source,
    })
}

/// The engine over one data root (`--root`) and one runtime state root (`--state`).
pub struct Engine {
    /// Persistent data: images, layers, containers.
    pub root: PathBuf,
    /// Runtime state (the OCI runtime's container directories).
    pub state: PathBuf,
    /// The images.
    pub images: ImageStore,
    /// The containers.
    pub containers: container::Containers,
    /// The OCI runtime's state store.
    pub oci: crate::oci::state::Store,
    /// The bridge networks.
    pub networks: crate::network::Networks,
    /// The volumes.
    pub volumes: volume::Volumes,
    /// The network of a container run without `--network`: `bridge`, unless
    /// `BERTH_DEFAULT_NETWORK` says otherwise (as containers.conf's
    /// default_network does for Podman).
    pub default_network: String,
}

impl Engine {
    /// Opens (creating what is missing) the engine's stores. The default
    /// network's subnet is `BERTH_BRIDGE_SUBNET` when set (dockerd's `--bip`).
    pub fn open(root: &Path, state: &Path) -> Result<Engine> {
        let subnet = match std::env::var("BERTH_BRIDGE_SUBNET") {
            Ok(s) if !s.is_empty() => Some(s.parse::<crate::network::Subnet>()?),
            _ => None,
        };
        let networks = crate::network::Networks::open(root, subnet)?;
        let default_network = std::env::var("BERTH_DEFAULT_NETWORK")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| crate::network::DEFAULT.to_string());
        let images = ImageStore::open(root)?;
        let containers = container::Containers::open(&root.join("containers"))?;
        let oci_root = state.join("oci");
        std::fs::create_dir_all(&oci_root).io("creating", &oci_root)?;
        Ok(Engine {
            root: root.to_path_buf(),
            state: state.to_path_buf(),
            images,
            containers,
            oci: crate::oci::state::Store::new(oci_root),
            networks,
            default_network,
            volumes: volume::Volumes::open(root)?,
        })
    }
}
