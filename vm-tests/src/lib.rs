//! berth-vm-tests: tests that change kernel state and run inside throw-away QEMU VMs.
//!
//! Not built yet: issue 3 adds the guest init and the tests that `cargo xtask vm-test`
//! packs into an initramfs (shared/DESIGN.md, "VM tests").
#![warn(missing_docs)]
