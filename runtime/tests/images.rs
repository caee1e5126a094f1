//! Images and layers, observed on disk and through the kernel's overlay: loading
//! every archive format, the merged tree of random layer stacks against
//! berth-model's union part, commit/diff/export round trips, hostile archives,
//! digests, killed imports, image removal rules, and stacks deeper than one
//! mount's options hold. Each test has its own data root; the `berth` binary is
//! driven as a user would, the library where a container is needed (the engine
//! that makes containers comes with issue 6).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth::digest::Digest;
use berth::image::build::{ImageBuilder, LayerBuilder};
use berth::image::store::ImageStore;
use berth::layers::snapshot::Snapshot;
use berth::layers::store::Compression;
use berth_model::union::{self as model, Body, Entry, Node};
use common::need_root;
use serde_json::Value;

/// A private data root and the `berth` binary.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("berth-img")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root").arg(self.path().join("data")).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its one-line error.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "berth {args:?} succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        err
    }

    fn store(&self) -> ImageStore {
        ImageStore::open(&self.path().join("data")).expect("store")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// A snapshot (container read-write layer) of an image.
    fn snapshot(&self, id: &str, image: &str) -> Snapshot {
        self.store().create_snapshot(id, image).expect("snapshot")
    }

    /// Everything in the store, for "unchanged" checks.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.path().join("data");
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == "lock") {
                    continue;
                }
                out.push(p.strip_prefix(&base).unwrap_or(&p).display().to_string());
                if e.file_type().is_ok_and(|t| t.is_dir()) && !p.starts_with(base.join("layers")) {
                    stack.push(p);
                }
            }
        }
        let db = fs::read_to_string(base.join("image/db.json")).unwrap_or_default();
        out.push(db);
        out.sort();
        out
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Any mount a failed test left under the root.
        if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
            let mut mps: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|mp| Path::new(mp).starts_with(self.dir.path()))
                .collect();
            mps.reverse();
            for mp in mps {
                let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// A file's normalised description, for comparing trees.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum N {
    File {
        content: Vec<u8>,
        mode: u32,
        group: String,
    },
    Dir {
        mode: u32,
    },
    Symlink(String),
    Device(char, u32, u32),
    Fifo,
}

/// Walks a real tree (not following links): path → description; files with several
/// names share `group` (their smallest name).
///
/// overlayfs reads a directory that only one layer has straight from that layer,
/// so a whiteout there (one that hides nothing, as a random layer can hold) is
/// listed although looking it up finds nothing; lookup is what the kernel means,
/// so such a name counts as absent.
fn real_tree(root: &Path) -> BTreeMap<String, N> {
    let mut raw: Vec<(String, fs::Metadata)> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => panic!("lstat {}: {err}", p.display()),
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            raw.push((
                p.strip_prefix(root).expect("under").display().to_string(),
                m,
            ));
        }
    }
    let mut groups: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (p, m) in &raw {
        if m.is_file() {
            let g = groups
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| p.clone());
            if p < g {
                *g = p.clone();
            }
        }
    }
    raw.into_iter()
        .map(|(p, m)| {
            let full = root.join(&p);
            let t = m.file_type();
            let n = if t.is_dir() {
                N::Dir {
                    mode: m.mode() & 0o7777,
                }
            } else if t.is_symlink() {
                N::Symlink(
                    fs::read_link(&full)
                        .expect("readlink")
                        .display()
                        .to_string(),
                )
            } else if t.is_file() {
                N::File {
                    content: fs::read(&full).expect("read"),
                    mode: m.mode() & 0o7777,
                    group: groups[&(m.dev(), m.ino())].clone(),
                }
            } else if t.is_char_device() || t.is_block_device() {
                let r = m.rdev();
                N::Device(
                    if t.is_char_device() { 'c' } else { 'b' },
                    nix::sys::stat::major(r) as u32,
                    nix::sys::stat::minor(r) as u32,
                )
            } else {
                N::Fifo
            };
            (p, n)
        })
        .collect()
}

/// The model's tree in the same form.
fn model_tree(t: &model::Tree) -> BTreeMap<String, N> {
    let mut groups: BTreeMap<String, String> = BTreeMap::new();
    for (p, n) in t {
        let first = match n {
            Node::Hardlink(f) => f.clone(),
            Node::File { .. } => p.clone(),
            _ => continue,
        };
        let g = groups.entry(first).or_insert_with(|| p.clone());
        if p < g {
            *g = p.clone();
        }
    }
    t.iter()
        .map(|(p, n)| {
            let n = match n {
                Node::File { content, mode, .. } => N::File {
                    content: content.clone(),
                    mode: *mode,
                    group: groups[p].clone(),
                },
                Node::Hardlink(first) => match t.get(first) {
                    Some(Node::File { content, mode, .. }) => N::File {
                        content: content.clone(),
                        mode: *mode,
                        group: groups[first].clone(),
                    },
                    other => panic!("model link {p} -> {first}: {other:?}"),
                },
                Node::Dir { mode, .. } => N::Dir { mode: *mode },
                Node::Symlink(s) => N::Symlink(s.clone()),
                Node::Device(k, a, b) => N::Device(*k, *a, *b),
            };
            (p.clone(), n)
        })
        .collect()
}

