//! berth-runc: berth's OCI runtime with runc's command line, flags, exit codes and
//! log format, so containerd and dockerd can use it wherever they use runc.

mod log;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use berth::oci::create::{CreateOptions, create};
use berth::oci::exec::{
    ExecArgs, ExecOptions, ExecOutcome, exec, process_from_args, wait_exit_code,
};
use berth::oci::state::Store;
use berth::oci::{ops, spec};
use clap::{Args, Parser, Subcommand};

use crate::log::Logger;

#[derive(Parser)]
#[command(
    name = "berth-runc",
    version,
    about = "berth's OCI runtime, with runc's command line"
)]
struct Cli {
    /// Root directory for container state.
    #[arg(
        long,
        global = true,
        default_value = "/run/berth-runc",
        env = "BERTH_RUNC_ROOT"
    )]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd's cgroup driver (needs a running systemd).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a default config.json (Docker's defaults) into the bundle.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to every process.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill a running container first; an unknown id is not an error.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a container.
    Exec(ExecCli),
    /// List the processes of a container.
    Ps {
        /// table or json
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        id: String,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        /// table or json
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(UpdateCli),
    /// Print what this runtime supports, as JSON.
    Features,
}

#[derive(Args)]
struct CreateArgs {
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility (berth never makes a session keyring).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many fds after stdio to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Args)]
struct ExecCli {
    /// A process.json to run.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a pty.
    #[arg(short, long)]
    tty: bool,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Return once started.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// KEY=VALUE to add to the environment.
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID].
    #[arg(short, long)]
    user: Option<String>,
    /// Extra capabilities.
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Pass this many fds after stdio.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc compatibility; ignored.
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args)]
struct UpdateCli {
    /// A LinuxResources JSON file, or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    memory: Option<i64>,
    /// Memory+swap limit in bytes (-1: unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<i64>,
    /// CPU shares.
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPUs allowed.
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 or 0: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    id: String,
}

fn main() -> ExitCode {
    berth::profile::mark("runtime: main");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let logger = match Logger::open(cli.log.as_deref(), &cli.log_format, cli.debug) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth-runc: {e:#}");
            return ExitCode::from(1);
        }
    };
    match run(&cli, &logger) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logger.error(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli, log: &Logger) -> Result<u8> {
    let store = Store::new(&cli.root);
    log.debug(&format!("args: {:?}", std::env::args().collect::<Vec<_>>()));
    match &cli.cmd {
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{}: already exists; remove it first", path.display());
            }
            let text = serde_json::to_string_pretty(&spec::default_spec())?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Cmd::Create(a) => {
            check_systemd(cli)?;
            let c = create(&store, &create_options(a, false))?;
            log.info(&format!("created container {} (init pid {})", a.id, c.pid));
        }
        Cmd::Start { id } => {
            ops::start(&store, id)?;
            log.info(&format!("started container {id}"));
        }
        Cmd::Run {
            create: a,
            detach,
            keep,
        } => return run_container(cli, log, &store, a, *detach, *keep),
        Cmd::State { id } => {
            let st = ops::state(&store, id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = ops::parse_signal(signal)?;
            ops::kill_container(&store, id, sig, *all)?;
            log.info(&format!(
                "sent signal {sig} to container {id}{}",
                if *all { " (all processes)" } else { "" }
            ));
        }
        Cmd::Delete { force, id } => {
            ops::delete(&store, id, *force)?;
            log.info(&format!("deleted container {id}"));
        }
        Cmd::Exec(a) => return exec_cmd(log, &store, a),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&store, id, format, ps_args)?,
        Cmd::List { format, quiet } => list(&store, format, *quiet)?,
        Cmd::Pause { id } => ops::pause(&store, id)?,
        Cmd::Resume { id } => ops::resume(&store, id)?,
        Cmd::Update(u) => {
            let res = update_resources(u)?;
            ops::update(&store, &u.id, &res)?;
            log.info(&format!("updated container {}", u.id));
        }
        Cmd::Features => println!("{}", serde_json::to_string_pretty(&features())?),
    }
    Ok(0)
}

fn check_systemd(cli: &Cli) -> Result<()> {
    if !cli.systemd_cgroup {
        return Ok(());
    }
    if !Path::new("/run/systemd/system").exists() {
        bail!(
            "--systemd-cgroup: systemd is not running on this host; use the cgroupfs driver (drop --systemd-cgroup, or set SystemdCgroup = false in containerd's runc options)"
        );
    }
    bail!(
        "--systemd-cgroup: berth manages cgroups through cgroupfs only; drop --systemd-cgroup (SystemdCgroup = false in containerd's runc options)"
    )
}

fn create_options(a: &CreateArgs, own_terminal: bool) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        own_terminal,
        close_in_child: Vec::new(),
    }
}

