//! The bridge/IP machine on random sequences of steps (root; each case in a
//! network namespace of its own, so it runs beside anything on the host).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 16 on the host, 8 in
//!   a VM, where everything is ~25 times slower).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/bridge_ip.txt, which is run first from then on.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated): only
//!   those cases run (`cargo xtask replay FILE|SEED` sets it).

use berth_harness::network::{NetMachine, NetRef};

#[test]
fn bridge_ip_machine() {
    berth_harness::run_machine::<NetRef, NetMachine>(
        "bridge_ip",
        cfg!(any(
            feature = "broken-ipam-gateway",
            feature = "broken-release-keeps-rules"
        )),
        (16, 8),
        1..24,
    );
}
