//! The container's filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Runs in the container's init, inside its new mount namespace, before and after
//! pivot_root. Every mount target is resolved inside the rootfs with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink in the image cannot point a mount (or a
//! device node) at a host path; the mount is then made on `/proc/self/fd/N` of the
//! resolved target. Missing targets are created the same way, one component at a time.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, chdir, chroot, fchdir, fchownat, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use super::cgroups::{self, CgroupPaths, Layout};
use super::error::{Error, Result, SysContext};

/// What mount setup needs to know about the container.
pub struct MountContext<'a> {
    /// Absolute rootfs path (in the runtime's view).
    pub rootfs: &'a Path,
    /// The bundle, against which relative bind sources resolve.
    pub bundle: &'a Path,
    /// The container has its own user namespace (device nodes must be bind-mounted).
    pub userns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
    /// The container's cgroups.
    pub cgroup: &'a CgroupPaths,
}

/// Parsed mount options.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, …) to set with mount_setattr.
    pub rec_set: u64,
    /// Recursive attributes to clear.
    pub rec_clear: u64,
    /// Filesystem-specific options, joined with commas.
    pub data: Vec<String>,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
const MS_NOSYMFOLLOW: u64 = 256;

/// The flag of a propagation mode name (`rslave`, `private`, …).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parses OCI mount options into flags and data, as mount(8) reads them.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        rec_set: 0,
        rec_clear: 0,
        data: Vec::new(),
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosymfollow" => (MsFlags::from_bits_retain(MS_NOSYMFOLLOW), MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "tmpcopyup" => continue,
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                    continue;
                }
                let rec = match other {
                    "rro" => Some((MOUNT_ATTR_RDONLY, true)),
                    "rrw" => Some((MOUNT_ATTR_RDONLY, false)),
                    "rnosuid" => Some((MOUNT_ATTR_NOSUID, true)),
                    "rsuid" => Some((MOUNT_ATTR_NOSUID, false)),
                    "rnodev" => Some((MOUNT_ATTR_NODEV, true)),
                    "rdev" => Some((MOUNT_ATTR_NODEV, false)),
                    "rnoexec" => Some((MOUNT_ATTR_NOEXEC, true)),
                    "rexec" => Some((MOUNT_ATTR_NOEXEC, false)),
                    "rnoatime" => Some((MOUNT_ATTR_NOATIME, true)),
                    "rstrictatime" => Some((MOUNT_ATTR_STRICTATIME, true)),
                    "rnodiratime" => Some((MOUNT_ATTR_NODIRATIME, true)),
                    "rnosymfollow" => Some((MOUNT_ATTR_NOSYMFOLLOW, true)),
                    "rsymfollow" => Some((MOUNT_ATTR_NOSYMFOLLOW, false)),
                    _ => None,
                };
                match rec {
                    Some((attr, true)) => o.rec_set |= attr,
                    Some((attr, false)) => o.rec_clear |= attr,
                    None => o.data.push(other.to_string()),
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o
}

fn proc_fd(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn in_root(root: &impl AsFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), rel, how)
}

