//! `berth cp`: files between the host and a container's root, running or not.
//!
//! The container's side is touched only by a helper process (`berth cp-helper`,
//! this binary again) that has `chroot`ed into the container's root first, so
//! every path and every symlink the container may have planted resolves inside
//! the container (the CVE-2018-15664 and CVE-2019-14271 class), never on the
//! host. The two processes pass a tar stream. A running container's root is its
//! mounted overlay; a stopped one's is mounted for the copy (read-only to copy
//! out) under the container's lock.
//!
//! Naming follows `docker cp`: a file goes to DEST, or into DEST when DEST is a
//! directory or ends in `/`; a directory becomes DEST when DEST does not exist,
//! or goes into it when it does; `SRC/.` copies a directory's content.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Engine, Error, IoContext, Result};

/// What the tar stream holds: one entry tree named after the source, or (for
/// `SRC/.`) the content of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A file (or link, or device) named as the source.
    File,
    /// A directory named as the source.
    Dir,
    /// A directory's content.
    Contents,
}

impl Shape {
    fn as_str(self) -> &'static str {
        match self {
            Shape::File => "file",
            Shape::Dir => "dir",
            Shape::Contents => "contents",
        }
    }

    /// From [`Shape::as_str`].
    pub fn parse(s: &str) -> Option<Shape> {
        match s {
            "file" => Some(Shape::File),
            "dir" => Some(Shape::Dir),
            "contents" => Some(Shape::Contents),
            _ => None,
        }
    }
}

fn bad(what: &str, msg: impl Into<String>) -> Error {
    Error::Flag(what.to_string(), msg.into())
}

/// The shape of source `path` (relative to the process's root) and the name its
/// top entry gets in the stream.
pub fn source_shape(path: &str) -> Result<(Shape, String)> {
    let p = Path::new(path);
    let md =
        fs::symlink_metadata(p).map_err(|e| bad(&format!("cp source {path:?}"), e.to_string()))?;
    let contents = path.ends_with("/.") || path == ".";
    if md.is_dir() {
        if contents {
            return Ok((Shape::Contents, String::new()));
        }
    } else if contents || path.ends_with('/') {
        return Err(bad(&format!("cp source {path:?}"), "not a directory"));
    }
    let name = p
        .components()
        .rev()
        .find_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "root".into());
    Ok((if md.is_dir() { Shape::Dir } else { Shape::File }, name))
}

/// Writes source `path` as a tar stream of `shape` (links are copied as links).
pub fn write_tar(path: &str, shape: Shape, name: &str, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let src = Path::new(path);
    let err = |e: std::io::Error| bad(&format!("cp source {path:?}"), e.to_string());
    match shape {
        Shape::File => b.append_path_with_name(src, name).map_err(err)?,
        Shape::Dir => b.append_dir_all(name, src).map_err(err)?,
        Shape::Contents => {
            for entry in fs::read_dir(src).map_err(err)? {
                let entry = entry.map_err(err)?;
                let n = entry.file_name();
                if entry.file_type().map_err(err)?.is_dir() {
                    b.append_dir_all(&n, entry.path()).map_err(err)?;
                } else {
                    b.append_path_with_name(entry.path(), &n).map_err(err)?;
                }
            }
        }
    }
    b.into_inner().map_err(err)?;
    Ok(())
}

/// Unpacks a tar stream of `shape` at `dest` (relative to the process's root),
/// with `docker cp`'s naming; `top` is the name the stream's top entry has.
pub fn unpack(input: impl Read, dest: &str, shape: Shape, top: &str) -> Result<()> {
    let d = Path::new(dest);
    let what = format!("cp destination {dest:?}");
    let md = fs::metadata(d).ok();
    let is_dir = md.as_ref().is_some_and(|m| m.is_dir());
    // Where the entries go, and what the top entry is called there.
    let (dir, rename): (PathBuf, Option<String>) = match shape {
        Shape::Contents => {
            if md.is_some() && !is_dir {
                return Err(bad(&what, "cannot copy a directory's content to a file"));
            }
            if md.is_none() {
                fs::create_dir(d).map_err(|e| bad(&what, e.to_string()))?;
            }
            (d.to_path_buf(), None)
        }
        _ if is_dir => (d.to_path_buf(), None),
        Shape::Dir if md.is_some() => {
            return Err(bad(&what, "cannot copy a directory to a file"));
        }
        _ if dest.ends_with('/') => {
            return Err(bad(&what, "no such directory"));
        }
        _ => {
            let parent = d
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(bad(
                    &what,
                    format!("no such directory: {}", parent.display()),
                ));
            }
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad(&what, "names no file"))?;
            (parent.to_path_buf(), Some(name))
        }
    };
    let mut a = tar::Archive::new(input);
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(true);
    for entry in a.entries().map_err(|e| bad(&what, e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(&what, e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| bad(&what, e.to_string()))?
            .into_owned();
        let mut parts: Vec<String> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => {
                    return Err(bad(
                        &what,
                        format!("the stream has an unsafe path {path:?}"),
                    ));
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        if let (Some(r), Some(first)) = (&rename, parts.first_mut())
            && first == top
        {
            *first = r.clone();
        }
        let target = parts.iter().fold(dir.clone(), |p, s| p.join(s));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| bad(&what, e.to_string()))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| bad(&what, format!("{}: {e}", target.display())))?;
    }
    Ok(())
}

