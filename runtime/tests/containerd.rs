//! A real client: containerd 1.6 (Debian's package) runs containers with
//! berth-runc as its runc binary, and berth-runc's own log shows it did the work.
//! Its images come from `berth save` (one of them made by `berth commit`), so
//! this also shows containerd's `ctr image import` takes berth's archives.
//! containerd runs with its own root, state and socket in a temporary directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{need_root, runtime_bin};

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Containerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-containerd")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let sock = d.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
            d.join("root").display(),
            d.join("state").display(),
            sock.display(),
            d.join("ttrpc.sock").display()
        );
        fs::write(d.join("config.toml"), config).expect("config");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let until = Instant::now() + Duration::from_secs(30);
        let c = Containerd { child, dir, sock };
        while Instant::now() < until {
            if c.ctr(&["version"]).status.success() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "containerd did not come up: {}",
            fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        common::output_via_files(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.sock)
                .args(["--namespace", "berthtest"])
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}{}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task/berthtest")
            .join(id)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for t in ["t-run", "t-detached"] {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", t]);
            let _ = self.ctr(&["task", "delete", "--force", t]);
            let _ = self.ctr(&["container", "delete", t]);
        }
        let _ = self.ctr(&["image", "remove", "docker.io/library/bbtest:latest"]);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // ctr puts containers in /<namespace>/<id>: the runtime removes the leaf,
        // the namespace's parent cgroup is ours to remove.
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = fs::remove_dir(e.path().join("berthtest"));
            }
        }
        let _ = fs::remove_dir("/sys/fs/cgroup/berthtest");
        // Snapshot mounts, if any survived, would pin the directory.
        if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
            for mp in info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|mp| Path::new(mp).starts_with(self.dir.path()))
            {
                let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// `berth save` of two images, as containerd gets them: busybox tagged
/// bbtest:latest, and bbtest:committed — a container of it changed through its
/// overlay mount (a file added, an applet removed) and committed.
fn saved_images(dir: &Path) -> PathBuf {
    let berth = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(dir.join("data"))
            .args(args)
            .output()
            .expect("berth");
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let img = berth::image::build::busybox(Path::new("/bin/busybox")).expect("busybox image");
    let layout = dir.join("busybox.tar");
    berth::image::build::ImageBuilder::write_oci_tar(
        &[(&img, Some("busybox:latest"))],
        fs::File::create(&layout).expect("create"),
    )
    .expect("write");
    berth(&["load", "-i", layout.to_str().expect("path")]);
    berth(&["tag", "busybox", "bbtest"]);

    let store = berth::image::store::ImageStore::open(&dir.join("data")).expect("store");
    let snap = store
        .create_snapshot("committer", "bbtest")
        .expect("snapshot");
    let ov = snap.mount().expect("mount");
    fs::write(ov.target().join("etc/committed"), "from-berth-commit\n").expect("write");
    fs::remove_file(ov.target().join("bin/vi")).expect("rm");
    ov.unmount().expect("unmount");
    let tag = berth::image::reference::Reference::parse("bbtest:committed").expect("ref");
    berth::image::commit::commit(&store, &snap, Some(&tag), &Default::default()).expect("commit");
    store
        .snapshots()
        .remove("committer")
        .expect("remove snapshot");

    let out = dir.join("image.tar");
    berth(&[
        "save",
        "bbtest:latest",
        "bbtest:committed",
        "-o",
        out.to_str().expect("path"),
    ]);
    out
}

#[test]
fn containerd_runs_containers_with_berth_runc() {
    if need_root() {
        return;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("containerd is not installed: run `cargo xtask setup`");
    }
    let work = tempfile::Builder::new()
        .prefix("berth-image")
        .tempdir()
        .expect("tempdir");
    let image = saved_images(work.path());
    let cd = Containerd::start();
    let runc_root = cd.dir.path().join("runc-root");
    let bin = runtime_bin();
    let (bin_s, root_s) = (
        bin.to_str().expect("path"),
        runc_root.to_str().expect("path"),
    );
    cd.ok(&["image", "import", image.to_str().expect("path")]);
    let img = "docker.io/library/bbtest:latest";

    let out = cd.ok(&[
        "run",
        "--rm",
        "--runc-binary",
        bin_s,
        "--runc-root",
        root_s,
        img,
        "t-run",
        "echo",
        "hello",
    ]);
    assert_eq!(out.trim(), "hello");
    // The committed image: its extra layer, whiteout included, as berth wrote it.
    let out = cd.ok(&[
        "run",
        "--rm",
        "--runc-binary",
        bin_s,
        "--runc-root",
        root_s,
        "docker.io/library/bbtest:committed",
        "t-committed",
        "sh",
        "-c",
        "cat /etc/committed; test -e /bin/vi || echo vi-gone",
    ]);
    assert_eq!(out, "from-berth-commit\nvi-gone\n");

    cd.ok(&[
        "run",
        "-d",
        "--runc-binary",
        bin_s,
        "--runc-root",
        root_s,
        img,
        "t-detached",
        "sleep",
        "120",
    ]);
    let out = cd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "t-detached",
        "sh",
        "-c",
        "echo from-exec; cat /proc/1/cmdline",
    ]);
    assert!(out.starts_with("from-exec\nsleep"), "{out}");
    let ps = cd.ok(&["task", "ps", "t-detached"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    // berth-runc's own state and log, for this container.
    let state_file = runc_root.join("berthtest/t-detached/state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(&state_file).unwrap_or_else(|e| {
            let tree = Command::new("find")
                .arg(&runc_root)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            panic!("{}: {e}; {tree:?}", state_file.display())
        }))
        .expect("json");
    if common::is_berth() {
        assert!(
            state["pid_start"].as_u64().is_some(),
            "not berth-runc's state: {state}"
        );
    }
    let log = fs::read_to_string(cd.task_dir("t-detached").join("log.json")).expect("log.json");
    if common::is_berth() {
        assert!(log.contains("created container t-detached"), "{log}");
        assert!(log.contains("started container t-detached"), "{log}");
        assert!(log.contains("exec in container t-detached"), "{log}");
    }
    cd.ok(&["task", "kill", "-s", "SIGKILL", "t-detached"]);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = cd.ok(&["task", "ls"]);
        if tasks
            .lines()
            .any(|l| l.starts_with("t-detached") && l.contains("STOPPED"))
        {
            break;
        }
        assert!(Instant::now() < until, "task did not stop: {tasks}");
        std::thread::sleep(Duration::from_millis(100));
    }
    cd.ok(&["task", "delete", "t-detached"]);
    cd.ok(&["container", "delete", "t-detached"]);
    assert!(
        !runc_root.join("berthtest/t-detached").exists(),
        "berth-runc state left behind"
    );
}
