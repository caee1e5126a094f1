//! `berth run`'s flags seen from inside the container and from the kernel:
//! security and resource flags, `--init`, the network modes of the engine,
//! restart policies, the OOM killer, `--cpus` measured from cgroup usage, a pty
//! driven like a terminal, stdin with and without `-i`, and the log's rotation
//! and time filters. Each test has its own roots and removes what it made.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cli::{Berth, until_listed};
use common::need_root;

/// The value of `key:` in /proc/self/status, as the container prints it.
fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

#[test]
fn security_and_resource_flags() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let status = "cat /proc/self/status";
    // Docker's defaults: its capability set, the seccomp filter, no_new_privs.
    let out = b.ok(&["run", "--rm", "busybox", "sh", "-c", status]);
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    // --cap-drop ALL --cap-add NET_ADMIN: that one capability (bit 12).
    let out = b.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "net_admin",
        "busybox",
        "sh",
        "-c",
        status,
    ]);
    assert_eq!(status_field(&out, "CapEff"), "0000000000001000");
    // --cap-drop of one: CHOWN (bit 0) gone, and chown is refused.
    let out = b.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; touch /f; chown 5 /f 2>/dev/null || echo refused",
    ]);
    assert!(
        out.contains("00000000a80425fa") && out.contains("refused"),
        "{out}"
    );
    // --privileged: berth's own bounding set, no filter, the host's devices, /sys writable.
    let host = fs::read_to_string("/proc/self/status").expect("status");
    let out = b.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev",
    ]);
    assert_eq!(
        status_field(&out, "CapEff"),
        status_field(&host, "CapBnd"),
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0");
    assert!(out.contains("sysfs /sys sysfs rw"), "{out}");
    // A host device a default container does not get (kmsg, a disk, …) is there.
    let host_dev = fs::read_dir("/dev")
        .expect("/dev")
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            ![
                "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
            ]
            .contains(&n.as_str())
        })
        .expect("a device in the host's /dev");
    assert!(
        out.lines().any(|l| l == host_dev),
        "{host_dev} not in the container: {out}"
    );
    let plain = b.ok(&["run", "--rm", "busybox", "ls", "/dev"]);
    assert!(!plain.lines().any(|l| l == host_dev), "{plain}");
    // --security-opt: no-new-privileges=false, seccomp=unconfined, and a
    // profile in Docker's format that refuses mkdir.
    let out = b.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=false",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        status,
    ]);
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    assert_eq!(status_field(&out, "Seccomp"), "0");
    let profile = b.dir.path().join("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
              {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
              {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}
            ]}"#,
    )
    .expect("profile");
    let opt = format!("seccomp={}", profile.display());
    let out = b.ok(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "mkdir /d 2>&1; cd /tmp && echo cd-ok",
    ]);
    assert!(
        out.contains("Operation not permitted") && out.contains("cd-ok"),
        "{out}"
    );
    // --ulimit, --cpu-shares, --cpuset-cpus, seen from inside.
    let out = b.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=100:200",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpuset.cpus",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["100", "200"], "{out}");
    // v1 takes shares as given; v2 a weight (512 shares → weight 20).
    assert!(lines[2] == "512" || lines[2] == "20", "{out}");
    assert_eq!(lines[3], "0", "{out}");
    // Bad values: one line naming the flag and value, 125, nothing made.
    let bad_profile = b.dir.path().join("bad.json");
    fs::write(&bad_profile, "{\"syscalls\": 5}").expect("write");
    let bad_opt = format!("seccomp={}", bad_profile.display());
    for (args, want) in [
        (
            vec!["--ulimit", "nofile=9:1"],
            "invalid --ulimit \"nofile=9:1\"",
        ),
        (vec!["--ulimit", "bogus=1"], "invalid --ulimit \"bogus=1\""),
        (vec!["--cap-add", "FLY"], "invalid --cap-add \"FLY\""),
        (
            vec!["--cpuset-cpus", "0-999"],
            "invalid --cpuset-cpus \"0-999\"",
        ),
        (vec!["--memory-swap", "1g"], "invalid --memory-swap \"1g\""),
        (
            vec!["-m", "64m", "--memory-swap", "32m"],
            "invalid --memory-swap \"32m\"",
        ),
        (
            vec!["--security-opt", "apparmor=x"],
            "invalid --security-opt \"apparmor=x\"",
        ),
        (vec!["--security-opt", &bad_opt], "invalid --security-opt"),
        (
            vec!["--restart", "sometimes"],
            "invalid --restart \"sometimes\"",
        ),
        (vec!["--restart", "always"], "invalid --restart with --rm"),
        (
            vec!["--network", "nosuch"],
            "invalid --network \"nosuch\": network nosuch not found",
        ),
        (vec!["-p", "80:80"], "conflicting options: port publishing"),
        (vec!["-p", "80:0"], "invalid --publish: \"80:0\": port 0"),
        (vec!["--ip", "10.1.2.3"], "invalid --ip 10.1.2.3"),
        (
            vec!["--network", "container:nobody"],
            "no such container: nobody",
        ),
        (
            vec!["--log-opt", "max-file=0"],
            "invalid --log-opt \"max-file=0\"",
        ),
    ] {
        b.refuses_run(&args, want);
    }
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn init_is_pid_1_reaps_and_forwards_signals() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // PID 1 is the init; the command is its child; the exit code passes through.
    let out = b.run(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$; (sleep 0.2 &); sleep 1; ps -o stat,comm | grep -c '^Z' ; exit 7",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(lines[0].starts_with("/sbin/berth-init -- sh -c"), "{text}");
    assert_ne!(lines[1], "1", "the command is not PID 1");
    // The orphaned sleep was reaped by the init: no zombie.
    assert_eq!(lines[2], "0", "{text}");
    // Without --init the command is PID 1.
    assert_eq!(
        b.ok(&["run", "--rm", "busybox", "sh", "-c", "echo $$"]),
        "1\n"
    );
    // `stop` reaches a command that would ignore SIGTERM as PID 1: it ends by
    // the signal (143), not by the SIGKILL after the timeout (137).
    b.ok(&[
        "run", "-d", "--init", "--name", "inited", "busybox", "sleep", "300",
    ]);
    until_listed(&b, "inited", true);
    b.ok(&["stop", "-t", "20", "inited"]);
    assert_eq!(b.ok(&["wait", "inited"]), "143\n");
    b.ok(&["rm", "inited"]);
}

