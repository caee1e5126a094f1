//! Reading and checking config.json, and the default one `spec` writes.
//!
//! Parsing goes through oci-spec's types with serde_path_to_error, so a malformed
//! file is reported with the JSON path of the offending field. [`validate`] then
//! checks what the types cannot: versions, the rootfs, namespace rules, mount
//! destinations — everything that would otherwise fail half-way through `create`.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::default_profile;
use super::error::{Error, Result};

/// Reads `file` as JSON of type `T`, naming the file and field on error.
pub fn read_json<T: DeserializeOwned>(file: &Path, data: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::Spec {
            file: file.to_path_buf(),
            field: if path == "." {
                "(document)".into()
            } else {
                path
            },
            msg: e.into_inner().to_string(),
        }
    })
}

fn spec_err(file: &Path, field: &str, msg: impl Into<String>) -> Error {
    Error::Spec {
        file: file.to_path_buf(),
        field: field.to_string(),
        msg: msg.into(),
    }
}

/// A loaded and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    /// The configuration.
    pub spec: Spec,
}

/// Loads `<bundle>/config.json` and validates it.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = fs::canonicalize(bundle).map_err(|e| Error::Io {
        what: "bundle",
        path: bundle.to_path_buf(),
        source: e,
    })?;
    let file = dir.join("config.json");
    let data = fs::read(&file).map_err(|e| Error::Io {
        what: "reading",
        path: file.clone(),
        source: e,
    })?;
    let spec: Spec = read_json(&file, &data)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| spec_err(&file, "root", "missing"))?;
    let rootfs = dir.join(root.path());
    let rootfs = fs::canonicalize(&rootfs)
        .map_err(|e| spec_err(&file, "root.path", format!("{}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(spec_err(
            &file,
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    validate(&spec, &file)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// Checks the rules the runtime spec (and runc) impose beyond the JSON types.
pub fn validate(spec: &Spec, file: &Path) -> Result<()> {
    let v = spec.version();
    if !(v.starts_with("1.0") || v.starts_with("1.1") || v.starts_with("1.2")) {
        return Err(spec_err(
            file,
            "ociVersion",
            format!("{v:?} is not a supported version (1.0.x to 1.2.x)"),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| spec_err(file, "process", "missing"))?;
    validate_process(process, file, "process")?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(spec_err(
                file,
                &format!("mounts[{i}].destination"),
                format!("{:?} is not absolute", m.destination()),
            ));
        }
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    let mut new = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(spec_err(
                file,
                &format!("linux.namespaces[{i}]"),
                format!("duplicate namespace {:?}", ns.typ()),
            ));
        }
        match ns.path() {
            None => {
                new.insert(ns.typ());
            }
            Some(p) if !p.is_absolute() || !p.exists() => {
                return Err(spec_err(
                    file,
                    &format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
            Some(_) => {}
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(spec_err(
            file,
            "hostname",
            "setting a hostname needs a private UTS namespace",
        ));
    }
    if new.contains(&LinuxNamespaceType::User) {
        if linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(spec_err(
                file,
                "linux.uidMappings",
                "a new user namespace needs uid mappings",
            ));
        }
        if linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(spec_err(
                file,
                "linux.gidMappings",
                "a new user namespace needs gid mappings",
            ));
        }
    } else if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && !has(LinuxNamespaceType::User)
    {
        return Err(spec_err(
            file,
            "linux.uidMappings",
            "mappings need a user namespace",
        ));
    }
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        let needs = if key.starts_with("net.") {
            Some(LinuxNamespaceType::Network)
        } else if key.starts_with("fs.mqueue.")
            || (key.starts_with("kernel.") && is_ipc_sysctl(key))
        {
            Some(LinuxNamespaceType::Ipc)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some(LinuxNamespaceType::Uts)
        } else {
            None
        };
        match needs {
            Some(ns) if has(ns) => {}
            Some(ns) => {
                return Err(spec_err(
                    file,
                    &format!("linux.sysctl.{key}"),
                    format!("needs a private {ns:?} namespace"),
                ));
            }
            None => {
                return Err(spec_err(
                    file,
                    &format!("linux.sysctl.{key}"),
                    "is not namespaced: it would change the host",
                ));
            }
        }
    }
    if let Some(p) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|p| !p.is_empty())
        && super::mounts::propagation_flag(p).is_none()
    {
        return Err(spec_err(
            file,
            "linux.rootfsPropagation",
            format!("{p:?} is not a propagation mode"),
        ));
    }
    Ok(())
}

fn is_ipc_sysctl(key: &str) -> bool {
    matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    )
}

/// Checks a process (config.json's, or an exec's process.json).
pub fn validate_process(p: &Process, file: &Path, field: &str) -> Result<()> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(spec_err(
            file,
            &format!("{field}.args"),
            "must not be empty",
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(spec_err(
            file,
            &format!("{field}.cwd"),
            format!("{:?} is not absolute", p.cwd()),
        ));
    }
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err(spec_err(
                file,
                &format!("{field}.rlimits[{i}]"),
                "soft limit above hard limit",
            ));
        }
    }
    Ok(())
}

