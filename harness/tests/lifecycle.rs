//! The lifecycle machine on random orders of create, start, pause, resume,
//! kill and delete, through the berth-runc binary (root; a root directory,
//! bundle and container ids of each case's own).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 16 on the host, 4 in
//!   a VM).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/lifecycle.txt.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated).
//! - `BERTH_RUNC`: the berth-runc binary (default: target/debug/berth-runc).

use berth_harness::lifecycle::{LifeMachine, LifeRef};

#[test]
fn lifecycle_machine() {
    berth_harness::run_machine::<LifeRef, LifeMachine>("lifecycle", false, (16, 4), 1..24);
}
