//! The model's side: berth-model's cgroup layout as this host has it, which
//! processes run, and the outcome the last step must have had. What berth's
//! manager does is composed of the model's kernel operations here: making a
//! container's cgroup is `mkdir -p` and, in v2, enabling the controllers in
//! every ancestor's subtree_control (a level with processes of its own
//! refuses, and is left as it is); removing one removes the empty cgroups
//! below it first.

use std::collections::BTreeSet;

use berth_model::cgroups::{Controller, Hierarchy, Layout, Limit, Pid, Refusal};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::observe::{WANTED, hierarchies};
use super::transitions::{Outcome, SetLimit, Transition};

/// The case's cgroup, as the model names it.
pub const CASE: &str = "/case";

/// The reference state.
#[derive(Debug, Clone)]
pub struct CgState {
    /// The model.
    pub layout: Layout,
    /// Processes that run.
    pub running: BTreeSet<u32>,
    /// What the last step must have come to.
    pub last: Option<Outcome>,
}

/// The reference state machine of the cgroups machine.
pub struct CgRef;

/// The model's path of a case-relative path.
pub fn full(rel: &str) -> String {
    if rel.is_empty() {
        CASE.to_string()
    } else {
        format!("{CASE}/{rel}")
    }
}

fn outcome(r: Result<(), Refusal>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(Refusal::NoSuchCgroup(_)) => Outcome::NoSuchCgroup,
        Err(Refusal::NoSuchFile(..)) => Outcome::NoSuchFile,
        Err(Refusal::InternalProcess(_)) => Outcome::InternalProcess,
        Err(Refusal::Busy(_)) => Outcome::Busy,
        Err(
            Refusal::QuotaAboveParent(_)
            | Refusal::DevicesWithChildren(_)
            | Refusal::MemoryAboveSwap(_)
            | Refusal::WeightWhileIdle(_),
        ) => Outcome::Invalid,
        Err(Refusal::DeviceNotPermitted(_)) => Outcome::NotPermitted,
        Err(Refusal::NoSuchDevice(..)) => Outcome::NoDevice,
        Err(Refusal::OutOfRange(_)) => Outcome::OutOfRange,
        Err(Refusal::ChildOutside(_)) => Outcome::Busy,
        Err(Refusal::AboveParent(_)) => Outcome::Denied,
        Err(other) => Outcome::Other(format!("model: {other:?}")),
    }
}

fn ancestors(path: &str) -> Vec<String> {
    // "/", "/case", "/case/a", … up to the parent of `path`, top down.
    let mut out = vec!["/".to_string()];
    let mut acc = String::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts[..parts.len().saturating_sub(1)] {
        acc.push('/');
        acc.push_str(p);
        out.push(acc.clone());
    }
    out
}

/// berth's `create`: `mkdir -p`, then, on pure v2, controllers enabled top
/// down (in the hybrid cgroup2 of a v1 host berth only makes the directory).
fn make(h: &mut Hierarchy, path: &str, pure_v2: bool) -> Result<(), Refusal> {
    let before: BTreeSet<String> = h.cgroups.keys().cloned().collect();
    h.mkdir_all(path)?;
    // v1's cpuset: a new cgroup's cpus and mems start empty, and berth
    // copies its parent's into it (a cgroup without them takes no process).
    if !h.v2 && h.controllers.contains(&Controller::Cpuset) {
        let mut made: Vec<String> = h
            .cgroups
            .keys()
            .filter(|p| !before.contains(*p))
            .cloned()
            .collect();
        made.sort_by_key(|p| p.matches('/').count());
        for p in made {
            for l in [Limit::Cpus, Limit::Mems] {
                let parent = ancestors(&p).pop().unwrap_or_else(|| "/".into());
                let v = if parent == "/" {
                    super::observe::possible(l)
                } else {
                    h.cgroups[&parent].limits.get(&l).copied().unwrap_or(0)
                };
                if let Some(c) = h.cgroups.get_mut(&p) {
                    c.limits.insert(l, v);
                }
            }
        }
    }
    if pure_v2 {
        enable_down(h, path, &WANTED);
    }
    Ok(())
}