/// Runs `f` with the root of container `what` (its mounted overlay when it
/// runs; mounted for the call otherwise, writable only when `write`), holding
/// the container's lock.
fn with_root<T>(
    e: &Engine,
    what: &str,
    write: bool,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let c = e.containers.resolve(what)?;
    let _lock = e.containers.lock(&c.id)?;
    let c = e.containers.load(&c.id)?;
    let snap = e.images.snapshots().get(&c.id)?;
    if c.state.init_running() {
        return f(&snap.rootfs());
    }
    let mounted = if write {
        snap.mount()?
    } else {
        snap.view(true)?
    };
    let r = f(mounted.target());
    mounted.unmount()?;
    r
}

/// The helper: `exe cp-helper MODE ROOT PATH [SHAPE TOP]`.
fn helper(exe: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.arg("cp-helper").args(args);
    c
}

fn finished(mut child: std::process::Child, what: &str) -> Result<()> {
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let st = child.wait().io("waiting for", "cp-helper")?;
    if st.success() {
        Ok(())
    } else {
        let line = err
            .lines()
            .last()
            .unwrap_or("failed")
            .trim_start_matches("berth: ");
        Err(bad(what, line.to_string()))
    }
}

/// `cp [-L] CONTAINER:SRC DEST` (DEST `-`: the tar stream to `out`).
pub fn copy_out(
    e: &Engine,
    exe: &Path,
    what: &str,
    src: &str,
    follow: bool,
    dest: &str,
    out: impl Write,
) -> Result<()> {
    with_root(e, what, false, |root| {
        let root = root.display().to_string();
        let mut args = vec!["out", &root, src];
        if follow {
            args.push("follow");
        }
        let mut child = helper(exe, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .io("starting", exe)?;
        let mut stdout = child.stdout.take().ok_or_else(|| bad("cp", "no pipe"))?;
        // The helper's first line: the shape and name of what follows.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).io("reading", "cp-helper")? == 1 && byte[0] != b'\n' {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let Some((shape, top)) = head
            .split_once(' ')
            .and_then(|(s, t)| Some((Shape::parse(s)?, t.to_string())))
        else {
            return finished(child, &format!("cp source {src:?}"));
        };
        let r = if dest == "-" {
            let mut out = out;
            std::io::copy(&mut stdout, &mut out)
                .map(|_| ())
                .io("writing", "stdout")
        } else {
            unpack(&mut stdout, dest, shape, &top)
        };
        drop(stdout);
        let done = finished(child, &format!("cp source {src:?}"));
        r.and(done)
    })
}

/// `cp SRC CONTAINER:DEST` (SRC `-`: a tar stream from `input`, unpacked into
/// DEST, which must be a directory).
pub fn copy_in(
    e: &Engine,
    exe: &Path,
    src: &str,
    what: &str,
    dest: &str,
    input: impl Read,
) -> Result<()> {
    let (shape, top) = if src == "-" {
        (Shape::Contents, String::new())
    } else {
        source_shape(src)?
    };
    with_root(e, what, true, |root| {
        let mut child = helper(
            exe,
            &[
                "in",
                &root.display().to_string(),
                dest,
                shape.as_str(),
                &top,
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .io("starting", exe)?;
        let mut stdin = child.stdin.take().ok_or_else(|| bad("cp", "no pipe"))?;
        let r = if src == "-" {
            let mut input = input;
            std::io::copy(&mut input, &mut stdin)
                .map(|_| ())
                .io("reading", "stdin")
        } else {
            write_tar(src, shape, &top, &mut stdin)
        };
        drop(stdin);
        let done = finished(child, &format!("cp destination {dest:?}"));
        // The helper's refusal explains a broken pipe better than the pipe does.
        done.and(r)
    })
}

/// The helper's body, after `chroot(root)`: `out PATH` writes `SHAPE TOP\n` and
/// the tar stream of PATH to stdout; `in PATH SHAPE TOP` unpacks stdin at PATH.
pub fn helper_main(args: &[String]) -> Result<()> {
    let (mode, root, path) = match args {
        [m, r, p, ..] => (m.as_str(), r.as_str(), p.as_str()),
        _ => return Err(bad("cp-helper", "MODE ROOT PATH")),
    };
    nix::unistd::chroot(root).map_err(|e| super::sys(&format!("chroot {root}"), e))?;
    std::env::set_current_dir("/").io("entering", "/")?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    match (mode, &args[3..]) {
        ("out", rest) if rest.is_empty() || rest == ["follow"] => {
            let path = if rest.is_empty() {
                path
            } else {
                // Inside the chroot: the link resolves within the container.
                fs::canonicalize(&path)
                    .map_err(|e| bad(&format!("cp source {path:?}"), e.to_string()))?
                    .display()
                    .to_string()
            };
            let (shape, top) = source_shape(&path)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            writeln!(out, "{} {top}", shape.as_str()).io("writing", "stdout")?;
            write_tar(&path, shape, &top, &mut out)?;
            out.flush().io("writing", "stdout")
        }
        ("in", [shape, top]) => {
            let shape = Shape::parse(shape).ok_or_else(|| bad("cp-helper", "shape"))?;
            unpack(std::io::stdin().lock(), &path, shape, top)
        }
        _ => Err(bad("cp-helper", "MODE ROOT PATH [SHAPE TOP]")),
    }
}
