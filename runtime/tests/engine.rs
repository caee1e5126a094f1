//! The `berth` command's containers, as a user drives them: run in the
//! foreground with the image's config and the user's flags, exit codes as
//! Docker's, names and id prefixes, diff / commit / export of a container, and
//! a `berth` killed while its container runs. Each test has its own data and
//! state roots; every container is removed and no mount is left.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::cli::{Berth, until_listed};
use common::need_root;

/// Path → (kind, mode, content or target) of an unpacked tar.
fn tar_tree(tar: &[u8]) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    let mut out = BTreeMap::new();
    for e in a.entries().expect("tar") {
        let mut e = e.expect("entry");
        let path = e
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let mode = e.header().mode().expect("mode");
        let (kind, data) = match e.header().entry_type() {
            tar::EntryType::Directory => ('d', Vec::new()),
            tar::EntryType::Symlink => (
                'l',
                e.link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => (
                'h',
                e.link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Regular => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).expect("read");
                ('f', v)
            }
            other => (
                format!("{other:?}").chars().next().unwrap_or('?'),
                Vec::new(),
            ),
        };
        out.insert(path, (kind, mode, data));
    }
    out
}

#[test]
fn run_uses_the_image_config_and_the_flags() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    assert_eq!(
        b.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    let out = b.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "-h",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -un) $(hostname) $PATH",
    ]);
    assert_eq!(
        out,
        "hi /tmp nobody box /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    // The image's Cmd (sh) reads stdin: here, nothing, so it exits 0.
    assert!(b.run(&["run", "--rm", "busybox"]).status.success());
    // --entrypoint.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/echo",
            "busybox",
            "a",
            "b"
        ]),
        "a b\n"
    );
    // Exit codes: the container's, 127 for a missing command, 125 for berth's own errors.
    assert_eq!(
        b.run(&["run", "--rm", "busybox", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    let o = b.run(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-command"));
    let o = b.run(&["run", "--rm", "-u", "ghost", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unable to find user ghost"));
    let o = b.run(&["run", "--rm", "nosuchimage", "true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such image: nosuchimage"));
    // Nothing left: --rm removed every container, and their mounts.
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn names_ids_and_ps() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let id = b
        .ok(&["create", "--name", "first", "busybox", "true"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let o = b.run(&["create", "--name", "first", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{o:?}"
    );
    let o = b.run(&["create", "--name=-bad", "busybox", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid container name"));
    let ps = b.ok(&["ps", "-a"]);
    assert!(
        ps.lines().nth(1).is_some_and(|l| l.starts_with(&id[..12])
            && l.contains("Created")
            && l.ends_with("first")),
        "{ps}"
    );
    assert_eq!(
        b.ok(&["ps"]).lines().count(),
        1,
        "only the header: nothing runs"
    );
    // start by id prefix; ps shows the exit.
    assert!(b.run(&["start", "-a", &id[..6]]).status.success());
    assert!(b.ok(&["ps", "-a"]).contains("Exited (0)"));
    // A generated name.
    let id2 = b.ok(&["create", "busybox", "true"]).trim().to_string();
    let line = b
        .ok(&["ps", "-a", "--no-trunc"])
        .lines()
        .find(|l| l.starts_with(&id2))
        .map(String::from)
        .expect("listed");
    let name = line.split_whitespace().last().expect("name");
    assert!(name.contains('_'), "{line}");
    assert_eq!(b.ok(&["rm", name]), format!("{name}\n"));
    assert_eq!(b.ok(&["rm", "first"]), "first\n");
    assert!(
        String::from_utf8_lossy(&b.run(&["rm", "first"]).stderr)
            .contains("no such container: first")
    );
}

#[test]
fn diff_commit_and_export_of_a_container() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    b.ok(&[
        "run", "--name", "changed", "busybox", "sh", "-c",
        "echo hi > /etc/x; rm /bin/vi; mkdir -p /srv/data; echo 1 > /srv/data/one; ln -s /etc/x /srv/link; chmod 600 /etc/passwd",
    ]);
    assert_eq!(
        b.ok(&["diff", "changed"]),
        "C /bin\nD /bin/vi\nC /etc\nC /etc/passwd\nA /etc/x\nA /srv\nA /srv/data\nA /srv/data/one\nA /srv/link\n"
    );
    let id = b
        .ok(&["commit", "-m", "my change", "changed", "changed:v1"])
        .trim()
        .to_string();
    let inspect: serde_json::Value =
        serde_json::from_str(&b.ok(&["image", "inspect", "changed:v1"])).expect("json");
    assert_eq!(inspect[0]["Id"], id);
    assert_eq!(
        inspect[0]["History"]
            .as_array()
            .expect("history")
            .last()
            .expect("last")["comment"],
        "my change"
    );
    // The container's command is the new image's Cmd, as docker commit records it.
    assert!(
        inspect[0]["Config"]["Cmd"][2]
            .as_str()
            .is_some_and(|c| c.starts_with("echo hi"))
    );
    // The new image runs and shows the committed state…
    assert_eq!(
        b.ok(&["run", "--rm", "changed:v1", "sh", "-c", "cat /etc/x /srv/data/one; readlink /srv/link; test -e /bin/vi || echo no-vi; stat -c %a /etc/passwd"]),
        "hi\n1\n/etc/x\nno-vi\n600\n"
    );
    // …exactly: a new container of it has the same tree as the committed one.
    let export = |c: &str| -> Vec<u8> {
        let o = b.run(&["export", c]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    b.ok(&["create", "--name", "fresh", "changed:v1", "true"]);
    let (before, after) = (tar_tree(&export("changed")), tar_tree(&export("fresh")));
    assert!(before.contains_key("srv/data/one") && !before.contains_key("bin/vi"));
    assert_eq!(before, after);
    // export -o writes a file (and no partial one on failure).
    let out: PathBuf = b.dir.path().join("out.tar");
    b.ok(&["export", "fresh", "-o", out.to_str().expect("path")]);
    assert_eq!(tar_tree(&fs::read(&out).expect("read")), after);
    let o = b.run(&[
        "export",
        "ghost",
        "-o",
        out.with_extension("x").to_str().expect("path"),
    ]);
    assert!(!o.status.success() && !out.with_extension("x").exists());
    // The image is in use: rmi refuses.
    let o = b.run(&["rmi", "changed:v1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is using its referenced image"));
    b.ok(&["rm", "changed", "fresh"]);
    b.ok(&["rmi", "changed:v1"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn rm_f_of_a_running_container_ends_its_run_with_137() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let child = b
        .cmd(&["run", "--name", "victim", "busybox", "sleep", "300"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !b.ok(&["ps"]).contains("victim") {
        assert!(std::time::Instant::now() < until, "never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(b.ok(&["rm", "-f", "victim"]), "victim\n");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn a_killed_berth_leaves_nothing_the_next_command_does_not_clean() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let mut child = b
        .cmd(&["run", "--name", "orphan", "busybox", "sleep", "300"])
        .spawn()
        .expect("spawn");
    // Wait until the container runs.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !b.ok(&["ps"]).contains("orphan") {
        assert!(std::time::Instant::now() < until, "never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        !b.mounts().is_empty(),
        "the root is still mounted for the running container"
    );
    let o = b.run(&["rm", "orphan"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot remove a running container"));
    b.ok(&["rm", "-f", "orphan"]);
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
    // And its OCI state is gone (only the seccomp cache stays).
    let oci = b.dir.path().join("state/oci");
    let left: Vec<String> = fs::read_dir(&oci)
        .expect("oci state")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "bpf:cache")
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn detached_runs_keep_logs_and_exit_codes() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; read x || exit 1; echo never",
    ]);
    assert_eq!(id.trim().len(), 64);
    // stdin is /dev/null: `read` fails and sh ends with status 1.
    assert_eq!(b.ok(&["wait", "bg"]), "1\n");
    let o = b.run(&["logs", "bg"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out1\nout2\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err1\n");
    // The last line of the log, whichever stream it came on (they race).
    let o = b.run(&["logs", "--tail", "1", "bg"]);
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(both == "out2\n" || both == "err1\n", "{both:?}");
    let stamped = b.ok(&["logs", "-t", "bg"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 31 && l.as_bytes()[4] == b'-' && l.contains("Z out")),
        "{stamped}"
    );
    // Docker's json-file format on disk.
    let log = fs::read_to_string(
        b.dir
            .path()
            .join(format!("data/containers/{0}/{0}-json.log", id.trim())),
    )
    .expect("log");
    let first: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("a line")).expect("json");
    assert_eq!(
        (first["log"].as_str(), first["stream"].as_str()),
        (Some("out1\n"), Some("stdout"))
    );
    assert!(b.ok(&["ps", "-a"]).contains("Exited (1)"));
    // start (detached) again: the log grows.
    assert_eq!(b.ok(&["start", "bg"]), "bg\n");
    assert_eq!(b.ok(&["wait", "bg"]), "1\n");
    assert_eq!(b.ok(&["logs", "bg"]), "out1\nout2\nout1\nout2\n");
    b.ok(&["rm", "bg"]);
    // -d --rm: gone once it ends.
    b.ok(&["run", "-d", "--rm", "--name", "brief", "busybox", "true"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while b.ok(&["ps", "-a"]).contains("brief") {
        assert!(std::time::Instant::now() < until, "--rm did not remove it");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A command that cannot run: 127, as in the foreground.
    assert_eq!(
        b.run(&["run", "-d", "--rm", "busybox", "no-such"])
            .status
            .code(),
        Some(127)
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn stop_kill_and_follow() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // Honours SIGTERM: its own exit code.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 3' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    until_listed(&b, "polite", true);
    // logs -f follows until the container ends.
    let follower = b
        .cmd(&["logs", "-f", "polite"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(b.ok(&["stop", "polite"]), "polite\n");
    assert!(b.ok(&["ps", "-a"]).contains("Exited (3)"));
    let followed = follower.wait_with_output().expect("logs -f");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "up\nbye\n");
    // Ignores SIGTERM (pid 1 without a handler): SIGKILL after -t.
    b.ok(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "300"]);
    until_listed(&b, "stubborn", true);
    let t = std::time::Instant::now();
    b.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    assert!(b.ok(&["ps", "-a"]).contains("Exited (137)"));
    // kill -s.
    b.ok(&["start", "stubborn"]);
    until_listed(&b, "stubborn", true);
    b.ok(&["kill", "-s", "KILL", "stubborn"]);
    assert_eq!(b.ok(&["wait", "stubborn"]), "137\n");
    let o = b.run(&["kill", "stubborn"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not running"));
    b.ok(&["rm", "polite", "stubborn"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn a_killed_monitor_is_reconciled() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let id = b
        .ok(&["run", "-d", "--name", "lonely", "busybox", "sleep", "300"])
        .trim()
        .to_string();
    until_listed(&b, "lonely", true);
    let rec: serde_json::Value = serde_json::from_slice(
        &fs::read(
            b.dir
                .path()
                .join(format!("data/containers/{id}/container.json")),
        )
        .expect("record"),
    )
    .expect("json");
    let (init, monitor) = (
        rec["state"]["pid"].as_i64().expect("pid") as i32,
        rec["state"]["monitor"].as_i64().expect("monitor") as i32,
    );
    // While the container runs, its monitor is the small berth-monitor (the
    // same pid, the init's parent), and its memory stays small: in a release
    // build VmRSS is about 1.9 MB, most of it libc's pages shared with every
    // other process; the debug build's own code adds some, so the bounds here
    // are looser: all of it under 3 MiB, what it alone holds under 1 MiB.
    let exe = fs::read_link(format!("/proc/{monitor}/exe")).expect("monitor exe");
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("berth-monitor"),
        "{exe:?}"
    );
    let status = fs::read_to_string(format!("/proc/{init}/status")).expect("status");
    assert!(
        status.contains(&format!("\nPPid:\t{monitor}\n")),
        "the init's parent is not the monitor: {status}"
    );
    let status = fs::read_to_string(format!("/proc/{monitor}/status")).expect("status");
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    };
    let (rss, anon) = (kb("VmRSS:"), kb("RssAnon:"));
    eprintln!("monitor VmRSS {rss} kB, RssAnon {anon} kB");
    assert!(rss < 3072 && anon < 1024, "the monitor holds {status}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill monitor");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    // Nobody records the exit: wait reconciles, and everything is cleaned.
    assert_eq!(b.ok(&["wait", "lonely"]), "255\n");
    assert_eq!(b.mounts(), Vec::<String>::new());
    b.ok(&["rm", "lonely"]);
}

/// The cgroup file of the container's own cgroup, read from inside (v1 or v2).
const LIMITS: &str = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max";

#[test]
fn volumes_tmpfs_read_only_env_file_and_limits() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let vol = b.dir.path().join("vol");
    let ro = b.dir.path().join("ro");
    fs::create_dir(&ro).expect("mkdir");
    fs::write(ro.join("given"), "from the host\n").expect("write");
    let envf = b.dir.path().join("env");
    fs::write(&envf, "# a comment\nA=1\n\nB=two words\n").expect("write");
    let v1 = format!("{}:/data", vol.display());
    let v2 = format!("{}:/ro:ro", ro.display());
    let script = format!(
        "echo \"$A|$B\"; echo hi > /data/f; cat /ro/given; touch /ro/x 2>/dev/null || echo ro-refused; \
         touch /etc/y 2>/dev/null || echo root-refused; grep -c ' /scratch tmpfs ' /proc/mounts; echo t > /scratch/ok && echo scratch-ok; {LIMITS}"
    );
    let out = b.ok(&[
        "run",
        "--rm",
        "--env-file",
        envf.to_str().expect("path"),
        "-v",
        &v1,
        "-v",
        &v2,
        "--tmpfs",
        "/scratch",
        "--read-only",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "1|two words",
            "from the host",
            "ro-refused",
            "root-refused",
            "1",
            "scratch-ok",
            "67108864"
        ],
        "{out}"
    );
    assert!(lines[7] == "50000" || lines[7] == "50000 100000", "{out}");
    assert_eq!(lines[8], "20", "{out}");
    // The -v directory was made on the host and got the file.
    assert_eq!(fs::read_to_string(vol.join("f")).expect("read"), "hi\n");
    assert!(!ro.join("x").exists());
    // Bad values: one line naming the flag and value, 125, nothing made.
    for (args, want) in [
        (vec!["-m", "12x"], "invalid -m \"12x\""),
        (vec!["--cpus", "0"], "invalid --cpus \"0\""),
        (vec!["-v", "./rel:/x"], "invalid -v \"./rel:/x\""),
        (vec!["--tmpfs", "scratch"], "invalid --tmpfs \"scratch\""),
        (vec!["--env-file", "/nonexistent/env"], "/nonexistent/env"),
    ] {
        b.refuses_run(&args, want);
    }
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn inspect_and_rename() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let vol = b.dir.path().join("v");
    let bind = format!("{}:/data:ro", vol.display());
    let id = b
        .ok(&[
            "create", "--name", "one", "-e", "X=1", "-v", &bind, "-m", "32m", "busybox", "sleep",
            "1",
        ])
        .trim()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "one"])).expect("json");
    let c = &v[0];
    assert_eq!(c["Id"], id);
    assert_eq!(c["Name"], "/one");
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(
        (c["Path"].as_str(), c["Args"][0].as_str()),
        (Some("sleep"), Some("1"))
    );
    assert!(
        c["Config"]["Env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e == "X=1")
    );
    assert_eq!(c["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(c["Mounts"][0]["Destination"], "/data");
    assert_eq!(c["Mounts"][0]["RW"], false);
    // The upper directory it names is where the container's changes go.
    b.ok(&["start", "-a", "one"]);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", &id[..8]])).expect("json");
    assert_eq!(
        (
            v[0]["State"]["Status"].as_str(),
            v[0]["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(0))
    );
    assert!(
        Path::new(
            v[0]["GraphDriver"]["Data"]["UpperDir"]
                .as_str()
                .expect("upper")
        )
        .is_dir()
    );
    // Not a container: the image.
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "busybox"])).expect("json");
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(
        String::from_utf8_lossy(&b.run(&["inspect", "nothing"]).stderr)
            .contains("no such object: nothing")
    );
    // rename: the new name works, the old does not, a taken or bad name is refused.
    b.ok(&["create", "--name", "two", "busybox", "true"]);
    b.ok(&["rename", "one", "uno"]);
    assert!(b.ok(&["ps", "-a"]).lines().any(|l| l.ends_with(" uno")));
    assert!(String::from_utf8_lossy(&b.run(&["inspect", "one"]).stderr).contains("no such object"));
    assert!(
        String::from_utf8_lossy(&b.run(&["rename", "uno", "two"]).stderr)
            .contains("already in use")
    );
    assert!(
        String::from_utf8_lossy(&b.run(&["rename", "uno", "x y"]).stderr)
            .contains("invalid container name")
    );
    b.ok(&["rm", "uno", "two"]);
}

/// Directories named `id` in the cgroup trees (at most 6 levels down).
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name().to_string_lossy() == id {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 6, &mut out);
    out
}

#[test]
fn kill_9_at_each_step_of_run_is_repaired_by_the_next_command() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let points = [
        "run.before-mount",
        "run.after-mount",
        "run.after-create",
        "run.before-start",
        "run.after-start",
    ];
    for (i, point) in points.iter().enumerate() {
        for detached in [false, true] {
            let name = format!("crash{i}{}", if detached { "d" } else { "f" });
            let mut args = vec!["run", "--name", &name];
            if detached {
                args.push("-d");
            }
            args.extend(["busybox", "sh", "-c", "echo ran; sleep 1"]);
            // The berth command (foreground) or the monitor (detached) dies there.
            // (Not through pipes: an init left waiting would hold them open.)
            let st = b
                .cmd(&args)
                .env("BERTH_FAULT", format!("{point}:kill"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run");
            assert!(!st.success(), "{point} {name}: survived");
            let id = b
                .ok(&["inspect", "--format", "{{.Id}}", &name])
                .trim()
                .to_string();
            // The next command repairs: not shown running (unless its init was
            // already started and runs on), and then it starts again cleanly.
            let ps = b.ok(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.State}}",
            ]);
            if *point != "run.after-start" {
                assert_ne!(ps.trim(), "running", "{point} {name}");
                assert!(b.mounts().is_empty(), "{point} {name}: {:?}", b.mounts());
                assert!(
                    cgroups_named(&id).is_empty(),
                    "{point} {name}: {:?}",
                    cgroups_named(&id)
                );
            }
            b.ok(&["wait", &name]);
            let out = b.ok(&["start", "-a", &name]);
            assert_eq!(out, "ran\n", "{point} {name}");
            b.ok(&["rm", &name]);
            assert!(b.mounts().is_empty(), "{point} {name}: {:?}", b.mounts());
            assert!(
                cgroups_named(&id).is_empty(),
                "{point} {name}: {:?}",
                cgroups_named(&id)
            );
            let left: Vec<String> = fs::read_dir(b.dir.path().join("state/oci"))
                .expect("oci state")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "bpf:cache")
                .collect();
            assert_eq!(left, Vec::<String>::new(), "{point} {name}");
        }
    }
}

#[test]
fn cp_between_host_and_a_running_or_stopped_container() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let host = b.dir.path().join("host");
    fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    fs::write(host.join("file.txt"), "from the host\n").expect("write");
    fs::write(host.join("tree/sub/deep"), "deep\n").expect("write");
    std::os::unix::fs::symlink("/etc/hostname", host.join("tree/link")).expect("symlink");
    let p = |rel: &str| host.join(rel).display().to_string();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "mkdir /data && echo inside > /data/in.txt && ln -s /etc /data/escape && exec sleep 600",
    ]);
    // The container has made /data: wait for it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while b
        .run(&["exec", "box", "test", "-L", "/data/escape"])
        .status
        .code()
        != Some(0)
    {
        assert!(
            std::time::Instant::now() < until,
            "the container never made /data"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // In: a file into a directory, a tree to a new name (links kept as links),
    // a tree's content (SRC/.), a file to a new name.
    b.ok(&["cp", &p("file.txt"), "box:/data/"]);
    b.ok(&["cp", &p("tree"), "box:/data/copied"]);
    b.ok(&["cp", &p("tree/."), "box:/data"]);
    b.ok(&["cp", &p("file.txt"), "box:/data/renamed"]);
    let inside = b.ok(&[
        "exec", "box", "sh", "-c",
        "cat /data/file.txt /data/copied/sub/deep /data/sub/deep /data/renamed; readlink /data/copied/link",
    ]);
    assert_eq!(
        inside,
        "from the host\ndeep\ndeep\nfrom the host\n/etc/hostname\n"
    );
    // A link the container planted resolves inside the container, never on the host.
    b.ok(&["cp", &p("file.txt"), "box:/data/escape/planted"]);
    assert_eq!(
        b.ok(&["exec", "box", "cat", "/etc/planted"]),
        "from the host\n"
    );
    assert!(
        !Path::new("/etc/planted").exists(),
        "cp wrote through a container's link onto the host"
    );
    // Out: a file to a new name, a directory, a tar stream.
    b.ok(&["cp", "box:/data/in.txt", &p("out.txt")]);
    assert_eq!(
        fs::read_to_string(host.join("out.txt")).expect("read"),
        "inside\n"
    );
    b.ok(&["cp", "box:/data/copied", &p("back")]);
    assert_eq!(
        fs::read_to_string(host.join("back/sub/deep")).expect("read"),
        "deep\n"
    );
    assert_eq!(
        fs::read_link(host.join("back/link")).expect("link"),
        PathBuf::from("/etc/hostname")
    );
    let o = b
        .cmd(&["cp", "box:/data/in.txt", "-"])
        .output()
        .expect("cp");
    assert!(o.status.success());
    let tree = tar_tree(&o.stdout);
    assert_eq!(tree.keys().collect::<Vec<_>>(), ["in.txt"]);
    assert_eq!(tree["in.txt"].2, b"inside\n");
    // A tar stream in, from stdin.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o640);
    h.set_cksum();
    tar.append_data(&mut h, "streamed", &b"piped\n"[..])
        .expect("tar");
    let data = tar.into_inner().expect("tar");
    let mut child = b
        .cmd(&["cp", "-", "box:/data"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cp");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &data).expect("write");
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        b.ok(&["exec", "box", "stat", "-c", "%a %s", "/data/streamed"]),
        "640 6\n"
    );
    // Refusals: one line naming the path.
    for (args, want) in [
        (vec!["cp", "box:/nope", "/tmp"], "cp source \"/nope\""),
        (
            vec!["cp", &p("tree") as &str, "box:/data/in.txt"],
            "cannot copy a directory to a file",
        ),
        (vec!["cp", "box:/a", "box:/b"], "between containers"),
    ] {
        let o = b.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // A stopped container: its root is mounted for the copy and unmounted after.
    b.ok(&["stop", "-t", "0", "box"]);
    b.ok(&["cp", &p("file.txt"), "box:/data/while-stopped"]);
    b.ok(&["cp", "box:/data/while-stopped", &p("stopped-out")]);
    assert_eq!(
        fs::read_to_string(host.join("stopped-out")).expect("read"),
        "from the host\n"
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
    let diff = b.ok(&["diff", "box"]);
    assert!(diff.contains("A /data/while-stopped\n"), "{diff}");
    b.ok(&["rm", "box"]);
}

#[test]
fn named_and_anonymous_volumes() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // An image that declares VOLUME /vol and has a file there.
    let mut img = berth::image::build::busybox(Path::new("/bin/busybox")).expect("image");
    let mut l = berth::image::build::LayerBuilder::new();
    l.dir("vol", 0o755).file("vol/seed.txt", b"seed\n", 0o644);
    img.layer(l.finish(), berth::layers::store::Compression::None)
        .config("Volumes", serde_json::json!({"/vol": {}}));
    let tar = b.dir.path().join("vimg.tar");
    berth::image::build::ImageBuilder::write_oci_tar(
        &[(&img, Some("vimg:latest"))],
        fs::File::create(&tar).expect("create"),
    )
    .expect("write");
    b.ok(&["load", "-q", "-i", tar.to_str().expect("path")]);
    // A named volume outlives its containers and is shared by name.
    b.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo one > /data/f",
    ]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "data\n");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "one\n"
    );
    let o = b.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "touch",
        "/data/g",
    ]);
    assert_ne!(o.status.code(), Some(0), "a read-only volume was written");
    let o = b.run(&["volume", "rm", "data"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("volume is in use by writer"));
    let mounts: serde_json::Value =
        serde_json::from_str(&b.ok(&["inspect", "-f", "{{json .Mounts}}", "writer"]))
            .expect("json");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    b.ok(&["rm", "-v", "writer"]);
    assert_eq!(
        b.ok(&["volume", "ls", "-q"]),
        "data\n",
        "rm -v keeps named volumes"
    );
    b.ok(&["volume", "rm", "data"]);
    // The image's VOLUME: an anonymous volume filled from the image, gone with rm -v.
    assert_eq!(
        b.ok(&["run", "--name", "anon", "vimg", "cat", "/vol/seed.txt"]),
        "seed\n"
    );
    let name = b.ok(&["inspect", "-f", "{{(index .Mounts 0).Name}}", "anon"]);
    assert_eq!(name.trim().len(), 64, "{name}");
    let data = b
        .dir
        .path()
        .join("data/volumes")
        .join(name.trim())
        .join("_data/seed.txt");
    assert_eq!(fs::read_to_string(&data).expect("populated"), "seed\n");
    b.ok(&["rm", "-v", "anon"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
    // A new named volume over the image's path is filled too; -v /path and --rm.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "kept:/vol",
            "vimg",
            "cat",
            "/vol/seed.txt"
        ]),
        "seed\n"
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "echo x > /scratch/y && cat /scratch/y"
        ]),
        "x\n"
    );
    assert_eq!(
        b.ok(&["volume", "ls", "-q"]),
        "kept\n",
        "--rm removes anonymous volumes only"
    );
    // Refusals.
    b.refuses_run(&["-v", "bad/name:/x"], "invalid -v \"bad/name:/x\"");
    b.refuses_run(
        &["-v", "data:relative"],
        "the container path must be absolute",
    );
    b.ok(&["volume", "create", "spare"]);
    b.ok(&["volume", "prune", "-f"]);
    assert_eq!(
        b.ok(&["volume", "ls", "-q"]),
        "kept\nspare\n",
        "prune keeps named volumes"
    );
    assert_eq!(
        b.ok(&["volume", "prune", "-f", "-a"]),
        "Deleted Volumes:\nkept\nspare\n"
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
}
