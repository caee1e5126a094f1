//! Layers: overlay mount + unmount of 1, 5, 20 and 100 layers next to a bare
//! mount(2) of tmpfs (the floor: the cheapest mount there is), and unpacking a
//! 200 MB four-layer image next to GNU `tar -x` of the same uncompressed layers,
//! in the same run. Needs root.
//!
//! Both unpackers write into a tmpfs: on these machines' shared disk, writeback of
//! the previous iteration's 200 MB decides the time otherwise, and that is not
//! what is being compared.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::digest::Digest;
use berth::image::build::LayerBuilder;
use berth::layers::overlay::{Upper, mount_overlay};
use berth::layers::store::LayerStore;
use criterion::{Criterion, criterion_group, criterion_main};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn overlay_setup(c: &mut Criterion) {
    if !is_root() {
        eprintln!("overlay_setup: skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("overlay_setup");
    g.sample_size(50);
    let target = dir.path().join("target");
    fs::create_dir(&target).expect("mkdir");
    g.bench_function("tmpfs mount+umount (floor)", |b| {
        b.iter(|| {
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount tmpfs");
            umount2(&target, MntFlags::empty()).expect("umount");
        })
    });
    // Layer directories named as the store names them (64 hex digits).
    let layers_dir = dir.path().join("layers");
    let all: Vec<PathBuf> = (0..100)
        .map(|i| {
            let p = layers_dir.join(Digest::of(format!("layer {i}").as_bytes()).hex());
            fs::create_dir_all(p.join("etc")).expect("mkdir");
            fs::write(p.join(format!("etc/file{i}")), b"x").expect("write");
            p
        })
        .collect();
    for n in [1usize, 5, 20, 100] {
        let (upper, work, scratch) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("scratch"),
        );
        for d in [&upper, &work, &scratch] {
            fs::create_dir_all(d).expect("mkdir");
        }
        let lowers: Vec<PathBuf> = all[..n].iter().rev().cloned().collect();
        g.bench_function(format!("overlay mount+umount {n} layers"), |b| {
            b.iter(|| {
                let ov = mount_overlay(
                    &lowers,
                    Some(Upper {
                        upper: &upper,
                        work: &work,
                    }),
                    &target,
                    &scratch,
                )
                .expect("mount overlay");
                ov.unmount().expect("unmount");
            })
        });
    }
    // The kernel's own cost: one mount(2) of the same 5-layer overlay with the
    // same options, made directly (what berth adds is the difference).
    {
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        let lowers: Vec<String> = all[..5]
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
            lowers.join(":"),
            upper.display(),
            work.display()
        );
        g.bench_function("raw overlay mount(2)+umount 5 layers", |b| {
            b.iter(|| {
                mount(
                    Some("overlay"),
                    &target,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(opts.as_str()),
                )
                .expect("mount");
                umount2(&target, MntFlags::empty()).expect("umount");
            })
        });
    }
    // Without an upper directory overlay skips its checks of the work directory
    // (whiteout by rename, O_TMPFILE, xattrs): most of the fixed cost above.
    let lowers: Vec<PathBuf> = all[..5].iter().rev().cloned().collect();
    let scratch = dir.path().join("scratch");
    g.bench_function("overlay mount+umount 5 layers, read-only", |b| {
        b.iter(|| {
            let ov = mount_overlay(&lowers, None, &target, &scratch).expect("mount overlay");
            ov.unmount().expect("unmount");
        })
    });
    g.finish();
}

/// Four layers of 50 MB: 40 files of 1 MB and 2,500 of 4 KB each, in directories.
fn big_layers(dir: &Path) -> Vec<(PathBuf, Digest)> {
    (0..4u8)
        .map(|l| {
            let mut b = LayerBuilder::new();
            let mb: Vec<u8> = (0..1u32 << 20)
                .map(|i| (i.wrapping_mul(2654435761) >> (l + 7)) as u8)
                .collect();
            let small: Vec<u8> = mb[..4096].to_vec();
            for d in 0..10 {
                b.dir(&format!("d{l}-{d}"), 0o755);
                for f in 0..4 {
                    b.file(&format!("d{l}-{d}/big{f}"), &mb, 0o644);
                }
                for f in 0..250 {
                    b.file(&format!("d{l}-{d}/small{f}"), &small, 0o644);
                }
            }
            let tar = b.finish();
            let p = dir.join(format!("layer{l}.tar"));
            fs::write(&p, &tar).expect("write layer");
            (p, Digest::of(&tar))
        })
        .collect()
}

fn timed(iters: u64, mut once: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| once()).sum()
}

