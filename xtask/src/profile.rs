//! `cargo xtask profile-start`: one container start taken apart. berth-runc
//! marks each step it passes when `BERTH_PROFILE` names a file (the runtime,
//! the stage-1 process that makes the namespaces, and the container's init,
//! up to its exec); this runs `berth-runc run` of busybox `true` a number of
//! times, each with a profile of its own, and prints each step's median time
//! since the step before and since the first mark, so that the next
//! optimisation is chosen from data.
//!
//! The bundle is a realistic one: berth's default spec with a cgroup holding
//! memory and pids limits and the default seccomp profile (Docker's).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{bundle, cargo, root, run, setup};

/// One mark: (ns since the round's first mark, pid, step).
type Mark = (f64, u32, String);

fn parse(text: &str) -> Vec<Mark> {
    let mut marks: Vec<(i128, u32, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
            ))
        })
        .collect();
    marks.sort_by_key(|m| m.0);
    let t0 = marks.first().map_or(0, |m| m.0);
    marks
        .into_iter()
        .map(|(t, p, s)| ((t - t0) as f64 / 1e6, p, s))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The table: steps in the order of the first round, each with its median
/// time since the step before (in that round's order) and since the first mark.
fn table(rounds: &[Vec<Mark>], walls: &[f64]) -> String {
    let order: Vec<String> = rounds
        .first()
        .map(|r| r.iter().map(|m| m.2.clone()).collect())
        .unwrap_or_default();
    let mut delta: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut at: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rounds {
        for (k, m) in r.iter().enumerate() {
            let before = if k == 0 { 0.0 } else { r[k - 1].0 };
            delta.entry(&m.2).or_default().push(m.0 - before);
            at.entry(&m.2).or_default().push(m.0);
        }
    }
    let mut md = String::from(
        "| step (process: what is done) | median ms since the step before | median ms since main |\n|---|---|---|\n",
    );
    for s in &order {
        let d = median(
            delta
                .get_mut(s.as_str())
                .map_or(&mut [][..], |v| &mut v[..]),
        );
        let a = median(at.get_mut(s.as_str()).map_or(&mut [][..], |v| &mut v[..]));
        md.push_str(&format!("| {s} | {d:.3} | {a:.3} |\n"));
    }
    let mut spans: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.last().map(|m| m.0))
        .collect();
    let span = median(&mut spans);
    let mut w = walls.to_vec();
    let wall = median(&mut w);
    md.push_str(&format!(
        "| (outside the marks: exec of berth-runc up to main, and its exit) | {:.3} | |\n| **whole process, as the caller sees it** | | **{wall:.3}** |\n",
        wall - span
    ));
    md
}

/// `cargo xtask profile-start --rounds N`.
pub fn profile_start(rounds: usize) -> Result<()> {
    if rounds == 0 {
        bail!("--rounds 0: at least one round");
    }
    setup::setup()?;
    run(cargo().args(["build", "--release", "-p", "berth", "--bin", "berth-runc"]))?;
    let runc = root().join("target/release/berth-runc");
    let dir = root().join("target/profile-start");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let b = bundle::busybox_bundle(&dir.join("bundle"), &runc)?;
    let seccomp = seccomp_profile()?;
    bundle::edit_config(&b, |c| {
        c["process"]["args"] = serde_json::json!(["true"]);
        c["linux"]["cgroupsPath"] =
            serde_json::json!(format!("/berth-profile-start-{}", std::process::id()));
        c["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 64 << 20 });
        c["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 100 });
        c["linux"]["seccomp"] = seccomp;
    })?;
    let mut all = Vec::new();
    let mut walls = Vec::new();
    for r in 0..rounds {
        let prof = dir.join(format!("round-{r}.txt"));
        let t = Instant::now();
        let out = Command::new(&runc)
            .arg("--root")
            .arg(dir.join("state"))
            .args(["run", "--bundle"])
            .arg(&b)
            .arg(format!("profile-{r}"))
            .env("BERTH_PROFILE", &prof)
            .stdin(Stdio::null())
            .output()
            .context("running berth-runc")?;
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            bail!(
                "berth-runc run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = std::fs::read_to_string(&prof)
            .with_context(|| format!("reading {} (berth-runc wrote no profile)", prof.display()))?;
        all.push(parse(&text));
        walls.push(wall);
    }
    let md = table(&all, &walls);
    println!(
        "\nberth-runc run of busybox `true` (default spec, a cgroup with memory and pids limits, the default seccomp profile), {rounds} rounds; the runtime, stage-1 and init run side by side, so a step's time is from whichever mark came before it:\n\n{md}"
    );
    let path = dir.join("profile.md");
    std::fs::write(&path, &md)?;
    println!(
        "written to {} (each round's marks: round-N.txt)",
        path.display()
    );
    Ok(())
}

/// berth's default seccomp profile (Docker's), from berth's example program.
fn seccomp_profile() -> Result<serde_json::Value> {
    let out = cargo()
        .args([
            "run",
            "-q",
            "--release",
            "-p",
            "berth",
            "--example",
            "seccomp-profile",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo run --example seccomp-profile")?;
    if !out.status.success() {
        bail!("the seccomp-profile example failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the seccomp-profile example's JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_ordered_and_timed_from_the_first_mark() {
        let r1 = parse("3000000 7 b\n1000000 7 a\n6000000 8 c\nnot a line\n");
        assert_eq!(
            r1,
            vec![
                (0.0, 7, "a".to_string()),
                (2.0, 7, "b".to_string()),
                (5.0, 8, "c".to_string())
            ]
        );
        let r2 = parse("0 1 a\n4000000 1 b\n5000000 2 c\n");
        let md = table(&[r1, r2], &[9.0, 7.0]);
        assert!(md.contains("| b | 4.000 | 4.000 |"), "{md}");
        assert!(md.contains("| c | 3.000 | 5.000 |"), "{md}");
        assert!(md.contains("**9.000**"), "{md}");
    }
}
