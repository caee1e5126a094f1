//! `cargo xtask vm-test`: the root tests inside throw-away QEMU VMs, one per
//! cgroup layout, in parallel.
//!
//! Flow: install what is missing → the Debian cloud kernel (cached under
//! target/vm-test/kernel) → build the test binaries (paths from cargo's JSON
//! messages) and the guest init → one initramfs → for each layout a QEMU microvm
//! (KVM if a short probe boots, TCG otherwise) whose serial console is streamed,
//! logged under target/vm-test/, and watched for the verdict line, a panic, an RCU
//! stall or a soft lockup → a summary table; non-zero unless every VM passed.

mod cpio;
mod initramfs;
mod kernel;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::root;

/// Options of `vm-test`.
pub struct Options {
    pub filter: Option<String>,
    /// Only these test binaries (target names); all when empty.
    pub bins: Vec<String>,
    pub cgroup: String,
    pub keep: bool,
    pub jobs: usize,
    pub timeout: u64,
}

/// Packages the VM runner needs on the host.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "lz4",
    "nftables",
    "iproute2",
    "busybox-static",
    "tini",
];

/// What one VM reported.
struct Outcome {
    layout: String,
    passed: usize,
    failed: usize,
    ignored: usize,
    secs: f64,
    boot_secs: Option<f64>,
    verdict: String,
    failures: Vec<String>,
}

/// Builds the guest's programs and the test binaries: all of them, or only
/// the named test targets (`--bin`), which builds much less after a change to
/// berth (one test binary to link instead of every one).
fn build(bins: &[String]) -> Result<(Vec<PathBuf>, PathBuf, Vec<PathBuf>)> {
    let mut cmd = crate::cargo();
    cmd.arg("build");
    if bins.is_empty() {
        cmd.arg("--tests");
    }
    for b in bins {
        cmd.args(["--test", b]);
    }
    cmd.args([
        "--bins",
        "-p",
        "berth-vm-tests",
        "-p",
        "berth-harness",
        "-p",
        "berth",
        "--message-format=json",
    ])
    .stdout(Stdio::piped());
    let out = cmd.output().context("cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build of the test binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (mut tests, mut init, mut runc, mut berth, mut monitor) =
        (Vec::new(), None, None, None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let name = v["target"]["name"].as_str().unwrap_or_default();
        let kind = v["target"]["kind"][0].as_str().unwrap_or_default();
        let is_test = v["profile"]["test"].as_bool().unwrap_or(false);
        let pkg = v["package_id"].as_str().unwrap_or_default();
        let vm_package = pkg.contains("berth-vm-tests") || pkg.contains("berth-harness");
        match (is_test, name) {
            (false, "vm-init") => init = Some(PathBuf::from(exe)),
            (false, "berth-runc") => runc = Some(PathBuf::from(exe)),
            (false, "berth") => berth = Some(PathBuf::from(exe)),
            (false, "berth-monitor") => monitor = Some(PathBuf::from(exe)),
            // Every integration test of vm-tests and the harness, the OCI suite and
            // the image and engine suites (containerd is not in the guest: its test stays on
            // the host).
            (true, _) if vm_package && kind == "test" => tests.push(PathBuf::from(exe)),
            (true, "oci_runtime" | "images" | "engine" | "engine_run" | "network") => {
                tests.push(PathBuf::from(exe))
            }
            _ => {}
        }
    }
    tests.sort();
    let init = init.context("cargo built no vm-init")?;
    let runc = runc.context("cargo built no berth-runc")?;
    let berth = berth.context("cargo built no berth")?;
    // berth finds berth-monitor beside itself: both keep their host paths.
    let monitor = monitor.context("cargo built no berth-monitor")?;
    Ok((tests, init, vec![runc, berth, monitor]))
}

/// A microvm booting `vmlinux` with its serial console on stdio.
fn qemu(vmlinux: &Path, memory: &str, kvm: bool) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        "microvm,rtc=on",
        "-smp",
        "1",
        "-m",
        memory,
        "-nodefaults",
        "-no-user-config",
    ]);
    cmd.args(["-display", "none", "-no-reboot", "-serial", "stdio"]);
    if kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "qemu64"]);
    }
    cmd.arg("-kernel").arg(vmlinux);
    cmd
}

fn kvm_works(vmlinux: &Path) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    // A kernel with no initramfs panics in a second or two under a working KVM.
    let Ok(mut child) = qemu(vmlinux, "256M", true)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Linux version") || line.contains("Kernel panic") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let ok = rx.recv_timeout(Duration::from_secs(5)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    ok
}