/// Resolves "." and ".." lexically, never above "/".
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn relative(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Resolves `dest` inside the rootfs, creating it (a directory, or an empty file
/// when `file`) and its missing parents; returns an O_PATH descriptor of it.
pub fn ensure_target(root: &File, dest: &Path, file: bool) -> Result<OwnedFd> {
    ensure_target_depth(root, dest, file, 0)
}

fn ensure_target_depth(root: &File, dest: &Path, file: bool, depth: u32) -> Result<OwnedFd> {
    if depth > 40 {
        return Err(Error::Sys {
            what: format!("mount target {}", dest.display()),
            source: Errno::ELOOP,
        });
    }
    let rel = relative(dest);
    let what = || format!("mount target {}", dest.display());
    let mut parent = in_root(root, Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY).sys(what)?;
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let last = i + 1 == comps.len();
        let flags = if last && file {
            OFlag::O_PATH
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        };
        match in_root(root, &prefix, flags) {
            Ok(fd) => parent = fd,
            Err(Errno::ENOENT) => {
                // A dangling symlink: make what it points to, inside the root.
                if let Ok(link) = nix::fcntl::readlinkat(&parent, c.as_os_str()) {
                    let link = PathBuf::from(link);
                    let base = Path::new("/").join(prefix.parent().unwrap_or(Path::new("")));
                    let target = if link.is_absolute() {
                        link
                    } else {
                        base.join(link)
                    };
                    ensure_target_depth(root, &normalize(&target), file && last, depth + 1)?;
                    parent = in_root(root, &prefix, flags).sys(what)?;
                    continue;
                }
                if last && file {
                    let fd = openat(
                        &parent,
                        c.as_os_str(),
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .sys(what)?;
                    drop(fd);
                } else {
                    match nix::sys::stat::mkdirat(
                        &parent,
                        c.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(Error::Sys {
                                what: what(),
                                source: e,
                            });
                        }
                    }
                }
                parent = in_root(root, &prefix, flags).sys(what)?;
            }
            Err(e) => {
                return Err(Error::Sys {
                    what: what(),
                    source: e,
                });
            }
        }
    }
    Ok(parent)
}

fn do_mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &dyn Fn() -> String,
) -> Result<()> {
    mount(src, target, fstype, flags, data).sys(what)
}

/// Flags of the mount at `path` that an unprivileged remount may not drop.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn mount_setattr(target: &Path, set: u64, clear: u64) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        set: u64,
        clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        set,
        clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let c = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::Other(e.to_string()))?;
    // SAFETY: a valid path and a correctly sized struct that the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            0x8000u32, /* AT_RECURSIVE */
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r)
        .map(drop)
        .sys(|| format!("mount_setattr {}", target.display()))
}

/// Mounts one entry of `mounts`.
pub fn mount_entry(ctx: &MountContext, root: &File, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let what = || {
        format!(
            "mounting {} on {}",
            m.source().as_deref().unwrap_or(Path::new(typ)).display(),
            dest.display()
        )
    };
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());

    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, dest, &opts);
    }
    if is_bind {
        let src = m.source().as_deref().ok_or_else(|| {
            Error::Other(format!(
                "mount {}: a bind mount needs a source",
                dest.display()
            ))
        })?;
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            ctx.bundle.join(src)
        };
        let meta = fs::metadata(&src).map_err(|e| Error::Io {
            what: "bind mount source",
            path: src.clone(),
            source: e,
        })?;
        let target = ensure_target(root, dest, !meta.is_dir())?;
        let tpath = proc_fd(&target);
        let rec = opts.flags & MsFlags::MS_REC;
        do_mount(
            Some(&src),
            &tpath,
            None,
            MsFlags::MS_BIND | rec,
            None,
            &what,
        )?;
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            // Re-open: the mount now covers the old target.
            let target = in_root(root, &relative(dest), OFlag::O_PATH).sys(what)?;
            let tpath = proc_fd(&target);
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked_flags(&tpath);
            let flags = if opts.flags.contains(MsFlags::MS_RDONLY) {
                flags
            } else {
                flags - MsFlags::MS_RDONLY
            };
            do_mount(None, &tpath, None, flags, None, &what)?;
        }
        return finish(root, dest, &opts, &what);
    }

    let target = ensure_target(root, dest, false)?;
    let tpath = proc_fd(&target);
    let flags = opts.flags - MsFlags::MS_REC;
    let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let res = mount(Some(&src), &tpath, Some(typ), flags, data);
    match res {
        Ok(()) => {}
        // sysfs belongs to a network namespace: without a new one (or in a user
        // namespace) it cannot be mounted fresh, and the host's is bound in, as runc does.
        Err(Errno::EPERM) if typ == "sysfs" => {
            do_mount(
                Some(Path::new("/sys")),
                &tpath,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                &what,
            )?;
            if flags.contains(MsFlags::MS_RDONLY) {
                let target = in_root(root, &relative(dest), OFlag::O_PATH).sys(what)?;
                let p = proc_fd(&target);
                let f = MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | locked_flags(&p)
                    | (flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC));
                do_mount(None, &p, None, f, None, &what)?;
            }
        }
        Err(e) => {
            return Err(Error::Sys {
                what: what(),
                source: e,
            });
        }
    }
    finish(root, dest, &opts, &what)
}

