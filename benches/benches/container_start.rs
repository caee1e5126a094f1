//! Container start: `RUNTIME run` of busybox `true` (create + start + wait +
//! delete) as a whole process, berth-runc beside runc on the same bundle, so the
//! ratio is measured in one run on the same noisy machine. Four bundles:
//!
//! - the default spec (`berth-runc spec`: new pid, network, ipc, uts, mount and
//!   cgroup namespaces, no limits, no seccomp),
//! - the same without a new network namespace (the host's network),
//! - with a cgroup of the benchmark's own holding memory and pids limits,
//! - with berth's default seccomp profile (Docker's), compiled and loaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};

static SEQ: AtomicU64 = AtomicU64::new(0);

fn run_once(bin: &Path, root: &Path, bundle: &Path) {
    let id = format!(
        "bench-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let st = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .status()
        .expect("spawn runtime");
    assert!(st.success(), "{} run failed", bin.display());
}

/// The variants: (name, how the default spec is changed).
type Edit = fn(&mut serde_json::Value);

fn variants() -> Vec<(&'static str, Edit)> {
    vec![
        ("default spec", |_| {}),
        ("no new network namespace", |s| {
            if let Some(ns) = s["linux"]["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
        }),
        ("cgroup with memory + pids limits", |s| {
            s["linux"]["cgroupsPath"] =
                serde_json::json!(format!("/berth-bench-start-{}", std::process::id()));
            s["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 64 << 20 });
            s["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 100 });
        }),
        ("default seccomp profile", |s| {
            s["linux"]["seccomp"] = berth::oci::default_profile::profile();
        }),
    ]
}

fn container_start(c: &mut Criterion) {
    if let Err(why) = berth_benches::can_start_containers() {
        eprintln!("container_start: skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let berth = berth_benches::berth_runc();
    let runc: Option<PathBuf> = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let mut g = c.benchmark_group("container_start");
    g.sample_size(30);
    for (k, (name, edit)) in variants().into_iter().enumerate() {
        let bundle = dir.path().join(format!("bundle{k}"));
        berth_benches::busybox_bundle(&bundle, &["true"], edit).expect("bundle");
        let root = dir.path().join("state-berth");
        g.bench_function(format!("berth-runc run true, {name}"), |b| {
            b.iter(|| run_once(&berth, &root, &bundle))
        });
        if let Some(runc) = &runc {
            let root = dir.path().join("state-runc");
            g.bench_function(format!("runc run true, {name}"), |b| {
                b.iter(|| run_once(runc, &root, &bundle))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, container_start);
criterion_main!(benches);
