//! The runtime's side: berth's image store in a temporary data root, the
//! case's image loaded into it (an OCI layout built from the model's layers),
//! a container's read-write layer over it mounted by berth, file operations
//! done as syscalls confined beneath the container's root, and `berth commit`
//! followed by a new container on the committed image. Each case runs in a
//! private mount namespace of its thread, so a failed case leaves no mount
//! behind on the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth::digest::Digest;
use berth::image::build::{ImageBuilder, LayerBuilder};
use berth::image::commit::{CommitOptions, commit};
use berth::image::load::{Input, load};
use berth::image::manage;
use berth::image::progress::Progress;
use berth::image::store::ImageStore;
use berth::layers::overlay::Overlay;
use berth::layers::snapshot::Snapshot;
use berth::layers::store::Compression;
use berth_model::union::{Body, Layer, Mtime, Node, Xattrs};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2, renameat};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat, mkdirat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};
use proptest_state_machine::StateMachineTest;

use super::assertions;
use super::observe;
use super::reference::{UnionRef, UnionState};
use super::transitions::{Outcome, Transition};

/// One of the case's images as berth recorded it when it was made.
#[derive(Debug, Clone)]
pub struct Made {
    /// Its id.
    pub id: Digest,
    /// Its layers' diff_ids, bottom first.
    pub diff_ids: Vec<Digest>,
    /// Its blobs: manifest, config, layers.
    pub blobs: Vec<Digest>,
}

/// What an `rmi` or `prune` said it freed, and what went from the disk.
#[derive(Debug, Clone)]
pub struct Freed {
    /// The bytes berth reported.
    pub reported: u64,
    /// The bytes of the blob files that went.
    pub blob_bytes: u64,
    /// The unpacked layers that went.
    pub layers: Vec<Digest>,
}

/// The system under test.
pub struct Sut {
    /// The case's data root.
    pub dir: tempfile::TempDir,
    /// berth's image store there.
    pub store: ImageStore,
    /// The running container's read-write layer.
    pub snapshot: Snapshot,
    /// Its mounted root (unmounted when dropped).
    pub mounted: Option<Overlay>,
    /// How many containers the case made.
    pub containers: usize,
    /// The images the case made: the loaded one, then one per commit.
    pub images: Vec<Made>,
    /// What the last removal freed.
    pub freed: Option<Freed>,
    /// The last step.
    pub step: Option<Transition>,
}

/// Ids a tar header's octal field holds (larger ones go in PAX records).
const OCTAL_ID: u32 = 0o7777777;

/// The PAX records of a node: its extended attributes, its time when it has
/// a fraction of a second (a tar header holds whole seconds), its owner when
/// a header's field cannot hold it; and then an access time too, a record
/// berth has no use for (GNU tar's POSIX format writes one).
fn pax(xattrs: &Xattrs, mtime: Mtime, owner: (u32, u32)) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = xattrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
        .collect();
    if let Some((s, ns)) = mtime.filter(|(_, ns)| *ns != 0) {
        out.push(("mtime".into(), format!("{s}.{ns:09}").into_bytes()));
    }
    if owner.0 > OCTAL_ID || owner.1 > OCTAL_ID {
        out.push(("uid".into(), owner.0.to_string().into_bytes()));
        out.push(("gid".into(), owner.1.to_string().into_bytes()));
    }
    if !out.is_empty() {
        out.push(("atime".into(), b"1700000001".to_vec()));
    }
    out
}

