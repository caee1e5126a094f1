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
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{Value, json};

use super::config::{oci_config, write_bundle};
use super::container::{
    Container, NetworkMode, RestartPolicy, RunConfig, RunState, Status, alive, random_id,
};
use super::{Engine, Error, IoContext, Result};
use crate::image::commit::{CommitOptions, commit as commit_image};
use crate::image::load::Loaded;
use crate::image::reference::Reference;
use crate::layers::archive::Written;
use crate::layers::changes::{Change, changes, export as export_tree};
use crate::layers::overlay::unmount;
use crate::oci::create::{CreateOptions, create as oci_create};
use crate::oci::exec::wait_exit_code;
use crate::oci::ops;
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
    /// `--memory-swap`.
    pub memory_swap: Option<String>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--ulimit`.
    pub ulimits: Vec<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--init`.
    pub init: bool,
    /// `--restart`.
    pub restart: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm` (refused with a restart policy, as Docker does).
    pub auto_remove: bool,
    /// `--log-opt KEY=VALUE` (max-size, max-file).
    pub log_opts: Vec<String>,
    /// `-p`.
    pub publish: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--ip`.
    pub ip: Option<std::net::Ipv4Addr>,
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
    let memory_swap = o
        .memory_swap
        .as_deref()
        .map(|s| super::config::parse_memory_swap(s, memory))
        .transpose()?;
    if o.cpu_shares == Some(0) {
        return Err(Error::Flag(
            "--cpu-shares 0".into(),
            "use a positive weight (1024 is the default)".into(),
        ));
    }
    let cpuset_cpus = o
        .cpuset_cpus
        .as_deref()
        .map(super::config::parse_cpuset)
        .transpose()?;
    let ulimits = o
        .ulimits
        .iter()
        .map(|u| super::config::parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    let cap_add = super::config::parse_caps("--cap-add", &o.cap_add)?;
    let cap_drop = super::config::parse_caps("--cap-drop", &o.cap_drop)?;
    let mut caps_for_profile: Vec<String> = crate::oci::default_profile::DEFAULT_CAPS
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !cap_drop.contains(c))
        .collect();
    caps_for_profile.extend(cap_add.iter().cloned());
    let (new_privileges, seccomp) =
        super::config::parse_security_opts(&o.security_opt, &caps_for_profile)?;
    if o.init {
        super::config::init_binary()?;
    }
    let restart = o
        .restart
        .as_deref()
        .map(super::config::parse_restart)
        .transpose()?
        .unwrap_or_default();
    if o.auto_remove && restart != RestartPolicy::No {
        return Err(Error::Flag(
            "--restart with --rm".into(),
            "conflicting options: a container removed when it exits cannot be restarted".into(),
        ));
    }
    let wanted = o
        .network
        .clone()
        .unwrap_or_else(|| e.default_network.clone());
    // `container:NAME` shares that container's name for the host, as Docker does.
    let mut container_hostname = None;
    let network = match wanted.as_str() {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        n if n.starts_with("container:") => {
            let other = &n["container:".len()..];
            let found = e.containers.resolve(other).map_err(|_| {
                Error::Flag(
                    format!("--network {n:?}"),
                    format!("no such container: {other}"),
                )
            })?;
            if o.hostname.is_some() {
                return Err(Error::Flag(
                    "-h".into(),
                    "conflicting options: a hostname with --network container:… (the network's container names the host)".into(),
                ));
            }
            container_hostname = Some(found.config.hostname.clone());
            NetworkMode::Container(found.id)
        }
        crate::network::DEFAULT => NetworkMode::Bridge(crate::network::DEFAULT.into()),
        n => {
            let found = e
                .networks
                .get(n)
                .map_err(|err| Error::Flag(format!("--network {n:?}"), err.to_string()))?;
            NetworkMode::Bridge(found.name)
        }
    };
    let mut ports = Vec::new();
    for p in &o.publish {
        ports.extend(crate::network::PortSpec::parse(p)?);
    }
    if o.publish_all {
        let given: Vec<_> = ports.iter().map(|p| (p.container_port, p.proto)).collect();
        for k in ic["ExposedPorts"]
            .as_object()
            .map(|m| m.keys())
            .into_iter()
            .flatten()
        {
            let got = crate::network::PortSpec::parse(k).map_err(|_| {
                Error::Flag(
                    "-P".into(),
                    format!("the image exposes {k:?}, which is not a port"),
                )
            })?;
            ports.extend(
                got.into_iter()
                    .filter(|p| !given.contains(&(p.container_port, p.proto))),
            );
        }
    }
    let bridged = matches!(network, NetworkMode::Bridge(_));
    if !ports.is_empty() && !bridged {
        return Err(Error::Flag(
            "--publish".into(),
            format!(
                "conflicting options: port publishing and the network mode {}",
                network_mode(&network)
            ),
        ));
    }
    if let Some(ip) = o.ip {
        match &network {
            NetworkMode::Bridge(n) if n != crate::network::DEFAULT => {}
            _ => {
                return Err(Error::Flag(
                    format!("--ip {ip}"),
                    "a fixed address is supported on user-defined networks only".into(),
                ));
            }
        }
    }
    let hostname = match (&o.hostname, &network) {
        (Some(h), _) => h.clone(),
        (None, NetworkMode::Container(_)) => container_hostname.unwrap_or_default(),
        (None, NetworkMode::Host) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let (log_max_size, log_max_files) = super::config::parse_log_opts(&o.log_opts)?;
    let id = random_id()?;
    let hostname = if hostname.is_empty() {
        id[..12].to_string()
    } else {
        hostname
    };
    let names = e.containers.names_lock()?;
    let name = e.containers.pick_name(o.name.as_deref())?;
    let lock = e.containers.create_dir(&id)?;
    // The image's VOLUMEs that no -v covers are anonymous volumes, as Docker's.
    let mut volumes = volumes;
    for t in ic["Volumes"]
        .as_object()
        .map(|m| m.keys())
        .into_iter()
        .flatten()
    {
        if !volumes
            .iter()
            .any(|v| v.target.trim_end_matches('/') == t.trim_end_matches('/'))
        {
            volumes.push(super::container::Volume {
                target: t.clone(),
                ..Default::default()
            });
        }
    }
    let made = (|| {
        for v in volumes.iter_mut().filter(|v| v.source.is_empty()) {
            let (name, anonymous) = match &v.name {
                Some(n) => (n.clone(), false),
                None => (random_id()?, true),
            };
            e.volumes.ensure(&name, anonymous)?;
            v.source = e.volumes.data(&name).display().to_string();
            v.name = Some(name);
        }
        e.images
            .create_snapshot(&id, &rec.id().to_string())?
            .add_init(&super::network::INIT_FILES)?;
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
                hostname,
                volumes: volumes.clone(),
                tmpfs: o.tmpfs.clone(),
                read_only: o.read_only,
                memory,
                nano_cpus,
                pids_limit: o.pids_limit.filter(|p| *p > 0),
                memory_swap,
                cpu_shares: o.cpu_shares,
                cpuset_cpus,
                ulimits,
                cap_add,
                cap_drop,
                privileged: o.privileged,
                new_privileges,
                seccomp,
                init: o.init,
                restart,
                network,
                tty: o.tty,
                interactive: o.interactive,
                log_max_size,
                log_max_files,
                ports,
                publish_all: o.publish_all,
                ip: o.ip,
            },
            state: RunState::default(),
        };
        e.containers.save(&c)?;
        Ok(c)
    })();
    drop(names);
    if made.is_err() {
        let _ = e.images.snapshots().remove(&id);
        let _ = e.containers.remove_dir(&id);
        let _ = super::volume::remove_anonymous(e, &volumes);
    }
    drop(lock);
    made
}

