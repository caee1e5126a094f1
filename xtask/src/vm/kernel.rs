//! The guest kernel: Debian's cloud kernel package, downloaded once with
//! `apt-get download`, unpacked under target/vm-test/kernel, and its bzImage
//! turned into the uncompressed PVH `vmlinux` that QEMU's microvm boots directly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// An unpacked kernel.
pub struct Kernel {
    /// Kernel release, e.g. 6.1.0-56-cloud-amd64.
    pub release: String,
    /// The unpacked package (lib/modules/RELEASE inside).
    pub root: PathBuf,
    /// The uncompressed kernel to boot.
    pub vmlinux: PathBuf,
}

fn versioned_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-cloud-amd64"])
        .output()
        .context("apt-cache")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-"))
                .map(String::from)
        })
        .ok_or_else(|| anyhow!("apt-cache knows no linux-image-cloud-amd64 (run apt-get update)"))
}

/// Downloads and unpacks the kernel unless it is cached.
pub fn ensure(dir: &Path) -> Result<Kernel> {
    fs::create_dir_all(dir)?;
    let stamp = dir.join("release");
    if let Ok(release) = fs::read_to_string(&stamp) {
        let release = release.trim().to_string();
        let k = Kernel {
            root: dir.join("root"),
            vmlinux: dir.join("vmlinux"),
            release,
        };
        if k.vmlinux.exists() && k.root.join("lib/modules").join(&k.release).exists() {
            return Ok(k);
        }
    }
    let pkg = match versioned_package() {
        Ok(p) => p,
        Err(_) => {
            crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
            versioned_package()?
        }
    };
    let release = pkg.trim_start_matches("linux-image-").to_string();
    println!("vm-test: downloading {pkg}");
    crate::run(
        Command::new("apt-get")
            .args(["download", "-q", &pkg])
            .current_dir(dir),
    )?;
    let deb = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb") && p.to_string_lossy().contains(&pkg))
        .ok_or_else(|| anyhow!("apt-get download left no .deb for {pkg}"))?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let vmlinux = dir.join("vmlinux");
    extract_vmlinux(&root.join(format!("boot/vmlinuz-{release}")), &vmlinux)?;
    let _ = fs::remove_file(&deb);
    fs::write(&stamp, &release)?;
    Ok(Kernel {
        release,
        root,
        vmlinux,
    })
}

/// The compressed payload of a bzImage, decompressed by the matching tool.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<()> {
    let d = fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    if d.len() < 0x250 {
        bail!("{}: too short for a bzImage", bzimage.display());
    }
    let setup_sects = if d[0x1f1] == 0 { 4 } else { d[0x1f1] as usize };
    let off = u32::from_le_bytes(d[0x248..0x24c].try_into()?) as usize;
    let len = u32::from_le_bytes(d[0x24c..0x250].try_into()?) as usize;
    let start = (setup_sects + 1) * 512 + off;
    let payload = d
        .get(start..start + len)
        .ok_or_else(|| anyhow!("{}: payload outside the file", bzimage.display()))?;
    let tool: &[&str] = match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => &["lz4", "-dc"],
        [0xfd, b'7', b'z', b'X', b'Z', ..] => &["xz", "-dc", "--single-stream"],
        [0x28, 0xb5, 0x2f, 0xfd, ..] => &["zstd", "-dc"],
        [0x1f, 0x8b, ..] => &["gzip", "-dc"],
        _ => bail!("{}: unknown kernel compression", bzimage.display()),
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", tool[0]))?;
    {
        use std::io::Write;
        // The payload may carry trailing bytes the decompressor ignores; its exit
        // status is judged by the ELF it wrote.
        let _ = child.stdin.take().expect("piped").write_all(payload);
    }
    let _ = child.wait();
    let elf = fs::read(out)?;
    if elf.len() < 1 << 20 || &elf[..4] != b"\x7fELF" {
        bail!(
            "{}: decompressing with {} gave no kernel ELF",
            bzimage.display(),
            tool[0]
        );
    }
    Ok(())
}
