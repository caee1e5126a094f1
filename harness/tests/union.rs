//! The union machine on random images and sequences of file operations and
//! commits (root: overlay mounts; each case in a mount namespace of its own).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 128, on the host and
//!   in a VM).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/union.txt, which is run first from then on.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated).

use berth_harness::union::{UnionMachine, UnionRef};

#[test]
fn union_machine() {
    berth_harness::run_machine::<UnionRef, UnionMachine>(
        "union",
        cfg!(feature = "broken-commit-drops-whiteout"),
        (128, 128),
        1..24,
    );
}
