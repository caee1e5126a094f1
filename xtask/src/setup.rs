//! Installs the Debian packages the build and tests need, when missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

/// Packages: the seccomp library to link against, busybox for test rootfs, runc
/// and crun to compare with, containerd for the engine test, procps for `ps`,
/// skopeo to check berth's image archives with another tool, tini (its static
/// build is what `berth run --init` mounts as the container's PID 1), the
/// DejaVu font `cargo xtask compare` draws its chart's text with.
const PACKAGES: &[&str] = &[
    "busybox-static",
    "libseccomp-dev",
    "pkg-config",
    "runc",
    "crun",
    "containerd",
    "procps",
    "skopeo",
    "tini",
    "nftables",
    "iproute2",
    "containernetworking-plugins",
    "fonts-dejavu-core",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Finds a program on PATH (and in /usr/sbin, /sbin).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// Installs what is missing, or says what to install.
pub fn setup() -> Result<()> {
    setup_packages(PACKAGES)
}

/// Installs `packages` where missing (as root on Debian), or says what to install.
pub fn setup_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = nix_is_root();
    if !root || which("apt-get").is_none() {
        bail!(
            "missing packages: {} (install them as root: apt-get install {})",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("xtask setup: installing {}", missing.join(" "));
    crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
