//! Helpers shared by the benchmarks: busybox bundles and the runtimes to compare.
#![warn(missing_docs)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The berth-runc binary to measure: `BERTH_RUNC`, else the release build.
pub fn berth_runc() -> PathBuf {
    std::env::var_os("BERTH_RUNC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth-runc")
        })
}

/// The berth binary to measure: `BERTH`, else the release build (berth-monitor
/// beside it).
pub fn berth() -> PathBuf {
    std::env::var_os("BERTH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth"))
}

/// Whether the benchmarks that start containers can run here.
pub fn can_start_containers() -> Result<(), String> {
    if !nix_root() {
        return Err("needs root".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Err("needs busybox-static (cargo xtask setup)".into());
    }
    if !berth_runc().exists() {
        return Err(format!(
            "{} is not built (cargo xtask bench builds it)",
            berth_runc().display()
        ));
    }
    Ok(())
}

fn nix_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A busybox bundle in `dir` running `args`, with berth's default config
/// (terminal off) changed by `edit`.
pub fn busybox_bundle(
    dir: &Path,
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> std::io::Result<()> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|n| *n != "busybox")
    {
        let _ = symlink("busybox", rootfs.join("bin").join(name));
    }
    let mut spec = berth::oci::spec::default_spec();
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["args"] = serde_json::json!(args);
    edit(&mut spec);
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
}
