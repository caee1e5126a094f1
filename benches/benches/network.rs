//! Network setup and teardown of one container, three ways in the same run:
//! berth (IPAM reservation, veth pair into the namespace, bridge attach,
//! address, MAC, MTU, loopback, default route, then release: the engine's
//! whole per-container path, in-process over netlink), the same steps as `ip`
//! commands, and the CNI bridge plugin with host-local IPAM (Debian's
//! containernetworking-plugins, ADD then DEL, as Podman 3 and containerd's CRI
//! call it). Each iteration's namespace belongs to a fresh `sleep` process,
//! made the same way for all three.
//!
//! And IPAM at /16 scale: allocating and releasing in a pool that is half full.
//!
//! Everything runs in a network namespace of the benchmark's own: the host's
//! network is never touched. Needs root, `ip`, `nsenter` and the CNI plugins.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth::network::ipam::Pool;
use berth::network::{Attach, Networks, Subnet};
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sched::{CloneFlags, unshare};

const CNI_DIR: &str = "/usr/lib/cni";

/// A process alone in a new network namespace (the container's stand-in).
struct Holder(Child);

impl Holder {
    fn new() -> Holder {
        // SAFETY: unshare in the child before exec.
        let child = unsafe {
            Command::new("/bin/busybox")
                .args(["sleep", "600"])
                .pre_exec(|| unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from))
                .spawn()
                .expect("spawn")
        };
        let h = Holder(child);
        let own = std::fs::read_link("/proc/thread-self/ns/net").expect("ns");
        while std::fs::read_link(format!("/proc/{}/ns/net", h.pid())).ok() == Some(own.clone()) {
            std::thread::yield_now();
        }
        h
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?}");
}

fn missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    for p in [
        "/bin/busybox",
        "/usr/bin/nsenter",
        "/usr/sbin/nft",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
    ] {
        if !Path::new(p).exists() {
            return Some(format!("needs {p} (cargo xtask setup)"));
        }
    }
    None
}

/// Runs `f` with a namespace: `shared`'s, or a fresh one that ends right after
/// (`fresh` true), as a container's does when it stops.
fn in_ns(shared: Option<&Holder>, f: impl FnOnce(i32, bool)) {
    match shared {
        Some(h) => f(h.pid(), false),
        None => {
            let h = Holder::new();
            f(h.pid(), true);
        }
    }
}

fn berth_way(nets: &Networks, dir: &Path, n: u64, shared: Option<&Holder>) {
    // Unique in its first nine digits, which name the veth (as random ids are).
    let id = format!("{n:09x}{}", "0".repeat(55));
    in_ns(shared, |pid, fresh| {
        nets.reserve(&Attach {
            container: &id,
            name: "bench",
            hostname: "bench",
            networks: &["bench".to_string()],
            ip: None,
            ports: &[],
            hosts_file: &dir.join("hosts"),
        })
        .expect("reserve");
        nets.plumb(&id, pid).expect("plumb");
        if !fresh {
            nets.release(&id, true).expect("release");
        }
    });
    // As in the engine: the container has ended, its network is given back
    // and its veth goes with its namespace.
    if shared.is_none() {
        nets.release(&id, false).expect("release");
    }
}

fn ip_way(n: u64, shared: Option<&Holder>) {
    let host = format!("ih{n:x}");
    in_ns(shared, |pid, _| {
        let pid = pid.to_string();
        let ns = |args: &[&str]| {
            let mut full = vec!["nsenter", "-t", &pid, "-n", "ip"];
            full.extend(args);
            sh(&full);
        };
        // The single request berth makes: the peer born in the namespace.
        sh(&[
            "ip",
            "link",
            "add",
            &host,
            "mtu",
            "1500",
            "master",
            "ipbr0",
            "up",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            "02:42:0a:62:00:02",
            "netns",
            &pid,
        ]);
        ns(&["link", "set", "eth0", "up"]);
        ns(&["addr", "add", "10.98.0.2/16", "dev", "eth0"]);
        ns(&["link", "set", "lo", "up"]);
        ns(&["route", "add", "default", "via", "10.98.0.1"]);
        if shared.is_some() {
            sh(&["ip", "link", "del", &host]);
        }
    });
}