/// Brings a record in line with the kernel; the caller holds the container's
/// lock, so nobody is starting it meanwhile. A container not running keeps no
/// OCI container and no root mount: what a `berth` or monitor killed half way
/// through starting it left is removed. A "running" one whose monitor is gone
/// and whose init is gone too, or never started (still waiting in `created`),
/// is cleaned up and marked exited (255). One whose init runs on without its
/// monitor is left running (`stop` and `rm -f` end it).
fn reconcile(e: &Engine, c: &mut Container) -> Result<()> {
    let oci = ops::open(&e.oci, &c.id).ok().map(|o| o.status);
    if c.state.status == Status::Running {
        if alive(c.state.monitor) {
            return Ok(());
        }
        let started = matches!(
            oci,
            Some(crate::oci::state::Status::Running | crate::oci::state::Status::Paused)
        );
        if alive(c.state.pid) && started {
            return Ok(());
        }
    } else if oci.is_none()
        && !is_mount_point(&e.images.snapshots().get(&c.id)?.rootfs())
        && !e.networks.holds(&c.id)
    {
        // The common case: nothing was left.
        return Ok(());
    }
    let _ = ops::delete(&e.oci, &c.id, true);
    super::network::release(e, &c.id)?;
    let snap = e.images.snapshots().get(&c.id)?;
    unmount(&snap.rootfs(), &snap.dir.join("scratch"))?;
    if c.state.status == Status::Running {
        c.state.status = Status::Exited;
        c.state.exit_code = 255;
        c.state.pid = 0;
        c.state.finished_at = Some(now_rfc3339_nanos());
        e.containers.save(c)?;
    }
    Ok(())
}

