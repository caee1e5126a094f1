//! The cgroup rules, one test each, and the laws every sequence keeps.

use super::oci::*;
use super::*;
use proptest::prelude::*;

fn v2() -> Hierarchy {
    Hierarchy::new(true, Controller::V2)
}

#[test]
fn mkdir_needs_the_parent_and_a_free_name() {
    let mut h = v2();
    assert_eq!(h.mkdir("/a/b"), Err(Refusal::NoSuchCgroup("/a".into())));
    h.mkdir("/a").expect("mkdir");
    assert_eq!(h.mkdir("/a"), Err(Refusal::Exists("/a".into())));
    h.mkdir("/a/b").expect("mkdir");
}

#[test]
fn rmdir_is_refused_with_children_or_processes_and_for_the_root() {
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    h.mkdir("/a/b").expect("mkdir");
    assert_eq!(h.rmdir("/a"), Err(Refusal::Busy("/a".into())));
    h.attach(7, "/a/b").expect("attach");
    assert_eq!(h.rmdir("/a/b"), Err(Refusal::Busy("/a/b".into())));
    h.exit(7);
    h.rmdir("/a/b").expect("empty leaf");
    h.rmdir("/a").expect("empty leaf");
    assert_eq!(h.rmdir("/"), Err(Refusal::Busy("/".into())));
}

#[test]
fn block_io_throttles_are_per_disk_and_none_takes_the_entry_away() {
    // Measured on this host's v1 blkio: "7:0 1048576" is listed, "7:0 0"
    // empties the file, a missing disk or a partition is ENODEV.
    let mut h = Hierarchy::new(false, [Controller::Io]);
    h.mkdir("/a").expect("mkdir");
    h.mkdir("/a/b").expect("mkdir");
    let rbps = Limit::IoMax(IoKey::ReadBps, 7, 0);
    assert_eq!(
        h.set_io_max("/", IoKey::ReadBps, (7, 0), 5, true),
        Err(Refusal::NoSuchFile("/".into(), rbps))
    );
    assert_eq!(
        h.set_io_max("/a", IoKey::ReadBps, (8, 240), 5, false),
        Err(Refusal::NoSuchDevice(8, 240))
    );
    h.set_io_max("/a", IoKey::ReadBps, (7, 0), 1 << 20, true)
        .expect("throttle");
    h.set_io_max("/a/b", IoKey::ReadBps, (7, 0), 4 << 20, true)
        .expect("throttle");
    assert_eq!(h.effective("/a/b", rbps), Ok(Some(1 << 20)));
    h.set_io_max("/a", IoKey::ReadBps, (7, 0), u64::MAX, true)
        .expect("none");
    assert!(h.cgroups["/a"].limits.is_empty());
    assert_eq!(h.effective("/a/b", rbps), Ok(Some(4 << 20)));
}

#[test]
fn an_idle_cgroup_has_the_idle_weight_and_refuses_another() {
    // Measured on this host's v1: shares 512, idle 1 → shares read 3, a
    // shares write is EINVAL; idle 0 → shares read 1024.
    let mut h = Hierarchy::new(false, [Controller::Cpu]);
    h.mkdir("/a").expect("mkdir");
    h.set("/a", Limit::CpuWeight, 512).expect("shares");
    h.set("/a", Limit::CpuIdle, 1).expect("idle");
    assert_eq!(h.cgroups["/a"].limits[&Limit::CpuWeight], 3);
    assert_eq!(
        h.set("/a", Limit::CpuWeight, 2048),
        Err(Refusal::WeightWhileIdle("/a".into()))
    );
    h.set("/a", Limit::CpuIdle, 1).expect("idle again");
    assert_eq!(h.cgroups["/a"].limits[&Limit::CpuWeight], 3);
    h.set("/a", Limit::CpuIdle, 0).expect("not idle");
    assert_eq!(h.cgroups["/a"].limits[&Limit::CpuWeight], 1024);
    h.set("/a", Limit::CpuWeight, 2048).expect("shares");
    h.set("/a", Limit::CpuIdle, 0).expect("not idle again");
    assert_eq!(h.cgroups["/a"].limits[&Limit::CpuWeight], 2048);
}