/// The model's layer as a tar, entry by entry; each entry's header has its
/// node's time (a link's, its file's, as tar writes one inode's), the others
/// the builder's default.
pub fn layer_tar(layer: &Layer) -> Vec<u8> {
    const DEFAULT: u64 = 1_700_000_000;
    let mut b = LayerBuilder::new();
    let mut times: std::collections::BTreeMap<&str, u64> = Default::default();
    for e in layer {
        let mtime = match &e.body {
            Body::Node(n) => n.mtime(),
            _ => None,
        };
        let secs = mtime.map_or(DEFAULT, |(s, _)| s.max(0) as u64);
        b.mtime(secs);
        let owner = match &e.body {
            Body::Node(Node::File { owner, .. } | Node::Dir { owner, .. }) => *owner,
            _ => (0, 0),
        };
        // An owner too large for the header's field: 0 there, the PAX
        // records say.
        if owner.0 > OCTAL_ID || owner.1 > OCTAL_ID {
            b.owner(0, 0);
        } else {
            b.owner(owner.0.into(), owner.1.into());
        }
        match &e.body {
            Body::Node(Node::File {
                content,
                mode,
                xattrs,
                ..
            }) => {
                times.insert(e.name.trim_start_matches("./"), secs);
                let records = pax(xattrs, mtime, owner);
                let r: Vec<(&str, &[u8])> = records
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                b.pax(&r).file(&e.name, content, *mode)
            }
            Body::Node(Node::Dir { mode, xattrs, .. }) => {
                let records = pax(xattrs, mtime, owner);
                let r: Vec<(&str, &[u8])> = records
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                b.pax(&r).dir(&e.name, *mode)
            }
            Body::Node(Node::Symlink(t)) => b.symlink(&e.name, t),
            Body::Node(Node::Device(kind, major, minor)) => {
                b.device(&e.name, *kind == 'b', *major, *minor, 0o644)
            }
            Body::Node(Node::Hardlink(t)) | Body::Hardlink(t) => {
                let t_secs = times.get(t.trim_start_matches("./")).copied();
                b.mtime(t_secs.unwrap_or(DEFAULT)).hardlink(&e.name, t)
            }
        };
    }
    b.finish()
}

fn outcome(e: Errno) -> Outcome {
    match e {
        Errno::ENOENT => Outcome::NotFound,
        Errno::EEXIST => Outcome::Exists,
        Errno::ENOTDIR => Outcome::NotADirectory,
        Errno::EISDIR => Outcome::IsADirectory,
        Errno::ENOTEMPTY => Outcome::NotEmpty,
        Errno::EXDEV => Outcome::CrossDevice,
        Errno::EINVAL => Outcome::Invalid,
        Errno::ENODATA => Outcome::NoData,
        other => Outcome::Other(format!("{other}")),
    }
}

fn done(r: nix::Result<()>) -> Outcome {
    r.map_or_else(outcome, |()| Outcome::Ok)
}

/// A private mount namespace for this thread, nothing propagating out of it.
fn private_mounts() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .expect("a mount namespace for the case (needs root)");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("making the case's mounts private");
}

impl Sut {
    /// A data root holding `image`, and a container on it with its root mounted.
    pub fn new(image: &[Layer]) -> Sut {
        private_mounts();
        // Files and directories are made 0644 and 0755, as in a shell.
        nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
        let dir = tempfile::tempdir().expect("temporary data root");
        let store = ImageStore::open(&dir.path().join("root")).expect("the image store");
        let mut img = ImageBuilder::new();
        for l in image {
            img.layer(layer_tar(l), Compression::None);
        }
        let archive = dir.path().join("image.tar");
        let f = std::fs::File::create(&archive).expect("the image archive");
        ImageBuilder::write_oci_tar(&[(&img, Some("union:case"))], f).expect("writing the image");
        let loaded = load(&store, &Input::Path(archive), &Progress::hidden())
            .unwrap_or_else(|e| panic!("berth refused an image the model accepts: {e}"));
        let id = loaded[0].id.to_string();
        let snapshot = store
            .create_snapshot("c0", &id)
            .unwrap_or_else(|e| panic!("the container's layer: {e}"));
        let mounted = Some(snapshot.mount().unwrap_or_else(|e| panic!("mounting: {e}")));
        let made = Sut::made(&store, &loaded[0].id).unwrap_or_else(|e| panic!("{e}"));
        Sut {
            dir,
            store,
            snapshot,
            mounted,
            containers: 1,
            images: vec![made],
            freed: None,
            step: None,
        }
    }

