//! berth-vm-tests: tests that change kernel state and run inside throw-away QEMU
//! VMs (`cargo xtask vm-test`), and `vm-init`, the guest's PID 1.
//!
//! The tests in `tests/` check that a guest is what the runtime needs; outside a
//! VM (no `BERTH_IN_VM=1`, which the guest init sets) they skip, so `cargo test`
//! on a developer's machine never changes its kernel state.
#![warn(missing_docs)]

/// Whether this process runs inside a vm-test guest.
pub fn in_vm() -> bool {
    std::env::var_os("BERTH_IN_VM").is_some_and(|v| v == "1")
}
