//! Test support: a runtime under test (berth-runc by default, any runc-compatible
//! binary through BERTH_TEST_RUNTIME), with its own temporary --root, and busybox
//! bundles in temporary directories. Everything is removed on drop.
#![allow(dead_code)]

pub mod cli;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

/// The runtime binary under test.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("BERTH_TEST_RUNTIME").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_berth-runc")),
    }
}

/// Whether the runtime under test is berth-runc.
pub fn is_berth() -> bool {
    runtime_bin().file_name().is_some_and(|n| n == "berth-runc")
}

/// Skips (returns true) unless running as root with busybox-static installed.
pub fn need_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return true;
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is missing: run `cargo xtask setup`"
    );
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique container id.
pub fn unique_id(tag: &str) -> String {
    format!(
        "bt-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A runtime with a private root.
pub struct Runtime {
    pub bin: PathBuf,
    pub root: tempfile::TempDir,
    /// Run every command in its own mount namespace where `cgroup2` is mounted on
    /// /sys/fs/cgroup: a pure-v2 view of the host's cgroup2 hierarchy.
    pub v2_view: bool,
}

impl Runtime {
    pub fn new() -> Self {
        Runtime {
            bin: runtime_bin(),
            root: tempfile::Builder::new()
                .prefix("berth-test-root")
                .tempdir()
                .expect("tempdir"),
            v2_view: false,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = if self.v2_view {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"")
                .arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        c.arg("--root").arg(self.root.path());
        c.stdin(Stdio::null());
        c
    }

    /// Runs and returns the output.
    /// Stdout and stderr go to files, not pipes: a detached container inherits
    /// them and would hold a pipe open for as long as it runs.
    pub fn run(&self, args: &[&str]) -> Output {
        output_via_files(self.cmd().args(args))
    }

    /// Runs, requires success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{:?} failed: {}{}",
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, requires failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "{:?} should have failed: {}",
            args,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `state ID` as JSON.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state json")
    }

    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().expect("pid") as i32
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("status")
            .to_string()
    }

    /// `run` in the foreground; (exit code, stdout, stderr).
    pub fn run_fg(&self, b: &Bundle, id: &str) -> (i32, String, String) {
        let out = self.run(&["run", "--bundle", b.path_str(), id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `args` in a fresh container from `b` and returns stdout (must exit 0).
    pub fn output_of(&self, b: &mut Bundle, args: &[&str]) -> String {
        b.args(args);
        let id = unique_id("fg");
        let (code, out, err) = self.run_fg(b, &id);
        assert_eq!(code, 0, "container {args:?} exited {code}: {out}{err}");
        out
    }

    /// Waits (up to 10 s) until `id` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..200 {
            if self.status(id) == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Say what every process of the container is doing.
        let ps: Vec<i32> =
            serde_json::from_str(&self.ok(&["ps", "--format", "json", id])).unwrap_or_default();
        let procs: Vec<String> = ps
            .iter()
            .map(|p| {
                let st = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                let wchan = fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
                let stack = fs::read_to_string(format!("/proc/{p}/stack")).unwrap_or_default();
                let stat: Vec<&str> = st.split(' ').take(3).collect();
                let stack: Vec<&str> = stack.lines().take(5).collect();
                format!("{} wchan={wchan} stack={}", stat.join(" "), stack.join("|"))
            })
            .collect();
        panic!(
            "{id} never became {status}: {} (init {}; processes: {procs:?})",
            self.status(id),
            self.pid(id)
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Never panic here: a panic while unwinding would abort and leave the root behind.
        let Ok(out) = self.cmd().args(["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.cmd().args(["delete", "--force", id]).output();
        }
    }
}

/// A busybox bundle in a temporary directory, with a config.json built from
/// berth's default spec (terminal off, writable /tmp).
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-bundle")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for name in String::from_utf8_lossy(&list.stdout).lines() {
            if name != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(name));
            }
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
        let mut config = berth::oci::spec::default_spec();
        config["process"]["terminal"] = json!(false);
        config["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]
        }));
        Bundle { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets process.args and writes config.json.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self.save()
    }

    /// Edits the config and writes it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save()
    }

    pub fn save(&mut self) -> &mut Self {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
        self
    }
}

/// The cgroup directory of `pid` for `controller` ("" for the unified v2 tree).
pub fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        if v2 && names.is_empty() {
            return Some(PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
        if !v2 && names.split(',').any(|n| n == controller) {
            let mount = fs::read_to_string("/proc/self/mountinfo")
                .ok()?
                .lines()
                .find_map(|l| {
                    let (left, right) = l.split_once(" - ")?;
                    let mp = left.split(' ').nth(4)?;
                    let opts = right.split(' ').nth(2)?;
                    (right.starts_with("cgroup ") && opts.split(',').any(|o| o == controller))
                        .then(|| mp.to_string())
                })?;
            return Some(PathBuf::from(mount).join(path.trim_start_matches('/')));
        }
    }
    None
}

/// Whether the host's cgroups are v2.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Accepts one connection on a console socket and returns the pty master it carries.
pub fn recv_pty(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this descriptor for us.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

/// Reads `f` until `marker` appears or it ends; returns what was read.
pub fn read_until(f: &mut std::fs::File, marker: &str) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&out).contains(marker) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` with stdout and stderr in files rather than pipes (a detached
/// container inherits them and would hold a pipe open for as long as it runs).
pub fn output_via_files(cmd: &mut Command) -> Output {
    use std::io::{Read, Seek};
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    let status = cmd
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .status()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let read = |mut f: fs::File| {
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut v).expect("read");
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}