    /// What the store recorded of a new image.
    fn made(store: &ImageStore, id: &Digest) -> Result<Made, String> {
        let db = store.db().map_err(|e| format!("the image database: {e}"))?;
        let rec = db
            .images
            .get(id)
            .ok_or_else(|| format!("the new image {id} is not in the database"))?;
        Ok(Made {
            id: id.clone(),
            diff_ids: rec.diff_ids(),
            blobs: [rec.manifest.digest.clone(), rec.config.digest.clone()]
                .into_iter()
                .chain(rec.layers.iter().map(|l| l.blob.digest.clone()))
                .collect(),
        })
    }

    /// The blob files of the store and their sizes.
    pub fn blobs(&self) -> std::collections::BTreeMap<String, u64> {
        let dir = self.dir.path().join("root/image/blobs/sha256");
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        (e.file_name().to_string_lossy().into_owned(), len)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The unpacked layers of the store.
    pub fn layer_dirs(&self) -> std::collections::BTreeSet<Digest> {
        self.store
            .layers()
            .list()
            .map(|l| l.into_iter().collect())
            .unwrap_or_default()
    }

    /// `rmi` or `prune`, and what went.
    fn remove_images(&mut self, t: &Transition) -> Outcome {
        let (blobs, layers) = (self.blobs(), self.layer_dirs());
        let r = match t {
            Transition::RemoveImage {
                which,
                by_tag,
                force,
            } => {
                let Some(made) = self.images.get(*which) else {
                    return Outcome::Other(format!("no image {which} was made"));
                };
                let name = if *by_tag {
                    "union:case".to_string()
                } else {
                    made.id.to_string()
                };
                manage::remove(&self.store, &[name], *force)
            }
            Transition::Prune { all } => manage::prune(&self.store, *all),
            _ => unreachable!("not a removal"),
        };
        match r {
            Ok(removal) => {
                let after = self.blobs();
                let kept = self.layer_dirs();
                self.freed = Some(Freed {
                    reported: removal.freed,
                    blob_bytes: blobs
                        .iter()
                        .filter(|(b, _)| !after.contains_key(*b))
                        .map(|(_, n)| n)
                        .sum(),
                    layers: layers.difference(&kept).cloned().collect(),
                });
                Outcome::Ok
            }
            Err(berth::image::Error::Conflict(_)) => Outcome::Conflict,
            Err(berth::image::Error::NotFound(_)) => Outcome::NoSuchImage,
            Err(e) => Outcome::Other(format!("{e}")),
        }
    }

    /// The container's root.
    pub fn rootfs(&self) -> PathBuf {
        self.snapshot.rootfs()
    }

    /// The directory holding `path` inside the container's root, opened
    /// beneath it without following any link; and the last component.
    fn parent<'p>(&self, path: &'p str) -> Result<(OwnedFd, &'p str), Errno> {
        let root = open(
            &self.rootfs(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if dir.is_empty() {
            return Ok((root, name));
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        Ok((openat2(root.as_fd(), dir, how)?, name))
    }

    fn write(&self, path: &str, content: &[u8], flags: OFlag) -> Result<(), Errno> {
        use std::io::Write;
        let (dir, name) = self.parent(path)?;
        let fd = openat(
            dir.as_fd(),
            name,
            flags | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?;
        std::fs::File::from(fd)
            .write_all(content)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn op(&mut self, t: &Transition) -> Result<(), Errno> {
        match t {
            Transition::Write { path, content } => {
                self.write(path, content, OFlag::O_CREAT | OFlag::O_TRUNC)
            }
            Transition::Append { path, content } => self.write(path, content, OFlag::O_APPEND),
            Transition::Chmod { path, mode } => {
                let (dir, name) = self.parent(path)?;
                fchmodat(
                    dir.as_fd(),
                    name,
                    Mode::from_bits_truncate(*mode),
                    FchmodatFlags::FollowSymlink,
                )
            }
            Transition::Mkdir { path } => {
                let (dir, name) = self.parent(path)?;
                mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
            }
            Transition::Symlink { path, target } => {
                let (dir, name) = self.parent(path)?;
                symlinkat(target.as_str(), dir.as_fd(), name)
            }
            Transition::Remove { path } => {
                let (dir, name) = self.parent(path)?;
                unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            }
            Transition::Rmdir { path } => {
                let (dir, name) = self.parent(path)?;
                unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
            }
            Transition::RemoveAll { path } => {
                // Beneath the root, no link followed on the way (the
                // machine's preconditions); remove_dir_all follows none.
                let (dir, name) = self.parent(path)?;
                let at = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
                let errno =
                    |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                match std::fs::symlink_metadata(&at).map_err(errno)? {
                    m if m.is_dir() => std::fs::remove_dir_all(&at).map_err(errno),
                    _ => std::fs::remove_file(&at).map_err(errno),
                }
            }
            Transition::Chown { path, uid, gid } => {
                let (dir, name) = self.parent(path)?;
                nix::unistd::fchownat(
                    dir.as_fd(),
                    name,
                    Some(nix::unistd::Uid::from_raw(*uid)),
                    Some(nix::unistd::Gid::from_raw(*gid)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
            }
            Transition::SetXattr { path, name, value } => {
                let (dir, last) = self.parent(path)?;
                let at = CString::new(format!("/proc/self/fd/{}/{last}", dir.as_raw_fd()))
                    .map_err(|_| Errno::EINVAL)?;
                let key = CString::new(*name).map_err(|_| Errno::EINVAL)?;
                // SAFETY: NUL-terminated strings; the value's length is given.
                let r = unsafe {
                    libc::lsetxattr(
                        at.as_ptr(),
                        key.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                };
                Errno::result(r).map(drop)
            }
            Transition::RemoveXattr { path, name } => {
                let (dir, last) = self.parent(path)?;
                let at = CString::new(format!("/proc/self/fd/{}/{last}", dir.as_raw_fd()))
                    .map_err(|_| Errno::EINVAL)?;
                let key = CString::new(*name).map_err(|_| Errno::EINVAL)?;
                // SAFETY: NUL-terminated strings.
                let r = unsafe { libc::lremovexattr(at.as_ptr(), key.as_ptr()) };
                Errno::result(r).map(drop)
            }
            Transition::Rename { from, to } => {
                let (d1, n1) = self.parent(from)?;
                let (d2, n2) = self.parent(to)?;
                renameat(d1.as_fd(), n1, d2.as_fd(), n2)
            }
            Transition::Commit
            | Transition::CommitFault(_)
            | Transition::Run { .. }
            | Transition::RemoveImage { .. }
            | Transition::Prune { .. } => unreachable!("not a file operation"),
        }
    }

    /// `berth commit`, then a new container on the committed image; the old
    /// one is removed.
    fn commit(&mut self) -> Result<(), String> {
        let loaded = commit(&self.store, &self.snapshot, None, &CommitOptions::default())
            .map_err(|e| format!("commit: {e}"))?;
        self.images.push(Sut::made(&self.store, &loaded.id)?);
        self.replace(&loaded.id.to_string(), true)
            .map_err(|e| e.unwrap_or_else(|| "the committed image is gone".into()))
    }

    /// A new container on `image`, mounted; then the old one is unmounted
    /// (`unmount`; else its overlay dropped) and removed. `Err(None)`: no
    /// such image (the old one stays).
    fn replace(&mut self, image: &str, unmount: bool) -> Result<(), Option<String>> {
        let id = format!("c{}", self.containers);
        let snapshot = match self.store.create_snapshot(&id, image) {
            Ok(s) => s,
            Err(berth::image::Error::NotFound(_)) => return Err(None),
            Err(e) => return Err(Some(format!("the new container's layer: {e}"))),
        };
        self.containers += 1;
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        if let Some(m) = self.mounted.take() {
            // After a commit, unmounted; else dropped, as the engine's error
            // paths leave it to Drop: either way nothing is left mounted
            // (before the snapshot's removal, which would unmount it too).
            if unmount {
                m.unmount()
                    .map_err(|e| format!("unmounting {}: {e}", old.id))?;
            } else {
                drop(m);
            }
            let left = observe::mounts_under(&old.rootfs());
            if !left.is_empty() {
                return Err(Some(format!(
                    "{} is still mounted after its overlay went: {left:?}",
                    old.id
                )));
            }
        }
        self.store
            .snapshots()
            .remove(&old.id)
            .map_err(|e| format!("removing {}: {e}", old.id))?;
        self.mounted = Some(
            self.snapshot
                .mount()
                .map_err(|e| format!("mounting the new container's root: {e}"))?,
        );
        Ok(())
    }

    /// Applies `t` to the runtime; returns what came of it.
    pub fn step(&mut self, t: &Transition) -> Outcome {
        match t {
            Transition::Commit => match self.commit() {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Other(e),
            },
            Transition::CommitFault(point) => {
                let before = self.store_listing();
                berth::fault::arm(Some(point));
                let r = commit(&self.store, &self.snapshot, None, &CommitOptions::default());
                berth::fault::arm(None);
                match r {
                    Ok(_) => Outcome::Other(format!("commit went through the fault at {point}")),
                    Err(e) if !e.to_string().contains("injected fault") => {
                        Outcome::Other(format!("commit: {e}"))
                    }
                    Err(_) => {
                        let after = self.store_listing();
                        let left: Vec<&String> = after.difference(&before).collect();
                        let gone: Vec<&String> = before.difference(&after).collect();
                        if left.is_empty() && gone.is_empty() {
                            Outcome::Fault
                        } else {
                            Outcome::Other(format!(
                                "the failed commit left {left:?} and took {gone:?}"
                            ))
                        }
                    }
                }
            }
            Transition::Run { which } => {
                let Some(made) = self.images.get(*which) else {
                    return Outcome::Other(format!("no image {which} was made"));
                };
                match self.replace(&made.id.to_string(), false) {
                    Ok(()) => Outcome::Ok,
                    Err(None) => Outcome::NoSuchImage,
                    Err(Some(e)) => Outcome::Other(e),
                }
            }
            Transition::RemoveImage { .. } | Transition::Prune { .. } => self.remove_images(t),
            _ => done(self.op(t)),
        }
    }

    /// Every file and directory of the image store (but its lock), and the
    /// images its database records: what a failed operation must leave as
    /// it was.
    pub fn store_listing(&self) -> std::collections::BTreeSet<String> {
        fn walk(dir: &Path, rel: &str, out: &mut std::collections::BTreeSet<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                // The layers' own content and the containers' layers are
                // not the store's bookkeeping: their top directories are.
                let deep = r.starts_with("layers/") && r.matches('/').count() > 1
                    || r.starts_with("snapshots/");
                if deep || r == "lock" {
                    continue;
                }
                out.insert(r.clone());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), &r, out);
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(&self.dir.path().join("root"), "", &mut out);
        if let Ok(db) = self.store.db() {
            out.extend(db.images.keys().map(|id| format!("image {id}")));
        }
        out
    }

    /// Unmounts and removes what the case made; returns what could not be.
    pub fn clean(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(m) = self.mounted.take()
            && let Err(e) = m.unmount()
        {
            left.push(format!("unmounting: {e}"));
        }
        if let Err(e) = self.store.snapshots().remove(&self.snapshot.id) {
            left.push(format!("removing the container's layer: {e}"));
        }
        left
    }

    /// The case's data root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = self.clean();
    }
}

/// The union state machine test.
pub struct UnionMachine;

impl StateMachineTest for UnionMachine {
    type SystemUnderTest = Sut;
    type Reference = UnionRef;

    fn init_test(ref_state: &UnionState) -> Sut {
        Sut::new(&ref_state.image)
    }

    fn apply(mut sut: Sut, ref_state: &UnionState, t: Transition) -> Sut {
        let got = sut.step(&t);
        sut.step = Some(t.clone());
        assertions::outcome(&t, ref_state.last.as_ref(), &got);
        if let Some(f) = sut.freed.take() {
            assertions::freed(&sut, ref_state, &t, &f);
        }
        sut
    }

    fn check_invariants(sut: &Sut, ref_state: &UnionState) {
        assertions::state(sut, ref_state);
    }

    fn teardown(mut sut: Sut, _ref_state: UnionState) {
        let left = sut.clean();
        assert!(left.is_empty(), "the case could not be cleaned: {left:?}");
        assertions::empty(&sut);
    }
}
