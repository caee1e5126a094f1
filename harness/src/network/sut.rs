//! The runtime's side: berth's network store in a temporary data root, in a
//! network namespace made for the case, with containers that are processes in
//! network namespaces of their own.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use berth::network::{Attach, Error, Networks, PortSpec, Proto};
use proptest_state_machine::StateMachineTest;

use super::reference::{NetRef, RefState};
use super::transitions::{Outcome, Publish, Transition};
use super::{assertions, reach};

/// The system under test.
pub struct Sut {
    dir: tempfile::TempDir,
    /// berth's networks of the case's data root.
    pub nets: Networks,
    /// The containers' processes.
    pub procs: BTreeMap<String, Child>,
    /// Each container's listener on [`reach::LISTEN_PORT`], inside its
    /// namespace (dropped before the container ends, so that it does not keep
    /// the namespace alive).
    pub listeners: BTreeMap<String, TcpListener>,
    /// What the last step came to.
    pub last: Option<Outcome>,
    /// The last step.
    pub step: Option<Transition>,
}

/// The outcome kind of a runtime error.
pub fn outcome(e: &Error) -> Outcome {
    match e {
        Error::Exists(_) => Outcome::NetworkExists,
        Error::BadName(_) => Outcome::BadName,
        Error::Overlaps { .. } => Outcome::Overlaps,
        Error::Invalid(what, _) if what == "--gateway" => Outcome::BadGateway,
        Error::NoSuchNetwork(_) => Outcome::NoSuchNetwork,
        Error::InUse { .. } => Outcome::NetworkInUse,
        Error::Exhausted { .. } => Outcome::Exhausted,
        Error::AddressInUse { .. } => Outcome::AddressUnavailable,
        Error::AddressOutside { .. } => Outcome::AddressOutside,
        Error::Connected { .. } => Outcome::AlreadyConnected,
        Error::NotConnected { .. } => Outcome::NotConnected,
        Error::PortInUse { .. } => Outcome::PortInUse,
        Error::NoFreePort { .. } => Outcome::NoFreePort,
        Error::Fault(_) => Outcome::Fault,
        other => Outcome::Other(other.to_string()),
    }
}

fn result(r: Result<(), Error>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => outcome(&e),
    }
}

/// `p` as a user types it after `-p`, parsed as the CLI parses it: one of
/// Docker's spellings, chosen by the port (the host address left out when it
/// is 0.0.0.0, `HOSTIP::PORT` or a host port of 0 for an ephemeral one, a
/// one-port range `A-A:B-B`, `/tcp` left out), so that the machine's ports
/// go through berth's parser too.
fn spec(p: &Publish) -> Vec<PortSpec> {
    let first = p.host_port.unwrap_or(0);
    let last = |from: u16| from + p.count - 1;
    let range = |from: u16| {
        if p.count > 1 || from.is_multiple_of(3) {
            format!("{from}-{}", last(from))
        } else {
            from.to_string()
        }
    };
    let ip = if p.host_ip.is_unspecified() && first.is_multiple_of(2) {
        String::new()
    } else {
        format!("{}:", p.host_ip)
    };
    let text = match p.host_port {
        Some(h) => format!("{ip}{}:{}", range(h), range(80)),
        // "0:80" (Docker's too) for UDP
        None if p.proto == berth_model::network::Proto::Udp => format!("{ip}0:{}", range(80)),
        // "80" alone, or "ADDR::80"
        None if ip.is_empty() => range(80),
        None => format!("{ip}:{}", range(80)),
    };
    let proto = match p.proto {
        berth_model::network::Proto::Tcp if first % 2 == 1 => "",
        berth_model::network::Proto::Tcp => "/tcp",
        berth_model::network::Proto::Udp => "/udp",
    };
    let text = format!("{text}{proto}");
    let parsed = PortSpec::parse(&text).unwrap_or_else(|e| panic!("-p {text}: {e}"));
    let want: Vec<PortSpec> = (0..p.count)
        .map(|i| PortSpec {
            host_ip: p.host_ip,
            host_port: p.host_port.map_or(0, |h| h + i),
            container_port: 80 + i,
            proto: match p.proto {
                berth_model::network::Proto::Tcp => Proto::Tcp,
                berth_model::network::Proto::Udp => Proto::Udp,
            },
        })
        .collect();
    assert_eq!(parsed, want, "-p {text} as berth parses it");
    want
}

/// The address the case's namespace has as a host's own (on lo).
pub const HOST_ADDRESS: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 69, 0, 1), 24);

