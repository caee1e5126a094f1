//! Busybox bundles for the demo and the comparisons.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Makes `dir` a bundle: a busybox rootfs and a config.json from `berth-runc spec`'s
/// defaults with the terminal off. Returns the bundle path.
pub fn busybox_bundle(dir: &Path, berth_runc: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        fs::create_dir_all(rootfs.join(d))
            .with_context(|| format!("creating {}", rootfs.join(d).display()))?;
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("copying /bin/busybox (is busybox-static installed?)")?;
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|n| *n != "busybox")
    {
        let _ = symlink("busybox", rootfs.join("bin").join(name));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    let bin = berth_runc;
    let spec = if bin.exists() {
        let out = Command::new(bin)
            .args(["spec", "--bundle"])
            .arg(dir)
            .status()?;
        anyhow::ensure!(out.success(), "berth-runc spec failed");
        serde_json::from_slice(&fs::read(dir.join("config.json"))?)?
    } else {
        anyhow::bail!("{} is not built", bin.display());
    };
    let mut spec: Value = spec;
    spec["process"]["terminal"] = json!(false);
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    Ok(dir.to_path_buf())
}

/// Edits a bundle's config.json.
pub fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) -> Result<()> {
    let path = bundle.join("config.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&path)?)?;
    f(&mut v);
    fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}
