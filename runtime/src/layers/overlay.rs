//! The overlay mount of a stack of layer directories.
//!
//! `lowerdir` lists the layers topmost first (the image's last layer first, its
//! base last). The options are passed with mount(2), which copies one page (4096
//! bytes) of them; layer paths under a data root are ~80 bytes each, so about 45
//! layers fit as absolute paths. Beyond that, in order:
//!
//! 1. each layer is opened (O_PATH) and named `/proc/self/fd/N` (≤ 18 bytes),
//!    which the kernel resolves in this process while it mounts: ~200 layers fit,
//!    at the cost of an open per layer;
//! 2. the layers get shorter names: links `0`, `1`, … in a scratch directory, and
//!    a forked child changes into it and mounts with those relative names
//!    (Docker's overlay2 does the same with its `l/` links), so one mount takes
//!    overlay's maximum of 500 lowers;
//! 3. beyond 500, the lowest layers are mounted first as a read-only overlay (no
//!    upper directory) of their own, which is then the lowest lower of the final
//!    mount. Whiteouts and opaque directories of those layers apply among them, and
//!    the layers above see the group's merged tree — the result of applying them in
//!    order. Only the *lowest* layers may be grouped: a group's merged view drops
//!    its whiteouts, so a whiteout in a group could not hide anything below it.
//!    overlayfs allows one level of nesting, so 999 layers is the limit, and
//!    more is refused with an error that says so.
//!
//! Options always include `redirect_dir=off,index=off,metacopy=off`: renaming a
//! directory of a lower layer then fails with EXDEV (tools copy instead), and an
//! upper directory holds only whole files, whiteouts and opaque markers — the
//! format [`super::archive`] turns back into an OCI layer. (Debian's kernels
//! default to redirect_dir=on, which would write redirect xattrs no layer format
//! carries.)
//!
//! [`Overlay`] unmounts what it mounted when dropped, so every exit path of a
//! command that mounts for itself cleans up; [`Overlay::keep`] leaves a container's
//! root mounted for its lifetime.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::{Error, IoContext, Result, SysContext};

/// What overlay allows below one mount (OVL_MAX_STACK).
const MAX_LOWERS: usize = 500;
/// mount(2) copies one page of options, NUL included.
const MAX_OPTIONS: usize = 4095;
const FIXED: &str = "redirect_dir=off,index=off,metacopy=off";

/// An overlay mount (and any group mounts below it), unmounted on drop.
#[derive(Debug)]
pub struct Overlay {
    target: PathBuf,
    /// Group mounts, unmounted after the target.
    groups: Vec<PathBuf>,
    keep: bool,
    /// Directories removed after unmounting (a temporary view's own).
    remove_after: Vec<PathBuf>,
}

/// The read-write part of a container's overlay.
#[derive(Debug, Clone, Copy)]
pub struct Upper<'a> {
    /// Where the container's changes go.
    pub upper: &'a Path,
    /// overlay's work directory, on the same filesystem as `upper`.
    pub work: &'a Path,
}

impl Overlay {
    /// The merged mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Removes these directories (empty once unmounted) after unmounting.
    pub fn remove_after(&mut self, dirs: Vec<PathBuf>) {
        self.remove_after = dirs;
    }