#[test]
fn v1_cpusets_nest_and_name_only_possible_cpus() {
    // Measured on this host's v1 (cpus 0-1 possible): a child's "1" under
    // "0-1", then the parent's "0" is EBUSY; the child's "0-1" under a
    // parent's "0" is EACCES; "2" is ERANGE.
    let mut h = Hierarchy::new(false, [Controller::Cpuset]);
    h.mkdir("/a").expect("mkdir");
    h.mkdir("/a/c").expect("mkdir");
    h.set_cpuset("/a", Limit::Cpus, 0b11, 0b11).expect("0-1");
    h.set_cpuset("/a/c", Limit::Cpus, 0b10, 0b11).expect("1");
    assert_eq!(
        h.set_cpuset("/a", Limit::Cpus, 0b01, 0b11),
        Err(Refusal::ChildOutside("/a".into()))
    );
    h.set_cpuset("/a/c", Limit::Cpus, 0b01, 0b11).expect("0");
    h.set_cpuset("/a", Limit::Cpus, 0b01, 0b11).expect("0");
    assert_eq!(
        h.set_cpuset("/a/c", Limit::Cpus, 0b11, 0b11),
        Err(Refusal::AboveParent("/a/c".into()))
    );
    assert_eq!(
        h.set_cpuset("/a/c", Limit::Cpus, 0b100, 0b11),
        Err(Refusal::OutOfRange("/a/c".into()))
    );
    // v2 asks neither the parent nor the children.
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    h.enable("/", Controller::Cpuset).expect("enable");
    h.enable("/a", Controller::Cpuset).expect("enable");
    h.mkdir("/a/c").expect("mkdir");
    h.set_cpuset("/a/c", Limit::Cpus, 0b11, 0b11).expect("0-1");
    h.set_cpuset("/a", Limit::Cpus, 0b01, 0b11).expect("0");
}

#[test]
fn attaching_moves_the_process() {
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    h.mkdir("/b").expect("mkdir");
    h.attach(7, "/a").expect("attach");
    h.attach(7, "/b").expect("attach");
    assert_eq!(h.cgroup_of(7), Some("/b"));
    assert!(h.cgroups["/a"].procs.is_empty());
}

#[test]
fn a_controller_is_enabled_only_from_the_parents_set() {
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    assert_eq!(
        h.enable("/a", Controller::Memory),
        Err(Refusal::ControllerUnavailable(
            "/a".into(),
            Controller::Memory
        ))
    );
    h.enable("/", Controller::Memory)
        .expect("root has every controller");
    h.enable("/a", Controller::Memory)
        .expect("now the parent has it");
}

#[test]
fn no_internal_processes_in_v2() {
    let mut h = v2();
    h.enable("/", Controller::Pids).expect("root");
    h.mkdir("/a").expect("mkdir");
    h.attach(7, "/a").expect("attach");
    assert_eq!(
        h.enable("/a", Controller::Pids),
        Err(Refusal::InternalProcess("/a".into()))
    );
    h.exit(7);
    h.enable("/a", Controller::Pids).expect("enable");
    assert_eq!(
        h.attach(8, "/a"),
        Err(Refusal::InternalProcess("/a".into()))
    );
    h.attach(8, "/").expect("the root is exempt");
}

