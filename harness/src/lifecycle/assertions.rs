//! The comparisons after each step, with diffs a person can read.

use std::collections::BTreeMap;

use berth_model::lifecycle::Status;

use super::observe::{self, Listed};
use super::reference::{LifeState, status_name};
use super::sut::Sut;
use super::transitions::{Outcome, Transition};

/// The step's outcome is the model's.
pub fn outcome(t: &Transition, want: Option<&Outcome>, got: &Outcome) {
    assert_eq!(
        want,
        Some(got),
        "the outcome of {t:?}: the model says {want:?}, berth-runc did {got:?}"
    );
}

/// What is wrong with one container, as the kernel shows it.
fn kernel_problems(sut: &Sut, name: &str, want: Status, l: &Listed) -> Vec<String> {
    let mut p = Vec::new();
    let live = want != Status::Stopped;
    if observe::alive(l.pid) != live {
        p.push(format!(
            "{name}: its init (pid {}) is {}, the model says {}",
            l.pid,
            if live { "not alive" } else { "alive" },
            status_name(want)
        ));
    }
    if live {
        // The user's program once started, berth's init before (a paused
        // container may be either).
        let prog = observe::program(l.pid);
        if want != Status::Paused && (prog == "busybox") != (want == Status::Running) {
            p.push(format!(
                "{name}: its init runs {prog:?} while {} (the user's program is busybox)",
                status_name(want)
            ));
        }
        match sut.cgroups.get(name).and_then(|d| observe::frozen(d)) {
            Some(f) if f != (want == Status::Paused) => p.push(format!(
                "{name}: its cgroup is {}frozen while {}",
                if f { "" } else { "not " },
                status_name(want)
            )),
            None => p.push(format!("{name}: no freezer state for its cgroup")),
            _ => {}
        }
    }
    p
}

fn problems(sut: &Sut, r: &LifeState) -> Vec<String> {
    let (_, out, err) = sut.runc(&["list", "--format", "json"]);
    let listed = match observe::parse_list(&out) {
        Ok(l) => l,
        Err(e) => return vec![format!("{e} ({})", err.trim())],
    };
    let want: BTreeMap<String, Status> = r.model.statuses();
    let mut p = Vec::new();
    let mut names = BTreeMap::new();
    for (id, l) in &listed {
        match sut.name(id) {
            Some(n) => {
                names.insert(n.to_string(), l.clone());
            }
            None => p.push(format!("a container that is not the case's: {id}")),
        }
    }
    for n in want
        .keys()
        .chain(names.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (want.get(n), names.get(n)) {
            (Some(s), Some(l)) if status_name(*s) == l.status => {
                p.extend(kernel_problems(sut, n, *s, l))
            }
            (Some(s), Some(l)) => p.push(format!(
                "{n}: model {}, berth-runc list {}",
                status_name(*s),
                l.status
            )),
            (Some(s), None) => p.push(format!("{n}: model {}, not listed", status_name(*s))),
            (None, Some(l)) => p.push(format!("{n}: listed as {}, the model has none", l.status)),
            (None, None) => {}
        }
    }
    // A name the model has no container for has no state directory and no
    // cgroup (a deleted one, or one whose create failed).
    for n in super::strategies::NAMES {
        if want.contains_key(n) {
            continue;
        }
        let id = sut.id(n);
        if sut.dir.path().join("root").join(&id).exists() {
            p.push(format!("{n}: no container, but a state directory"));
        }
        if let Ok(paths) = berth::oci::cgroups::resolve(None, &id) {
            for d in paths.v1.values().chain(paths.unified.iter()) {
                if d.exists() {
                    p.push(format!("{n}: no container, but its cgroup {}", d.display()));
                }
            }
        }
    }
    for (n, cg) in &sut.cgroups {
        if !want.contains_key(n) {
            if sut.dir.path().join("root").join(sut.id(n)).exists() {
                p.push(format!("{n}: deleted, but its state directory is left"));
            }
            if cg.exists() {
                p.push(format!(
                    "{n}: deleted, but its cgroup {} is left",
                    cg.display()
                ));
            }
        }
    }
    p
}

/// berth-runc and the kernel agree with the model. A freeze or an exit the
/// kernel completes after the command returned is waited for (up to 10 s).
pub fn state(sut: &Sut, r: &LifeState) {
    let p = crate::settle(10, || problems(sut, r));
    assert!(
        p.is_empty(),
        "after {:?} the runtime differs from the model:\n  {}",
        sut.step,
        p.join("\n  ")
    );
}

/// After the case: no container, no cgroup.
pub fn empty(sut: &Sut) {
    let (_, out, _) = sut.runc(&["list", "--format", "json"]);
    let left = observe::parse_list(&out).unwrap_or_default();
    assert!(left.is_empty(), "containers left: {left:?}");
    let cgroups: Vec<_> = sut.cgroups.values().filter(|d| d.exists()).collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}
