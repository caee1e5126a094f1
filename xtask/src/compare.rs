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

use std::ffi::OsString;
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
                    "--bin",
                    "berth-monitor",
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
    let names: Vec<String> = runtimes.iter().map(|(n, _)| n.clone()).collect();
    let times = interleave(&names, rounds, |i, round| {
        let (name, bin) = &runtimes[i];
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(dir.join(format!("state-{name}")))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("cmp-{name}-{round}"));
        c
    })?;
    let (md, stats) = table(
        &names,
        &times,
        "| runtime | runs | median ms | min ms | max ms | berth-runc / it (median) |",
        |base, med| base / med,
    );
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

/// `berth run --rm --network none busybox true` (and on the default bridge
/// network) next to `berth-runc run` of the same bundle and `podman run --rm --network none` of the same image (loaded
/// from the same archive), interleaved.
fn engine_runs(rounds: usize, dir: &Path, bundle: &Path) -> Result<()> {
    let berth = root().join("target/release/berth");
    let runc = root().join("target/release/berth-runc");
    let data = dir.join("engine-data");
    let state = dir.join("engine-state");
    let _ = std::fs::remove_dir_all(&data);
    let tar = dir.join("busybox.tar");
    crate::busybox_tar(&tar)?;
    run(Command::new(&berth)
        .arg("--root")
        .arg(&data)
        .args(["load", "-q", "-i"])
        .arg(&tar))?;
    // Each command as its argv, run afresh every round.
    let os = |v: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<OsString> {
        v.iter().map(|a| a.as_ref().to_os_string()).collect()
    };
    let berth_run = |network: &str| {
        os(&[
            &berth,
            &"--root",
            &data,
            &"--state",
            &state,
            &"run",
            &"--rm",
            &"--network",
            &network,
            &"busybox",
            &"true",
        ])
    };
    let mut cmds: Vec<(String, Vec<OsString>)> = vec![
        ("berth run --rm".into(), berth_run("none")),
        ("berth run --rm (bridge)".into(), berth_run("bridge")),
        (
            "berth-runc run".into(),
            os(&[
                &runc,
                &"--root",
                &dir.join("engine-runc"),
                &"run",
                &"--bundle",
                &bundle,
                &"cmp-engine",
            ]),
        ),
    ];
    let podman_root = dir.join("podman");
    let _ = std::fs::remove_dir_all(&podman_root);
    let podman = setup::which("podman").and_then(|p| {
        let base = os(&[
            &p,
            &"--root",
            &podman_root.join("root"),
            &"--runroot",
            &podman_root.join("run"),
            &"--cgroup-manager",
            &"cgroupfs",
            &"--events-backend",
            &"none",
        ]);
        match Command::new(&base[0])
            .args(&base[1..])
            .args(["load", "-q", "-i"])
            .arg(&tar)
            .output()
        {
            Ok(o) if o.status.success() => {
                // podman raises nofile and nproc to values above this machine's
                // hard limits, which crun then cannot set without
                // CAP_SYS_RESOURCE (absent here): the limits of berth's spec.
                let mut argv = base;
                argv.extend(os(&[
                    &"run",
                    &"--rm",
                    &"--network",
                    &"none",
                    &"--ulimit",
                    &"nofile=1024:1024",
                    &"--ulimit",
                    &"nproc=1024:1024",
                    &"busybox:latest",
                    &"true",
                ]));
                Some(argv)
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
        Some(argv) => cmds.push(("podman run --rm".into(), argv)),
        None => {
            println!("podman: not installed or not usable here, skipped (apt-get install podman)")
        }
    }
    let names: Vec<String> = cmds.iter().map(|(n, _)| n.clone()).collect();
    let times = interleave(&names, rounds, |i, _| {
        let argv = &cmds[i].1;
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    })?;
    let (md, stats) = table(
        &names,
        &times,
        "| command | runs | median ms | min ms | max ms | it / berth run (median) |",
        |base, med| med / base,
    );
    println!(
        "\nbusybox `true` from the image (berth, podman) or the bundle (berth-runc), --network none unless it says bridge (berth's default network: a veth, an address, a bridge), {rounds} interleaved rounds:\n\n{md}"
    );
    std::fs::write(dir.join("engine.md"), &md)?;
    println!("written to {}", dir.join("engine.md").display());
    // The default bridge of this private root (its own bridge and nftables
    // table): removing it puts ip_forward back as it was.
    let _ = Command::new(&berth)
        .arg("--root")
        .arg(&data)
        .arg("--state")
        .arg(&state)
        .args(["network", "rm", "bridge"])
        .status();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&podman_root);
    if stats[0].is_none() {
        bail!("berth run never succeeded");
    }
    Ok(())
}

/// Runs command `make(i, round)` for each name, round after round, and keeps
/// the wall time of each success (the first failures are printed).
fn interleave(
    names: &[String],
    rounds: usize,
    mut make: impl FnMut(usize, usize) -> Command,
) -> Result<Vec<Vec<Duration>>> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let mut c = make(i, round);
            let t0 = Instant::now();
            let out = c
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
    Ok(times)
}

/// A markdown table of `times` (median, min, max per name) with `header`; the
/// last column is `ratio(first's median, this one's median)`. Also returns the
/// summaries.
fn table(
    names: &[String],
    times: &[Vec<Duration>],
    header: &str,
    ratio: impl Fn(f64, f64) -> f64,
) -> (String, Vec<Summary>) {
    let stats: Vec<Summary> = times.iter().map(|t| summary(t)).collect();
    let mut md = format!("{header}\n|---|---|---|---|---|---|\n");
    let base = stats[0].map(|s| s.0);
    for (name, (st, t)) in names.iter().zip(stats.iter().zip(times)) {
        match st {
            Some((med, min, max)) => {
                let r = base
                    .map(|b| format!("{:.2}", ratio(b, *med)))
                    .unwrap_or_default();
                md.push_str(&format!(
                    "| {name} | {} | {med:.2} | {min:.2} | {max:.2} | {r} |\n",
                    t.len()
                ));
            }
            None => md.push_str(&format!("| {name} | 0 | – | – | – | – |\n")),
        }
    }
    (md, stats)
}

/// (median, min, max) in milliseconds; None without a success.
type Summary = Option<(f64, f64, f64)>;

fn summary(t: &[Duration]) -> Summary {
    if t.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = t.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    Some((ms[ms.len() / 2], ms[0], ms[ms.len() - 1]))
}
