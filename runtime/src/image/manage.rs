//! `berth tag`, `rmi`, `image prune` and `image inspect`, with Docker's rules.

use std::collections::BTreeMap;

use serde_json::json;

use super::load::transaction;
use super::reference::Reference;
use super::store::{Db, ImageRecord, ImageStore};
use super::{Error, Result};
use crate::digest::Digest;

/// What `rmi` and `prune` did, in Docker's words.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removal {
    /// `Untagged: …` lines.
    pub untagged: Vec<String>,
    /// Images deleted.
    pub deleted: Vec<Digest>,
    /// Bytes freed on disk.
    pub freed: u64,
}

/// The containers (snapshot ids) made from each image.
fn users(store: &ImageStore) -> Result<BTreeMap<Digest, Vec<String>>> {
    let mut m: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for s in store.snapshots().list()? {
        m.entry(s.record.image.clone()).or_default().push(s.id);
    }
    Ok(m)
}

/// `berth tag SOURCE TARGET`.
pub fn tag(store: &ImageStore, source: &str, target: &str) -> Result<()> {
    let target = Reference::parse(target)?;
    transaction(store, |lock| {
        let mut db = store.db()?;
        let id = db.resolve(source)?.id().clone();
        db.tags.insert(target.to_string(), id);
        lock.save_db(&db)
    })
}

fn short(id: &Digest) -> &str {
    id.short()
}

/// `berth rmi [-f] IMAGE…`: untags, and deletes images left without tags that no
/// container uses. Refused without `force` when a container uses the image, or
/// when an id names an image with several tags.
pub fn remove(store: &ImageStore, names: &[String], force: bool) -> Result<Removal> {
    transaction(store, |lock| {
        let before = store.db()?;
        let mut db = before.clone();
        let users = users(store)?;
        let mut out = Removal::default();
        for name in names {
            let rec = db.resolve(name)?.clone();
            let id = rec.id().clone();
            let tags = db.tags_of(&id);
            let by_tag = Reference::parse(name)
                .ok()
                .map(|r| r.to_string())
                .filter(|t| db.tags.get(t) == Some(&id));
            let used = users.get(&id).and_then(|u| u.first());
            match &by_tag {
                Some(t) if tags.len() > 1 => {
                    db.tags.remove(t);
                    out.untagged.push(t.clone());
                    continue;
                }
                Some(t) => {
                    if let (Some(c), false) = (used, force) {
                        return Err(Error::Conflict(format!(
                            "unable to remove repository reference {t:?} (must force) - container {} is using its referenced image {}",
                            &c[..c.len().min(12)],
                            short(&id)
                        )));
                    }
                }
                None => {
                    if tags.len() > 1 && !force {
                        return Err(Error::Conflict(format!(
                            "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                            short(&id)
                        )));
                    }
                    if let (Some(c), false) = (used, force) {
                        return Err(Error::Conflict(format!(
                            "unable to delete {} (must be forced) - image is being used by container {}",
                            short(&id),
                            &c[..c.len().min(12)]
                        )));
                    }
                }
            }
            for t in tags {
                db.tags.remove(&t);
                out.untagged.push(t);
            }
            // An image a container still uses stays (untagged) until the container goes.
            if used.is_none() {
                db.images.remove(&id);
                out.deleted.push(id);
            }
        }
        lock.save_db(&db)?;
        out.freed = lock.gc(&db, &before)?;
        Ok(out)
    })
}

/// `berth image prune`: removes untagged images (every image with `all`) that no
/// container uses.
pub fn prune(store: &ImageStore, all: bool) -> Result<Removal> {
    transaction(store, |lock| {
        let before = store.db()?;
        let mut db = before.clone();
        let users = users(store)?;
        let mut out = Removal::default();
        let ids: Vec<Digest> = db.images.keys().cloned().collect();
        for id in ids {
            let tags = db.tags_of(&id);
            if users.contains_key(&id) || (!all && !tags.is_empty()) {
                continue;
            }
            for t in tags {
                db.tags.remove(&t);
                out.untagged.push(t);
            }
            db.images.remove(&id);
            out.deleted.push(id);
        }
        lock.save_db(&db)?;
        out.freed = lock.gc(&db, &before)?;
        Ok(out)
    })
}

/// `berth image inspect`: Docker's fields, with the OCI config's `config` as `Config`.
pub fn inspect(store: &ImageStore, db: &Db, rec: &ImageRecord) -> Result<serde_json::Value> {
    let config = store.config(rec)?;
    let c = &config["config"];
    let pick = |k: &str| c.get(k).cloned().unwrap_or(serde_json::Value::Null);
    Ok(json!({
        "Id": rec.id(),
        "RepoTags": db.tags_of(rec.id()),
        "Created": config.get("created").cloned().unwrap_or(json!("")),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Architecture": config.get("architecture").cloned().unwrap_or(json!("")),
        "Os": config.get("os").cloned().unwrap_or(json!("")),
        "Size": rec.size(),
        "Config": {
            "User": pick("User"),
            "Env": pick("Env"),
            "Cmd": pick("Cmd"),
            "Entrypoint": pick("Entrypoint"),
            "WorkingDir": pick("WorkingDir"),
            "ExposedPorts": pick("ExposedPorts"),
            "Volumes": pick("Volumes"),
            "Labels": pick("Labels"),
            "StopSignal": pick("StopSignal"),
        },
        "RootFS": {
            "Type": "layers",
            "Layers": rec.diff_ids(),
        },
        "History": config.get("history").cloned().unwrap_or(json!([])),
        "Manifest": rec.manifest.digest,
    }))
}
