//! Steps over four nested paths and four processes, so that cgroups get
//! children and processes often, and the no-internal-process rule and the
//! freezer's inheritance come up. Device rules name the numbers the machine
//! probes (majors 1 and 5, minors 0, 3 and 5) or `*`, mostly after an `a`
//! rule as engines send them, sometimes without one.

use berth_model::cgroups::devices::{Kind, Rule};
use berth_model::cgroups::{Controller, IoKey};
use proptest::prelude::*;

use super::reference::CgState;
use super::transitions::{SetLimit, Transition};

/// Paths under the case's cgroup.
pub const PATHS: [&str; 4] = ["a", "a/b", "a/b/c", "d"];

/// The processes' numbers.
pub const PROCS: [u32; 4] = [1, 2, 3, 4];

/// The limits, weighted; hugepages only where a hierarchy of the model
/// holds hugetlb (not on a v1 host whose hugetlb is in the hybrid cgroup2
/// mount), throttles of the machine's disk only where it has one.
fn limit(hugetlb: bool, disk: bool) -> BoxedStrategy<SetLimit> {
    let mut arms: Vec<(u32, BoxedStrategy<SetLimit>)> = vec![
        // u64::MAX: no limit (OCI's -1), here and below.
        (
            1,
            prop::sample::select(vec![64u64 << 20, 128 << 20, 256 << 20, u64::MAX])
                .prop_map(SetLimit::Memory)
                .boxed(),
        ),
        (
            1,
            // 0: OCI's "no limit" too.
            prop::sample::select(vec![10u64, 100, 1000, u64::MAX, 0])
                .prop_map(SetLimit::Pids)
                .boxed(),
        ),
        (
            1,
            prop::sample::select(vec![512u64, 1024, 2048])
                .prop_map(SetLimit::Shares)
                .boxed(),
        ),
        (
            1,
            // 0: no quota on v2, none written on v1 (runc's meanings).
            prop::sample::select(vec![20_000u64, 50_000, 100_000, 200_000, u64::MAX, 0])
                .prop_map(SetLimit::Quota)
                .boxed(),
        ),
        (
            1,
            prop::sample::select(vec![16u64 << 20, 48 << 20, u64::MAX])
                .prop_map(SetLimit::Reservation)
                .boxed(),
        ),
        // memory+swap: unlimited, no swap, 64 MiB of swap, or below the
        // memory limit (refused).
        (
            1,
            (
                prop::sample::select(vec![64u64 << 20, 128 << 20, 256 << 20]),
                0u8..4,
            )
                .prop_map(|(limit, k)| SetLimit::Swap {
                    limit,
                    total: match k {
                        0 => None,
                        1 => Some(limit),
                        2 => Some(limit + (64 << 20)),
                        _ => Some(limit / 2),
                    },
                })
                .boxed(),
        ),
        (
            1,
            prop::sample::select(vec![0u64, 1])
                .prop_map(SetLimit::Idle)
                .boxed(),
        ),
        // cpusets: cpu 0, 1, both, or 2 (beyond this host's and the VMs':
        // ERANGE; so are 1 and 0-1 in the one-cpu VMs); node 0.
        (
            2,
            prop::sample::select(vec![0b1u64, 0b10, 0b11, 0b100])
                .prop_map(SetLimit::Cpus)
                .boxed(),
        ),
        (1, Just(SetLimit::Mems(1)).boxed()),
        // A unified key and value, now and then beside a key to refuse.
        (
            1,
            (
                prop::sample::select(vec![
                    ("pids.max", 10u64),
                    ("pids.max", 100),
                    ("memory.max", 64 << 20),
                    ("cgroup.freeze", 1),
                    ("cgroup.freeze", 0),
                ]),
                prop::option::weighted(
                    0.3,
                    prop::sample::select(vec![
                        "cgroup.procs",
                        "../pids.max",
                        "cgroup.subtree_control",
                    ]),
                ),
            )
                .prop_map(|((key, value), bad)| SetLimit::Unified { key, value, bad })
                .boxed(),
        ),
        // blkio weight at both ends and between.
        (
            1,
            prop::sample::select(vec![10u64, 500, 1000])
                .prop_map(SetLimit::IoWeight)
                .boxed(),
        ),
        // A throttle: one of four keys, mostly of the machine's disk (one
        // it does not have: ENODEV); a rate of 0 is none.
        (
            3,
            (
                prop::sample::select(IoKey::ALL.to_vec()),
                prop::bool::weighted(if disk { 0.85 } else { 0.0 }),
                prop::sample::select(vec![0u64, 1000, 1 << 20, 10 << 20]),
            )
                .prop_map(|(key, disk, rate)| SetLimit::Throttle { key, disk, rate })
                .boxed(),
        ),
    ];
    if hugetlb {
        arms.push((
            1,
            prop::sample::select(vec![2u64 << 20, 8 << 20, 64 << 20])
                .prop_map(SetLimit::Hugetlb)
                .boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(arms).boxed()
}

fn device_rule() -> impl Strategy<Value = Rule> {
    (
        prop::bool::weighted(0.65),
        prop::sample::select(vec![Kind::Char, Kind::Char, Kind::Block]),
        prop::sample::select(vec![Some(1u32), Some(5), None]),
        prop::sample::select(vec![Some(3u32), Some(5), Some(0), None]),
        1u8..8,
    )
        .prop_map(|(allow, kind, major, minor, access)| Rule {
            allow,
            kind: Some(kind),
            major,
            minor,
            access,
        })
}

/// A list of device rules: usually `deny a` (or `allow a`) and up to three
/// more, sometimes rules alone; often one more that names the device of an
/// earlier one again (the same or the other verdict, other access), since
/// what the kernel does with a second rule for the same device is where
/// v1's exceptions are subtle.
pub fn device_rules() -> impl Strategy<Value = Vec<Rule>> {
    (
        prop_oneof![
            3 => Just(Some(Rule::all(false))),
            1 => Just(Some(Rule::all(true))),
            2 => Just(None),
        ],
        prop::collection::vec(device_rule(), 0..4),
        prop::option::weighted(0.5, (any::<prop::sample::Index>(), any::<bool>(), 1u8..8)),
    )
        .prop_map(|(lead, rest, again)| {
            let mut rules: Vec<Rule> = lead.into_iter().chain(rest.iter().copied()).collect();
            if let Some((i, flip, access)) = again.filter(|_| !rest.is_empty()) {
                let r = rest[i.index(rest.len())];
                rules.push(Rule {
                    allow: r.allow != flip,
                    access,
                    ..r
                });
            }
            if rules.is_empty() {
                rules.push(Rule::all(false));
            }
            rules
        })
}

/// The steps possible from any state. Limits and device rules go to a
/// cgroup that exists three times in four (when one does).
pub fn transitions(state: &CgState) -> BoxedStrategy<Transition> {
    let path = || prop::sample::select(PATHS.to_vec()).prop_map(str::to_string);
    let existing: Vec<String> = PATHS
        .iter()
        .filter(|p| {
            state
                .layout
                .hierarchies
                .first()
                .is_some_and(|h| h.cgroups.contains_key(&super::reference::full(p)))
        })
        .map(|p| p.to_string())
        .collect();
    let target = move || -> BoxedStrategy<String> {
        if existing.is_empty() {
            path().boxed()
        } else {
            prop_oneof![3 => prop::sample::select(existing.clone()), 1 => path()].boxed()
        }
    };
    let hugetlb = state
        .layout
        .hierarchies
        .iter()
        .any(|h| h.controllers.contains(&Controller::Hugetlb));
    let proc_ = || prop::sample::select(PROCS.to_vec());
    prop_oneof![
        3 => path().prop_map(Transition::Make),
        3 => (proc_(), path()).prop_map(|(p, c)| Transition::Add(p, c)),
        4 => (target(), limit(hugetlb, super::observe::disk().is_some())).prop_map(|(c, l)| Transition::Set(c, l)),
        3 => (target(), device_rules()).prop_map(|(c, r)| Transition::Devices(c, r)),
        1 => path().prop_map(Transition::Freeze),
        1 => path().prop_map(Transition::Thaw),
        1 => path().prop_map(Transition::Remove),
        1 => proc_().prop_map(Transition::Exit),
    ]
    .boxed()
}
