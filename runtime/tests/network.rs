//! Bridge networking seen from inside containers and from the kernel: networks,
//! name resolution and isolation, the four modes, published ports (from the
//! host, its loopback, another host and other containers), fifty concurrent
//! runs, crash repair, and the kernel state against berth-model's bridge/IP part.
//!
//! Each test first moves its thread into a network namespace of its own (the
//! `berth` processes it starts inherit it): bridges, veths, nftables tables and
//! ip_forward all live there, so tests run side by side, on the host as in the
//! VM, and send traffic only to addresses inside namespaces they made.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_model::network::{Mode, Networks as Model, Port, Proto, Subnet as MSubnet};
use common::cli::Berth;
use common::need_root;
use nix::sched::{CloneFlags, setns, unshare};

/// Skips (true) in the cgroup v1 VM: nothing here depends on the cgroup
/// layout, and the v2 VM runs these tests (VM time is CI's scarcest resource).
fn need_root_skip_v1_vm() -> bool {
    if need_root() {
        return true;
    }
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if std::env::var_os("BERTH_IN_VM").is_some() && !v2 {
        eprintln!("skipped in the cgroup v1 VM: the v2 VM runs the network tests");
        return true;
    }
    false
}

/// Moves this test's thread into a new network namespace with loopback up.
fn private_netns() {
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    ip(&["link", "set", "lo", "up"]);
}

