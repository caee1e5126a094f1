//! Writes `busybox:latest`, built from a static busybox, as an OCI layout tar.
//!
//! `cargo run -p berth --example busybox-image -- OUT.tar [BUSYBOX]` (BUSYBOX
//! defaults to /bin/busybox, Debian's busybox-static). `cargo xtask image` and
//! `cargo xtask compare` use it, so the xtask itself does not link berth (and
//! libseccomp): it must build on a machine where `cargo xtask setup` has not
//! installed anything yet.

use std::path::PathBuf;
use std::process::ExitCode;

use berth::image::build::{ImageBuilder, busybox};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: busybox-image OUT.tar [BUSYBOX]");
        return ExitCode::from(2);
    };
    let bin = args
        .next()
        .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from);
    let img = match busybox(&bin) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "busybox-image: building the image from {}: {e}",
                bin.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let written = std::fs::File::create(&out)
        .and_then(|f| ImageBuilder::write_oci_tar(&[(&img, Some("busybox:latest"))], f));
    if let Err(e) = written {
        eprintln!("busybox-image: writing {}: {e}", out.display());
        let _ = std::fs::remove_file(&out);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