fn host_tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(2_000_000)
}

fn boot(
    vmlinux: &Path,
    initrd: &Path,
    layout: &str,
    opts: &Options,
    kvm: bool,
    log: &Path,
) -> Result<Outcome> {
    // Marks this boot's verdict line, so no stray output can pass for it.
    let nonce = format!(
        "{:x}{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        layout
    );
    let mut append = format!(
        "console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off tsc=reliable no_timer_check random.trust_cpu=on \
         audit=0 8250.nr_uarts=1 rcupdate.rcu_expedited=1 noreplace-smp tsc_early_khz={} pci=off vmtest.cgroup={layout} vmtest.nonce={nonce} RUST_BACKTRACE=1",
        host_tsc_khz()
    );
    if let Some(f) = &opts.filter {
        append.push_str(&format!(" vmtest.filter={f}"));
    }
    if opts.keep {
        append.push_str(" vmtest.keep=1");
    }
    for demo in ["BERTH_VM_FAIL_DEMO", "BERTH_VM_PANIC_DEMO"] {
        if std::env::var_os(demo).is_some_and(|v| v == "1") {
            append.push_str(&format!(" {demo}=1"));
        }
    }
    // The kernel hands unknown KEY=VALUE words to init as its environment.
    for var in [
        "BERTH_HARNESS_REPLAY",
        "BERTH_HARNESS_CASES",
        "BERTH_HARNESS_SOAK_SECS",
        "BERTH_HARNESS_NO_SHRINK",
    ] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
            && !v.contains(char::is_whitespace)
        {
            append.push_str(&format!(" {var}={v}"));
        }
    }
    let mut cmd = qemu(vmlinux, "1024M", kvm);
    cmd.arg("-initrd").arg(initrd).arg("-append").arg(&append);
    cmd.stdin(if opts.keep {
        Stdio::inherit()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx
                .send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string(),
                )
                .is_err()
            {
                break;
            }
        }
    });
    let mut logf = std::fs::File::create(log)?;
    let mut o = Outcome {
        layout: layout.into(),
        passed: 0,
        failed: 0,
        ignored: 0,
        secs: 0.0,
        boot_secs: None,
        verdict: "no verdict".into(),
        failures: Vec::new(),
    };
    let deadline = start + Duration::from_secs(opts.timeout);
    let mut exit_seen = None;
    loop {
        let wait = if opts.keep {
            Duration::from_secs(3600)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match rx.recv_timeout(wait) {
            Ok(line) => {
                let _ = writeln!(logf, "{line}");
                println!("[{layout}] {line}");
                if let Some(rest) = line.strip_prefix("VMTEST-READY") {
                    o.boot_secs = rest
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("uptime="))
                        .and_then(|u| u.parse().ok());
                }
                if let Some(rest) = line.strip_prefix("test result: ") {
                    let num = |key: &str| {
                        rest.split(';').find_map(|p| {
                            p.trim().strip_suffix(key).and_then(|n| {
                                n.trim()
                                    .rsplit(' ')
                                    .next()
                                    .and_then(|n| n.parse::<usize>().ok())
                            })
                        })
                    };
                    o.passed += num("passed").unwrap_or(0);
                    o.failed += num("failed").unwrap_or(0);
                    o.ignored += num("ignored").unwrap_or(0);
                }
                if line.starts_with("test ") && line.ends_with("FAILED") {
                    o.failures.push(
                        line.trim_start_matches("test ")
                            .trim_end_matches(" ... FAILED")
                            .to_string(),
                    );
                }
                if let Some(rest) = line.strip_prefix("VMTEST-EXIT=")
                    && rest.contains(&format!("nonce={nonce}"))
                {
                    exit_seen = rest
                        .split_whitespace()
                        .next()
                        .and_then(|c| c.parse::<i32>().ok());
                }
                for (marker, what) in [
                    ("Kernel panic", "kernel panic"),
                    ("rcu_sched self-detected stall", "RCU stall"),
                    ("RCU Stall", "RCU stall"),
                    ("soft lockup", "soft lockup"),
                    // The initramfs did not fit the guest's memory: files are missing.
                    (
                        "Initramfs unpacking failed",
                        "initramfs too large for the guest",
                    ),
                ] {
                    if line.contains(marker) {
                        o.verdict = what.into();
                        let _ = child.kill();
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                o.verdict = format!("timed out after {} s", opts.timeout);
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    o.secs = start.elapsed().as_secs_f64();
    match exit_seen {
        Some(0) if o.verdict == "no verdict" => o.verdict = "passed".into(),
        Some(rc) if o.verdict == "no verdict" => o.verdict = format!("failed (exit {rc})"),
        _ => {}
    }
    Ok(o)
}

/// Where the guest kernel is kept: target/vm-test/kernel, or the directory
/// `BERTH_VM_KERNEL_DIR` names (`cargo xtask mutants --vm` runs vm-test in
/// copies of the tree, which share this tree's kernel instead of downloading
/// it again).
pub fn kernel_dir() -> PathBuf {
    std::env::var_os("BERTH_VM_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vm-test/kernel"))
}

/// Downloads the guest kernel unless it is there.
pub fn ensure_kernel() -> Result<()> {
    crate::setup::setup_packages(PACKAGES)?;
    kernel::ensure(&kernel_dir()).map(|_| ())
}

/// `cargo xtask vm-test`.
pub fn vm_test(opts: Options) -> Result<()> {
    crate::setup::setup_packages(PACKAGES)?;
    let dir = root().join("target/vm-test");
    std::fs::create_dir_all(&dir)?;
    let kernel = kernel::ensure(&kernel_dir())?;
    let (mut tests, init, extra) = build(&opts.bins)?;
    if !opts.bins.is_empty() {
        // cargo names a test binary TARGET-HASH.
        tests.retain(|t| {
            let file = t
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default();
            let target = file.rsplit_once('-').map(|(n, _)| n).unwrap_or(&file);
            opts.bins.iter().any(|b| b == target)
        });
        if tests.is_empty() {
            bail!("--bin {:?}: no such test binary", opts.bins);
        }
    }
    let payload = initramfs::Payload { init, tests, extra };
    let t = Instant::now();
    let image = initramfs::build(&kernel, &payload)?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, &image)?;
    println!(
        "vm-test: kernel {}, initramfs {} MB ({:.1} s), {} test binaries",
        kernel.release,
        image.len() >> 20,
        t.elapsed().as_secs_f64(),
        payload.tests.len()
    );
    let kvm = kvm_works(&kernel.vmlinux);
    println!(
        "vm-test: {}",
        if kvm {
            "KVM works"
        } else {
            "KVM unavailable or not working: TCG"
        }
    );
    let layouts: Vec<String> = match opts.cgroup.as_str() {
        "both" => vec!["v2".into(), "v1".into()],
        l @ ("v1" | "v2") => vec![l.into()],
        other => bail!("--cgroup {other:?}: expected v1, v2 or both"),
    };
    let jobs = if opts.keep { 1 } else { opts.jobs.max(1) };
    let wall = Instant::now();
    let mut outcomes = Vec::new();
    for chunk in layouts.chunks(jobs) {
        let results: Vec<Result<Outcome>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|l| {
                    let (vmlinux, initrd, log) = (
                        &kernel.vmlinux,
                        &initrd,
                        dir.join(format!("console-{l}.log")),
                    );
                    let opts = &opts;
                    s.spawn(move || boot(vmlinux, initrd, l, opts, kvm, &log))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("VM thread panicked")))
                })
                .collect()
        });
        for r in results {
            outcomes.push(r?);
        }
    }
    println!(
        "\n{:<14} {:>7} {:>7} {:>8} {:>8} {:>8}  verdict",
        "VM (cgroup)", "passed", "failed", "ignored", "seconds", "boot s"
    );
    let mut all_ok = true;
    for o in &outcomes {
        let boot = o
            .boot_secs
            .map(|b| format!("{b:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:>7} {:>7} {:>8} {:>8.1} {:>8}  {}",
            o.layout, o.passed, o.failed, o.ignored, o.secs, boot, o.verdict
        );
        for f in &o.failures {
            println!("{:<14}   failed: {f}", "");
        }
        all_ok &= o.verdict == "passed" && o.failed == 0;
    }
    println!(
        "{:<14} wall {:.1} s; console logs in {}",
        "",
        wall.elapsed().as_secs_f64(),
        dir.display()
    );
    let (passed, failed, ignored) = outcomes.iter().fold((0, 0, 0), |a, o| {
        (a.0 + o.passed, a.1 + o.failed, a.2 + o.ignored)
    });
    println!("vm-test: {passed} passed, {failed} failed, {ignored} skipped");
    if !all_ok {
        bail!("vm-test failed");
    }
    Ok(())
}