/// Propagation changes and recursive attributes, after the mount itself.
fn finish(root: &File, dest: &Path, opts: &MountOptions, what: &dyn Fn() -> String) -> Result<()> {
    if opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    let target = in_root(root, &relative(dest), OFlag::O_PATH).sys(what)?;
    let tpath = proc_fd(&target);
    for p in &opts.propagation {
        do_mount(None, &tpath, None, *p, None, what)?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        mount_setattr(&tpath, opts.rec_set, opts.rec_clear)?;
    }
    Ok(())
}

/// `type: cgroup`: the container's own cgroups, as runc shows them. With a cgroup
/// namespace each hierarchy is mounted fresh (the kernel roots it at the
/// container's cgroup); without one, the container's cgroup directories are bound.
fn mount_cgroup(ctx: &MountContext, root: &File, dest: &Path, opts: &MountOptions) -> Result<()> {
    let what = || format!("mounting cgroups on {}", dest.display());
    let flags = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY);
    let ro = if opts.flags.contains(MsFlags::MS_RDONLY) {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    // One hierarchy at the container path `sub`: fresh (`fstype`, `data`) in a
    // cgroup namespace, else a bind of `src` remounted with the options.
    let one = |sub: &Path, fstype: &str, data: Option<&str>, src: Option<&Path>| -> Result<()> {
        let t = ensure_target(root, sub, false)?;
        if ctx.cgroupns {
            return do_mount(
                Some(Path::new(fstype)),
                &proc_fd(&t),
                Some(fstype),
                flags | ro,
                data,
                &what,
            );
        }
        let Some(src) = src else { return Ok(()) };
        do_mount(
            Some(src),
            &proc_fd(&t),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            &what,
        )?;
        // The remount needs the new mount: reopen the path.
        let t = in_root(root, &relative(sub), OFlag::O_PATH).sys(what)?;
        let dst = proc_fd(&t);
        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&dst) | ro;
        do_mount(None, &dst, None, f, None, &what)
    };
    match cgroups::layout()? {
        Layout::V2(_) => one(dest, "cgroup2", None, ctx.cgroup.unified.as_deref()),
        Layout::V1 {
            controllers,
            unified,
        } => {
            let t = ensure_target(root, dest, false)?;
            do_mount(
                Some(Path::new("tmpfs")),
                &proc_fd(&t),
                Some("tmpfs"),
                flags,
                Some("mode=755"),
                &what,
            )?;
            let mut mounted = std::collections::BTreeSet::new();
            for (name, mountpoint) in &controllers {
                let Some(base) = mountpoint.file_name().and_then(|b| b.to_str()) else {
                    continue;
                };
                if !mounted.insert(base.to_string()) {
                    continue;
                }
                let options: Vec<&str> = controllers
                    .iter()
                    .filter(|(_, m)| *m == mountpoint)
                    .map(|(n, _)| n.as_str())
                    .collect();
                let src = ctx.cgroup.v1.get(name).map(PathBuf::as_path);
                one(&dest.join(base), "cgroup", Some(&options.join(",")), src)?;
                // Co-mounted controllers ("cpu,cpuacct") also get a link per name.
                if base.contains(',') {
                    let parent = ensure_target(root, dest, false)?;
                    for n in base.split(',') {
                        let _ = nix::unistd::symlinkat(base, &parent, n);
                    }
                }
            }
            if let Some(u) = unified {
                one(
                    &dest.join(u.file_name().unwrap_or_default()),
                    "cgroup2",
                    None,
                    ctx.cgroup.unified.as_deref(),
                )?;
            }
            if !ro.is_empty() {
                let t = in_root(root, &relative(dest), OFlag::O_PATH).sys(what)?;
                let f = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags;
                do_mount(None, &proc_fd(&t), None, f, Some("mode=755"), &what)?;
            }
            Ok(())
        }
    }
}

/// A device the container always gets.
struct DefaultDevice {
    path: &'static str,
    major: u64,
    minor: u64,
}

