//! The bridge/IP machine on random sequences of steps (root; each case in a
//! network namespace of its own, so it runs beside anything on the host).
//!
//! - `BERTH_HARNESS_CASES`: the number of cases (default 16 on the host, 4 in
//!   a VM, where everything is ~25 times slower).
//! - A failure is shrunk, printed, and its seed saved in
//!   harness/proptest-regressions/bridge_ip.txt, which is run first from then on.
//! - `BERTH_HARNESS_REPLAY`: a regressions file, or seeds (`,`-separated): only
//!   those cases run (`cargo xtask replay FILE|SEED` sets it).

use berth_harness::network::{NetMachine, NetRef};
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

const REGRESSIONS: &str = "proptest-regressions/bridge_ip.txt";

fn store(broken: bool) -> &'static str {
    if broken {
        "../target/harness-broken-bridge_ip.txt"
    } else {
        REGRESSIONS
    }
}

#[test]
fn bridge_ip_machine() {
    if !berth_harness::privileged() {
        eprintln!("skipped: needs root");
        return;
    }
    // A deliberately broken runtime's counterexamples are not regressions:
    // they are kept under target/ instead.
    let broken = cfg!(any(
        feature = "broken-ipam-gateway",
        feature = "broken-release-keeps-rules"
    ));
    let in_vm = std::env::var_os("BERTH_IN_VM").is_some();
    let mut config = Config {
        cases: berth_harness::cases(if in_vm { 4 } else { 16 }),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(store(broken)))),
        ..Config::default()
    };
    let _replay = berth_harness::replay_file();
    if let Some(f) = &_replay {
        config.cases = 0;
        let path: &'static str = Box::leak(f.path().display().to_string().into_boxed_str());
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(path)));
    }
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &NetRef::sequential_strategy(1..24),
        |(init, steps, seen)| {
            NetMachine::test_sequential(config.clone(), init, steps, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        if let Some(seed) = std::fs::read_to_string(store(broken))
            .ok()
            .and_then(|t| berth_harness::seeds(&t).pop())
        {
            eprintln!("replay this case with: cargo xtask replay {seed}");
        }
        panic!("{e}");
    }
    eprintln!(
        "bridge/IP machine: {} in {:.1} s",
        if _replay.is_some() {
            "the replayed cases".to_string()
        } else {
            format!("{} cases", config.cases)
        },
        started.elapsed().as_secs_f64()
    );
}
