//! A container's read-write layer: `<data root>/snapshots/<id>/` with `upper/`
//! and `work/` (overlay's), `rootfs/` (where the merged tree is mounted),
//! `scratch/` (group mounts, see [`super::overlay`]) and `snapshot.json` (the
//! image and its layers, bottom first).

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::overlay::{Overlay, Upper, mount_overlay, unmount};
use super::store::LayerStore;
use super::{Error, IoContext, Result};
use crate::digest::Digest;

/// What `snapshot.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The image (its config digest) the container was made from.
    pub image: Digest,
    /// The image's layers (diff_ids), bottom first.
    pub layers: Vec<Digest>,
}

/// The snapshots under one data root.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    layers: LayerStore,
}

/// One container's read-write layer.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The container id it belongs to.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// What it was made from.
    pub record: Record,
    layers: LayerStore,
}

impl Snapshots {
    /// The snapshots in `dir`, over the layers of `layers`.
    pub fn open(dir: impl Into<PathBuf>, layers: LayerStore) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).io("creating", &dir)?;
        Ok(Snapshots { dir, layers })
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::Other(format!("invalid snapshot id {id:?}")));
        }
        Ok(self.dir.join(id))
    }

    /// Makes the read-write layer of container `id` over an image's layers.
    pub fn create(&self, id: &str, record: Record) -> Result<Snapshot> {
        for l in &record.layers {
            if !self.layers.has(l) {
                return Err(Error::Other(format!("layer {l} is not unpacked")));
            }
        }
        let dir = self.path(id)?;
        fs::create_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::Other(format!("snapshot {id:?} exists already"))
            }
            _ => Error::Io {
                what: "creating",
                path: dir.clone(),
                source: e,
            },
        })?;
        let made = (|| {
            for sub in ["upper", "work", "rootfs", "scratch"] {
                fs::create_dir(dir.join(sub)).io("creating", dir.join(sub))?;
            }
            let json =
                serde_json::to_vec_pretty(&record).map_err(|e| Error::Other(e.to_string()))?;
            crate::oci::state::write_atomic(&dir.join("snapshot.json"), &json)
                .map_err(|e| Error::Other(e.to_string()))
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(Snapshot {
            id: id.to_string(),
            dir,
            record,
            layers: self.layers.clone(),
        })
    }

    /// The snapshot of container `id`.
    pub fn get(&self, id: &str) -> Result<Snapshot> {
        let dir = self.path(id)?;
        let file = dir.join("snapshot.json");
        let data = fs::read(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Other(format!("no snapshot {id:?}")),
            _ => Error::Io {
                what: "reading",
                path: file.clone(),
                source: e,
            },
        })?;
        let record = serde_json::from_slice(&data)
            .map_err(|e| Error::Other(format!("{}: {e}", file.display())))?;
        Ok(Snapshot {
            id: id.to_string(),
            dir,
            record,
            layers: self.layers.clone(),
        })
    }

    /// Every snapshot (ones whose record cannot be read are skipped).
    pub fn list(&self) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).io("listing", &self.dir)? {
            let e = e.io("listing", &self.dir)?;
            if let Some(id) = e.file_name().to_str()
                && let Ok(s) = self.get(id)
            {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Unmounts (if mounted) and removes the snapshot of container `id`.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.path(id)?;
        if !dir.exists() {
            return Ok(());
        }
        unmount(&dir.join("rootfs"), &dir.join("scratch"))?;
        // Views a killed diff or export left mounted.
        for e in fs::read_dir(&dir).io("listing", &dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("view-") && !name.ends_with("-scratch") {
                unmount(&e.path(), &dir.join(format!("{name}-scratch")))?;
            }
        }
        fs::remove_dir_all(&dir).io("removing", &dir)
    }
}

impl Snapshot {
    /// Adds an init layer (Docker's) between the image and the container's
    /// changes: empty files at `files` (relative paths), the mount points of
    /// files an engine bind-mounts, so that they are not the container's changes.
    pub fn add_init(&self, files: &[&str]) -> Result<()> {
        let init = self.dir.join("init");
        for f in files {
            let p = init.join(f);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).io("creating", parent)?;
            }
            fs::File::create(&p).io("creating", &p)?;
        }
        Ok(())
    }

    /// The init layer and the image's layer directories, topmost first
    /// (overlay's order).
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        let init = self.dir.join("init");
        init.is_dir()
            .then_some(init)
            .into_iter()
            .chain(self.record.layers.iter().rev().map(|l| self.layers.path(l)))
            .collect()
    }

    /// The upper directory (the container's changes).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Where [`Snapshot::mount`] mounts the container's root.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts the container's read-write root at [`Snapshot::rootfs`].
    pub fn mount(&self) -> Result<Overlay> {
        let (upper, work) = (self.upper(), self.dir.join("work"));
        mount_overlay(
            &self.lower_dirs(),
            Some(Upper {
                upper: &upper,
                work: &work,
            }),
            &self.rootfs(),
            &self.dir.join("scratch"),
        )
    }

    /// Mounts a read-only view at `<dir>/view-<pid>`: the image's layers, with the
    /// container's changes on top when `with_changes` (the merged tree, for export)
    /// or without (what the container started from, for diff). Dropping it
    /// unmounts it and removes its directories.
    pub fn view(&self, with_changes: bool) -> Result<Overlay> {
        let mut lowers = Vec::new();
        if with_changes {
            lowers.push(self.upper());
        }
        lowers.extend(self.lower_dirs());
        let target = self.dir.join(format!("view-{}", std::process::id()));
        let scratch = self
            .dir
            .join(format!("view-{}-scratch", std::process::id()));
        for d in [&target, &scratch] {
            fs::create_dir_all(d).io("creating", d)?;
        }
        match mount_overlay(&lowers, None, &target, &scratch) {
            Ok(mut ov) => {
                ov.remove_after(vec![target, scratch]);
                Ok(ov)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&target);
                let _ = fs::remove_dir_all(&scratch);
                Err(e)
            }
        }
    }
}