/// Whether `p` is a mount point (its device differs from its parent's).
fn is_mount_point(p: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// [`reconcile`] for the monitor module (the caller holds the lock).
pub(crate) fn reconcile_pub(e: &Engine, c: &mut Container) -> Result<()> {
    reconcile(e, c)
}

/// Repairs what a killed `berth` or monitor left of container `id` (see
/// [`reconcile`]); cheap when there is nothing to do. `ps` calls it for each one.
pub fn repair(e: &Engine, id: &str) -> Result<()> {
    let c = e.containers.load(id)?;
    let suspect = match c.state.status {
        Status::Running => !alive(c.state.monitor),
        _ => {
            e.oci.dir(id).exists()
                || is_mount_point(&e.images.snapshots().get(id)?.rootfs())
                || e.networks.holds(id)
        }
    };
    if suspect {
        let _lock = e.containers.lock(id)?;
        let mut c = e.containers.load(id)?;
        reconcile(e, &mut c)?;
    }
    Ok(())
}

/// `c` as it stands now: a record read as running whose init and monitor are
/// both gone is read again (its monitor may have recorded the exit just after
/// `c` was read) after repairing what a killed monitor left.
pub fn current(e: &Engine, c: Container) -> Result<Container> {
    if c.state.status != Status::Running || c.state.shown_running() {
        return Ok(c);
    }
    repair(e, &c.id)?;
    e.containers.load(&c.id)
}

/// The container, its record reconciled, locked.
fn locked(e: &Engine, what: &str) -> Result<(Container, super::container::Locked)> {
    let found = e.containers.resolve(what)?;
    let lock = e.containers.lock(&found.id)?;
    let mut c = e.containers.load(&found.id)?;
    reconcile(e, &mut c)?;
    Ok((c, lock))
}

/// A container just started by [`launch`].
pub(crate) struct Launched {
    /// Its id.
    pub id: String,
    /// Its init's host pid (a child of this process).
    pub pid: i32,
    /// With `-t`: the pty's master.
    pub master: Option<OwnedFd>,
}

/// Starts a container with this process's stdio (or a pty with `-t`): mounts its
/// root, writes its bundle, creates the OCI container (whose init is this
/// process's child), prepares its network, records it running, starts it.
/// A `restart` (by the policy) is refused when a user stopped the container
/// meanwhile; a user's start clears that mark.
pub(crate) fn launch(e: &Engine, what: &str, restart: bool) -> Result<Launched> {
    let (mut c, lock) = locked(e, what)?;
    if c.state.status == Status::Running {
        return Err(Error::State {
            id: c.id.clone(),
            msg: "is already running".into(),
        });
    }
    if restart && c.state.stopped_by_user {
        return Err(Error::State {
            id: c.id[..12].to_string(),
            msg: "was stopped by its user: not restarted".into(),
        });
    }
    // The container whose network this one joins must be running.
    let net_pid = match &c.config.network {
        NetworkMode::Container(other) => {
            let o = e.containers.load(other).map_err(|_| Error::State {
                id: c.id[..12].to_string(),
                msg: format!(
                    "the network's container {} is gone",
                    &other[..12.min(other.len())]
                ),
            })?;
            if !o.state.init_running() {
                return Err(Error::State {
                    id: c.id[..12].to_string(),
                    msg: format!(
                        "cannot join the network of a container that is not running: {}",
                        o.name
                    ),
                });
            }
            Some(o.state.pid)
        }
        _ => None,
    };
    crate::fault::point("run.before-mount").map_err(Error::Oci)?;
    let snap = e.images.snapshots().get(&c.id)?;
    let root = snap.mount()?;
    crate::fault::point("run.after-mount").map_err(Error::Oci)?;
    super::volume::populate(&snap.rootfs(), &c.config.volumes)?;
    let bundle = e.containers.dir(&c.id).join("bundle");
    let mut spec = oci_config(&c.config, &snap.rootfs())?;
    if let Some(pid) = net_pid {
        super::config::net_join(&mut spec, pid);
    }
    let dns = super::network::files(e, &c)?;
    if let Some(m) = spec["mounts"].as_array_mut() {
        m.extend(dns);
    }
    write_bundle(&bundle, &spec)?;
    // A leftover of a run that was killed before it could delete its OCI state.
    let _ = ops::delete(&e.oci, &c.id, true);
    super::network::reserve(e, &c)?;
    let created = oci_create(
        &e.oci,
        &CreateOptions {
            id: c.id.clone(),
            bundle,
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            preserve_fds: 0,
            own_terminal: c.config.tty,
            close_in_child: vec![lock.raw_fd()],
        },
    )
    .inspect_err(|_| {
        let _ = super::network::release(e, &c.id);
    })?;
    let pid = created.pid;
    let master = created
        .console
        .as_ref()
        .map(crate::tty::recv_master)
        .transpose();
    drop(created.dir);
    let prepared = master.map_err(Error::Oci).and_then(|m| {
        crate::fault::point("run.after-create").map_err(Error::Oci)?;
        super::network::prepare(e, &c, pid)?;
        Ok(m)
    });
    let master = match prepared {
        Ok(m) => m,
        Err(err) => {
            let _ = ops::delete(&e.oci, &c.id, true);
            let _ = super::network::release(e, &c.id);
            return Err(err);
        }
    };
    c.state = RunState {
        status: Status::Running,
        pid,
        monitor: std::process::id() as i32,
        started_at: Some(now_rfc3339_nanos()),
        restart_count: c.state.restart_count,
        ..RunState::default()
    };
    let saved = e
        .containers
        .save(&c)
        .and_then(|()| crate::fault::point("run.before-start").map_err(Error::Oci))
        .and_then(|()| ops::start(&e.oci, &c.id).map_err(Error::Oci));
    if let Err(err) = saved {
        let _ = ops::delete(&e.oci, &c.id, true);
        let _ = super::network::release(e, &c.id);
        c.state.status = Status::Exited;
        c.state.exit_code = 125;
        let _ = e.containers.save(&c);
        return Err(err);
    }
    root.keep();
    crate::fault::point("run.after-start").map_err(Error::Oci)?;
    drop(lock);
    Ok(Launched {
        id: c.id.clone(),
        pid,
        master,
    })
}

/// After the init of `id` ended with `code`: notes whether the OOM killer struck,
/// deletes the OCI container, unmounts the root, records the exit. Returns the
/// record (None when the container was removed meanwhile by `rm -f`, which
/// cleaned up).
pub(crate) fn finish(e: &Engine, id: &str, code: i32) -> Result<Option<Container>> {
    let lock = match e.containers.lock(id) {
        Ok(l) => l,
        Err(Error::NoSuchContainer(_)) => return Ok(None),
        Err(err) => return Err(err),
    };
    if !e.containers.dir(id).join("container.json").exists() {
        return Ok(None);
    }
    let oom = oom_killed(e, id);
    let _ = ops::delete(&e.oci, id, true);
    let released = super::network::release_after_exit(e, id);
    let snap = e.images.snapshots().get(id)?;
    unmount(&snap.rootfs(), &snap.dir.join("scratch"))?;
    let mut c = e.containers.load(id)?;
    c.state.status = Status::Exited;
    c.state.exit_code = code;
    c.state.pid = 0;
    c.state.paused = false;
    c.state.oom_killed = oom;
    c.state.finished_at = Some(now_rfc3339_nanos());
    e.containers.save(&c)?;
    drop(lock);
    released?;
    Ok(Some(c))
}

/// Whether the kernel's OOM killer killed a process in the container's cgroup
/// (read before the cgroup is removed).
fn oom_killed(e: &Engine, id: &str) -> bool {
    ops::open(&e.oci, id)
        .ok()
        .and_then(|c| crate::oci::cgroups::oom_kills(&c.state.cgroup))
        .is_some_and(|n| n > 0)
}

/// What the restart policy says after a run that ended with the record `c`
/// (which ran for `ran`): wait this long, then start it again.
pub(crate) fn restart_delay(
    c: &Container,
    ran: std::time::Duration,
    delay: &mut std::time::Duration,
) -> Option<std::time::Duration> {
    let again = match c.config.restart {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure { max_retries } => {
            c.state.exit_code != 0 && (max_retries == 0 || c.state.restart_count < max_retries)
        }
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
    };
    if !again || c.state.stopped_by_user {
        return None;
    }
    // Docker's back-off: 100 ms, doubled each time, reset after a run of 10 s.
    if ran >= std::time::Duration::from_secs(10) {
        *delay = std::time::Duration::from_millis(100);
    }
    let d = *delay;
    *delay = (*delay * 2).min(std::time::Duration::from_secs(60));
    Some(d)
}

/// Counts a restart in the record; false when the container is gone or a user
/// stopped it meanwhile.
pub(crate) fn note_restart(e: &Engine, id: &str) -> Result<bool> {
    let _lock = match e.containers.lock(id) {
        Ok(l) => l,
        Err(Error::NoSuchContainer(_)) => return Ok(false),
        Err(err) => return Err(err),
    };
    let mut c = match e.containers.load(id) {
        Ok(c) => c,
        Err(Error::NoSuchContainer(_)) => return Ok(false),
        Err(err) => return Err(err),
    };
    if c.state.stopped_by_user || c.state.status == Status::Running {
        return Ok(false);
    }
    c.state.restart_count += 1;
    e.containers.save(&c)?;
    Ok(true)
}

/// Runs `f` with /dev/null as this process's descriptors `fds` (what a
/// container's process inherits: stdin when it is not interactive, all three
/// when detached), and puts them back after.
pub(crate) fn with_stdio_null<T>(fds: &[i32], f: impl FnOnce() -> T) -> Result<T> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .io("opening", "/dev/null")?;
    // SAFETY: dup/dup2 on descriptors this process owns; each is put back after.
    unsafe {
        let saved: Vec<(i32, i32)> = fds.iter().map(|fd| (*fd, libc::dup(*fd))).collect();
        for fd in fds {
            libc::dup2(null.as_raw_fd(), *fd);
        }
        let r = f();
        for (fd, copy) in saved {
            if copy >= 0 {
                libc::dup2(copy, fd);
                libc::close(copy);
            }
        }
        Ok(r)
    }
}

