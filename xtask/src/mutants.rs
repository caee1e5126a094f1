//! `cargo xtask mutants`: the harness's own strength. cargo-mutants changes
//! berth's network, layers or cgroups code one small bug at a time and runs
//! that part's state machine against each change; a mutant the machine does
//! not catch (a "missed" one) names a behaviour the machine does not observe.
//!
//! By default the machines run as root on this machine, each case in
//! namespaces of its own (network and mount namespaces; the cgroups machine
//! below a cgroup of its own), as in `cargo test -p berth-harness`. With
//! `--vm v1|v2` each mutant's machine runs in a throw-away VM of that cgroup
//! layout instead (`cargo xtask vm-test --bin MACHINE`): the only way to judge
//! the cgroup v2 code from this v1 host. cargo-mutants works in a copy of the
//! tree, so this one is never changed.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// The cargo-mutants release the numbers were taken with.
const VERSION: &str = "27.1.0";

/// A part of the runtime and the machine that holds it against the model.
struct Set {
    name: &'static str,
    files: &'static [&'static str],
    machine: &'static str,
}

const SETS: &[Set] = &[
    Set {
        name: "ipam",
        files: &["runtime/src/network/ipam.rs"],
        machine: "bridge_ip",
    },
    Set {
        name: "network",
        files: &["runtime/src/network/*.rs"],
        machine: "bridge_ip",
    },
    Set {
        name: "layers",
        files: &["runtime/src/layers/*.rs"],
        machine: "union",
    },
    Set {
        name: "cgroups",
        files: &["runtime/src/oci/cgroups/*.rs"],
        machine: "cgroups",
    },
];

/// The names `--set` takes.
pub fn set_names() -> Vec<&'static str> {
    SETS.iter().map(|s| s.name).collect()
}

fn installed() -> bool {
    Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(VERSION))
}

/// What one set came to, from cargo-mutants' lists.
struct Tally {
    caught: Vec<String>,
    missed: Vec<String>,
    timeout: Vec<String>,
    unviable: Vec<String>,
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn tally(out: &Path) -> Tally {
    let dir = out.join("mutants.out");
    Tally {
        caught: lines(&dir, "caught.txt"),
        missed: lines(&dir, "missed.txt"),
        timeout: lines(&dir, "timeout.txt"),
        unviable: lines(&dir, "unviable.txt"),
    }
}

/// cargo-mutants calls `$CARGO`; with `--vm` it is this script, which turns
/// the test phase (`cargo test` without `--no-run`) into a VM run of the
/// machine in the mutated copy of the tree, and passes every other call on.
const VM_CARGO: &str = r#"#!/bin/sh
# Written by cargo xtask mutants --vm: cargo, except that cargo-mutants' test
# phase runs the machine in a VM.
real="$BERTH_MUTANTS_CARGO"
unset CARGO
if [ "$1" = test ]; then
    case " $* " in
    *" --no-run "*) ;;
    *) exec "$real" xtask vm-test --bin "$BERTH_MUTANTS_MACHINE" --cgroup "$BERTH_MUTANTS_CGROUP" --jobs 1 --timeout 900 ;;
    esac
fi
exec "$real" "$@"
"#;