/// `ip ARGS` (in this thread's namespace); its output.
fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The names of this namespace's links.
fn links() -> BTreeSet<String> {
    ip(&["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// `nft list ruleset` of this namespace.
fn ruleset() -> String {
    let o = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An HTTP GET of `/` from `addr` (this namespace); the body, or None.
fn http_get(addr: (Ipv4Addr, u16)) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    r.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Retries `f` until it gives Some (a server takes a moment to listen).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inspect(b: &Berth, c: &str, template: &str) -> String {
    b.ok(&["inspect", "-f", template, c]).trim().to_string()
}

/// The command line of a busybox httpd serving `body` on port 80.
fn httpd(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// How many endpoints and published ports `b`'s network state holds.
fn held(b: &Berth) -> (usize, usize) {
    let s = state(b);
    let n = |k: &str| s[k].as_array().map(Vec::len).unwrap_or(0);
    (n("endpoints"), n("ports"))
}

/// The network state file of `b`'s root.
fn state(b: &Berth) -> serde_json::Value {
    let p = b.dir.path().join("data/network/state.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_default()).unwrap_or_default()
}

#[test]
fn networks_names_isolation_and_modes() {
    if need_root_skip_v1_vm() {
        return;
    }
    private_netns();
    let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
    let links_before = links();
    let b = Berth::with_bridge("10.220.0.0/24");
    b.ok(&["network", "create", "front", "--subnet", "10.221.0.0/24"]);
    b.ok(&["network", "create", "back"]);
    // Refusals: one line naming the value, nothing made.
    for (args, want) in [
        (
            vec!["network", "create", "dup", "--subnet", "10.221.0.128/25"],
            "subnet 10.221.0.128/25 overlaps network front (10.221.0.0/24)",
        ),
        (
            vec!["network", "create", "front"],
            "network with name front already exists",
        ),
        (
            vec!["network", "create", "bad/name"],
            "invalid network name \"bad/name\"",
        ),
        (
            vec![
                "network",
                "create",
                "gw",
                "--subnet",
                "10.223.0.0/24",
                "--gateway",
                "10.1.0.1",
            ],
            "invalid --gateway: 10.1.0.1 is not a host address of 10.223.0.0/24",
        ),
        (
            vec!["network", "create", "odd", "--subnet", "10.223.0.1/24"],
            "invalid subnet: \"10.223.0.1/24\": host bits set",
        ),
    ] {
        let o = b.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let ls = b.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls, "front\nback\n");
    let back_subnet = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "back",
    ]);
    assert_eq!(
        back_subnet.trim(),
        "10.89.0.0/24",
        "the first free 10.89.N.0/24"
    );

    for (name, net) in [("web1", "front"), ("web2", "front"), ("other", "back")] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "busybox",
            "sleep",
            "600",
        ]);
    }
    // Inside: eth0 with the recorded address and Docker's MAC, the route via the gateway.
    let ip1 = inspect(&b, "web1", "{{.NetworkSettings.IPAddress}}");
    let ip2 = inspect(&b, "web2", "{{.NetworkSettings.IPAddress}}");
    let ip3 = inspect(&b, "other", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        (ip1.as_str(), ip2.as_str(), ip3.as_str()),
        ("10.221.0.2", "10.221.0.3", "10.89.0.2")
    );
    let inside = b.ok(&[
        "exec",
        "web1",
        "sh",
        "-c",
        "cat /sys/class/net/eth0/address; ip -4 addr show eth0; ip route",
    ]);
    assert!(inside.starts_with("02:42:0a:dd:00:02\n"), "{inside}");
    assert!(inside.contains("inet 10.221.0.2/24"), "{inside}");
    assert!(
        inside.contains("default via 10.221.0.1 dev eth0"),
        "{inside}"
    );
    assert_eq!(
        inspect(&b, "web1", "{{.NetworkSettings.MacAddress}}"),
        "02:42:0a:dd:00:02"
    );
    // Peers by name and by address; the other network is out of reach.
    let hosts = b.ok(&["exec", "web1", "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.221.0.3\tweb2 "), "{hosts}");
    assert!(!hosts.contains("other"), "{hosts}");
    b.ok(&["exec", "web1", "ping", "-c1", "-W3", "web2"]);
    b.ok(&["exec", "web2", "ping", "-c1", "-W3", &ip1]);
    let o = b.run(&["exec", "web1", "ping", "-c1", "-W2", &ip3]);
    assert_ne!(o.status.code(), Some(0), "another network is reachable");
    // In use: refused. connect/disconnect of a running container.
    let o = b.run(&["network", "rm", "front"]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("network front has active endpoints: web1, web2")
    );
    b.ok(&["network", "connect", "back", "web1"]);
    let eth1 = b.ok(&["exec", "web1", "ip", "-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("inet 10.89.0.3/24"), "{eth1}");
    b.ok(&["exec", "web1", "ping", "-c1", "-W3", "other"]);
    assert!(
        b.ok(&["exec", "other", "cat", "/etc/hosts"])
            .contains("10.89.0.3\tweb1 ")
    );
    b.ok(&["network", "disconnect", "back", "web1"]);
    assert_ne!(
        b.run(&["exec", "web1", "ip", "link", "show", "eth1"])
            .status
            .code(),
        Some(0)
    );
    assert!(
        !b.ok(&["exec", "other", "cat", "/etc/hosts"])
            .contains("web1")
    );

    // The default network: its own subnet, DNS files, the hostname.
    let out = b.ok(&["run", "--rm", "--name", "dflt", "busybox", "sh", "-c",
        "ip -4 addr show eth0 | grep inet; cat /etc/hostname; grep -c '^nameserver 127' /etc/resolv.conf; hostname"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("inet 10.220.0.2/24"), "{out}");
    assert_eq!(lines[1], lines[3], "{out}");
    assert_eq!(
        lines[2], "0",
        "a loopback nameserver reached the container: {out}"
    );
    // none: loopback only. host: this namespace's links. container: web1's eth0.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net"
        ]),
        "lo\n"
    );
    let host_view: BTreeSet<String> = b
        .ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "ls",
            "/sys/class/net",
        ])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(host_view, links());
    b.ok(&[
        "run",
        "-d",
        "--name",
        "joiner",
        "--network",
        "container:web1",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        b.ok(&["exec", "joiner", "cat", "/sys/class/net/eth0/address"]),
        "02:42:0a:dd:00:02\n"
    );
    assert_eq!(
        b.ok(&["exec", "joiner", "hostname"]),
        b.ok(&["exec", "web1", "hostname"])
    );

    // A /29: five addresses (.2-.6), then a clear refusal; a fixed one after a release.
    b.ok(&["network", "create", "tiny", "--subnet", "10.222.0.0/29"]);
    for i in 0..5 {
        b.ok(&[
            "run",
            "-d",
            "--name",
            &format!("t{i}x"),
            "--network",
            "tiny",
            "busybox",
            "sleep",
            "600",
        ]);
    }
    let o = b.run(&["run", "--rm", "--network", "tiny", "busybox", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err.contains("no available IPv4 address on network tiny (10.222.0.0/29)"),
        "{err}"
    );
    let o = b.run(&[
        "run",
        "--rm",
        "--network",
        "tiny",
        "--ip",
        "10.222.0.9",
        "busybox",
        "true",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in network tiny's subnet"));
    b.ok(&["rm", "-f", "t2x"]);
    let got = b.ok(&[
        "run",
        "--rm",
        "--network",
        "tiny",
        "--ip",
        "10.222.0.4",
        "busybox",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(got.contains("inet 10.222.0.4/29"), "{got}");

    // prune: only networks no container uses or names.
    b.ok(&["network", "create", "spare", "--subnet", "10.224.0.0/24"]);
    assert_eq!(
        b.ok(&["network", "prune", "-f"]),
        "Deleted Networks:\nspare\n"
    );
    // Everything goes: no veth, no lease, no table; ip_forward as it was.
    for c in b.ok(&["ps", "-a", "-q"]).lines() {
        b.ok(&["rm", "-f", c]);
    }
    assert_eq!(held(&b), (0, 0));
    for n in ["front", "back", "tiny", "bridge"] {
        b.ok(&["network", "rm", n]);
    }
    assert_eq!(links(), links_before);
    assert_eq!(ruleset(), "");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read"),
        forward_before
    );
}

/// A process in a namespace of its own that plays another host: a veth
/// `vout` (192.168.77.1, in the test's namespace) to `vin` (192.168.77.2, in its).
struct OtherHost(std::process::Child);

impl OtherHost {
    fn new() -> OtherHost {
        // SAFETY: unshare in the child before exec.
        let child = unsafe {
            Command::new("/bin/busybox")
                .args(["sleep", "600"])
                .pre_exec(|| unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from))
                .spawn()
                .expect("spawn")
        };
        let h = OtherHost(child);
        let pid = h.0.id().to_string();
        // The child may not have unshared yet: wait until its namespace differs.
        let own = std::fs::read_link("/proc/thread-self/ns/net").expect("ns");
        eventually("the other host's namespace", || {
            (std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()? != own).then_some(())
        });
        ip(&["link", "add", "vout", "type", "veth", "peer", "name", "vin"]);
        ip(&["link", "set", "vin", "netns", &pid]);
        ip(&["addr", "add", "192.168.77.1/24", "dev", "vout"]);
        ip(&["link", "set", "vout", "up"]);
        h.ip(&["addr", "add", "192.168.77.2/24", "dev", "vin"]);
        h.ip(&["link", "set", "vin", "up"]);
        h.ip(&["link", "set", "lo", "up"]);
        h
    }

    /// `ip ARGS` in the other host's namespace.
    fn ip(&self, args: &[&str]) {
        let ns = File::open(format!("/proc/{}/ns/net", self.0.id())).expect("ns");
        // SAFETY: setns in the child before exec.
        let o = unsafe {
            Command::new("ip")
                .args(args)
                .pre_exec(move || {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                })
                .output()
                .expect("ip in the other host")
        };
        assert!(o.status.success(), "ip {args:?} in the other host: {o:?}");
    }
}

/// A process that is killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl OtherHost {
    /// [`http_get`] from the other host (a thread that joins its namespace).
    fn http_get(&self, addr: (Ipv4Addr, u16)) -> Option<String> {
        let ns = File::open(format!("/proc/{}/ns/net", self.0.id())).expect("ns");
        std::thread::spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            http_get(addr)
        })
        .join()
        .expect("thread")
    }

    /// An httpd on `port` in the other host whose /cgi-bin/ip answers the
    /// address the request came from (files under `dir`).
    fn serve_remote_addr(&self, dir: &std::path::Path, port: u16) -> KillOnDrop {
        let www = dir.join("other-www");
        std::fs::create_dir_all(www.join("cgi-bin")).expect("mkdir");
        let cgi = www.join("cgi-bin/ip");
        std::fs::write(
            &cgi,
            "#!/bin/busybox sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .expect("cgi");
        std::fs::set_permissions(&cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let ns = File::open(format!("/proc/{}/ns/net", self.0.id())).expect("ns");
        // SAFETY: setns in the child before exec.
        let child = unsafe {
            Command::new("/bin/busybox")
                .args(["httpd", "-f", "-p", &port.to_string(), "-h"])
                .arg(&www)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .pre_exec(move || {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                })
                .spawn()
                .expect("httpd")
        };
        KillOnDrop(child)
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Command::new("ip").args(["link", "del", "vout"]).output();
    }
}

#[test]
fn published_ports_answer_from_everywhere() {
    if need_root_skip_v1_vm() {
        return;
    }
    private_netns();
    let b = Berth::with_bridge("10.230.0.0/24");
    let other = OtherHost::new();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        &httpd("hello-web"),
    ]);
    // From the host's loopback, from its own address, from another host.
    let body = eventually("127.0.0.1:8080", || http_get((Ipv4Addr::LOCALHOST, 8080)));
    assert_eq!(body, "hello-web\n");
    assert_eq!(
        http_get((Ipv4Addr::new(192, 168, 77, 1), 8080)).as_deref(),
        Some("hello-web\n")
    );
    assert_eq!(
        other
            .http_get((Ipv4Addr::new(192, 168, 77, 1), 8080))
            .as_deref(),
        Some("hello-web\n")
    );
    // From another container, through the host's address and the gateway (hairpin).
    for url in ["http://192.168.77.1:8080/", "http://10.230.0.1:8080/"] {
        // (Debian's static busybox wget crashes with -T.)
        let o = b.run(&["run", "--rm", "busybox", "wget", "-q", "-O", "-", url]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "hello-web\n",
            "{url}: {o:?}"
        );
    }
    // Outbound NAT: the other host sees a container's connection come from the
    // host's address (a CGI of its httpd prints the peer).
    let _srv = other.serve_remote_addr(b.dir.path(), 7000);
    let seen = eventually("the other host's httpd", || {
        let o = b.run(&[
            "run",
            "--rm",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://192.168.77.2:7000/cgi-bin/ip",
        ]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    // (busybox httpd listens on IPv6 too, so it writes a mapped address.)
    let peer = seen
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']');
    assert_eq!(peer, "192.168.77.1", "{seen}");
    // ps, port, inspect.
    let ps = b.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps, "0.0.0.0:8080->80/tcp\n");
    assert_eq!(b.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(b.ok(&["port", "web", "80"]), "0.0.0.0:8080\n");
    assert_eq!(
        inspect(
            &b,
            "web",
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}"
        ),
        "8080"
    );
    // An ephemeral port on loopback only.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "eph",
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sh",
        "-c",
        &httpd("hello-eph"),
    ]);
    let bound = b.ok(&["port", "eph", "80/tcp"]);
    let port: u16 = bound
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{bound}"));
    assert_eq!(
        eventually("the ephemeral port", || http_get((
            Ipv4Addr::LOCALHOST,
            port
        ))),
        "hello-eph\n"
    );
    assert_eq!(
        http_get((Ipv4Addr::new(192, 168, 77, 1), port)),
        None,
        "published on loopback only"
    );
    // -P: every port the image exposes, each on an ephemeral host port.
    let mut img =
        berth::image::build::busybox(std::path::Path::new("/bin/busybox")).expect("image");
    img.config(
        "ExposedPorts",
        serde_json::json!({"80/tcp": {}, "53/udp": {}}),
    )
    .config(
        "Cmd",
        serde_json::json!(["sh", "-c", httpd("hello-exposed")]),
    );
    let tar = b.dir.path().join("exposed.tar");
    berth::image::build::ImageBuilder::write_oci_tar(
        &[(&img, Some("exposed:latest"))],
        File::create(&tar).expect("create"),
    )
    .expect("write");
    b.ok(&["load", "-q", "-i", tar.to_str().expect("path")]);
    b.ok(&["run", "-d", "--name", "pub", "-P", "exposed"]);
    let lines = b.ok(&["port", "pub"]);
    let mut got: Vec<&str> = lines
        .lines()
        .map(|l| l.split(" -> ").next().unwrap_or(""))
        .collect();
    got.sort();
    assert_eq!(got, ["53/udp", "80/tcp"], "{lines}");
    let web = b.ok(&["port", "pub", "80"]);
    let port: u16 = web
        .trim()
        .strip_prefix("0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{web}"));
    assert_eq!(
        eventually("the -P port", || http_get((Ipv4Addr::LOCALHOST, port))),
        "hello-exposed\n"
    );
    b.ok(&["rm", "-f", "pub"]);
    // Taken ports are refused before the container starts, and nothing is left of it.
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 9090)).expect("bind 9090");
    for (spec, want) in [
        (
            "8080:80",
            "bind for 0.0.0.0:8080/tcp failed: port is already allocated (published by container",
        ),
        (
            "127.0.0.1:8080:80",
            "bind for 127.0.0.1:8080/tcp failed: port is already allocated",
        ),
        (
            "9090:80",
            "bind for 0.0.0.0:9090/tcp failed: port is already allocated (bound by another process",
        ),
    ] {
        let o = b.run(&[
            "run", "--rm", "--name", "clash", "-p", spec, "busybox", "true",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{spec}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{spec}: {err}"
        );
        assert_eq!(b.ok(&["ps", "-a", "-q", "--filter", "name=clash"]), "");
    }
    drop(holder);
    let s = state(&b);
    assert_eq!(s["ports"].as_array().map(Vec::len), Some(2), "{s}");

    // kill -9 of the monitor and the container: the next command gives back
    // the address, the port and its rule.
    let monitor_pid = {
        let st: serde_json::Value = serde_json::from_slice(
            &std::fs::read(b.dir.path().join(format!(
                "data/containers/{}/container.json",
                inspect(&b, "web", "{{.Id}}")
            )))
            .expect("record"),
        )
        .expect("json");
        st["state"]["monitor"].as_i64().expect("monitor") as i32
    };
    let init_pid: i32 = inspect(&b, "web", "{{.State.Pid}}").parse().expect("pid");
    for p in [monitor_pid, init_pid] {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    eventually("the init to be gone", || {
        (!std::path::Path::new(&format!("/proc/{init_pid}")).exists()).then_some(())
    });
    assert!(b.ok(&["ps", "-a"]).contains("Exited (255)"));
    assert!(!ruleset().contains("dport 8080"), "{}", ruleset());
    let s = state(&b);
    assert_eq!(s["ports"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, 8080)), None);
    // It starts again, with its port.
    b.ok(&["start", "web"]);
    assert_eq!(
        eventually("8080 after a restart", || http_get((
            Ipv4Addr::LOCALHOST,
            8080
        ))),
        "hello-web\n"
    );
}