/// Runs a container in the foreground (stdio attached; a pty with `-t`; stdin
/// only with `-i`) and applies its restart policy; returns the last exit code.
pub fn start_foreground(e: &Engine, what: &str) -> Result<i32> {
    let mut delay = std::time::Duration::from_millis(100);
    let id = e.containers.resolve(what)?.id;
    let (mut began_any, mut last_code) = (false, 0);
    loop {
        let c = e.containers.load(&id)?;
        let (tty, interactive) = (c.config.tty, c.config.interactive);
        let began = std::time::Instant::now();
        let restart = began_any;
        began_any = true;
        let l = match if interactive || tty {
            launch(e, &id, restart)
        } else {
            with_stdio_null(&[0], || launch(e, &id, restart))?
        } {
            Ok(l) => l,
            Err(err) if !restart => return Err(err),
            Err(_) => return Ok(last_code),
        };
        crate::oci::signals::forward_to(l.pid);
        if let Some(master) = l.master {
            crate::tty::proxy(master, interactive);
        }
        let code = wait_exit_code(l.pid);
        last_code = code;
        let Some(after) = finish(e, &l.id, code)? else {
            return Ok(code);
        };
        match restart_delay(&after, began.elapsed(), &mut delay) {
            Some(d) => {
                std::thread::sleep(d);
                if !note_restart(e, &id)? {
                    return Ok(code);
                }
            }
            None => return Ok(code),
        }
    }
}

