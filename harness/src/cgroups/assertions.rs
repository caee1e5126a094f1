//! The comparisons after each step, with diffs a person can read.

use std::collections::BTreeSet;

use berth_model::cgroups::devices::{Kind, access_text};
use berth_model::cgroups::{Controller, Hierarchy, Limit};

use super::observe;
use super::reference::{CASE, CgState};
use super::sut::Sut;
use super::transitions::{Outcome, Transition};

/// What the kernel and the model say a process in `path` (directory `dir`)
/// may do with the probed devices. v2 probes a frozen cgroup not (its
/// probe would freeze); v1's devices hierarchy has no freezer.
fn devices(sut: &Sut, h: &Hierarchy, path: &str, dir: &std::path::Path, what: &str) -> Vec<String> {
    let mut p = Vec::new();
    if h.v2 && h.is_frozen(path) {
        return p;
    }
    let show = |(major, minor, a): (u32, u32, u8)| format!("c {major}:{minor} {}", access_text(a));
    match sut.prober.allowed_in(dir, h.v2) {
        Ok(got) => {
            let want: BTreeSet<String> = observe::PROBED
                .iter()
                .flat_map(|(ma, mi)| observe::ACCESSES.iter().map(move |a| (*ma, *mi, *a)))
                .filter(|(ma, mi, a)| h.device_allowed(path, Kind::Char, *ma, *mi, *a))
                .map(show)
                .collect();
            let got = got.into_iter().map(show).collect();
            p.extend(crate::diff(
                &format!("{what}: devices a process may use"),
                &want,
                &got,
            ));
        }
        Err(e) => p.push(format!("{what}: {e}")),
    }
    if !h.v2 {
        let want: BTreeSet<String> = h.cgroups[path].devices.list().into_iter().collect();
        p.extend(crate::diff(
            &format!("{what}: devices.list"),
            &want,
            &observe::devices_list(dir),
        ));
    }
    p
}

/// The step's outcome is the model's.
pub fn outcome(t: &Transition, want: Option<&Outcome>, got: &Outcome) {
    assert_eq!(
        want,
        Some(got),
        "the outcome of {t:?}: the model says {want:?}, berth and the kernel did {got:?}"
    );
}

/// The file a limit is in, and what it holds for the model's value
/// (`u64::MAX`: no limit — "max", v1's cpu quota -1, v1's byte limits their
/// largest page-aligned value).
fn limit_file(l: Limit, v: u64, v2: bool) -> Option<(&'static str, String)> {
    if v == u64::MAX {
        let (file, _) = limit_file(l, 0, v2)?;
        let shown = match (l, v2) {
            (Limit::CpuQuota, true) => format!("max {}", super::sut::PERIOD),
            (Limit::CpuQuota, false) => "-1".into(),
            (Limit::PidsMax, _) | (_, true) => "max".into(),
            (_, false) => "9223372036854771712".into(),
        };
        return Some((file, shown));
    }
    Some(match (l, v2) {
        (Limit::MemoryMax, true) => ("memory.max", v.to_string()),
        (Limit::MemoryMax, false) => ("memory.limit_in_bytes", v.to_string()),
        (Limit::PidsMax, _) => ("pids.max", v.to_string()),
        (Limit::CpuWeight, true) => ("cpu.weight", v.to_string()),
        (Limit::CpuWeight, false) => ("cpu.shares", v.to_string()),
        (Limit::CpuQuota, true) => ("cpu.max", format!("{v} {}", super::sut::PERIOD)),
        (Limit::CpuQuota, false) => ("cpu.cfs_quota_us", v.to_string()),
        (Limit::MemoryLow, true) => ("memory.low", v.to_string()),
        (Limit::MemoryLow, false) => ("memory.soft_limit_in_bytes", v.to_string()),
        (Limit::SwapMax, true) => ("memory.swap.max", v.to_string()),
        (Limit::Hugetlb2M, true) => ("hugetlb.2MB.max", v.to_string()),
        (Limit::Hugetlb2M, false) => ("hugetlb.2MB.limit_in_bytes", v.to_string()),
        (Limit::MemorySwapMax, false) => ("memory.memsw.limit_in_bytes", v.to_string()),
        (Limit::CpuIdle, _) => ("cpu.idle", v.to_string()),
        (Limit::Cpus, _) => ("cpuset.cpus", observe::list(v)),
        (Limit::Mems, _) => ("cpuset.mems", observe::list(v)),
        (Limit::IoWeight, true) => ("io.weight", format!("default {v}")),
        (Limit::IoWeight, false) => (observe::v1_weight_file()?, v.to_string()),
        _ => return None,
    })
}