/// berth's v2 `enable`: in every ancestor of `path`, top down, one write of
/// the controllers among `wanted` it has: all or nothing, a refusal ignored.
fn enable_down(h: &mut Hierarchy, path: &str, wanted: &[Controller]) {
    for a in ancestors(path) {
        let want: Vec<Controller> = wanted
            .iter()
            .copied()
            .filter(|c| h.available(&a).contains(c))
            .collect();
        let mut trial = h.clone();
        if want.iter().all(|c| trial.enable(&a, *c).is_ok()) {
            *h = trial;
        }
    }
}

/// berth's `remove`: the empty cgroups below first, then the cgroup.
fn remove(h: &mut Hierarchy, path: &str) -> Result<(), Refusal> {
    let mut below: Vec<String> = h
        .cgroups
        .keys()
        .filter(|p| *p == path || p.starts_with(&format!("{path}/")))
        .cloned()
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in below {
        h.rmdir(&p)?;
    }
    Ok(())
}

/// The limit and the value its file holds on this layout.
pub fn limit_of(l: SetLimit, v2: bool) -> (Limit, u64) {
    match l {
        SetLimit::Memory(b) => (Limit::MemoryMax, b),
        // OCI's 0: no limit (Docker's meaning; berth writes max on both layouts).
        SetLimit::Pids(0) => (Limit::PidsMax, u64::MAX),
        SetLimit::Pids(n) => (Limit::PidsMax, n),
        SetLimit::Shares(s) if v2 => (
            Limit::CpuWeight,
            berth_model::cgroups::oci::shares_to_weight(s),
        ),
        SetLimit::Shares(s) => (Limit::CpuWeight, s),
        // OCI's 0 (v2; v1 writes no quota, as runc): no quota, as runc's v2.
        SetLimit::Quota(0) => (Limit::CpuQuota, u64::MAX),
        SetLimit::Quota(q) => (Limit::CpuQuota, q),
        SetLimit::Reservation(b) => (Limit::MemoryLow, b),
        SetLimit::Swap { limit, .. } => (Limit::MemoryMax, limit),
        SetLimit::Hugetlb(b) => (Limit::Hugetlb2M, b),
        SetLimit::Idle(i) => (Limit::CpuIdle, i),
        SetLimit::Cpus(m) => (Limit::Cpus, m),
        SetLimit::Mems(m) => (Limit::Mems, m),
        SetLimit::Unified { value, .. } => (Limit::PidsMax, value),
        SetLimit::IoWeight(w) if v2 => (
            Limit::IoWeight,
            berth_model::cgroups::oci::blkio_to_io_weight(w),
        ),
        SetLimit::IoWeight(w) => (Limit::IoWeight, w),
        SetLimit::Throttle { key, .. } => (Limit::IoMax(key, 0, 0), 0),
    }
}

/// berth's memory+swap update: refused before anything is written when
/// the total is below the memory limit; v1 writes the memory limit first,
/// and when the kernel refuses it (above the memory+swap limit in force),
/// the memory+swap limit first; v2 writes memory.max, then swap alone.
fn set_swap(h: &mut Hierarchy, path: &str, limit: u64, total: Option<u64>) -> Result<(), Refusal> {
    if total.is_some_and(|t| t < limit) {
        return Err(Refusal::MemoryAboveSwap(path.into()));
    }
    if h.v2 {
        h.set(path, Limit::MemoryMax, limit)?;
        return h.set(path, Limit::SwapMax, total.map_or(u64::MAX, |t| t - limit));
    }
    let total = total.unwrap_or(u64::MAX);
    match h.set(path, Limit::MemoryMax, limit) {
        Ok(()) => h.set(path, Limit::MemorySwapMax, total),
        Err(_) => {
            h.set(path, Limit::MemorySwapMax, total)?;
            h.set(path, Limit::MemoryMax, limit)
        }
    }
}

