//! The namespace rules, one test each, and the laws every sequence keeps.

use super::*;
use proptest::prelude::*;

fn flags(kinds: &[Kind]) -> Flags {
    kinds.iter().copied().collect()
}

#[test]
fn a_child_shares_its_parents_namespaces_unless_asked() {
    let mut m = Namespaces::new();
    let c = m.spawn(Pid(1), &flags(&[Kind::Net])).expect("spawn");
    for k in Kind::ALL {
        let same = m.ns_of(c, k) == m.ns_of(Pid(1), k);
        assert_eq!(same, k != Kind::Net, "{k:?}");
    }
}

#[test]
fn a_new_user_namespace_owns_the_others_of_the_same_call() {
    let mut m = Namespaces::new();
    let c = m
        .spawn(Pid(1), &flags(&[Kind::User, Kind::Net, Kind::Mnt]))
        .expect("spawn");
    let user = m.ns_of(c, Kind::User).expect("user");
    for k in [Kind::Net, Kind::Mnt] {
        assert_eq!(
            m.namespace(m.ns_of(c, k).expect("ns"))
                .expect("exists")
                .owner,
            Some(user)
        );
    }
    // Without a new user namespace, the creator's owns them.
    let d = m.spawn(Pid(1), &flags(&[Kind::Ipc])).expect("spawn");
    let host_user = m.ns_of(Pid(1), Kind::User).expect("user");
    assert_eq!(
        m.namespace(m.ns_of(d, Kind::Ipc).expect("ns"))
            .expect("exists")
            .owner,
        Some(host_user)
    );
}

