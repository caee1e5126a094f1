//! Creating, running (in the foreground), removing, committing, diffing and
//! exporting containers.
//!
//! A foreground run mounts the container's overlay root, writes its bundle,
//! creates and starts it with [`crate::oci`] in this process (which is
//! single-threaded then, as cloning requires), forwards signals to it, waits,
//! deletes the OCI container, unmounts, and records the exit code. The container's
//! lock is held while its state changes, not while it runs, so `ps`, `rm -f` and
//! the others work meanwhile. A run whose `berth` was killed is found by the
//! next command that locks the container (its init is gone): the OCI state is
//! deleted, the root unmounted, the container marked exited.

use std::io::Write;

use serde_json::{Value, json};

use super::config::{oci_config, write_bundle};
use super::container::{Container, RunConfig, RunState, Status, random_id};
use super::{Engine, Error, Result};
use crate::image::commit::{CommitOptions, commit as commit_image};
use crate::image::load::Loaded;
use crate::image::reference::Reference;
use crate::layers::archive::Written;
use crate::layers::changes::{Change, changes, export as export_tree};
use crate::layers::overlay::unmount;
use crate::oci::create::{CreateOptions, create as oci_create};
use crate::oci::exec::wait_exit_code;
use crate::oci::ops;
use crate::oci::state::process_start_time;
use crate::oci::time::now_rfc3339_nanos;

/// What `create`/`run` take besides the image.
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    /// `--name`.
    pub name: Option<String>,
    /// `-e KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u user[:group]`.
    pub user: Option<String>,
    /// `-h`.
    pub hostname: Option<String>,
    /// `--entrypoint` (empty: none).
    pub entrypoint: Option<String>,
    /// The command after the image.
    pub cmd: Vec<String>,
    /// `--env-file` files.
    pub env_files: Vec<std::path::PathBuf>,
    /// `-v HOST:CONTAINER[:ro|rw]`.
    pub volumes: Vec<String>,
    /// `--tmpfs DIR`.
    pub tmpfs: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `-m`.
    pub memory: Option<String>,
    /// `--cpus`.
    pub cpus: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes a container of `image`: its record and its read-write layer.
pub fn create(e: &Engine, image: &str, o: &NewContainer) -> Result<Container> {
    let db = e.images.db()?;
    let rec = db.resolve(image)?.clone();
    let config = e.images.config(&rec)?;
    let ic = &config["config"];
    let entrypoint = match &o.entrypoint {
        Some(ep) if ep.is_empty() => Vec::new(),
        Some(ep) => vec![ep.clone()],
        None => strings(&ic["Entrypoint"]),
    };
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        Vec::new()
    } else {
        strings(&ic["Cmd"])
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(Error::State {
            id: image.to_string(),
            msg: "no command specified (the image has no Cmd or Entrypoint)".into(),
        });
    }
    // Every flag is checked before anything is made.
    let mut env = strings(&ic["Env"]);
    for f in &o.env_files {
        env = super::config::merge_env(&env, &super::config::read_env_file(f)?);
    }
    let env = super::config::merge_env(&env, &o.env);
    let volumes = o
        .volumes
        .iter()
        .map(|v| super::config::parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    if let Some(t) = o
        .tmpfs
        .iter()
        .find(|t| !t.starts_with('/') || t.as_str() == "/")
    {
        return Err(Error::Flag(
            format!("--tmpfs {t:?}"),
            "the path must be absolute and not /".into(),
        ));
    }
    let memory = o
        .memory
        .as_deref()
        .map(|m| super::config::parse_size("-m", m))
        .transpose()?;
    let nano_cpus = o
        .cpus
        .as_deref()
        .map(super::config::parse_cpus)
        .transpose()?;
    if let Some(p) = o.pids_limit
        && p == 0
    {
        return Err(Error::Flag(
            "--pids-limit 0".into(),
            "use a positive limit, or -1 for none".into(),
        ));
    }
    let id = random_id()?;
    let names = e.containers.names_lock()?;
    let name = e.containers.pick_name(o.name.as_deref())?;
    let lock = e.containers.create_dir(&id)?;
    let made = (|| {
        e.images.create_snapshot(&id, &rec.id().to_string())?;
        let c = Container {
            id: id.clone(),
            name,
            image: rec.id().clone(),
            image_name: image.to_string(),
            created: now_rfc3339_nanos(),
            config: RunConfig {
                entrypoint,
                cmd,
                env,
                workdir: o
                    .workdir
                    .clone()
                    .unwrap_or_else(|| ic["WorkingDir"].as_str().unwrap_or("").to_string()),
                user: o
                    .user
                    .clone()
                    .unwrap_or_else(|| ic["User"].as_str().unwrap_or("").to_string()),
                hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
                volumes,
                tmpfs: o.tmpfs.clone(),
                read_only: o.read_only,
                memory,
                nano_cpus,
                pids_limit: o.pids_limit.filter(|p| *p > 0),
            },
            state: RunState {
                status: Status::Created,
                pid: 0,
                monitor: 0,
                exit_code: 0,
                started_at: None,
                finished_at: None,
            },
        };
        e.containers.save(&c)?;
        Ok(c)
    })();
    drop(names);
    if made.is_err() {
        let _ = e.images.snapshots().remove(&id);
        let _ = e.containers.remove_dir(&id);
    }
    drop(lock);
    made
}