fn cni_way(data: &Path, n: u64, shared: Option<&Holder>) {
    let conf = format!(
        r#"{{"cniVersion":"0.4.0","name":"benchnet","type":"bridge","bridge":"cnibr0","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.97.0.0/16","dataDir":"{}"}}}}"#,
        data.display()
    );
    in_ns(shared, |pid, _| {
        for cmd in ["ADD", "DEL"] {
            let mut c = Command::new(Path::new(CNI_DIR).join("bridge"))
                .env("CNI_COMMAND", cmd)
                .env("CNI_CONTAINERID", format!("bench{n}"))
                .env("CNI_NETNS", format!("/proc/{pid}/ns/net"))
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", CNI_DIR)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("cni bridge");
            c.stdin
                .take()
                .expect("stdin")
                .write_all(conf.as_bytes())
                .expect("conf");
            assert!(c.wait().expect("wait").success(), "CNI {cmd}");
        }
    });
}

fn network_setup(c: &mut Criterion) {
    if let Some(why) = missing() {
        eprintln!("network_setup: skipped: {why}");
        return;
    }
    // Everything below happens in this namespace (children inherit it).
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
    sh(&["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let nets = Networks::open(&dir.path().join("root"), None).expect("networks");
    nets.create(
        "bench",
        Some("10.96.0.0/16".parse::<Subnet>().expect("subnet")),
        None,
    )
    .expect("network");
    sh(&["ip", "link", "add", "ipbr0", "type", "bridge"]);
    sh(&["ip", "addr", "add", "10.98.0.1/16", "dev", "ipbr0"]);
    sh(&["ip", "link", "set", "ipbr0", "up"]);
    let cni_data: PathBuf = dir.path().join("cni");
    let mut n = 0u64;
    // Per container as a runtime sees it: a fresh namespace that ends after.
    let mut g = c.benchmark_group("network_per_container");
    g.sample_size(30);
    g.bench_function("namespace process alone", |b| {
        b.iter(|| drop(Holder::new()))
    });
    g.bench_function("berth (netlink, in-process)", |b| {
        b.iter(|| {
            n += 1;
            berth_way(&nets, dir.path(), n, None)
        })
    });
    g.bench_function("ip commands", |b| {
        b.iter(|| {
            n += 1;
            ip_way(n, None)
        })
    });
    g.bench_function("CNI bridge plugin", |b| {
        b.iter(|| {
            n += 1;
            cni_way(&cni_data, n, None)
        })
    });
    g.finish();
    // The network work alone: setup and explicit teardown in one namespace that
    // stays (no namespace made or destroyed in the loop).
    let shared = Holder::new();
    let mut g = c.benchmark_group("network_setup_teardown");
    g.sample_size(30);
    g.bench_function("berth (netlink, in-process)", |b| {
        b.iter(|| {
            n += 1;
            berth_way(&nets, dir.path(), n, Some(&shared))
        })
    });
    g.bench_function("ip commands", |b| {
        b.iter(|| {
            n += 1;
            ip_way(n, Some(&shared))
        })
    });
    g.bench_function("CNI bridge plugin", |b| {
        b.iter(|| {
            n += 1;
            cni_way(&cni_data, n, Some(&shared))
        })
    });
    g.finish();
    drop(shared);
    nets.remove("bench").expect("remove network");
}

fn ipam(c: &mut Criterion) {
    let subnet: Subnet = "10.0.0.0/16".parse().expect("subnet");
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    // Half full, every other address taken: 32k free ranges, the worst shape.
    let leased = (0..32_000u32).map(|i| Ipv4Addr::from(u32::from(subnet.addr()) + 2 + 2 * i));
    let pool = Pool::with_leases(subnet, gw, leased);
    let mut g = c.benchmark_group("ipam_16");
    // Each iteration gives back what it took: the pool is the same before the next.
    let mut p = pool.clone();
    g.bench_function("allocate lowest + release", |b| {
        b.iter(|| {
            let ip = p.allocate().expect("free");
            p.release(std::hint::black_box(ip));
        })
    });
    let want = Ipv4Addr::new(10, 0, 200, 17);
    g.bench_function("allocate given + release", |b| {
        b.iter(|| {
            let ip = p.allocate_ip(std::hint::black_box(want)).expect("free");
            p.release(ip);
        })
    });
    assert_eq!(p, pool, "the pool changed");
    g.finish();
}

criterion_group!(benches, ipam, network_setup);
criterion_main!(benches);