/// A layer tar with the model's entries.
fn tar_of(layer: &model::Layer) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    for e in layer {
        let (dir, name) = e.name.rsplit_once('/').unwrap_or(("", &e.name));
        if name == ".wh..wh..opq" {
            b.opaque(dir);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            b.whiteout(&if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            });
            continue;
        }
        match &e.body {
            Body::Node(Node::File { content, mode, .. }) => {
                b.file(&e.name, content, *mode);
            }
            Body::Node(Node::Dir { mode, .. }) => {
                b.dir(&e.name, *mode);
            }
            Body::Node(Node::Symlink(t)) => {
                b.symlink(&e.name, t);
            }
            Body::Node(Node::Device(k, ma, mi)) => {
                b.device(&e.name, *k == 'b', *ma, *mi, 0o600);
            }
            Body::Hardlink(t) | Body::Node(Node::Hardlink(t)) => {
                b.hardlink(&e.name, t);
            }
        }
    }
    b.finish()
}

fn load_layers(root: &Root, layers: &[Vec<u8>], name: &str) {
    let mut img = ImageBuilder::new();
    for (i, l) in layers.iter().enumerate() {
        let c = [Compression::Gzip, Compression::None, Compression::Zstd][i % 3];
        img.layer(l.clone(), c);
    }
    let path = root.file(&format!("{}.tar", name.replace([':', '/'], "_")));
    ImageBuilder::write_oci_tar(
        &[(&img, Some(name))],
        fs::File::create(&path).expect("create"),
    )
    .expect("write");
    root.ok(&["load", "-q", "-i", path.to_str().expect("path")]);
}

mod formats {
    use super::*;

    fn sample(n: u8) -> ImageBuilder {
        sample_with(n, Compression::Zstd)
    }

    fn sample_with(n: u8, second: Compression) -> ImageBuilder {
        let mut l1 = LayerBuilder::new();
        l1.dir("etc", 0o755)
            .file("etc/os", &[b'a', n], 0o644)
            .dir("bin", 0o755)
            .file("bin/tool", b"#!x", 0o755);
        let mut l2 = LayerBuilder::new();
        l2.whiteout("etc/os").file("etc/new", b"new", 0o600);
        let mut img = ImageBuilder::new();
        img.layer(l1.finish(), Compression::Gzip)
            .layer(l2.finish(), second)
            .config("Cmd", serde_json::json!(["/bin/tool"]));
        img
    }

