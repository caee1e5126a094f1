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

use super::container::RunConfig;
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
    env = merge_env(&env, &[format!("HOSTNAME={}", cfg.hostname)]);
    spec["root"] = json!({"path": rootfs, "readonly": false});
    spec["hostname"] = json!(cfg.hostname);
    let p = &mut spec["process"];
    p["terminal"] = json!(false);
    p["args"] = json!(cfg.argv());
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
    let res = &mut spec["linux"]["resources"];
    if let Some(m) = cfg.memory {
        res["memory"] = json!({"limit": m});
    }
    if let Some(n) = cfg.nano_cpus {
        let period: i64 = 100_000;
        res["cpu"] = json!({"quota": n * period / 1_000_000_000, "period": period});
    }
    if let Some(p) = cfg.pids_limit {
        res["pids"] = json!({"limit": p});
    }
    Ok(spec)
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
        [h, c] => (*h, *c, "rw"),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(bad(
                "-v",
                s,
                "use HOST:CONTAINER[:ro|rw] (named volumes are not supported yet)",
            ));
        }
    };
    if !source.starts_with('/') {
        return Err(bad(
            "-v",
            s,
            "the host path must be absolute (named volumes are not supported yet)",
        ));
    }
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
    if !Path::new(source).exists() {
        std::fs::create_dir_all(source).io("creating the host directory", source)?;
    }
    Ok(super::container::Volume {
        source: source.to_string(),
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
        for bad in ["rel:/data", "/tmp:data", "/tmp:/", "/tmp:/d:rx", "/tmp"] {
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
