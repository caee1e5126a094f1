//! The model's side: berth-model's namespaces and processes, with which
//! model process is which container's init or exec'd process. berth-runc's
//! way of making a container is composed of the model's calls: a child of
//! the runtime joins the namespaces to join (setns), then clones the init
//! with the new ones, and exits.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::namespaces::{Flags, Kind, Namespaces, NsId, Pid, Refusal};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::transitions::{Outcome, Source, Transition};

/// The host: the model's first process, the harness in the kernel.
pub const HOST: Pid = Pid(1);

/// A container as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctr {
    /// Its init.
    pub init: Pid,
    /// The processes exec'd into it, in order.
    pub execs: Vec<Pid>,
}

/// The reference state.
#[derive(Debug, Clone)]
pub struct NsState {
    /// The model.
    pub model: Namespaces,
    /// Containers not yet stopped (their processes may have died with a pid
    /// namespace they joined).
    pub containers: BTreeMap<String, Ctr>,
    /// Cgroup namespaces a container made (its cgroup is their root).
    pub made_cgroup_ns: BTreeMap<NsId, String>,
    /// Cgroup namespaces whose root cgroup is gone: the container that made
    /// them (its cgroup was their root) was removed.
    pub rootless: BTreeSet<NsId>,
    /// What the last step must have come to.
    pub last: Option<Outcome>,
}

/// The reference state machine of the namespaces machine.
pub struct NsRef;

impl NsState {
    /// Whether `pid` lives in the model.
    pub fn alive(&self, pid: Pid) -> bool {
        self.model.processes().any(|(p, _)| p == pid)
    }
}

/// A cgroup namespace whose root cgroup is gone, among those container `name`
/// joins with `ns`. The root was the cgroup of the container that made the
/// namespace, and the kernel finds it by its path when cgroupfs is mounted:
/// a container of that name running again (this very run included: its
/// cgroup is made before the init mounts) brings the path, and so the root,
/// back.
fn joins_rootless(s: &NsState, name: &str, ns: &[(Kind, Source)]) -> bool {
    ns.iter().any(|(k, src)| match src {
        Source::Join(o) if *k == Kind::Cgroup => s
            .containers
            .get(o)
            .and_then(|c| s.model.ns_of(c.init, Kind::Cgroup).ok())
            .is_some_and(|id| {
                s.rootless.contains(&id)
                    && s.made_cgroup_ns
                        .get(&id)
                        .is_some_and(|maker| maker != name && !s.containers.contains_key(maker))
            }),
        _ => false,
    })
}

fn run(s: &mut NsState, ns: &[(Kind, Source)]) -> Result<Ctr, Refusal> {
    let m = &mut s.model;
    let mid = m.spawn(HOST, &Flags::new())?;
    let mut new: Flags = [Kind::Mnt].into();
    let mut result = Ok(());
    for (kind, src) in ns {
        match src {
            Source::Host => {}
            Source::New => {
                new.insert(*kind);
            }
            Source::Join(other) => {
                let target = s.containers.get(other).map(|c| c.init).unwrap_or(Pid(0));
                if let Err(e) = m.setns(mid, target, *kind) {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    let made = result.and_then(|()| m.spawn(mid, &new));
    m.exit(mid)?;
    made.map(|init| Ctr {
        init,
        execs: Vec::new(),
    })
}

/// Applies `t` to the model; returns the outcome it must have.
pub fn step(s: &mut NsState, t: &Transition) -> Outcome {
    let r = match t {
        // The namespaces are joined (their processes live), then the init
        // cannot mount cgroupfs in a namespace rooted at a removed cgroup.
        Transition::Run { name, ns } if joins_rootless(s, name, ns) => {
            let mut trial = s.clone();
            return match run(&mut trial, ns) {
                Ok(_) => Outcome::CgroupRootGone,
                Err(Refusal::NoSuchProcess(_)) => Outcome::NoSuchProcess,
                Err(e) => Outcome::Other(format!("model: {e}")),
            };
        }
        Transition::Run { name, ns } => run(s, ns).map(|c| {
            let own = ns
                .iter()
                .any(|(k, src)| *k == Kind::Cgroup && *src == Source::New);
            if own && let Ok(id) = s.model.ns_of(c.init, Kind::Cgroup) {
                s.made_cgroup_ns.insert(id, name.clone());
            }
            s.containers.insert(name.clone(), c);
        }),
        Transition::Exec(name) => {
            let init = s.containers[name].init;
            s.model.spawn(init, &Flags::new()).map(|p| {
                if let Some(c) = s.containers.get_mut(name) {
                    c.execs.push(p);
                }
            })
        }
        Transition::Stop(name) => {
            // berth-runc kills every process of the container and removes
            // its cgroup: a cgroup namespace it made loses its root.
            if let Some(c) = s.containers.remove(name) {
                if let Ok(id) = s.model.ns_of(c.init, Kind::Cgroup)
                    && s.made_cgroup_ns.get(&id) == Some(name)
                {
                    s.rootless.insert(id);
                }
                for p in std::iter::once(c.init).chain(c.execs) {
                    if s.alive(p) {
                        let _ = s.model.exit(p);
                    }
                }
            }
            Ok(())
        }
    };
    match r {
        Ok(()) => Outcome::Ok,
        Err(Refusal::NoSuchProcess(_)) => Outcome::NoSuchProcess,
        Err(e) => Outcome::Other(format!("model: {e}")),
    }
}

impl ReferenceStateMachine for NsRef {
    type State = NsState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<NsState> {
        Just(NsState {
            model: Namespaces::new(),
            containers: BTreeMap::new(),
            made_cgroup_ns: BTreeMap::new(),
            rootless: BTreeSet::new(),
            last: None,
        })
        .boxed()
    }

    fn transitions(state: &NsState) -> BoxedStrategy<Transition> {
        super::strategies::transitions(state)
    }

    fn apply(mut state: NsState, t: &Transition) -> NsState {
        let o = step(&mut state, t);
        state.last = Some(o);
        state
    }

    /// A name is run only when free, exec'd into only while its init lives,
    /// stopped only when it exists; a pid namespace is joined only from a
    /// live container (joining a dead one's is a refusal of berth-runc that
    /// depends on whether its pid was reused), and only with a new mount
    /// namespace, as every container has.
    fn preconditions(state: &NsState, t: &Transition) -> bool {
        match t {
            Transition::Run { name, ns } => {
                !state.containers.contains_key(name)
                    && ns.iter().all(|(_, src)| match src {
                        Source::Join(o) => o != name && state.containers.contains_key(o),
                        _ => true,
                    })
            }
            Transition::Exec(name) => state
                .containers
                .get(name)
                .is_some_and(|c| state.alive(c.init)),
            Transition::Stop(name) => state.containers.contains_key(name),
        }
    }
}

/// The kinds the machine compares (user and time are always the host's).
pub const OBSERVED: [Kind; 6] = [
    Kind::Cgroup,
    Kind::Ipc,
    Kind::Mnt,
    Kind::Net,
    Kind::Pid,
    Kind::Uts,
];

/// Every live process of the model with the containers' names for it.
pub fn labelled(s: &NsState) -> BTreeMap<Pid, String> {
    let mut out: BTreeMap<Pid, String> = [(HOST, "host".to_string())].into();
    for (name, c) in &s.containers {
        out.insert(c.init, format!("{name} init"));
        for (i, p) in c.execs.iter().enumerate() {
            out.insert(*p, format!("{name} exec {i}"));
        }
    }
    let live: BTreeSet<Pid> = s.model.processes().map(|(p, _)| p).collect();
    out.retain(|p, _| live.contains(p));
    out
}