/// Removes a container and its anonymous volumes (`rm -v`, `--rm`).
pub fn remove_with_volumes(e: &Engine, what: &str, force: bool) -> Result<String> {
    let c = e.containers.resolve(what)?;
    let id = remove(e, what, force)?;
    super::volume::remove_anonymous(e, &c.config.volumes)?;
    Ok(id)
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
            if !alive(c.state.pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = ops::delete(&e.oci, &c.id, true);
    }
    super::network::release(e, &c.id)?;
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
    let c = current(e, e.containers.resolve(what)?)?;
    let running = c.state.shown_running();
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
    let mut network_settings = super::netcmd::settings(e, &c.id, &c.config.network, running);
    network_settings["SandboxKey"] = if running && c.config.network != NetworkMode::Host {
        json!(format!("/proc/{}/ns/net", c.state.pid))
    } else {
        json!("")
    };
    let mut bindings = serde_json::Map::new();
    for p in &c.config.ports {
        let k = format!("{}/{}", p.container_port, p.proto);
        let host_port = if p.host_port == 0 {
            String::new()
        } else {
            p.host_port.to_string()
        };
        let entry = bindings.entry(k).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip.to_string(), "HostPort": host_port}));
        }
    }
    Ok(json!({
        "Id": c.id,
        "Created": c.created,
        "Path": argv.first(),
        "Args": argv.get(1..).unwrap_or(&[]),
        "State": {
            "Status": status,
            "Running": running,
            "Paused": running && c.state.paused,
            "Restarting": false,
            "OOMKilled": c.state.oom_killed,
            "Dead": false,
            "Pid": if running { c.state.pid } else { 0 },
            "ExitCode": c.state.exit_code,
            "StartedAt": c.state.started_at,
            "FinishedAt": c.state.finished_at,
        },
        "Image": c.image,
        "Name": format!("/{}", c.name),
        "RestartCount": c.state.restart_count,
        "LogPath": super::monitor::log_path(e, &c.id),
        "Config": {
            "Hostname": c.config.hostname,
            "User": c.config.user,
            "Env": c.config.env,
            "Cmd": c.config.cmd,
            "Entrypoint": if c.config.entrypoint.is_empty() { Value::Null } else { json!(c.config.entrypoint) },
            "WorkingDir": c.config.workdir,
            "Image": c.image_name,
            "Tty": c.config.tty,
            "OpenStdin": c.config.interactive,
        },
        "HostConfig": {
            "PortBindings": bindings,
            "PublishAllPorts": c.config.publish_all,
            "Binds": c.config.volumes.iter().map(|v| format!("{}:{}:{}", v.source, v.target, if v.read_only { "ro" } else { "rw" })).collect::<Vec<_>>(),
            "Tmpfs": c.config.tmpfs.iter().map(|t| (t.clone(), json!(""))).collect::<serde_json::Map<_, _>>(),
            "ReadonlyRootfs": c.config.read_only,
            "Memory": c.config.memory.unwrap_or(0),
            "NanoCpus": c.config.nano_cpus.unwrap_or(0),
            "PidsLimit": c.config.pids_limit,
            "MemorySwap": c.config.memory_swap.unwrap_or(0),
            "CpuShares": c.config.cpu_shares.unwrap_or(0),
            "CpusetCpus": c.config.cpuset_cpus.clone().unwrap_or_default(),
            "Ulimits": c.config.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "CapAdd": c.config.cap_add,
            "CapDrop": c.config.cap_drop,
            "Privileged": c.config.privileged,
            "SecurityOpt": security_opts(&c.config),
            "Init": c.config.init,
            "RestartPolicy": restart_policy_json(c.config.restart),
            "NetworkMode": network_mode(&c.config.network),
            "LogConfig": {
                "Type": "json-file",
                "Config": log_config(&c.config),
            },
        },
        "NetworkSettings": network_settings,
        "Mounts": c.config.volumes.iter().map(|v| match &v.name {
            Some(n) => json!({"Type": "volume", "Name": n, "Source": v.source, "Destination": v.target, "Driver": "local", "RW": !v.read_only}),
            None => json!({"Type": "bind", "Source": v.source, "Destination": v.target, "RW": !v.read_only}),
        }).collect::<Vec<_>>(),
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

/// Docker's `HostConfig.RestartPolicy`.
fn restart_policy_json(r: RestartPolicy) -> Value {
    let (name, n) = match r {
        RestartPolicy::No => ("no", 0),
        RestartPolicy::OnFailure { max_retries } => ("on-failure", max_retries),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
    };
    json!({"Name": name, "MaximumRetryCount": n})
}

/// `--network` as Docker writes it.
pub fn network_mode(n: &NetworkMode) -> String {
    match n {
        NetworkMode::None => "none".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::Container(id) => format!("container:{id}"),
        NetworkMode::Bridge(name) => name.clone(),
    }
}

fn security_opts(cfg: &RunConfig) -> Vec<String> {
    let mut v = Vec::new();
    if cfg.new_privileges {
        v.push("no-new-privileges=false".to_string());
    }
    match &cfg.seccomp {
        super::container::Seccomp::Default => {}
        super::container::Seccomp::Unconfined => v.push("seccomp=unconfined".into()),
        super::container::Seccomp::Custom(_) => v.push("seccomp=(custom profile)".into()),
    }
    v
}

fn log_config(cfg: &RunConfig) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(s) = cfg.log_max_size {
        m.insert("max-size".into(), json!(s.to_string()));
    }
    if let Some(n) = cfg.log_max_files {
        m.insert("max-file".into(), json!(n.to_string()));
    }
    Value::Object(m)
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
