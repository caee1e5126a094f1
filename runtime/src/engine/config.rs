//! The OCI config of a container: Docker's defaults (the same as `berth-runc
//! spec`: capabilities, masked and read-only paths, seccomp profile, mounts) with
//! the image's and the user's process settings, and the user and groups looked up
//! in the container's own /etc/passwd and /etc/group (read inside its root, never
//! through a link that leaves it).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use serde_json::{Value, json};

use super::container::{NetworkMode, RunConfig, Seccomp, Ulimit};
use super::{Error, IoContext, Result};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merges `KEY=VALUE` settings over a base environment (a later key wins).
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in base.iter().chain(over) {
        let key = kv.split('=').next().unwrap_or(kv);
        out.retain(|e| e.split('=').next() != Some(key));
        out.push(kv.clone());
    }
    out
}

/// Reads a file of the container's root, resolved inside it.
fn read_in_root(rootfs: &Path, rel: &str) -> Option<String> {
    let root = File::open(rootfs).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root, rel, how).ok()?;
    let mut s = String::new();
    File::from(fd).take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// (uid, gid, additional gids) for `user[:group]`, as Docker resolves `-u`:
/// numbers stand for themselves, names come from the container's files.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>)> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || f[2] == user));
    let (uid, mut gid, name) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| Error::NoUser(spec.to_string()))?,
            f[3].parse().map_err(|_| Error::NoUser(spec.to_string()))?,
            f[0].to_string(),
        ),
        (None, Ok(n)) => (n, n, String::new()),
        (None, Err(_)) => return Err(Error::NoUser(spec.to_string())),
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Error::NoUser(format!("{spec} (no group {g})")))?,
        };
    }
    let mut extra: Vec<u32> = Vec::new();
    if !name.is_empty() && group.is_none() {
        for f in groups.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
                && !extra.contains(&g)
            {
                extra.push(g);
            }
        }
    }
    Ok((uid, gid, extra))
}