/// Brings a record in line with the kernel: a "running" container whose init and
/// monitor are gone (its `berth` was killed) is cleaned up and marked exited.
fn reconcile(e: &Engine, c: &mut Container) -> Result<()> {
    // Nothing to do unless both the init and the process that waits for it are gone
    // (while that process lives, it records the exit itself).
    if c.state.status != Status::Running
        || process_start_time(c.state.pid).is_some()
        || (c.state.monitor > 0 && process_start_time(c.state.monitor).is_some())
    {
        return Ok(());
    }
    let _ = ops::delete(&e.oci, &c.id, true);
    let snap = e.images.snapshots().get(&c.id)?;
    unmount(&snap.rootfs(), &snap.dir.join("scratch"))?;
    c.state.status = Status::Exited;
    c.state.exit_code = 255;
    c.state.finished_at = Some(now_rfc3339_nanos());
    e.containers.save(c)
}

/// [`reconcile`] for the monitor module (the caller holds the lock).
pub(crate) fn reconcile_pub(e: &Engine, c: &mut Container) -> Result<()> {
    reconcile(e, c)
}

/// The container, its record reconciled, locked.
fn locked(e: &Engine, what: &str) -> Result<(Container, super::container::Locked)> {
    let found = e.containers.resolve(what)?;
    let lock = e.containers.lock(&found.id)?;
    let mut c = e.containers.load(&found.id)?;
    reconcile(e, &mut c)?;
    Ok((c, lock))
}

/// Starts a container with this process's stdio: mounts its root, writes its
/// bundle, creates and starts the OCI container (whose init is this process's
/// child), records it running. Returns (id, init pid).
pub(crate) fn launch(e: &Engine, what: &str) -> Result<(String, i32)> {
    let (mut c, lock) = locked(e, what)?;
    if c.state.status == Status::Running {
        return Err(Error::State {
            id: c.id.clone(),
            msg: "is already running".into(),
        });
    }
    let snap = e.images.snapshots().get(&c.id)?;
    let root = snap.mount()?;
    let bundle = e.containers.dir(&c.id).join("bundle");
    let spec = oci_config(&c.config, &snap.rootfs())?;
    write_bundle(&bundle, &spec)?;
    // A leftover of a run that was killed before it could delete its OCI state.
    let _ = ops::delete(&e.oci, &c.id, true);
    let created = oci_create(
        &e.oci,
        &CreateOptions {
            id: c.id.clone(),
            bundle,
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            preserve_fds: 0,
            own_terminal: false,
        },
    )?;
    let pid = created.pid;
    drop(created.dir);
    c.state = RunState {
        status: Status::Running,
        pid,
        monitor: std::process::id() as i32,
        exit_code: 0,
        started_at: Some(now_rfc3339_nanos()),
        finished_at: None,
    };
    let saved = e
        .containers
        .save(&c)
        .and_then(|()| ops::start(&e.oci, &c.id).map_err(Error::Oci));
    if let Err(err) = saved {
        let _ = ops::delete(&e.oci, &c.id, true);
        c.state.status = Status::Exited;
        c.state.exit_code = 125;
        let _ = e.containers.save(&c);
        return Err(err);
    }
    root.keep();
    drop(lock);
    Ok((c.id, pid))
}