#[test]
fn a_controller_in_use_below_cannot_be_disabled_and_disabling_drops_the_childrens_limits() {
    let mut h = v2();
    h.enable("/", Controller::Cpu).expect("root");
    h.mkdir("/a").expect("mkdir");
    h.enable("/a", Controller::Cpu).expect("a");
    assert_eq!(
        h.disable("/", Controller::Cpu),
        Err(Refusal::Busy("/".into()))
    );
    h.disable("/a", Controller::Cpu).expect("a");
    h.set("/a", Limit::CpuQuota, 50_000).expect("set");
    h.disable("/", Controller::Cpu).expect("root");
    assert!(
        h.cgroups["/a"].limits.is_empty(),
        "the child's cpu files, and their limits, are gone"
    );
}

#[test]
fn limit_files_exist_only_where_the_parent_enables_the_controller() {
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    assert_eq!(
        h.set("/a", Limit::MemoryMax, 1 << 20),
        Err(Refusal::NoSuchFile("/a".into(), Limit::MemoryMax))
    );
    assert_eq!(
        h.set("/", Limit::MemoryMax, 1 << 20),
        Err(Refusal::NoSuchFile("/".into(), Limit::MemoryMax))
    );
    h.enable("/", Controller::Memory).expect("root");
    h.set("/a", Limit::MemoryMax, 1 << 20).expect("set");
    // v1: every non-root cgroup of the controller's hierarchy has its files.
    let mut v1 = Hierarchy::new(false, [Controller::Memory]);
    v1.mkdir("/a").expect("mkdir");
    v1.set("/a", Limit::MemoryMax, 1 << 20).expect("set");
}

#[test]
fn the_tightest_maximum_along_the_path_applies() {
    let mut h = v2();
    for c in [Controller::Memory, Controller::Cpu] {
        h.enable("/", c).expect("root");
    }
    h.mkdir("/a").expect("mkdir");
    h.enable("/a", Controller::Memory).expect("a");
    h.enable("/a", Controller::Cpu).expect("a");
    h.mkdir("/a/b").expect("mkdir");
    h.set("/a", Limit::MemoryMax, 100).expect("set");
    h.set("/a/b", Limit::MemoryMax, 500).expect("set");
    assert_eq!(h.effective("/a/b", Limit::MemoryMax), Ok(Some(100)));
    assert_eq!(h.effective("/a", Limit::PidsMax), Ok(None));
    // A weight is relative to siblings: the cgroup's own value applies.
    h.set("/a", Limit::CpuWeight, 50).expect("set");
    h.set("/a/b", Limit::CpuWeight, 200).expect("set");
    assert_eq!(h.effective("/a/b", Limit::CpuWeight), Ok(Some(200)));
}

#[test]
fn freezing_a_cgroup_freezes_everything_below_it() {
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    h.mkdir("/a/b").expect("mkdir");
    h.freeze("/a", true).expect("freeze");
    assert!(h.is_frozen("/a/b"));
    h.freeze("/a", false).expect("thaw");
    assert!(!h.is_frozen("/a/b"));
    assert_eq!(h.freeze("/", true), Err(Refusal::RootCannotFreeze));
}

#[test]
fn placing_a_container_makes_its_path_in_every_v1_hierarchy() {
    let mut l = Layout::v1();
    l.place(42, "/default/c1").expect("place");
    for h in &l.hierarchies {
        assert_eq!(h.cgroup_of(42), Some("/default/c1"));
    }
    assert!(l.for_controller(Controller::Memory).is_ok());
    let mut v2 = Layout::v2();
    assert_eq!(
        v2.for_controller(Controller::Freezer).map(|h| h.v2),
        Ok(true),
        "v2 freezes in every cgroup"
    );
}