/// Whether process `p` is frozen in any hierarchy.
pub fn frozen(layout: &Layout, p: u32) -> bool {
    layout
        .hierarchies
        .iter()
        .any(|h| h.cgroup_of(p as Pid).is_some_and(|c| h.is_frozen(c)))
}

/// Applies `t` to the model; returns the outcome it must have.
pub fn step(s: &mut CgState, t: &Transition) -> Outcome {
    let hs = &mut s.layout.hierarchies;
    let v2 = hs.first().is_some_and(|h| h.v2);
    outcome(match t {
        Transition::Make(p) => hs.iter_mut().try_for_each(|h| make(h, &full(p), v2)),
        // A v1 host whose hugetlb is in the hybrid cgroup2: berth enables it
        // on the way down first.
        Transition::Set(p, SetLimit::Hugetlb(b)) if !v2 => {
            s.layout.for_controller(Controller::Hugetlb).and_then(|h| {
                if h.v2 {
                    enable_down(h, &full(p), &[Controller::Hugetlb]);
                }
                h.set(&full(p), Limit::Hugetlb2M, *b)
            })
        }
        Transition::Add(pid, p) => {
            let r = hs
                .iter_mut()
                .try_for_each(|h| h.attach(*pid as Pid, &full(p)));
            if r.is_ok() {
                s.running.insert(*pid);
            } else if !s.running.contains(pid) {
                // A new process that could not be placed everywhere (the
                // hybrid cgroup2, last, refusing it) is ended again: it leaves
                // the hierarchies that took it. One that was moving stays
                // where the move left it.
                for h in hs.iter_mut() {
                    h.exit(*pid as Pid);
                }
            }
            r
        }
        Transition::Set(p, SetLimit::Swap { limit, total }) => s
            .layout
            .for_controller(Controller::Memory)
            .and_then(|h| set_swap(h, &full(p), *limit, *total)),
        // v1 without a weight file: berth refuses before writing (a cgroup
        // that is not there is ENOENT first).
        Transition::Set(p, SetLimit::IoWeight(_))
            if !v2 && super::observe::v1_weight_file().is_none() =>
        {
            return match s.layout.for_controller(Controller::Io) {
                Ok(h) if !h.cgroups.contains_key(&full(p)) => Outcome::NoSuchCgroup,
                Ok(_) => Outcome::Unsupported,
                Err(e) => outcome(Err(e)),
            };
        }
        // Unified keys: v1 refuses them all, v2 a bad one before writing any.
        Transition::Set(_, SetLimit::Unified { .. }) if !v2 => return Outcome::Unsupported,
        Transition::Set(_, SetLimit::Unified { bad: Some(_), .. }) => return Outcome::BadInput,
        Transition::Set(p, SetLimit::Unified { key, value, .. }) => match hs.first_mut() {
            None => Ok(()),
            Some(h) => match *key {
                "cgroup.freeze" => h.freeze(&full(p), *value == 1),
                "memory.max" => h.set(&full(p), Limit::MemoryMax, *value),
                _ => h.set(&full(p), Limit::PidsMax, *value),
            },
        },
        // v1 and a quota of 0: berth writes the period alone (as runc's v1
        // does), which is the one in force already.
        Transition::Set(p, SetLimit::Quota(0)) if !v2 => s
            .layout
            .for_controller(Controller::Cpu)
            .and_then(|h| match h.cgroups.contains_key(&full(p)) {
                true => Ok(()),
                false => Err(Refusal::NoSuchCgroup(full(p))),
            }),
        Transition::Set(p, l @ (SetLimit::Cpus(_) | SetLimit::Mems(_))) => {
            let (limit, mask) = limit_of(*l, v2);
            let possible = super::observe::possible(limit);
            s.layout
                .for_controller(Controller::Cpuset)
                .and_then(|h| h.set_cpuset(&full(p), limit, mask, possible))
        }
        Transition::Set(p, SetLimit::Throttle { key, disk, rate }) => {
            let (dev, have) = match (disk, super::observe::disk()) {
                (true, Some(d)) => (d, true),
                _ => (super::observe::absent_disk(), false),
            };
            let value = if *rate == 0 { u64::MAX } else { *rate };
            s.layout
                .for_controller(Controller::Io)
                .and_then(|h| h.set_io_max(&full(p), *key, dev, value, have))
        }
        Transition::Set(p, l) => {
            let (limit, value) = limit_of(*l, v2);
            s.layout
                .for_controller(limit.controller())
                .and_then(|h| h.set(&full(p), limit, value))
        }
        Transition::Freeze(p) | Transition::Thaw(p) => {
            let on = matches!(t, Transition::Freeze(_));
            s.layout
                .for_controller(Controller::Freezer)
                .and_then(|h| h.freeze(&full(p), on))
        }
        // v1: berth writes the rules in order to devices.allow / devices.deny
        // and stops at the first refused; v2: it replaces the program.
        Transition::Devices(p, rules) if v2 => hs
            .first_mut()
            .map_or(Ok(()), |h| h.set_device_filter(&full(p), rules)),
        Transition::Devices(p, rules) => s
            .layout
            .for_controller(Controller::Devices)
            .and_then(|h| rules.iter().try_for_each(|r| h.write_devices(&full(p), r))),
        Transition::Remove(p) => hs.iter_mut().try_for_each(|h| remove(h, &full(p))),
        Transition::Exit(pid) => {
            for h in hs.iter_mut() {
                h.exit(*pid as Pid);
            }
            s.running.remove(pid);
            Ok(())
        }
    })
}

