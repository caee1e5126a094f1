//! `berth load` and `berth import`.
//!
//! `load` reads an OCI image layout (a directory, or a tar of one) or a
//! `docker save` archive (either generation: `<id>/layer.tar` files, or the
//! OCI-layout-shaped archives of Docker 25+), from a file or stdin, optionally
//! gzip- or zstd-compressed as a whole. The archive is read once, front to back:
//! `blobs/sha256/<hex>` files go straight into the store with their digest
//! verified, the small JSON files are kept in memory, any other file (Docker's
//! `layer.tar`) is stored by the digest it turns out to have. Then the
//! manifests are followed (a multi-platform index picks linux/<this machine's
//! architecture>), every layer not unpacked yet is unpacked — in parallel, one
//! thread per core — with its diff_id checked against the config, and only then
//! are the images and their tags written to the database. A failure at any point
//! removes what this load added.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::json;

use super::progress::Progress;
use super::reference::Reference;
use super::store::{Db, Descriptor, ImageRecord, ImageStore, LayerRecord, Locked};
use super::{Error, IoContext, Result, host_arch, media};
use crate::digest::Digest;
use crate::layers::store::{Compression, content_size, decompress};

/// Where an archive comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file (tar, possibly compressed) or an OCI layout directory.
    Path(PathBuf),
    /// Standard input.
    Stdin,
}

impl Input {
    /// `-` is stdin.
    pub fn from_arg(s: &str) -> Input {
        if s == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(s))
        }
    }

    fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "stdin".into(),
        }
    }

    /// Its size, when it is a file.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Path(p) => fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Input::Stdin => None,
        }
    }

    fn open(&self) -> Result<Box<dyn Read>> {
        Ok(match self {
            Input::Path(p) => Box::new(File::open(p).io("opening", p)?),
            Input::Stdin => Box::new(io::stdin()),
        })
    }
}

/// An image that was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Its id.
    pub id: Digest,
    /// The tags it got.
    pub tags: Vec<String>,
}

impl Loaded {
    /// Docker's report lines.
    pub fn report(&self) -> Vec<String> {
        if self.tags.is_empty() {
            vec![format!("Loaded image ID: {}", self.id)]
        } else {
            self.tags
                .iter()
                .map(|t| format!("Loaded image: {t}"))
                .collect()
        }
    }
}

enum Item {
    Mem(Vec<u8>),
    Blob(Digest, u64),
    Link(String),
}

struct Archive {
    name: String,
    files: HashMap<String, Item>,
}

/// A relative, normalised name ("./a/../b" → "b"; nothing above the root).
fn norm(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}

fn is_metadata(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(
        base,
        "index.json" | "oci-layout" | "manifest.json" | "repositories" | "json" | "VERSION"
    ) || base.ends_with(".json")
}

const MAX_METADATA: u64 = 64 << 20;

