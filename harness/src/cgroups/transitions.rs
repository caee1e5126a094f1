//! What can happen, and what may come of it.

use berth_model::cgroups::IoKey;
use berth_model::cgroups::devices::Rule;

/// A limit the machine sets (`linux.resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetLimit {
    /// `memory.limit` in bytes
    Memory(u64),
    /// `pids.limit`
    Pids(u64),
    /// `cpu.shares`
    Shares(u64),
    /// `cpu.quota` in µs, with `cpu.period` 100000 (Docker's `--cpus`)
    Quota(u64),
    /// `memory.reservation` in bytes (Docker's `--memory-reservation`)
    Reservation(u64),
    /// `hugepageLimits` for 2 MiB pages, in bytes
    Hugetlb(u64),
    /// `linux.resources.unified`: a v2 file and its value (pids.max,
    /// memory.max or cgroup.freeze), sometimes with a key berth must refuse
    /// (one naming another directory or a cgroup core file)
    Unified {
        /// the file
        key: &'static str,
        /// its value
        value: u64,
        /// a key to refuse, beside it
        bad: Option<&'static str>,
    },
    /// `cpu.cpus` as a mask of cpus (bit n: cpu n)
    Cpus(u64),
    /// `cpu.mems` as a mask of memory nodes
    Mems(u64),
    /// `cpu.idle` (0 or 1)
    Idle(u64),
    /// `blockIO.weight` (10..1000)
    IoWeight(u64),
    /// One of `blockIO`'s throttles, of the machine's disk or of a disk it
    /// does not have; a rate of 0 is none (OCI, as v1 takes it)
    Throttle {
        /// which of the four
        key: IoKey,
        /// the machine's disk (or one it does not have)
        disk: bool,
        /// bytes or operations per second
        rate: u64,
    },
    /// `memory.limit` and `memory.swap` (memory and swap together; `None`:
    /// -1, unlimited), as Docker's `--memory` with `--memory-swap`
    Swap {
        /// bytes of memory
        limit: u64,
        /// bytes of memory and swap
        total: Option<u64>,
    },
}

/// One step. Paths are relative to the case's cgroup; processes are named
/// by small numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Makes a container's cgroup (`mkdir -p`, controllers enabled on the way).
    Make(String),
    /// Puts a process into it (a new one, or moves a running one).
    Add(u32, String),
    /// Writes a limit.
    Set(String, SetLimit),
    /// Freezes it.
    Freeze(String),
    /// Thaws it.
    Thaw(String),
    /// Sets its device rules (`linux.resources.devices`, in order).
    Devices(String, Vec<Rule>),
    /// Removes it and the empty cgroups below it.
    Remove(String),
    /// A process ends (SIGKILL).
    Exit(u32),
}

/// What came of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// ENOENT: no such cgroup.
    NoSuchCgroup,
    /// The limit's file is not there (controller not enabled, v2).
    NoSuchFile,
    /// EBUSY: v2's no-internal-process rule.
    InternalProcess,
    /// EBUSY on removal, or (v1) a cpuset narrower than a child's.
    Busy,
    /// EINVAL: v1's cpu quota above the one in force over it, `a`
    /// written to the device rules of a cgroup with children, v1's memory
    /// limit above its memory+swap limit; or (berth, before writing) a
    /// memory+swap limit below the memory limit.
    Invalid,
    /// EPERM: v1's device rule giving more than the parent has.
    NotPermitted,
    /// ENODEV: a throttle for a block device the machine does not have.
    NoDevice,
    /// ERANGE: a cpu or node beyond the machine's possible ones.
    OutOfRange,
    /// EACCES (v1): a cpuset wider than its parent's.
    Denied,
    /// berth refuses, before writing, what this kernel cannot do (v1's
    /// blkio weight without a CFQ/BFQ weight file, unified keys on v1).
    Unsupported,
    /// berth refuses the input before writing anything (a unified key it
    /// does not allow).
    BadInput,
    /// Anything else: never expected.
    Other(String),
}