#[test]
fn network_modes_none_host_and_container() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // none: only loopback, and it is up (a ping answers).
    let out = b.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok",
    ]);
    assert_eq!(out, "lo\nping-ok\n");
    // host: the host's interfaces and its hostname.
    let mut host_ifs: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host_ifs.sort();
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "hostname; ls /sys/class/net",
    ]);
    let mut lines: Vec<String> = out.lines().map(String::from).collect();
    let hostname = lines.remove(0);
    assert_eq!(
        hostname,
        nix::unistd::gethostname()
            .expect("hostname")
            .to_string_lossy()
    );
    lines.sort();
    assert_eq!(lines, host_ifs);
    // container:NAME: the other container's namespace (same inode), and what
    // listens there is reachable on its loopback.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "netowner",
        "busybox",
        "sh",
        "-c",
        "while true; do echo served | nc -l -p 8080; done",
    ]);
    until_listed(&b, "netowner", true);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "netowner"])).expect("json");
    let pid = v[0]["State"]["Pid"].as_i64().expect("pid");
    let owner_ns = fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns");
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "container:netowner",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 8080 && break; sleep 0.3; done",
    ]);
    assert_eq!(out, format!("{}\nserved\n", owner_ns.display()));
    b.ok(&["rm", "-f", "netowner"]);
    // Joining a container that is not running is refused.
    b.ok(&["create", "--name", "idle", "busybox", "true"]);
    let o = b.run(&[
        "run",
        "--rm",
        "--network",
        "container:idle",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
    b.ok(&["rm", "idle"]);
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn restart_policies() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // on-failure:3: the first run and three restarts, then it stays exited.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&b.ok(&["inspect", "flaky"])).expect("json");
        if v[0]["RestartCount"] == 3 && v[0]["State"]["Status"] == "exited" {
            assert_eq!(v[0]["State"]["ExitCode"], 3);
            assert_eq!(v[0]["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
            break;
        }
        assert!(Instant::now() < until, "not restarted three times: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its monitor is gone (no fourth restart), and the log shows four runs.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(b.ok(&["logs", "flaky"]), "attempt\n".repeat(4));
    // on-failure does not restart a success; the foreground applies the policy too.
    let o = b.run(&[
        "run",
        "--name",
        "fgflaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo try; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "try\n".repeat(3));
    let o = b.run(&[
        "run",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "echo",
        "once",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "once\n");
    // always: restarts a clean exit too, until a user stops it.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo up; sleep 0.2",
    ]);
    let until = Instant::now() + Duration::from_secs(60);
    while b.ok(&["logs", "forever"]).lines().count() < 3 {
        assert!(Instant::now() < until, "always did not restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.ok(&["stop", "forever"]);
    let settled = b.ok(&["logs", "forever"]).lines().count();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.ok(&["logs", "forever"]).lines().count(), settled);
    assert!(b.ok(&["ps"]).lines().all(|l| !l.ends_with(" forever")));
    b.ok(&["rm", "flaky", "fgflaky", "fine", "forever"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn memory_limit_is_enforced_by_the_oom_killer() {
    if need_root() {
        return;
    }
    // With swap, a limit without --memory-swap lets the process swap instead.
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() > 1 {
        eprintln!("skipped: this machine has swap");
        return;
    }
    let b = Berth::new();
    let o = b.run(&[
        "run",
        "--name",
        "hungry",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "hungry"])).expect("json");
    assert_eq!(v[0]["State"]["OOMKilled"], true, "{v}");
    assert_eq!(v[0]["State"]["ExitCode"], 137);
    // Killed by a user, not by the OOM killer: OOMKilled stays false.
    b.ok(&[
        "run", "-d", "--name", "sleepy", "-m", "16m", "busybox", "sleep", "300",
    ]);
    until_listed(&b, "sleepy", true);
    b.ok(&["kill", "sleepy"]);
    assert_eq!(b.ok(&["wait", "sleepy"]), "137\n");
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "sleepy"])).expect("json");
    assert_eq!(v[0]["State"]["OOMKilled"], false);
    b.ok(&["rm", "hungry", "sleepy"]);
}

/// CPU time (ns) used by the cgroup of process `pid`, and the times it was throttled.
fn cpu_usage(pid: i64) -> (u64, u64) {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrl.split(',').any(|c| c == "cpuacct") {
            let usage = fs::read_to_string(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"))
                .or_else(|_| {
                    fs::read_to_string(format!("/sys/fs/cgroup/cpu,cpuacct{path}/cpuacct.usage"))
                })
                .expect("cpuacct.usage");
            let stat = fs::read_to_string(format!("/sys/fs/cgroup/cpu{path}/cpu.stat"))
                .or_else(|_| {
                    fs::read_to_string(format!("/sys/fs/cgroup/cpu,cpuacct{path}/cpu.stat"))
                })
                .expect("cpu.stat");
            let throttled = stat
                .lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            return (usage.trim().parse().expect("usage"), throttled);
        }
        if ctrl.is_empty() && line.starts_with("0::") && !path.is_empty() {
            let p = format!("/sys/fs/cgroup{path}/cpu.stat");
            if let Ok(stat) = fs::read_to_string(&p) {
                let get = |k: &str| -> u64 {
                    stat.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k} ")))
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0)
                };
                if stat.contains("nr_throttled") {
                    return (get("usage_usec") * 1000, get("nr_throttled"));
                }
            }
        }
    }
    panic!("no cpu accounting for {pid}: {cg}");
}

#[test]
fn cpus_half_keeps_a_busy_loop_near_half_a_cpu() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "spinner",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    until_listed(&b, "spinner", true);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "spinner"])).expect("json");
    let pid = v[0]["State"]["Pid"].as_i64().expect("pid");
    let (u0, t0) = cpu_usage(pid);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (u1, t1) = cpu_usage(pid);
    let wall = w0.elapsed().as_nanos() as f64;
    let share = (u1 - u0) as f64 / wall;
    eprintln!(
        "--cpus 0.5: {share:.3} of a CPU, throttled {} times",
        t1 - t0
    );
    // The quota caps it whatever the machine's load (a period of slack allowed);
    // that the kernel throttled it shows the cap is what held it.
    assert!(share <= 0.6, "used {share:.3} of a CPU");
    assert!(t1 > t0, "never throttled");
    b.ok(&["rm", "-f", "spinner"]);
}

