//! Driving the `berth` binary as a person would, with private roots.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth::image::build::ImageBuilder;

/// A `berth` with its own data and state roots; every container is removed
/// and every mount under them undone on drop.
pub struct Berth {
    pub dir: tempfile::TempDir,
    /// The default network's subnet, when the default network is `bridge`;
    /// None: `none` (tests that do not need a bridge leave host networking alone).
    pub bridge_subnet: Option<String>,
}

impl Berth {
    /// A data root with busybox:latest loaded; containers default to `--network none`.
    pub fn new() -> Berth {
        Berth::with_default_network(None)
    }

    /// As [`Berth::new`], with the default network `bridge` on `subnet`.
    pub fn with_bridge(subnet: &str) -> Berth {
        Berth::with_default_network(Some(subnet.to_string()))
    }

    fn with_default_network(bridge_subnet: Option<String>) -> Berth {
        let b = Berth {
            dir: tempfile::Builder::new()
                .prefix("berth-eng")
                .tempdir()
                .expect("tempdir"),
            bridge_subnet,
        };
        let img = berth::image::build::busybox(Path::new("/bin/busybox")).expect("busybox image");
        let tar = b.dir.path().join("busybox.tar");
        ImageBuilder::write_oci_tar(
            &[(&img, Some("busybox:latest"))],
            fs::File::create(&tar).expect("create"),
        )
        .expect("write");
        b.ok(&["load", "-q", "-i", tar.to_str().expect("path")]);
        b
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root")
            .arg(self.dir.path().join("data"))
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .args(args)
            .stdin(Stdio::null());
        match &self.bridge_subnet {
            Some(s) => c
                .env("BERTH_BRIDGE_SUBNET", s)
                .env_remove("BERTH_DEFAULT_NETWORK"),
            None => c.env("BERTH_DEFAULT_NETWORK", "none"),
        };
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run berth")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `run --rm ARGS busybox true` is refused: exit 125 and one line of error
    /// that contains `want`.
    pub fn refuses_run(&self, args: &[&str], want: &str) {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend(["busybox", "true"]);
        let o = self.run(&full);
        assert_eq!(o.status.code(), Some(125), "{full:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{full:?}: {err}"
        );
    }

    pub fn mounts(&self) -> Vec<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|mp| Path::new(mp).starts_with(self.dir.path()))
            .map(String::from)
            .collect()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.run(&["rm", "-f", id]);
        }
        // Every network goes, so the bridges, the nftables table and
        // ip_forward are as they were.
        let nets = self.run(&["network", "ls", "--format", "{{.Name}}"]);
        for n in String::from_utf8_lossy(&nets.stdout).lines() {
            let _ = self.run(&["network", "rm", n]);
        }
        for mp in self.mounts().into_iter().rev() {
            let _ = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Waits for `berth ps` (running only) to list `name`, or not.
pub fn until_listed(b: &Berth, name: &str, listed: bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while b
        .ok(&["ps"])
        .lines()
        .any(|l| l.ends_with(&format!(" {name}")))
        != listed
    {
        assert!(
            std::time::Instant::now() < until,
            "{name} listed: never {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
