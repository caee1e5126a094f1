//! The vm-test guest's PID 1.
//!
//! Re-roots off the initramfs (pivot_root refuses the rootfs mount, and every
//! container runtime needs it), mounts the basic filesystems, loads the kernel
//! modules listed in /etc/vmtest/modules in order, mounts the cgroup layout that
//! `vmtest.cgroup=v1|v2` asks for, brings up loopback, runs every test binary in
//! /vmtest/bin with `--test-threads=1` (and `vmtest.filter=` as libtest's filter),
//! prints exactly one `VMTEST-EXIT=<rc> nonce=<n>` line and powers off.
//! `vmtest.keep=1` starts a shell on the console before powering off.

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in static strings")
}

fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> bool {
    let _ = fs::create_dir_all(target);
    let (s, t, f, d) = (c(src), c(target), c(fstype), c(data));
    let fptr = if fstype.is_empty() {
        std::ptr::null()
    } else {
        f.as_ptr()
    };
    let dptr = if data.is_empty() {
        std::ptr::null()
    } else {
        d.as_ptr().cast()
    };
    // SAFETY: valid NUL-terminated strings or null pointers.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), fptr, flags, dptr) };
    if r != 0 {
        println!(
            "VMTEST-WARN mount {fstype} {target}: {}",
            std::io::Error::last_os_error()
        );
    }
    r == 0
}

fn uptime() -> String {
    fs::read_to_string("/proc/uptime")
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or("?")
        .to_string()
}

fn reroot() {
    // Bind / on /newroot, move it over /, chroot into it: the new / has a parent
    // mount, so pivot_root works below it.
    if mount("/", "/newroot", "", libc::MS_BIND | libc::MS_REC, "")
        && std::env::set_current_dir("/newroot").is_ok()
    {
        let (dot, root) = (c("."), c("/"));
        // SAFETY: valid strings.
        unsafe {
            libc::mount(
                dot.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            );
            libc::chroot(dot.as_ptr());
        }
        let _ = std::env::set_current_dir("/");
        let err = Command::new("/init").arg("stage2").exec();
        println!("VMTEST-WARN re-exec after re-root: {err}");
    }
}

fn load_modules() {
    let Ok(list) = fs::read_to_string("/etc/vmtest/modules") else {
        return;
    };
    for path in list.lines().filter(|l| !l.is_empty()) {
        let Ok(f) = fs::File::open(path) else {
            println!("VMTEST-WARN module {path} missing");
            continue;
        };
        let empty = c("");
        // SAFETY: finit_module on an open module file with no parameters.
        let r = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                empty.as_ptr(),
                0,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                println!("VMTEST-WARN loading {path}: {e}");
            }
        }
    }
}

fn cgroups(layout: &str) {
    let root = "/sys/fs/cgroup";
    match layout {
        "v1" => {
            mount("cgroup", root, "tmpfs", 0, "mode=755");
            for ctl in [
                "cpuset",
                "cpu,cpuacct",
                "blkio",
                "memory",
                "devices",
                "freezer",
                "pids",
                "hugetlb",
            ] {
                mount("cgroup", &format!("{root}/{ctl}"), "cgroup", 0, ctl);
            }
            let _ = std::os::unix::fs::symlink("cpu,cpuacct", format!("{root}/cpu"));
            let _ = std::os::unix::fs::symlink("cpu,cpuacct", format!("{root}/cpuacct"));
            // Hybrid, as systemd and the machines of this project have it.
            mount("cgroup2", &format!("{root}/unified"), "cgroup2", 0, "");
        }
        "v2" => {
            mount("cgroup2", root, "cgroup2", 0, "nsdelegate");
            let _ = fs::write(
                format!("{root}/cgroup.subtree_control"),
                "+cpu +cpuset +io +memory +pids +hugetlb",
            );
        }
        _ => {}
    }
}

/// As PID 1, reaps every orphan that is reparented here (a container's pid-1 that
/// exits waits until all of its namespace's processes are reaped) until `pid`
/// exits; returns its exit code (128+N for signal N).
fn reap_until(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return 255;
        }
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 && args.get(1).map(String::as_str) != Some("stage2") {
        reroot();
    }
    mount("proc", "/proc", "proc", 0, "");
    mount("sysfs", "/sys", "sysfs", 0, "");
    mount("devtmpfs", "/dev", "devtmpfs", 0, "");
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        0,
        "newinstance,ptmxmode=0666",
    );
    if !Path::new("/dev/ptmx").exists() {
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    // The initramfs root is writable already; a tmpfs would hide what the runner
    // packed under these paths (a checkout under /tmp, with its binaries).
    for t in ["/dev/shm", "/run", "/tmp"] {
        let empty = fs::read_dir(t)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty {
            mount("tmpfs", t, "tmpfs", 0, "");
        }
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let arg = |k: &str| {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("vmtest.{k}=")).map(String::from))
    };
    let layout = arg("cgroup").unwrap_or_else(|| "v2".into());
    let nonce = arg("nonce").unwrap_or_default();
    println!("VMTEST-BOOTED uptime={}", uptime());
    load_modules();
    cgroups(&layout);
    let _ = Command::new("/usr/sbin/ip")
        .args(["link", "set", "lo", "up"])
        .status();
    println!("VMTEST-READY layout={layout} uptime={}", uptime());
    // Shows that the runner notices a kernel panic: BERTH_VM_PANIC_DEMO=1.
    if std::env::var_os("BERTH_VM_PANIC_DEMO").is_some_and(|v| v == "1") {
        let _ = fs::write("/proc/sysrq-trigger", "c");
    }

    let mut rc = 0;
    let mut bins: Vec<_> = fs::read_dir("/vmtest/bin")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    bins.sort();
    for bin in bins {
        println!("VMTEST-RUN {}", bin.display());
        let mut cmd = Command::new(&bin);
        cmd.arg("--test-threads=1")
            .env("BERTH_IN_VM", "1")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .current_dir("/");
        if let Some(f) = arg("filter") {
            cmd.arg(f);
        }
        match cmd.spawn().map(|child| reap_until(child.id() as i32)) {
            Ok(0) => {}
            Ok(code) => {
                println!("VMTEST-FAILED {} (exit {code})", bin.display());
                rc = 1;
            }
            Err(e) => {
                println!("VMTEST-FAILED {} (could not run: {e})", bin.display());
                rc = 1;
            }
        }
    }
    println!("VMTEST-EXIT={rc} nonce={nonce} uptime={}", uptime());
    if arg("keep").as_deref() == Some("1") {
        println!("VMTEST-KEEP: a shell on the console; exit it to power off");
        let _ = Command::new("/bin/sh").status();
    }
    // SAFETY: syncing and powering off is what PID 1 does last.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}