impl Sut {
    /// A fresh data root, in a fresh network namespace for this thread.
    pub fn new() -> Sut {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("a network namespace for the case (needs root)");
        // A host has its loopback up (berth probes host ports by binding them).
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success(), "ip link set lo up failed");
        // An address of the host's own (a LAN's), which no network may overlap.
        let (a, p) = HOST_ADDRESS;
        let lan = Command::new("ip")
            .args(["addr", "add", &format!("{a}/{p}"), "dev", "lo"])
            .status()
            .expect("ip");
        assert!(lan.success(), "ip addr add {a}/{p} dev lo failed");
        // A small ephemeral range (this thread's namespace's), which the
        // ports asked for overlap: the first free one is picked, and runs out.
        let (lo, hi) = super::reach::EPHEMERAL;
        std::fs::write(
            "/proc/sys/net/ipv4/ip_local_port_range",
            format!("{lo} {hi}"),
        )
        .expect("the case namespace's ip_local_port_range");
        let dir = tempfile::tempdir().expect("temporary data root");
        let nets = Networks::open(dir.path(), None).expect("the network store");
        Sut {
            dir,
            nets,
            procs: BTreeMap::new(),
            listeners: BTreeMap::new(),
            last: None,
            step: None,
        }
    }

    /// A container's /etc/hosts as berth writes it (made empty first, as
    /// the engine makes it).
    pub fn hosts_file(&self, container: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{container}.hosts"));
        if !p.exists() {
            std::fs::write(&p, "").expect("hosts file");
        }
        p
    }

    /// The init pid of a running container.
    pub fn pid(&self, container: &str) -> Option<i32> {
        self.procs.get(container).map(|c| c.id() as i32)
    }

    fn attach<'a>(
        container: &'a str,
        networks: &'a [String],
        ip: Option<std::net::Ipv4Addr>,
        ports: &'a [PortSpec],
        hosts: &'a std::path::Path,
    ) -> Attach<'a> {
        Attach {
            container,
            name: container,
            hostname: container,
            networks,
            ip,
            ports,
            hosts_file: hosts,
        }
    }

    /// A process in a network namespace of its own.
    fn spawn(&mut self, container: &str) -> i32 {
        let mut cmd = Command::new("/bin/busybox");
        cmd.args(["sleep", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: unshare is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("a container process (busybox-static)");
        let pid = child.id() as i32;
        // The namespace exists once the process has unshared it: wait for that.
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        for _ in 0..1000 {
            if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() != own {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.procs.insert(container.to_string(), child);
        let l = reach::listen_in(pid).expect("a listener in the container");
        self.listeners.insert(container.to_string(), l);
        pid
    }

    /// Each running container's process.
    pub fn pids(&self) -> BTreeMap<String, i32> {
        self.procs
            .iter()
            .map(|(c, p)| (c.clone(), p.id() as i32))
            .collect()
    }

    fn end(&mut self, container: &str) {
        self.listeners.remove(container);
        if let Some(mut c) = self.procs.remove(container) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Applies `t` to the runtime; returns what came of it.
    pub fn step(&mut self, t: &Transition) -> Outcome {
        match t {
            Transition::Create {
                name,
                subnet,
                gateway,
                fault,
            } => {
                let sub = subnet.map(|s| berth::network::Subnet::new(s.addr, s.prefix));
                berth::fault::arm(*fault);
                let r = self.nets.create(name, sub, *gateway).map(|_| ());
                berth::fault::arm(None);
                result(r)
            }
            Transition::Remove { name } => result(self.nets.remove(name).map(|_| ())),
            Transition::Run {
                container,
                network,
                ip,
                publish,
                fault,
            } => {
                let pid = self.spawn(container);
                let hosts = self.hosts_file(container);
                let nets = [network.clone()];
                let ports: Vec<PortSpec> = publish.iter().flat_map(spec).collect();
                let a = Self::attach(container, &nets, *ip, &ports, &hosts);
                berth::fault::arm(*fault);
                let r = self
                    .nets
                    .reserve(&a)
                    .map(|_| ())
                    .and_then(|()| self.nets.plumb(container, pid));
                berth::fault::arm(None);
                if r.is_err() {
                    // As the engine: a container that cannot start gives back all.
                    let _ = self.nets.release(container, true);
                    self.end(container);
                }
                result(r)
            }
            Transition::Connect {
                container,
                network,
                ip,
            } => {
                let Some(pid) = self.pid(container) else {
                    return Outcome::Other(format!("{container} is not running"));
                };
                let hosts = self.hosts_file(container);
                let nets = [network.clone()];
                let a = Self::attach(container, &nets, *ip, &[], &hosts);
                result(self.nets.connect(&a, pid).map(|_| ()))
            }
            Transition::Disconnect { container, network } => {
                let pid = self.pid(container);
                result(self.nets.disconnect(container, container, network, pid))
            }
            Transition::Stop { container } => {
                // The engine's path after a container's exit: the veths go
                // with the namespace, the store gives back the rest.
                self.end(container);
                result(self.nets.release(container, false))
            }
            Transition::Crash { container } => {
                if let Some(c) = self.procs.get(container) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(c.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                self.end(container);
                Outcome::Ok
            }
            Transition::Recover { container } => {
                // The recovery of a later command: everything, links too.
                result(self.nets.release(container, true))
            }
        }
    }

    /// Removes everything the case made; returns what could not be removed.
    pub fn clean(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        // Every container the case may have run (a crashed one holds
        // leases and ports without a process).
        for c in (0..super::strategies::CONTAINERS).map(super::strategies::container) {
            self.end(&c);
            if let Err(e) = self.nets.release(&c, true) {
                left.push(format!("release {c}: {e}"));
            }
        }
        for n in self.nets.list().unwrap_or_default() {
            if let Err(e) = self.nets.remove(&n.name) {
                left.push(format!("network rm {}: {e}", n.name));
            }
        }
        left
    }
}

impl Default for Sut {
    fn default() -> Self {
        Sut::new()
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        // Also on a failed case, so that nothing is left behind (ip_forward's
        // record of this namespace included).
        let _ = self.clean();
    }
}

/// The bridge/IP state machine test.
pub struct NetMachine;

impl StateMachineTest for NetMachine {
    type SystemUnderTest = Sut;
    type Reference = NetRef;

    fn init_test(_ref_state: &RefState) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, ref_state: &RefState, t: Transition) -> Sut {
        let got = sut.step(&t);
        sut.last = Some(got.clone());
        sut.step = Some(t.clone());
        assertions::outcome(&t, ref_state.last.as_ref(), &got);
        sut
    }

    fn check_invariants(sut: &Sut, ref_state: &RefState) {
        assertions::state(sut, ref_state);
    }

    fn teardown(mut sut: Sut, _ref_state: RefState) {
        let left = sut.clean();
        assert!(left.is_empty(), "the case could not be cleaned: {left:?}");
        assertions::empty(&sut);
    }
}
