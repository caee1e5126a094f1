//! The one place where a container's network namespace is prepared.
//!
//! The OCI runtime makes the namespace (or joins the one named in the config);
//! between create and start, while the init waits, the engine sets it up from
//! the host side. Today's modes: `none` (a new namespace with loopback up),
//! `host` (the host's namespace: no new one) and `container:ID` (the other
//! container's namespace, joined by the runtime). Everything made inside a
//! container's own namespace goes away with it, so there is nothing to undo.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::{CloneFlags, setns};

use super::container::{Container, NetworkMode};
use super::{IoContext, Result, sys};

/// Prepares the network of container `c`, whose init (`pid`) waits to be started.
pub fn prepare(c: &Container, pid: i32) -> Result<()> {
    match c.config.network {
        NetworkMode::None => loopback_up(pid),
        NetworkMode::Host | NetworkMode::Container(_) => Ok(()),
    }
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
