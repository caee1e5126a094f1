//! Unpacking one layer tar into an empty directory.
//!
//! The archive is untrusted. Every entry name is cleaned first: an absolute name or
//! a `..` component is refused. Parents are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so an entry that would be
//! written through a symlink (one the archive made earlier, or a directory that an
//! earlier entry replaced by a link — the CVE-2018-15664 / CVE-2019-14271 classes)
//! is refused, and nothing is ever created through a link. Every creation is
//! `*at()` relative to that parent with `O_NOFOLLOW`/`O_EXCL`; a symlink's target
//! is only data. A hardlink's target goes through the same checks and must be a
//! non-directory already in this layer.
//!
//! OCI whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory. A layer
//! that both removes and adds a name keeps what it adds (the OCI spec applies the
//! whiteouts of a layer before its entries): a file stays a file, and a directory
//! becomes opaque, so nothing of the lower one shows through. Likewise a directory
//! made where this layer first put something else (a symlink, a file) is opaque:
//! that entry had already hidden what the lower layers have below the name.
//!
//! Ownership, permission bits (set after chown, so set-id bits survive), mtimes
//! (directories last, once nothing more is created in them), xattrs
//! (`SCHILY.xattr.*`), symlinks, hardlinks, device nodes and fifos are kept.
//! `trusted.overlay.*` xattrs are refused: only whiteout names may say what overlay
//! hides. The digest of the uncompressed stream is computed on the way: it is the
//! layer's diff_id.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use tar::EntryType;

use super::fsutil::{bytes_under, lset_xattr, open_beneath, remove_all};
use super::{Error, IoContext, OPAQUE_MARKER, OPAQUE_XATTR, Result, WHITEOUT_PREFIX};
use crate::digest::{Digest, HashReader};

/// What an unpack produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub tar_size: u64,
    /// Bytes of regular-file content the layer holds (a file a later entry
    /// replaced does not count; a file with several names counts once).
    pub content_size: u64,
    /// Entries in the archive.
    pub entries: u64,
}

/// Unpacks the (uncompressed) layer tar `tar` into `dest`, an existing empty
/// directory. On error `dest` holds a partial tree that the caller removes.
pub fn unpack(tar: impl Read, dest: &Path) -> Result<Unpacked> {
    let root = File::open(dest).io("opening", dest)?;
    let mut u = Unpacker {
        root: root.into(),
        cache: None,
        whited: HashSet::new(),
        dir_times: Vec::new(),
        content_size: 0,
        entries: 0,
        buf: vec![0; 1 << 20],
    };
    let mut archive = tar::Archive::new(HashReader::new(tar));
    let entries = archive.entries().map_err(|e| Error::Entry {
        entry: String::new(),
        what: "reading the archive",
        source: e,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Entry {
            entry: String::new(),
            what: "reading the archive",
            source: e,
        })?;
        u.entries += 1;
        u.entry(&mut entry)?;
    }
    u.finish_dirs()?;
    let (diff_id, tar_size) = archive.into_inner().finish().map_err(|e| Error::Entry {
        entry: String::new(),
        what: "reading the archive",
        source: e,
    })?;
    Ok(Unpacked {
        diff_id,
        tar_size,
        content_size: u.content_size,
        entries: u.entries,
    })
}

struct Unpacker {
    root: OwnedFd,
    /// The last parent directory opened, by its cleaned relative path.
    cache: Option<(PathBuf, OwnedFd)>,
    /// Paths a whiteout of this layer named.
    whited: HashSet<PathBuf>,
    /// Directories whose mtime is set at the end.
    dir_times: Vec<(PathBuf, TimeSpec)>,
    content_size: u64,
    entries: u64,
    /// The copy buffer (large writes: far fewer system calls than io::copy's 8 KiB).
    buf: Vec<u8>,
}

fn copy_big(r: &mut impl Read, w: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let got = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        io::Write::write_all(w, &buf[..got])?;
        n += got as u64;
    }
}