const DEFAULT_DEVICES: [DefaultDevice; 6] = [
    DefaultDevice {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    DefaultDevice {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    DefaultDevice {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    DefaultDevice {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    DefaultDevice {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    DefaultDevice {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

/// Device cgroup rules that always follow the configured ones (runc's list).
pub fn default_device_rules() -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: i64, minor: i64| {
        oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(major)
            .minor(minor)
            .access("rwm")
            .build()
            .expect("static device rule")
    };
    let mut rules: Vec<_> = DEFAULT_DEVICES
        .iter()
        .map(|d| rule(LinuxDeviceType::C, d.major as i64, d.minor as i64))
        .collect();
    rules.push(rule(LinuxDeviceType::C, 5, 2)); // /dev/ptmx
    rules.push(rule(LinuxDeviceType::C, 136, -1)); // /dev/pts/*
    rules.push(rule(LinuxDeviceType::C, 5, 1)); // /dev/console
    rules
}

/// Makes the default devices and `linux.devices` under the rootfs's /dev.
pub fn create_devices(ctx: &MountContext, root: &File, extra: &[LinuxDevice]) -> Result<()> {
    for d in &DEFAULT_DEVICES {
        make_device(
            ctx,
            root,
            Path::new(d.path),
            SFlag::S_IFCHR,
            d.major,
            d.minor,
            0o666,
            0,
            0,
        )?;
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::Other(format!(
                    "linux.devices {}: type \"a\" is not a device",
                    d.path().display()
                )));
            }
        };
        let mode = d.file_mode().unwrap_or(0o666);
        make_device(
            ctx,
            root,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    ctx: &MountContext,
    root: &File,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let what = || format!("creating device {}", path.display());
    let rel = relative(path);
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| Error::Other(format!("device path {:?} has no name", path)))?;
    let parent = if parent_rel.as_os_str().is_empty() {
        in_root(root, Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY).sys(what)?
    } else {
        ensure_target(root, &Path::new("/").join(parent_rel), false)?
    };
    if ctx.userns {
        // mknod is refused in a user namespace: bind the host's node instead.
        let target = ensure_target(root, path, true)?;
        return do_mount(
            Some(path),
            &proc_fd(&target),
            None,
            MsFlags::MS_BIND,
            None,
            &what,
        );
    }
    match nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::Sys {
                what: what(),
                source: e,
            });
        }
    }
    mknodat(
        &parent,
        name,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    )
    .sys(what)?;
    // mknod's mode is filtered by the umask: set it exactly.
    let fd = openat(
        &parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys(what)?;
    fs::set_permissions(
        proc_fd(&fd),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .map_err(|e| Error::Io {
        what: "chmod",
        path: path.to_path_buf(),
        source: e,
    })?;
    fchownat(
        &parent,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .sys(what)
}

/// /dev/fd, /dev/std*, /dev/ptmx and /dev/core links, when the container has its own /dev.
pub fn dev_links(root: &File) -> Result<()> {
    let dev = ensure_target(root, Path::new("/dev"), false)?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ] {
        if name == "ptmx" {
            let _ = nix::unistd::unlinkat(&dev, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("linking /dev/{name}"),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Makes `/` of the new mount namespace a slave (or `propagation`), and the rootfs a
/// mount point whose parent is private, so pivot_root accepts it.
pub fn prepare_root(rootfs: &Path, propagation: Option<MsFlags>) -> Result<()> {
    let flags = propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Shared or unbindable: those apply after pivot_root; until then stay a slave.
    let initial = if flags.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        flags
    };
    do_mount(None, Path::new("/"), None, initial, None, &|| {
        "making / a slave mount".into()
    })?;
    make_parent_private(rootfs)?;
    do_mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        &|| format!("bind-mounting rootfs {}", rootfs.display()),
    )
}

/// pivot_root requires that the new root's parent mount is not shared.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Io {
        what: "reading",
        path: "/proc/self/mountinfo".into(),
        source: e,
    })?;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let mut f = line.split(' ');
        let mp = PathBuf::from(unescape(f.nth(4).unwrap_or("")));
        let optional = line
            .split(" - ")
            .next()
            .unwrap_or("")
            .split(' ')
            .skip(6)
            .any(|o| o.starts_with("shared:"));
        if rootfs.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, optional));
        }
    }
    if let Some((mp, true)) = best {
        do_mount(None, &mp, None, MsFlags::MS_PRIVATE, None, &|| {
            format!("making {} private", mp.display())
        })?;
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Enters the rootfs: pivot_root, or with `no_pivot` a move and chroot (for
/// rootfs on a ramfs where pivot_root is refused).
pub fn enter_root(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        chdir(rootfs).sys(|| format!("chdir {}", rootfs.display()))?;
        do_mount(
            Some(rootfs),
            Path::new("/"),
            None,
            MsFlags::MS_MOVE,
            None,
            &|| "moving rootfs to /".into(),
        )?;
        chroot(".").sys(|| "chroot".into())?;
        return chdir("/").sys(|| "chdir /".into());
    }
    let old = File::open("/").map_err(|e| Error::Io {
        what: "opening",
        path: "/".into(),
        source: e,
    })?;
    let new = File::open(rootfs).map_err(|e| Error::Io {
        what: "opening",
        path: rootfs.to_path_buf(),
        source: e,
    })?;
    fchdir(&new).sys(|| "fchdir rootfs".into())?;
    pivot_root(".", ".").sys(|| format!("pivot_root {}", rootfs.display()))?;
    fchdir(&old).sys(|| "fchdir old root".into())?;
    // The old root is stacked under the new one: detach it without propagating
    // the unmount to the host.
    do_mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
        &|| "making old root a slave".into(),
    )?;
    umount2(".", MntFlags::MNT_DETACH).sys(|| "detaching old root".into())?;
    chdir("/").sys(|| "chdir /".into())
}

