//! Images made in code: the tests' multi-layer images (whiteouts, opaque
//! directories, links, special files, hostile entries), the benchmarks' large
//! ones, and `cargo xtask image busybox`. Written as an OCI layout (a tar or a
//! directory) or as a `docker save` archive of the classic shape
//! (`<id>/layer.tar`, `<id>.json`, `manifest.json`, `repositories`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::{host_arch, media};
use crate::digest::Digest;
use crate::layers::store::Compression;

/// One layer's tar, entry by entry.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
    owner: (u64, u64),
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn io_ok(r: io::Result<()>) {
    // Appending to a Vec cannot fail but for names tar refuses, which are the
    // caller's mistake (hostile names go through `raw`).
    if let Err(e) = r {
        panic!("building a layer: {e}");
    }
}

impl LayerBuilder {
    /// An empty layer; entries get mtime 1_700_000_000 unless [`Self::mtime`] changes it.
    pub fn new() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_700_000_000,
            owner: (0, 0),
        }
    }

    /// The mtime of the entries added after this.
    pub fn mtime(&mut self, t: u64) -> &mut Self {
        self.mtime = t;
        self
    }

    /// The owner (uid, gid) of the entries added after this (root's unless set).
    pub fn owner(&mut self, uid: u64, gid: u64) -> &mut Self {
        self.owner = (uid, gid);
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(self.mtime);
        h.set_uid(self.owner.0);
        h.set_gid(self.owner.1);
        h.set_size(0);
        h
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Directory, mode);
        io_ok(self.b.append_data(
            &mut h,
            format!("{}/", path.trim_end_matches('/')),
            io::empty(),
        ));
        self
    }

    /// PAX records (`SCHILY.xattr.NAME`, `mtime`, …) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        if !records.is_empty() {
            io_ok(self.b.append_pax_extensions(records.iter().copied()));
        }
        self
    }

    fn pax_xattrs(&mut self, xattrs: &[(&str, &[u8])]) {
        let pax: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        let records: Vec<(&str, &[u8])> = pax.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.pax(&records);
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let (uid, gid) = self.owner;
        self.file_owned(path, content, mode, uid, gid)
    }

    /// A regular file with an owner.
    pub fn file_owned(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = self.header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(content.len() as u64);
        io_ok(self.b.append_data(&mut h, path, content));
        self
    }

    /// A regular file of `len` bytes from `data` (for large layers without a large buffer).
    pub fn file_from(&mut self, path: &str, len: u64, data: impl io::Read, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Regular, mode);
        h.set_size(len);
        io_ok(self.b.append_data(&mut h, path, data));
        self
    }

    /// A regular file with xattrs (PAX `SCHILY.xattr.*`).
    pub fn file_xattrs(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        self.pax_xattrs(xattrs);
        self.file(path, content, mode)
    }

    /// A symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777);
        io_ok(self.b.append_link(&mut h, path, target));
        self
    }

    /// A hardlink to an earlier entry.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Link, 0o644);
        io_ok(self.b.append_link(&mut h, path, target));
        self
    }

    /// A character or block device.
    pub fn device(
        &mut self,
        path: &str,
        block: bool,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> &mut Self {
        let kind = if block {
            tar::EntryType::Block
        } else {
            tar::EntryType::Char
        };
        let mut h = self.header(kind, mode);
        io_ok(h.set_device_major(major));
        io_ok(h.set_device_minor(minor));
        io_ok(self.b.append_data(&mut h, path, io::empty()));
        self
    }

    /// A fifo.
    pub fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Fifo, mode);
        io_ok(self.b.append_data(&mut h, path, io::empty()));
        self
    }

    /// Deletes `path` of the layers below (`dir/.wh.name`).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, b"", 0o644)
    }

    /// Hides what the layers below have in `dir` (`dir/.wh..wh..opq`).
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// An entry written byte for byte, for hostile archives: `name` and `link` go
    /// into the header unchecked (≤ 100 bytes each).
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &[u8],
        link: &[u8],
        content: &[u8],
    ) -> &mut Self {
        let mut h = self.header(
            kind,
            if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            },
        );
        h.set_size(content.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        old.linkname = [0; 100];
        old.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        h.set_cksum();
        io_ok(self.b.append(&h, content));
        self
    }

    /// The finished tar.
    pub fn finish(self) -> Vec<u8> {
        match self.b.into_inner() {
            Ok(v) => v,
            Err(e) => panic!("finishing a layer: {e}"),
        }
    }
}

/// Compresses a layer tar.
pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    let out = match c {
        Compression::None => Ok(tar.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).and_then(|_| e.finish())
        }
        Compression::Zstd => zstd::stream::encode_all(tar, 1),
    };
    match out {
        Ok(v) => v,
        Err(e) => panic!("compressing: {e}"),
    }
}

