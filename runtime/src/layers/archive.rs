//! Directory trees back into tar archives.
//!
//! [`Flavor::Layer`] reads an overlay upper directory and writes an OCI layer: a
//! 0/0 character device (overlay's whiteout) becomes an empty `.wh.NAME` file and
//! an opaque directory is followed by `.wh..wh..opq`. [`Flavor::Plain`] writes a
//! tree as it is (a container's merged root for `export`).
//!
//! The tree may belong to a running container, so the walk never follows a
//! symlink: every level is opened with `openat(O_NOFOLLOW)` from the one above,
//! and a directory swapped for a link while we read (the CVE-2018-15664 race) is
//! skipped, not followed. A file that changes size while it is read is cut or
//! padded to the size its header gave, so the archive stays well-formed.
//!
//! Entries come in name order, directories before their content; names are
//! relative without `./`; mtimes are whole seconds (as Docker writes them);
//! ownership is numeric; xattrs go in PAX `SCHILY.xattr.*` records (overlay's own
//! `trusted.overlay.*` never); files with several names are stored once, the other
//! names as hardlinks to the first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, major, minor};
use tar::{EntryType, Header};

use super::fsutil::{is_opaque, lget_xattrs, list_dir};
use super::{Error, OPAQUE_MARKER, Result, SysContext, WHITEOUT_PREFIX};

/// What kind of tree is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// An overlay upper directory, written as an OCI layer.
    Layer,
    /// A tree as it is.
    Plain,
}

/// Counts of what was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// Entries in the archive.
    pub entries: u64,
    /// Bytes of file content.
    pub content: u64,
}

/// Writes the tree under `root` as a tar to `out`; returns `out` (finished) and counts.
pub fn write_tree<W: Write>(root: &Path, flavor: Flavor, out: W) -> Result<(W, Written)> {
    let fd = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys(|| format!("opening {}", root.display()))?;
    let mut w = Walker {
        b: tar::Builder::new(out),
        flavor,
        links: HashMap::new(),
        written: Written::default(),
    };
    w.dir(fd.as_fd(), "")?;
    let out = w.b.into_inner().map_err(|e| Error::Entry {
        entry: String::new(),
        what: "finishing the archive",
        source: e,
    })?;
    Ok((out, w.written))
}

struct Walker<W: Write> {
    b: tar::Builder<W>,
    flavor: Flavor,
    /// (dev, ino) → the first name of a file with several.
    links: HashMap<(u64, u64), String>,
    written: Written,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn header(st: &FileStat, t: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

impl<W: Write> Walker<W> {
    fn err(&self, entry: &str, what: &'static str) -> impl FnOnce(io::Error) -> Error {
        let entry = entry.to_string();
        move |source| Error::Entry {
            entry,
            what,
            source,
        }
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &str) -> Result<()> {
        let names = list_dir(dir).map_err(self.err(rel, "listing"))?;
        for name in names {
            let path = if rel.is_empty() {
                String::from_utf8_lossy(name.as_bytes()).into_owned()
            } else {
                format!("{rel}/{}", String::from_utf8_lossy(name.as_bytes()))
            };
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone since the listing (a running container): nothing to write.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(self.err(&path, "stat")(e.into())),
            };
            self.entry(dir, &name, &path, &st)?;
        }
        Ok(())
    }

    fn pax(&mut self, dir: BorrowedFd<'_>, name: &OsStr, path: &str) -> Result<()> {
        let xattrs = lget_xattrs(dir, name).map_err(self.err(path, "reading xattrs"))?;
        let keep: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !keep.is_empty() {
            self.b
                .append_pax_extensions(keep.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(self.err(path, "writing xattrs"))?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &str,
        st: &FileStat,
    ) -> Result<()> {
        let k = kind(st);
        if self.flavor == Flavor::Layer && k == SFlag::S_IFCHR && st.st_rdev == 0 {
            // The harness's proof that it sees a broken commit (issue 8): this
            // feature drops the deletions from the layer.
            if cfg!(feature = "broken-commit-drops-whiteout") {
                return Ok(());
            }
            let wh = match path.rfind('/') {
                Some(i) => format!("{}/{WHITEOUT_PREFIX}{}", &path[..i], &path[i + 1..]),
                None => format!("{WHITEOUT_PREFIX}{path}"),
            };
            let mut h = header(st, EntryType::Regular);
            h.set_mode(0o644);
            self.b
                .append_data(&mut h, &wh, io::empty())
                .map_err(self.err(path, "writing"))?;
            self.written.entries += 1;
            return Ok(());
        }
        match k {
            SFlag::S_IFDIR => {
                let fd: OwnedFd = match openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Replaced by a link or removed since the stat: not followed.
                    Err(Errno::ELOOP) | Err(Errno::ENOTDIR) | Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(self.err(path, "opening")(e.into())),
                };
                self.pax(dir, name, path)?;
                let mut h = header(st, EntryType::Directory);
                self.b
                    .append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(self.err(path, "writing"))?;
                self.written.entries += 1;
                if self.flavor == Flavor::Layer
                    && is_opaque(dir, name).map_err(self.err(path, "reading xattrs"))?
                {
                    let mut h = header(st, EntryType::Regular);
                    h.set_mode(0o644);
                    self.b
                        .append_data(&mut h, format!("{path}/{OPAQUE_MARKER}"), io::empty())
                        .map_err(self.err(path, "writing"))?;
                    self.written.entries += 1;
                }
                self.dir(fd.as_fd(), path)
            }
            SFlag::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = header(st, EntryType::Link);
                        self.b
                            .append_link(&mut h, path, &first)
                            .map_err(self.err(path, "writing"))?;
                        self.written.entries += 1;
                        return Ok(());
                    }
                    self.links.insert(key, path.to_string());
                }
                let fd = match openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::ELOOP) | Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(self.err(path, "opening")(e.into())),
                };
                let file = File::from(fd);
                let size = st.st_size.max(0) as u64;
                self.pax(dir, name, path)?;
                let mut h = header(st, EntryType::Regular);
                h.set_size(size);
                let data = file.take(size).chain(io::repeat(0)).take(size);
                self.b
                    .append_data(&mut h, path, data)
                    .map_err(self.err(path, "writing"))?;
                self.written.entries += 1;
                self.written.content += size;
                Ok(())
            }
            SFlag::S_IFLNK => {
                let target = match readlinkat(dir, name) {
                    Ok(t) => t,
                    Err(Errno::ENOENT) | Err(Errno::EINVAL) => return Ok(()),
                    Err(e) => return Err(self.err(path, "readlink")(e.into())),
                };
                self.pax(dir, name, path)?;
                let mut h = header(st, EntryType::Symlink);
                self.b
                    .append_link(&mut h, path, Path::new(&target))
                    .map_err(self.err(path, "writing"))?;
                self.written.entries += 1;
                Ok(())
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                let t = match k {
                    SFlag::S_IFCHR => EntryType::Char,
                    SFlag::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                self.pax(dir, name, path)?;
                let mut h = header(st, t);
                if k != SFlag::S_IFIFO {
                    let (ma, mi) = (major(st.st_rdev), minor(st.st_rdev));
                    h.set_device_major(ma as u32)
                        .map_err(self.err(path, "device number"))?;
                    h.set_device_minor(mi as u32)
                        .map_err(self.err(path, "device number"))?;
                }
                self.b
                    .append_data(&mut h, path, io::empty())
                    .map_err(self.err(path, "writing"))?;
                self.written.entries += 1;
                Ok(())
            }
            // Sockets have no tar form (docker skips them too).
            _ => Ok(()),
        }
    }
}
