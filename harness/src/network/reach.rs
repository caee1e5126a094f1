//! Real reachability: TCP connections from the case's host namespace and from
//! every container's namespace to every container address and to the
//! published ports on the host's addresses, each identified by the listener
//! that accepts it.
//!
//! Every running container listens on [`LISTEN_PORT`] (a socket the harness
//! made inside its namespace; see `Sut`). A probe connects from the namespace
//! it stands for, writes its number and is answered by whichever listener
//! accepts it, so a published port that goes to the wrong container counts as
//! a difference, not only one that goes nowhere. A connection that is dropped
//! (the networks are isolated from each other) cannot be told from a slow one,
//! so a probe the model says is dropped is given [`DROPPED_AFTER`], one it says
//! is answered [`ANSWER_WITHIN`]; nothing is asserted about time, only about
//! where a connection landed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::reference::RefState;
use super::strategies::NETWORKS;

/// The port every container listens on.
pub const LISTEN_PORT: u16 = 80;

/// The host ports the strategies publish: 47100-47103 asked for (and the
/// next for a range of two), the ephemeral range's.
pub const HOST_PORTS: std::ops::Range<u16> = 47100..47105;

/// The ephemeral port range of the case's namespace (ip_local_port_range).
pub const EPHEMERAL: (u16, u16) = (47103, 47104);

/// How long a connection the model says goes nowhere is waited for.
pub const DROPPED_AFTER: Duration = Duration::from_millis(250);

/// How long a connection the model says is answered may take.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One TCP connection: from the case's host namespace (`None`) or a
/// container's, to an address and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    /// Where it starts.
    pub from: Option<String>,
    /// Where it goes.
    pub to: SocketAddrV4,
}

/// Who answered each probe (`None`: nobody).
pub type Answers = BTreeMap<Probe, Option<String>>;

/// The probes worth making in state `r`: from the host and from each running
/// container to every container address, and to the host ports on the
/// addresses of the host it can reach by a route of its own (from the host:
/// loopback and every gateway; from a container: the gateways of its
/// networks).
pub fn probes(r: &RefState) -> Vec<Probe> {
    let m = &r.model;
    let endpoints: BTreeSet<Ipv4Addr> = m.endpoints().iter().map(|e| e.ip).collect();
    let mut out = Vec::new();
    let froms = std::iter::once(None).chain(r.running.iter().map(|c| Some(c.clone())));
    for from in froms {
        for ip in &endpoints {
            out.push(Probe {
                from: from.clone(),
                to: SocketAddrV4::new(*ip, LISTEN_PORT),
            });
        }
        let hosts: BTreeSet<Ipv4Addr> = match &from {
            // Loopback and every network's gateway, with endpoints or not.
            None => NETWORKS
                .iter()
                .chain([&super::reference::DEFAULT])
                .filter_map(|n| m.network(n))
                .map(|n| n.gateway)
                .chain([Ipv4Addr::LOCALHOST])
                .collect(),
            // The gateways of its own networks.
            Some(c) => m
                .endpoints()
                .iter()
                .filter(|e| &e.container == c)
                .filter_map(|e| m.network(&e.network).map(|n| n.gateway))
                .collect(),
        };
        for ip in hosts {
            for port in HOST_PORTS {
                out.push(Probe {
                    from: from.clone(),
                    to: SocketAddrV4::new(ip, port),
                });
            }
        }
    }
    out
}

/// Who the model says answers each probe: the container a connection lands
/// in, when it lands on the port its listener has.
pub fn expected(r: &RefState, probes: &[Probe]) -> Answers {
    probes
        .iter()
        .map(|p| {
            let lands = r
                .model
                .tcp_lands(p.from.as_deref(), *p.to.ip(), p.to.port());
            let who = lands
                .filter(|(c, port)| *port == LISTEN_PORT && r.running.contains(c))
                .map(|(c, _)| c);
            (p.clone(), who)
        })
        .collect()
}

/// The source ports of the probes from the host, taken in turn: never one
/// a probe goes to (a probe could connect to itself), and not again within a
/// case (a new connection with an old one's addresses and ports would follow
/// the old one's conntrack entry, and its DNAT, to where that one went).
const SOURCE_PORTS: std::ops::Range<u32> = 48000..64000;

fn source_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (SOURCE_PORTS.start + n % (SOURCE_PORTS.end - SOURCE_PORTS.start)) as u16
}

/// A TCP connection to `to` within `wait`, from `source` when given.
fn connect(source: Option<u16>, to: SocketAddrV4, wait: Duration) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(port) = source {
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    }
    s.connect_timeout(&SocketAddr::V4(to).into(), wait)?;
    Ok(s.into())
}

