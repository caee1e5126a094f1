//! Volumes: directories berth owns under `ROOT/volumes/NAME/_data`, mounted
//! into containers by name (`-v NAME:/path`) or made anonymous (`-v /path`, and
//! the image's `Volumes`). A new, empty volume is filled with what the image has
//! at its path when a container first mounts it, as Docker does (read through
//! `cp`'s chrooted helper, so links in the image resolve inside it).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Engine, Error, IoContext, Result};

/// A volume's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name (64 hex digits for an anonymous one).
    pub name: String,
    /// When it was made.
    pub created: String,
    /// Made for one container (`-v /path` or the image's), removed with it by
    /// `rm -v` and `--rm`.
    pub anonymous: bool,
}

/// The volumes of a data root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// The volumes under `root/volumes`.
    pub fn open(root: &Path) -> Result<Volumes> {
        let dir = root.join("volumes");
        fs::create_dir_all(&dir).io("creating", &dir)?;
        Ok(Volumes { dir })
    }

    /// Where a volume's files are.
    pub fn data(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Makes volume `name` unless it exists; returns its record.
    pub fn ensure(&self, name: &str, anonymous: bool) -> Result<Volume> {
        if !super::container::valid_name(name) {
            return Err(Error::Flag(
                format!("volume name {name:?}"),
                "use [a-zA-Z0-9][a-zA-Z0-9_.-]+".into(),
            ));
        }
        if let Ok(v) = self.get(name) {
            return Ok(v);
        }
        let d = self.dir.join(name);
        let v = Volume {
            name: name.to_string(),
            created: crate::oci::time::now_rfc3339(),
            anonymous,
        };
        fs::create_dir_all(d.join("_data")).io("creating", d.join("_data"))?;
        let data = serde_json::to_vec_pretty(&v).map_err(|e| Error::Message(e.to_string()))?;
        crate::oci::state::write_atomic(&d.join("volume.json"), &data)?;
        Ok(v)
    }

    /// Volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        let p = self.dir.join(name).join("volume.json");
        let data = fs::read(&p).map_err(|_| Error::Message(format!("no such volume: {name}")))?;
        serde_json::from_slice(&data).map_err(|e| Error::Message(format!("{}: {e}", p.display())))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).io("listing", &self.dir)?.flatten() {
            if let Some(n) = e.file_name().to_str()
                && let Ok(v) = self.get(n)
            {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes volume `name` (the caller checked that no container uses it).
    fn remove_dir(&self, name: &str) -> Result<()> {
        let d = self.dir.join(name);
        fs::remove_dir_all(&d).io("removing", &d)
    }
}

/// The containers that use volume `name`.
fn users(e: &Engine, name: &str) -> Result<Vec<String>> {
    Ok(e.containers
        .list()?
        .into_iter()
        .filter(|c| {
            c.config
                .volumes
                .iter()
                .any(|v| v.name.as_deref() == Some(name))
        })
        .map(|c| c.name)
        .collect())
}

/// `volume rm`: refused while a container uses it (with `force`, too: Docker's
/// rule is the same).
pub fn remove(e: &Engine, name: &str) -> Result<()> {
    e.volumes.get(name)?;
    let u = users(e, name)?;
    if !u.is_empty() {
        return Err(Error::Message(format!(
            "remove {name}: volume is in use by {}",
            u.join(", ")
        )));
    }
    e.volumes.remove_dir(name)
}

/// `volume prune`: unused anonymous volumes (all unused ones with `all`).
pub fn prune(e: &Engine, all: bool) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for v in e.volumes.list()? {
        if (all || v.anonymous) && users(e, &v.name)?.is_empty() {
            e.volumes.remove_dir(&v.name)?;
            gone.push(v.name);
        }
    }
    Ok(gone)
}

/// Removes the anonymous volumes of a removed container (`rm -v`, `--rm`).
pub fn remove_anonymous(e: &Engine, volumes: &[super::container::Volume]) -> Result<()> {
    for v in volumes {
        if let Some(n) = &v.name
            && e.volumes.get(n).is_ok_and(|r| r.anonymous)
            && users(e, n)?.is_empty()
        {
            e.volumes.remove_dir(n)?;
        }
    }
    Ok(())
}

/// Fills each empty volume of a container from what its root (mounted at
/// `rootfs`) has at the volume's path.
pub fn populate(rootfs: &Path, volumes: &[super::container::Volume]) -> Result<()> {
    for v in volumes.iter().filter(|v| v.name.is_some()) {
        let data = Path::new(&v.source);
        let empty = fs::read_dir(data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            continue;
        }
        let exe = std::env::current_exe().io("finding", "berth's own binary")?;
        let out = std::process::Command::new(&exe)
            .arg("cp-helper")
            .arg("out")
            .arg(rootfs)
            .arg(format!("{}/.", v.target.trim_end_matches('/')))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .io("starting", &exe)?;
        // Nothing there in the image (or not a directory): the volume stays empty.
        if !out.status.success() {
            continue;
        }
        let body = out
            .stdout
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| &out.stdout[i + 1..])
            .unwrap_or_default();
        super::cp::unpack(body, &v.source, super::cp::Shape::Contents, "")?;
    }
    Ok(())
}
