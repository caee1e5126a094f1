//! Container start: `RUNTIME run` of busybox `true` (create + start + wait +
//! delete) as a whole process, berth-runc beside runc on the same bundle, so the
//! ratio is measured in one run on the same noisy machine.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};

static SEQ: AtomicU64 = AtomicU64::new(0);

fn run_once(bin: &std::path::Path, root: &std::path::Path, bundle: &std::path::Path) {
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

fn container_start(c: &mut Criterion) {
    if let Err(why) = berth_benches::can_start_containers() {
        eprintln!("container_start: skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle");
    berth_benches::busybox_bundle(&bundle, &["true"]).expect("bundle");
    let mut g = c.benchmark_group("container_start");
    g.sample_size(30);
    let berth = berth_benches::berth_runc();
    let root = dir.path().join("state-berth");
    g.bench_function("berth-runc run true", |b| {
        b.iter(|| run_once(&berth, &root, &bundle))
    });
    for reference in ["/usr/sbin/runc", "/usr/bin/runc"] {
        let bin = std::path::PathBuf::from(reference);
        if bin.exists() {
            let root = dir.path().join("state-runc");
            g.bench_function("runc run true", |b| {
                b.iter(|| run_once(&bin, &root, &bundle))
            });
            break;
        }
    }
    g.finish();
}

criterion_group!(benches, container_start);
criterion_main!(benches);