/// The config.json of a container whose root is mounted at `rootfs`.
pub fn oci_config(cfg: &RunConfig, rootfs: &Path) -> Result<Value> {
    let mut spec = crate::oci::spec::default_spec();
    let (uid, gid, extra) = resolve_user(rootfs, &cfg.user)?;
    let mut env = merge_env(&[DEFAULT_PATH.to_string()], &cfg.env);
    if cfg.tty {
        env = merge_env(&[DEFAULT_PATH.to_string(), "TERM=xterm".into()], &env);
    }
    env = merge_env(&env, &[format!("HOSTNAME={}", cfg.hostname)]);
    spec["root"] = json!({"path": rootfs, "readonly": false});
    spec["hostname"] = json!(cfg.hostname);
    let p = &mut spec["process"];
    p["terminal"] = json!(cfg.tty);
    p["args"] = if cfg.init {
        json!(
            [INIT_PATH.to_string(), "--".into()]
                .into_iter()
                .chain(cfg.argv())
                .collect::<Vec<String>>()
        )
    } else {
        json!(cfg.argv())
    };
    p["env"] = json!(env);
    p["cwd"] = json!(if cfg.workdir.is_empty() {
        "/"
    } else {
        cfg.workdir.as_str()
    });
    p["user"] = json!({"uid": uid, "gid": gid});
    if !extra.is_empty() {
        p["user"]["additionalGids"] = json!(extra);
    }
    if cfg.read_only {
        spec["root"]["readonly"] = json!(true);
    }
    let mounts = spec["mounts"].as_array_mut().ok_or_else(|| Error::State {
        id: cfg.hostname.clone(),
        msg: "default config has no mounts".into(),
    })?;
    for v in &cfg.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": v.target, "type": "bind", "source": v.source, "options": ["rbind", mode, "rprivate"]}));
    }
    for t in &cfg.tmpfs {
        mounts.push(json!({"destination": t, "type": "tmpfs", "source": "tmpfs", "options": ["rw", "noexec", "nosuid", "nodev"]}));
    }
    if cfg.init {
        let init = init_binary()?;
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]}));
    }
    let res = &mut spec["linux"]["resources"];
    if cfg.memory.is_some() || cfg.memory_swap.is_some() {
        res["memory"] = json!({});
    }
    if let Some(m) = cfg.memory {
        res["memory"]["limit"] = json!(m);
    }
    if let Some(s) = cfg.memory_swap {
        res["memory"]["swap"] = json!(s);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = cfg.nano_cpus {
        let period: i64 = 100_000;
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
        cpu.insert("period".into(), json!(period));
    }
    if let Some(sh) = cfg.cpu_shares {
        cpu.insert("shares".into(), json!(sh));
    }
    if let Some(c) = &cfg.cpuset_cpus {
        cpu.insert("cpus".into(), json!(c));
    }
    if !cpu.is_empty() {
        res["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = cfg.pids_limit {
        res["pids"] = json!({"limit": p});
    }
    let mut rlimits: Vec<Value> = spec["process"]["rlimits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for u in &cfg.ulimits {
        let ty = rlimit_type(&u.name).unwrap_or_default();
        rlimits.retain(|r| r["type"] != ty);
        let v = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
        rlimits.push(json!({"type": ty, "soft": v(u.soft), "hard": v(u.hard)}));
    }
    spec["process"]["rlimits"] = json!(rlimits);
    let caps = capabilities(cfg)?;
    spec["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    spec["process"]["noNewPrivileges"] = json!(!cfg.new_privileges);
    match (&cfg.seccomp, cfg.privileged) {
        (Seccomp::Unconfined, _) | (Seccomp::Default, true) => {
            if let Some(l) = spec["linux"].as_object_mut() {
                l.remove("seccomp");
            }
        }
        (Seccomp::Custom(p), _) => spec["linux"]["seccomp"] = p.clone(),
        (Seccomp::Default, false) => {}
    }
    if cfg.privileged {
        privileged(&mut spec)?;
    }
    match &cfg.network {
        NetworkMode::None | NetworkMode::Bridge(_) => {}
        NetworkMode::Host => {
            if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
            // The host's network: its /sys/class/net is what the container should see.
        }
        NetworkMode::Container(_) => {
            // Joined by path in `net_join`, once the other container's init is known.
        }
    }
    Ok(spec)
}

/// Where `--init` puts the init (tini) in the container.
pub const INIT_PATH: &str = "/sbin/berth-init";

/// The init `--init` mounts: Debian's statically linked tini, as Docker ships tini
/// as docker-init (a static binary runs in any image).
pub fn init_binary() -> Result<&'static str> {
    const TINI: &str = "/usr/bin/tini-static";
    if Path::new(TINI).is_file() {
        Ok(TINI)
    } else {
        Err(Error::Flag(
            "--init".into(),
            format!("needs {TINI} on the host (apt-get install tini)"),
        ))
    }
}

/// Joins the container to another container's network namespace (`--network
/// container:ID`): `pid` is that container's init.
pub fn net_join(spec: &mut Value, pid: i32) {
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": format!("/proc/{pid}/ns/net")}));
    }
}

/// The capability set: Docker's default (or every one with `--privileged`), with
/// `--cap-drop` then `--cap-add` applied (ALL in either means every capability).
fn capabilities(cfg: &RunConfig) -> Result<Vec<String>> {
    let all = all_caps();
    let mut set: Vec<String> = if cfg.privileged {
        all.clone()
    } else {
        crate::oci::default_profile::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    if cfg.cap_drop.iter().any(|c| c == "ALL") {
        set.clear();
    } else {
        set.retain(|c| !cfg.cap_drop.contains(c));
    }
    for c in &cfg.cap_add {
        if c == "ALL" {
            set = all.clone();
        } else if !set.contains(c) {
            set.push(c.clone());
        }
    }
    Ok(set)
}

/// Every capability this kernel knows and berth itself may hand on (its
/// bounding set: a host that runs berth with fewer cannot give more).
/// Every capability this process may hand on (its bounding set).
pub fn all_caps() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    let mut v: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .filter(|c| bounding.contains(c))
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v
}