impl Archive {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Format {
            source_name: self.name.clone(),
            msg: msg.into(),
        }
    }

    fn add_file(
        &mut self,
        lock: &Locked<'_>,
        name: String,
        size: u64,
        r: &mut impl Read,
    ) -> Result<()> {
        let item = if let Some(d) = name
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex)
        {
            let (d, n) = lock.put_blob(Some(&d), r)?;
            Item::Blob(d, n)
        } else if is_metadata(&name) && size <= MAX_METADATA {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
                .map_err(|e| self.err(format!("reading {name}: {e}")))?;
            Item::Mem(v)
        } else {
            let (d, n) = lock.put_blob(None, r)?;
            Item::Blob(d, n)
        };
        self.files.insert(name, item);
        Ok(())
    }

    fn read_tar(lock: &Locked<'_>, name: String, r: impl Read) -> Result<Archive> {
        let mut a = Archive {
            name,
            files: HashMap::new(),
        };
        let (_, r) = decompress(r).map_err(|e| a.err(format!("reading: {e}")))?;
        let mut tar = tar::Archive::new(r);
        let entries = tar.entries().map_err(|e| a.err(format!("reading: {e}")))?;
        for e in entries {
            let mut e = e.map_err(|e| a.err(format!("reading: {e}")))?;
            let path = e.path().map_err(|e| a.err(format!("reading: {e}")))?;
            let name = norm(&path);
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = e.size();
                    a.add_file(lock, name, size, &mut e)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = e.link_name().ok().flatten() else {
                        continue;
                    };
                    let resolved = if e.header().entry_type() == tar::EntryType::Symlink {
                        norm(
                            &Path::new(&name)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(target),
                        )
                    } else {
                        norm(&target)
                    };
                    a.files.insert(name, Item::Link(resolved));
                }
                _ => {}
            }
        }
        Ok(a)
    }

    fn read_dir(lock: &Locked<'_>, dir: &Path) -> Result<Archive> {
        let mut a = Archive {
            name: dir.display().to_string(),
            files: HashMap::new(),
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).io("listing", &d)? {
                let e = e.io("listing", &d)?;
                let p = e.path();
                let t = e.file_type().io("stat", &p)?;
                if t.is_dir() {
                    stack.push(p);
                } else if t.is_file() {
                    let name = norm(p.strip_prefix(dir).unwrap_or(&p));
                    let size = e.metadata().io("stat", &p)?.len();
                    let mut f = File::open(&p).io("opening", &p)?;
                    a.add_file(lock, name, size, &mut f)?;
                }
            }
        }
        Ok(a)
    }

    fn get(&self, name: &str) -> Result<&Item> {
        let mut name = norm(Path::new(name));
        for _ in 0..16 {
            match self.files.get(&name) {
                Some(Item::Link(t)) => name = t.clone(),
                Some(item) => return Ok(item),
                None => return Err(self.err(format!("{name} is missing from the archive"))),
            }
        }
        Err(self.err(format!("{name}: too many levels of links")))
    }

    fn bytes(&self, store: &ImageStore, name: &str) -> Result<Vec<u8>> {
        match self.get(name)? {
            Item::Mem(v) => Ok(v.clone()),
            Item::Blob(d, _) => store.read_blob(d),
            Item::Link(_) => Err(self.err(format!("{name}: unresolved link"))),
        }
    }

    /// The file as a stored blob.
    fn blob(&self, lock: &Locked<'_>, name: &str) -> Result<(Digest, u64)> {
        match self.get(name)? {
            Item::Mem(v) => Ok((lock.put_bytes(v)?, v.len() as u64)),
            Item::Blob(d, n) => Ok((d.clone(), *n)),
            Item::Link(_) => Err(self.err(format!("{name}: unresolved link"))),
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, what: &str, data: &[u8]) -> Result<T> {
        serde_json::from_slice(data).map_err(|e| self.err(format!("{what}: {e}")))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescJson {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<PlatformJson>,
}

#[derive(Deserialize)]
struct PlatformJson {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    #[serde(default)]
    media_type: String,
    config: Option<DescJson>,
    #[serde(default)]
    layers: Vec<DescJson>,
    manifests: Option<Vec<DescJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image found in an archive, its blobs stored, its layers not yet unpacked.
struct Found {
    manifest: Descriptor,
    config: Descriptor,
    layers: Vec<Descriptor>,
    tags: Vec<Reference>,
}

fn names_from(annotations: &BTreeMap<String, String>) -> Vec<Reference> {
    if let Some(n) = annotations.get("io.containerd.image.name")
        && let Ok(r) = Reference::parse(n)
    {
        return vec![r];
    }
    match annotations.get("org.opencontainers.image.ref.name") {
        // A bare tag ("latest") names no repository: the image loads untagged.
        Some(n) if n.contains(':') || n.contains('/') => Reference::parse(n).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn oci_images(a: &Archive, lock: &Locked<'_>) -> Result<Vec<Found>> {
    let store = lock.store();
    let index: ManifestJson = a.json("index.json", &a.bytes(store, "index.json")?)?;
    let mut out = Vec::new();
    let mut queue: Vec<(DescJson, Vec<Reference>)> = index
        .manifests
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let names = names_from(&d.annotations);
            (d, names)
        })
        .collect();
    let mut seen = 0;
    while let Some((desc, names)) = queue.pop() {
        seen += 1;
        if seen > 1000 {
            return Err(a.err("index nesting too deep"));
        }
        if !store.blob_path(&desc.digest).exists() {
            return Err(a.err(format!(
                "blob {} named by the index is missing",
                desc.digest
            )));
        }
        let data = store.read_blob(&desc.digest)?;
        let m: ManifestJson = a.json(&format!("manifest {}", desc.digest), &data)?;
        let is_index = matches!(desc.media_type.as_str(), media::INDEX | media::DOCKER_LIST)
            || matches!(m.media_type.as_str(), media::INDEX | media::DOCKER_LIST)
            || m.manifests.is_some();
        if is_index {
            let list = m.manifests.unwrap_or_default();
            let matching: Vec<DescJson> = if list.len() == 1 {
                list
            } else {
                list.into_iter()
                    .filter(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
                    })
                    .take(1)
                    .collect()
            };
            if matching.is_empty() {
                return Err(a.err(format!(
                    "index {} has no manifest for linux/{}",
                    desc.digest,
                    host_arch()
                )));
            }
            for d in matching {
                queue.push((d, names.clone()));
            }
            continue;
        }
        let config = m
            .config
            .ok_or_else(|| a.err(format!("manifest {} has no config", desc.digest)))?;
        for d in std::iter::once(&config).chain(&m.layers) {
            if !store.blob_path(&d.digest).exists() {
                return Err(a.err(format!(
                    "blob {} named by manifest {} is missing",
                    d.digest, desc.digest
                )));
            }
        }
        out.push(Found {
            manifest: Descriptor {
                media_type: if desc.media_type.is_empty() {
                    media::MANIFEST.into()
                } else {
                    desc.media_type
                },
                digest: desc.digest,
                size: desc.size,
            },
            config: Descriptor {
                media_type: config.media_type,
                digest: config.digest,
                size: config.size,
            },
            layers: m
                .layers
                .into_iter()
                .map(|l| Descriptor {
                    media_type: l.media_type,
                    digest: l.digest,
                    size: l.size,
                })
                .collect(),
            tags: names,
        });
    }
    out.reverse();
    Ok(out)
}

fn sniff_blob(store: &ImageStore, d: &Digest) -> Result<Compression> {
    let p = store.blob_path(d);
    let mut r = BufReader::new(File::open(&p).io("opening", &p)?);
    Ok(Compression::sniff(r.fill_buf().io("reading", &p)?))
}

fn docker_images(a: &Archive, lock: &Locked<'_>) -> Result<Vec<Found>> {
    let store = lock.store();
    let list: Vec<DockerManifest> = a.json("manifest.json", &a.bytes(store, "manifest.json")?)?;
    let mut out = Vec::new();
    for m in list {
        let (cd, cn) = a.blob(lock, &m.config)?;
        let mut layers = Vec::new();
        for l in &m.layers {
            let (d, n) = a.blob(lock, l)?;
            layers.push(Descriptor {
                media_type: sniff_blob(store, &d)?.layer_media_type().into(),
                digest: d,
                size: n,
            });
        }
        let config = Descriptor {
            media_type: media::CONFIG.into(),
            digest: cd,
            size: cn,
        };
        let manifest = manifest_json(&config, &layers);
        let md = lock.put_bytes(&manifest)?;
        let mut tags = Vec::new();
        for t in m.repo_tags.unwrap_or_default() {
            tags.push(Reference::parse(&t).map_err(|e| a.err(format!("RepoTags: {e}")))?);
        }
        out.push(Found {
            manifest: Descriptor {
                media_type: media::MANIFEST.into(),
                digest: md,
                size: manifest.len() as u64,
            },
            config,
            layers,
            tags,
        });
    }
    Ok(out)
}

/// Adds the RepoTags of Docker's manifest.json to the images of the OCI index.
fn add_repo_tags(a: &Archive, lock: &Locked<'_>, found: &mut [Found]) -> Result<()> {
    let list: Vec<DockerManifest> =
        a.json("manifest.json", &a.bytes(lock.store(), "manifest.json")?)?;
    for m in list {
        let Ok((config, _)) = a.blob(lock, &m.config) else {
            continue;
        };
        if let Some(f) = found.iter_mut().find(|f| f.config.digest == config) {
            for t in m.repo_tags.unwrap_or_default() {
                let r = Reference::parse(&t).map_err(|e| a.err(format!("RepoTags: {e}")))?;
                if !f.tags.contains(&r) {
                    f.tags.push(r);
                }
            }
        }
    }
    Ok(())
}

/// The OCI manifest of a config and layers.
pub fn manifest_json(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": config,
        "layers": layers,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// What a config declares: its layers' diff_ids and its `created`.
type ConfigFacts = (Vec<Digest>, Option<String>);

/// The diff_ids and `created` a config declares.
pub(crate) fn config_facts(source: &str, data: &[u8]) -> Result<ConfigFacts> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(data).map_err(|e| Error::Format {
        source_name: source.to_string(),
        msg: format!("image config: {e}"),
    })?;
    Ok((c.rootfs.diff_ids, c.created))
}

/// Unpacks the layers (diff_id, blob) that are not unpacked yet, in parallel;
/// returns the content size of each layer of `wanted`.
pub(crate) fn unpack_layers(
    lock: &Locked<'_>,
    db: &Db,
    wanted: &[(Digest, Digest)],
    progress: &Progress,
) -> Result<HashMap<Digest, u64>> {
    let store = lock.store();
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    let known: HashMap<&Digest, u64> = db
        .images
        .values()
        .flat_map(|r| r.layers.iter().map(|l| (&l.diff_id, l.unpacked_size)))
        .collect();
    let mut todo: Vec<(Digest, Digest)> = Vec::new();
    for (diff_id, blob) in wanted {
        if sizes.contains_key(diff_id) || todo.iter().any(|(d, _)| d == diff_id) {
            continue;
        }
        if store.layers().has(diff_id) {
            let n = known
                .get(diff_id)
                .copied()
                .unwrap_or_else(|| content_size(&store.layers().path(diff_id)));
            sizes.insert(diff_id.clone(), n);
        } else {
            todo.push((diff_id.clone(), blob.clone()));
        }
    }
    let total = todo.len();
    progress.layers(0, total);
    let queue = Mutex::new(todo);
    let results: Mutex<Vec<Result<(Digest, u64)>>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(total.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((diff_id, blob)) = next else { break };
                    let r = (|| {
                        let f = store.open_blob(&blob)?;
                        let u = store
                            .layers()
                            .unpack(Some(&diff_id), BufReader::with_capacity(1 << 20, f))?;
                        Ok((diff_id.clone(), u.content_size))
                    })();
                    let failed = r.is_err();
                    if let Ok(mut res) = results.lock() {
                        res.push(r);
                        progress.layers(res.len(), total);
                    }
                    if failed {
                        // Let the other workers stop early.
                        if let Ok(mut q) = queue.lock() {
                            q.clear();
                        }
                    }
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| Error::Format {
        source_name: "unpack".into(),
        msg: "a worker panicked".into(),
    })?;
    for r in results {
        let (d, n) = r?;
        sizes.insert(d, n);
    }
    Ok(sizes)
}

/// Turns found images into records (unpacking their layers) and adds them to the
/// database with their tags.
fn register(
    lock: &Locked<'_>,
    found: Vec<Found>,
    source: &str,
    progress: &Progress,
) -> Result<Vec<Loaded>> {
    let store = lock.store();
    let mut db = store.db()?;
    let mut wanted = Vec::new();
    let mut facts = Vec::new();
    for f in &found {
        let data = store.read_blob(&f.config.digest)?;
        let (diff_ids, created) = config_facts(source, &data)?;
        if diff_ids.len() != f.layers.len() {
            return Err(Error::Format {
                source_name: source.to_string(),
                msg: format!(
                    "image {}: the config names {} layers, the manifest {}",
                    f.config.digest,
                    diff_ids.len(),
                    f.layers.len()
                ),
            });
        }
        wanted.extend(
            diff_ids
                .iter()
                .cloned()
                .zip(f.layers.iter().map(|l| l.digest.clone())),
        );
        facts.push((diff_ids, created));
    }
    let sizes = unpack_layers(lock, &db, &wanted, progress)?;
    // One image under several names (one index entry per tag) is one image.
    let mut merged: Vec<(Found, ConfigFacts)> = Vec::new();
    for (f, fact) in found.into_iter().zip(facts) {
        match merged
            .iter_mut()
            .find(|(m, _)| m.config.digest == f.config.digest)
        {
            Some((m, _)) => {
                for t in f.tags {
                    if !m.tags.contains(&t) {
                        m.tags.push(t);
                    }
                }
            }
            None => merged.push((f, fact)),
        }
    }
    let mut loaded = Vec::new();
    for (f, (diff_ids, created)) in merged {
        let rec = ImageRecord {
            manifest: f.manifest,
            config: f.config,
            layers: f
                .layers
                .into_iter()
                .zip(diff_ids)
                .map(|(blob, diff_id)| LayerRecord {
                    unpacked_size: sizes.get(&diff_id).copied().unwrap_or(0),
                    blob,
                    diff_id,
                })
                .collect(),
            created,
        };
        let id = rec.id().clone();
        db.images.insert(id.clone(), rec);
        let tags: Vec<String> = f.tags.iter().map(|t| t.to_string()).collect();
        for t in &tags {
            db.tags.insert(t.clone(), id.clone());
        }
        loaded.push(Loaded { id, tags });
    }
    lock.save_db(&db)?;
    Ok(loaded)
}

/// Runs `f` with the store locked; if it fails, removes what it added.
pub(crate) fn transaction<T>(
    store: &ImageStore,
    f: impl FnOnce(&Locked<'_>) -> Result<T>,
) -> Result<T> {
    let lock = store.lock()?;
    let before = store.db()?;
    let r = f(&lock);
    let db = store.db()?;
    let _ = lock.gc(&db, &before);
    r
}

/// `berth load`: every image in the archive (or layout directory).
pub fn load(store: &ImageStore, input: &Input, progress: &Progress) -> Result<Vec<Loaded>> {
    transaction(store, |lock| {
        let archive = match input {
            Input::Path(p) if p.is_dir() => Archive::read_dir(lock, p)?,
            _ => Archive::read_tar(lock, input.name(), progress.reader(input.open()?))?,
        };
        // Docker 25+ writes both: the OCI index is the image as it was; manifest.json
        // may still name images the index does not.
        let found = if archive.files.contains_key("index.json") {
            let mut found = oci_images(&archive, lock)?;
            if archive.files.contains_key("manifest.json") {
                add_repo_tags(&archive, lock, &mut found)?;
            }
            found
        } else if archive.files.contains_key("manifest.json") {
            docker_images(&archive, lock)?
        } else {
            return Err(archive.err(
                "not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save); \
                 for a root filesystem tar use `berth import`",
            ));
        };
        if found.is_empty() {
            return Err(archive.err("the archive holds no image"));
        }
        register(lock, found, &archive.name, progress)
    })
}

/// A minimal image config over the given layers.
pub(crate) fn new_config(
    diff_ids: &[Digest],
    created_by: &str,
    comment: Option<&str>,
) -> serde_json::Value {
    let now = crate::oci::time::now_rfc3339_nanos();
    let mut history = json!({"created": now, "created_by": created_by});
    if let Some(c) = comment {
        history["comment"] = json!(c);
    }
    json!({
        "created": now,
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [history],
    })
}

/// Stores a config and the manifest over it, and adds the image (tagged `tag`).
pub(crate) fn add_image(
    lock: &Locked<'_>,
    config: &serde_json::Value,
    layers: Vec<LayerRecord>,
    tag: Option<&Reference>,
) -> Result<Loaded> {
    let data = serde_json::to_vec(config).map_err(|e| Error::Format {
        source_name: "image config".into(),
        msg: e.to_string(),
    })?;
    let config_desc = Descriptor {
        media_type: media::CONFIG.into(),
        digest: lock.put_bytes(&data)?,
        size: data.len() as u64,
    };
    let blobs: Vec<Descriptor> = layers.iter().map(|l| l.blob.clone()).collect();
    let manifest = manifest_json(&config_desc, &blobs);
    let rec = ImageRecord {
        manifest: Descriptor {
            media_type: media::MANIFEST.into(),
            digest: lock.put_bytes(&manifest)?,
            size: manifest.len() as u64,
        },
        config: config_desc,
        layers,
        created: config["created"].as_str().map(String::from),
    };
    let id = rec.id().clone();
    let mut db = lock.store().db()?;
    db.images.insert(id.clone(), rec);
    let mut tags = Vec::new();
    if let Some(t) = tag {
        db.tags.insert(t.to_string(), id.clone());
        tags.push(t.to_string());
    }
    lock.save_db(&db)?;
    Ok(Loaded { id, tags })
}

/// `berth import`: a root filesystem tar (plain, gzip or zstd) as a one-layer image.
pub fn import(
    store: &ImageStore,
    input: &Input,
    tag: Option<&Reference>,
    message: Option<&str>,
    progress: &Progress,
) -> Result<Loaded> {
    transaction(store, |lock| {
        let mut r = progress.reader(input.open()?);
        let (blob, size) = lock.put_blob(None, &mut r)?;
        let compression = sniff_blob(store, &blob)?;
        progress.layers(0, 1);
        let u = store.layers().unpack(
            None,
            BufReader::with_capacity(1 << 20, store.open_blob(&blob)?),
        )?;
        progress.layers(1, 1);
        let layer = LayerRecord {
            blob: Descriptor {
                media_type: compression.layer_media_type().into(),
                digest: blob,
                size,
            },
            diff_id: u.diff_id.clone(),
            unpacked_size: u.content_size,
        };
        let comment = message
            .map(String::from)
            .unwrap_or_else(|| format!("imported from {}", input.name()));
        let config = new_config(&[u.diff_id], "berth import", Some(&comment));
        add_image(lock, &config, vec![layer], tag)
    })
}
