//! `cargo xtask compare`: berth beside the tools users would pick instead, each
//! pair timed as whole processes, interleaved round by round (A B A B …) in
//! one run, so that the machine's noise falls on both alike:
//!
//! 1. `RUNTIME run` of busybox `true` (create+start+wait+delete) on one bundle:
//!    berth-runc, runc, crun;
//! 2. `berth run --rm busybox true` (no network, and on the default bridge)
//!    beside `berth-runc run` of the bundle and Debian's `podman run --rm` of
//!    the same image;
//! 3. one container's network set up and torn down: berth (its `net-setup`
//!    example: lease, veth, bridge, address, routes, then release) beside the
//!    CNI bridge plugin with host-local IPAM (ADD then DEL), in a fresh network
//!    namespace each round;
//! 4. unpacking four 50 MB layers: berth (its `unpack` example, the layers in
//!    parallel as `berth load` does) beside GNU `tar -x` of the same tars one
//!    after another, into a tmpfs.
//!
//! It prints median, min, max and the ratio per pair, and writes the tables and
//! the goals to target/compare/compare.md and a bar chart of the ratios to
//! target/compare/compare.png.
//!
//! crun refuses this host's hybrid cgroup layout (a cgroup2 mount holding only
//! hugetlb beside v1), so everything runs inside one private mount namespace
//! where /sys/fs/cgroup/unified is unmounted: the same conditions for all. It
//! is also a private network namespace: the bridges, nftables rules and
//! forwarding switches of sections 2 and 3 never touch the host's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{bundle, root, run, setup};

/// One pair (or more) timed: the table, and the ratio a goal is set for.
struct Section {
    title: String,
    md: String,
    /// (what, berth's median ms, the other's median ms, goal: other/berth at least).
    goals: Vec<(String, f64, f64, f64)>,
}

/// The sections, in the order they run.
const SECTIONS: [&str; 4] = ["runtimes", "engines", "network", "unpack"];

pub fn compare(rounds: usize, only: &[String], inner: bool) -> Result<()> {
    if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        bail!("--section {bad:?}: not one of {}", SECTIONS.join(", "));
    }
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    if !inner {
        setup::setup()?;
        setup::setup_packages(&["podman"])?;
        crate::build_release(&["--example", "net-setup", "--example", "unpack"])?;
        // The busybox image for section 2, written before the namespaces (it
        // is built with cargo).
        let dir = root().join("target/compare");
        std::fs::create_dir_all(&dir)?;
        crate::busybox_tar(&dir.join("busybox.tar"))?;
        let me = std::env::current_exe()?;
        return run(Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "--"])
            .arg(me)
            .args(["compare", "--inner", "--rounds", &rounds.to_string()])
            .args(only.iter().flat_map(|s| ["--section", s.as_str()])));
    }
    run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    let mut notes =
        vec!["in a private network namespace, and a private mount namespace".to_string()];
    if Command::new("mountpoint")
        .arg("-q")
        .arg(hybrid)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        run(Command::new("umount").arg(hybrid))?;
        notes.push(format!(
            "with {} unmounted, so that crun accepts the layout",
            hybrid.display()
        ));
    }
    println!("({})", notes.join(", "));
    let dir = root().join("target/compare");
    let mut sections = Vec::new();
    // The engines' section runs berth-runc on the runtimes' bundle.
    if wanted("runtimes") || wanted("engines") {
        sections.push(runtimes(rounds, &dir)?);
    }
    if wanted("engines") {
        sections.push(engine_runs(rounds, &dir, &dir.join("bundle"))?);
    }
    if wanted("network") {
        sections.push(network_runs(rounds, &dir)?);
    }
    if wanted("unpack") {
        sections.push(unpack_runs(rounds.min(10), &dir)?);
    }
    report(&dir, rounds, &notes, &sections)
}

/// Section 1: `RUNTIME run` of busybox `true` for berth-runc, runc and crun.
fn runtimes(rounds: usize, dir: &Path) -> Result<Section> {
    let berth = root().join("target/release/berth-runc");
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
    let times = interleave(&names, rounds, 1, |i, round| {
        let (name, bin) = &runtimes[i];
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(dir.join(format!("state-{name}")))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("cmp-{name}-{round}"));
        c
    })?;
    section(
        &names,
        &times,
        "| runtime | runs | median ms | min ms | max ms | it / berth-runc (median) |",
        format!(
            "`RUNTIME run` of busybox `true` (create+start+wait+delete), {rounds} interleaved rounds"
        ),
        &[("berth-runc", "crun", 1.0), ("berth-runc", "runc", 1.0)],
    )
}

