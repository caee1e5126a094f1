//! The guest's initramfs: the Rust init, busybox, `ip` and `nft` with their
//! libraries, the kernel modules the tests need (dependencies first, signatures
//! stripped: loading is twice as fast and the kernel does not require them), the
//! test binaries and everything they link against.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use super::cpio::Cpio;
use super::kernel::Kernel;

/// Modules loaded at boot; their dependencies come first.
const PRELOAD: &[&str] = &[
    "overlay",
    "veth",
    "bridge",
    "br_netfilter",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nft_fib_inet",
    "nft_reject_inet",
    // Eight loop disks (7:0..7:7): the cgroups machine throttles block I/O
    // of one.
    "loop",
];

/// Host programs the guest gets, with their libraries.
const HOST_BINS: &[&str] = &["/usr/sbin/ip", "/usr/sbin/nft", "/usr/bin/tini-static"];

/// Libraries Rust test binaries load besides what ldd lists.
const EXTRA_LIBS: &[&str] = &["/lib/x86_64-linux-gnu/libgcc_s.so.1"];

/// Adds an ELF at `guest` and every library `ldd` names for it.
pub fn add_elf(cpio: &mut Cpio, host: &Path, guest: &str) -> Result<()> {
    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    cpio.file(guest, 0o755, &data);
    libs(cpio, host)
}

/// Adds a binary of ours without its debug info (debug builds are ~80% DWARF:
/// with it the initramfs outgrows the guest's memory and the kernel stops
/// unpacking it half way). Panic messages keep their file:line; symbols stay.
pub fn add_stripped(cpio: &mut Cpio, host: &Path, guest: &str) -> Result<()> {
    let tmp = tempfile_path(host);
    let st = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(host)
        .arg(&tmp)
        .status()
        .context("objcopy (binutils)")?;
    if !st.success() {
        anyhow::bail!("objcopy --strip-debug {} failed", host.display());
    }
    let data = fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()));
    let _ = fs::remove_file(&tmp);
    cpio.file(guest, 0o755, &data?);
    libs(cpio, host)
}

fn tempfile_path(host: &Path) -> std::path::PathBuf {
    let name = host
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("vmtest-strip-{}-{name}", std::process::id()))
}

fn libs(cpio: &mut Cpio, host: &Path) -> Result<()> {
    let out = Command::new("ldd").arg(host).output().context("ldd")?;
    for lib in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        if !cpio.has(lib) {
            let data = fs::read(lib).with_context(|| format!("reading {lib}"))?;
            cpio.file(lib, 0o755, &data);
        }
    }
    Ok(())
}

fn modinfo_field(ko: &[u8], key: &str) -> Vec<String> {
    let needle = format!("{key}=");
    ko.split(|b| *b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter_map(|s| s.strip_prefix(needle.as_str()))
        .map(String::from)
        .collect()
}

fn strip_signature(mut ko: Vec<u8>) -> Vec<u8> {
    const MARKER: &[u8] = b"~Module signature appended~\n";
    if ko.ends_with(MARKER) && ko.len() > MARKER.len() + 12 {
        let end = ko.len() - MARKER.len();
        let sig_len = u32::from_be_bytes(ko[end - 4..end].try_into().expect("4 bytes")) as usize;
        if let Some(keep) = end.checked_sub(12 + sig_len) {
            ko.truncate(keep);
        }
    }
    ko
}

/// Module name (with `-` as `_`) → its file, for the whole tree.
fn module_index(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut idx = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                idx.insert(name.replace('-', "_"), p);
            }
        }
    }
    idx
}

/// The load order: every module after its dependencies.
fn load_order(idx: &BTreeMap<String, PathBuf>) -> Result<Vec<(String, Vec<u8>)>> {
    fn visit(
        name: &str,
        idx: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let name = name.replace('-', "_");
        if !seen.insert(name.clone()) {
            return Ok(());
        }
        // Not a file: built into the kernel.
        let Some(path) = idx.get(&name) else {
            return Ok(());
        };
        let ko = fs::read(path)?;
        for soft in modinfo_field(&ko, "softdep") {
            for dep in soft.split_whitespace().filter(|w| !w.ends_with(':')) {
                let generic = format!("{dep}_generic");
                visit(
                    if idx.contains_key(&generic) {
                        &generic
                    } else {
                        dep
                    },
                    idx,
                    seen,
                    out,
                )?;
            }
        }
        for deps in modinfo_field(&ko, "depends") {
            for dep in deps.split(',').filter(|d| !d.is_empty()) {
                visit(dep, idx, seen, out)?;
            }
        }
        out.push((name, strip_signature(ko)));
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in PRELOAD {
        if !idx.contains_key(*m) {
            return Err(anyhow!("kernel module {m} not found in the kernel package"));
        }
        visit(m, idx, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// Everything a test binary needs in the guest.
pub struct Payload {
    /// The guest init.
    pub init: PathBuf,
    /// Test binaries, run in order.
    pub tests: Vec<PathBuf>,
    /// Other binaries, placed at their host paths (berth-runc, which the tests find there).
    pub extra: Vec<PathBuf>,
}

/// Builds the initramfs.
pub fn build(kernel: &Kernel, payload: &Payload) -> Result<Vec<u8>> {
    let mut c = Cpio::default();
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/etc/vmtest",
        "/newroot",
        "/vmtest/bin",
        "/mnt",
        "/var",
    ] {
        c.dir(d);
    }
    c.file("/init", 0o755, &fs::read(&payload.init)?);
    add_elf(&mut c, &payload.init, "/sbin/vm-init")?;
    c.file(
        "/bin/busybox",
        0o755,
        &fs::read("/bin/busybox").context("busybox-static")?,
    );
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        c.symlink(&format!("/bin/{applet}"), "busybox");
    }
    c.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    c.file("/etc/group", 0o644, b"root:x:0:\n");
    for f in ["/etc/protocols", "/etc/services"] {
        if let Ok(d) = fs::read(f) {
            c.file(f, 0o644, &d);
        }
    }
    for b in HOST_BINS {
        add_elf(
            &mut c,
            Path::new(b),
            &format!("/usr{}", b.trim_start_matches("/usr")),
        )?;
    }
    for l in EXTRA_LIBS {
        if let Ok(d) = fs::read(l) {
            c.file(l, 0o755, &d);
        }
    }
    let moddir = kernel.root.join("lib/modules").join(&kernel.release);
    let order = load_order(&module_index(&moddir.join("kernel")))?;
    let mut list = String::new();
    for (name, ko) in &order {
        let guest = format!("/lib/modules/{}/{name}.ko", kernel.release);
        c.file(&guest, 0o644, ko);
        list.push_str(&guest);
        list.push('\n');
    }
    c.file("/etc/vmtest/modules", 0o644, list.as_bytes());
    for t in &payload.tests {
        let name = t
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("bad test path"))?;
        add_stripped(&mut c, t, &format!("/vmtest/bin/{name}"))?;
    }
    for e in &payload.extra {
        add_stripped(&mut c, e, e.to_str().ok_or_else(|| anyhow!("bad path"))?)?;
    }
    Ok(c.finish())
}
