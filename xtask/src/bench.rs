//! `cargo xtask bench`: criterion's benchmarks, saved as a baseline named
//! after the commit, and compared with an earlier baseline in a table; a
//! significant slowdown beyond the threshold fails the command.
//!
//! Criterion does the statistics: this run's samples are saved with
//! `--save-baseline NEW`, then criterion compares them with OLD's
//! (`--load-baseline NEW --baseline OLD`, nothing is measured again) and says
//! for each benchmark the change, its confidence interval, the p-value and its
//! verdict. A benchmark fails when criterion says it regressed (p < 0.05 and
//! the interval beyond its noise band) and the change's point estimate is
//! above the threshold. Criterion's HTML reports stay in target/criterion.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// `cargo xtask bench`'s options.
pub struct Options {
    /// Only benchmarks matching this (criterion's filter, a regex).
    pub filter: Option<String>,
    /// The name to save this run under (default: the commit).
    pub baseline: Option<String>,
    /// The baseline to compare with (default: the one saved before).
    pub compare: Option<String>,
    /// Percent.
    pub threshold: f64,
    /// Features of berth-benches (e.g. the test-only `slowed-ipam`).
    pub features: Vec<String>,
}

/// The order in which baselines were saved.
fn history() -> PathBuf {
    root().join("target/criterion/berth-baselines.txt")
}

/// The current commit, `-dirty` when the tree has changes.
fn commit_name() -> Result<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(root())
        .output()
        .context("git rev-parse")?;
    if !out.status.success() {
        bail!("git rev-parse HEAD failed: not a git checkout? (give --baseline NAME)");
    }
    let mut name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        name.push_str("-dirty");
    }
    Ok(name)
}

fn bench_cmd(o: &Options) -> Command {
    let mut c = cargo();
    c.args(["bench", "-p", "berth-benches", "--benches"]);
    if !o.features.is_empty() {
        c.args(["--features", &o.features.join(",")]);
    }
    c.env("BERTH_RUNC", root().join("target/release/berth-runc"));
    c.env("BERTH", root().join("target/release/berth"));
    c.arg("--");
    if let Some(f) = &o.filter {
        c.arg(f);
    }
    c
}

/// One benchmark's comparison, as criterion reported it.
#[derive(Debug, Default, Clone)]
pub struct Row {
    /// Criterion's id (`group/function`).
    pub id: String,
    /// The change: lower bound, point estimate, upper bound (percent).
    pub change: Option<[f64; 3]>,
    /// The p-value.
    pub p: Option<f64>,
    /// Criterion's verdict sentence.
    pub verdict: String,
}

/// `+1.5%`, `−2.0%` (criterion writes a minus sign) → percent.
fn percent(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('%').replace('\u{2212}', "-");
    s.parse().ok()
}

/// Reads criterion's comparison output: an id line, `time: […]`,
/// `change: [lo pt hi] (p = P < 0.05)`, then a verdict line.
pub fn parse(out: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut current: Option<Row> = None;
    let mut want_verdict = false;
    for line in out.lines() {
        let t = line.trim();
        let noise = [
            "Benchmarking ",
            "Found ",
            "Warning",
            "Gnuplot",
            "Running ",
            "skipped",
        ];
        if !line.starts_with(' ') && !t.is_empty() && !noise.iter().any(|n| t.starts_with(n)) {
            if let Some(r) = current.take() {
                rows.push(r);
            }
            // An id line may carry `time:` on the same line when it is short.
            let id = t.split("  ").next().unwrap_or(t).trim().to_string();
            current = Some(Row {
                id,
                ..Row::default()
            });
            want_verdict = false;
        }
        let Some(r) = current.as_mut() else { continue };
        if let Some(rest) = t.split("change:").nth(1) {
            let inside = rest.split('[').nth(1).and_then(|x| x.split(']').next());
            if let Some(inside) = inside {
                let v: Vec<f64> = inside.split_whitespace().filter_map(percent).collect();
                if let [lo, pt, hi] = v[..] {
                    r.change = Some([lo, pt, hi]);
                }
            }
            r.p = rest
                .split("p = ")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse().ok());
            want_verdict = true;
        } else if want_verdict && !t.is_empty() {
            r.verdict = t.trim_end_matches('.').to_string();
            want_verdict = false;
        }
    }
    if let Some(r) = current {
        rows.push(r);
    }
    rows.retain(|r| r.change.is_some());
    rows
}

