//! The comparisons after each step, with diffs a person can read.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::namespaces::{Kind, NsId, Pid};

use super::observe;
use super::reference::{HOST, NsState, OBSERVED, labelled};
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

/// The real pid of each model process the reference knows by name.
fn real_pids(sut: &Sut, r: &NsState) -> BTreeMap<Pid, i32> {
    let mut out: BTreeMap<Pid, i32> = [(HOST, std::process::id() as i32)].into();
    for (name, c) in &r.containers {
        if let Some(p) = sut.containers.get(name) {
            out.insert(c.init, p.init);
            for (m, real) in c.execs.iter().zip(&p.execs) {
                out.insert(*m, *real);
            }
        }
    }
    out
}

fn problems(sut: &Sut, r: &NsState) -> Vec<String> {
    let mut p = Vec::new();
    let names = labelled(r);
    let real = real_pids(sut, r);
    // Alive or not, as the model says.
    for (m, pid) in &real {
        let want = r.alive(*m);
        if observe::alive(*pid) != want {
            let who = names
                .get(m)
                .cloned()
                .unwrap_or_else(|| format!("model pid {}", m.0));
            p.push(format!(
                "{who} (pid {pid}) is {}, the model says it {}",
                if want { "gone" } else { "alive" },
                if want { "lives" } else { "died" }
            ));
        }
    }
    if r.containers.len() != sut.containers.len() {
        p.push(format!(
            "containers: model {:?}, berth {:?}",
            r.containers.keys().collect::<Vec<_>>(),
            sut.containers.keys().collect::<Vec<_>>()
        ));
    }
    // One namespace in the model is one in the kernel, and two are two.
    for kind in OBSERVED {
        let mut model_to_real: BTreeMap<NsId, BTreeSet<String>> = BTreeMap::new();
        let mut real_to_model: BTreeMap<String, BTreeSet<NsId>> = BTreeMap::new();
        let mut who: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, label) in &names {
            let (Ok(id), Some(pid)) = (r.model.ns_of(*m, kind), real.get(m)) else {
                continue;
            };
            let Some(seen) = observe::ns(*pid, kind) else {
                continue; // reported above as gone
            };
            model_to_real.entry(id).or_default().insert(seen.clone());
            real_to_model.entry(seen.clone()).or_default().insert(id);
            who.entry(seen)
                .or_default()
                .push(format!("{label} (model ns {})", id.0));
        }
        for (id, seen) in &model_to_real {
            if seen.len() > 1 {
                p.push(format!(
                    "{kind:?}: the model puts these in one namespace ({}), the kernel in {seen:?}: {:?}",
                    id.0,
                    seen.iter().map(|s| &who[s]).collect::<Vec<_>>()
                ));
            }
        }
        for (seen, ids) in &real_to_model {
            if ids.len() > 1 {
                p.push(format!(
                    "{kind:?}: the kernel has these in one namespace ({seen}), the model in {}: {:?}",
                    ids.len(),
                    who[seen]
                ));
            }
        }
    }
    // What a container with a pid namespace of its own sees.
    let host_pid_ns = r.model.ns_of(HOST, Kind::Pid).ok();
    for (name, c) in &r.containers {
        if !r.alive(c.init) || r.model.ns_of(c.init, Kind::Pid).ok() == host_pid_ns {
            continue;
        }
        let Some(init) = real.get(&c.init) else {
            continue;
        };
        let want: BTreeSet<u32> = r
            .model
            .visible(c.init)
            .unwrap_or_default()
            .values()
            .filter_map(|m| real.get(m).and_then(|q| observe::own_number(*q)))
            .collect();
        match observe::listed(*init) {
            Some(got) => p.extend(crate::diff(
                &format!("{name}: pids in its /proc"),
                &want,
                &got,
            )),
            None => p.push(format!("{name}: its /proc cannot be read")),
        }
    }
    p
}

/// The kernel agrees with the model. An exit the kernel completes after the
/// command returned is waited for (up to 10 s).
pub fn state(sut: &Sut, r: &NsState) {
    let p = crate::settle(10, || problems(sut, r));
    assert!(
        p.is_empty(),
        "after {:?} the runtime differs from the model:\n  {}",
        sut.step,
        p.join("\n  ")
    );
}
