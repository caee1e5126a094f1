//! Small descriptor-relative file helpers the layer code shares: xattrs (nix has
//! none), safe opens below a directory, and recursive removal.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// `/proc/self/fd/<dirfd>/<name>`: a path that reaches `name` inside a directory we
/// hold open, for the calls that have no `*at` form (xattrs of a symlink).
pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Sets an xattr on `name` in `dir` without following a symlink there (on `dir`
/// itself when `name` is empty).
pub fn lset_xattr(dir: BorrowedFd<'_>, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let key = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let r = if name.is_empty() {
        // SAFETY: a valid descriptor, C string and buffer of the given length.
        unsafe {
            libc::fsetxattr(
                dir.as_raw_fd(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    } else {
        let path = cstr(&proc_path(dir, name))?;
        // SAFETY: valid C strings and a buffer of the given length.
        unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The xattrs (name, value) of `name` in `dir`, not following a symlink there.
pub fn lget_xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<(String, Vec<u8>)>> {
    let path = cstr(&proc_path(dir, name))?;
    let mut names = vec![0u8; 1024];
    let n = loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let mut value = vec![0u8; 256];
        let len = loop {
            // SAFETY: as above.
            let len = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    ckey.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if len >= 0 {
                break len as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => value.resize(value.len() * 4, 0),
                // Removed between the list and the read.
                Some(libc::ENODATA) => break usize::MAX,
                _ => return Err(e),
            }
        };
        if len != usize::MAX {
            value.truncate(len);
            out.push((String::from_utf8_lossy(key).into_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `name` in `dir` is an opaque overlay directory.
pub fn is_opaque(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let path = cstr(&proc_path(dir, name))?;
    let key = CString::new(super::OPAQUE_XATTR)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut v = [0u8; 4];
    // SAFETY: as above.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), key.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(n == 1 && v[0] == b'y')
}

/// Opens the directory `rel` below `root` (read-only), refusing any symlink on the
/// way and anything that would leave `root`.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    openat2(root, rel, how)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, never
/// following a symlink.
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    // std's remove_dir_all opens each level with O_NOFOLLOW (the CVE-2022-21658
    // fix), and the /proc path pins the parent we hold.
    let p = proc_path(dir, name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
        Ok(_) => std::fs::remove_file(&p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bytes of regular-file content that removing `name` in `dir` (and what
/// is below it) frees: a file counts when every one of its names goes with
/// it. Never follows a symlink.
pub fn bytes_under(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    // inode → (size, links, names of it met here)
    let mut files: std::collections::HashMap<u64, (u64, u64, u64)> = Default::default();
    let mut stack = vec![proc_path(dir, name)];
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if m.is_file() {
            files.entry(m.ino()).or_insert((m.len(), m.nlink(), 0)).2 += 1;
        }
    }
    Ok(files
        .values()
        .filter(|(_, links, met)| met >= links)
        .map(|(size, _, _)| size)
        .sum())
}

/// The names in an open directory, sorted (bytes order), without `.` and `..`.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}