/// `--cap-add`/`--cap-drop` values as CAP_ names (or ALL), each checked.
pub fn parse_caps(flag: &str, list: &[String]) -> Result<Vec<String>> {
    list.iter()
        .map(|c| {
            let up = c.trim().to_ascii_uppercase();
            if up == "ALL" {
                return Ok(up);
            }
            let name = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            match name.parse::<caps::Capability>() {
                Ok(_) => Ok(name),
                Err(_) => Err(bad(flag, c, "not a capability (such as NET_ADMIN or ALL)")),
            }
        })
        .collect()
}

/// `--privileged`: every capability, no masked or read-only paths, /sys and the
/// cgroup tree writable, every host device and access to all devices.
fn privileged(spec: &mut Value) -> Result<()> {
    if let Some(l) = spec["linux"].as_object_mut() {
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            if matches!(m["destination"].as_str(), Some("/sys" | "/sys/fs/cgroup"))
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| o != "ro");
                opts.push(json!("rw"));
            }
        }
    }
    spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let mut devices = Vec::new();
    host_devices(Path::new("/dev"), &mut devices);
    spec["linux"]["devices"] = json!(devices);
    Ok(())
}

/// The host's device nodes under `dir` (not pts, shm, mqueue; links skipped), as
/// `linux.devices` entries.
fn host_devices(dir: &Path, out: &mut Vec<Value>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = md.file_type();
        if ft.is_dir() {
            if !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("pts" | "shm" | "mqueue")
            ) {
                host_devices(&path, out);
            }
            continue;
        }
        let kind = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            continue;
        };
        // The default /dev entries (null, zero, …, the console) are made anyway.
        if matches!(
            path.to_str(),
            Some("/dev/console" | "/dev/ptmx" | "/dev/tty")
        ) {
            continue;
        }
        let rdev = md.rdev();
        out.push(json!({
            "path": path, "type": kind,
            "major": libc::major(rdev), "minor": libc::minor(rdev),
            "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid(),
        }));
    }
}

/// The rlimit type for a Docker `--ulimit` name.
fn rlimit_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        _ => return None,
    })
}

