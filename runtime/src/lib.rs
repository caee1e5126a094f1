//! berth: a container runtime.
//!
//! The library holds the layers of shared/DESIGN.md as modules. Today it has the
//! OCI runtime ([`oci`]), which the `berth-runc` binary drives with runc's command
//! line; the engine, image, layers and network modules come with their issues.
#![warn(missing_docs)]

pub mod digest;
pub mod image;
pub mod layers;
pub mod oci;
