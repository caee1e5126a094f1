//! Being the other end of a container's pty: receiving the master over a socket
//! (runc's console-socket format) and copying between it and this process's
//! stdin and stdout, with the window size passed on.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{self, SetArg};

use crate::oci::error::{Error, Result};

/// Receives the pty master sent over `sock`.
pub fn recv_master(sock: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Error::Sys {
        what: "receiving the pty master".into(),
        source: e,
    })?;
    for c in msg.cmsgs().map_err(|e| Error::Sys {
        what: "reading control messages".into(),
        source: e,
    })? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(Error::Other("no pty master received".into()))
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::Relaxed);
}

/// Copies this terminal's window size (of fd `from`) to the pty `to`; the kernel
/// then sends SIGWINCH to the pty's foreground process group.
pub fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a winsize the kernel fills and reads.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Copies the pty `master` to stdout, and stdin to it when `input`, until the
/// container's side of the pty is closed. A terminal stdin is put in raw mode
/// (so Ctrl-C reaches the container as a byte, and its line discipline makes the
/// signal) and restored after; its window size is passed on now and on SIGWINCH.
pub fn proxy(master: OwnedFd, input: bool) {
    let stdin = std::io::stdin();
    let stdin_tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
    let saved = if input && stdin_tty {
        termios::tcgetattr(stdin.as_fd()).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
    }
    let size_from = [0, 1]
        .into_iter()
        // SAFETY: isatty on the standard descriptors.
        .find(|fd| unsafe { libc::isatty(*fd) } == 1);
    if let Some(fd) = size_from {
        copy_window_size(fd, master.as_raw_fd());
        // SAFETY: a handler that only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_winch as *const () as usize;
            libc::sigaction(libc::SIGWINCH, &sa, std::ptr::null_mut());
        }
    }
    let mut m = std::fs::File::from(master);
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    let mut stdin_open = input;
    loop {
        if WINCH.swap(false, Ordering::Relaxed)
            && let Some(fd) = size_from
        {
            copy_window_size(fd, m.as_raw_fd());
        }
        let mut fds = vec![PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // EINTR (a SIGWINCH) comes back round to the size check.
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let m_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        let in_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if m_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match m.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if in_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // End of input: the pty's EOF character, as a terminal would send it.
                    let _ = m.write_all(&[4]);
                }
                Ok(n) => {
                    let _ = m.write_all(&buf[..n]);
                }
            }
        }
    }
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
    }
}