/// The model of this host's hierarchies with the case's cgroup made (as
/// berth's manager makes it).
pub fn initial() -> CgState {
    let mut layout = Layout {
        hierarchies: hierarchies()
            .into_iter()
            .map(|w| Hierarchy::new(w.v2, w.controllers))
            .collect(),
    };
    let pure_v2 = layout.hierarchies.first().is_some_and(|h| h.v2);
    for (h, w) in layout.hierarchies.iter_mut().zip(hierarchies()) {
        if h.v2 {
            // The root's subtree_control as the host has it now.
            for c in super::observe::subtree_control(&w.mount) {
                let _ = h.enable("/", c);
            }
        }
        let _ = make(h, CASE, pure_v2);
    }
    CgState {
        layout,
        running: BTreeSet::new(),
        last: None,
    }
}

impl ReferenceStateMachine for CgRef {
    type State = CgState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<CgState> {
        Just(initial()).boxed()
    }

    fn transitions(state: &CgState) -> BoxedStrategy<Transition> {
        super::strategies::transitions(state)
    }

    fn apply(mut state: CgState, t: &Transition) -> CgState {
        let o = step(&mut state, t);
        state.last = Some(o);
        state
    }

    /// Left out: removing a cgroup that still has processes below it (berth
    /// retries EBUSY for seconds, then which empty children went first
    /// depends on the directory's order), and ending or moving a frozen
    /// process (a v1 freezer holds SIGKILL and the move until thawed).
    fn preconditions(state: &CgState, t: &Transition) -> bool {
        match t {
            Transition::Remove(p) => state.layout.hierarchies.iter().all(|h| {
                let f = full(p);
                h.pids_below(&f).is_empty() || !h.cgroups.contains_key(&f)
            }),
            Transition::Exit(pid) => state.running.contains(pid) && !frozen(&state.layout, *pid),
            Transition::Add(pid, _) => !state.running.contains(pid) || !frozen(&state.layout, *pid),
            _ => true,
        }
    }
}
