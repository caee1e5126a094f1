//! `berth save`: images as an OCI image layout in a tar.
//!
//! The archive holds `oci-layout`, `blobs/sha256/*` (each blob once), an
//! `index.json` with one manifest descriptor per name — annotated with
//! `io.containerd.image.name` (the full name, which `ctr image import` uses) and
//! `org.opencontainers.image.ref.name` (the tag) — and Docker's `manifest.json`,
//! as Docker 25+ writes, so `docker load` takes it too. Headers carry mtime 0, so
//! saving the same images twice gives the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::json;

use super::progress::Progress;
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore};
use super::{Error, Result, media};
use crate::digest::Digest;

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes the images named by `names` (tags or ids) to `out`.
pub fn save(
    store: &ImageStore,
    names: &[String],
    out: impl Write,
    progress: &Progress,
) -> Result<()> {
    let db = store.db()?;
    // (image, the name it was asked by, if a tag)
    let mut picked: Vec<(ImageRecord, Option<Reference>)> = Vec::new();
    for n in names {
        let rec = db.resolve(n)?.clone();
        let by_tag = Reference::parse(n)
            .ok()
            .filter(|r| db.tags.get(&r.to_string()) == Some(rec.id()));
        picked.push((rec, by_tag));
    }
    let werr = |e: io::Error| Error::Io {
        what: "writing",
        path: "the archive".into(),
        source: e,
    };
    let mut b = tar::Builder::new(progress.writer(out));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    b.append_data(
        &mut header(layout.len() as u64, tar::EntryType::Regular, 0o644),
        "oci-layout",
        &layout[..],
    )
    .map_err(werr)?;
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(
            &mut header(0, tar::EntryType::Directory, 0o755),
            d,
            io::empty(),
        )
        .map_err(werr)?;
    }
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let total_layers: usize = picked.iter().map(|(r, _)| r.layers.len()).sum();
    let mut done_layers = 0;
    progress.layers(0, total_layers);
    for (rec, _) in &picked {
        let blobs = [&rec.manifest, &rec.config]
            .into_iter()
            .chain(rec.layers.iter().map(|l| &l.blob));
        for d in blobs {
            if written.insert(d.digest.clone()) {
                let f = store.open_blob(&d.digest)?;
                let size = f.metadata().map_err(werr)?.len();
                b.append_data(
                    &mut header(size, tar::EntryType::Regular, 0o644),
                    format!("blobs/sha256/{}", d.digest.hex()),
                    f,
                )
                .map_err(werr)?;
            }
        }
        done_layers += rec.layers.len();
        progress.layers(done_layers, total_layers);
    }
    let mut manifests = Vec::new();
    let mut docker = Vec::new();
    for (rec, by_tag) in &picked {
        let tags: Vec<Reference> = match by_tag {
            Some(r) => vec![r.clone()],
            None => Vec::new(),
        };
        let mut desc = json!({
            "mediaType": media::MANIFEST,
            "digest": rec.manifest.digest,
            "size": rec.manifest.size,
        });
        if let Some(r) = tags.first() {
            desc["annotations"] = json!({
                "io.containerd.image.name": r.full(),
                "org.opencontainers.image.ref.name": r.tag,
            });
        }
        manifests.push(desc);
        docker.push(json!({
            "Config": format!("blobs/sha256/{}", rec.config.digest.hex()),
            "RepoTags": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "Layers": rec.layers.iter().map(|l| format!("blobs/sha256/{}", l.blob.digest.hex())).collect::<Vec<_>>(),
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": manifests,
    }))
    .unwrap_or_default();
    let docker = serde_json::to_vec(&docker).unwrap_or_default();
    for (name, data) in [("index.json", &index), ("manifest.json", &docker)] {
        b.append_data(
            &mut header(data.len() as u64, tar::EntryType::Regular, 0o644),
            name,
            &data[..],
        )
        .map_err(werr)?;
    }
    let mut out = b.into_inner().map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok(())
}