fn problems(sut: &Sut, r: &CgState) -> Vec<String> {
    let mut p = Vec::new();
    for (i, h) in r.layout.hierarchies.iter().enumerate() {
        let w = &sut.watched[i];
        // The cgroup2 mount beside v1 hierarchies: berth places processes
        // and hugepage limits there; it neither freezes nor filters devices.
        let hybrid = w.v2 && sut.watched.len() > 1;
        let label = if hybrid {
            format!("hybrid v2 {}", w.mount.display())
        } else if w.v2 {
            "v2".to_string()
        } else {
            format!("v1 {}", w.mount.display())
        };
        let want: BTreeSet<String> = h
            .cgroups
            .keys()
            .filter_map(|k| {
                k.strip_prefix(CASE)
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .map(|rest| rest.trim_start_matches('/').to_string())
            })
            .collect();
        let got = observe::tree(&sut.dir(i, ""));
        p.extend(crate::diff(&format!("{label}: cgroups"), &want, &got));
        for rel in want.intersection(&got) {
            let path = if rel.is_empty() {
                CASE.to_string()
            } else {
                format!("{CASE}/{rel}")
            };
            let cg = &h.cgroups[&path];
            let dir = sut.dir(i, rel);
            let shown = if rel.is_empty() { "<case>" } else { rel };
            let procs: BTreeSet<i32> = cg
                .procs
                .iter()
                .map(|n| sut.pid(*n).unwrap_or(-(*n as i32)))
                .collect();
            p.extend(crate::diff(
                &format!("{label}: {shown}: cgroup.procs"),
                &procs,
                &observe::procs(&dir),
            ));
            if w.v2 {
                p.extend(crate::diff(
                    &format!("{label}: {shown}: cgroup.subtree_control"),
                    &cg.subtree_control,
                    &observe::subtree_control(&dir),
                ));
                let avail = h.available(&path);
                for (c, f) in [
                    (Controller::Memory, "memory.max"),
                    (Controller::Pids, "pids.max"),
                    (Controller::Cpu, "cpu.weight"),
                    (Controller::Io, "io.max"),
                ] {
                    if w.controllers.contains(&c) && dir.join(f).exists() != avail.contains(&c) {
                        p.push(format!(
                            "{label}: {shown}: {f} {} but the model says the {c:?} controller is {}",
                            if dir.join(f).exists() { "exists" } else { "is missing" },
                            if avail.contains(&c) { "enabled" } else { "not enabled" }
                        ));
                    }
                }
            }
            for (l, v) in &cg.limits {
                if let Some((f, want)) = limit_file(*l, *v, w.v2) {
                    let seen = observe::read(&dir, f);
                    if seen.as_deref() != Some(want.as_str()) {
                        p.push(format!(
                            "{label}: {shown}: {f}: model {want:?}, kernel {seen:?}"
                        ));
                    }
                }
            }
            if w.controllers.contains(&Controller::Io) {
                // Throttles as (key, major, minor, rate): every entry the
                // kernel lists, none missing, none more.
                let want: BTreeSet<_> = cg
                    .limits
                    .iter()
                    .filter_map(|(l, v)| match l {
                        Limit::IoMax(k, a, b) => Some((*k, *a, *b, *v)),
                        _ => None,
                    })
                    .collect();
                let got: BTreeSet<_> = observe::throttles(&dir, w.v2)
                    .into_iter()
                    .map(|((k, a, b), v)| (k, a, b, v))
                    .collect();
                p.extend(crate::diff(
                    &format!("{label}: {shown}: block I/O throttles"),
                    &want,
                    &got,
                ));
            }
            // berth's own answers: every pid below (what `ps` and `kill
            // --all` use), and whether it is frozen (`state`'s "paused").
            let berth = sut.manager(rel);
            if i == 0 {
                let below = format!("{path}/");
                let all: BTreeSet<i32> = h
                    .cgroups
                    .iter()
                    .filter(|(k, _)| **k == path || k.starts_with(&below))
                    .flat_map(|(_, c)| c.procs.iter())
                    .map(|n| sut.pid(*n).unwrap_or(-(*n as i32)))
                    .collect();
                match berth.pids() {
                    Ok(v) => p.extend(crate::diff(
                        &format!("{shown}: berth's pids (recursive)"),
                        &all,
                        &v.into_iter().collect(),
                    )),
                    Err(e) => p.push(format!("{shown}: berth's pids: {e}")),
                }
            }
            let freezer = w.v2 || w.controllers.contains(&Controller::Freezer);
            if freezer && !hybrid {
                let (says, model) = (berth.is_frozen(), h.is_frozen(&path));
                if says != model {
                    p.push(format!(
                        "{label}: {shown}: berth says frozen {says}, the model {model}"
                    ));
                }
            }
            if (w.v2 && !hybrid) || w.controllers.contains(&Controller::Devices) {
                p.extend(devices(sut, h, &path, &dir, &format!("{label}: {shown}")));
            }
            if freezer {
                let (own, eff) = observe::freezer(&dir, w.v2);
                let want = (cg.frozen, h.is_frozen(&path));
                if (own, eff) != want {
                    p.push(format!(
                        "{label}: {shown}: freezer (own, effective): model {want:?}, kernel {:?}",
                        (own, eff)
                    ));
                }
            }
        }
    }
    p
}

/// The cgroup filesystems agree with the model. A freeze the kernel
/// completes after the command returned is waited for (up to 10 s).
pub fn state(sut: &Sut, r: &CgState) {
    let p = crate::settle(10, || problems(sut, r));
    assert!(
        p.is_empty(),
        "after {:?} the runtime differs from the model:\n  {}",
        sut.step,
        p.join("\n  ")
    );
}

/// After the case: nothing of it in any hierarchy, the hybrid one included.
pub fn empty(sut: &Sut) {
    let paths = sut.paths("");
    let left: Vec<_> = paths
        .v1
        .values()
        .chain(paths.unified.iter())
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
