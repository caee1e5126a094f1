//! The engine: `berth run --rm busybox true` as a whole process — the image's
//! layers mounted as an overlay, the container's record and lock, berth-runc's
//! create and start, the wait, and the removal — with no network and on the
//! default bridge network (a lease, a veth pair, the bridge, nftables rules,
//! all given back at the end). berth-runc's `run` of a bundle is beside them,
//! as the floor.
//!
//! Runs in a network namespace of the benchmark's own (the bridge, its nftables
//! table and the forwarding switch are made and removed there, never on the
//! host's), with data and state roots of its own. Needs root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use berth::image::build::{ImageBuilder, busybox};
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sched::{CloneFlags, unshare};

static SEQ: AtomicU64 = AtomicU64::new(0);

fn ok(c: &mut Command, what: &str) {
    let out = c.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn berth(data: &Path, state: &Path) -> Command {
    let mut c = Command::new(berth_benches::berth());
    c.arg("--root").arg(data).arg("--state").arg(state);
    c
}

fn engine(c: &mut Criterion) {
    if let Err(why) = berth_benches::can_start_containers() {
        eprintln!("engine: skipped: {why}");
        return;
    }
    if !berth_benches::berth().exists() {
        eprintln!(
            "engine: skipped: {} is not built (cargo xtask bench builds it)",
            berth_benches::berth().display()
        );
        return;
    }
    // Everything below happens in this namespace (children inherit it).
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
    ok(
        Command::new("ip").args(["link", "set", "lo", "up"]),
        "ip link set lo up",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    let tar = dir.path().join("busybox.tar");
    let img = busybox(Path::new("/bin/busybox")).expect("busybox image");
    ImageBuilder::write_oci_tar(
        &[(&img, Some("busybox:latest"))],
        std::fs::File::create(&tar).expect("create"),
    )
    .expect("write image");
    ok(
        berth(&data, &state).args(["load", "-q", "-i"]).arg(&tar),
        "berth load",
    );
    let bundle = dir.path().join("bundle");
    berth_benches::busybox_bundle(&bundle, &["true"], |_| {}).expect("bundle");
    let mut g = c.benchmark_group("engine");
    g.sample_size(30);
    // Whether a run made the default bridge network (a filter may skip it).
    let mut bridged = false;
    for network in ["none", "bridge"] {
        g.bench_function(
            format!("berth run --rm --network {network} busybox true"),
            |b| {
                bridged |= network == "bridge";
                b.iter(|| {
                    ok(
                        berth(&data, &state).args([
                            "run",
                            "--rm",
                            "--network",
                            network,
                            "busybox",
                            "true",
                        ]),
                        "berth run",
                    )
                })
            },
        );
    }
    let runc_root = dir.path().join("runc-state");
    g.bench_function("berth-runc run true (the bundle, no image)", |b| {
        b.iter(|| {
            let id = format!(
                "bench-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            ok(
                Command::new(berth_benches::berth_runc())
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(id),
                "berth-runc run",
            )
        })
    });
    g.finish();
    // The default bridge network: its bridge, nftables table and the
    // forwarding switch it turned on go (in this namespace).
    if bridged {
        ok(
            berth(&data, &state).args(["network", "rm", "bridge"]),
            "berth network rm bridge",
        );
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
