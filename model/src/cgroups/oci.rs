//! From the OCI runtime spec's `linux.resources` to cgroup files, per version.
//!
//! The table is what runc (and berth's runtime) write; the conversions are the ones
//! the v2 files need: shares (2..262144) become a weight (1..10000), blkio weight
//! (10..1000) becomes an io weight (1..10000), and OCI's `memory.swap` (memory +
//! swap) becomes v2's `memory.swap.max` (swap alone).

/// One `linux.resources` field and the files it is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The JSON path under `linux.resources`.
    pub field: &'static str,
    /// The v1 file (in the controller's hierarchy).
    pub v1: &'static str,
    /// The v2 file.
    pub v2: &'static str,
}

/// Every field the runtime maps.
pub const MAPPINGS: &[Mapping] = &[
    Mapping {
        field: "memory.limit",
        v1: "memory.limit_in_bytes",
        v2: "memory.max",
    },
    Mapping {
        field: "memory.reservation",
        v1: "memory.soft_limit_in_bytes",
        v2: "memory.low",
    },
    Mapping {
        field: "memory.swap",
        v1: "memory.memsw.limit_in_bytes",
        v2: "memory.swap.max",
    },
    Mapping {
        field: "cpu.shares",
        v1: "cpu.shares",
        v2: "cpu.weight",
    },
    Mapping {
        field: "cpu.quota",
        v1: "cpu.cfs_quota_us",
        v2: "cpu.max",
    },
    Mapping {
        field: "cpu.period",
        v1: "cpu.cfs_period_us",
        v2: "cpu.max",
    },
    Mapping {
        field: "cpu.cpus",
        v1: "cpuset.cpus",
        v2: "cpuset.cpus",
    },
    Mapping {
        field: "cpu.mems",
        v1: "cpuset.mems",
        v2: "cpuset.mems",
    },
    Mapping {
        field: "pids.limit",
        v1: "pids.max",
        v2: "pids.max",
    },
    Mapping {
        field: "blockIO.weight",
        v1: "blkio.weight",
        v2: "io.weight",
    },
    Mapping {
        field: "hugepageLimits[].limit",
        v1: "hugetlb.<size>.limit_in_bytes",
        v2: "hugetlb.<size>.max",
    },
];

/// The mapping of `field`, if the runtime maps it.
pub fn mapping(field: &str) -> Option<&'static Mapping> {
    MAPPINGS.iter().find(|m| m.field == field)
}

/// cpu shares to a v2 weight: 2 → 1, 1024 → 39, 262144 → 10000 (0: unset).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
    }
}

/// blkio weight to a v2 io weight: 10 → 1, 1000 → 10000 (0: unset).
pub fn blkio_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        0
    } else {
        1 + ((weight.clamp(10, 1000) - 10) * 9999) / 990
    }
}

/// OCI's memory+swap to v2's swap alone (`None`: unlimited, from OCI's -1).
pub fn swap_max(memory_plus_swap: i64, memory: i64) -> Option<u64> {
    if memory_plus_swap < 0 {
        None
    } else {
        Some((memory_plus_swap - memory.max(0)).max(0) as u64)
    }
}

/// A pids limit as the file takes it (`None`: "max", from OCI's 0 or -1).
pub fn pids_max(limit: i64) -> Option<u64> {
    (limit > 0).then_some(limit as u64)
}
