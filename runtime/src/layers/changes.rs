//! `berth diff` and `berth export`: what a container changed, and its whole tree.
//!
//! A change is read from the upper directory: a whiteout is a deletion (`D`);
//! anything else is a change (`C`) when the image's layers have that path and an
//! addition (`A`) when they do not; an opaque directory also deletes what the
//! layers had in it. "The layers have it" is asked of a read-only overlay of the
//! image's layers (the kernel's merge, not ours), opened without following any
//! symlink. As `docker diff`, a directory whose content changed is listed as `C`,
//! and lines are sorted by path.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open};
use nix::sys::stat::{Mode, SFlag, fstatat};

use super::archive::{Flavor, Written, write_tree};
use super::fsutil::{is_opaque, list_dir, open_beneath};
use super::snapshot::Snapshot;
use super::{Error, Result, SysContext};

/// One line of `berth diff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// `/` and the path.
    pub path: String,
    /// 'A', 'C' or 'D'.
    pub kind: char,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

/// The changes of a container's read-write layer against its image.
pub fn changes(snapshot: &Snapshot) -> Result<Vec<Change>> {
    let view = snapshot.view(false)?;
    let dir = |p: &Path| {
        open(
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .sys(|| format!("opening {}", p.display()))
    };
    let lower = dir(view.target())?;
    let upper = dir(&snapshot.upper())?;
    let mut out = BTreeSet::new();
    walk(upper.as_fd(), lower.as_fd(), &PathBuf::new(), &mut out)?;
    drop(lower);
    view.unmount()?;
    Ok(out.into_iter().collect())
}

fn kind_of(dir: BorrowedFd<'_>, name: &OsStr) -> Option<(SFlag, u64)> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| {
            (
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
                st.st_rdev,
            )
        })
}

fn shown(rel: &Path) -> String {
    format!("/{}", rel.display())
}

fn walk(
    upper: BorrowedFd<'_>,
    lower_root: BorrowedFd<'_>,
    rel: &Path,
    out: &mut BTreeSet<Change>,
) -> Result<()> {
    let io_err = |what: &'static str, p: &Path| {
        let entry = shown(p);
        move |e: std::io::Error| Error::Entry {
            entry,
            what,
            source: e,
        }
    };
    // The same directory in the layers, if they have it (and it is reached without links).
    let lower_dir: Option<OwnedFd> = open_beneath(lower_root, rel).ok();
    for name in list_dir(upper).map_err(io_err("listing", rel))? {
        let path = rel.join(&name);
        let Some((k, rdev)) = kind_of(upper, &name) else {
            continue;
        };
        let in_lower = lower_dir.as_ref().and_then(|d| kind_of(d.as_fd(), &name));
        if k == SFlag::S_IFCHR && rdev == 0 {
            if in_lower.is_some() {
                out.insert(Change {
                    path: shown(&path),
                    kind: 'D',
                });
            }
            continue;
        }
        out.insert(Change {
            path: shown(&path),
            kind: if in_lower.is_some() { 'C' } else { 'A' },
        });
        if k == SFlag::S_IFDIR {
            let sub = nix::fcntl::openat(
                upper,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys(|| format!("opening {}", shown(&path)))?;
            if in_lower.is_some_and(|(lk, _)| lk == SFlag::S_IFDIR)
                && is_opaque(upper, &name).map_err(io_err("reading xattrs", &path))?
                && let Ok(ld) = open_beneath(lower_root, &path)
            {
                let mine: BTreeSet<_> = list_dir(sub.as_fd())
                    .map_err(io_err("listing", &path))?
                    .into_iter()
                    .collect();
                for gone in list_dir(ld.as_fd()).map_err(io_err("listing", &path))? {
                    // overlayfs' readdir may list a name a layer's whiteout
                    // deletes that no lookup finds (berth-harness's union
                    // machine saw `D /a/b` for an image without a/b): only
                    // names that are there count.
                    if !mine.contains(&gone) && kind_of(ld.as_fd(), &gone).is_some() {
                        out.insert(Change {
                            path: shown(&path.join(OsStr::from_bytes(gone.as_bytes()))),
                            kind: 'D',
                        });
                    }
                }
            }
            walk(sub.as_fd(), lower_root, &path, out)?;
        }
    }
    Ok(())
}

/// Writes the container's merged tree (image plus changes) as a tar.
pub fn export<W: Write>(snapshot: &Snapshot, out: W) -> Result<(W, Written)> {
    let view = snapshot.view(true)?;
    let r = write_tree(view.target(), Flavor::Plain, out)?;
    view.unmount()?;
    Ok(r)
}
