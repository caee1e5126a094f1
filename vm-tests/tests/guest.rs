//! The guest is what the runtime needs: overlayfs with several lower layers, a
//! bridge with a veth pair into a network namespace, an nftables NAT table, and
//! memory and pids limits enforced in a child cgroup, under the cgroup layout the
//! VM was booted with. Outside a vm-test guest these tests skip: they change
//! kernel state.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn skip() -> bool {
    if !berth_vm_tests::in_vm() {
        eprintln!("skipped: runs only inside `cargo xtask vm-test`");
        return true;
    }
    false
}

/// Runs a busybox shell script; the code is the shell's, 128+N when killed by signal N.
/// (busybox's sh runs its own applets first: scripts name /usr/sbin/ip and nft in full.)
fn sh(script: &str) -> (i32, String) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .unwrap_or(-1);
    (code, text)
}

fn ok(script: &str) -> String {
    let (code, out) = sh(script);
    assert_eq!(code, 0, "{script}: {out}");
    out
}

#[test]
fn overlay_with_three_lower_layers() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let p = |s: &str| d.path().join(s);
    for dir in ["l1", "l2", "l3", "up", "work", "merged"] {
        fs::create_dir(p(dir)).expect("mkdir");
    }
    fs::write(p("l1/top"), "l1").expect("w");
    fs::write(p("l2/top"), "l2").expect("w");
    fs::write(p("l2/mid"), "l2").expect("w");
    fs::write(p("l3/low"), "l3").expect("w");
    let opts = format!(
        "lowerdir={}:{}:{},upperdir={},workdir={}",
        p("l1").display(),
        p("l2").display(),
        p("l3").display(),
        p("up").display(),
        p("work").display()
    );
    ok(&format!(
        "mount -t overlay overlay -o {opts} {}",
        p("merged").display()
    ));
    let m = p("merged");
    let read = |f: &str| fs::read_to_string(m.join(f)).unwrap_or_default();
    let (top, mid, low) = (read("top"), read("mid"), read("low"));
    fs::write(m.join("new"), "written").expect("write through the overlay");
    fs::remove_file(m.join("low")).expect("delete a lower file");
    let whiteout = fs::symlink_metadata(p("up/low"))
        .map(|md| std::os::unix::fs::FileTypeExt::is_char_device(&md.file_type()));
    ok(&format!("umount {}", m.display()));
    assert_eq!(
        (top.as_str(), mid.as_str(), low.as_str()),
        ("l1", "l2", "l3"),
        "upper layers shadow lower ones"
    );
    assert_eq!(
        fs::read_to_string(p("up/new")).expect("copied up"),
        "written"
    );
    assert_eq!(
        whiteout.ok(),
        Some(true),
        "a deletion is a whiteout in the upper dir"
    );
    assert!(p("l3/low").exists(), "lower layers are never changed");
}

#[test]
fn bridge_veth_and_network_namespace() {
    if skip() {
        return;
    }
    // Addresses live only on this VM's bridge and in the namespace made here.
    let setup = "IP=/usr/sbin/ip; $IP link add bt-br0 type bridge && $IP addr add 10.231.0.1/24 dev bt-br0 && \
                 $IP link set bt-br0 up && $IP netns add bt-ns1 && $IP link add bt-v0 type veth peer name bt-v1 && \
                 $IP link set bt-v1 netns bt-ns1 && $IP link set bt-v0 master bt-br0 up && \
                 $IP -n bt-ns1 addr add 10.231.0.2/24 dev bt-v1 && $IP -n bt-ns1 link set bt-v1 up && $IP -n bt-ns1 link set lo up";
    let (code, out) = sh(setup);
    let ping = sh("ping -c 1 -W 3 10.231.0.2");
    let master = sh("cat /sys/class/net/bt-v0/master/uevent");
    sh(
        "/usr/sbin/ip netns del bt-ns1; /usr/sbin/ip link del bt-br0; /usr/sbin/ip link del bt-v0 2>/dev/null",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(ping.0, 0, "ping across the bridge: {}", ping.1);
    assert!(master.1.contains("INTERFACE=bt-br0"), "{}", master.1);
}

#[test]
fn nftables_nat_table() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let rules = d.path().join("rules.nft");
    fs::write(
        &rules,
        "table ip berth_vmtest {\n chain post_c {\n  type nat hook postrouting priority 100;\n  ip saddr 10.231.0.0/24 masquerade\n }\n \
         chain pre_c {\n  type nat hook prerouting priority -100;\n  tcp dport 8080 dnat to 10.231.0.2:80\n }\n}\n",
    )
    .expect("rules");
    let loaded = sh(&format!("/usr/sbin/nft -f {}", rules.display()));
    let listed = sh("/usr/sbin/nft list table ip berth_vmtest");
    sh("/usr/sbin/nft delete table ip berth_vmtest");
    assert_eq!(loaded.0, 0, "{}", loaded.1);
    assert!(
        listed.1.contains("masquerade") && listed.1.contains("dnat to 10.231.0.2:80"),
        "{}",
        listed.1
    );
}

/// The directory of a new child cgroup for `controller` (v1) or the unified tree (v2).
fn child_cgroup(controller: &str, name: &str) -> PathBuf {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup").join(controller)
    };
    let dir = base.join(name);
    fs::create_dir_all(&dir).expect("mkdir cgroup");
    dir
}

#[test]
fn memory_limit_oom_kills_in_a_child_cgroup() {
    if skip() {
        return;
    }
    let dir = child_cgroup("memory", "bt-mem");
    let v2 = dir.join("memory.max").exists();
    fs::write(
        dir.join(if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        }),
        "33554432",
    )
    .expect("limit");
    let procs = dir.join("cgroup.procs");
    let (code, out) = sh(&format!(
        "echo $$ > {}; dd if=/dev/zero of=/dev/null bs=96M count=1",
        procs.display()
    ));
    let small = sh(&format!(
        "echo $$ > {}; dd if=/dev/zero of=/dev/null bs=8M count=1",
        procs.display()
    ));
    let _ = fs::remove_dir(&dir);
    assert_eq!(code, 137, "dd over the limit was not OOM-killed: {out}");
    assert_eq!(small.0, 0, "{}", small.1);
}

#[test]
fn pids_limit_stops_a_fork_in_a_child_cgroup() {
    if skip() {
        return;
    }
    let dir = child_cgroup("pids", "bt-pids");
    fs::write(dir.join("pids.max"), "4").expect("pids.max");
    let (code, out) = sh(&format!(
        "echo $$ > {}; i=0; while [ $i -lt 10 ]; do sleep 1 & i=$((i+1)); done; echo all-forked",
        dir.join("cgroup.procs").display()
    ));
    sh("sleep 1.2");
    let _ = fs::remove_dir(&dir);
    assert_ne!(code, 0);
    assert!(
        out.contains("can't fork") && !out.contains("all-forked"),
        "{out}"
    );
}

/// Shows that a failure inside the VM fails the run and is named in its summary:
/// `BERTH_VM_FAIL_DEMO=1 cargo xtask vm-test`.
#[test]
fn deliberate_failure_when_asked() {
    if skip() {
        return;
    }
    assert!(
        std::env::var_os("BERTH_VM_FAIL_DEMO").is_none(),
        "BERTH_VM_FAIL_DEMO is set: failing on purpose"
    );
}