/// Closes with a reset rather than a FIN, so that no socket outlives the
/// probe and keeps a container's namespace alive.
fn abort_on_close(fd: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Moves the calling thread into the network namespace of process `pid`.
fn enter(pid: i32) -> Result<(), String> {
    let ns =
        File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("netns of {pid}: {e}"))?;
    // SAFETY: a namespace fd, open for the call; only this thread moves.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns into the netns of {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A listener on [`LISTEN_PORT`] inside the network namespace of `pid` (made
/// by a thread that enters it; the socket stays in that namespace).
pub fn listen_in(pid: i32) -> Result<TcpListener, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(pid)?;
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, LISTEN_PORT))
                .map_err(|e| format!("listen on {LISTEN_PORT} in {pid}'s netns: {e}"))?;
            l.set_nonblocking(true)
                .map_err(|e| format!("nonblocking listener: {e}"))?;
            Ok(l)
        })
        .join()
        .unwrap_or_else(|_| Err("the listening thread panicked".into()))
    })
}

/// Makes `probes` for real: `pids` gives each container's process, and
/// `listeners` each one's listener; `patience` how long each probe is given.
/// Each connection writes the round and its number; the listeners are then
/// drained until every connected probe is accounted for.
pub fn observe(
    probes: &[Probe],
    patience: impl Fn(&Probe) -> Duration,
    pids: &BTreeMap<String, i32>,
    listeners: &BTreeMap<String, TcpListener>,
) -> Result<Answers, String> {
    static ROUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = |i: usize| (u64::from(round) << 32) | i as u64;
    // One thread per probe, in the namespace it stands for.
    let connected: Vec<Result<Option<TcpStream>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let wait = patience(p);
                let pid = p.from.as_ref().map(|c| pids.get(c).copied());
                s.spawn(move || -> Result<Option<TcpStream>, String> {
                    match pid {
                        None => {}
                        Some(None) => return Err(format!("{p:?}: its container does not run")),
                        Some(Some(pid)) => enter(pid)?,
                    }
                    // From the host, each probe has a source port of its
                    // own: the case's ephemeral range is two ports (berth's
                    // to hand out), which the probes would run out of, and a
                    // probe to a port of it could connect to itself.
                    let source = pid.is_none().then(source_port);
                    let Ok(mut c) = connect(source, p.to, wait) else {
                        return Ok(None);
                    };
                    abort_on_close(&c);
                    c.write_all(&tag(i).to_be_bytes())
                        .map_err(|e| format!("{p:?}: write after connecting: {e}"))?;
                    Ok(Some(c))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a probe panicked".into())))
            .collect()
    });
    let mut answers = Answers::new();
    let mut open = BTreeSet::new();
    let mut streams = Vec::new();
    for (i, (p, c)) in probes.iter().zip(connected).enumerate() {
        match c? {
            Some(s) => {
                open.insert(i);
                streams.push(s);
            }
            None => {
                answers.insert(p.clone(), None);
            }
        }
    }
    // Accept until every connected probe has said who it is.
    let until = Instant::now() + ANSWER_WITHIN;
    while !open.is_empty() && Instant::now() < until {
        let mut idle = true;
        for (c, l) in listeners {
            while let Ok((mut s, _)) = l.accept() {
                idle = false;
                abort_on_close(&s);
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(ANSWER_WITHIN));
                let mut b = [0u8; 8];
                if s.read_exact(&mut b).is_err() {
                    continue;
                }
                let t = u64::from_be_bytes(b);
                let i = (t & 0xffff_ffff) as usize;
                if t >> 32 == u64::from(round) && open.remove(&i) {
                    answers.insert(probes[i].clone(), Some(c.clone()));
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if let Some(i) = open.first() {
        return Err(format!(
            "{:?} connected, but no listener accepted it within {ANSWER_WITHIN:?}",
            probes[*i]
        ));
    }
    drop(streams);
    Ok(answers)
}

/// The differences between who answered and who the model says answers, one
/// line per probe.
pub fn differences(want: &Answers, got: &Answers) -> Vec<String> {
    let name = |f: &Option<String>| f.clone().unwrap_or_else(|| "the host".into());
    let who = |w: &Option<String>| w.clone().unwrap_or_else(|| "nobody".into());
    want.iter()
        .filter(|(p, w)| got.get(*p) != Some(*w))
        .map(|(p, w)| {
            format!(
                "TCP from {} to {}: the model says {} answers, {}",
                name(&p.from),
                p.to,
                who(w),
                match got.get(p) {
                    Some(g) => format!("{} did", who(g)),
                    None => "not probed".into(),
                }
            )
        })
        .collect()
}