/// After the init of `id` ended with `code`: deletes the OCI container, unmounts
/// the root, records the exit. A container removed meanwhile (`rm -f`, which
/// cleaned up) is left alone.
pub(crate) fn finish(e: &Engine, id: &str, code: i32) -> Result<()> {
    let lock = match e.containers.lock(id) {
        Ok(l) => l,
        Err(Error::NoSuchContainer(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    if !e.containers.dir(id).join("container.json").exists() {
        return Ok(());
    }
    let _ = ops::delete(&e.oci, id, true);
    let snap = e.images.snapshots().get(id)?;
    unmount(&snap.rootfs(), &snap.dir.join("scratch"))?;
    let mut c = e.containers.load(id)?;
    c.state.status = Status::Exited;
    c.state.exit_code = code;
    c.state.pid = 0;
    c.state.finished_at = Some(now_rfc3339_nanos());
    e.containers.save(&c)?;
    drop(lock);
    Ok(())
}

/// Runs a container in the foreground (stdio inherited); returns its exit code.
pub fn start_foreground(e: &Engine, what: &str) -> Result<i32> {
    let (id, pid) = launch(e, what)?;
    crate::oci::signals::forward_to(pid);
    let code = wait_exit_code(pid);
    finish(e, &id, code)?;
    Ok(code)
}

/// Removes a container (a running one only with `force`, which kills it first).
pub fn remove(e: &Engine, what: &str, force: bool) -> Result<String> {
    let (c, lock) = locked(e, what)?;
    if c.state.status == Status::Running {
        if !force {
            return Err(Error::State {
                id: c.id[..12].to_string(),
                msg: "cannot remove a running container: stop it first, or use rm -f".into(),
            });
        }
        let _ = ops::kill_container(&e.oci, &c.id, libc::SIGKILL, true);
        // Its foreground `berth` reaps it; wait (briefly) for the init to be gone.
        for _ in 0..200 {
            if process_start_time(c.state.pid).is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = ops::delete(&e.oci, &c.id, true);
    }
    e.images.snapshots().remove(&c.id)?;
    e.containers.remove_dir(&c.id)?;
    drop(lock);
    Ok(c.id)
}

/// The image config `config` section of a container, for commit.
fn container_config(e: &Engine, c: &Container) -> Result<Value> {
    let rec = e.images.db()?.images.get(&c.image).cloned();
    let mut base = match rec {
        Some(r) => e.images.config(&r)?["config"].clone(),
        None => json!({}),
    };
    if !base.is_object() {
        base = json!({});
    }
    base["Env"] = json!(c.config.env);
    base["Cmd"] = json!(c.config.cmd);
    base["Entrypoint"] = if c.config.entrypoint.is_empty() {
        Value::Null
    } else {
        json!(c.config.entrypoint)
    };
    base["WorkingDir"] = json!(c.config.workdir);
    base["User"] = json!(c.config.user);
    Ok(base)
}

/// `berth commit`: the container's changes as a new image.
pub fn commit(
    e: &Engine,
    what: &str,
    tag: Option<&Reference>,
    author: Option<String>,
    comment: Option<String>,
) -> Result<Loaded> {
    let (c, _lock) = locked(e, what)?;
    let snap = e.images.snapshots().get(&c.id)?;
    let opts = CommitOptions {
        author,
        comment,
        config: Some(container_config(e, &c)?),
    };
    Ok(commit_image(&e.images, &snap, tag, &opts)?)
}

/// `berth diff`.
pub fn diff(e: &Engine, what: &str) -> Result<Vec<Change>> {
    let c = e.containers.resolve(what)?;
    let snap = e.images.snapshots().get(&c.id)?;
    Ok(changes(&snap)?)
}

/// `berth export`: the container's whole tree as a tar.
pub fn export<W: Write>(e: &Engine, what: &str, out: W) -> Result<(W, Written)> {
    let c = e.containers.resolve(what)?;
    let snap = e.images.snapshots().get(&c.id)?;
    Ok(export_tree(&snap, out)?)
}

/// Exit code a shell gives for a command that could not run: 127 not found, 126
/// not executable, 125 anything else (Docker's convention for `docker run`).
pub fn exit_code_for(err: &Error) -> u8 {
    let msg = err.to_string();
    let exec = msg.contains("exec:");
    if msg.contains("executable file not found")
        || (exec && msg.contains("No such file or directory"))
    {
        127
    } else if exec && msg.contains("permission denied") {
        126
    } else {
        125
    }
}

/// `berth inspect` of a container: Docker's field names.
pub fn inspect(e: &Engine, what: &str) -> Result<Value> {
    let c = e.containers.resolve(what)?;
    let running = c.state.status == Status::Running && process_start_time(c.state.pid).is_some();
    let snap = e.images.snapshots().get(&c.id)?;
    let lowers: Vec<String> = snap
        .lower_dirs()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let argv = c.config.argv();
    let status = match c.state.status {
        Status::Created => "created",
        _ if running => "running",
        _ => "exited",
    };
    Ok(json!({
        "Id": c.id,
        "Created": c.created,
        "Path": argv.first(),
        "Args": argv.get(1..).unwrap_or(&[]),
        "State": {
            "Status": status,
            "Running": running,
            "Paused": false,
            "Pid": if running { c.state.pid } else { 0 },
            "ExitCode": c.state.exit_code,
            "StartedAt": c.state.started_at,
            "FinishedAt": c.state.finished_at,
        },
        "Image": c.image,
        "Name": format!("/{}", c.name),
        "LogPath": super::monitor::log_path(e, &c.id),
        "Config": {
            "Hostname": c.config.hostname,
            "User": c.config.user,
            "Env": c.config.env,
            "Cmd": c.config.cmd,
            "Entrypoint": if c.config.entrypoint.is_empty() { Value::Null } else { json!(c.config.entrypoint) },
            "WorkingDir": c.config.workdir,
            "Image": c.image_name,
        },
        "HostConfig": {
            "Binds": c.config.volumes.iter().map(|v| format!("{}:{}:{}", v.source, v.target, if v.read_only { "ro" } else { "rw" })).collect::<Vec<_>>(),
            "Tmpfs": c.config.tmpfs.iter().map(|t| (t.clone(), json!(""))).collect::<serde_json::Map<_, _>>(),
            "ReadonlyRootfs": c.config.read_only,
            "Memory": c.config.memory.unwrap_or(0),
            "NanoCpus": c.config.nano_cpus.unwrap_or(0),
            "PidsLimit": c.config.pids_limit,
        },
        "Mounts": c.config.volumes.iter().map(|v| json!({
            "Type": "bind", "Source": v.source, "Destination": v.target, "RW": !v.read_only,
        })).collect::<Vec<_>>(),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": lowers.join(":"),
                "UpperDir": snap.upper(),
                "WorkDir": snap.dir.join("work"),
                "MergedDir": snap.rootfs(),
            },
        },
    }))
}

/// `berth rename OLD NEW`.
pub fn rename(e: &Engine, what: &str, new_name: &str) -> Result<()> {
    let names = e.containers.names_lock()?;
    let found = e.containers.resolve(what)?;
    let name = e.containers.pick_name(Some(new_name))?;
    let _lock = e.containers.lock(&found.id)?;
    let mut c = e.containers.load(&found.id)?;
    c.name = name;
    e.containers.save(&c)?;
    drop(names);
    Ok(())
}
