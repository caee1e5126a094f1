//! A real client: containerd 1.6 (Debian's package) runs containers with
//! berth-runc as its runc binary, and berth-runc's own log shows it did the work.
//! containerd runs with its own root, state and socket in a temporary directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{need_root, runtime_bin};
use serde_json::json;
use sha2::{Digest, Sha256};

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

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An OCI image layout tar of a busybox rootfs, referenced as docker.io/library/bbtest:latest.
fn busybox_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("list");
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|n| *n != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(name));
    }
    let layer_path = dir.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(&layer_path)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let layer = fs::read(&layer_path).expect("layer");
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] }
    }))
    .expect("json");
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer.len() }]
    }))
    .expect("json");
    let manifest_digest = sha256(&manifest);
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    fs::write(blobs.join(&layer_digest), &layer).expect("blob");
    fs::write(blobs.join(&config_digest), &config).expect("blob");
    fs::write(blobs.join(&manifest_digest), &manifest).expect("blob");
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "docker.io/library/bbtest:latest" }
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    let image = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&image)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    image
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
    let image = busybox_image(work.path());
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
