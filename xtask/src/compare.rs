//! `cargo xtask compare`: berth-runc, runc and crun timed as whole processes
//! (`RUNTIME run` of busybox `true`, create+start+wait+delete), interleaved
//! round by round on the same bundle, in one run.
//!
//! crun refuses this host's hybrid cgroup layout (a cgroup2 mount holding only
//! hugetlb beside v1), so every runtime runs inside one private mount namespace
//! where /sys/fs/cgroup/unified is unmounted: the same conditions for all three.
//!
//! Then the engines: `berth run --rm --network none busybox true` next to
//! `berth-runc run` of the same bundle and Debian's `podman run --rm` of the same
//! image, interleaved (podman is installed when missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{bundle, root, run, setup};

pub fn compare(rounds: usize, inner: bool) -> Result<()> {
    if !inner {
        setup::setup()?;
        setup::setup_packages(&["podman"])?;
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(root())
                .args([
                    "build",
                    "--release",
                    "-p",
                    "berth",
                    "--bin",
                    "berth-runc",
                    "--bin",
                    "berth",
                ]),
        )?;
        let me = std::env::current_exe()?;
        return run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(me)
            .args(["compare", "--inner", "--rounds", &rounds.to_string()]));
    }
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if Command::new("mountpoint")
        .arg("-q")
        .arg(hybrid)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        run(Command::new("umount").arg(hybrid))?;
        println!(
            "(in a private mount namespace with {} unmounted, so that crun accepts the layout)",
            hybrid.display()
        );
    }
    let berth = root().join("target/release/berth-runc");
    let dir = root().join("target/compare");
    let _ = std::fs::remove_dir_all(dir.join("bundle"));
    let bundle = bundle::busybox_bundle(&dir.join("bundle"), &berth)?;
    bundle::edit_config(&bundle, |c| {
        c["process"]["args"] = serde_json::json!(["true"])
    })?;
    let mut runtimes: Vec<(String, PathBuf)> = vec![("berth-runc".into(), berth)];
    for name in ["runc", "crun"] {
        match setup::which(name) {
            Some(p) => runtimes.push((name.into(), p)),
            None => println!("{name}: not installed, skipped"),
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..rounds {
        for (i, (name, bin)) in runtimes.iter().enumerate() {
            let state = dir.join(format!("state-{name}"));
            let id = format!("cmp-{name}-{round}");
            let t0 = Instant::now();
            let out = Command::new(bin)
                .arg("--root")
                .arg(&state)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {name}"))?;
            let dt = t0.elapsed();
            if out.status.success() {
                times[i].push(dt);
            } else if failures.len() < 5 {
                failures.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    for f in &failures {
        println!("failed: {f}");
    }
    let stats: Vec<Option<(f64, f64, f64)>> = times.iter().map(|t| summary(t)).collect();
    let mut md = String::from(
        "| runtime | runs | median ms | min ms | max ms | berth-runc / it (median) |\n|---|---|---|---|---|---|\n",
    );
    let base = stats[0].map(|s| s.0);
    for ((name, _), (st, t)) in runtimes.iter().zip(stats.iter().zip(&times)) {
        match st {
            Some((med, min, max)) => {
                let ratio = base.map(|b| format!("{:.2}", b / med)).unwrap_or_default();
                md.push_str(&format!(
                    "| {name} | {} | {med:.2} | {min:.2} | {max:.2} | {ratio} |\n",
                    t.len()
                ));
            }
            None => md.push_str(&format!("| {name} | 0 | – | – | – | – |\n")),
        }
    }
    println!(
        "\n`RUNTIME run` of busybox `true` (create+start+wait+delete), {rounds} interleaved rounds:\n\n{md}"
    );
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("start.md"), &md)?;
    println!("written to {}", dir.join("start.md").display());
    if stats[0].is_none() {
        bail!("berth-runc never succeeded");
    }
    engine_runs(rounds, &dir, &bundle)
}

/// `berth run --rm --network none busybox true` next to `berth-runc run` of the
/// same bundle and `podman run --rm --network none` of the same image (loaded
/// from the same archive), interleaved.
fn engine_runs(rounds: usize, dir: &Path, bundle: &Path) -> Result<()> {
    let berth = root().join("target/release/berth");
    let runc = root().join("target/release/berth-runc");
    let data = dir.join("engine-data");
    let state = dir.join("engine-state");
    let _ = std::fs::remove_dir_all(&data);
    let tar = dir.join("busybox.tar");
    let img = berth::image::build::busybox(Path::new("/bin/busybox"))?;
    berth::image::build::ImageBuilder::write_oci_tar(
        &[(&img, Some("busybox:latest"))],
        std::fs::File::create(&tar)?,
    )?;
    run(Command::new(&berth)
        .arg("--root")
        .arg(&data)
        .args(["load", "-q", "-i"])
        .arg(&tar))?;
    let mut cmds: Vec<(String, Command)> = Vec::new();
    let mut b = Command::new(&berth);
    b.arg("--root").arg(&data).arg("--state").arg(&state).args([
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    cmds.push(("berth run --rm".into(), b));
    let mut r = Command::new(&runc);
    r.arg("--root")
        .arg(dir.join("engine-runc"))
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg("cmp-engine");
    cmds.push(("berth-runc run".into(), r));
    let podman_root = dir.join("podman");
    let _ = std::fs::remove_dir_all(&podman_root);
    let podman = setup::which("podman").and_then(|p| {
        let base = |c: &mut Command| {
            c.arg("--root")
                .arg(podman_root.join("root"))
                .arg("--runroot")
                .arg(podman_root.join("run"))
                .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"]);
        };
        let mut load = Command::new(&p);
        base(&mut load);
        load.args(["load", "-q", "-i"]).arg(&tar);
        match load.output() {
            Ok(o) if o.status.success() => {
                let mut c = Command::new(&p);
                base(&mut c);
                // podman raises nofile and nproc to values above this machine's
                // hard limits, which crun then cannot set without
                // CAP_SYS_RESOURCE (absent here): the limits of berth's spec.
                c.args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=1024:1024",
                    "busybox:latest",
                    "true",
                ]);
                Some(c)
            }
            Ok(o) => {
                println!(
                    "podman load failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("podman: {e}");
                None
            }
        }
    });
    match podman {
        Some(c) => cmds.push(("podman run --rm".into(), c)),
        None => {
            println!("podman: not installed or not usable here, skipped (apt-get install podman)")
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cmds.len()];
    let mut failures = Vec::new();
    for _ in 0..rounds {
        for (i, (name, c)) in cmds.iter_mut().enumerate() {
            let t0 = Instant::now();
            let out = c.stdin(Stdio::null()).output()?;
            let dt = t0.elapsed();
            if out.status.success() {
                times[i].push(dt);
            } else if failures.len() < 5 {
                failures.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    for f in &failures {
        println!("failed: {f}");
    }
    let stats: Vec<Option<(f64, f64, f64)>> = times.iter().map(|t| summary(t)).collect();
    let mut md = String::from(
        "| command | runs | median ms | min ms | max ms | it / berth run (median) |\n|---|---|---|---|---|---|\n",
    );
    let base = stats[0].map(|s| s.0);
    for ((name, _), (st, t)) in cmds.iter().zip(stats.iter().zip(&times)) {
        match st {
            Some((med, min, max)) => {
                let ratio = base.map(|b| format!("{:.2}", med / b)).unwrap_or_default();
                md.push_str(&format!(
                    "| {name} | {} | {med:.2} | {min:.2} | {max:.2} | {ratio} |\n",
                    t.len()
                ));
            }
            None => md.push_str(&format!("| {name} | 0 | – | – | – | – |\n")),
        }
    }
    println!(
        "\nbusybox `true` from the image (berth, podman) or the bundle (berth-runc), --network none, {rounds} interleaved rounds:\n\n{md}"
    );
    std::fs::write(dir.join("engine.md"), &md)?;
    println!("written to {}", dir.join("engine.md").display());
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&podman_root);
    if stats[0].is_none() {
        bail!("berth run never succeeded");
    }
    Ok(())
}

fn summary(t: &[Duration]) -> Option<(f64, f64, f64)> {
    if t.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = t.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    Some((ms[ms.len() / 2], ms[0], ms[ms.len() - 1]))
}