#[test]
fn the_first_process_of_a_new_pid_namespace_is_1() {
    let mut m = Namespaces::new();
    let c = m.spawn(Pid(1), &flags(&[Kind::Pid])).expect("spawn");
    assert_eq!(m.own_number(c), Ok(1));
    let g = m.spawn(c, &flags(&[])).expect("spawn");
    assert_eq!(m.own_number(g), Ok(2));
    assert_eq!(
        m.visible(c)
            .expect("visible")
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // The host sees them under their host numbers, and itself.
    let host_view = m.visible(Pid(1)).expect("visible");
    assert!(
        host_view.contains_key(&c.0) && host_view.contains_key(&g.0) && host_view.contains_key(&1)
    );
}

#[test]
fn unshare_of_pid_and_time_affects_only_children() {
    let mut m = Namespaces::new();
    let a = m.spawn(Pid(1), &flags(&[])).expect("spawn");
    let before = m.ns_of(a, Kind::Pid).expect("pid");
    m.unshare(a, &flags(&[Kind::Pid, Kind::Time, Kind::Uts]))
        .expect("unshare");
    assert_eq!(
        m.ns_of(a, Kind::Pid),
        Ok(before),
        "the caller stays in its pid namespace"
    );
    assert_eq!(
        m.ns_of(a, Kind::Time),
        m.ns_of(Pid(1), Kind::Time),
        "and its time namespace"
    );
    assert_ne!(
        m.ns_of(a, Kind::Uts),
        m.ns_of(Pid(1), Kind::Uts),
        "other kinds apply at once"
    );
    let child = m.spawn(a, &flags(&[])).expect("spawn");
    assert_ne!(m.ns_of(child, Kind::Pid), Ok(before));
    assert_eq!(m.own_number(child), Ok(1));
    assert_ne!(m.ns_of(child, Kind::Time), m.ns_of(Pid(1), Kind::Time));
}

#[test]
fn setns_joins_the_targets_namespace() {
    let mut m = Namespaces::new();
    let box1 = m
        .spawn(Pid(1), &flags(&[Kind::Net, Kind::Pid]))
        .expect("spawn");
    let other = m.spawn(Pid(1), &flags(&[])).expect("spawn");
    m.setns(other, box1, Kind::Net).expect("net");
    assert_eq!(m.ns_of(other, Kind::Net), m.ns_of(box1, Kind::Net));
    m.setns(other, box1, Kind::Pid).expect("pid");
    assert_eq!(
        m.ns_of(other, Kind::Pid),
        m.ns_of(Pid(1), Kind::Pid),
        "pid: only for children"
    );
    let joined = m.spawn(other, &flags(&[])).expect("spawn");
    assert_eq!(m.ns_of(joined, Kind::Pid), m.ns_of(box1, Kind::Pid));
    assert_eq!(m.own_number(joined), Ok(2));
}

#[test]
fn setns_into_an_ancestor_pid_namespace_is_refused() {
    let mut m = Namespaces::new();
    let c = m.spawn(Pid(1), &flags(&[Kind::Pid])).expect("spawn");
    let host_pid_ns = m.ns_of(Pid(1), Kind::Pid).expect("pid");
    assert_eq!(
        m.setns(c, Pid(1), Kind::Pid),
        Err(Refusal::PidNamespaceNotDescendant(host_pid_ns))
    );
}

#[test]
fn setns_into_ones_own_user_namespace_is_refused() {
    let mut m = Namespaces::new();
    let c = m.spawn(Pid(1), &flags(&[])).expect("spawn");
    let user = m.ns_of(Pid(1), Kind::User).expect("user");
    assert_eq!(
        m.setns(c, Pid(1), Kind::User),
        Err(Refusal::AlreadyInUserNamespace(user))
    );
}

#[test]
fn when_pid_1_exits_its_namespace_dies_with_it() {
    let mut m = Namespaces::new();
    let init = m.spawn(Pid(1), &flags(&[Kind::Pid])).expect("spawn");
    let a = m.spawn(init, &flags(&[])).expect("spawn");
    let nested = m.spawn(a, &flags(&[Kind::Pid])).expect("spawn");
    let outside = m.spawn(Pid(1), &flags(&[])).expect("spawn");
    let mut dead = m.exit(init).expect("exit");
    dead.sort();
    let mut want = vec![init, a, nested];
    want.sort();
    assert_eq!(dead, want);
    assert!(m.ns_of(outside, Kind::Pid).is_ok());
    assert_eq!(m.ns_of(a, Kind::Pid), Err(Refusal::NoSuchProcess(a)));
}

#[test]
fn no_process_can_be_made_in_a_dead_pid_namespace() {
    let mut m = Namespaces::new();
    let init = m.spawn(Pid(1), &flags(&[Kind::Pid])).expect("spawn");
    let joiner = m.spawn(Pid(1), &flags(&[])).expect("spawn");
    m.setns(joiner, init, Kind::Pid).expect("setns");
    let ns = m.ns_of(init, Kind::Pid).expect("pid");
    m.exit(init).expect("exit");
    assert_eq!(
        m.spawn(joiner, &flags(&[])),
        Err(Refusal::PidNamespaceDead(ns))
    );
}

#[test]
fn an_unknown_process_is_refused() {
    let mut m = Namespaces::new();
    assert_eq!(
        m.spawn(Pid(99), &flags(&[])),
        Err(Refusal::NoSuchProcess(Pid(99)))
    );
    assert_eq!(m.exit(Pid(99)), Err(Refusal::NoSuchProcess(Pid(99))));
}

#[test]
fn pid_and_user_namespaces_nest_at_most_32_deep() {
    for kind in [Kind::Pid, Kind::User] {
        let mut m = Namespaces::new();
        let mut p = Pid(1);
        let mut depth = 1;
        let err = loop {
            match m.spawn(p, &flags(&[kind])) {
                Ok(c) => {
                    p = c;
                    depth += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, Refusal::TooDeep(kind));
        assert_eq!(depth, MAX_DEPTH);
    }
}

/// One step of a random sequence, by index into the live processes.
#[derive(Debug, Clone)]
enum Step {
    Spawn(usize, Vec<Kind>),
    Unshare(usize, Vec<Kind>),
    Setns(usize, usize, Kind),
    Exit(usize),
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<usize>(), proptest::collection::vec(kind(), 0..3)).prop_map(|(p, k)| Step::Spawn(p, k)),
        1 => (any::<usize>(), proptest::collection::vec(kind(), 1..3)).prop_map(|(p, k)| Step::Unshare(p, k)),
        2 => (any::<usize>(), any::<usize>(), kind()).prop_map(|(a, b, k)| Step::Setns(a, b, k)),
        1 => any::<usize>().prop_map(Step::Exit),
    ]
}

/// The laws: namespaces exist with the right kind and owner, numbers are unique
/// per pid namespace, pid 1 of a live namespace with processes is its init, and
/// visibility is exactly "same or descendant pid namespace".
fn check_invariants(m: &Namespaces) {
    let mut numbers: BTreeMap<NsId, BTreeSet<u32>> = BTreeMap::new();
    for (pid, p) in m.processes() {
        for k in Kind::ALL {
            let ns = m.namespace(p.ns[&k]).expect("namespace exists");
            assert_eq!(ns.kind, k);
            assert!(ns.owner.is_some() || (k == Kind::User && ns.parent.is_none()));
        }
        let chain = m.ancestry(p.ns[&Kind::Pid]);
        assert_eq!(
            p.numbers.keys().copied().collect::<BTreeSet<_>>(),
            chain.iter().copied().collect::<BTreeSet<_>>()
        );
        assert_eq!(
            p.numbers[chain.last().expect("root")],
            pid.0,
            "the host pid is the root number"
        );
        for (ns, n) in &p.numbers {
            assert!(
                numbers.entry(*ns).or_default().insert(*n),
                "number {n} twice in {ns:?}"
            );
        }
    }
    for (viewer, vp) in m.processes() {
        let seen: BTreeSet<Pid> = m
            .visible(viewer)
            .expect("visible")
            .values()
            .copied()
            .collect();
        for (other, op) in m.processes() {
            let below = m.ancestry(op.ns[&Kind::Pid]).contains(&vp.ns[&Kind::Pid]);
            assert_eq!(seen.contains(&other), below, "{viewer:?} sees {other:?}");
        }
    }
}

proptest! {
    #[test]
    fn every_sequence_keeps_the_laws(steps in proptest::collection::vec(step(), 1..40)) {
        let mut m = Namespaces::new();
        for s in steps {
            let live: Vec<Pid> = m.processes().map(|(p, _)| p).collect();
            if live.is_empty() {
                break;
            }
            let pick = |i: usize| live[i % live.len()];
            let _ = match s {
                Step::Spawn(p, k) => m.spawn(pick(p), &flags(&k)).map(drop),
                Step::Unshare(p, k) => m.unshare(pick(p), &flags(&k)),
                Step::Setns(a, b, k) => m.setns(pick(a), pick(b), k),
                // The machine's own init stays: its exit would end everything.
                Step::Exit(p) if pick(p) != Pid(1) => m.exit(pick(p)).map(drop),
                Step::Exit(_) => Ok(()),
            };
            check_invariants(&m);
        }
    }
}