#[test]
fn oci_fields_map_to_the_files_runc_writes() {
    assert_eq!(
        mapping("memory.limit").map(|m| (m.v1, m.v2)),
        Some(("memory.limit_in_bytes", "memory.max"))
    );
    assert_eq!(mapping("pids.limit").map(|m| m.v2), Some("pids.max"));
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
    assert_eq!(swap_max(300, 100), Some(200));
    assert_eq!(swap_max(-1, 100), None);
    assert_eq!(pids_max(0), None);
    assert_eq!(pids_max(50), Some(50));
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize, u8),
    Rmdir(usize),
    Attach(u32, usize),
    Exit(u32),
    Enable(usize, usize),
    Disable(usize, usize),
    Set(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..4).prop_map(|(p, n)| Op::Mkdir(p, n)),
        1 => any::<usize>().prop_map(Op::Rmdir),
        3 => (0u32..6, any::<usize>()).prop_map(|(pid, p)| Op::Attach(pid, p)),
        1 => (0u32..6).prop_map(Op::Exit),
        3 => (any::<usize>(), 0usize..6).prop_map(|(p, c)| Op::Enable(p, c)),
        1 => (any::<usize>(), 0usize..6).prop_map(|(p, c)| Op::Disable(p, c)),
        2 => (any::<usize>(), 1u64..1000).prop_map(|(p, v)| Op::Set(p, v)),
    ]
}

/// The laws of a v2 hierarchy after any sequence: no non-root cgroup has both
/// processes and enabled controllers; a cgroup enables only what it has; limits
/// only where the controller is available; every process is in one cgroup; every
/// cgroup's parent exists.
fn check(h: &Hierarchy) {
    let mut seen = BTreeSet::new();
    for (path, c) in &h.cgroups {
        if path != "/" {
            assert!(
                c.procs.is_empty() || c.subtree_control.is_empty(),
                "{path}: internal processes with controllers"
            );
            assert!(
                h.cgroups.contains_key(parent_of(path).expect("non-root")),
                "{path}: orphan"
            );
            for l in c.limits.keys() {
                assert!(
                    h.available(path).contains(&l.controller()),
                    "{path}: {l:?} without its controller"
                );
            }
        }
        assert!(
            c.subtree_control.is_subset(&h.available(path)),
            "{path}: enables what it lacks"
        );
        for p in &c.procs {
            assert!(seen.insert(*p), "pid {p} in two cgroups");
        }
    }
}

proptest! {
    #[test]
    fn every_v2_sequence_keeps_the_laws(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = v2();
        for o in ops {
            let paths: Vec<String> = h.cgroups.keys().cloned().collect();
            let pick = |i: usize| paths[i % paths.len()].clone();
            let _ = match o {
                Op::Mkdir(p, n) => {
                    let parent = pick(p);
                    let child = if parent == "/" { format!("/c{n}") } else { format!("{parent}/c{n}") };
                    h.mkdir(&child)
                }
                Op::Rmdir(p) => h.rmdir(&pick(p)),
                Op::Attach(pid, p) => h.attach(pid, &pick(p)),
                Op::Exit(pid) => {
                    h.exit(pid);
                    Ok(())
                }
                Op::Enable(p, c) => h.enable(&pick(p), Controller::V2[c]),
                Op::Disable(p, c) => h.disable(&pick(p), Controller::V2[c]),
                Op::Set(p, v) => h.set(&pick(p), Limit::PidsMax, v),
            };
            check(&h);
        }
    }
}

#[test]
fn a_v1_controller_that_is_not_mounted_is_refused() {
    let mut l = Layout {
        hierarchies: vec![Hierarchy::new(false, [Controller::Memory])],
    };
    assert_eq!(
        l.for_controller(Controller::Pids).map(|_| ()),
        Err(Refusal::NotMounted(Controller::Pids))
    );
}

