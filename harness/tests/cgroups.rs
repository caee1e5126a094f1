//! The cgroups machine on random trees of cgroups, processes, limits and
//! freezes, through berth's cgroup manager, under the host's layout (root;
//! each case below a cgroup of its own; `cargo xtask vm-test` runs it under
//! pure v2 and under v1).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 48 on the host, 48 in
//!   a VM: the machine is cheap, and a limit or rule a case rarely draws needs
//!   many cases to come up).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/cgroups.txt.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated).

use berth_harness::cgroups::{CgMachine, CgRef};

#[test]
fn cgroups_machine() {
    berth_harness::run_machine::<CgRef, CgMachine>("cgroups", false, (48, 48), 1..24);
}