/// An image: layers and a config.
pub struct ImageBuilder {
    layers: Vec<(Vec<u8>, Compression, Digest)>,
    config: serde_json::Value,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The blobs of a built image.
struct Blobs {
    config: Vec<u8>,
    manifest: Vec<u8>,
    layers: Vec<(Vec<u8>, String)>,
}

impl ImageBuilder {
    /// No layers; an empty container config.
    pub fn new() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            config: json!({}),
        }
    }

    /// Adds a layer (a tar from [`LayerBuilder::finish`]), stored compressed as `c`.
    pub fn layer(&mut self, tar: Vec<u8>, c: Compression) -> &mut Self {
        let diff_id = Digest::of(&tar);
        self.layers.push((compress(&tar, c), c, diff_id));
        self
    }

    /// Sets a field of the container config (`Cmd`, `Env`, `WorkingDir`, …).
    pub fn config(&mut self, key: &str, value: serde_json::Value) -> &mut Self {
        self.config[key] = value;
        self
    }

    fn blobs(&self) -> Blobs {
        let diff_ids: Vec<&Digest> = self.layers.iter().map(|(_, _, d)| d).collect();
        let config = serde_json::to_vec(&json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": host_arch(),
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created": "2023-11-14T22:13:20Z", "created_by": "berth image builder"})).collect::<Vec<_>>(),
        }))
        .unwrap_or_default();
        let layers: Vec<(Vec<u8>, String)> = self
            .layers
            .iter()
            .map(|(b, c, _)| (b.clone(), c.layer_media_type().to_string()))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": Digest::of(&config), "size": config.len()},
            "layers": layers.iter().map(|(b, m)| json!({"mediaType": m, "digest": Digest::of(b), "size": b.len()})).collect::<Vec<_>>(),
        }))
        .unwrap_or_default();
        Blobs {
            config,
            manifest,
            layers,
        }
    }

    /// The image id (its config's digest).
    pub fn id(&self) -> Digest {
        Digest::of(&self.blobs().config)
    }

    fn oci_files(images: &[(&ImageBuilder, Option<&str>)]) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![(
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )];
        let mut manifests = Vec::new();
        for (img, name) in images {
            let b = img.blobs();
            for blob in [&b.config, &b.manifest]
                .into_iter()
                .chain(b.layers.iter().map(|(l, _)| l))
            {
                files.push((
                    format!("blobs/sha256/{}", Digest::of(blob).hex()),
                    blob.clone(),
                ));
            }
            let mut d = json!({"mediaType": media::MANIFEST, "digest": Digest::of(&b.manifest), "size": b.manifest.len()});
            if let Some(n) = name {
                d["annotations"] = json!({"org.opencontainers.image.ref.name": n});
            }
            manifests.push(d);
        }
        let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
        files.push((
            "index.json".into(),
            serde_json::to_vec(&index).unwrap_or_default(),
        ));
        files
    }

    /// Writes images as an OCI layout tar; each name goes in the
    /// `org.opencontainers.image.ref.name` annotation (`busybox:latest`).
    pub fn write_oci_tar(
        images: &[(&ImageBuilder, Option<&str>)],
        out: impl Write,
    ) -> io::Result<()> {
        write_tar(Self::oci_files(images), out)
    }

    /// Writes images as an OCI layout directory.
    pub fn write_oci_dir(images: &[(&ImageBuilder, Option<&str>)], dir: &Path) -> io::Result<()> {
        for (name, data) in Self::oci_files(images) {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(p, data)?;
        }
        Ok(())
    }

    /// Writes images the way `docker save` did before Docker 25: a directory per
    /// layer with an uncompressed `layer.tar`, `<config hex>.json`, and
    /// `manifest.json` with RepoTags.
    pub fn write_docker_tar(
        images: &[(&ImageBuilder, &[&str])],
        out: impl Write,
    ) -> io::Result<()> {
        let mut files = Vec::new();
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (img, tags) in images {
            let b = img.blobs();
            let config_name = format!("{}.json", Digest::of(&b.config).hex());
            files.push((config_name.clone(), b.config.clone()));
            let mut layer_names = Vec::new();
            let mut last = String::new();
            for (tar, _, diff_id) in &img.layers {
                // docker save's layer directories are named by a v1 id; any unique name does.
                let dir = Digest::of(format!("{last}{diff_id}").as_bytes())
                    .hex()
                    .to_string();
                let plain = match crate::layers::store::decompress(&tar[..]) {
                    Ok((_, mut r)) => {
                        let mut v = Vec::new();
                        io::Read::read_to_end(&mut r, &mut v)?;
                        v
                    }
                    Err(e) => return Err(e),
                };
                files.push((format!("{dir}/VERSION"), b"1.0".to_vec()));
                files.push((
                    format!("{dir}/json"),
                    format!("{{\"id\":\"{dir}\"}}").into_bytes(),
                ));
                files.push((format!("{dir}/layer.tar"), plain));
                layer_names.push(format!("{dir}/layer.tar"));
                last = dir;
            }
            for t in *tags {
                let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "latest"));
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), last.clone());
            }
            manifest.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layer_names}));
        }
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap_or_default(),
        ));
        files.push((
            "repositories".into(),
            serde_json::to_vec(&repositories).unwrap_or_default(),
        ));
        write_tar(files, out)
    }
}

fn write_tar(files: Vec<(String, Vec<u8>)>, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..])?;
    }
    b.into_inner()?.flush()
}

/// A busybox image like Docker Hub's `busybox`: the static binary at
/// `/bin/busybox`, a symlink per applet, root's passwd and group entries, the
/// usual top directories, `Cmd ["sh"]`. `busybox` is the binary to copy (Debian's
/// busybox-static); its `--list` gives the applets.
pub fn busybox(busybox: &Path) -> io::Result<ImageBuilder> {
    let bin = fs::read(busybox)?;
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    if !list.status.success() {
        return Err(io::Error::other(format!(
            "{} --list failed",
            busybox.display()
        )));
    }
    let mut l = LayerBuilder::new();
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/spool", 0o755),
        ("var/www", 0o755),
    ] {
        l.dir(d, mode);
    }
    l.file("bin/busybox", &bin, 0o755);
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|n| !n.is_empty() && *n != "busybox")
    {
        l.symlink(&format!("bin/{name}"), "busybox");
    }
    l.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        0o644,
    );
    l.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    let mut img = ImageBuilder::new();
    img.layer(l.finish(), Compression::Gzip)
        .config(
            "Env",
            json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        )
        .config("Cmd", json!(["sh"]));
    Ok(img)
}