/// After pivot_root: the configured propagation of `/`, and a read-only root.
pub fn finish_root(propagation: Option<MsFlags>, readonly: bool) -> Result<()> {
    if let Some(p) = propagation {
        do_mount(None, Path::new("/"), None, p, None, &|| {
            "setting rootfsPropagation".into()
        })?;
    }
    if readonly {
        let f = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(Path::new("/"));
        do_mount(None, Path::new("/"), None, f, None, &|| {
            "remounting / read-only".into()
        })?;
    }
    Ok(())
}

/// Hides `paths`: /dev/null over files, an empty read-only tmpfs over directories.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Io {
                    what: "masking",
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        };
        let what = || format!("masking {p}");
        if meta.is_dir() {
            do_mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
                &what,
            )?;
        } else {
            match mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(Error::Sys {
                        what: what(),
                        source: e,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Makes `paths` read-only bind mounts of themselves.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let what = || format!("making {p} read-only");
        match mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: what(),
                    source: e,
                });
            }
        }
        let f = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_REC
            | locked_flags(path);
        do_mount(None, path, None, f, None, &what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(
            &[
                "nosuid",
                "noexec",
                "mode=755",
                "size=65536k",
                "ro",
                "rslave",
                "rro",
            ]
            .map(String::from),
        );
        assert!(
            o.flags
                .contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY)
        );
        assert_eq!(o.data, ["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY);
        let o = parse_options(&["ro", "rw", "rbind"].map(String::from));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    }

    #[test]
    fn targets_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root_path = dir.path().join("root");
        fs::create_dir(&root_path).expect("mkdir");
        // An absolute symlink that points out of the rootfs, and one with "..".
        std::os::unix::fs::symlink("/etc", root_path.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root_path.join("up")).expect("symlink");
        let root = File::open(&root_path).expect("open");
        let fd = ensure_target(&root, Path::new("/abs/x/y"), false).expect("target");
        let real = fs::read_link(proc_fd(&fd)).expect("readlink");
        assert_eq!(real, root_path.join("etc/x/y"));
        let fd = ensure_target(&root, Path::new("/up/z"), true).expect("target");
        let real = fs::read_link(proc_fd(&fd)).expect("readlink");
        assert_eq!(real, root_path.join("z"));
        assert!(!Path::new("/etc/x").exists());
    }
}