    #[test]
    fn every_archive_format_loads_the_same_image() {
        if need_root() {
            return;
        }
        let r = Root::new();
        let (a, b) = (sample(1), sample(2));
        let oci = r.file("oci.tar");
        ImageBuilder::write_oci_tar(
            &[(&a, Some("one:1")), (&b, Some("docker.io/library/two:2"))],
            fs::File::create(&oci).unwrap(),
        )
        .unwrap();
        let docker = r.file("docker.tar");
        ImageBuilder::write_docker_tar(
            &[(&a, &["dock/one:d1", "dock/one:d2"]), (&b, &[])],
            fs::File::create(&docker).unwrap(),
        )
        .unwrap();
        let dir = r.file("layout");
        ImageBuilder::write_oci_dir(&[(&a, Some("dir:x"))], &dir).unwrap();
        // The whole archive compressed, as `docker save | gzip` gives.
        let gz = r.file("oci.tar.gz");
        let mut e = flate2::write::GzEncoder::new(
            fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(&fs::read(&oci).unwrap()).unwrap();
        e.finish().unwrap();

        let out = r.ok(&["load", "-i", oci.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: one:1\nLoaded image: two:2\n");
        let out = r.ok(&["load", "-i", docker.to_str().unwrap()]);
        assert_eq!(
            out,
            format!(
                "Loaded image: dock/one:d1\nLoaded image: dock/one:d2\nLoaded image ID: {}\n",
                b.id()
            )
        );
        assert_eq!(
            r.ok(&["load", "-i", dir.to_str().unwrap()]),
            "Loaded image: dir:x\n"
        );
        // stdin, compressed.
        let o = r
            .cmd(&["load"])
            .stdin(fs::File::open(&gz).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        // Every name points at the same two images (ids are config digests).
        let listed: Vec<Value> = r
            .ok(&["images", "--format", "json", "--no-trunc"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let by_name: BTreeMap<String, String> = listed
            .iter()
            .map(|v| {
                (
                    format!(
                        "{}:{}",
                        v["Repository"].as_str().unwrap(),
                        v["Tag"].as_str().unwrap()
                    ),
                    v["ID"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let (ia, ib) = (a.id().to_string(), b.id().to_string());
        let want: BTreeMap<String, String> = [
            ("one:1", &ia),
            ("two:2", &ib),
            ("dock/one:d1", &ia),
            ("dock/one:d2", &ia),
            ("dir:x", &ia),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        assert_eq!(by_name, want);
        // Shared layers are unpacked once: a's two layers, b's first (b's second
        // layer is the same content as a's).
        let layers = fs::read_dir(r.path().join("data/layers"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "tmp")
            .count();
        assert_eq!(layers, 3);

        // The table.
        let table = r.ok(&["images"]);
        let mut lines = table.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
        );
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3]
                    == ["dock/one", "d1", a.id().short()]),
            "{table}"
        );

        // inspect shows the OCI config.
        let v: Value = serde_json::from_str(&r.ok(&["image", "inspect", "one:1"])).unwrap();
        assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["/bin/tool"]));
        assert_eq!(v[0]["Id"], ia);
        assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

        // The merged tree of the image, through overlay: etc/os deleted, etc/new added.
        let snap = r.snapshot("c1", "one:1");
        let ov = snap.view(false).unwrap();
        let t = real_tree(ov.target());
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            ["bin", "bin/tool", "etc", "etc/new"]
        );
        drop(ov);
        r.store().snapshots().remove("c1").unwrap();
    }

    #[test]
    fn save_then_load_elsewhere_gives_the_same_image() {
        if need_root() {
            return;
        }
        let (r1, r2) = (Root::new(), Root::new());
        let img = sample(3);
        let src = r1.file("src.tar");
        ImageBuilder::write_oci_tar(&[(&img, Some("app:v1"))], fs::File::create(&src).unwrap())
            .unwrap();
        r1.ok(&["load", "-i", src.to_str().unwrap()]);
        r1.ok(&["tag", "app:v1", "example.com:5000/team/app:v2"]);
        let saved = r1.file("saved.tar");
        r1.ok(&[
            "save",
            "app:v1",
            "example.com:5000/team/app:v2",
            "-o",
            saved.to_str().unwrap(),
        ]);
        // Same bytes when saved again (mtime 0, fixed order).
        let again = r1.file("again.tar");
        r1.ok(&[
            "save",
            "app:v1",
            "example.com:5000/team/app:v2",
            "-o",
            again.to_str().unwrap(),
        ]);
        assert_eq!(fs::read(&saved).unwrap(), fs::read(&again).unwrap());
        let index: Value = {
            let mut a = tar::Archive::new(fs::File::open(&saved).unwrap());
            let mut idx = None;
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                if e.path().unwrap().to_str() == Some("index.json") {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                    idx = Some(serde_json::from_str(&s).unwrap());
                }
            }
            idx.unwrap()
        };
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            names,
            ["docker.io/library/app:v1", "example.com:5000/team/app:v2"]
        );
        let out = r2.ok(&["load", "-i", saved.to_str().unwrap()]);
        assert_eq!(
            out,
            "Loaded image: app:v1\nLoaded image: example.com:5000/team/app:v2\n"
        );
        assert_eq!(
            r1.ok(&["images", "-q", "--no-trunc"]),
            r2.ok(&["images", "-q", "--no-trunc"])
        );
        assert_eq!(
            r2.ok(&["images", "-q", "--no-trunc"]).trim(),
            img.id().to_string()
        );
    }

    /// skopeo (another implementation of the formats) reads what `berth save`
    /// writes, and writes layouts and docker archives that `berth load` reads.
    #[test]
    fn skopeo_and_berth_read_each_others_archives() {
        if need_root() {
            return;
        }
        if std::env::var_os("BERTH_IN_VM").is_some() {
            // The guest has busybox, not skopeo; this test runs on the host.
            eprintln!("skipped in the VM: no skopeo there");
            return;
        }
        let skopeo = |args: &[&str]| {
            let o = Command::new("skopeo")
                .args(args)
                .output()
                .expect("skopeo (run `cargo xtask setup`)");
            assert!(
                o.status.success(),
                "skopeo {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let (r1, r2) = (Root::new(), Root::new());
        // Docker's format has no zstd layers: skopeo refuses to convert those.
        let img = sample_with(4, Compression::Gzip);
        let src = r1.file("src.tar");
        ImageBuilder::write_oci_tar(&[(&img, Some("app:v1"))], fs::File::create(&src).unwrap())
            .unwrap();
        r1.ok(&["load", "-i", src.to_str().unwrap()]);
        let saved = r1.file("saved.tar");
        r1.ok(&["save", "app:v1", "-o", saved.to_str().unwrap()]);
        let info: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            &format!("oci-archive:{}:v1", saved.display()),
        ]))
        .unwrap();
        assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
        // skopeo copies (verifying every digest) into a layout and a docker archive.
        let layout = r1.file("skopeo-layout");
        skopeo(&[
            "copy",
            &format!("oci-archive:{}:v1", saved.display()),
            &format!("oci:{}:from:skopeo", layout.display()),
        ]);
        let docker = r1.file("skopeo-docker.tar");
        skopeo(&[
            "copy",
            &format!("oci-archive:{}:v1", saved.display()),
            &format!("docker-archive:{}:skopeo/docker:v2", docker.display()),
        ]);
        assert_eq!(
            r2.ok(&["load", "-i", layout.to_str().unwrap()]),
            "Loaded image: from:skopeo\n"
        );
        assert_eq!(
            r2.ok(&["load", "-i", docker.to_str().unwrap()]),
            "Loaded image: skopeo/docker:v2\n"
        );
        let ids: Vec<String> = r2
            .ok(&["images", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(ids, [img.id().to_string()], "same config, same image id");
        let snap = r2.snapshot("c", "skopeo/docker:v2");
        let ov = snap.view(false).unwrap();
        assert_eq!(
            real_tree(ov.target()).keys().collect::<Vec<_>>(),
            ["bin", "bin/tool", "etc", "etc/new"]
        );
        drop(ov);
        r2.store().snapshots().remove("c").unwrap();
    }

    /// Progress (bytes, rate, layers) on a terminal; nothing on stderr otherwise.
    #[test]
    fn load_shows_progress_only_on_a_terminal() {
        if need_root() {
            return;
        }
        if std::env::var_os("BERTH_IN_VM").is_some() {
            eprintln!("skipped in the VM: no script(1) there");
            return;
        }
        let r = Root::new();
        let img = sample(5);
        let src = r.file("src.tar");
        ImageBuilder::write_oci_tar(&[(&img, Some("app:v1"))], fs::File::create(&src).unwrap())
            .unwrap();
        let o = r.run(&["load", "-i", src.to_str().unwrap()]);
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "",
            "quiet when stderr is not a terminal"
        );
        // script(1) gives berth a pseudo-terminal.
        let line = format!(
            "{} --root {} load -i {}",
            env!("CARGO_BIN_EXE_berth"),
            r.path().join("data2").display(),
            src.display()
        );
        let o = Command::new("script")
            .args(["-qc", &line, "/dev/null"])
            .output()
            .expect("script (bsdutils)");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("Loading ") && out.contains("/s)") && out.contains("layers 2/2"),
            "{out}"
        );
        assert!(out.contains("Loaded image: app:v1"), "{out}");
    }

    #[test]
    fn import_makes_a_one_layer_image_of_a_rootfs_tar() {
        if need_root() {
            return;
        }
        let r = Root::new();
        let mut l = LayerBuilder::new();
        l.dir("./", 0o755)
            .dir("./etc", 0o755)
            .file("./etc/hostname", b"imported\n", 0o644)
            .symlink("./link", "etc/hostname");
        let tar = r.file("rootfs.tar.gz");
        fs::write(
            &tar,
            berth::image::build::compress(&l.finish(), Compression::Gzip),
        )
        .unwrap();
        let id = r.ok(&[
            "import",
            tar.to_str().unwrap(),
            "mine:rootfs",
            "-m",
            "from a test",
        ]);
        assert!(id.trim().starts_with("sha256:"), "{id}");
        let v: Value = serde_json::from_str(&r.ok(&["image", "inspect", "mine:rootfs"])).unwrap();
        assert_eq!(v[0]["Id"].as_str().unwrap(), id.trim());
        assert_eq!(v[0]["History"][0]["comment"], "from a test");
        let snap = r.snapshot("c", "mine:rootfs");
        let ov = snap.view(false).unwrap();
        assert_eq!(
            fs::read_to_string(ov.target().join("link")).unwrap(),
            "imported\n"
        );
        drop(ov);
        r.store().snapshots().remove("c").unwrap();
        // Not an image archive: one clear line.
        let err = r.fails(&["load", "-i", tar.to_str().unwrap()]);
        assert!(
            err.contains("not an image archive") && err.contains("berth import"),
            "{err}"
        );
    }
}

mod union {
    use super::*;
    use proptest::prelude::*;

    /// Candidate entries of a layer: (kind, path index, payload).
    #[derive(Debug, Clone)]
    enum Op {
        File(usize, u8, u32),
        Dir(usize, u32),
        Symlink(usize, usize),
        Whiteout(usize),
        Opaque(usize),
        Hardlink(usize, usize),
        Device(usize),
    }

    const PATHS: &[&str] = &[
        "a", "b", "a/x", "a/y", "b/x", "a/x/p", "a/x/q", "b/x/p", "c", "a/z",
    ];
    const TARGETS: &[&str] = &["a", "../b", "/etc", "a/x", "missing"];

    fn op() -> impl Strategy<Value = Op> {
        let p = 0..PATHS.len();
        let modes = prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o4755)];
        let dmodes = prop_oneof![Just(0o755u32), Just(0o700), Just(0o1777)];
        prop_oneof![
            4 => (p.clone(), any::<u8>(), modes).prop_map(|(i, c, m)| Op::File(i, c, m)),
            2 => (p.clone(), dmodes).prop_map(|(i, m)| Op::Dir(i, m)),
            1 => (p.clone(), 0..TARGETS.len()).prop_map(|(i, t)| Op::Symlink(i, t)),
            2 => p.clone().prop_map(Op::Whiteout),
            1 => p.clone().prop_map(Op::Opaque),
            1 => (p.clone(), p.clone()).prop_map(|(i, t)| Op::Hardlink(i, t)),
            1 => p.prop_map(Op::Device),
        ]
    }

