//! The cgroups machine on random trees of cgroups, processes, limits and
//! freezes, through berth's cgroup manager, under the host's layout (root;
//! each case below a cgroup of its own; `cargo xtask vm-test` runs it under
//! pure v2 and under v1).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 16 on the host, 16 in
//!   a VM).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/cgroups.txt.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated).

use berth_harness::cgroups::{CgMachine, CgRef};

#[test]
fn cgroups_machine() {
    berth_harness::run_machine::<CgRef, CgMachine>("cgroups", false, (16, 16), 1..24);
}