#[test]
fn a_v1_cpu_quota_may_not_exceed_the_one_above_it_and_v2_takes_the_smaller() {
    let mut h = Hierarchy::new(false, [Controller::Cpu]);
    h.mkdir_all("/a/b/c").expect("mkdir");
    h.set("/a", Limit::CpuQuota, 50_000)
        .expect("no quota above /a");
    // Above /a's, directly below it or further down (/a/b has none: /a's applies).
    let above = Err(Refusal::QuotaAboveParent("/a/b".into()));
    assert_eq!(h.set("/a/b", Limit::CpuQuota, 60_000), above);
    assert_eq!(
        h.set("/a/b/c", Limit::CpuQuota, 60_000),
        Err(Refusal::QuotaAboveParent("/a/b/c".into()))
    );
    h.set("/a/b/c", Limit::CpuQuota, 50_000)
        .expect("equal is allowed");
    // Lowering an ancestor below a descendant's is refused too.
    assert_eq!(
        h.set("/a", Limit::CpuQuota, 20_000),
        Err(Refusal::QuotaAboveParent("/a".into()))
    );
    h.set("/a", Limit::CpuQuota, 200_000)
        .expect("raising is fine");
    h.set("/a/b", Limit::CpuQuota, 100_000).expect("below /a's");
    assert_eq!(
        h.effective("/a/b/c", Limit::CpuQuota),
        Ok(Some(50_000)),
        "the tightest along the path"
    );
    // v2: no refusal; the smaller applies.
    let mut h = v2();
    h.mkdir("/a").expect("mkdir");
    h.enable("/", Controller::Cpu).expect("enable");
    h.enable("/a", Controller::Cpu).expect("enable");
    h.mkdir("/a/b").expect("mkdir");
    h.set("/a", Limit::CpuQuota, 50_000).expect("set");
    h.set("/a/b", Limit::CpuQuota, 60_000)
        .expect("v2 allows it");
    assert_eq!(h.effective("/a/b", Limit::CpuQuota), Ok(Some(50_000)));
}

fn dev(
    allow: bool,
    kind: devices::Kind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
) -> devices::Rule {
    devices::Rule {
        allow,
        kind: Some(kind),
        major,
        minor,
        access,
    }
}

fn v1_devices() -> Hierarchy {
    Hierarchy::new(false, [Controller::Devices])
}

/// Measured on this project's host (6.1, v1): `deny a`, `allow c 1:3 rw`,
/// `deny c 1:3 w` lists `c 1:3 r`; an O_RDWR open is then refused; a child
/// may take `c 1:3 r` but neither `c 1:5 r` nor `c 1:3 rw`.
#[test]
fn v1_devices_take_bits_away_from_the_exact_exception_and_children_stay_within() {
    use devices::{Kind::Char, READ, Rule, WRITE};
    let mut h = v1_devices();
    h.mkdir("/x").expect("mkdir");
    h.write_devices("/x", &Rule::all(false)).expect("deny a");
    h.write_devices("/x", &dev(true, Char, Some(1), Some(3), READ | WRITE))
        .expect("allow");
    h.write_devices("/x", &dev(false, Char, Some(1), Some(3), WRITE))
        .expect("deny");
    assert_eq!(h.cgroups["/x"].devices.list(), vec!["c 1:3 r".to_string()]);
    assert!(h.device_allowed("/x", Char, 1, 3, READ));
    assert!(!h.device_allowed("/x", Char, 1, 3, READ | WRITE));
    h.mkdir("/x/k").expect("mkdir");
    assert_eq!(h.cgroups["/x/k"].devices, h.cgroups["/x"].devices, "a copy");
    assert_eq!(
        h.write_devices("/x/k", &dev(true, Char, Some(1), Some(5), READ)),
        Err(Refusal::DeviceNotPermitted("/x/k".into()))
    );
    h.write_devices("/x/k", &dev(true, Char, Some(1), Some(3), READ))
        .expect("within the parent's");
    assert_eq!(
        h.write_devices("/x/k", &dev(true, Char, Some(1), Some(3), READ | WRITE)),
        Err(Refusal::DeviceNotPermitted("/x/k".into()))
    );
    assert_eq!(
        h.write_devices("/x", &Rule::all(false)),
        Err(Refusal::DevicesWithChildren("/x".into())),
        "`a` with children is EINVAL"
    );
}

