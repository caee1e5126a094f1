//! Reading the kernel: a walk of a directory tree that never follows a link
//! (each level opened with `O_NOFOLLOW` from the one above), with the
//! extended attributes of its files and directories, the overlay markers of
//! an upper directory, and the mounts under a directory.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, open, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, major, minor};

/// Extended attributes as observed: name → value, but overlayfs' own
/// (`trusted.overlay.*`, its bookkeeping in an upper directory).
pub type Attrs = BTreeMap<String, Vec<u8>>;

/// A modification time (seconds, nanoseconds); `None` where the model does
/// not know it (the observation is then masked).
pub type Time = Option<(i64, u32)>;

/// An owner (uid, gid).
pub type Owner = (u32, u32);

/// What is at a path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    /// A regular file: its permission bits, content, extended attributes,
    /// owner and modification time.
    File(u32, String, Attrs, Owner, Time),
    /// A directory: its permission bits, extended attributes, owner and
    /// modification time.
    Dir(u32, Attrs, Owner, Time),
    /// A symlink and its target.
    Symlink(String),
    /// A device: kind ('c'/'b'), major, minor.
    Device(char, u32, u32),
    /// overlayfs' whiteout (a 0/0 character device), in an upper directory.
    Whiteout,
    /// Anything else (a fifo, a socket): its `st_mode`.
    Other(u32),
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::File(mode, content, x, o, t) => write!(
                f,
                "file {mode:04o} {content:?}{}{}{}",
                owner(o),
                attrs(x),
                time(t)
            ),
            Seen::Dir(mode, x, o, t) => {
                write!(f, "dir {mode:04o}{}{}{}", owner(o), attrs(x), time(t))
            }
            Seen::Symlink(t) => write!(f, "symlink -> {t:?}"),
            Seen::Device(k, ma, mi) => write!(f, "device {k} {ma}:{mi}"),
            Seen::Whiteout => write!(f, "whiteout"),
            Seen::Other(mode) => write!(f, "st_mode {mode:o}"),
        }
    }
}

/// An owner as the diffs show it (nothing for root).
fn owner(o: &Owner) -> String {
    if *o == (0, 0) {
        String::new()
    } else {
        format!(" owner {}:{}", o.0, o.1)
    }
}

/// A time as the diffs show it (nothing when it is not compared).
fn time(t: &Time) -> String {
    t.map_or(String::new(), |(s, ns)| format!(" mtime {s}.{ns:09}"))
}

impl Seen {
    /// Without its time (where the model does not know it).
    pub fn untimed(self) -> Seen {
        match self {
            Seen::File(m, c, x, o, _) => Seen::File(m, c, x, o, None),
            Seen::Dir(m, x, o, _) => Seen::Dir(m, x, o, None),
            other => other,
        }
    }

    /// Its time in whole seconds (as a tar header holds it).
    pub fn in_seconds(self) -> Seen {
        let secs = |t: Time| t.map(|(s, _)| (s, 0));
        match self {
            Seen::File(m, c, x, o, t) => Seen::File(m, c, x, o, secs(t)),
            Seen::Dir(m, x, o, t) => Seen::Dir(m, x, o, secs(t)),
            other => other,
        }
    }

    /// Its time.
    pub fn time(&self) -> Time {
        match self {
            Seen::File(.., t) | Seen::Dir(.., t) => *t,
            _ => None,
        }
    }
}

/// Extended attributes as the diffs show them (nothing when there are none).
fn attrs(x: &Attrs) -> String {
    if x.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{k}={:?}", shown(v)))
        .collect();
    format!(" xattrs {{{}}}", shown.join(", "))
}

/// The extended attributes of an open file or directory, overlayfs' own left out.
pub fn xattrs_of(fd: BorrowedFd<'_>) -> Result<Attrs, String> {
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is as long as said; the fd is open.
    let n = unsafe { libc::flistxattr(fd.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(format!("listxattr: {}", std::io::Error::last_os_error()));
    }
    names.truncate(n as usize);
    let mut out = Attrs::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        if key.starts_with("trusted.overlay.") {
            continue;
        }
        let c = CString::new(name).map_err(|e| format!("xattr name {key:?}: {e}"))?;
        let mut value = vec![0u8; 4096];
        // SAFETY: as above; the name is NUL-terminated.
        let m = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                c.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if m < 0 {
            return Err(format!(
                "getxattr {key}: {}",
                std::io::Error::last_os_error()
            ));
        }
        value.truncate(m as usize);
        out.insert(key, value);
    }
    Ok(out)
}

/// A file's content as the diffs show it.
pub fn shown(content: &[u8]) -> String {
    String::from_utf8_lossy(content).into_owned()
}

/// A tree as observed: path → what is there; the directories holding
/// overlayfs' opaque marker (`trusted.overlay.opaque=y`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walked {
    /// path → node
    pub nodes: BTreeMap<String, Seen>,
    /// opaque directories
    pub opaque: BTreeSet<String>,
    /// names a directory listing gives but a lookup does not find
    pub ghosts: BTreeSet<String>,
}