fn run_container(
    cli: &Cli,
    log: &Logger,
    store: &Store,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
) -> Result<u8> {
    check_systemd(cli)?;
    // A terminal without a console socket: in the foreground berth-runc takes
    // the pty itself; detached, create refuses it.
    let c = create(store, &create_options(a, !detach))?;
    berth::profile::mark("runtime: created");
    let (pid, local) = (c.pid, c.console);
    drop(c.dir);
    if let Err(e) = ops::start(store, &a.id) {
        let _ = ops::delete(store, &a.id, true);
        return Err(e.into());
    }
    berth::profile::mark("runtime: started");
    log.info(&format!("ran container {} (init pid {pid})", a.id));
    if detach {
        return Ok(0);
    }
    berth::oci::signals::forward_to(pid);
    if let Some(sock) = local {
        let master = berth::tty::recv_master(&sock)?;
        berth::tty::proxy(master, true);
    }
    let code = wait_exit_code(pid);
    berth::profile::mark("runtime: container exited");
    if !keep {
        ops::delete(store, &a.id, true)?;
        berth::profile::mark("runtime: deleted");
    }
    Ok(code.clamp(0, 255) as u8)
}

fn exec_cmd(log: &Logger, store: &Store, a: &ExecCli) -> Result<u8> {
    let process = match &a.process {
        Some(path) => {
            let data = read_input(path)?;
            let p: oci_spec::runtime::Process = spec::read_json(path, &data)?;
            spec::validate_process(&p, path, "(process)")?;
            p
        }
        None => {
            if a.args.is_empty() {
                bail!("exec: give a command, or --process FILE");
            }
            let user = a.user.as_deref().map(parse_user).transpose()?;
            let ea = ExecArgs {
                args: a.args.clone(),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                tty: a.tty,
                user,
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
            };
            process_from_args(store, &a.id, &ea)?
        }
    };
    let opts = ExecOptions {
        id: a.id.clone(),
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        detach: a.detach,
        preserve_fds: a.preserve_fds,
        own_terminal: !a.detach,
    };
    // A terminal without a console socket: berth-runc proxies it, as runc does.
    if opts.process.terminal() == Some(true) && opts.console_socket.is_none() && !a.detach {
        let s = berth::oci::exec::spawn(store, &opts)?;
        berth::oci::signals::forward_to(s.pid);
        if let Some(sock) = &s.console {
            berth::tty::proxy(berth::tty::recv_master(sock)?, true);
        }
        return Ok(wait_exit_code(s.pid).clamp(0, 255) as u8);
    }
    match exec(store, &opts)? {
        ExecOutcome::Started(pid) => {
            log.info(&format!("exec in container {}: started pid {pid}", a.id));
            Ok(0)
        }
        ExecOutcome::Exited(code) => Ok(code.clamp(0, 255) as u8),
    }
}

/// A file's contents, or stdin's for "-".
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading stdin")?;
        return Ok(v);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .map_err(|_| anyhow!("--user {s:?}: expected UID[:GID] as numbers"))?;
    let gid = g
        .map(|g| g.parse())
        .transpose()
        .map_err(|_| anyhow!("--user {s:?}: expected UID[:GID] as numbers"))?;
    Ok((uid, gid))
}

fn update_resources(u: &UpdateCli) -> Result<oci_spec::runtime::LinuxResources> {
    use serde_json::json;
    let mut v = match &u.resources {
        Some(path) => {
            let data = read_input(path)?;
            let r: oci_spec::runtime::LinuxResources = spec::read_resources(path, &data)?;
            serde_json::to_value(r)?
        }
        None => json!({}),
    };
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = json!({});
        }
        v[section][key] = val;
    };
    if let Some(m) = u.memory {
        set("memory", "limit", json!(m));
    }
    if let Some(m) = u.memory_swap {
        set("memory", "swap", json!(m));
    }
    if let Some(m) = u.memory_reservation {
        set("memory", "reservation", json!(m));
    }
    if let Some(c) = u.cpu_shares {
        set("cpu", "shares", json!(c));
    }
    if let Some(c) = u.cpu_quota {
        set("cpu", "quota", json!(c));
    }
    if let Some(c) = u.cpu_period {
        set("cpu", "period", json!(c));
    }
    if let Some(c) = &u.cpuset_cpus {
        set("cpu", "cpus", json!(c));
    }
    if let Some(c) = &u.cpuset_mems {
        set("cpu", "mems", json!(c));
    }
    if let Some(p) = u.pids_limit {
        set("pids", "limit", json!(p));
    }
    if let Some(w) = u.blkio_weight {
        set("blockIO", "weight", json!(w));
    }
    Ok(serde_json::from_value(v)?)
}

fn ps(store: &Store, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let pids = ops::pids(store, id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("ps output has no PID column"))?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            && pids.contains(&p)
        {
            println!("{l}");
        }
    }
    Ok(())
}

fn list(store: &Store, format: &str, quiet: bool) -> Result<()> {
    let all = ops::list(store)?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(());
    }
    if format == "json" {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "ociVersion": s.oci_version, "id": s.id, "pid": s.pid, "status": s.status,
                    "bundle": s.bundle, "rootfs": s.rootfs, "created": s.created, "owner": s.owner,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.pid.to_string(),
                s.status.to_string(),
                s.bundle.display().to_string(),
                s.created.clone(),
                s.owner.clone(),
            ]
        })
        .collect();
    let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut widths = head.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}

fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut caps = caps;
    caps.sort();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
            "private", "rbind", "rdev", "rexec", "relatime", "remount", "rnoatime", "rnodev", "rnodiratime",
            "rnoexec", "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rro", "rrw", "rshared",
            "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": { "org.opencontainers.runtime-spec.features": "berth" }
    })
}