#[test]
fn fifty_concurrent_runs_get_distinct_addresses() {
    if need_root_skip_v1_vm() {
        return;
    }
    private_netns();
    let b = Berth::with_bridge("10.240.0.0/16");
    b.ok(&["network", "create", "many", "--subnet", "10.241.0.0/16"]);
    let n = 50;
    let mut kids: Vec<std::process::Child> = (0..n)
        .map(|i| {
            b.cmd(&[
                "run",
                "-d",
                "--name",
                &format!("m{i:02}"),
                "--network",
                "many",
                "-p",
                &format!("{}:80", 20000 + i),
                "busybox",
                "sleep",
                "600",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
        })
        .collect();
    for (i, k) in kids.iter_mut().enumerate() {
        let mut err = String::new();
        if let Some(e) = k.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(k.wait().expect("wait").success(), "m{i:02}: {err}");
    }
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let name = format!("m{i:02}");
        let addr = inspect(&b, &name, "{{.NetworkSettings.IPAddress}}");
        let inside = b.ok(&["exec", &name, "cat", "/sys/class/net/eth0/address"]);
        let ip: Ipv4Addr = addr.parse().unwrap_or_else(|_| panic!("{name}: {addr:?}"));
        assert_eq!(
            inside.trim(),
            berth::network::mac_string(&berth::network::mac_for(ip))
        );
        if let Some(prev) = seen.insert(ip, name.clone()) {
            panic!("{name} and {prev} both got {ip}");
        }
    }
    assert_eq!(seen.len(), n);
    assert!(seen.keys().all(|ip| ip.octets()[..2] == [10, 241]));
    let veths = links().iter().filter(|l| l.starts_with("bv")).count();
    assert_eq!(veths, n);
    // All removed at once: no veth, no lease, no rule of theirs.
    let mut kids: Vec<std::process::Child> = (0..n)
        .map(|i| {
            b.cmd(&["rm", "-f", &format!("m{i:02}")])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for k in &mut kids {
        assert!(k.wait().expect("wait").success());
    }
    assert_eq!(links().iter().filter(|l| l.starts_with("bv")).count(), 0);
    assert_eq!(held(&b), (0, 0));
    assert!(!ruleset().contains("dnat to"), "{}", ruleset());
}

/// What the kernel holds, in the model's terms.
fn observe(table: &str) -> berth_model::network::Kernel {
    let mut k = berth_model::network::Kernel::default();
    let details = ip(&["-o", "-d", "link"]);
    for l in details.lines() {
        let name = l
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("")
            .to_string();
        if l.contains(" bridge ") && !l.contains("bridge_slave") {
            k.bridges.insert(name.clone());
        }
        if l.contains("veth")
            && let Some(m) = l
                .split(" master ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
        {
            k.veths.insert(name, m.to_string());
        }
    }
    for l in ip(&["-o", "-4", "addr"]).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() > 3 && k.bridges.contains(w[1]) {
            let (a, p) = w[3].split_once('/').expect("cidr");
            k.addresses.insert((
                w[1].to_string(),
                a.parse().expect("ip"),
                p.parse().expect("prefix"),
            ));
        }
    }
    let o = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .expect("nft");
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["ip", "saddr", sub, "oifname", "!=", _, "masquerade"] = w.as_slice() {
            let (a, p) = sub.split_once('/').expect("subnet");
            k.masquerade.insert(MSubnet::new(
                a.parse().expect("ip"),
                p.parse().expect("prefix"),
            ));
        }
        let (host_ip, rest) = match w.as_slice() {
            ["ip", "daddr", h, rest @ ..] => (h.parse().expect("ip"), rest),
            rest => (Ipv4Addr::UNSPECIFIED, rest),
        };
        if let [proto, "dport", port, "dnat", "to", to] = rest {
            let (a, p) = to.split_once(':').expect("to");
            let proto = if *proto == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            };
            k.dnat.insert(
                (host_ip, port.parse().expect("port"), proto),
                (a.parse().expect("ip"), p.parse().expect("port")),
            );
        }
    }
    k
}

#[test]
fn kernel_state_equals_the_model() {
    if need_root_skip_v1_vm() {
        return;
    }
    private_netns();
    let b = Berth::new();
    let table = berth::network::Networks::open(&b.dir.path().join("data"), None)
        .expect("open")
        .table()
        .to_string();
    let bridge = |name: &str| {
        b.ok(&[
            "network",
            "inspect",
            "-f",
            "{{index .Options \"com.docker.network.bridge.name\"}}",
            name,
        ])
        .trim()
        .to_string()
    };
    let id = |c: &str| inspect(&b, c, "{{.Id}}");
    let mut model = Model::new();
    let check = |model: &Model, step: &str| {
        assert_eq!(observe(&table), model.kernel(), "after {step}");
    };
    let sub = |a: [u8; 4], p| MSubnet::new(Ipv4Addr::from(a), p);
    b.ok(&["network", "create", "na", "--subnet", "10.250.0.0/24"]);
    model
        .create("na", &bridge("na"), sub([10, 250, 0, 0], 24), None)
        .expect("model");
    check(&model, "create na");
    b.ok(&[
        "network",
        "create",
        "nb",
        "--subnet",
        "10.251.0.0/24",
        "--gateway",
        "10.251.0.254",
    ]);
    model
        .create(
            "nb",
            &bridge("nb"),
            sub([10, 251, 0, 0], 24),
            Some(Ipv4Addr::new(10, 251, 0, 254)),
        )
        .expect("model");
    check(&model, "create nb");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "na",
        "-p",
        "8081:80",
        "busybox",
        "sleep",
        "600",
    ]);
    let c1 = id("c1");
    model
        .run(&c1, Mode::Bridge, Some("na"), None)
        .expect("model");
    model
        .publish(
            &c1,
            Port {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8081,
                proto: Proto::Tcp,
                container_port: 80,
            },
        )
        .expect("model");
    check(&model, "run c1");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "nb",
        "-p",
        "127.0.0.1:5353:53/udp",
        "busybox",
        "sleep",
        "600",
    ]);
    let c2 = id("c2");
    model
        .run(&c2, Mode::Bridge, Some("nb"), None)
        .expect("model");
    model
        .publish(
            &c2,
            Port {
                host_ip: Ipv4Addr::LOCALHOST,
                host_port: 5353,
                proto: Proto::Udp,
                container_port: 53,
            },
        )
        .expect("model");
    check(&model, "run c2");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "c3",
        "--network",
        "na",
        "--ip",
        "10.250.0.77",
        "busybox",
        "sleep",
        "600",
    ]);
    let c3 = id("c3");
    model
        .run(
            &c3,
            Mode::Bridge,
            Some("na"),
            Some(Ipv4Addr::new(10, 250, 0, 77)),
        )
        .expect("model");
    check(&model, "run c3");
    b.ok(&["network", "connect", "nb", "c3"]);
    model.connect(&c3, "nb", None).expect("model");
    check(&model, "connect c3 nb");
    // The addresses agree too.
    for ep in model.endpoints() {
        let c = b.ok(&[
            "network",
            "inspect",
            "-f",
            &format!(
                "{{{{(index .Containers \"{}\").IPv4Address}}}}",
                ep.container
            ),
            &ep.network,
        ]);
        assert_eq!(
            c.trim().split('/').next(),
            Some(ep.ip.to_string().as_str()),
            "{ep:?}"
        );
    }
    b.ok(&["rm", "-f", "c1"]);
    model.remove_container(&c1).expect("model");
    check(&model, "rm c1");
    b.ok(&["network", "disconnect", "nb", "c3"]);
    model.disconnect(&c3, "nb").expect("model");
    check(&model, "disconnect c3 nb");
    b.ok(&["rm", "-f", "c2", "c3"]);
    model.remove_container(&c2).expect("model");
    model.remove_container(&c3).expect("model");
    check(&model, "rm c2 c3");
    b.ok(&["network", "rm", "na", "nb"]);
    model.remove("na").expect("model");
    model.remove("nb").expect("model");
    check(&model, "rm na nb");
    assert_eq!(ruleset(), "");
}