fn opened(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is_opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as said.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn walk_dir(dir: BorrowedFd<'_>, host: &Path, rel: &str, out: &mut Walked) -> Result<(), String> {
    let fd = opened(
        dir,
        std::ffi::OsStr::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    )
    .map_err(|e| format!("opening {rel:?}: {e}"))?;
    let mut names: Vec<std::ffi::OsString> = nix::dir::Dir::from_fd(fd)
        .map_err(|e| format!("listing {rel:?}: {e}"))?
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    for name in names {
        let shown_name = name.to_string_lossy();
        let path = if rel.is_empty() {
            shown_name.to_string()
        } else {
            format!("{rel}/{shown_name}")
        };
        let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // overlayfs lists a whiteout of a directory that only one layer
            // has (nothing below it to hide) but finds nothing by that name: a
            // name that is not there. Docker's overlay2 shows the same.
            Err(nix::errno::Errno::ENOENT) => {
                out.ghosts.insert(path);
                continue;
            }
            Err(e) => return Err(format!("stat {path:?}: {e}")),
        };
        let perm = st.st_mode & 0o7777;
        let t = Some((st.st_mtime, st.st_mtime_nsec as u32));
        let o = (st.st_uid, st.st_gid);
        let seen = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => {
                let fd = opened(dir, &name, OFlag::O_RDONLY)
                    .map_err(|e| format!("opening {path:?}: {e}"))?;
                let x = xattrs_of(fd.as_fd()).map_err(|e| format!("{path:?}: {e}"))?;
                let mut content = Vec::new();
                std::fs::File::from(fd)
                    .read_to_end(&mut content)
                    .map_err(|e| format!("reading {path:?}: {e}"))?;
                Seen::File(perm, shown(&content), x, o, t)
            }
            SFlag::S_IFDIR => {
                let sub = opened(dir, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(|e| format!("opening {path:?}: {e}"))?;
                if is_opaque(&host.join(&path)) {
                    out.opaque.insert(path.clone());
                }
                let x = xattrs_of(sub.as_fd()).map_err(|e| format!("{path:?}: {e}"))?;
                walk_dir(sub.as_fd(), host, &path, out)?;
                Seen::Dir(perm, x, o, t)
            }
            SFlag::S_IFLNK => Seen::Symlink(
                readlinkat(dir, name.as_os_str())
                    .map_err(|e| format!("readlink {path:?}: {e}"))?
                    .to_string_lossy()
                    .into_owned(),
            ),
            SFlag::S_IFCHR if st.st_rdev == 0 => Seen::Whiteout,
            SFlag::S_IFCHR => Seen::Device('c', major(st.st_rdev) as u32, minor(st.st_rdev) as u32),
            SFlag::S_IFBLK => Seen::Device('b', major(st.st_rdev) as u32, minor(st.st_rdev) as u32),
            _ => Seen::Other(st.st_mode),
        };
        out.nodes.insert(path, seen);
    }
    Ok(())
}

/// Walks the tree under `root` (the root itself not included).
pub fn walk(root: &Path) -> Result<Walked, String> {
    let fd = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", root.display()))?;
    let mut out = Walked::default();
    walk_dir(fd.as_fd(), root, "", &mut out)?;
    Ok(out)
}

/// `berth export`'s archive read back: path → what it holds (an entry that
/// is another name of a file is that file), the number of entries (PAX
/// records not counted) and the bytes of file content in it.
pub fn read_export(tar: &[u8]) -> Result<(BTreeMap<String, Seen>, u64, u64), String> {
    let mut a = tar::Archive::new(tar);
    let mut nodes = BTreeMap::new();
    let (mut entries, mut bytes) = (0, 0);
    for e in a
        .entries()
        .map_err(|e| format!("reading the export: {e}"))?
    {
        let mut e = e.map_err(|e| format!("an entry of the export: {e}"))?;
        let path = e
            .path()
            .map_err(|e| format!("an entry's name: {e}"))?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let mode = h.mode().map_err(|e| format!("{path}: mode: {e}"))? & 0o7777;
        let t = Some((
            h.mtime().map_err(|e| format!("{path}: mtime: {e}"))? as i64,
            0,
        ));
        let o = (
            h.uid().map_err(|e| format!("{path}: uid: {e}"))? as u32,
            h.gid().map_err(|e| format!("{path}: gid: {e}"))? as u32,
        );
        let mut x = Attrs::new();
        if let Some(pax) = e
            .pax_extensions()
            .map_err(|e| format!("{path}: PAX: {e}"))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| format!("{path}: PAX: {e}"))?;
                if let Some(k) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    x.insert(k.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        entries += 1;
        let dev = |h: &tar::Header| -> (u32, u32) {
            (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            )
        };
        let link = || -> String {
            e.link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let seen = match h.entry_type() {
            tar::EntryType::Directory => Seen::Dir(mode, x, o, t),
            tar::EntryType::Symlink => Seen::Symlink(link()),
            tar::EntryType::Char => {
                let (ma, mi) = dev(&h);
                Seen::Device('c', ma, mi)
            }
            tar::EntryType::Block => {
                let (ma, mi) = dev(&h);
                Seen::Device('b', ma, mi)
            }
            tar::EntryType::Link => match nodes.get(link().as_str()) {
                Some(first) => Clone::clone(first),
                None => Seen::Symlink(format!(
                    "<a link to {}, not in the archive before it>",
                    link()
                )),
            },
            tar::EntryType::Regular => {
                let mut content = Vec::new();
                e.read_to_end(&mut content)
                    .map_err(|e| format!("{path}: reading: {e}"))?;
                bytes += content.len() as u64;
                Seen::File(mode, shown(&content), x, o, t)
            }
            other => Seen::Other(u32::from(other.as_byte())),
        };
        nodes.insert(path, seen);
    }
    Ok((nodes, entries, bytes))
}

/// The mount points at or under `dir`, as this thread's mount namespace has them.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}
