//! The content store and the image database, under `<data root>/image/`:
//!
//! ```text
//! image/lock                 flock: one writer at a time (load, import, tag, rmi, prune, commit)
//! image/blobs/sha256/<hex>   blobs (manifests, configs, layer tars), by digest
//! image/tmp/                 blobs being written; emptied by each writer when it takes the lock
//! image/db.json              images by id, and tags; replaced atomically
//! layers/<diff_id hex>/      unpacked layers (see crate::layers::store)
//! snapshots/<container>/     containers' read-write layers (crate::layers::snapshot)
//! ```
//!
//! A blob is written to `tmp/`, hashed on the way, fsynced, and renamed to its
//! digest only if the digest is the one expected: a blob under its name is always
//! complete and correct. db.json changes last, so a writer killed at any point
//! leaves the store as it was plus unreferenced files, which the next writer's
//! cleanup and garbage collection remove. Readers need no lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::reference::Reference;
use super::{Error, IoContext, Result};
use crate::digest::{Digest, HashWriter};
use crate::layers::snapshot::Snapshots;
use crate::layers::store::LayerStore;

/// A blob as a manifest refers to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// The blob (possibly compressed).
    pub blob: Descriptor,
    /// The digest of its uncompressed tar (names its directory).
    pub diff_id: Digest,
    /// Bytes of file content once unpacked.
    pub unpacked_size: u64,
}

/// An image in the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The manifest blob.
    pub manifest: Descriptor,
    /// The config blob (its digest is the image id).
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The config's `created`, if it has one.
    pub created: Option<String>,
}

impl ImageRecord {
    /// The image id.
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }

    /// Unpacked size of all layers (Docker's SIZE).
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked_size).sum()
    }

    /// The diff_ids, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

/// db.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Db {
    /// Images by id.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// `repo:tag` → image id.
    pub tags: BTreeMap<String, Digest>,
}

impl Db {
    /// The tags of an image, sorted.
    pub fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, i)| *i == id)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Finds an image by `repo[:tag]`, full id (`sha256:…`) or unique id prefix.
    pub fn resolve(&self, what: &str) -> Result<&ImageRecord> {
        if let Ok(r) = Reference::parse(what)
            && let Some(id) = self.tags.get(&r.to_string())
        {
            return self
                .images
                .get(id)
                .ok_or_else(|| Error::NotFound(what.to_string()));
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = self
                .images
                .iter()
                .filter(|(id, _)| id.hex().starts_with(hex));
            if let Some((_, rec)) = found.next() {
                if found.next().is_some() {
                    return Err(Error::Ambiguous(what.to_string()));
                }
                return Ok(rec);
            }
        }
        Err(Error::NotFound(what.to_string()))
    }
}

/// The store under one data root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    layers: LayerStore,
    snapshots: Snapshots,
}

/// The store, locked for writing.
pub struct Locked<'a> {
    store: &'a ImageStore,
    _lock: File,
}

impl ImageStore {
    /// Opens (creating when missing) the store under the data root `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("image");
        for d in [dir.join("blobs/sha256"), dir.join("tmp")] {
            fs::create_dir_all(&d).io("creating", &d)?;
        }
        let layers = LayerStore::open(root.join("layers"))?;
        let snapshots = Snapshots::open(root.join("snapshots"), layers.clone())?;
        Ok(ImageStore {
            dir,
            layers,
            snapshots,
        })
    }

    /// The unpacked layers.
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }

    /// The containers' read-write layers.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Where a blob is stored.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Format {
                source_name: "image store".into(),
                msg: format!("blob {d} is missing"),
            },
            _ => Error::Io {
                what: "opening",
                path: p,
                source: e,
            },
        })
    }

    /// A whole blob, read into memory (manifests and configs).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut v)
            .io("reading", self.blob_path(d))?;
        Ok(v)
    }

    /// The database as it is now.
    pub fn db(&self) -> Result<Db> {
        let p = self.dir.join("db.json");
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Format {
                source_name: p.display().to_string(),
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(Error::Io {
                what: "reading",
                path: p,
                source: e,
            }),
        }
    }

    /// An image's config, as JSON.
    pub fn config(&self, rec: &ImageRecord) -> Result<serde_json::Value> {
        let data = self.read_blob(&rec.config.digest)?;
        serde_json::from_slice(&data).map_err(|e| Error::Format {
            source_name: format!("config {}", rec.config.digest),
            msg: e.to_string(),
        })
    }

    /// Makes the read-write layer of container `id` over image `image` (name or
    /// id), under the lock, so a concurrent `rmi` or prune cannot remove the
    /// image's layers in between.
    pub fn create_snapshot(
        &self,
        id: &str,
        image: &str,
    ) -> Result<crate::layers::snapshot::Snapshot> {
        let _lock = self.lock()?;
        let db = self.db()?;
        let rec = db.resolve(image)?;
        let record = crate::layers::snapshot::Record {
            image: rec.id().clone(),
            layers: rec.diff_ids(),
        };
        Ok(self.snapshots.create(id, record)?)
    }

    /// Takes the writers' lock (waiting for another writer), then removes what
    /// writers that died left in `tmp/`.
    pub fn lock(&self) -> Result<Locked<'_>> {
        let p = self.dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .io("opening", &p)?;
        f.lock().io("locking", &p)?;
        let tmp = self.dir.join("tmp");
        for e in fs::read_dir(&tmp).io("listing", &tmp)? {
            let p = e.io("listing", &tmp)?.path();
            fs::remove_file(&p).io("removing", &p)?;
        }
        self.layers.clean_tmp()?;
        Ok(Locked {
            store: self,
            _lock: f,
        })
    }
}