/// Metadata of an entry, PAX records applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn refused(entry: &str, reason: impl Into<String>) -> Error {
    Error::Refused {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// The components of an entry name, or why it is refused.
pub fn clean_name(name: &[u8], shown: &str) -> Result<PathBuf> {
    if name.starts_with(b"/") {
        return Err(refused(shown, "absolute name"));
    }
    let mut out = PathBuf::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(refused(shown, "`..` component")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<TimeSpec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    Some(TimeSpec::new(secs, nanos))
}

impl Unpacker {
    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, shown: &str) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &'static str| {
            move |e: io::Error| Error::Entry {
                entry: shown.to_string(),
                what,
                source: e,
            }
        };
        let mut m = Meta {
            mode: h.mode().map_err(bad("reading the mode"))? & 0o7777,
            uid: h.uid().map_err(bad("reading the uid"))? as u32,
            gid: h.gid().map_err(bad("reading the gid"))? as u32,
            mtime: TimeSpec::new(h.mtime().map_err(bad("reading the mtime"))? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(bad("reading PAX records"))? {
            for ext in pax {
                let ext = ext.map_err(bad("reading PAX records"))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let text = std::str::from_utf8(value).ok();
                match key {
                    "uid" => {
                        m.uid = text
                            .and_then(|t| t.parse().ok())
                            .ok_or_else(|| refused(shown, "bad PAX uid"))?
                    }
                    "gid" => {
                        m.gid = text
                            .and_then(|t| t.parse().ok())
                            .ok_or_else(|| refused(shown, "bad PAX gid"))?
                    }
                    "mtime" => {
                        m.mtime = text
                            .and_then(parse_time)
                            .ok_or_else(|| refused(shown, "bad PAX mtime"))?
                    }
                    k if k.starts_with("SCHILY.xattr.") => {
                        let name = &k["SCHILY.xattr.".len()..];
                        if name.starts_with("trusted.overlay.") {
                            return Err(refused(shown, format!("xattr {name} is overlayfs' own")));
                        }
                        m.xattrs.push((name.to_string(), value.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        Ok(m)
    }

    /// The parent directory of an entry, creating missing directories (0755, as tar
    /// does) and refusing symlinks and non-directories on the way.
    fn parent(&mut self, shown: &str, parent: &Path) -> Result<BorrowedFd<'_>> {
        if parent.as_os_str().is_empty() {
            return Ok(self.root.as_fd());
        }
        if !matches!(&self.cache, Some((p, _)) if p == parent) {
            let fd = match open_beneath(self.root.as_fd(), parent) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => self.make_dirs(shown, parent)?,
                Err(e) => return Err(self.why_not_dir(shown, parent, e)),
            };
            self.cache = Some((parent.to_path_buf(), fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(Error::Other("unreachable: parent cache empty".into())),
        }
    }

    fn make_dirs(&self, shown: &str, parent: &Path) -> Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        let mut sofar = PathBuf::new();
        for c in parent.iter() {
            sofar.push(c);
            let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match openat(dir, c, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    mkdirat(dir, c, Mode::from_bits_truncate(0o755)).map_err(|e| Error::Entry {
                        entry: shown.to_string(),
                        what: "creating a parent directory",
                        source: e.into(),
                    })?;
                    openat(dir, c, flags, Mode::empty()).map_err(|e| Error::Entry {
                        entry: shown.to_string(),
                        what: "opening a parent directory",
                        source: e.into(),
                    })?
                }
                Err(e) => return Err(self.why_not_dir(shown, &sofar, e)),
            };
            cur = Some(fd);
        }
        cur.ok_or_else(|| Error::Other("unreachable: empty parent".into()))
    }

    /// Names the reason a parent could not be opened as a directory.
    fn why_not_dir(&self, shown: &str, parent: &Path, e: Errno) -> Error {
        // Find the first component that is not a directory.
        let mut sofar = PathBuf::new();
        for c in parent.iter() {
            sofar.push(c);
            match fstatat(self.root.as_fd(), &sofar, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK =>
                {
                    return refused(
                        shown,
                        format!("it goes through the symlink {}", sofar.display()),
                    );
                }
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR =>
                {
                    return refused(shown, format!("{} is not a directory", sofar.display()));
                }
                _ => {}
            }
        }
        match e {
            Errno::EXDEV => refused(shown, "it leaves the layer"),
            e => Error::Entry {
                entry: shown.to_string(),
                what: "opening its parent directory",
                source: e.into(),
            },
        }
    }

    /// Removes what is at `name` unless both it and the new entry are directories;
    /// returns whether a directory is kept. A name this layer had already made
    /// something else is recorded in `whited`: that entry hid the lower layers'
    /// content there, so a directory made in its place must stay opaque.
    fn clear(
        &mut self,
        shown: &str,
        parent: &Path,
        name: &OsStr,
        new_is_dir: bool,
    ) -> Result<bool> {
        let pfd = self.parent(shown, parent)?;
        let old = match fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => {
                return Err(Error::Entry {
                    entry: shown.to_string(),
                    what: "looking at what is there",
                    source: e.into(),
                });
            }
        };
        if old == SFlag::S_IFDIR && new_is_dir {
            return Ok(true);
        }
        // What an earlier entry wrote there is not the layer's content any more.
        let gone = bytes_under(pfd, name).map_err(|e| Error::Entry {
            entry: shown.to_string(),
            what: "measuring what it replaces",
            source: e,
        })?;
        remove_all(pfd, name).map_err(|e| Error::Entry {
            entry: shown.to_string(),
            what: "removing what it replaces",
            source: e,
        })?;
        self.content_size = self.content_size.saturating_sub(gone);
        self.whited.insert(parent.join(name));
        if old == SFlag::S_IFDIR {
            // The cached parent may have been below what was removed.
            self.cache = None;
        }
        Ok(false)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = clean_name(&raw, &shown)?;
        let meta = self.meta(entry, &shown)?;
        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            // "./": the layer's root directory itself.
            if kind != EntryType::Directory {
                return Err(refused(&shown, "the layer root must be a directory"));
            }
            let root = self.root.try_clone().io("duplicating", "layer root")?;
            return self.finish_dir(&shown, root, PathBuf::new(), &meta);
        };
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name_b = name.as_bytes();

        if name_b == OPAQUE_MARKER.as_bytes() {
            let pfd = self.parent(&shown, &parent)?;
            return lset_xattr(pfd, OsStr::new(""), OPAQUE_XATTR, b"y").map_err(|e| Error::Entry {
                entry: shown,
                what: "marking the directory opaque",
                source: e,
            });
        }
        if let Some(hidden) = name_b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
                // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            return self.whiteout(&shown, &parent, OsStr::from_bytes(hidden));
        }

        match kind {
            EntryType::Directory => {
                let kept = self.clear(&shown, &parent, &name, true)?;
                let pfd = self.parent(&shown, &parent)?;
                if !kept {
                    mkdirat(pfd, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(
                        |e| Error::Entry {
                            entry: shown.clone(),
                            what: "creating the directory",
                            source: e.into(),
                        },
                    )?;
                }
                let fd = openat(
                    pfd,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::Entry {
                    entry: shown.clone(),
                    what: "opening the directory",
                    source: e.into(),
                })?;
                if self.whited.contains(&path) {
                    lset_xattr(fd.as_fd(), OsStr::new(""), OPAQUE_XATTR, b"y").map_err(|e| {
                        Error::Entry {
                            entry: shown.clone(),
                            what: "marking the directory opaque",
                            source: e,
                        }
                    })?;
                }
                self.finish_dir(&shown, fd, path, &meta)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&shown, &parent, &name, false)?;
                let pfd = self.parent(&shown, &parent)?;
                let fd = openat(
                    pfd,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| Error::Entry {
                    entry: shown.clone(),
                    what: "creating the file",
                    source: e.into(),
                })?;
                let mut file = File::from(fd);
                let n = copy_big(entry, &mut file, &mut self.buf).map_err(|e| Error::Entry {
                    entry: shown.clone(),
                    what: "writing the file",
                    source: e,
                })?;
                self.content_size += n;
                let ctx = |what: &'static str| {
                    let shown = shown.clone();
                    move |e: Errno| Error::Entry {
                        entry: shown,
                        what,
                        source: e.into(),
                    }
                };
                fchown(
                    &file,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                )
                .map_err(ctx("setting the owner"))?;
                fchmod(&file, Mode::from_bits_truncate(meta.mode))
                    .map_err(ctx("setting the mode"))?;
                let pfd = self.parent(&shown, &parent)?;
                set_xattrs(pfd, &name, &meta, &shown)?;
                futimens(&file, &meta.mtime, &meta.mtime).map_err(ctx("setting the mtime"))
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&shown, "symlink without a target"))?
                    .into_owned();
                self.clear(&shown, &parent, &name, false)?;
                let pfd = self.parent(&shown, &parent)?;
                symlinkat(OsStr::from_bytes(&target), pfd, name.as_os_str()).map_err(|e| {
                    Error::Entry {
                        entry: shown.clone(),
                        what: "creating the symlink",
                        source: e.into(),
                    }
                })?;
                self.finish_node(&shown, &parent, &name, &meta, false)
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&shown, "hardlink without a target"))?
                    .into_owned();
                let target_shown = String::from_utf8_lossy(&target_raw).into_owned();
                let target = clean_name(&target_raw, &shown).map_err(|_| {
                    refused(
                        &shown,
                        format!("hardlink target {target_shown:?} leaves the layer"),
                    )
                })?;
                if target == path || target.starts_with(&path) {
                    return Err(refused(
                        &shown,
                        format!("hardlink to {target_shown:?} would replace its own target"),
                    ));
                }
                let (Some(tname), tparent) =
                    (target.file_name(), target.parent().unwrap_or(Path::new("")))
                else {
                    return Err(refused(&shown, "hardlink to the layer root"));
                };
                let tdir = open_beneath(self.root.as_fd(), tparent).map_err(|_| {
                    refused(
                        &shown,
                        format!("hardlink target {target_shown:?} is not a file of this layer"),
                    )
                })?;
                match fstatat(&tdir, tname, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                            != SFlag::S_IFDIR => {}
                    _ => {
                        return Err(refused(
                            &shown,
                            format!("hardlink target {target_shown:?} is not a file of this layer"),
                        ));
                    }
                }
                self.clear(&shown, &parent, &name, false)?;
                let pfd = self.parent(&shown, &parent)?;
                linkat(&tdir, tname, pfd, name.as_os_str(), AtFlags::empty()).map_err(|e| {
                    Error::Entry {
                        entry: shown.clone(),
                        what: "creating the hardlink",
                        source: e.into(),
                    }
                })
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let (major, minor) = match kind {
                    EntryType::Fifo => (0, 0),
                    _ => (
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0),
                    ),
                };
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.clear(&shown, &parent, &name, false)?;
                let pfd = self.parent(&shown, &parent)?;
                mknodat(
                    pfd,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    makedev(major.into(), minor.into()),
                )
                .map_err(|e| Error::Entry {
                    entry: shown.clone(),
                    what: "creating the node",
                    source: e.into(),
                })?;
                self.finish_node(&shown, &parent, &name, &meta, true)
            }
            other => Err(refused(&shown, format!("unsupported entry type {other:?}"))),
        }
    }

    fn whiteout(&mut self, shown: &str, parent: &Path, hidden: &OsStr) -> Result<()> {
        let path = parent.join(hidden);
        self.whited.insert(path);
        let pfd = self.parent(shown, parent)?;
        match fstatat(pfd, hidden, AtFlags::AT_SYMLINK_NOFOLLOW) {
            // This layer made it already: it hides the lower one by being there; a
            // directory must also hide the lower one's content.
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
                lset_xattr(pfd, hidden, OPAQUE_XATTR, b"y").map_err(|e| Error::Entry {
                    entry: shown.to_string(),
                    what: "marking the directory opaque",
                    source: e,
                })
            }
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => {
                mknodat(pfd, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
                    Error::Entry {
                        entry: shown.to_string(),
                        what: "creating the whiteout",
                        source: e.into(),
                    }
                })
            }
            Err(e) => Err(Error::Entry {
                entry: shown.to_string(),
                what: "looking at what is there",
                source: e.into(),
            }),
        }
    }

    fn finish_dir(&mut self, shown: &str, fd: OwnedFd, path: PathBuf, meta: &Meta) -> Result<()> {
        let ctx = |what: &'static str| {
            move |e: Errno| Error::Entry {
                entry: shown.to_string(),
                what,
                source: e.into(),
            }
        };
        fchown(
            &fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(ctx("setting the owner"))?;
        fchmod(&fd, Mode::from_bits_truncate(meta.mode)).map_err(ctx("setting the mode"))?;
        set_xattrs(fd.as_fd(), OsStr::new(""), meta, shown)?;
        self.dir_times.push((path, meta.mtime));
        Ok(())
    }

    fn finish_node(
        &mut self,
        shown: &str,
        parent: &Path,
        name: &OsString,
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        let pfd = self.parent(shown, parent)?;
        let ctx = |what: &'static str| {
            move |e: Errno| Error::Entry {
                entry: shown.to_string(),
                what,
                source: e.into(),
            }
        };
        fchownat(
            pfd,
            name.as_os_str(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(ctx("setting the owner"))?;
        if chmod {
            // A node this unpack just made with mknodat: not a symlink.
            fchmodat(
                pfd,
                name.as_os_str(),
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(ctx("setting the mode"))?;
        }
        set_xattrs(pfd, name, meta, shown)?;
        utimensat(
            pfd,
            name.as_os_str(),
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(ctx("setting the mtime"))
    }

    fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        for (path, t) in std::mem::take(&mut self.dir_times) {
            // A later entry may have removed or replaced it: then there is nothing to do.
            let Ok(fd) = open_beneath(self.root.as_fd(), &path) else {
                continue;
            };
            futimens(&fd, &t, &t).map_err(|e| Error::Entry {
                entry: path.display().to_string(),
                what: "setting the mtime",
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

fn set_xattrs(dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta, shown: &str) -> Result<()> {
    for (k, v) in &meta.xattrs {
        lset_xattr(dir, name, k, v).map_err(|e| Error::Entry {
            entry: shown.to_string(),
            what: "setting an xattr",
            source: e,
        })?;
    }
    Ok(())
}