/// Every directory named `name` under target/criterion: a baseline's data,
/// one per benchmark (its parent is the benchmark's directory).
fn baseline_dirs(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("target/criterion")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|f| f == name) {
                out.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    out
}

/// The time per iteration of each benchmark in baseline `name`, in ns, from
/// criterion's files (each benchmark's directory has `NAME/benchmark.json`
/// with its full id, and `NAME/estimates.json`).
fn means(name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for p in baseline_dirs(name) {
        let read = |f: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&fs::read(p.join(f)).ok()?).ok()
        };
        if let (Some(b), Some(est)) = (read("benchmark.json"), read("estimates.json"))
            && let (Some(id), Some(m)) = (
                b["full_id"].as_str(),
                // What criterion prints as `time:`: the slope when it
                // measured one, else the mean.
                est["slope"]["point_estimate"]
                    .as_f64()
                    .or(est["mean"]["point_estimate"].as_f64()),
            )
        {
            out.insert(id.to_string(), m);
        }
    }
    out
}

/// `1.23 ms`.
pub fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The table, and the benchmarks that fail the threshold.
pub fn table(
    rows: &[Row],
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    threshold: f64,
) -> (String, Vec<String>) {
    let mut t = String::from(
        "| benchmark | before | after | change (95% CI) | p | criterion's verdict |\n|---|---|---|---|---|---|\n",
    );
    let mut failed = Vec::new();
    for r in rows {
        let [lo, pt, hi] = r.change.unwrap_or([f64::NAN; 3]);
        let fmt = |m: Option<&f64>| m.map_or("-".to_string(), |v| human(*v));
        let regressed = r.verdict.contains("regressed") && pt > threshold;
        if regressed {
            failed.push(format!("{} ({pt:+.1}%)", r.id));
        }
        let _ = writeln!(
            t,
            "| {} | {} | {} | {pt:+.1}% [{lo:+.1}%, {hi:+.1}%] | {} | {}{} |",
            r.id,
            fmt(before.get(&r.id)),
            fmt(after.get(&r.id)),
            r.p.map_or("-".into(), |p| format!("{p:.2}")),
            r.verdict,
            if regressed {
                format!(" — over {threshold}%")
            } else {
                String::new()
            }
        );
    }
    (t, failed)
}

/// `cargo xtask bench`.
pub fn bench(o: Options) -> Result<()> {
    crate::setup::setup()?;
    crate::build_release(&[])?;
    let name = match &o.baseline {
        Some(n) => n.clone(),
        None => commit_name()?,
    };
    if name.is_empty() || name.contains('/') || name == "new" || name == "base" {
        bail!("--baseline {name:?}: a plain name other than new and base");
    }
    let saved = fs::read_to_string(history()).unwrap_or_default();
    run(bench_cmd(&o).args(["--save-baseline", &name]))?;
    // By default the latest baseline that holds every benchmark this run
    // measured (one saved with another --filter may hold none of them).
    let measured = saved_in(&name);
    let old = o.compare.clone().or_else(|| {
        saved
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != name)
            .find(|l| {
                let there = saved_in(l);
                !measured.is_empty() && measured.iter().all(|b| there.contains(b))
            })
            .map(str::to_string)
    });
    let mut names: Vec<&str> = saved.lines().filter(|l| l.trim() != name).collect();
    names.push(&name);
    fs::write(history(), names.join("\n") + "\n")
        .with_context(|| format!("writing {}", history().display()))?;
    println!(
        "saved as baseline {name} (target/criterion; HTML reports: target/criterion/report/index.html)"
    );
    let Some(old) = old else {
        println!(
            "no earlier baseline holds these benchmarks: run again after a change, or give --compare NAME"
        );
        return Ok(());
    };
    compare(&o, &old, &name)
}

