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
    Ok(spec)
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