#[test]
fn kill_9_at_each_step_of_run_gives_back_the_network() {
    if need_root_skip_v1_vm() {
        return;
    }
    private_netns();
    let b = Berth::with_bridge("10.235.0.0/24");
    let points = [
        "run.before-mount",
        "run.after-mount",
        "run.after-create",
        "run.before-start",
        "run.after-start",
    ];
    for (i, point) in points.iter().enumerate() {
        // The foreground path's repair is engine.rs's; here the monitor dies.
        let name = format!("crash{i}");
        let mut args = vec!["run", "-d", "--name", &name, "-p", "8085:80"];
        args.extend([
            "busybox",
            "sh",
            "-c",
            "ip -4 addr show eth0 | grep -c inet; sleep 1",
        ]);
        let st = b
            .cmd(&args)
            .env("BERTH_FAULT", format!("{point}:kill"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert!(!st.success(), "{point} {name}: survived");
        let ps = b.ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.State}}",
        ]);
        if *point != "run.after-start" {
            // Repaired by that `ps`: no veth, no lease, no port, no rule.
            assert_ne!(ps.trim(), "running", "{point} {name}");
            assert_eq!(
                links().iter().filter(|l| l.starts_with("bv")).count(),
                0,
                "{point} {name}"
            );
            assert_eq!(held(&b), (0, 0), "{point} {name}");
            assert!(!ruleset().contains("dport 8085"), "{point} {name}");
        }
        b.ok(&["wait", &name]);
        // It starts again with its address and port.
        assert_eq!(b.ok(&["start", "-a", &name]), "1\n", "{point} {name}");
        b.ok(&["rm", &name]);
        assert_eq!(held(&b), (0, 0), "{point} {name}");
        // The last run's veth went with its namespace, which the kernel
        // dismantles in the background after the init's exit.
        eventually(&format!("{point} {name}: no veth left"), || {
            (links().iter().filter(|l| l.starts_with("bv")).count() == 0).then_some(())
        });
    }
}