    /// Turns candidate ops into a valid layer over `lower`: each op comes with
    /// explicit directory entries for its parents (with the mode the merged tree
    /// has, as Docker's differ writes them), and an op the model refuses, or that
    /// this layer cannot express as an unpacked directory (a hardlink to a lower
    /// layer's file), is dropped.
    fn layer_over(lower: &model::Tree, ops: &[Op]) -> model::Layer {
        let mut layer: model::Layer = Vec::new();
        let mut own_files: Vec<String> = Vec::new();
        for op in ops {
            let path = match op {
                Op::File(i, ..)
                | Op::Dir(i, _)
                | Op::Symlink(i, _)
                | Op::Whiteout(i)
                | Op::Opaque(i)
                | Op::Hardlink(i, _)
                | Op::Device(i) => PATHS[*i],
            };
            let mut group = Vec::new();
            let comps: Vec<&str> = path.split('/').collect();
            let parents = if matches!(op, Op::Opaque(_)) {
                comps.len()
            } else {
                comps.len() - 1
            };
            let current = model::apply(lower, &layer).unwrap_or_default();
            for k in 1..=parents {
                let d = comps[..k].join("/");
                let mode = match current.get(&d) {
                    Some(Node::Dir { mode, .. }) => *mode,
                    _ => 0o755,
                };
                group.push(Entry {
                    name: d,
                    body: Body::Node(Node::dir(mode)),
                });
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let join = |n: String| {
                if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                }
            };
            match op {
                Op::File(_, c, m) => group.push(Entry {
                    name: path.into(),
                    body: Body::Node(Node::file(vec![*c; (*c % 5) as usize], *m)),
                }),
                Op::Dir(_, m) => group.push(Entry {
                    name: path.into(),
                    body: Body::Node(Node::dir(*m)),
                }),
                Op::Symlink(_, t) => group.push(Entry {
                    name: path.into(),
                    body: Body::Node(Node::Symlink(TARGETS[*t].into())),
                }),
                Op::Whiteout(_) => group.push(Entry {
                    name: join(format!(".wh.{name}")),
                    body: Body::Node(Node::dir(0)),
                }),
                Op::Opaque(_) => group.push(Entry {
                    name: format!("{path}/.wh..wh..opq"),
                    body: Body::Node(Node::dir(0)),
                }),
                Op::Hardlink(_, t) => {
                    let target = PATHS[*t];
                    if !own_files.iter().any(|f| f == target) {
                        continue;
                    }
                    group.push(Entry {
                        name: path.into(),
                        body: Body::Hardlink(target.into()),
                    });
                }
                Op::Device(_) => group.push(Entry {
                    name: path.into(),
                    body: Body::Node(Node::Device('c', 1, 3)),
                }),
            }
            let mut trial = layer.clone();
            trial.extend(group.iter().cloned());
            if model::apply(lower, &trial).is_ok() {
                if matches!(op, Op::File(..)) {
                    own_files.push(path.to_string());
                }
                // Names this group replaced are no longer files of this layer.
                own_files.retain(|f| f == path || !model::is_under(f, path));
                layer = trial;
            }
        }
        layer
    }