fn unpack(c: &mut Criterion) {
    if !is_root() {
        eprintln!("unpack: skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = big_layers(dir.path());
    let out_fs = dir.path().join("out");
    fs::create_dir(&out_fs).expect("mkdir");
    mount(
        Some("tmpfs"),
        &out_fs,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=2g"),
    )
    .expect("mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(out_fs.clone());
    let total: u64 = layers
        .iter()
        .map(|(p, _)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut g = c.benchmark_group("unpack");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Bytes(total));
    let store_dir = out_fs.join("store");
    let store = LayerStore::open(&store_dir).expect("store");
    let clear = |store: &LayerStore| {
        for (_, d) in &layers {
            store.remove(d).expect("remove");
        }
    };
    g.bench_function("berth unpack 4 layers, parallel", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for (p, d) in &layers {
                        let store = &store;
                        s.spawn(move || {
                            store
                                .unpack(Some(d), fs::File::open(p).expect("open"))
                                .expect("unpack")
                        });
                    }
                });
                let t = start.elapsed();
                clear(&store);
                t
            })
        })
    });
    g.bench_function("berth unpack 4 layers, one after another", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let start = Instant::now();
                for (p, d) in &layers {
                    store
                        .unpack(Some(d), fs::File::open(p).expect("open"))
                        .expect("unpack");
                }
                let t = start.elapsed();
                clear(&store);
                t
            })
        })
    });
    let out = out_fs.join("tar-x");
    g.bench_function("tar -x 4 layers, one after another", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let dirs: Vec<PathBuf> =
                    (0..layers.len()).map(|i| out.join(i.to_string())).collect();
                for d in &dirs {
                    fs::create_dir_all(d).expect("mkdir");
                }
                let start = Instant::now();
                for ((p, _), d) in layers.iter().zip(&dirs) {
                    let st = Command::new("tar")
                        .arg("-xf")
                        .arg(p)
                        .arg("-C")
                        .arg(d)
                        .status()
                        .expect("tar");
                    assert!(st.success());
                }
                let t = start.elapsed();
                fs::remove_dir_all(&out).expect("clean");
                t
            })
        })
    });
    g.finish();
}

/// `berth commit` of a container whose upper layer holds 10,000 new files (in
/// 100 directories, 1 KiB each) on a one-layer image: the diff walk, the
/// layer's tar, its digest, storing and unpacking it, the image record. Each
/// iteration adds one file first, so that every commit makes a new layer.
fn commit_10k(c: &mut Criterion) {
    use berth::image::build::ImageBuilder;
    use berth::image::commit::{CommitOptions, commit};
    use berth::image::load::{Input, load};
    use berth::image::progress::Progress;
    use berth::image::store::ImageStore;
    use berth::layers::store::Compression;
    if !is_root() {
        eprintln!("commit: skipped: needs root");
        return;
    }
    // A mount namespace of the benchmark's own: the container's overlay goes
    // with it, whatever happens.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("private mounts");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&dir.path().join("root")).expect("image store");
    let mut base = LayerBuilder::new();
    base.dir("etc", 0o755)
        .file("etc/hostname", b"bench\n", 0o644);
    let mut img = ImageBuilder::new();
    img.layer(base.finish(), Compression::None);
    let archive = dir.path().join("image.tar");
    let f = fs::File::create(&archive).expect("archive");
    ImageBuilder::write_oci_tar(&[(&img, Some("bench:base"))], f).expect("write image");
    let loaded = load(&store, &Input::Path(archive), &Progress::hidden()).expect("load");
    let snap = store
        .create_snapshot("c", &loaded[0].id.to_string())
        .expect("snapshot");
    let mounted = snap.mount().expect("mount the container's root");
    let root = snap.rootfs();
    let kib = vec![b'x'; 1024];
    for d in 0..100 {
        let dd = root.join(format!("data/d{d}"));
        fs::create_dir_all(&dd).expect("mkdir");
        for i in 0..100 {
            fs::write(dd.join(format!("f{i}")), &kib).expect("write");
        }
    }
    let mut g = c.benchmark_group("commit");
    g.sample_size(10);
    let mut n = 0u64;
    g.bench_function("10k new files (10 MiB)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // One more file each time: every commit makes a new layer, as
                // a real one does (a layer already stored is a shorter path).
                n += 1;
                fs::write(root.join(format!("data/n{n}")), b"n").expect("write");
                let start = Instant::now();
                commit(&store, &snap, None, &CommitOptions::default()).expect("commit");
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    mounted.unmount().expect("unmount");
    store
        .snapshots()
        .remove(&snap.id)
        .expect("remove the container's layer");
}

criterion_group!(benches, overlay_setup, unpack, commit_10k);
criterion_main!(benches);