/// The benchmarks (their directories under target/criterion) that baseline
/// `name` holds.
fn saved_in(name: &str) -> std::collections::BTreeSet<PathBuf> {
    baseline_dirs(name)
        .into_iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// Criterion's comparison of saved baselines `new` against `old`.
fn compare(o: &Options, old: &str, new: &str) -> Result<()> {
    let out = bench_cmd(o)
        .args(["--load-baseline", new, "--baseline", old])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench (comparison)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("criterion's comparison of {new} against {old} failed:\n{text}");
    }
    let rows = parse(&text);
    if rows.is_empty() {
        bail!("criterion compared nothing: does baseline {old} hold these benchmarks?");
    }
    let (t, failed) = table(&rows, &means(old), &means(new), o.threshold);
    let md = format!("{new} against {old} (threshold {}%):\n\n{t}", o.threshold);
    println!("\n{md}");
    let dir = root().join("target/criterion");
    let file = dir.join(format!("compare-{old}-{new}.md"));
    fs::write(&file, &md).with_context(|| format!("writing {}", file.display()))?;
    println!("(written to {})", rel(&file));
    if !failed.is_empty() {
        bail!(
            "slower than {old} by more than {}%: {}",
            o.threshold,
            failed.join(", ")
        );
    }
    Ok(())
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
Benchmarking ipam_16/allocate lowest + release
Benchmarking ipam_16/allocate lowest + release: Analyzing
ipam_16/allocate lowest + release
                        time:   [1.2000 µs 1.2100 µs 1.2200 µs]
                        change: [+1900.1% +1950.0% +2001.3%] (p = 0.00 < 0.05)
                        Performance has regressed.
Found 3 outliers among 100 measurements (3.00%)
ipam_16/allocate given + release
                        time:   [60.000 ns 61.000 ns 62.000 ns]
                        change: [\u{2212}3.5944% \u{2212}1.4809% +0.5158%] (p = 0.16 > 0.05)
                        No change in performance detected.
short/id                time:   [1.0 ns 1.0 ns 1.0 ns]
                        change: [+4.0% +5.0% +6.0%] (p = 0.00 < 0.05)
                        Performance has regressed.
";

    #[test]
    fn reads_criterions_comparison() {
        let rows = parse(OUT);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].id, "ipam_16/allocate lowest + release");
        assert_eq!(rows[0].change, Some([1900.1, 1950.0, 2001.3]));
        assert_eq!(rows[0].p, Some(0.0));
        assert_eq!(rows[0].verdict, "Performance has regressed");
        assert_eq!(rows[1].change, Some([-3.5944, -1.4809, 0.5158]));
        assert_eq!(rows[1].p, Some(0.16));
        assert_eq!(rows[2].id, "short/id");
    }

    #[test]
    fn only_a_significant_regression_over_the_threshold_fails() {
        let rows = parse(OUT);
        let (t, failed) = table(&rows, &BTreeMap::new(), &BTreeMap::new(), 10.0);
        assert_eq!(failed, ["ipam_16/allocate lowest + release (+1950.0%)"]);
        assert!(
            t.contains(
                "| short/id | - | - | +5.0% [+4.0%, +6.0%] | 0.00 | Performance has regressed |"
            ),
            "{t}"
        );
        let (_, failed) = table(&rows, &BTreeMap::new(), &BTreeMap::new(), 4.0);
        assert_eq!(failed.len(), 2, "short/id's +5% is over 4%");
    }
}