/// A section of `times`: its table, printed under `title`, and the goals of
/// `pairs`; an error when berth (the first name) never succeeded.
fn section(
    names: &[String],
    times: &[Vec<Duration>],
    header: &str,
    title: String,
    pairs: &[(&str, &str, f64)],
) -> Result<Section> {
    let (md, stats) = table(names, times, header);
    println!("\n{title}:\n\n{md}");
    if stats[0].is_none() {
        bail!("{} never succeeded", names[0]);
    }
    Ok(Section {
        goals: goals(names, &stats, pairs),
        title,
        md,
    })
}

/// (pair, berth's median, other's median, goal) for each `(berth's name,
/// other's name, goal)` where both have a median; a goal of 0 is none (the
/// pair is shown, nothing is asked of it).
fn goals(
    names: &[String],
    stats: &[Summary],
    pairs: &[(&str, &str, f64)],
) -> Vec<(String, f64, f64, f64)> {
    let median = |name: &str| {
        let i = names.iter().position(|n| n == name)?;
        stats[i].map(|s| s.0)
    };
    pairs
        .iter()
        .filter_map(|(berth, other, goal)| {
            Some((
                format!("{berth} vs {other}"),
                median(berth)?,
                median(other)?,
                *goal,
            ))
        })
        .collect()
}

/// `berth run --rm --network none busybox true` (and on the default bridge
/// network) next to `berth-runc run` of the same bundle and `podman run --rm --network none` of the same image (loaded
/// from the same archive), interleaved.
fn engine_runs(rounds: usize, dir: &Path, bundle: &Path) -> Result<Section> {
    let berth = root().join("target/release/berth");
    let runc = root().join("target/release/berth-runc");
    let data = dir.join("engine-data");
    let state = dir.join("engine-state");
    let _ = std::fs::remove_dir_all(&data);
    let tar = dir.join("busybox.tar");
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
    let times = interleave(&names, rounds, 1, |i, _| {
        let argv = &cmds[i].1;
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    })?;
    // The default bridge of this private root (its own bridge and nftables
    // table): removing it puts ip_forward back as it was.
    let _ = Command::new(&berth)
        .arg("--root")
        .arg(&data)
        .arg("--state")
        .arg(&state)
        .args(["network", "rm", "bridge"])
        .stdout(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&podman_root);
    section(
        &names,
        &times,
        "| command | runs | median ms | min ms | max ms | it / berth run --rm (median) |",
        format!(
            "busybox `true` from the image (berth, podman) or the bundle (berth-runc), --network none unless it says bridge (berth's default network: a veth, an address, a bridge), {rounds} interleaved rounds"
        ),
        &[("berth run --rm", "podman run --rm", 5.0)],
    )
}

