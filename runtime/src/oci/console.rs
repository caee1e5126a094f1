//! Terminals: the pty is made inside the container (its devpts) and the master is
//! sent over `--console-socket` with SCM_RIGHTS, the pty's name as payload (runc's format).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::error::{Error, IoContext, Result, SysContext};

/// Connects to the console socket (in the runtime, before the init is cloned).
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).io("connecting to console socket", path)
}

/// Where the container's pty master goes: (the socket the container side sends
/// it on, the caller's end when the caller keeps it). A `--console-socket` is
/// connected to; without one, `keep_master` makes a socketpair whose other end
/// the caller receives the master on.
pub fn endpoints(
    console_socket: Option<&Path>,
    keep_master: bool,
) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    match console_socket {
        Some(p) => Ok((Some(connect(p)?), None)),
        None if keep_master => {
            let (ours, theirs) =
                UnixStream::pair().io("socketpair for the console", "(socketpair)")?;
            Ok((Some(theirs), Some(ours)))
        }
        None => Ok((None, None)),
    }
}

/// Makes a pty, sends its master to `socket`, and returns the slave.
pub fn create_and_send(socket: &UnixStream) -> Result<OwnedFd> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .sys(|| "opening /dev/ptmx".into())?;
    grantpt(&master).sys(|| "grantpt".into())?;
    unlockpt(&master).sys(|| "unlockpt".into())?;
    let name = ptsname_r(&master).sys(|| "ptsname".into())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(|| format!("opening {name}"))?;
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .sys(|| "sending the pty master to the console socket".into())?;
    Ok(slave)
}

/// Makes `slave` the controlling terminal and stdio of the calling process.
pub fn make_controlling(slave: OwnedFd) -> Result<()> {
    let raw = slave.into_raw_fd();
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(raw, target) } < 0 {
            return Err(Error::Sys {
                what: "dup2 of the pty".into(),
                source: nix::errno::Errno::last(),
            });
        }
    }
    if raw > 2 {
        // SAFETY: `raw` came from into_raw_fd above and is closed once.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    // SAFETY: TIOCSCTTY on fd 0, a terminal, with argument 0.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::Sys {
            what: "TIOCSCTTY".into(),
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}
