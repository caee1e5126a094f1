//! `berth commit`: a container's changes as a new image.
//!
//! The upper directory is archived as an OCI layer ([`crate::layers::archive`]
//! turns overlay whiteouts and opaque directories back into `.wh.` entries),
//! stored uncompressed (its digest is then its diff_id), and unpacked into the
//! layer store straight from the stored blob — so the new layer is exactly what
//! another machine loading the image gets. The new config is the parent's with
//! the layer, a history entry and a new `created`.

use serde_json::json;

use super::load::{Loaded, add_image, transaction};
use super::reference::Reference;
use super::store::{Descriptor, ImageStore, LayerRecord};
use super::{Error, Result};
use crate::layers::archive::{Flavor, write_tree};
use crate::layers::snapshot::Snapshot;
use crate::layers::store::Compression;

/// What `commit` may add to the new image.
#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    /// `--author`.
    pub author: Option<String>,
    /// `--message`.
    pub comment: Option<String>,
    /// The container's own config (Cmd, Env, …) to record instead of the parent's.
    pub config: Option<serde_json::Value>,
}

/// Commits the changes in `snapshot` on top of its image.
pub fn commit(
    store: &ImageStore,
    snapshot: &Snapshot,
    tag: Option<&Reference>,
    opts: &CommitOptions,
) -> Result<Loaded> {
    transaction(store, |lock| {
        let db = store.db()?;
        let parent = db
            .images
            .get(&snapshot.record.image)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} (the image the container was made from)",
                    snapshot.record.image
                ))
            })?
            .clone();
        let mut config = store.config(&parent)?;

        let w = lock.blob_writer()?;
        let (w, _) = write_tree(&snapshot.upper(), Flavor::Layer, w)?;
        let (blob, size) = w.commit(None)?;
        fault("commit.after-blob")?;
        let u = store
            .layers()
            .unpack(Some(&blob), store.open_blob(&blob)?)?;
        fault("commit.after-unpack")?;

        let now = crate::oci::time::now_rfc3339_nanos();
        let mut history = json!({"created": now, "created_by": "berth commit"});
        if let Some(a) = &opts.author {
            history["author"] = json!(a);
            config["author"] = json!(a);
        }
        if let Some(c) = &opts.comment {
            history["comment"] = json!(c);
        }
        config["created"] = json!(now);
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(u.diff_id)),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [u.diff_id]}),
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(history),
            None => config["history"] = json!([history]),
        }
        if let Some(c) = &opts.config {
            config["config"] = c.clone();
        }
        let mut layers = parent.layers.clone();
        layers.push(LayerRecord {
            blob: Descriptor {
                media_type: Compression::None.layer_media_type().into(),
                digest: blob,
                size,
            },
            diff_id: u.diff_id,
            unpacked_size: u.content_size,
        });
        add_image(lock, &config, layers, tag)
    })
}

/// A fault a test injected at `name` ([`crate::fault`]).
fn fault(name: &str) -> Result<()> {
    crate::fault::hit(name).map_or(Ok(()), |m| {
        Err(Error::Layer(crate::layers::Error::Other(m)))
    })
}