    /// Leaves the mounts in place (the container's teardown unmounts them).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Unmounts now, reporting errors (drop does the same, ignoring them).
    pub fn unmount(mut self) -> Result<()> {
        self.keep = true;
        unmount_all(&self.target, &self.groups)?;
        for d in &self.remove_after {
            let _ = fs::remove_dir_all(d);
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if !self.keep && unmount_all(&self.target, &self.groups).is_ok() {
            for d in &self.remove_after {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
}

/// Unmounts an overlay made by [`mount`] at `target`, with the groups it made in
/// `scratch` (for a teardown that did not keep the [`Overlay`] value).
pub fn unmount(target: &Path, scratch: &Path) -> Result<()> {
    let mut groups = Vec::new();
    if let Ok(rd) = fs::read_dir(scratch) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("group-") {
                groups.push(e.path());
            }
        }
    }
    unmount_all(target, &groups)
}

fn unmount_all(target: &Path, groups: &[PathBuf]) -> Result<()> {
    let mut first_err = None;
    for p in std::iter::once(target).chain(groups.iter().map(PathBuf::as_path)) {
        match umount2(p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                first_err.get_or_insert(Error::Sys {
                    what: format!("unmounting {}", p.display()),
                    source: e,
                });
            }
        }
        if p != target {
            let _ = fs::remove_dir(p);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn escape(p: &Path) -> String {
    // overlayfs splits lowerdir on ':' and options on ','; '\' escapes both.
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn options(lowers: &[String], upper: Option<Upper<'_>>) -> String {
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let Some(u) = upper {
        o.push_str(&format!(
            ",upperdir={},workdir={}",
            escape(u.upper),
            escape(u.work)
        ));
    }
    o.push(',');
    o.push_str(FIXED);
    o
}

/// Mounts the overlay of `lowers` (topmost first) and `upper` at `target`.
/// `scratch` is a private directory for the short names, a group mount and an
/// empty lower (made when needed; overlay wants two lowers when there is no
/// upper, and one at least).
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<Upper<'_>>,
    target: &Path,
    scratch: &Path,
) -> Result<Overlay> {
    // A layer twice in one stack (two images' identical layers, say) is refused by
    // older kernels ("conflicting lowerdir path"). Only its topmost copy matters:
    // every path the lower copy could answer, the upper copy answers first.
    let mut lowers: Vec<PathBuf> = lowers
        .iter()
        .enumerate()
        .filter(|(i, l)| !lowers[..*i].contains(l))
        .map(|(_, l)| l.clone())
        .collect();
    let min = if upper.is_some() { 1 } else { 2 };
    while lowers.len() < min {
        let empty = scratch.join(format!("empty-{}", lowers.len()));
        fs::create_dir_all(&empty).io("creating", &empty)?;
        lowers.push(empty);
    }
    let target = std::path::absolute(target).io("resolving", target)?;
    let mut ov = Overlay {
        target: target.clone(),
        groups: Vec::new(),
        keep: true,
        remove_after: Vec::new(),
    };
    let readonly = upper.is_none();

    // 1. Absolute paths.
    let abs: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let opts = options(&abs, upper);
    if opts.len() <= MAX_OPTIONS && lowers.len() <= MAX_LOWERS {
        do_mount(&target, &opts, readonly)?;
        ov.keep = false;
        return Ok(ov);
    }

    // 2. /proc/self/fd names of the layers, held open while the kernel resolves them.
    let fds = lowers
        .iter()
        .map(|p| {
            open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys(|| format!("opening layer {}", p.display()))
        })
        .collect::<Result<Vec<OwnedFd>>>()?;
    let names: Vec<String> = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect();
    let opts = options(&names, upper);
    if opts.len() <= MAX_OPTIONS && lowers.len() <= MAX_LOWERS {
        do_mount(&target, &opts, readonly)?;
        ov.keep = false;
        return Ok(ov);
    }
    drop(fds);

    // 3. Short names, relative to a directory of links.
    if lowers.len() <= MAX_LOWERS {
        mount_short(&target, &lowers, upper, &scratch.join("links-top"))?;
        ov.keep = false;
        return Ok(ov);
    }

    // 4. The lowest layers as one read-only overlay, itself the lowest lower.
    if lowers.len() > 2 * MAX_LOWERS - 1 {
        return Err(Error::Other(format!(
            "{} layers: overlayfs stacks at most {} ({MAX_LOWERS} per mount, one level of nesting)",
            lowers.len(),
            2 * MAX_LOWERS - 1
        )));
    }
    let (top, bottom) = lowers.split_at(MAX_LOWERS - 1);
    let group = scratch.join("group-0");
    fs::create_dir_all(&group).io("creating", &group)?;
    mount_short(&group, bottom, None, &scratch.join("links-group"))?;
    ov.groups.push(group.clone());
    let mut top = top.to_vec();
    top.push(group);
    if let Err(e) = mount_short(&target, &top, upper, &scratch.join("links-top")) {
        let _ = unmount_all(Path::new(""), &ov.groups);
        return Err(e);
    }
    ov.keep = false;
    Ok(ov)
}

/// Mounts with lowers named `0`, `1`, … : links in `links` to the layers, and a
/// child process that changes into `links` and calls mount(2) there (the cwd is
/// per process, so the caller's threads never see it change). 500 names take
/// under 2000 bytes. The links are removed once the kernel has resolved them.
fn mount_short(
    target: &Path,
    lowers: &[PathBuf],
    upper: Option<Upper<'_>>,
    links: &Path,
) -> Result<()> {
    let _ = fs::remove_dir_all(links);
    fs::create_dir_all(links).io("creating", links)?;
    for (i, l) in lowers.iter().enumerate() {
        std::os::unix::fs::symlink(l, links.join(i.to_string()))
            .io("linking", links.join(i.to_string()))?;
    }
    let names: Vec<String> = (0..lowers.len()).map(|i| i.to_string()).collect();
    let opts = options(&names, upper);
    let result = if opts.len() > MAX_OPTIONS {
        Err(Error::Other(format!(
            "{} layers do not fit one overlay mount",
            lowers.len()
        )))
    } else {
        mount_in(links, target, &opts, upper.is_none())
    };
    let _ = fs::remove_dir_all(links);
    result
}

fn mount_in(dir: &Path, target: &Path, opts: &str, readonly: bool) -> Result<()> {
    let c = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes()).map_err(|_| Error::Other(format!("{s:?}: contains NUL")))
    };
    let (c_dir, c_target, c_opts) = (
        c(dir.as_os_str())?,
        c(target.as_os_str())?,
        c(opts.as_ref())?,
    );
    let overlay = c("overlay".as_ref())?;
    let flags = if readonly { libc::MS_RDONLY } else { 0 };
    // SAFETY: the child only makes system calls on buffers prepared before the
    // fork, then _exits: safe even when the parent has other threads.
    match unsafe { fork() }.sys(|| "fork".into())? {
        ForkResult::Child => unsafe {
            if libc::chdir(c_dir.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            let r = libc::mount(
                overlay.as_ptr(),
                c_target.as_ptr(),
                overlay.as_ptr(),
                flags,
                c_opts.as_ptr().cast(),
            );
            libc::_exit(if r == 0 { 0 } else { *libc::__errno_location() });
        },
        ForkResult::Parent { child } => {
            match waitpid(child, None).sys(|| "waiting for the mount helper".into())? {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, code) => Err(Error::Sys {
                    what: format!(
                        "mounting overlay on {} ({} layers)",
                        target.display(),
                        opts.matches(':').count() + 1
                    ),
                    source: nix::errno::Errno::from_raw(code),
                }),
                other => Err(Error::Other(format!("mount helper: {other:?}"))),
            }
        }
    }
}

fn do_mount(target: &Path, opts: &str, readonly: bool) -> Result<()> {
    let flags = if readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(Some("overlay"), target, Some("overlay"), flags, Some(opts)).sys(|| {
        format!(
            "mounting overlay on {} ({} bytes of options)",
            target.display(),
            opts.len()
        )
    })
}
