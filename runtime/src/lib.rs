//! berth: a container runtime.
//!
//! The library holds the layers of shared/DESIGN.md as modules: the OCI runtime
//! ([`oci`]), which `berth-runc` drives with runc's command line; images
//! ([`image`]) and layers ([`layers`]); and the engine ([`engine`]) that the
//! `berth` command drives, with bridge networking ([`network`]).
#![warn(missing_docs)]

pub mod digest;
pub mod engine;
pub mod fault;
pub mod image;
pub mod layers;
pub mod network;
pub mod oci;
pub mod profile;
pub mod tty;