/// `--ulimit NAME=SOFT[:HARD]` (-1: unlimited).
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s.split_once('=').ok_or_else(|| {
        bad(
            "--ulimit",
            s,
            "use NAME=SOFT[:HARD], such as nofile=1024:2048",
        )
    })?;
    if rlimit_type(name).is_none() {
        return Err(bad(
            "--ulimit",
            s,
            &format!(
                "{name:?} is not a limit (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)"
            ),
        ));
    }
    let num = |v: &str| -> Result<i64> {
        match v.parse::<i64>() {
            Ok(n) if n >= -1 => Ok(n),
            _ => Err(bad("--ulimit", s, "limits are numbers (-1: unlimited)")),
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    let big = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if big(soft) > big(hard) {
        return Err(bad(
            "--ulimit",
            s,
            "the soft limit must not exceed the hard limit",
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// `--cpuset-cpus 0-2,4`: checked against the CPUs this host has.
pub fn parse_cpuset(s: &str) -> Result<String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let err = || bad("--cpuset-cpus", s, "use a list such as 0-2,4");
    if s.trim().is_empty() {
        return Err(err());
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let (a, b): (usize, usize) = (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?);
        if a > b {
            return Err(err());
        }
        if b >= cores {
            return Err(bad(
                "--cpuset-cpus",
                s,
                &format!("this host has CPUs 0-{}", cores - 1),
            ));
        }
    }
    Ok(s.to_string())
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
pub fn parse_restart(s: &str) -> Result<super::container::RestartPolicy> {
    use super::container::RestartPolicy as R;
    Ok(match s.split_once(':') {
        None if s == "no" => R::No,
        None if s == "always" => R::Always,
        None if s == "unless-stopped" => R::UnlessStopped,
        None if s == "on-failure" => R::OnFailure { max_retries: 0 },
        Some(("on-failure", n)) => R::OnFailure {
            max_retries: n
                .parse()
                .map_err(|_| bad("--restart", s, "the retry count is a number"))?,
        },
        _ => {
            return Err(bad(
                "--restart",
                s,
                "use no, on-failure[:N], always or unless-stopped",
            ));
        }
    })
}

/// `--security-opt` values: (allow new privileges, seccomp).
pub fn parse_security_opts(opts: &[String], caps: &[String]) -> Result<(bool, Seccomp)> {
    let mut new_privs = false;
    let mut seccomp = Seccomp::Default;
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => new_privs = false,
            ("no-new-privileges", Some("false")) => new_privs = true,
            ("seccomp", Some("unconfined")) => seccomp = Seccomp::Unconfined,
            ("seccomp", Some(file)) => seccomp = Seccomp::Custom(read_seccomp(o, file, caps)?),
            // No AppArmor or SELinux on berth's hosts: only "off" can be honoured.
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            _ => {
                return Err(bad(
                    "--security-opt",
                    o,
                    "berth takes no-new-privileges[=true|false], seccomp=unconfined|FILE, apparmor=unconfined, label=disable",
                ));
            }
        }
    }
    Ok((new_privs, seccomp))
}

/// A seccomp profile file, in Docker's format (with `archMap`, `includes` and
/// `excludes`, resolved here for this machine and the container's capabilities)
/// or in the OCI runtime spec's, as `linux.seccomp` JSON.
fn read_seccomp(opt: &str, file: &str, caps: &[String]) -> Result<Value> {
    let text = std::fs::read_to_string(file).io("reading the seccomp profile", file)?;
    let p: Value = serde_json::from_str(&text)
        .map_err(|e| bad("--security-opt", opt, &format!("not JSON: {e}")))?;
    let mut out = serde_json::Map::new();
    for key in ["defaultAction", "defaultErrnoRet", "flags", "listenerPath"] {
        if !p[key].is_null() {
            out.insert(key.into(), p[key].clone());
        }
    }
    if out.get("defaultAction").is_none() {
        return Err(bad(
            "--security-opt",
            opt,
            "the profile has no defaultAction",
        ));
    }
    let native = "SCMP_ARCH_X86_64";
    let mut arches: Vec<Value> = p["architectures"].as_array().cloned().unwrap_or_default();
    for m in p["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == native {
            arches.push(m["architecture"].clone());
            arches.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    if !arches.is_empty() {
        out.insert("architectures".into(), json!(arches));
    }
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = |s: &str| -> (u32, u32) {
        let mut it = s.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let holds = |cond: &Value| -> bool {
        let caps_ok = cond["caps"].as_array().is_none_or(|l| {
            l.iter()
                .all(|c| c.as_str().is_some_and(|c| caps.iter().any(|h| h == c)))
        });
        let arch_ok = cond["arches"].as_array().is_none_or(|l| {
            l.iter()
                .any(|a| matches!(a.as_str(), Some("amd64" | "x86_64" | "x32" | "386")))
        });
        let kernel_ok = cond["minKernel"]
            .as_str()
            .is_none_or(|k| version(&kernel) >= version(k));
        caps_ok && arch_ok && kernel_ok
    };
    let is_empty = |c: &Value| c.as_object().is_none_or(|o| o.is_empty());
    let mut syscalls = Vec::new();
    for sc in p["syscalls"].as_array().into_iter().flatten() {
        let inc = &sc["includes"];
        let exc = &sc["excludes"];
        if !is_empty(inc) && !holds(inc) {
            continue;
        }
        if !is_empty(exc)
            && exc.as_object().is_some_and(|o| {
                o.iter().any(|(k, v)| {
                    let one = json!({ k.clone(): v.clone() });
                    holds(&one)
                })
            })
        {
            continue;
        }
        let mut names: Vec<Value> = sc["names"].as_array().cloned().unwrap_or_default();
        if let Some(n) = sc["name"].as_str() {
            names.push(json!(n));
        }
        let mut rule = serde_json::Map::new();
        rule.insert("names".into(), json!(names));
        for key in ["action", "errnoRet", "args"] {
            if !sc[key].is_null() {
                rule.insert(key.into(), sc[key].clone());
            }
        }
        syscalls.push(Value::Object(rule));
    }
    out.insert("syscalls".into(), json!(syscalls));
    let v = Value::Object(out);
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(v.clone()).map_err(|e| {
        bad(
            "--security-opt",
            opt,
            &format!("not a seccomp profile: {e}"),
        )
    })?;
    Ok(v)
}

/// `--log-opt max-size=10m --log-opt max-file=3` (Docker's json-file options).
pub fn parse_log_opts(opts: &[String]) -> Result<(Option<u64>, Option<u32>)> {
    let (mut size, mut files) = (None, None);
    for o in opts {
        match o.split_once('=') {
            Some(("max-size", "-1")) => size = None,
            Some(("max-size", v)) => size = Some(parse_size("--log-opt max-size", v)? as u64),
            Some(("max-file", v)) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => files = Some(n),
                _ => {
                    return Err(bad(
                        "--log-opt",
                        o,
                        "max-file is a number of files, at least 1",
                    ));
                }
            },
            _ => {
                return Err(bad(
                    "--log-opt",
                    o,
                    "berth's json-file log takes max-size=SIZE and max-file=N",
                ));
            }
        }
    }
    if files.is_some_and(|n| n > 1) && size.is_none() {
        return Err(bad(
            "--log-opt",
            "max-file",
            "max-file needs max-size (the log rotates when it reaches that size)",
        ));
    }
    Ok((size, files))
}

/// `--memory-swap`: bytes, or -1 for unlimited; needs `-m` and must be at least it.
pub fn parse_memory_swap(s: &str, memory: Option<i64>) -> Result<i64> {
    let Some(m) = memory else {
        return Err(bad("--memory-swap", s, "needs a memory limit (-m) too"));
    };
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let v = parse_size("--memory-swap", s)?;
    if v < m {
        return Err(bad(
            "--memory-swap",
            s,
            "must be at least the memory limit (it counts memory plus swap)",
        ));
    }
    Ok(v)
}

fn bad(flag: &str, value: &str, why: &str) -> Error {
    Error::Flag(format!("{flag} {value:?}"), why.to_string())
}

/// Docker's `-m` sizes: a number with an optional b, k, m, g or t (powers of 1024).
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && !r.ends_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(&t);
    let (num, mult): (&str, i64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        bad(
            flag,
            s,
            "a size is a number with an optional unit b, k, m, g or t",
        )
    })?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad(flag, s, "a size must be positive"));
    }
    Ok((n * mult as f64) as i64)
}