/// A blob being written: hashed on the way, named by its digest when committed.
pub struct BlobWriter<'a> {
    store: &'a ImageStore,
    tmp: PathBuf,
    w: Option<HashWriter<io::BufWriter<File>>>,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.w {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.w {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter<'_> {
    /// Syncs the blob and renames it to its digest. With `expected`, a blob whose
    /// content has another digest is refused and removed.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let Some(w) = self.w.take() else {
            return Err(Error::Format {
                source_name: "blob".into(),
                msg: "committed twice".into(),
            });
        };
        let (digest, size, buf) = w.finish();
        let done = (|| {
            if let Some(e) = expected
                && *e != digest
            {
                return Err(Error::DigestMismatch {
                    expected: e.clone(),
                    actual: digest.clone(),
                });
            }
            let f = buf
                .into_inner()
                .map_err(|e| e.into_error())
                .io("writing", &self.tmp)?;
            f.sync_all().io("syncing", &self.tmp)?;
            let dest = self.store.blob_path(&digest);
            fs::rename(&self.tmp, &dest).io("renaming into place", &dest)?;
            Ok((digest, size))
        })();
        if done.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        done
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Not committed (or committed: then the name is gone and this fails quietly).
        let _ = fs::remove_file(&self.tmp);
    }
}

impl<'a> Locked<'a> {
    /// The store.
    pub fn store(&self) -> &'a ImageStore {
        self.store
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter<'a>> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .store
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let f = File::create(&tmp).io("creating", &tmp)?;
        Ok(BlobWriter {
            store: self.store,
            tmp,
            w: Some(HashWriter::new(io::BufWriter::with_capacity(256 * 1024, f))),
        })
    }

    /// Stores what `r` yields as a blob (verified against `expected` when given).
    pub fn put_blob(&self, expected: Option<&Digest>, r: &mut impl Read) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        io::copy(r, &mut w).map_err(|e| Error::Format {
            source_name: expected
                .map(|d| d.to_string())
                .unwrap_or_else(|| "blob".into()),
            msg: format!("reading: {e}"),
        })?;
        w.commit(expected)
    }

    /// Stores bytes as a blob.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if !self.store.blob_path(&d).exists() {
            self.put_blob(Some(&d), &mut &data[..])?;
        }
        Ok(d)
    }

    /// Replaces db.json.
    pub fn save_db(&self, db: &Db) -> Result<()> {
        let p = self.store.dir.join("db.json");
        let tmp = self.store.dir.join("db.json.tmp");
        let data = serde_json::to_vec_pretty(db).map_err(|e| Error::Format {
            source_name: p.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut f = File::create(&tmp).io("creating", &tmp)?;
        f.write_all(&data).io("writing", &tmp)?;
        f.sync_all().io("syncing", &tmp)?;
        fs::rename(&tmp, &p).io("renaming into place", &p)
    }

    /// Removes blobs no image of `db` refers to and unpacked layers no image or
    /// container uses; returns the bytes freed (layer sizes as `before` knew them).
    pub fn gc(&self, db: &Db, before: &Db) -> Result<u64> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for rec in db.images.values() {
            blobs.insert(rec.manifest.digest.clone());
            blobs.insert(rec.config.digest.clone());
            for l in &rec.layers {
                blobs.insert(l.blob.digest.clone());
                layers.insert(l.diff_id.clone());
            }
        }
        for s in self.store.snapshots.list().map_err(Error::Layer)? {
            layers.extend(s.record.layers.iter().cloned());
        }
        let mut freed = 0;
        let dir = self.store.dir.join("blobs/sha256");
        for e in fs::read_dir(&dir).io("listing", &dir)? {
            let e = e.io("listing", &dir)?;
            let keep = e
                .file_name()
                .to_str()
                .and_then(Digest::from_hex)
                .is_some_and(|d| blobs.contains(&d));
            if !keep {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).io("removing", e.path())?;
            }
        }
        let sizes: BTreeMap<&Digest, u64> = before
            .images
            .values()
            .flat_map(|r| r.layers.iter().map(|l| (&l.diff_id, l.unpacked_size)))
            .collect();
        for d in self.store.layers.list()? {
            if !layers.contains(&d) {
                freed += sizes.get(&d).copied().unwrap_or(0);
                self.store.layers.remove(&d)?;
            }
        }
        Ok(freed)
    }
}
