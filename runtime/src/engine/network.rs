//! The one place where a container's network is prepared and released.
//!
//! The OCI runtime makes the namespace (or joins the one named in the config);
//! the engine does the rest in three steps around it:
//! 1. [`files`] and [`reserve`], before the OCI create: /etc/hosts,
//!    /etc/resolv.conf and /etc/hostname under the container's directory (bind
//!    mounts in its spec); in bridge mode its addresses and host ports are
//!    reserved (and the network's hosts files rewritten) under the network lock;
//! 2. [`prepare`], between create and start while the init waits: `none` gets
//!    loopback up; `bridge` gets its veth pairs, addresses and routes; `host`
//!    and `container:ID` need nothing;
//! 3. [`release`], when it stops, is removed, or is found with its owner dead:
//!    veths, leases, DNAT rules and hosts entries go.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use super::container::{Container, NetworkMode};
use super::{Engine, IoContext, Result, sys};
use crate::network::dns;

/// The files [`files`] bind-mounts, as the container's init layer holds their
/// mount points.
pub const INIT_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// Writes the DNS files of `c` and returns the mounts that put them in place.
pub fn files(e: &Engine, c: &Container) -> Result<Vec<Value>> {
    let dir = match &c.config.network {
        // The files of the container whose namespace it shares, as Docker does.
        NetworkMode::Container(other) => e.containers.dir(other),
        _ => e.containers.dir(&c.id),
    };
    if !matches!(c.config.network, NetworkMode::Container(_)) {
        let (hosts, resolv) = match &c.config.network {
            NetworkMode::Host => (
                std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| dns::hosts(&[], &[])),
                dns::host_resolv_conf(),
            ),
            _ => (
                dns::hosts(&[], &[]),
                dns::container_resolv_conf(&dns::host_resolv_conf()),
            ),
        };
        dns::write_in_place(&dir.join("hosts"), &hosts)?;
        dns::write_in_place(&dir.join("resolv.conf"), &resolv)?;
        dns::write_in_place(&dir.join("hostname"), &format!("{}\n", c.config.hostname))?;
    }
    Ok(["hosts", "resolv.conf", "hostname"]
        .iter()
        .map(|f| {
            json!({
                "destination": format!("/etc/{f}"),
                "type": "bind",
                "source": dir.join(f),
                "options": ["rbind", "rprivate"],
            })
        })
        .collect())
}

/// Bridge mode: reserves the addresses and host ports of `c` (and writes its
/// hosts file with them).
pub fn reserve(e: &Engine, c: &Container) -> Result<()> {
    let NetworkMode::Bridge(net) = &c.config.network else {
        return Ok(());
    };
    e.networks.reserve(&crate::network::Attach {
        container: &c.id,
        name: &c.name,
        hostname: &c.config.hostname,
        networks: std::slice::from_ref(net),
        ip: c.config.ip,
        ports: &c.config.ports,
        hosts_file: &e.containers.dir(&c.id).join("hosts"),
    })?;
    Ok(())
}

/// Prepares the network of container `c`, whose init (`pid`) waits to be started.
pub fn prepare(e: &Engine, c: &Container, pid: i32) -> Result<()> {
    match c.config.network {
        NetworkMode::None => loopback_up(pid),
        NetworkMode::Bridge(_) => Ok(e.networks.plumb(&c.id, pid)?),
        NetworkMode::Host | NetworkMode::Container(_) => Ok(()),
    }
}

/// Gives back what container `id` holds in the networks (nothing is fine).
pub fn release(e: &Engine, id: &str) -> Result<()> {
    Ok(e.networks.release(id, true)?)
}

/// [`release`] once the init of container `id` has exited: its namespace dies
/// with it, taking the veths along, unless a running `--network container:`
/// container still holds it.
pub fn release_after_exit(e: &Engine, id: &str) -> Result<()> {
    let held = e.containers.list()?.iter().any(|c| {
        c.config.network == NetworkMode::Container(id.to_string()) && c.state.init_running()
    });
    Ok(e.networks.release(id, held)?)
}

/// Sets `lo` up in the network namespace of `pid`.
pub fn loopback_up(pid: i32) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let target = File::open(&path).io("opening", &path)?;
    let own = File::open("/proc/thread-self/ns/net").io("opening", "/proc/thread-self/ns/net")?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| sys(&format!("setns {path}"), e))?;
    // A socket belongs to the namespace it was made in.
    // SAFETY: socket(2) with constants.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let made = nix::errno::Errno::last();
    setns(&own, CloneFlags::CLONE_NEWNET)
        .map_err(|e| sys("setns back to the engine's network namespace", e))?;
    if fd < 0 {
        return Err(sys("socket in the container's network namespace", made));
    }
    // SAFETY: fd was just returned by socket(2) and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an ifreq naming "lo"; SIOCGIFFLAGS fills the flags, SIOCSIFFLAGS reads them.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(sys("SIOCGIFFLAGS lo", nix::errno::Errno::last()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(sys("SIOCSIFFLAGS lo up", nix::errno::Errno::last()));
        }
    }
    Ok(())
}