/// Runs command `make(i, round)` for each name, round after round, and keeps
/// the wall time of each success (the first failures are printed). Each round
/// starts one group of `group` names further on (A B C, B C A, C A B, …): the
/// first command after another's heavy one would otherwise always be the same
/// one (it ran 30% slower after podman's); a group keeps its order (a setup and
/// its teardown).
fn interleave(
    names: &[String],
    rounds: usize,
    group: usize,
    mut make: impl FnMut(usize, usize) -> Command,
) -> Result<Vec<Vec<Duration>>> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..rounds {
        for i in order(names.len(), group, round) {
            let name = &names[i];
            let mut c = make(i, round);
            let t0 = Instant::now();
            // output() gives the child an empty stdin unless make set one.
            let out = c.output().with_context(|| format!("running {name}"))?;
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

/// The order of round `round`: groups of `group` names, rotated by `round`.
fn order(n: usize, group: usize, round: usize) -> Vec<usize> {
    let group = group.max(1);
    let groups = n.div_ceil(group);
    (0..groups)
        .flat_map(|k| {
            let g = (k + round) % groups;
            (g * group..((g + 1) * group).min(n)).collect::<Vec<_>>()
        })
        .collect()
}

/// A markdown table of `times` (median, min, max per name) with `header`; the
/// last column is this one's median over the first one's. Also returns the
/// summaries.
fn table(names: &[String], times: &[Vec<Duration>], header: &str) -> (String, Vec<Summary>) {
    let stats: Vec<Summary> = times.iter().map(|t| summary(t)).collect();
    let mut md = format!("{header}\n|---|---|---|---|---|---|\n");
    let base = stats[0].map(|s| s.0);
    for (name, (st, t)) in names.iter().zip(stats.iter().zip(times)) {
        match st {
            Some((med, min, max)) => {
                let r = base.map(|b| format!("{:.2}", med / b)).unwrap_or_default();
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

/// A process alone in a new network namespace: a container's stand-in.
struct Holder(std::process::Child);

impl Holder {
    fn new() -> Result<Holder> {
        let own = std::fs::read_link("/proc/self/ns/net")?;
        let child = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .context("unshare --net sleep")?;
        let h = Holder(child);
        // unshare execs sleep in the same process once the namespace is made.
        let ns = format!("/proc/{}/ns/net", h.0.id());
        let t = Instant::now();
        while std::fs::read_link(&ns).ok() == Some(own.clone()) {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("unshare --net made no namespace in 10 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(h)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Section 3: one container's network, berth beside the CNI bridge plugin.
fn network_runs(rounds: usize, dir: &Path) -> Result<Section> {
    let cni = Path::new("/usr/lib/cni");
    let tool = root().join("target/release/examples/net-setup");
    let net_root = dir.join("net-root");
    let cni_data = dir.join("cni-data");
    let _ = std::fs::remove_dir_all(&net_root);
    let _ = std::fs::remove_dir_all(&cni_data);
    run(Command::new(&tool)
        .arg("create")
        .arg(&net_root)
        .arg("10.96.0.0/16"))?;
    let conf = dir.join("cni.conf");
    std::fs::write(
        &conf,
        format!(
            r#"{{"cniVersion":"0.4.0","name":"cmpnet","type":"bridge","bridge":"cnibr0","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.97.0.0/16","dataDir":"{}"}}}}"#,
            cni_data.display()
        ),
    )?;
    let names: Vec<String> = [
        "berth setup",
        "berth teardown",
        "CNI bridge plugin ADD",
        "CNI bridge plugin DEL",
    ]
    .map(String::from)
    .to_vec();
    // Each setup gets a fresh namespace, made before its clock starts (the
    // one before is ended then); the teardown after it works in the same.
    let mut holder: Option<Holder> = None;
    let mut pid = 0;
    let mut n = 0u64;
    let mut setup_err = None;
    let times = interleave(&names, rounds, 2, |i, _| {
        if i % 2 == 0 {
            holder = None;
            n += 1;
            match Holder::new() {
                Ok(h) => {
                    pid = h.0.id();
                    holder = Some(h);
                }
                Err(e) => {
                    setup_err.get_or_insert(e);
                }
            }
        }
        let mut c;
        if i < 2 {
            c = Command::new(&tool);
            c.arg(["setup", "release"][i])
                .arg(&net_root)
                .arg(n.to_string());
            if i == 0 {
                c.arg(pid.to_string());
            }
        } else {
            c = Command::new(cni.join("bridge"));
            match std::fs::File::open(&conf) {
                Ok(f) => {
                    c.stdin(f);
                }
                Err(e) => {
                    setup_err
                        .get_or_insert(anyhow::Error::from(e).context("opening the CNI config"));
                }
            }
            c.env("CNI_COMMAND", ["ADD", "DEL"][i - 2])
                .env("CNI_CONTAINERID", format!("cmp{n}"))
                .env("CNI_NETNS", format!("/proc/{pid}/ns/net"))
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", cni);
        }
        c
    })?;
    drop(holder);
    if let Some(e) = setup_err {
        return Err(e);
    }
    let _ = Command::new(&tool).arg("rm").arg(&net_root).status();
    let _ = Command::new("ip").args(["link", "del", "cnibr0"]).status();
    let _ = std::fs::remove_dir_all(&net_root);
    let _ = std::fs::remove_dir_all(&cni_data);
    section(
        &names,
        &times,
        "| one container's network | runs | median ms | min ms | max ms | it / berth setup (median) |",
        format!(
            "one container's network set up (address lease, veth pair, bridge, address, default route) in a fresh namespace, then torn down (lease given back, veth deleted) while the namespace is still there, as a runtime calls CNI's DEL; each a whole process, {rounds} interleaved rounds"
        ),
        &[
            ("berth setup", "CNI bridge plugin ADD", 3.0),
            // No goal: both wait for the kernel's veth deletion.
            ("berth teardown", "CNI bridge plugin DEL", 0.0),
        ],
    )
}

/// Section 4: unpacking four 50 MB layers, berth beside `tar -x`, into a tmpfs
/// (on the shared disk, writeback of the round before would decide the time).
fn unpack_runs(rounds: usize, dir: &Path) -> Result<Section> {
    let tool = root().join("target/release/examples/unpack");
    let layers_dir = dir.join("layers");
    let layers: Vec<PathBuf> = (0..4)
        .map(|l| layers_dir.join(format!("layer{l}.tar")))
        .collect();
    if !layers.iter().all(|l| l.exists()) {
        run(Command::new(&tool).arg("make").arg(&layers_dir))?;
    }
    let out = dir.join("unpack-out");
    std::fs::create_dir_all(&out)?;
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2g", "tmpfs"])
        .arg(&out))?;
    let names: Vec<String> = vec![
        "berth (4 layers in parallel)".into(),
        "tar -x (one after another)".into(),
    ];
    let mut clean_err = None;
    let times = interleave(&names, rounds, 1, |i, _| {
        // The round before's files go before the clock starts.
        for sub in ["store", "tar"] {
            if let Err(e) = std::fs::remove_dir_all(out.join(sub))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                clean_err.get_or_insert(e);
            }
        }
        if i == 0 {
            let mut c = Command::new(&tool);
            c.arg(out.join("store")).args(&layers);
            c
        } else {
            let mut script = String::from("set -e");
            for (k, l) in layers.iter().enumerate() {
                let d = out.join("tar").join(k.to_string());
                let _ = std::fs::create_dir_all(&d);
                script.push_str(&format!("; tar -xf '{}' -C '{}'", l.display(), d.display()));
            }
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    });
    let _ = Command::new("umount").arg(&out).status();
    let times = times?;
    if let Some(e) = clean_err {
        bail!("cleaning {} between rounds: {e}", out.display());
    }
    let mb: u64 = layers
        .iter()
        .map(|l| std::fs::metadata(l).map(|m| m.len()).unwrap_or(0))
        .sum::<u64>()
        >> 20;
    section(
        &names,
        &times,
        "| unpack | runs | median ms | min ms | max ms | it / berth (median) |",
        format!(
            "unpacking four layers ({mb} MiB of tar: 40 files of 1 MB and 2,500 of 4 KB each) into a tmpfs, {rounds} interleaved rounds"
        ),
        &[(
            "berth (4 layers in parallel)",
            "tar -x (one after another)",
            1.0,
        )],
    )
}

/// Writes target/compare/compare.md (every table and the goals) and
/// target/compare/compare.png (the ratios as bars, the goals marked).
fn report(dir: &Path, rounds: usize, notes: &[String], sections: &[Section]) -> Result<()> {
    let mut md = format!(
        "# cargo xtask compare\n\n{rounds} rounds (unpack: {}), {}.\n",
        rounds.min(10),
        notes.join(", ")
    );
    let mut all_goals = Vec::new();
    for s in sections {
        md.push_str(&format!("\n{}:\n\n{}", s.title, s.md));
        all_goals.extend(s.goals.iter().cloned());
    }
    let mut g = String::from(
        "\n| goal | berth median ms | other median ms | other / berth | goal | met |\n|---|---|---|---|---|---|\n",
    );
    for (what, berth, other, goal) in &all_goals {
        let (goal, met) = if *goal > 0.0 {
            (
                format!("≥ {goal}"),
                if other / berth >= *goal { "yes" } else { "no" },
            )
        } else {
            ("–".to_string(), "–")
        };
        g.push_str(&format!(
            "| {what} | {berth:.2} | {other:.2} | {:.2} | {goal} | {met} |\n",
            other / berth
        ));
    }
    println!(
        "\ngoals (how many times faster berth is than the other, median against median):\n{g}"
    );
    md.push_str(&g);
    let md_path = dir.join("compare.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let png = dir.join("compare.png");
    match chart(&png, &all_goals) {
        Ok(()) => println!("written: {} and {}", md_path.display(), png.display()),
        Err(e) => println!("written: {}; no chart: {e:#}", md_path.display()),
    }
    Ok(())
}

/// The font the chart's text is drawn with (Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A horizontal bar per goal: how many times faster berth is (other / berth,
/// median against median), with the goal as a mark on its bar.
fn chart(path: &Path, goals: &[(String, f64, f64, f64)]) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::FontStyle;

    if goals.is_empty() {
        bail!("nothing measured");
    }
    let font =
        std::fs::read(FONT).with_context(|| format!("reading {FONT} (fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT}: not a font plotters can read"))?;
    let max = goals
        .iter()
        .map(|(_, b, o, g)| (o / b).max(*g))
        .fold(1.0f64, f64::max)
        * 1.15;
    let n = goals.len();
    let area = BitMapBackend::new(path, (1000, 120 + 60 * n as u32)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    area.fill(&WHITE).map_err(err)?;
    let mut c = ChartBuilder::on(&area)
        .caption(
            "berth: times faster than the alternative (median over median; | = goal)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max, 0.0..n as f64)
        .map_err(err)?;
    c.configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("other / berth")
        .draw()
        .map_err(err)?;
    for (k, (what, berth, other, goal)) in goals.iter().enumerate() {
        let ratio = other / berth;
        let y = (n - 1 - k) as f64;
        let color = if *goal <= 0.0 {
            BLUE.mix(0.5)
        } else if ratio >= *goal {
            GREEN.mix(0.7)
        } else {
            RED.mix(0.7)
        };
        c.draw_series(std::iter::once(Text::new(
            what.clone(),
            (max * 0.005, y + 0.95),
            ("sans-serif", 16),
        )))
        .map_err(err)?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.1), (ratio, y + 0.6)],
            color.filled(),
        )))
        .map_err(err)?;
        if *goal > 0.0 {
            c.draw_series(std::iter::once(PathElement::new(
                vec![(*goal, y + 0.02), (*goal, y + 0.68)],
                BLACK.stroke_width(3),
            )))
            .map_err(err)?;
        }
        c.draw_series(std::iter::once(Text::new(
            format!("{ratio:.2}×"),
            (ratio.max(*goal) + max * 0.01, y + 0.45),
            ("sans-serif", 16),
        )))
        .map_err(err)?;
    }
    area.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn table_and_goals_take_medians_against_berths() {
        let names: Vec<String> = ["berth", "other", "never"].map(String::from).to_vec();
        let times = vec![ms(&[30, 10, 20]), ms(&[100, 60, 80]), vec![]];
        let (md, stats) = table(
            &names,
            &times,
            "| x | runs | median ms | min ms | max ms | it / berth |",
        );
        assert!(
            md.contains("| berth | 3 | 20.00 | 10.00 | 30.00 | 1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| other | 3 | 80.00 | 60.00 | 100.00 | 4.00 |"),
            "{md}"
        );
        assert!(md.contains("| never | 0 | – |"), "{md}");
        let g = goals(
            &names,
            &stats,
            &[
                ("berth", "other", 5.0),
                ("berth", "never", 1.0),
                ("berth", "absent", 1.0),
            ],
        );
        assert_eq!(g, vec![("berth vs other".to_string(), 20.0, 80.0, 5.0)]);
    }

    #[test]
    fn rounds_rotate_by_groups() {
        assert_eq!(order(3, 1, 0), [0, 1, 2]);
        assert_eq!(order(3, 1, 1), [1, 2, 0]);
        assert_eq!(order(3, 1, 5), [2, 0, 1]);
        assert_eq!(order(4, 2, 1), [2, 3, 0, 1]);
        assert_eq!(order(4, 2, 2), [0, 1, 2, 3]);
    }

    #[test]
    fn chart_is_a_png() {
        let path =
            std::env::temp_dir().join(format!("berth-compare-test-{}.png", std::process::id()));
        let goals = vec![
            ("berth vs fast".to_string(), 10.0, 40.0, 1.0),
            ("berth vs slow".to_string(), 10.0, 20.0, 3.0),
        ];
        let r = chart(&path, &goals);
        let bytes = std::fs::read(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        r.expect("chart");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "not a PNG: {} bytes",
            bytes.len()
        );
        assert!(chart(&path, &[]).is_err(), "an empty chart is refused");
    }
}
