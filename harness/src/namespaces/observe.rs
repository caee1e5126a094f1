//! Reading the kernel: a process's namespaces, its pid in its own pid
//! namespace, and what a container's `/proc` lists.

use std::collections::BTreeSet;

use berth_model::namespaces::Kind;

/// The file name under /proc/PID/ns.
pub fn ns_file(k: Kind) -> &'static str {
    match k {
        Kind::Cgroup => "cgroup",
        Kind::Ipc => "ipc",
        Kind::Mnt => "mnt",
        Kind::Net => "net",
        Kind::Pid => "pid",
        Kind::User => "user",
        Kind::Uts => "uts",
        Kind::Time => "time",
    }
}

/// The namespace of `kind` that `pid` is in (`pid:[4026531836]`).
pub fn ns(pid: i32, kind: Kind) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{}", ns_file(kind)))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    crate::lifecycle::observe::alive(pid)
}

/// `pid`'s number in its own pid namespace (the last of `NSpid`).
pub fn own_number(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The pids the `/proc` mounted inside `init`'s root lists.
pub fn listed(init: i32) -> Option<BTreeSet<u32>> {
    let rd = std::fs::read_dir(format!("/proc/{init}/root/proc")).ok()?;
    Some(
        rd.flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect(),
    )
}
