//! The runtime ↔ container-init channel: a SOCK_SEQPACKET socketpair carrying one
//! closed [`Message`] per datagram, as JSON. Each side has a typed sender named for
//! its intent; an unexpected message is a protocol error, never ignored.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result, SysContext};

/// Everything the two sides say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// stage 1 → runtime: I unshared a user namespace; write my id maps.
    MapIds,
    /// runtime → stage 1: the maps are written.
    IdsMapped,
    /// stage 1 → runtime: the container's init is this host pid.
    InitPid(i32),
    /// runtime → init: you are in your cgroup; go on. Carries the init's host pid.
    Proceed(i32),
    /// init → runtime: mounts are made; run the prestart and createRuntime hooks.
    RunHooks,
    /// runtime → init: the hooks ran.
    HooksDone,
    /// init → runtime: set up, waiting for `start` (or, for exec, about to exec).
    Ready,
    /// either side: it failed; this is why.
    Failed(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// A connected pair: (runtime end, init end).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .sys(|| "socketpair for the init channel".into())?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    /// The descriptor (so a child can close its copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }

    /// Sends one message.
    pub fn send(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Other(e.to_string()))?;
        send(self.0.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .sys(|| format!("sending {msg:?} to the init"))?;
        Ok(())
    }

    /// Receives one message; the peer closing is an error that says so.
    pub fn recv(&self) -> Result<Message> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.sys(|| "reading from the init channel".into())?,
            }
        };
        if n == 0 {
            return Err(Error::Init(
                "the process exited before finishing its setup".into(),
            ));
        }
        serde_json::from_slice(&buf[..n])
            .map_err(|e| Error::Other(format!("bad message on the init channel: {e}")))
    }

    /// Receives and requires `want`; a `Failed` becomes that error.
    pub fn expect(&self, want: Message) -> Result<()> {
        match self.recv()? {
            m if m == want => Ok(()),
            Message::Failed(why) => Err(Error::Init(why)),
            other => Err(Error::Other(format!(
                "init channel: expected {want:?}, got {other:?}"
            ))),
        }
    }

    /// Reports a failure to the other side (best effort: it may be gone).
    pub fn fail(&self, err: &Error) {
        let _ = self.send(&Message::Failed(err.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = pair().expect("pair");
        for m in [
            Message::MapIds,
            Message::InitPid(42),
            Message::Proceed(7),
            Message::Failed("x \"y\"".into()),
        ] {
            a.send(&m).expect("send");
            assert_eq!(b.recv().expect("recv"), m);
        }
        b.send(&Message::Failed("boom".into())).expect("send");
        assert_eq!(
            a.expect(Message::Ready).expect_err("failed").to_string(),
            "container init: boom"
        );
        drop(b);
        assert!(a.recv().is_err());
    }
}