    proptest! {
        // Under the VM's emulated CPU a case costs ~40 times more: fewer there.
        #![proptest_config(ProptestConfig {
            cases: if std::env::var_os("BERTH_IN_VM").is_some() { 8 } else { 64 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Load random layer stacks, mount them with overlay: the kernel's merged
        /// tree is the model's.
        #[test]
        fn overlay_of_loaded_layers_is_the_models_merge(stack in proptest::collection::vec(proptest::collection::vec(op(), 1..10), 1..5)) {
            if need_root() {
                return Ok(());
            }
            let r = Root::new();
            let mut tree = model::Tree::new();
            let mut layers = Vec::new();
            let mut tars = Vec::new();
            for ops in &stack {
                let l = layer_over(&tree, ops);
                tree = model::apply(&tree, &l).expect("valid by construction");
                tars.push(tar_of(&l));
                layers.push(l);
            }
            load_layers(&r, &tars, "rand:1");
            let snap = r.snapshot("c", "rand:1");
            let ov = snap.view(false).expect("view");
            let real = real_tree(ov.target());
            drop(ov);
            r.store().snapshots().remove("c").expect("remove");
            prop_assert_eq!(real, model_tree(&tree), "layers: {:#?}", layers);
        }
    }
}

mod hostile {
    use super::*;
    use tar::EntryType as T;

    /// (what, the entries, the entry the error must name)
    fn cases(outside: &str) -> Vec<(&'static str, LayerBuilder, String)> {
        let o = outside.trim_start_matches('/').to_string();
        let mut v = Vec::new();
        let mut l = LayerBuilder::new();
        l.raw(T::Regular, format!("/{o}/abs").as_bytes(), b"", b"x");
        v.push(("absolute name", l, format!("/{o}/abs")));
        let mut l = LayerBuilder::new();
        l.raw(
            T::Regular,
            b"../../../../../../../../tmp/escape-dotdot",
            b"",
            b"x",
        );
        v.push((
            "`..` components",
            l,
            "../../../../../../../../tmp/escape-dotdot".into(),
        ));
        let mut l = LayerBuilder::new();
        l.symlink("link", &format!("/{o}"))
            .raw(T::Regular, b"link/through-symlink", b"", b"x");
        v.push((
            "a file through an absolute symlink",
            l,
            "link/through-symlink".into(),
        ));
        let mut l = LayerBuilder::new();
        l.symlink("up", "../../../../../../../..").raw(
            T::Regular,
            format!("up/{o}/rel").as_bytes(),
            b"",
            b"x",
        );
        v.push((
            "a file through a relative symlink",
            l,
            format!("up/{o}/rel"),
        ));
        let mut l = LayerBuilder::new();
        l.dir("d", 0o755)
            .file("d/ok", b"fine", 0o644)
            .symlink("d", &format!("/{o}"))
            .raw(T::Regular, b"d/after-swap", b"", b"x");
        v.push((
            "a directory replaced by a link, then written through",
            l,
            "d/after-swap".into(),
        ));
        let mut l = LayerBuilder::new();
        l.raw(T::Link, b"hard", b"../../../../../../../../etc/passwd", b"");
        v.push(("a hardlink to outside by `..`", l, "hard".into()));
        let mut l = LayerBuilder::new();
        l.raw(T::Link, b"hard", b"/etc/passwd", b"");
        v.push(("a hardlink to an absolute path", l, "hard".into()));
        let mut l = LayerBuilder::new();
        l.symlink("etc", "/etc")
            .raw(T::Link, b"hard", b"etc/passwd", b"");
        v.push(("a hardlink through a symlink", l, "hard".into()));
        let mut l = LayerBuilder::new();
        l.symlink("x", &format!("/{o}"))
            .raw(T::Directory, b"x/", b"", b"")
            .raw(T::Regular, b"x/y", b"", b"x");
        // The directory entry replaces the link in the layer: x/y lands inside. Not hostile;
        // the outside stays untouched all the same (checked below).
        let _ = l;
        let mut l = LayerBuilder::new();
        l.file_xattrs("f", b"x", 0o644, &[("trusted.overlay.redirect", b"/etc")]);
        v.push(("an overlay xattr", l, "f".into()));
        v
    }