/// `cargo xtask mutants --set NAME… [--shard K/N] [--file GLOB…] [--re REGEX]
/// [--vm v1|v2]`.
pub fn mutants(
    sets: &[String],
    shard: Option<&str>,
    files: &[String],
    re: Option<&str>,
    vm: Option<&str>,
) -> Result<()> {
    if let Some(l) = vm
        && l != "v1"
        && l != "v2"
    {
        bail!("--vm {l:?}: the cgroup layout of the VMs, v1 or v2");
    }
    if !crate::setup::nix_is_root() {
        bail!("cargo xtask mutants: the harness's machines need root");
    }
    let chosen: Vec<&Set> = if sets.is_empty() {
        SETS.iter().filter(|s| s.name != "ipam").collect()
    } else {
        sets.iter()
            .map(|n| {
                SETS.iter()
                    .find(|s| s.name == n)
                    .with_context(|| format!("--set {n:?}: not one of {}", set_names().join(", ")))
            })
            .collect::<Result<_>>()?
    };
    if !installed() {
        run(cargo().args(["install", "--locked", &format!("cargo-mutants@{VERSION}")]))?;
    }
    let mut report = String::from(
        "| set | files | machine | mutants | caught | missed | timeout | unviable | score |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut missed_all = String::new();
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let wrapper = root().join("target/mutants/cargo-vm");
    if vm.is_some() {
        fs::create_dir_all(root().join("target/mutants"))?;
        fs::write(&wrapper, VM_CARGO).with_context(|| format!("writing {}", wrapper.display()))?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
        crate::vm::ensure_kernel()?;
    }
    for set in chosen {
        // cargo-mutants' own baseline runs the mutated package's tests; the
        // machine is the test suite here, so it is run unmutated first.
        println!("baseline: the {} machine on the tree as it is", set.machine);
        match vm {
            None => run(cargo().args(["test", "-p", "berth-harness", "--test", set.machine]))?,
            Some(l) => run(cargo().args([
                "xtask",
                "vm-test",
                "--bin",
                set.machine,
                "--cgroup",
                l,
                "--jobs",
                "1",
            ]))?,
        }
        let out = root().join("target/mutants").join(match vm {
            None => set.name.to_string(),
            Some(l) => format!("{}-vm-{l}", set.name),
        });
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        // Started directly, not as `cargo mutants`: cargo (rustup's) would
        // set $CARGO to itself for its subcommand, over the script's.
        let mut c = Command::new("cargo-mutants");
        c.current_dir(root())
            // A caught mutant needs one failing case, not its shrinking (slow
            // under TCG: every step replayed in the VM).
            .env("BERTH_HARNESS_NO_SHRINK", "1")
            .args(["mutants", "-p", "berth", "--test-package=berth-harness"])
            .args([
                "--baseline=skip",
                "--timeout",
                if vm.is_some() { "1200" } else { "300" },
                "--build-timeout",
                "600",
            ])
            .arg("-o")
            .arg(&out);
        if vm.is_some() {
            // The build phase builds only the machine's test binary; the test
            // phase is the script's VM run.
            c.env("CARGO", &wrapper)
                .env("BERTH_MUTANTS_CARGO", &real_cargo)
                .env("BERTH_MUTANTS_MACHINE", set.machine)
                .env("BERTH_MUTANTS_CGROUP", vm.unwrap_or_default())
                .env("BERTH_VM_KERNEL_DIR", crate::vm::kernel_dir())
                .arg(format!("--cargo-arg=--test={}", set.machine));
        }
        let chosen_files: Vec<&str> = if files.is_empty() {
            set.files.to_vec()
        } else {
            files.iter().map(String::as_str).collect()
        };
        for f in &chosen_files {
            c.args(["-f", f]);
        }
        if let Some(r) = re {
            c.args(["--re", r]);
        }
        if let Some(s) = shard {
            // Every N-th mutant (cargo-mutants' default takes a slice: the
            // first files only).
            c.args(["--shard", s, "--sharding", "round-robin"]);
        }
        c.args(["--", "--test", set.machine]);
        // Exit 2 (missed mutants) and 3 (timeouts) are results, not failures.
        let st = c.status().context("cargo mutants (installed above)")?;
        if !matches!(st.code(), Some(0 | 2 | 3)) {
            bail!("cargo mutants for {} failed: {st}", set.name);
        }
        let t = tally(&out);
        let judged = t.caught.len() + t.missed.len() + t.timeout.len();
        let score = if judged == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.0}%",
                100.0 * (t.caught.len() + t.timeout.len()) as f64 / judged as f64
            )
        };
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            set.name,
            chosen_files.join(" "),
            set.machine,
            judged + t.unviable.len(),
            t.caught.len(),
            t.missed.len(),
            t.timeout.len(),
            t.unviable.len(),
            score
        )?;
        for m in &t.missed {
            writeln!(missed_all, "- {} ({})", m, set.machine)?;
        }
    }
    let mut shard_note = shard.map_or(String::new(), |s| format!(", shard {s}"));
    if let Some(r) = re {
        shard_note.push_str(&format!(", mutants matching {r:?}"));
    }
    if let Some(l) = vm {
        shard_note.push_str(&format!(", each machine in a cgroup {l} VM"));
    }
    let text = format!(
        "cargo-mutants {VERSION}{shard_note}; the score is (caught + timeout) / (caught + missed + timeout)\n\n{report}\nmissed:\n{}",
        if missed_all.is_empty() {
            "(none)\n".to_string()
        } else {
            missed_all
        }
    );
    let md = root().join("target/mutants/summary.md");
    fs::write(&md, &text).with_context(|| format!("writing {}", md.display()))?;
    println!("\n{text}\n(written to {})", md.display());
    Ok(())
}