/// Reads a resources file (`update --resources`).
pub fn read_resources(file: &Path, data: &[u8]) -> Result<LinuxResources> {
    read_json(file, data)
}

/// The config.json that `spec` writes: runc's layout with Docker's defaults
/// (capabilities, masked and read-only paths, a seccomp profile).
pub fn default_spec() -> Value {
    let caps = default_profile::DEFAULT_CAPS;
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "berth",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": default_profile::profile()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &Value) -> Result<Spec> {
        read_json(
            Path::new("config.json"),
            &serde_json::to_vec(v).expect("json"),
        )
    }

    #[test]
    fn default_spec_is_valid() {
        let spec = parse(&default_spec()).expect("parses");
        validate(&spec, Path::new("config.json")).expect("valid");
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = default_spec();
        v["process"]["user"]["uid"] = json!("root");
        let e = parse(&v).expect_err("bad uid").to_string();
        assert!(
            e.starts_with("config.json: process.user.uid: invalid type: string \"root\""),
            "{e}"
        );
    }

    #[test]
    fn refusals() {
        type Case = (fn(&mut Value), &'static str);
        let cases: Vec<Case> = vec![
            (
                |v| v["ociVersion"] = json!("2.0.0"),
                "ociVersion: \"2.0.0\" is not a supported version",
            ),
            (
                |v| v["process"]["args"] = json!([]),
                "process.args: must not be empty",
            ),
            (
                |v| v["process"]["cwd"] = json!("tmp"),
                "process.cwd: \"tmp\" is not absolute",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{ "type": "pid" }]),
                "hostname: setting a hostname needs a private UTS namespace",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{ "type": "uts" }, { "type": "uts" }]),
                "duplicate namespace",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{ "type": "uts" }, { "type": "user" }]),
                "linux.uidMappings: a new user namespace needs uid mappings",
            ),
            (
                |v| v["linux"]["sysctl"] = json!({ "vm.swappiness": "1" }),
                "linux.sysctl.vm.swappiness: is not namespaced",
            ),
            (
                |v| v["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" }),
                "linux.sysctl.net.ipv4.ip_forward: needs a private Network namespace",
            ),
            (
                |v| v["mounts"][0]["destination"] = json!("proc"),
                "mounts[0].destination: \"proc\" is not absolute",
            ),
            (
                |v| v["linux"]["rootfsPropagation"] = json!("sideways"),
                "linux.rootfsPropagation: \"sideways\" is not a propagation mode",
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            let mut v = default_spec();
            if i == 7 {
                v["linux"]["namespaces"] = json!([{ "type": "uts" }]);
            }
            edit(&mut v);
            let e = parse(&v).and_then(|s| validate(&s, Path::new("config.json")).map(|_| s));
            let e = e.expect_err(want).to_string();
            assert!(e.contains(want), "case {i}: {e}");
        }
    }
}
