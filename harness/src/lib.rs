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
//! Machines so far: [`network`] (bridge/IP). The namespaces, cgroups, union
//! and lifecycle machines of issue 8 are still to come.
#![warn(missing_docs)]

pub mod network;

/// Cases per machine: `BERTH_HARNESS_CASES`, or `default` (CI keeps it small;
/// a soak run sets it high).
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
