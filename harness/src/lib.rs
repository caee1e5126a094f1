//! berth-harness: property-based state machines, model against the real runtime.
//!
//! Each machine pairs a part of `berth-model` (the `ReferenceStateMachine`, which
//! also generates the transitions) with the real runtime (the system under
//! test), and after every transition compares three things: the outcome kind
//! (ok, or which refusal), the state observed in the kernel, and that nothing
//! outside berth's own objects changed. A machine's files follow the layout of
//! shared/DESIGN.md: `transitions.rs` (what can happen), `strategies.rs` (how it
//! is generated from a state), `reference.rs` (the model's side), `sut.rs` (the
//! runtime's side), `observe.rs` (reading the kernel), `assertions.rs` (the
//! comparisons, with readable diffs).
//!
//! The machines: [`namespaces`], [`cgroups`], [`union`], [`network`]
//! (bridge/IP) and [`lifecycle`].
#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::fmt::Debug;

pub mod cgroups;
pub mod lifecycle;
pub mod namespaces;
pub mod network;
pub mod union;

/// The differences between two sets, or `None` when equal.
pub fn diff<T: Debug + Ord>(what: &str, want: &BTreeSet<T>, got: &BTreeSet<T>) -> Option<String> {
    let missing: Vec<&T> = want.difference(got).collect();
    let extra: Vec<&T> = got.difference(want).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    Some(format!(
        "{what}:\n    missing    {missing:?}\n    unexpected {extra:?}"
    ))
}

/// The differences `problems` finds, looked at again every 50 ms for up to
/// `secs` seconds while there are any: the kernel may finish a freeze, an exit
/// or a veth's removal after the command returned. Nothing is asserted about
/// the time.
pub fn settle(secs: u64, mut problems: impl FnMut() -> Vec<String>) -> Vec<String> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let p = problems();
        if p.is_empty() || std::time::Instant::now() >= until {
            return p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Cases per machine: `BERTH_HARNESS_CASES`, or `default` (CI keeps it small;
/// `cargo xtask vm-test --soak` repeats batches of them for a time instead).
pub fn cases(default: u32) -> u32 {
    std::env::var("BERTH_HARNESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this process can do what the machines need (root).
pub fn privileged() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// The cases `BERTH_HARNESS_REPLAY` asks for, as a regressions file: the file
/// itself when it names one, or a temporary one holding the given seeds
/// (`,`-separated, as `cargo xtask replay` passes them into a VM).
pub fn replay_file() -> Option<tempfile::NamedTempFile> {
    use std::io::Write;
    let v = std::env::var("BERTH_HARNESS_REPLAY").ok()?;
    let text = match std::fs::read_to_string(&v) {
        Ok(t) => t,
        Err(_) => v
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("cc {}\n", s.trim().trim_start_matches("cc ")))
            .collect(),
    };
    let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
    f.write_all(text.as_bytes()).expect("writing the seeds");
    Some(f)
}

/// The seeds of a regressions file (`cc HEX …` lines).
pub fn seeds(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("cc "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Runs one machine as a test: `name` names its regressions file
/// (`proptest-regressions/NAME.txt`, or `../target/harness-broken-NAME.txt`
/// when a deliberately `broken` runtime is built, whose counterexamples are not
/// regressions); `cases` is the (host, VM) default count; `steps` the range of
/// sequence lengths. Skips with a message when not root.
pub fn run_machine<R, M>(name: &str, broken: bool, cases: (u32, u32), steps: std::ops::Range<usize>)
where
    R: proptest_state_machine::ReferenceStateMachine,
    M: proptest_state_machine::StateMachineTest<Reference = R>,
{
    use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
    if !privileged() {
        eprintln!("skipped: the {name} machine needs root");
        return;
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let store = leak(if broken {
        format!("../target/harness-broken-{name}.txt")
    } else {
        format!("proptest-regressions/{name}.txt")
    });
    let in_vm = std::env::var_os("BERTH_IN_VM").is_some();
    let mut config = Config {
        cases: self::cases(if in_vm { cases.1 } else { cases.0 }),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(store))),
        ..Config::default()
    };
    // Mutation runs only ask whether a mutant is caught: no shrinking.
    if std::env::var_os("BERTH_HARNESS_NO_SHRINK").is_some() {
        config.max_shrink_iters = 0;
    }
    let replay = replay_file();
    if let Some(f) = &replay {
        config.cases = 0;
        let path = leak(f.path().display().to_string());
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(path)));
    }
    // Soak: batches of new cases until this machine's share of the time is up.
    let soak = std::env::var("BERTH_HARNESS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| replay.is_none());
    let started = std::time::Instant::now();
    let mut ran = 0u32;
    let result = loop {
        let mut runner = TestRunner::new(config.clone());
        let r = runner.run(
            &R::sequential_strategy(steps.clone()),
            |(init, transitions, seen)| {
                M::test_sequential(config.clone(), init, transitions, seen);
                Ok(())
            },
        );
        ran += config.cases;
        match soak {
            Some(secs) if r.is_ok() && started.elapsed().as_secs() < secs => continue,
            _ => break r,
        }
    };
    if let Err(e) = result {
        if let Some(seed) = std::fs::read_to_string(store)
            .ok()
            .and_then(|t| seeds(&t).pop())
        {
            eprintln!("replay this case with: cargo xtask replay --machine {name} {seed}");
        }
        panic!("{e}");
    }
    // Straight to fd 2, past libtest's capture: CI's log and the VM's console
    // show how many cases each machine ran, and for how long.
    let line = format!(
        "{name} machine: {} in {:.1} s\n",
        if replay.is_some() {
            "the replayed cases".to_string()
        } else {
            format!("{ran} cases")
        },
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}