/// `--cpus 1.5` in billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| bad("--cpus", s, "a number of CPUs, such as 1.5"))?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad("--cpus", s, "must be more than 0"));
    }
    if n > cores {
        return Err(bad(
            "--cpus",
            s,
            &format!(
                "range of CPUs is from 0.01 to {cores:.2}, as there are only {cores} CPUs available"
            ),
        ));
    }
    Ok((n * 1e9) as i64)
}

/// `-v HOST:CONTAINER[:ro|rw]`; a missing host directory is made, as Docker does.
pub fn parse_volume(s: &str) -> Result<super::container::Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        // An anonymous volume: the source is chosen at create.
        [c] => ("", *c, "rw"),
        [h, c] => (*h, *c, "rw"),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(bad(
                "-v",
                s,
                "use HOST:CONTAINER[:ro|rw], NAME:CONTAINER[:ro|rw] or CONTAINER",
            ));
        }
    };
    let name = if source.is_empty() || source.starts_with('/') {
        None
    } else if super::container::valid_name(source) {
        Some(source.to_string())
    } else {
        return Err(bad(
            "-v",
            s,
            "a host path must be absolute; a volume name is [a-zA-Z0-9][a-zA-Z0-9_.-]+",
        ));
    };
    if !target.starts_with('/') || target == "/" {
        return Err(bad(
            "-v",
            s,
            "the container path must be absolute and not /",
        ));
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        _ => return Err(bad("-v", s, "the mode is ro or rw")),
    };
    if source.starts_with('/') && !Path::new(source).exists() {
        std::fs::create_dir_all(source).io("creating the host directory", source)?;
    }
    Ok(super::container::Volume {
        source: if name.is_some() {
            String::new()
        } else {
            source.to_string()
        },
        name,
        target: target.to_string(),
        read_only,
    })
}