    #[test]
    fn hostile_archives_are_refused_and_touch_nothing() {
        if need_root() {
            return;
        }
        let r = Root::new();
        // Something to load first, so "unchanged" means more than "empty".
        load_layers(
            &r,
            &[{
                let mut l = LayerBuilder::new();
                l.file("base", b"base", 0o644);
                l.finish()
            }],
            "base:1",
        );
        let outside = r.file("outside");
        fs::create_dir(&outside).unwrap();
        let before = r.listing();
        for (what, layer, entry) in cases(outside.to_str().unwrap()) {
            let mut img = ImageBuilder::new();
            img.layer(layer.finish(), Compression::None);
            for (i, docker) in [false, true].into_iter().enumerate() {
                let path = r.file(&format!("hostile-{i}.tar"));
                let f = fs::File::create(&path).unwrap();
                if docker {
                    ImageBuilder::write_docker_tar(&[(&img, &["evil:1"])], f).unwrap();
                } else {
                    ImageBuilder::write_oci_tar(&[(&img, Some("evil:1"))], f).unwrap();
                }
                let err = r.fails(&["load", "-i", path.to_str().unwrap()]);
                assert!(
                    err.contains(&format!("archive entry {entry:?}")),
                    "{what}: error does not name {entry:?}: {err}"
                );
                assert_eq!(
                    fs::read_dir(&outside).unwrap().count(),
                    0,
                    "{what}: wrote outside"
                );
                assert!(
                    !Path::new("/tmp/escape-dotdot").exists(),
                    "{what}: wrote /tmp/escape-dotdot"
                );
                assert_eq!(r.listing(), before, "{what}: the store changed");
            }
        }
        assert!(r.ok(&["images", "-q"]).lines().count() == 1);
    }

