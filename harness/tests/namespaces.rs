//! The namespaces machine on random containers with new, host and joined
//! namespaces, exec'd processes and stops, through the berth-runc binary
//! (root; a root directory, bundle and container ids of each case's own).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 16 on the host, 4 in
//!   a VM).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/namespaces.txt.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated).
//! - `BERTH_RUNC`: the berth-runc binary (default: target/debug/berth-runc).

use berth_harness::namespaces::{NsMachine, NsRef};

#[test]
fn namespaces_machine() {
    berth_harness::run_machine::<NsRef, NsMachine>("namespaces", false, (16, 4), 1..20);
}