/// `--env-file`: KEY=VALUE lines; `#` comments and blank lines skipped; a bare KEY
/// takes the value from berth's environment, as Docker does.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).io("reading", path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let key = l.split('=').next().unwrap_or("");
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad(
                "--env-file",
                &path.display().to_string(),
                &format!("line {}: {line:?} is not KEY=VALUE", i + 1),
            ));
        }
        if l.contains('=') {
            out.push(l.to_string());
        } else if let Ok(v) = std::env::var(key) {
            out.push(format!("{key}={v}"));
        }
    }
    Ok(out)
}

/// Writes `config.json` into `bundle`.
pub fn write_bundle(bundle: &Path, spec: &Value) -> Result<()> {
    std::fs::create_dir_all(bundle).io("creating", bundle)?;
    let data = serde_json::to_vec_pretty(spec).map_err(|e| Error::State {
        id: bundle.display().to_string(),
        msg: e.to_string(),
    })?;
    crate::oci::state::write_atomic(&bundle.join("config.json"), &data).map_err(Error::Oci)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cpus_volumes() {
        assert_eq!(parse_size("-m", "256m").unwrap(), 256 << 20);
        assert_eq!(parse_size("-m", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("-m", "64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("-m", "1000").unwrap(), 1000);
        for bad in ["", "m", "12x", "-5m", "0"] {
            assert!(parse_size("-m", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert!(
            parse_cpus("0").is_err() && parse_cpus("x").is_err() && parse_cpus("1000").is_err()
        );
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!(
            (v.source.as_str(), v.target.as_str(), v.read_only),
            ("/tmp", "/data", true)
        );
        let v = parse_volume("cache:/data").unwrap();
        assert_eq!((v.name.as_deref(), v.source.as_str()), (Some("cache"), ""));
        let v = parse_volume("/data").unwrap();
        assert_eq!(
            (v.name, v.source.as_str(), v.target.as_str()),
            (None, "", "/data")
        );
        for bad in [
            "./rel:/data",
            "bad name:/data",
            "/tmp:data",
            "/tmp:/",
            "/tmp:/d:rx",
            "a:/b:ro:x",
            "/",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_merges_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".into()];
        assert_eq!(
            merge_env(&base, &["A=2".into(), "B=3".into()]),
            ["PATH=/bin", "A=2", "B=3"]
        );
    }

    #[test]
    fn users_resolve_in_the_containers_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\n",
        )
        .unwrap();
        assert_eq!(resolve_user(dir.path(), "").unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user(dir.path(), "app").unwrap(),
            (1000, 1001, vec![10])
        );
        assert_eq!(
            resolve_user(dir.path(), "1000").unwrap(),
            (1000, 1001, vec![10])
        );
        assert_eq!(
            resolve_user(dir.path(), "app:wheel").unwrap(),
            (1000, 10, vec![])
        );
        assert_eq!(
            resolve_user(dir.path(), "4242:7").unwrap(),
            (4242, 7, vec![])
        );
        assert!(matches!(
            resolve_user(dir.path(), "nobody"),
            Err(Error::NoUser(_))
        ));
        // A passwd that is a link out of the root is read inside it (and is absent here).
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(dir.path(), "root"),
            Err(Error::NoUser(_))
        ));
    }
}