/// Reads from the pty master until `want` has appeared (or 60 s pass).
fn read_until(master: &mut fs::File, seen: &mut String, want: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(Instant::now() < until, "never saw {want:?} in {seen:?}");
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

/// Whether a `sleep 4242` runs as the foreground process group of its terminal.
fn foreground_sleep_4242() -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let p = e.path();
        let is_it = fs::read(p.join("cmdline")).is_ok_and(|c| c == b"sleep\x004242\x00");
        // Fields after the command: state ppid pgrp session tty_nr tpgid.
        let stat = fs::read_to_string(p.join("stat")).unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        is_it && f.len() > 5 && f[2] == f[5]
    })
}

fn set_size(fd: i32, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

#[test]
fn run_it_is_a_terminal_with_window_size_and_exit_code() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // Without a terminal on stdin, -it is refused as Docker refuses it.
    let o = b.run(&["run", "-it", "--rm", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "berth: the input device is not a TTY\n"
    );
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "", "nothing made");
    // berth runs on a pty of its own, as in a person's terminal.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    set_size(pty.master.as_raw_fd(), 30, 100);
    let slave: OwnedFd = pty.slave;
    let mut cmd = b.cmd(&["run", "-it", "--rm", "--name", "term", "busybox", "sh"]);
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"));
    // SAFETY: setsid and TIOCSCTTY between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn berth");
    drop(slave);
    let mut master = fs::File::from(pty.master);
    let mut seen = String::new();
    master
        .write_all(b"tty; stty size; echo mark-$((6*7))\n")
        .expect("type");
    read_until(&mut master, &mut seen, "mark-42");
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(seen.contains("30 100"), "{seen}");
    // A resize of berth's terminal reaches the container's.
    set_size(master.as_raw_fd(), 50, 132);
    std::thread::sleep(Duration::from_millis(300));
    master
        .write_all(b"stty size; echo mark-$((2*3))\n")
        .expect("type");
    read_until(&mut master, &mut seen, "mark-6");
    assert!(seen.contains("50 132"), "{seen}");
    // Ctrl-C reaches the container's foreground job, not berth.
    master.write_all(b"sleep 4242\n").expect("type");
    // Only once the sleep is its terminal's foreground job (on a loaded machine
    // the shell may not have handed the terminal over yet).
    let until = Instant::now() + Duration::from_secs(60);
    while !foreground_sleep_4242() {
        assert!(
            Instant::now() < until,
            "sleep 4242 never ran in the foreground: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    master.write_all(&[3]).expect("ctrl-c");
    master.write_all(b"echo after-$((1+1))\n").expect("type");
    read_until(&mut master, &mut seen, "after-2");
    master.write_all(b"exit 3\n").expect("type");
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < until, "berth did not end: {seen}");
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            let mut buf = [0u8; 4096];
            match master.read(&mut buf) {
                Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    assert_eq!(status.code(), Some(3), "{seen}");
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn the_starters_ignored_and_blocked_signals_do_not_reach_the_container() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    // As a shell's background job (SIGINT, SIGQUIT ignored) under nohup (SIGHUP),
    // with SIGUSR1 blocked: the container's process still starts with none.
    let mut cmd = b.cmd(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "-E",
        "^Sig(Ign|Blk)",
        "/proc/self/status",
    ]);
    // SAFETY: signal and sigprocmask between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let o = cmd.output().expect("berth run");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn stdin_only_with_i() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let feed = |args: &[&str]| {
        let mut c = b
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(b"line one\nline two\n")
            .expect("write");
        let o = c.wait_with_output().expect("wait");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(
        feed(&["run", "--rm", "-i", "busybox", "cat"]),
        (Some(0), "line one\nline two\n".into())
    );
    // Without -i the container's stdin is empty.
    assert_eq!(
        feed(&["run", "--rm", "busybox", "cat"]),
        (Some(0), String::new())
    );
    // -d -i: stdin stays open (a shell waits for input instead of ending).
    b.ok(&["run", "-d", "-i", "--name", "waiting", "busybox", "sh"]);
    std::thread::sleep(Duration::from_millis(1000));
    until_listed(&b, "waiting", true);
    // -d -t: the shell runs on a pty the monitor holds, and logs its prompt.
    b.ok(&[
        "run",
        "-dt",
        "--name",
        "ttyd",
        "busybox",
        "sh",
        "-c",
        "tty; sleep 300",
    ]);
    until_listed(&b, "ttyd", true);
    let until = Instant::now() + Duration::from_secs(30);
    while !b.ok(&["logs", "ttyd"]).contains("/dev/pts/0") {
        assert!(Instant::now() < until, "no tty in the log");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.ok(&["rm", "-f", "waiting", "ttyd"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn logs_rotate_and_filter_by_time() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "chatty",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "seq",
            "1",
            "400",
        ])
        .trim()
        .to_string();
    assert_eq!(b.ok(&["wait", "chatty"]), "0\n");
    let dir = b.dir.path().join(format!("data/containers/{id}"));
    let log = dir.join(format!("{id}-json.log"));
    let mut files = vec![log.clone()];
    for i in 1..3 {
        files.push(dir.join(format!("{id}-json.log.{i}")));
    }
    for f in &files {
        let len = fs::metadata(f)
            .unwrap_or_else(|_| panic!("{} missing", f.display()))
            .len();
        assert!(len <= 2048, "{} is {len} bytes", f.display());
    }
    assert!(!dir.join(format!("{id}-json.log.3")).exists());
    // What is kept is the newest lines, in order, ending with 400.
    let out = b.ok(&["logs", "chatty"]);
    let nums: Vec<u32> = out.lines().map(|l| l.parse().expect("number")).collect();
    assert_eq!(nums.last(), Some(&400));
    assert!(nums.len() < 400 && nums.len() > 40, "{} lines", nums.len());
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{out}");
    assert_eq!(b.ok(&["logs", "--tail", "2", "chatty"]), "399\n400\n");
    // --since / --until.
    assert_eq!(b.ok(&["logs", "--since", "1h", "chatty"]), out);
    assert_eq!(b.ok(&["logs", "--until", "1h", "chatty"]), "");
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 3600;
    assert_eq!(
        b.ok(&["logs", "--since", &future.to_string(), "chatty"]),
        ""
    );
    let o = b.run(&["logs", "--since", "yesterday", "chatty"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--since \"yesterday\""));
    b.ok(&["rm", "chatty"]);
}

#[test]
fn exec_pause_top_stats_restart_and_ps_filters() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "echo $$ > /tmp/pid1; while true; do sleep 0.2; done",
    ]);
    until_listed(&b, "live", true);
    // exec: the container's namespaces (same pid namespace: /tmp/pid1 is 1),
    // -u, -w, -e, the exit code, and Docker's 126/127.
    assert_eq!(
        b.ok(&["exec", "live", "sh", "-c", "cat /tmp/pid1; hostname"]),
        format!("1\n{}\n", &b.ok(&["ps", "-q", "--no-trunc"]).trim()[..12])
    );
    assert_eq!(
        b.ok(&[
            "exec",
            "-u",
            "1000:1000",
            "-w",
            "/tmp",
            "-e",
            "FOO=bar",
            "live",
            "sh",
            "-c",
            "id -u; id -g; pwd; echo $FOO"
        ]),
        "1000\n1000\n/tmp\nbar\n"
    );
    // --privileged: this exec has every capability berth has; the container's
    // own processes keep Docker's default set.
    let caps = |args: &[&str]| {
        let out = b.ok(args);
        let hex = out
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap_or_else(|| panic!("{out}"))
            .trim()
            .to_string();
        u64::from_str_radix(&hex, 16).expect("hex")
    };
    let plain = caps(&["exec", "live", "cat", "/proc/self/status"]);
    let full = caps(&["exec", "--privileged", "live", "cat", "/proc/self/status"]);
    assert_eq!(plain, 0x00000000a80425fb, "Docker's default set");
    let bounding = fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapBnd:")
                .map(|h| u64::from_str_radix(h.trim(), 16).expect("hex"))
        })
        .expect("CapBnd");
    assert_eq!(full, bounding, "exec --privileged: {full:x}");
    assert_eq!(
        b.run(&["exec", "live", "sh", "-c", "exit 4"]).status.code(),
        Some(4)
    );
    assert_eq!(b.run(&["exec", "live", "no-such"]).status.code(), Some(127));
    assert_eq!(
        b.run(&["exec", "live", "/etc/passwd"]).status.code(),
        Some(126)
    );
    // -i passes stdin; without it the command reads nothing.
    let mut c = b
        .cmd(&["exec", "-i", "live", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(b"typed\n")
        .expect("write");
    assert_eq!(c.wait_with_output().expect("wait").stdout, b"typed\n");
    // -d: runs on after exec returns.
    b.ok(&[
        "exec",
        "-d",
        "live",
        "sh",
        "-c",
        "sleep 0.5; touch /tmp/detached",
    ]);
    let until = Instant::now() + Duration::from_secs(30);
    while b
        .run(&["exec", "live", "test", "-e", "/tmp/detached"])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < until, "exec -d never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // top: the init and its sleep, by host pid.
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "live"])).expect("json");
    let init = v[0]["State"]["Pid"].as_i64().expect("pid");
    let top = b.ok(&["top", "live"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(
        top.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&init.to_string())
                && l.contains("while true")),
        "{top}"
    );
    // stats: the limit, the processes, as JSON.
    let s: serde_json::Value = serde_json::from_str(
        b.ok(&["stats", "--no-stream", "--format", "json", "live"])
            .trim(),
    )
    .expect("json");
    assert!(
        s["MemUsage"].as_str().expect("mem").ends_with("/ 64MiB"),
        "{s}"
    );
    let pids: u64 = s["PIDs"].as_str().expect("pids").parse().expect("number");
    assert!((1..=5).contains(&pids), "{s}");
    assert!(b.ok(&["stats", "--no-stream"]).contains("live"));
    // pause: the processes stop using CPU, exec is refused, ps says so; unpause.
    b.ok(&["pause", "live"]);
    let (u0, _) = cpu_usage(init);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(cpu_usage(init).0, u0, "a paused container used CPU");
    assert!(b.ok(&["ps"]).contains("(Paused)"));
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "live"])).expect("json");
    assert_eq!(v[0]["State"]["Paused"], true);
    let o = b.run(&["exec", "live", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is paused"));
    assert!(String::from_utf8_lossy(&b.run(&["pause", "live"]).stderr).contains("already paused"));
    b.ok(&["unpause", "live"]);
    let until = Instant::now() + Duration::from_secs(30);
    while cpu_usage(init).0 == u0 {
        assert!(Instant::now() < until, "no CPU used after unpause");
        std::thread::sleep(Duration::from_millis(100));
    }
    // restart: a new init, running again.
    b.ok(&["restart", "-t", "1", "live"]);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "live"])).expect("json");
    assert_eq!(v[0]["State"]["Running"], true);
    assert_ne!(v[0]["State"]["Pid"].as_i64(), Some(init));
    // ps: filters and formats.
    b.ok(&["create", "--name", "idle", "busybox", "true"]);
    b.run(&["run", "--name", "failed", "busybox", "sh", "-c", "exit 3"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ps", "--format", "{{.Names}}"];
        full.extend(args);
        let mut v: Vec<String> = b.ok(&full).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["live"]);
    assert_eq!(names(&["-a"]), ["failed", "idle", "live"]);
    assert_eq!(names(&["--filter", "status=created"]), ["idle"]);
    assert_eq!(names(&["-a", "--filter", "exited=3"]), ["failed"]);
    assert_eq!(names(&["-a", "--filter", "name=ail"]), ["failed"]);
    assert_eq!(
        names(&[
            "-a",
            "--filter",
            "status=exited",
            "--filter",
            "status=created"
        ]),
        ["failed", "idle"]
    );
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        ["failed", "idle", "live"]
    );
    assert_eq!(
        names(&["-a", "--filter", "ancestor=other"]),
        Vec::<String>::new()
    );
    assert_eq!(
        b.ok(&["ps", "--format", "table {{.Names}}\\t{{.State}}"]),
        "NAMES\tSTATE\nlive\trunning\n"
    );
    let json: Vec<serde_json::Value> = b
        .ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(json.len(), 3);
    assert!(
        json.iter()
            .any(|j| j["Names"] == "failed" && j["State"] == "exited")
    );
    assert_eq!(b.ok(&["ps", "-l", "--format", "{{.Names}}"]), "failed\n");
    for bad in [
        vec!["--filter", "colour=red"],
        vec!["--filter", "status=sleepy"],
        vec!["--format", "{{.Nope}}"],
    ] {
        let mut full = vec!["ps"];
        full.extend(bad.iter().copied());
        let o = b.run(&full);
        assert!(!o.status.success(), "{full:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{full:?}"
        );
    }
    b.ok(&["rm", "-f", "live", "idle", "failed"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn system_df_prune_and_info() {
    if need_root() {
        return;
    }
    let b = Berth::new();
    b.ok(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ]);
    b.ok(&["run", "-d", "--name", "keeper", "busybox", "sleep", "300"]);
    until_listed(&b, "keeper", true);
    let df = b.ok(&["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        df.lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{kind} in {df}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("Images")[1..3], ["1", "1"], "{df}");
    // Two containers, one running; the stopped one's 300 kB layer is reclaimable.
    let c = row("Containers");
    assert_eq!(c[1..3], ["2", "1"], "{df}");
    assert!(c[4].starts_with("300") && c[4].ends_with("kB"), "{df}");
    let out = b.ok(&["system", "prune", "-f"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    assert!(out.contains("Total reclaimed space: 300"), "{out}");
    let names = b.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names, "keeper\n");
    // The image is in use by the running one: still there.
    assert!(b.ok(&["images", "-q"]).lines().count() == 1);
    let info = b.ok(&["info"]);
    for want in [
        "Containers: 1",
        " Running: 1",
        "Images: 1",
        "Cgroup Version: ",
        "Kernel features missing: none",
    ] {
        assert!(info.contains(want), "{want:?} in {info}");
    }
    b.ok(&["rm", "-f", "keeper"]);
    b.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}