/// Measured too: a parent's new denial reaches an allowing child, which can
/// drop neither it nor a wildcard touching it; an allow only removes the
/// exception of exactly its device.
#[test]
fn v1_denials_reach_the_children() {
    use devices::{Kind::Char, READ, WRITE};
    let mut h = v1_devices();
    h.mkdir("/x").expect("mkdir");
    h.mkdir("/x/k").expect("mkdir");
    h.write_devices("/x", &dev(false, Char, Some(1), Some(3), WRITE))
        .expect("deny");
    assert_eq!(
        h.cgroups["/x/k"].devices.list(),
        vec!["a *:* rwm".to_string()]
    );
    assert!(!h.device_allowed("/x/k", Char, 1, 3, WRITE));
    assert!(h.device_allowed("/x/k", Char, 1, 3, READ));
    for rule in [
        dev(true, Char, Some(1), Some(3), WRITE),
        dev(true, Char, Some(1), None, WRITE),
    ] {
        assert_eq!(
            h.write_devices("/x/k", &rule),
            Err(Refusal::DeviceNotPermitted("/x/k".into())),
            "{rule:?}"
        );
    }
    h.write_devices("/x", &dev(true, Char, Some(1), None, WRITE))
        .expect("an allow of another device");
    assert!(!h.device_allowed("/x", Char, 1, 3, WRITE), "c 1:3 w stays");
}

/// v2: a program means its rules written to an allowing cgroup; every
/// program on the path must allow; a new set replaces the cgroup's own.
#[test]
fn v2_device_programs_are_anded_along_the_path_and_replaced() {
    use devices::{Kind::Char, READ, Rule, WRITE};
    let mut h = v2();
    h.mkdir("/x").expect("mkdir");
    h.mkdir("/x/k").expect("mkdir");
    let rules = [
        Rule::all(false),
        dev(true, Char, Some(1), Some(3), READ | WRITE),
        dev(false, Char, Some(1), Some(3), WRITE),
    ];
    h.set_device_filter("/x/k", &rules).expect("attach");
    assert!(h.device_allowed("/x/k", Char, 1, 3, READ));
    assert!(!h.device_allowed("/x/k", Char, 1, 3, READ | WRITE), "as v1");
    assert!(
        h.device_allowed("/x", Char, 1, 5, READ),
        "the parent has none"
    );
    h.set_device_filter("/x", &[dev(false, Char, Some(1), None, READ)])
        .expect("attach");
    assert!(
        !h.device_allowed("/x/k", Char, 1, 3, READ),
        "the parent's too"
    );
    h.set_device_filter("/x", &[Rule::all(true)])
        .expect("replace");
    assert!(h.device_allowed("/x/k", Char, 1, 3, READ), "replaced");
}

/// v1 keeps memory ≤ memory+swap in each cgroup, whichever is written;
/// v2's swap is its own limit.
#[test]
fn v1_memory_stays_within_memory_and_swap() {
    let mut h = Hierarchy::new(false, [Controller::Memory]);
    h.mkdir("/x").expect("mkdir");
    h.set("/x", Limit::MemorySwapMax, 64 << 20).expect("memsw");
    assert_eq!(
        h.set("/x", Limit::MemoryMax, 128 << 20),
        Err(Refusal::MemoryAboveSwap("/x".into()))
    );
    h.set("/x", Limit::MemoryMax, 32 << 20).expect("below");
    assert_eq!(
        h.set("/x", Limit::MemorySwapMax, 16 << 20),
        Err(Refusal::MemoryAboveSwap("/x".into()))
    );
    h.set("/x", Limit::MemorySwapMax, u64::MAX)
        .expect("unlimited");
    h.set("/x", Limit::MemoryMax, 128 << 20)
        .expect("now it fits");
    let mut v = v2();
    v.enable("/", Controller::Memory).expect("enable");
    v.mkdir("/x").expect("mkdir");
    v.set("/x", Limit::SwapMax, 0).expect("no swap");
    v.set("/x", Limit::MemoryMax, 128 << 20)
        .expect("independent");
}