    #[test]
    fn a_blob_with_the_wrong_digest_is_refused_and_not_kept() {
        if need_root() {
            return;
        }
        let r = Root::new();
        let mut img = ImageBuilder::new();
        img.layer(
            {
                let mut l = LayerBuilder::new();
                l.file("f", b"the real content", 0o644);
                l.finish()
            },
            Compression::None,
        );
        let dir = r.file("layout");
        ImageBuilder::write_oci_dir(&[(&img, Some("bad:1"))], &dir).unwrap();
        // Replace the layer blob's content, keeping its name.
        let blobs = dir.join("blobs/sha256");
        let manifest_digest = {
            let index: Value =
                serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
            index["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        };
        let manifest: Value =
            serde_json::from_slice(&fs::read(blobs.join(&manifest_digest)).unwrap()).unwrap();
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let tampered = {
            let mut l = LayerBuilder::new();
            l.file("f", b"something else!!", 0o644);
            l.finish()
        };
        fs::write(blobs.join(&layer), &tampered).unwrap();
        r.ok(&["images"]);
        let before = r.listing();
        let err = r.fails(&["load", "-i", dir.to_str().unwrap()]);
        assert!(
            err.contains(&format!("blob sha256:{layer}"))
                && err.contains(&Digest::of(&tampered).to_string()),
            "{err}"
        );
        assert_eq!(r.listing(), before);
        assert!(
            !r.path()
                .join("data/image/blobs/sha256")
                .join(Digest::of(&tampered).hex())
                .exists()
        );
        // As a tar, the same.
        let t = r.file("layout.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&t)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        r.fails(&["load", "-i", t.to_str().unwrap()]);
        assert_eq!(r.listing(), before);
    }

    #[test]
    fn a_killed_load_leaves_the_store_consistent() {
        if need_root() {
            return;
        }
        let r = Root::new();
        load_layers(
            &r,
            &[{
                let mut l = LayerBuilder::new();
                l.file("base", b"base", 0o644);
                l.finish()
            }],
            "base:1",
        );
        let before = r.listing();
        // An 8 MiB layer, fed through a pipe that stops half way (the load waits
        // for the rest when it is killed).
        let big = {
            let mut l = LayerBuilder::new();
            let data: Vec<u8> = (0..8u32 << 20)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            l.file("big", &data, 0o644);
            l.finish()
        };
        let mut img = ImageBuilder::new();
        img.layer(big, Compression::None);
        let mut archive = Vec::new();
        ImageBuilder::write_oci_tar(&[(&img, Some("big:1"))], &mut archive).unwrap();
        let mut child = r
            .cmd(&["load"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&archive[..archive.len() / 2]).unwrap();
        // Wait until the half-written blob is on disk, then kill -9.
        let tmp = r.path().join("data/image/tmp");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0 {
            assert!(
                std::time::Instant::now() < until,
                "no temporary blob appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        // The database is as it was; what the dead load left is only in tmp/.
        assert_eq!(
            fs::read_to_string(r.path().join("data/image/db.json")).unwrap(),
            before.last().unwrap().clone()
        );
        assert_eq!(r.ok(&["images", "-q"]).lines().count(), 1);
        // The next load cleans up and succeeds.
        let path = r.file("big.tar");
        fs::write(&path, &archive).unwrap();
        assert_eq!(
            r.ok(&["load", "-i", path.to_str().unwrap()]),
            "Loaded image: big:1\n"
        );
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(r.path().join("data/layers/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(r.ok(&["images", "-q"]).lines().count(), 2);
    }
}

mod lifecycle {
    use super::*;

    fn two_layer_image(r: &Root, name: &str) {
        let mut l1 = LayerBuilder::new();
        l1.dir("etc", 0o755)
            .file("etc/keep", b"keep", 0o644)
            .file("etc/gone", b"gone", 0o644)
            .file("etc/change", b"old", 0o644)
            .dir("data", 0o755)
            .file("data/one", b"1", 0o644)
            .file("data/two", b"2", 0o644)
            .dir("tree", 0o755)
            .file("tree/leaf", b"leaf", 0o644)
            .file("linked", b"shared", 0o644)
            .hardlink("also-linked", "linked");
        let mut l2 = LayerBuilder::new();
        l2.dir("bin", 0o755)
            .file_owned("bin/tool", b"#!tool", 0o4755, 1000, 1000)
            .symlink("bin/alias", "tool")
            .fifo("bin/pipe", 0o600)
            .device("bin/null", false, 1, 3, 0o666);
        load_layers(r, &[l1.finish(), l2.finish()], name);
    }

    /// A container's changes, made through the overlay mount as a process would.
    fn change(root: &Path) {
        fs::remove_file(root.join("etc/gone")).unwrap();
        fs::write(root.join("etc/change"), b"new").unwrap();
        fs::write(root.join("etc/added"), b"added").unwrap();
        fs::remove_dir_all(root.join("data")).unwrap();
        fs::create_dir(root.join("data")).unwrap();
        fs::write(root.join("data/three"), b"3").unwrap();
        fs::remove_dir_all(root.join("tree")).unwrap();
        fs::write(root.join("tree"), b"now a file").unwrap();
        fs::set_permissions(root.join("etc/keep"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/keep", root.join("newlink")).unwrap();
        fs::hard_link(root.join("etc/added"), root.join("etc/added-too")).unwrap();
        nix::unistd::mkfifo(
            &root.join("etc/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
    }

    #[test]
    fn diff_commit_export_round_trip() {
        if need_root() {
            return;
        }
        let (r, elsewhere) = (Root::new(), Root::new());
        two_layer_image(&r, "base:1");
        let snap = r.snapshot("c1", "base:1");
        let ov = snap.mount().unwrap();
        change(ov.target());
        let merged = real_tree(ov.target());
        ov.unmount().unwrap();

        let diff: Vec<String> = berth::layers::changes::changes(&snap)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            diff,
            [
                "C /data",
                "D /data/one",
                "A /data/three",
                "D /data/two",
                "C /etc",
                "A /etc/added",
                "A /etc/added-too",
                "C /etc/change",
                "A /etc/fifo",
                "D /etc/gone",
                "C /etc/keep",
                "A /newlink",
                "C /tree",
            ]
        );

        // Commit, save, load on another root: the new image's tree is the container's.
        let store = r.store();
        let opts = berth::image::commit::CommitOptions {
            comment: Some("a test commit".into()),
            ..Default::default()
        };
        let reference = berth::image::reference::Reference::parse("base:committed").unwrap();
        let new = berth::image::commit::commit(&store, &snap, Some(&reference), &opts).unwrap();
        let v: Value =
            serde_json::from_str(&r.ok(&["image", "inspect", "base:committed"])).unwrap();
        assert_eq!(v[0]["Id"], new.id.to_string());
        assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 3);
        assert_eq!(
            v[0]["History"].as_array().unwrap().last().unwrap()["comment"],
            "a test commit"
        );
        let saved = r.file("committed.tar");
        r.ok(&["save", "base:committed", "-o", saved.to_str().unwrap()]);
        assert_eq!(
            elsewhere.ok(&["load", "-i", saved.to_str().unwrap()]),
            "Loaded image: base:committed\n"
        );
        let snap2 = elsewhere.snapshot("c2", "base:committed");
        let ov2 = snap2.mount().unwrap();
        let reloaded = real_tree(ov2.target());
        // Ownership and set-id bits survive too.
        let tool = fs::symlink_metadata(ov2.target().join("bin/tool")).unwrap();
        assert_eq!(
            (tool.uid(), tool.gid(), tool.mode() & 0o7777),
            (1000, 1000, 0o4755)
        );
        ov2.unmount().unwrap();
        assert_eq!(reloaded, merged);

        // export: the merged tree as a plain tar, unpacked again, is the same tree.
        let out = r.file("export.tar");
        let f = fs::File::create(&out).unwrap();
        berth::layers::changes::export(&snap, f).unwrap();
        let unpacked = r.file("exported");
        fs::create_dir(&unpacked).unwrap();
        let st = Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg("-xpf")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(real_tree(&unpacked), merged);

        r.store().snapshots().remove("c1").unwrap();
        elsewhere.store().snapshots().remove("c2").unwrap();
    }

    #[test]
    fn rmi_and_prune_follow_dockers_rules() {
        if need_root() {
            return;
        }
        let r = Root::new();
        two_layer_image(&r, "app:1");
        r.ok(&["tag", "app:1", "app:2"]);
        let id = r.ok(&["images", "-q"]).trim().to_string();
        // By id with two names: refused.
        let err = r.fails(&["rmi", &id]);
        assert!(err.contains("referenced in multiple repositories"), "{err}");
        // By name: untag only.
        assert_eq!(r.ok(&["rmi", "app:2"]), "Untagged: app:2\n");
        // In use by a container: refused, then forced (untagged, kept for the container).
        let _snap = r.snapshot("user", "app:1");
        let err = r.fails(&["rmi", "app:1"]);
        assert!(
            err.contains("container user is using its referenced image"),
            "{err}"
        );
        let out = r.ok(&["rmi", "-f", "app:1"]);
        assert_eq!(out, "Untagged: app:1\n");
        let listed = r.ok(&["images"]);
        assert!(
            listed.lines().nth(1).unwrap().starts_with("<none>"),
            "{listed}"
        );
        // Prune keeps it while the container exists…
        assert_eq!(
            r.ok(&["image", "prune", "-f"]),
            "Total reclaimed space: 0B\n"
        );
        let layers = || fs::read_dir(r.path().join("data/layers")).unwrap().count() - 1;
        assert_eq!(layers(), 2);
        // …and removes it, blobs and layers, once the container is gone.
        r.store().snapshots().remove("user").unwrap();
        let out = r.ok(&["image", "prune", "-f"]);
        assert!(
            out.starts_with("Deleted Images:\ndeleted: sha256:"),
            "{out}"
        );
        assert_eq!(layers(), 0);
        assert_eq!(
            fs::read_dir(r.path().join("data/image/blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        let err = r.fails(&["rmi", "app:1"]);
        assert!(err.contains("no such image: app:1"), "{err}");
        let err = r.fails(&["tag", "nothing", "x:1"]);
        assert!(err.contains("no such image: nothing"), "{err}");
        let err = r.fails(&["tag", "app", "Bad:Name"]);
        assert!(err.contains("invalid reference format"), "{err}");
    }

    /// The same layer twice in one image (one directory on disk): older kernels
    /// refuse a repeated lowerdir, and the topmost copy decides.
    #[test]
    fn the_same_layer_twice_in_one_image() {
        if need_root() {
            return;
        }
        let r = Root::new();
        let a = {
            let mut l = LayerBuilder::new();
            l.dir("d", 0o755).file("d/a", b"a", 0o644);
            l.finish()
        };
        let b = {
            let mut l = LayerBuilder::new();
            l.dir("d", 0o755).whiteout("d/a").file("d/b", b"b", 0o644);
            l.finish()
        };
        load_layers(&r, &[a.clone(), b, a], "twice:1");
        let snap = r.snapshot("c", "twice:1");
        let ov = snap.mount().unwrap();
        assert_eq!(
            real_tree(ov.target()).keys().collect::<Vec<_>>(),
            ["d", "d/a", "d/b"]
        );
        ov.unmount().unwrap();
        r.store().snapshots().remove("c").unwrap();
    }

    #[test]
    fn stacks_deeper_than_one_mount_option_still_mount() {
        if need_root() {
            return;
        }
        let r = Root::new();
        // 120 layers need /proc/self/fd names, 300 the links and the forked
        // mounter, 600 a grouped mount (more than overlay's 500 lowers in one
        // mount). Each layer adds a file and removes the previous layer's, and the
        // last one removes a directory from the first.
        for n in [120usize, 300, 600] {
            let mut layers = Vec::new();
            for i in 0..n {
                let mut l = LayerBuilder::new();
                if i == 0 {
                    l.dir("first", 0o755).file("first/f", b"f", 0o644);
                }
                l.file(&format!("l{i}"), format!("{i}").as_bytes(), 0o644);
                if i > 0 && i % 2 == 0 {
                    l.whiteout(&format!("l{}", i - 1));
                }
                if i == n - 1 {
                    l.whiteout("first");
                }
                layers.push(l.finish());
            }
            let name = format!("deep:{n}");
            load_layers(&r, &layers, &name);
            let snap = r.snapshot(&format!("c{n}"), &name);
            let ov = snap.mount().unwrap();
            let t = real_tree(ov.target());
            let want: Vec<String> = (0..n)
                .filter(|i| i % 2 == 0 || *i == n - 1)
                .map(|i| format!("l{i}"))
                .collect();
            let mut got: Vec<String> = t.keys().cloned().collect();
            got.sort_by_key(|k| k[1..].parse::<usize>().unwrap_or(usize::MAX));
            assert_eq!(got, want, "{n} layers");
            // A write goes to the container's upper directory.
            fs::write(ov.target().join("new"), b"x").unwrap();
            ov.unmount().unwrap();
            assert!(snap.upper().join("new").exists());
            r.store().snapshots().remove(&format!("c{n}")).unwrap();
            assert!(!snap.dir.exists());
        }
    }
}
