//! The union machine: random multi-layer images (whiteouts, opaque
//! directories, hardlinks, symlinks, devices, modes) loaded into berth's image
//! store, a container's read-write layer mounted by berth over them, random
//! file operations inside its root (write, append, chmod, mkdir, symlink,
//! unlink, rmdir, rename), and `berth commit` followed by a container on the
//! committed image. berth-model's [`berth_model::union::Container`] is the
//! reference.
//!
//! Observed after every step: a walk of the container's root (path, kind,
//! mode, content, link target, device numbers) without following links; a
//! walk of its upper directory (overlayfs' whiteouts and opaque markers as
//! well); and that the container's root is the only mount in the case's root.

pub mod assertions;
pub mod observe;
pub mod reference;
pub mod strategies;
pub mod sut;
pub mod transitions;

pub use reference::UnionRef;
pub use sut::UnionMachine;
