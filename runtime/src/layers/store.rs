//! The layer store: `<data root>/layers/<diff_id hex>/` holds one unpacked layer.
//!
//! A layer is unpacked into `layers/tmp/` and renamed into place only once its
//! content has the digest the image config names, so a directory under its final
//! name is always complete. Callers that change the store (unpack, remove) hold
//! the image store's lock; `tmp/` is emptied whenever that lock is taken, which is
//! what cleans up after an unpack that was killed.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::unpack::{Unpacked, unpack};
use super::{Error, IoContext, Result};
use crate::digest::Digest;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A reader of the uncompressed content of `r`, whatever its compression (found
/// from its first bytes, which is more reliable than media types in the wild).
pub fn decompress<'a>(r: impl Read + 'a) -> std::io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let c = Compression::sniff(r.fill_buf()?);
    let out: Box<dyn Read> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    };
    Ok((c, out))
}

/// Unpacked layers, one directory each.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// The store under `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("tmp")).io("creating", &dir)?;
        Ok(LayerStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the layer with this diff_id is (or would be) unpacked.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// Whether the layer is unpacked.
    pub fn has(&self, diff_id: &Digest) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Unpacks a (possibly compressed) layer blob whose uncompressed content must
    /// have digest `diff_id` (when known: `berth import` learns it by unpacking).
    /// Nothing is kept when the digest differs or the archive is refused.
    pub fn unpack(&self, diff_id: Option<&Digest>, blob: impl Read) -> Result<Unpacked> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("unpack-{}-{n}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).io("removing", &tmp)?;
        }
        fs::create_dir(&tmp).io("creating", &tmp)?;
        // The layer's root is the container's "/" unless the archive says otherwise.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).io("chmod", &tmp)?;
        let result = (|| {
            let (_, content) = decompress(blob).map_err(|e| Error::Entry {
                entry: String::new(),
                what: "decompressing the layer",
                source: e,
            })?;
            let u = unpack(content, &tmp)?;
            if let Some(expected) = diff_id
                && *expected != u.diff_id
            {
                return Err(Error::DiffId {
                    expected: expected.clone(),
                    actual: u.diff_id.clone(),
                });
            }
            let dest = self.path(&u.diff_id);
            // Never over what is there: a plain rename replaces an empty
            // directory, and an empty layer in use by a mounted container
            // would be swapped from under it (berth-harness's union machine
            // saw a failed commit of an unchanged container do that).
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &dest,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => Ok(u),
                // There already (an import of content some image has): the same tree.
                Err(_) if dest.is_dir() => {
                    fs::remove_dir_all(&tmp).io("removing", &tmp)?;
                    Ok(u)
                }
                Err(e) => Err(Error::Io {
                    what: "renaming into place",
                    path: dest,
                    source: e.into(),
                }),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// The diff_ids of every unpacked layer.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).io("listing", &self.dir)? {
            let e = e.io("listing", &self.dir)?;
            if let Some(d) = e.file_name().to_str().and_then(Digest::from_hex) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes an unpacked layer.
    pub fn remove(&self, diff_id: &Digest) -> Result<()> {
        let p = self.path(diff_id);
        // Rename first, so a half-removed layer never sits under its real name.
        let doomed =
            self.dir
                .join("tmp")
                .join(format!("rm-{}.{}", diff_id.hex(), std::process::id()));
        match fs::rename(&p, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).io("removing", &doomed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                what: "removing",
                path: p,
                source: e,
            }),
        }
    }

    /// Removes leftovers of unpacks that did not finish (call with the store locked).
    pub fn clean_tmp(&self) -> Result<()> {
        let tmp = self.dir.join("tmp");
        for e in fs::read_dir(&tmp).io("listing", &tmp)? {
            let p = e.io("listing", &tmp)?.path();
            fs::remove_dir_all(&p).io("removing", &p)?;
        }
        Ok(())
    }
}

/// Bytes of regular-file content under `dir`, a file with several names
/// once (for layers unpacked before any image recorded their size).
pub fn content_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    if let Ok(m) = e.metadata()
                        && seen.insert(m.ino())
                    {
                        total += m.len();
                    }
                }
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn unpacking_a_layer_that_is_there_leaves_its_directory_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LayerStore::open(dir.path()).expect("store");
        // An empty layer: its directory is empty, which a plain rename replaces.
        let empty = tar::Builder::new(Vec::new()).into_inner().expect("tar");
        let first = store.unpack(None, &empty[..]).expect("first unpack");
        let ino = fs::metadata(store.path(&first.diff_id))
            .expect("layer")
            .ino();
        let again = store.unpack(None, &empty[..]).expect("second unpack");
        assert_eq!(first.diff_id, again.diff_id);
        assert_eq!(
            fs::metadata(store.path(&again.diff_id))
                .expect("layer")
                .ino(),
            ino,
            "the directory a mounted container may use is the same one"
        );
    }

    #[test]
    fn a_layers_size_is_what_it_holds_once_unpacked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LayerStore::open(dir.path()).expect("store");
        let mut b = crate::image::build::LayerBuilder::new();
        // "xyz" is replaced by a directory; "12" keeps one name (c) after a/b
        // is written anew; a file with two names counts once.
        b.file("a", b"xyz", 0o644)
            .dir("a", 0o755)
            .file("a/b", b"12", 0o644)
            .hardlink("c", "a/b")
            .file("a/b", b"9", 0o644)
            .file("d", b"4444", 0o644)
            .hardlink("e", "d");
        let u = store.unpack(None, &b.finish()[..]).expect("unpack");
        assert_eq!(u.content_size, 2 + 1 + 4);
        assert_eq!(content_size(&store.path(&u.diff_id)), 2 + 1 + 4);
    }
}
