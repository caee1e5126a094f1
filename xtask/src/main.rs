//! `cargo xtask …`: the project's tasks. Every task that needs system packages
//! installs them first (as root on Debian), so the README's commands work on a
//! fresh machine.

mod bench;
mod bundle;
mod compare;
mod mutants;
mod profile;
mod setup;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (Debian packages).
    Setup,
    /// Run every test: the workspace, then the OCI suite against runc too.
    Test,
    /// Run a busybox container with berth-runc and show what it sees.
    Demo,
    /// Time berth beside runc and crun, podman, the CNI bridge plugin and
    /// tar, as whole processes, interleaved.
    Compare {
        /// Rounds (each runtime once per round, interleaved).
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Only these sections (runtimes, engines, network, unpack; repeatable).
        #[arg(long = "section")]
        sections: Vec<String>,
        #[arg(long, hide = true)]
        inner: bool,
    },
    /// One container start taken apart: berth-runc's steps (clone, mounts,
    /// pivot_root, cgroup, seccomp, exec …) with their median times.
    ProfileStart {
        /// Starts to take the medians over.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Run the root tests inside QEMU VMs, one per cgroup layout.
    VmTest {
        /// Only tests whose name contains this (libtest's filter).
        #[arg(long)]
        filter: Option<String>,
        /// Only these test binaries (by target name: guest, oci_runtime, network, …).
        #[arg(long = "bin")]
        bins: Vec<String>,
        /// v1, v2 or both.
        #[arg(long, default_value = "both")]
        cgroup: String,
        /// Leave the VM at a shell on the serial console after the tests.
        #[arg(long)]
        keep: bool,
        /// VMs at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Wall-clock limit per VM, in seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Soak: only the harness's machines, each drawing new cases for its
        /// share of this time (`30m`, `2h`, `900s`), in every VM.
        #[arg(long, value_parser = parse_duration)]
        soak: Option<u64>,
    },
    /// Run again the harness cases of a regressions file or of seeds, in a
    /// cgroup v2 VM or with --host on this machine.
    Replay {
        /// A regressions file (harness/proptest-regressions/MACHINE.txt) or a seed.
        what: String,
        /// The machine (bridge_ip, cgroups, lifecycle, namespaces, union); by default the regressions file's,
        /// or every machine for a seed.
        #[arg(long)]
        machine: Option<String>,
        /// On this machine instead of in a VM.
        #[arg(long)]
        host: bool,
    },
    /// Build a default image without the network and load it (`image busybox`).
    Image {
        /// Which image: busybox.
        name: String,
        /// The berth data root to load it into.
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_ROOT")]
        root: PathBuf,
        /// Also keep the OCI layout tar here.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// The harness's strength: cargo-mutants on berth's network, layers and
    /// cgroups code, each part's machine as the test suite (root).
    Mutants {
        /// Which parts (ipam, network, layers, cgroups; repeatable); by
        /// default network, layers and cgroups.
        #[arg(long = "set")]
        sets: Vec<String>,
        /// Only one shard of each part's mutants (`K/N`: every N-th from the
        /// K-th), to sample a part in a fraction of the time.
        #[arg(long)]
        shard: Option<String>,
        /// Only mutants in these files (cargo-mutants' globs, repeatable),
        /// instead of the whole part's.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Only mutants whose name matches this regex (cargo-mutants'
        /// `--re`, e.g. a function's name), to look at a few again.
        #[arg(long)]
        re: Option<String>,
        /// Run each mutant's machine in a throw-away VM of this cgroup layout
        /// (v1 or v2) instead of on this machine.
        #[arg(long)]
        vm: Option<String>,
    },
    /// Run the criterion benchmarks, save them as a baseline named after the
    /// commit and compare them with the baseline saved before (or --compare):
    /// a table, and a failure on a significant slowdown over --threshold.
    Bench {
        /// Only benchmarks matching this (criterion's filter, a regex).
        #[arg(long)]
        filter: Option<String>,
        /// Save this run under this name (default: the commit, `-dirty` with changes).
        #[arg(long)]
        baseline: Option<String>,
        /// Compare with this baseline (default: the one saved before this run).
        #[arg(long)]
        compare: Option<String>,
        /// A slowdown over this many percent that criterion finds significant fails.
        #[arg(long, default_value_t = 10.0)]
        threshold: f64,
        /// Features of berth-benches (`slowed-ipam`: a deliberately slow IPAM, to
        /// show that a regression fails).
        #[arg(long)]
        features: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Test => test(),
        Cmd::Demo => demo(),
        Cmd::Compare {
            rounds,
            sections,
            inner,
        } => compare::compare(rounds, &sections, inner),
        Cmd::ProfileStart { rounds } => profile::profile_start(rounds),
        Cmd::Bench {
            filter,
            baseline,
            compare,
            threshold,
            features,
        } => bench::bench(bench::Options {
            filter,
            baseline,
            compare,
            threshold,
            features,
        }),
        Cmd::Mutants {
            sets,
            shard,
            files,
            re,
            vm,
        } => mutants::mutants(
            &sets,
            shard.as_deref(),
            &files,
            re.as_deref(),
            vm.as_deref(),
        ),
        Cmd::Image { name, root, output } => image(&name, &root, output),
        Cmd::Replay {
            what,
            machine,
            host,
        } => replay(&what, machine, host),
        Cmd::VmTest {
            filter,
            mut bins,
            cgroup,
            keep,
            jobs,
            mut timeout,
            soak,
        } => {
            if let Some(secs) = soak {
                let share = (secs / MACHINES.len() as u64).max(1);
                println!(
                    "soak: {} machines, {share} s each, in each VM",
                    MACHINES.len()
                );
                // SAFETY: set before any thread of this process starts.
                unsafe { std::env::set_var("BERTH_HARNESS_SOAK_SECS", share.to_string()) };
                bins = MACHINES.iter().map(|s| s.to_string()).collect();
                // Each machine may finish its last batch after its share.
                timeout = timeout.max(secs + 900);
            }
            vm::vm_test(vm::Options {
                filter,
                bins,
                cgroup,
                keep,
                jobs,
                timeout,
            })
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command, failing with its command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn test() -> Result<()> {
    setup::setup()?;
    run(cargo().args(["test", "--workspace", "--all-targets"]))?;
    let runc = setup::which("runc").context("runc is not installed")?;
    println!(
        "\n== the OCI suite against runc ({}), to check the suite itself",
        runc.display()
    );
    run(cargo()
        .args(["test", "-p", "berth", "--test", "oci_runtime"])
        .env("BERTH_TEST_RUNTIME", runc))?;
    Ok(())
}

fn demo() -> Result<()> {
    let dir = root().join("target/demo");
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    // The busybox image in a private data root (a user's /var/lib/berth is not touched).
    image("busybox", &data, Some(dir.join("busybox.tar")))?;
    let bin = root().join("target/debug/berth");
    let berth = |args: &[&str]| -> Result<std::process::ExitStatus> {
        println!("\n$ berth {}", args.join(" "));
        Ok(Command::new(&bin)
            .arg("--root")
            .arg(&data)
            .arg("--state")
            .arg(dir.join("state"))
            .args(args)
            .status()?)
    };
    let script = r#"
echo "pid in its namespace:  $$"
echo "hostname:              $(hostname)"
echo "user:                  $(id)"
echo "capabilities (eff):    $(grep CapEff /proc/self/status | cut -f2)"
echo "seccomp mode:          $(grep '^Seccomp:' /proc/self/status | cut -f2)   (2 = filter)"
echo "memory limit:          $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "network:               $(ls /sys/class/net)"
echo "root:                  $(grep ' / ' /proc/mounts | cut -d' ' -f1-3)"
"#;
    let r = (|| -> Result<()> {
        berth(&["images"])?;
        berth(&[
            "run", "--rm", "-m", "64m", "--name", "demo", "busybox", "sh", "-c", script,
        ])?;
        let st = berth(&[
            "run",
            "--rm",
            "-m",
            "16m",
            "busybox",
            "sh",
            "-c",
            "echo allocating 100 MB under a 16 MiB limit; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
        ])?;
        println!(
            "exit code {:?} (137: the kernel's OOM killer ended it)",
            st.code()
        );
        berth(&[
            "run",
            "-d",
            "--name",
            "ticker",
            "-m",
            "32m",
            "busybox",
            "sh",
            "-c",
            "while true; do date; sleep 1; done",
        ])?;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        berth(&["ps"])?;
        berth(&["logs", "--tail", "2", "ticker"])?;
        berth(&["exec", "ticker", "ps"])?;
        berth(&["stats", "--no-stream", "ticker"])?;
        berth(&["stop", "-t", "1", "ticker"])?;
        berth(&["rm", "ticker"])?;
        // A web server on the default bridge network, published on port 8080.
        berth(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            "echo 'hello from a berth container' > /var/www/index.html; exec httpd -f -p 80 -h /var/www",
        ])?;
        berth(&["ps"])?;
        berth(&["port", "web"])?;
        println!("\n$ curl http://127.0.0.1:8080/");
        print!("{}", http_get_local(8080)?);
        berth(&["rm", "-f", "web"])?;
        berth(&["network", "rm", "bridge"])?;
        Ok(())
    })();
    let _ = Command::new(&bin)
        .arg("--root")
        .arg(&data)
        .arg("--state")
        .arg(dir.join("state"))
        .args(["rm", "-f", "demo", "ticker", "web"])
        .stderr(std::process::Stdio::null())
        .status();
    // The bridge, its nftables table and ip_forward go back to what they were.
    let _ = Command::new(&bin)
        .arg("--root")
        .arg(&data)
        .arg("--state")
        .arg(dir.join("state"))
        .args(["network", "rm", "bridge"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The body of `GET /` from 127.0.0.1:`port` (retried while the server starts).
fn http_get_local(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            write!(s, "GET / HTTP/1.0\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or(r))
        })();
        match got {
            Ok(body) if !body.is_empty() => return Ok(body),
            _ if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Ok(_) => bail!("127.0.0.1:{port} answered nothing"),
            Err(e) => bail!("127.0.0.1:{port}: {e}"),
        }
    }
}

/// Builds busybox:latest from Debian's busybox-static as an OCI layout tar and
/// loads it with `berth load`.
fn image(name: &str, data_root: &Path, output: Option<PathBuf>) -> Result<()> {
    if name != "busybox" {
        bail!("image {name:?}: the images xtask can build are: busybox");
    }
    setup::setup()?;
    run(cargo().args([
        "build",
        "-p",
        "berth",
        "--bin",
        "berth",
        "--bin",
        "berth-monitor",
    ]))?;
    let tar = output.unwrap_or_else(|| root().join("target/images/busybox.tar"));
    if let Some(dir) = tar.parent() {
        std::fs::create_dir_all(dir)?;
    }
    busybox_tar(&tar)?;
    println!("wrote {}", tar.display());
    run(Command::new(root().join("target/debug/berth"))
        .arg("--root")
        .arg(data_root)
        .args(["load", "-i"])
        .arg(&tar))
}

/// Builds berth's three binaries in the release profile (what bench and
/// compare measure), with `extra` cargo arguments (examples).
pub fn build_release(extra: &[&str]) -> Result<()> {
    run(cargo()
        .args(["build", "--release", "-p", "berth"])
        .args([
            "--bin",
            "berth-runc",
            "--bin",
            "berth",
            "--bin",
            "berth-monitor",
        ])
        .args(extra))
}

/// Writes busybox:latest (from Debian's busybox-static) as an OCI layout tar,
/// with berth's image builder run as an example program: the xtask does not
/// link berth, so it builds before `setup` has installed libseccomp.
pub fn busybox_tar(tar: &Path) -> Result<()> {
    run(cargo()
        .args([
            "run",
            "-q",
            "-p",
            "berth",
            "--example",
            "busybox-image",
            "--",
        ])
        .arg(tar)
        .arg("/bin/busybox"))
    .with_context(|| format!("building the busybox image into {}", tar.display()))
}

/// `30m`, `2h`, `900s` or `900` as seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: use e.g. 30m, 2h or 900s"))?;
    match unit {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        _ => Err(format!("duration {s:?}: the unit is s, m or h")),
    }
}

/// The harness's machines: each one's test target and regressions file name.
const MACHINES: [&str; 5] = ["bridge_ip", "cgroups", "lifecycle", "namespaces", "union"];

/// `cargo xtask replay FILE|SEED [--machine NAME] [--host]`.
fn replay(what: &str, machine: Option<String>, host: bool) -> Result<()> {
    let seeds = match std::fs::read_to_string(what) {
        Ok(text) => berth_harness_seeds(&text),
        Err(_) if what.chars().all(|c| c.is_ascii_hexdigit()) && !what.is_empty() => {
            vec![what.to_string()]
        }
        Err(e) => {
            bail!("replay {what:?}: neither a readable regressions file ({e}) nor a hex seed")
        }
    };
    if seeds.is_empty() {
        bail!("replay {what:?}: no `cc SEED` line in it");
    }
    let stem = Path::new(what)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| MACHINES.contains(s) && Path::new(what).is_file());
    let machines: Vec<String> = match (machine, stem) {
        (Some(m), _) if MACHINES.contains(&m.as_str()) => vec![m],
        (Some(m), _) => bail!(
            "replay --machine {m:?}: no such machine (there are: {})",
            MACHINES.join(", ")
        ),
        (None, Some(s)) => vec![s.to_string()],
        (None, None) => MACHINES.iter().map(|s| s.to_string()).collect(),
    };
    println!(
        "replaying {} case(s) on {}: {}",
        seeds.len(),
        machines.join(", "),
        seeds.join(", ")
    );
    let joined = seeds.join(",");
    if host {
        let mut c = cargo();
        c.args(["test", "-p", "berth-harness"]);
        for m in &machines {
            c.args(["--test", m]);
        }
        return run(c
            .args(["--", "--nocapture"])
            .env("BERTH_HARNESS_REPLAY", &joined));
    }
    // SAFETY: set before any thread of this process starts.
    unsafe { std::env::set_var("BERTH_HARNESS_REPLAY", &joined) };
    vm::vm_test(vm::Options {
        filter: None,
        bins: machines,
        cgroup: "v2".into(),
        keep: false,
        jobs: 1,
        timeout: 1800,
    })
}

/// The seeds of a proptest regressions file (`cc HEX` lines).
fn berth_harness_seeds(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("cc "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
