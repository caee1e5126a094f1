//! berth's layer unpacking as a whole process, for `cargo xtask compare` to
//! time beside `tar -x` of the same layers.
//!
//! ```text
//! unpack make DIR                 four 50 MB layer tars in DIR (layer0.tar …):
//!                                 40 files of 1 MB and 2,500 of 4 KB each
//! unpack STORE LAYER.tar…         unpack them into a layer store, in parallel
//!                                 (as `berth load` does)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use berth::image::build::LayerBuilder;
use berth::layers::store::LayerStore;

fn main() {
    if let Err(e) = run() {
        eprintln!("unpack: {e:#}");
        std::process::exit(1);
    }
}

fn make(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for l in 0..4u8 {
        let mut b = LayerBuilder::new();
        let mb: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> (l + 7)) as u8)
            .collect();
        for d in 0..10 {
            b.dir(&format!("d{l}-{d}"), 0o755);
            for f in 0..4 {
                b.file(&format!("d{l}-{d}/big{f}"), &mb, 0o644);
            }
            for f in 0..250 {
                b.file(&format!("d{l}-{d}/small{f}"), &mb[..4096], 0o644);
            }
        }
        let p = dir.join(format!("layer{l}.tar"));
        fs::write(&p, b.finish()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn run() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    match args.as_slice() {
        [m, dir] if m.as_os_str() == "make" => make(dir),
        [store, layers @ ..] if !layers.is_empty() => {
            let store = LayerStore::open(store)?;
            std::thread::scope(|s| {
                let jobs: Vec<_> = layers
                    .iter()
                    .map(|p| {
                        let store = &store;
                        s.spawn(move || -> Result<()> {
                            let f = fs::File::open(p)
                                .with_context(|| format!("opening {}", p.display()))?;
                            store
                                .unpack(None, f)
                                .with_context(|| format!("unpacking {}", p.display()))?;
                            Ok(())
                        })
                    })
                    .collect();
                jobs.into_iter()
                    .try_for_each(|j| j.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?)
            })
        }
        _ => bail!("usage: unpack make DIR | unpack STORE LAYER.tar…"),
    }
}
