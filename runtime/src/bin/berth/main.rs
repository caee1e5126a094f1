//! berth: containers from images, with Docker's command line. Today: the image
//! commands (load, import, save, images, rmi, tag, image prune/inspect) and
//! containers (create, run [-d], start [-a], ps, logs, stop, kill, wait, rm,
//! inspect, rename, commit, diff, export), detached ones kept by a monitor
//! process each.

mod human;

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use berth::engine::Engine;
use berth::engine::container::Status;
use berth::engine::manage::{self as live, ExecRequest};
use berth::engine::monitor;
use berth::engine::run::{self, NewContainer};
use berth::image::load::{Input, import, load};
use berth::image::manage::{self, Removal};
use berth::image::progress::Progress;
use berth::image::reference::Reference;
use berth::image::save::save;
use berth::image::store::ImageStore;
use berth::oci::time::parse_rfc3339;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Containers from images, with Docker's command line"
)]
struct Cli {
    /// Persistent data: images, layers, containers' read-write layers.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        env = "BERTH_ROOT"
    )]
    root: PathBuf,
    /// Runtime state (lost at reboot, as the containers' processes are).
    #[arg(long, global = true, default_value = "/run/berth", env = "BERTH_STATE")]
    state: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load images from an OCI layout or a `docker save` archive.
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem tar.
    Import(ImportArgs),
    /// Save images as an OCI layout tar.
    Save(SaveArgs),
    /// List images.
    Images(ImagesArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Make a container from an image (without starting it).
    #[command(disable_help_flag = true)]
    Create(RunArgs),
    /// Run a command in a new container, in the foreground.
    #[command(disable_help_flag = true)]
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Remove the container when it exits.
        #[arg(long)]
        rm: bool,
        /// Run in the background (a monitor process keeps its log and exit code).
        #[arg(short, long)]
        detach: bool,
    },
    /// Start a container: in the background, or attached with `-a`.
    Start {
        /// Attach stdio and wait for the exit.
        #[arg(short, long)]
        attach: bool,
        container: String,
    },
    /// Show a container's output.
    Logs {
        container: String,
        /// Keep following while it runs.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (or all).
        #[arg(long = "tail", short = 'n')]
        tail: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines since this time (RFC 3339, Unix seconds, or a duration ago: 10m, 1h30m).
        #[arg(long)]
        since: Option<String>,
        /// Only lines before this time (same forms).
        #[arg(long)]
        until: Option<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        #[arg(required = true)]
        containers: Vec<String>,
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
    },
    /// Send a signal to containers (SIGKILL by default).
    Kill {
        #[arg(required = true)]
        containers: Vec<String>,
        /// The signal (name or number).
        #[arg(short, long, default_value = "KILL")]
        signal: String,
    },
    /// Wait for containers to stop; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers' (or images') details as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        /// A template, such as {{.State.Status}} or {{json .Config}}, per object.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Give a container another name.
    Rename { container: String, name: String },
    /// Run a command in a running container.
    Exec {
        /// Every capability for this process (the container's seccomp filter stays).
        #[arg(long)]
        privileged: bool,
        /// Keep stdin open (attached).
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a pty.
        #[arg(short, long)]
        tty: bool,
        /// Run in the background.
        #[arg(short, long)]
        detach: bool,
        /// Environment (KEY=VALUE).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User (name or uid, optionally :group).
        #[arg(short, long)]
        user: Option<String>,
        container: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Stop and start containers again.
    Restart {
        #[arg(required = true)]
        containers: Vec<String>,
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
    },
    /// Freeze every process of containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's processes.
    Top { container: String },
    /// Manage bridge networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// List a container's published ports (or the host address of one).
    Port {
        container: String,
        /// PORT[/PROTO]
        port: Option<String>,
    },
    /// Manage berth's data: df, prune.
    #[command(subcommand)]
    System(SystemCmd),
    /// What this host gives berth: cgroups, storage, kernel features missing.
    Info,
    /// Show containers' resource use (CPU, memory, network, block I/O, pids).
    Stats {
        /// Containers (all running ones if none).
        containers: Vec<String>,
        /// One sample, then exit.
        #[arg(long)]
        no_stream: bool,
        /// `table` (the default) or `json` (one object per line).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Copy files between a container and the host: CONTAINER:SRC DEST, or SRC CONTAINER:DEST
    /// (`-` for a tar stream on stdout or stdin).
    Cp {
        /// Copy uid/gid as they are (the default already keeps them as the tar says).
        #[arg(short, long)]
        archive: bool,
        /// Follow a symlink given as SRC.
        #[arg(short = 'L', long)]
        follow_link: bool,
        src: String,
        dest: String,
    },
    /// (internal) The chrooted side of `cp`.
    #[command(hide = true)]
    CpHelper { args: Vec<String> },
    /// (internal) The monitor of a detached container.
    #[command(hide = true)]
    Monitor {
        container: String,
        #[arg(long)]
        rm: bool,
        /// The container ended with this code (from berth-monitor).
        #[arg(long)]
        exited: Option<i32>,
        /// When it was started (ms since the epoch).
        #[arg(long, default_value_t = 0)]
        began: u64,
        /// The restart back-off (ms).
        #[arg(long, default_value_t = 100)]
        delay: u64,
    },

    /// List containers.
    Ps {
        /// All containers (not only running ones).
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Full ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// Filter: status=, name=, id=, ancestor=, exited= (repeat to combine).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `table` (the default), `json` (one object per line), or a template
        /// with {{.ID}}, {{.Names}}, {{.Image}}, {{.Status}}, {{.State}}, {{.Command}}.
        #[arg(long)]
        format: Option<String>,
        /// Only the latest created container.
        #[arg(short = 'l', long)]
        latest: bool,
    },
    /// Remove containers.
    Rm {
        #[arg(required = true)]
        containers: Vec<String>,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
    },
    /// Make an image of a container's changes.
    Commit {
        container: String,
        /// The new image's name.
        reference: Option<String>,
        /// Commit message (in the image's history).
        #[arg(short, long)]
        message: Option<String>,
        /// Author.
        #[arg(short, long)]
        author: Option<String>,
    },
    /// Show a container's changes: A added, C changed, D deleted.
    Diff { container: String },
    /// Write a container's whole file tree as a tar.
    Export {
        container: String,
        /// The file to write (stdout if absent).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Print help (`-h` is --hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// The container's name.
    #[arg(long)]
    name: Option<String>,
    /// Environment (KEY=VALUE).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name or uid, optionally :group).
    #[arg(short, long)]
    user: Option<String>,
    /// Hostname.
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Override the image's entrypoint ("" for none).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Read environment from a file of KEY=VALUE lines.
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Bind mount HOST:CONTAINER[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs at this path.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit (e.g. 256m, 1g).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Most processes (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Memory plus swap (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Relative CPU weight (1024 by default).
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// CPUs it may run on (0-2,4).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// A resource limit, NAME=SOFT[:HARD] (nofile=1024:2048).
    #[arg(long)]
    ulimit: Vec<String>,
    /// Add a capability (NET_ADMIN, …, ALL).
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a capability (… or ALL).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Every capability and device, no seccomp filter, no masked paths.
    #[arg(long)]
    privileged: bool,
    /// no-new-privileges[=true|false], seccomp=unconfined|FILE.
    #[arg(long)]
    security_opt: Vec<String>,
    /// Run a small init (tini) as PID 1 that reaps and forwards signals.
    #[arg(long)]
    init: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long)]
    restart: Option<String>,
    /// Network: bridge (the default), a network's name, host, none, container:NAME.
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Publish a port: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (no HOSTPORT, or 0: an ephemeral one).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes, each on an ephemeral host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// A fixed IPv4 address (user-defined networks).
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// Log options: max-size=SIZE, max-file=N.
    #[arg(long)]
    log_opt: Vec<String>,
    /// Keep stdin open (and attached in the foreground).
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a pty.
    #[arg(short, long)]
    tty: bool,
    image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Make a volume (a generated name when none is given).
    Create { name: Option<String> },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Accepted for Docker's sake; a volume in use is still refused.
        #[arg(short, long)]
        force: bool,
    },
    /// Remove unused anonymous volumes (all unused ones with -a).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Make a bridge network.
    Create {
        name: String,
        /// Its subnet (CIDR); the first free 10.89.N.0/24 when not given.
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's address (the subnet's first by default).
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// Only `bridge` exists.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// json, or a template.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        /// A template.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove networks (refused while containers are on them).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container uses (the default one stays).
    Prune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a running container to a network.
    Connect {
        network: String,
        container: String,
        /// A fixed address.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
    },
    /// Disconnect a container from a network.
    Disconnect {
        network: String,
        container: String,
        /// Also when it is not running.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Disk used by images and containers, and what prune would free.
    Df,
    /// Remove stopped containers and dangling (with -a: all unused) images.
    Prune {
        /// Every unused image, not only untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Load images from an OCI layout or a `docker save` archive.
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem tar.
    Import(ImportArgs),
    /// Save images as an OCI layout tar.
    Save(SaveArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove images.
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove unused images.
    Prune {
        /// Every image no container uses, not only untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Show images' details as JSON.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Args)]
struct LoadArgs {
    /// The archive (a tar, possibly compressed, or an OCI layout directory); stdin if absent or `-`.
    #[arg(short, long)]
    input: Option<String>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct ImportArgs {
    /// The root filesystem tar (plain, gzip or zstd), or `-` for stdin.
    file: String,
    /// The new image's name.
    reference: Option<String>,
    /// A comment for the image's history.
    #[arg(short, long)]
    message: Option<String>,
}

#[derive(Args)]
struct SaveArgs {
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
    /// The file to write (stdout if absent).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct ImagesArgs {
    /// Only this repository (and tag).
    reference: Option<String>,
    /// Only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// `table` (the default) or `json` (one object per line).
    #[arg(long, default_value = "table")]
    format: String,
    /// Full image ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
struct RmiArgs {
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove even when a container uses the image (it stays, untagged, until the container goes).
    #[arg(short, long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the chain of causes (a cause our own message already
            // quotes is not repeated).
            let mut msg = String::new();
            for c in e.chain() {
                let c = c.to_string();
                if !msg.contains(&c) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&c);
                }
            }
            eprintln!("berth: {msg}");
            let code = match e.downcast_ref::<berth::engine::Error>() {
                Some(err) => berth::engine::run::exit_code_for(err),
                None => 1,
            };
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let engine = || {
        Engine::open(&cli.root, &cli.state)
            .with_context(|| format!("berth data under {}", cli.root.display()))
    };
    match cli.cmd {
        Cmd::Create(a) => {
            let image = a.image.clone();
            let c = run::create(&engine()?, &image, &new_container(a)).map_err(engine_err)?;
            println!("{}", c.id);
            Ok(0)
        }
        Cmd::Run { args, rm, detach } => {
            // Docker's refusal: a pty fed from something that is not a terminal.
            if !detach && args.tty && args.interactive && !io::stdin().is_terminal() {
                bail!("the input device is not a TTY");
            }
            let e = engine()?;
            let image = args.image.clone();
            let mut nc = new_container(args);
            nc.auto_remove = rm;
            let c = run::create(&e, &image, &nc).map_err(engine_err)?;
            if detach {
                let started = monitor::start_detached(&e, &exe()?, &c.id, rm);
                if started.is_err() && rm {
                    let _ = run::remove_with_volumes(&e, &c.id, true);
                }
                println!("{}", started.map_err(engine_err)?);
                return Ok(0);
            }
            let code = run::start_foreground(&e, &c.id);
            if rm {
                run::remove_with_volumes(&e, &c.id, true).map_err(engine_err)?;
            }
            Ok(code.map_err(engine_err)?.clamp(0, 255) as u8)
        }
        Cmd::Start { attach, container } => {
            let e = engine()?;
            if !attach {
                monitor::start_detached(&e, &exe()?, &container, false).map_err(engine_err)?;
                println!("{container}");
                return Ok(0);
            }
            let code = run::start_foreground(&e, &container).map_err(engine_err)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Cmd::Logs {
            container,
            follow,
            tail,
            timestamps,
            since,
            until,
        } => {
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| anyhow::anyhow!("--tail {n:?}: a number of lines, or all"))?,
                ),
            };
            let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
            let opts = monitor::LogOptions {
                tail,
                timestamps,
                follow,
                since: since.as_deref().map(|s| when("--since", s)).transpose()?,
                until: until.as_deref().map(|s| when("--until", s)).transpose()?,
            };
            monitor::logs(&engine()?, &container, &opts, &mut out, &mut err).map_err(engine_err)?;
            Ok(0)
        }
        Cmd::Stop { containers, time } => {
            let e = engine()?;
            for c in &containers {
                monitor::stop(&e, c, std::time::Duration::from_secs(time)).map_err(engine_err)?;
                println!("{c}");
            }
            Ok(0)
        }
        Cmd::Kill { containers, signal } => {
            let e = engine()?;
            for c in &containers {
                monitor::kill(&e, c, &signal).map_err(engine_err)?;
                println!("{c}");
            }
            Ok(0)
        }
        Cmd::Wait { containers } => {
            let e = engine()?;
            for c in &containers {
                let id = e.containers.resolve(c).map_err(engine_err)?.id;
                let code = monitor::wait_stopped(&e, &id, None).map_err(engine_err)?;
                println!("{}", code.unwrap_or(-1));
            }
            Ok(0)
        }
        Cmd::Inspect { names, format } => {
            let e = engine()?;
            let mut out = Vec::new();
            for n in &names {
                match run::inspect(&e, n) {
                    Ok(v) => out.push(v),
                    // Not a container: an image, as docker inspect does.
                    Err(berth::engine::Error::NoSuchContainer(_)) => {
                        let db = e.images.db()?;
                        let rec = db
                            .resolve(n)
                            .map_err(|_| anyhow::anyhow!("no such object: {n}"))?;
                        out.push(manage::inspect(&e.images, &db, rec)?);
                    }
                    Err(err) => return Err(engine_err(err)),
                }
            }
            match format {
                Some(t) => {
                    for v in &out {
                        println!("{}", human::render(&t, v)?);
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out)?),
            }
            Ok(0)
        }
        Cmd::Network(cmd) => network_cmd(&engine()?, cmd),
        Cmd::Volume(cmd) => volume_cmd(&engine()?, cmd),
        Cmd::Port { container, port } => {
            let e = engine()?;
            for line in
                berth::engine::netcmd::ports(&e, &container, port.as_deref()).map_err(engine_err)?
            {
                println!("{line}");
            }
            Ok(0)
        }
        Cmd::Rename { container, name } => {
            run::rename(&engine()?, &container, &name).map_err(engine_err)?;
            Ok(0)
        }
        Cmd::Cp {
            archive: _,
            follow_link,
            src,
            dest,
        } => {
            let e = engine()?;
            let exe = std::env::current_exe().context("finding berth's own binary")?;
            match (container_path(&src), container_path(&dest)) {
                (Some((c, path)), None) => berth::engine::cp::copy_out(
                    &e,
                    &exe,
                    c,
                    path,
                    follow_link,
                    &dest,
                    io::stdout().lock(),
                )
                .map_err(engine_err)?,
                (None, Some((c, path))) => {
                    let src = if follow_link && src != "-" {
                        std::fs::canonicalize(&src)
                            .with_context(|| format!("cp source {src:?}"))?
                            .display()
                            .to_string()
                    } else {
                        src.clone()
                    };
                    berth::engine::cp::copy_in(&e, &exe, &src, c, path, io::stdin().lock())
                        .map_err(engine_err)?
                }
                (Some(_), Some(_)) => {
                    bail!("cp {src} {dest}: copying between containers is not supported")
                }
                (None, None) => bail!("cp {src} {dest}: one of them must be CONTAINER:PATH"),
            }
            Ok(0)
        }
        Cmd::CpHelper { args } => {
            berth::engine::cp::helper_main(&args).map_err(engine_err)?;
            Ok(0)
        }
        Cmd::Monitor {
            container,
            rm,
            exited,
            began,
            delay,
        } => {
            // The container was removed while it ran (`rm -f`): nothing is left
            // to record, and opening the engine would make its root again.
            if let Some(code) = exited
                && !cli.root.join("containers").join(&container).is_dir()
            {
                return Ok(code.clamp(0, 255) as u8);
            }
            let (report, exited) = match exited {
                Some(code) => (
                    None,
                    Some(monitor::Exited {
                        code,
                        began_ms: began,
                        delay_ms: delay,
                    }),
                ),
                // What was stdout (the starter's pipe) becomes the report channel.
                None => (
                    Some(File::from(io::stdout().as_fd().try_clone_to_owned()?)),
                    None,
                ),
            };
            let code =
                monitor::monitor(&engine()?, &container, report, rm, exited).map_err(engine_err)?;
            Ok(code.clamp(0, 255) as u8)
        }

        Cmd::Ps {
            all,
            quiet,
            no_trunc,
            filter,
            format,
            latest,
        } => {
            let o = PsOptions {
                all: all || latest,
                quiet,
                no_trunc,
                filter,
                format,
                latest,
            };
            cmd_ps(&engine()?, &o)?;
            Ok(0)
        }
        Cmd::Exec {
            privileged,
            interactive,
            tty,
            detach,
            env,
            workdir,
            user,
            container,
            cmd,
        } => {
            if !detach && tty && interactive && !io::stdin().is_terminal() {
                bail!("the input device is not a TTY");
            }
            let r = ExecRequest {
                privileged,
                args: cmd,
                env,
                workdir,
                user,
                tty,
                interactive,
                detach,
            };
            let code = live::exec(&engine()?, &container, &r).map_err(engine_err)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Cmd::Restart { containers, time } => {
            let e = engine()?;
            for c in &containers {
                live::restart(&e, &exe()?, c, std::time::Duration::from_secs(time))
                    .map_err(engine_err)?;
                println!("{c}");
            }
            Ok(0)
        }
        Cmd::Pause { ref containers } | Cmd::Unpause { ref containers } => {
            let freeze = matches!(cli.cmd, Cmd::Pause { .. });
            let e = engine()?;
            for c in containers {
                live::pause(&e, c, freeze).map_err(engine_err)?;
                println!("{c}");
            }
            Ok(0)
        }
        Cmd::System(SystemCmd::Df) => {
            let (images, cs) = berth::engine::system::df(&engine()?).map_err(engine_err)?;
            let pct = |u: &berth::engine::system::Usage| match (u.reclaimable * 100)
                .checked_div(u.size)
            {
                Some(p) => format!("{} ({p}%)", human::size(u.reclaimable)),
                None => "0B".to_string(),
            };
            let rows = vec![
                ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                vec![
                    "Images".into(),
                    images.total.to_string(),
                    images.active.to_string(),
                    human::size(images.size),
                    pct(&images),
                ],
                vec![
                    "Containers".into(),
                    cs.total.to_string(),
                    cs.active.to_string(),
                    human::size(cs.size),
                    pct(&cs),
                ],
            ];
            print!("{}", human::table(&rows));
            Ok(0)
        }
        Cmd::System(SystemCmd::Prune { all, force }) => {
            if !force {
                eprint!(
                    "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all {} images\nAre you sure you want to continue? [y/N] ",
                    if all { "unused" } else { "dangling" }
                );
                let mut answer = String::new();
                io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let e = engine()?;
            let (cs, freed, images) = berth::engine::system::prune(&e, all).map_err(engine_err)?;
            if !cs.is_empty() {
                println!("Deleted Containers:");
                for c in &cs {
                    println!("{c}");
                }
                println!();
            }
            let nets = berth::engine::netcmd::prune(&e).map_err(engine_err)?;
            if !nets.is_empty() {
                println!("Deleted Networks:");
                for n in &nets {
                    println!("{n}");
                }
                println!();
            }
            let mut images = images;
            images.freed += freed;
            print_removal(&images, true);
            Ok(0)
        }
        Cmd::Info => {
            let berth::engine::system::Info { lines, missing } =
                berth::engine::system::info(&engine()?).map_err(engine_err)?;
            for (k, v) in lines {
                println!("{k}: {v}");
            }
            if missing.is_empty() {
                println!("Kernel features missing: none");
            } else {
                println!("Kernel features missing:");
                for m in missing {
                    println!("  {m}");
                }
            }
            Ok(0)
        }
        Cmd::Top { container } => {
            cmd_top(&engine()?, &container)?;
            Ok(0)
        }
        Cmd::Stats {
            containers,
            no_stream,
            format,
        } => {
            cmd_stats(&engine()?, &containers, no_stream, &format)?;
            Ok(0)
        }
        Cmd::Rm {
            containers,
            force,
            volumes,
        } => {
            let e = engine()?;
            let mut failed = None;
            for c in &containers {
                let removed = if volumes {
                    run::remove_with_volumes(&e, c, force)
                } else {
                    run::remove(&e, c, force)
                };
                match removed {
                    Ok(_) => println!("{c}"),
                    Err(err) => failed = Some(err),
                }
            }
            match failed {
                Some(err) => Err(anyhow::Error::from(err)),
                None => Ok(0),
            }
        }
        Cmd::Commit {
            container,
            reference,
            message,
            author,
        } => {
            let tag = reference.as_deref().map(Reference::parse).transpose()?;
            let l = run::commit(&engine()?, &container, tag.as_ref(), author, message)
                .map_err(engine_err)?;
            println!("{}", l.id);
            Ok(0)
        }
        Cmd::Diff { container } => {
            let mut out = io::stdout().lock();
            for c in run::diff(&engine()?, &container).map_err(engine_err)? {
                writeln!(out, "{c}")?;
            }
            Ok(0)
        }
        Cmd::Export { container, output } => {
            cmd_export(&engine()?, &container, output)?;
            Ok(0)
        }
        other => run_image(&cli.root, other).map(|()| 0),
    }
}

/// A time for `logs --since/--until`, in nanoseconds since the epoch: RFC 3339,
/// Unix seconds (with a fraction), or a duration before now (`90s`, `10m`, `1h30m`).
fn when(flag: &str, s: &str) -> Result<i128> {
    if let Some(t) = berth::oci::time::parse_rfc3339_nanos(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1e9) as i128);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let bad = || {
        anyhow::anyhow!(
            "{flag} {s:?}: use an RFC 3339 time, Unix seconds, or a duration such as 10m or 1h30m"
        )
    };
    let (mut total, mut num) = (0f64, String::new());
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad()),
        };
        total += num.parse::<f64>().map_err(|_| bad())? * unit;
        num.clear();
    }
    if !num.is_empty() || total <= 0.0 {
        return Err(bad());
    }
    Ok(now - (total * 1e9) as i128)
}

/// This program, for the monitor.
fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("finding the berth binary")
}

/// Engine errors keep their type, so main can pick Docker's exit code.
fn engine_err(e: berth::engine::Error) -> anyhow::Error {
    anyhow::Error::from(e)
}

fn new_container(a: RunArgs) -> NewContainer {
    NewContainer {
        name: a.name,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        entrypoint: a.entrypoint,
        cmd: a.cmd,
        env_files: a.env_file,
        volumes: a.volume,
        tmpfs: a.tmpfs,
        read_only: a.read_only,
        memory: a.memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        memory_swap: a.memory_swap,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus,
        ulimits: a.ulimit,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        security_opt: a.security_opt,
        init: a.init,
        restart: a.restart,
        network: a.network,
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: false,
        log_opts: a.log_opt,
        publish: a.publish,
        publish_all: a.publish_all,
        ip: a.ip,
    }
}

/// `NAME:PATH` of `cp`: a container side (a local path with a colon is written
/// `./a:b` or `/a:b`, as Docker asks).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty())
}

fn volume_cmd(e: &Engine, cmd: VolumeCmd) -> Result<u8> {
    use berth::engine::volume;
    let json = |v: &volume::Volume| {
        serde_json::json!({
            "Name": v.name,
            "Driver": "local",
            "Mountpoint": e.volumes.data(&v.name),
            "CreatedAt": v.created,
            "Scope": "local",
            "Labels": {},
            "Options": {},
            "Anonymous": v.anonymous,
        })
    };
    match cmd {
        VolumeCmd::Create { name } => {
            let name = match name {
                Some(n) => n,
                None => berth::engine::container::random_id().map_err(engine_err)?,
            };
            let v = e.volumes.ensure(&name, false).map_err(engine_err)?;
            println!("{}", v.name);
        }
        VolumeCmd::Ls { quiet } => {
            let list = e.volumes.list().map_err(engine_err)?;
            if quiet {
                for v in &list {
                    println!("{}", v.name);
                }
            } else {
                let mut table = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                for v in &list {
                    table.push(vec!["local".into(), v.name.clone()]);
                }
                print!("{}", human::table(&table));
            }
        }
        VolumeCmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(json(&e.volumes.get(n).map_err(engine_err)?));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCmd::Rm { names, force: _ } => {
            for n in &names {
                volume::remove(e, n).map_err(engine_err)?;
                println!("{n}");
            }
        }
        VolumeCmd::Prune { all, force: _ } => {
            let gone = volume::prune(e, all).map_err(engine_err)?;
            if !gone.is_empty() {
                println!("Deleted Volumes:");
                for n in &gone {
                    println!("{n}");
                }
            }
        }
    }
    Ok(0)
}

fn network_cmd(e: &Engine, cmd: NetworkCmd) -> Result<u8> {
    use berth::engine::netcmd;
    match cmd {
        NetworkCmd::Create {
            name,
            subnet,
            gateway,
            driver,
        } => {
            if driver != "bridge" {
                anyhow::bail!("invalid --driver {driver:?}: berth has the bridge driver only");
            }
            let subnet = subnet
                .as_deref()
                .map(str::parse::<berth::network::Subnet>)
                .transpose()?;
            let n = e.networks.create(&name, subnet, gateway)?;
            println!("{}", n.id);
        }
        NetworkCmd::Ls { quiet, format } => {
            let list = e.networks.list()?;
            if quiet {
                for n in &list {
                    println!("{}", &n.id[..12]);
                }
            } else if let Some(f) = format {
                for n in &list {
                    let v = netcmd::inspect(e, &n.name).map_err(engine_err)?;
                    if f == "json" {
                        println!("{}", serde_json::to_string(&v)?);
                    } else {
                        println!("{}", human::render(&f, &v)?);
                    }
                }
            } else {
                let mut table = vec![
                    ["NETWORK ID", "NAME", "DRIVER", "SUBNET", "SCOPE"]
                        .map(String::from)
                        .to_vec(),
                ];
                for n in &list {
                    table.push(vec![
                        n.id[..12].to_string(),
                        n.name.clone(),
                        "bridge".into(),
                        n.subnet.to_string(),
                        "local".into(),
                    ]);
                }
                print!("{}", human::table(&table));
            }
        }
        NetworkCmd::Inspect { names, format } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(netcmd::inspect(e, n).map_err(engine_err)?);
            }
            match format {
                Some(t) => {
                    for v in &out {
                        println!("{}", human::render(&t, v)?);
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out)?),
            }
        }
        NetworkCmd::Rm { names } => {
            for n in &names {
                netcmd::remove(e, n).map_err(engine_err)?;
                println!("{n}");
            }
        }
        NetworkCmd::Prune { force: _ } => {
            let gone = netcmd::prune(e).map_err(engine_err)?;
            if !gone.is_empty() {
                println!("Deleted Networks:");
                for n in gone {
                    println!("{n}");
                }
            }
        }
        NetworkCmd::Connect {
            network,
            container,
            ip,
        } => netcmd::connect(e, &network, &container, ip).map_err(engine_err)?,
        NetworkCmd::Disconnect {
            network,
            container,
            force: _,
        } => netcmd::disconnect(e, &network, &container).map_err(engine_err)?,
    }
    Ok(0)
}

struct PsOptions {
    all: bool,
    quiet: bool,
    no_trunc: bool,
    filter: Vec<String>,
    format: Option<String>,
    latest: bool,
}

/// `ps --filter` values, checked: key → accepted values.
fn ps_filters(list: &[String]) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--filter {f:?}: use KEY=VALUE"))?;
            match k {
                "status" if matches!(v, "created" | "running" | "paused" | "exited") => {}
                "status" => bail!("--filter {f:?}: status is created, running, paused or exited"),
                "exited" if v.parse::<i32>().is_err() => {
                    bail!("--filter {f:?}: exited takes an exit code")
                }
                "name" | "id" | "ancestor" | "exited" => {}
                _ => bail!("--filter {f:?}: berth filters by status, name, id, ancestor, exited"),
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn cmd_ps(e: &Engine, o: &PsOptions) -> Result<()> {
    let filters = ps_filters(&o.filter)?;
    let (mut template, header) = match o.format.as_deref() {
        None | Some("table") => (None, true),
        Some("json") => (Some(String::new()), false),
        Some(t) => match t.strip_prefix("table ") {
            Some(rest) => (Some(rest.to_string()), true),
            None => (Some(t.to_string()), false),
        },
    };
    if let Some(t) = &template
        && !t.is_empty()
    {
        template = Some(t.replace("\\t", "\t").replace("\\n", "\n"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let db = e.images.db()?;
    // What a killed berth or monitor left is repaired first (rule 2 of DESIGN.md).
    for c in e.containers.list()? {
        let _ = run::repair(e, &c.id);
    }
    let mut list = e.containers.list()?;
    list.reverse();
    if o.latest {
        list.truncate(1);
    }
    let mut rows: Vec<std::collections::BTreeMap<&str, String>> = Vec::new();
    for c in list {
        let Ok(c) = run::current(e, c) else {
            // Removed meanwhile.
            continue;
        };
        let running = c.state.shown_running();
        let state = match c.state.status {
            Status::Created => "created",
            _ if running && c.state.paused => "paused",
            _ if running => "running",
            _ => "exited",
        };
        let exit_code = if running { 0 } else { c.state.exit_code };
        let shown = filters
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        let matches = shown.iter().all(|key| {
            filters
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, v)| match *key {
                    "status" => state == v,
                    "name" => c.name.contains(v.as_str()),
                    "id" => c.id.starts_with(v.as_str()),
                    "ancestor" => {
                        c.image_name == *v
                            || c.image.to_string().starts_with(v.as_str())
                            || c.image
                                .to_string()
                                .trim_start_matches("sha256:")
                                .starts_with(v.as_str())
                            || db.resolve(v).map(|r| *r.id() == c.image).unwrap_or(false)
                    }
                    "exited" => state == "exited" && v.parse::<i32>().ok() == Some(exit_code),
                    _ => false,
                })
        });
        if !matches || (!o.all && !running && filters.is_empty()) {
            continue;
        }
        if !o.all && filters.iter().all(|(k, _)| k != "status" && k != "exited") && !running {
            continue;
        }
        let id = if o.no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        };
        let since = |t: &Option<String>| {
            t.as_deref()
                .and_then(parse_rfc3339)
                .map(|s| human::ago(now - s))
        };
        let status = match c.state.status {
            Status::Created => "Created".to_string(),
            _ if running => format!(
                "Up {}{}",
                since(&c.state.started_at)
                    .unwrap_or_default()
                    .trim_end_matches(" ago"),
                if c.state.paused { " (Paused)" } else { "" }
            ),
            Status::Running => "Exited (255)".to_string(),
            Status::Exited => format!(
                "Exited ({}) {}",
                c.state.exit_code,
                since(&c.state.finished_at).unwrap_or_default()
            ),
        };
        let mut command = c.config.argv().join(" ");
        if !o.no_trunc && command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        let mut row = std::collections::BTreeMap::new();
        row.insert("ID", id);
        row.insert("Image", c.image_name.clone());
        row.insert("Command", format!("\"{command}\""));
        row.insert("CreatedAt", c.created.clone());
        row.insert(
            "RunningFor",
            since(&Some(c.created.clone())).unwrap_or_default(),
        );
        let ports = if running {
            e.networks
                .ports_of(&c.id)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}->{}/{}",
                        p.host_ip, p.host_port, p.container_port, p.proto
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        row.insert("Ports", ports);
        row.insert("State", state.to_string());
        row.insert("Status", status);
        row.insert("Names", c.name.clone());
        row.insert(
            "Networks",
            berth::engine::run::network_mode(&c.config.network),
        );
        row.insert(
            "Mounts",
            c.config
                .volumes
                .iter()
                .map(|v| v.source.clone())
                .collect::<Vec<_>>()
                .join(","),
        );
        row.insert("Labels", String::new());
        rows.push(row);
    }
    let mut out = io::stdout().lock();
    if o.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"])?;
        }
        return Ok(());
    }
    match template {
        None => {
            let cols = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let mut table = vec![
                [
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            ];
            for r in &rows {
                table.push(cols.iter().map(|c| r[c].clone()).collect());
            }
            write!(out, "{}", human::table(&table))?;
        }
        Some(t) if t.is_empty() => {
            for r in &rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Some(t) => {
            let fill = |r: &std::collections::BTreeMap<&str, String>,
                        header: bool|
             -> Result<String> {
                let mut s = t.clone();
                while let Some(a) = s.find("{{") {
                    let b = s[a..]
                        .find("}}")
                        .map(|b| a + b)
                        .ok_or_else(|| anyhow::anyhow!("--format {t:?}: an unclosed {{{{"))?;
                    let key = s[a + 2..b].trim().trim_start_matches('.').to_string();
                    let val = if header {
                        key.to_ascii_uppercase()
                    } else {
                        r.get(key.as_str()).cloned().ok_or_else(|| {
                            anyhow::anyhow!("--format {t:?}: no field {key:?} (ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Names, Networks, Mounts, Labels)")
                        })?
                    };
                    s.replace_range(a..b + 2, &val);
                }
                Ok(s)
            };
            let empty = std::collections::BTreeMap::new();
            if header {
                writeln!(out, "{}", fill(&empty, true)?)?;
            }
            for r in &rows {
                writeln!(out, "{}", fill(r, false)?)?;
            }
        }
    }
    Ok(())
}

fn cmd_top(e: &Engine, container: &str) -> Result<()> {
    let procs = live::top(e, container).map_err(engine_err)?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let users = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = |uid: u32| {
        users
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == uid.to_string())
            .map(|f| f[0].to_string())
            .unwrap_or_else(|| uid.to_string())
    };
    let mut rows = vec![
        ["UID", "PID", "PPID", "STIME", "TIME", "CMD"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    for p in procs {
        let started = (now - uptime + p.start) as i64;
        let stime = berth::oci::time::format_unix(started, 0, false);
        let t = p.cpu as u64;
        rows.push(vec![
            user(p.uid),
            p.pid.to_string(),
            p.ppid.to_string(),
            stime[11..19].to_string(),
            format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
            p.cmd,
        ]);
    }
    print!("{}", human::table(&rows));
    Ok(())
}

fn cmd_stats(e: &Engine, containers: &[String], no_stream: bool, format: &str) -> Result<()> {
    if !matches!(format, "table" | "json") {
        bail!("--format {format:?}: use table or json");
    }
    let interactive = !no_stream && io::stdout().is_terminal();
    loop {
        let list = live::stats(e, containers, std::time::Duration::from_millis(500))
            .map_err(engine_err)?;
        let mut out = io::stdout().lock();
        if format == "json" {
            for s in &list {
                let v = serde_json::json!({
                    "ID": &s.id[..12], "Name": s.name,
                    "CPUPerc": format!("{:.2}%", s.cpu_percent),
                    "MemUsage": format!("{} / {}", human::mem(s.mem_usage), human::mem(s.mem_limit)),
                    "MemPerc": format!("{:.2}%", s.mem_usage as f64 * 100.0 / s.mem_limit.max(1) as f64),
                    "NetIO": format!("{} / {}", human::size(s.net.0), human::size(s.net.1)),
                    "BlockIO": format!("{} / {}", human::size(s.block.0), human::size(s.block.1)),
                    "PIDs": s.pids.to_string(),
                });
                writeln!(out, "{v}")?;
            }
        } else {
            let mut rows = vec![
                [
                    "CONTAINER ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            ];
            for s in &list {
                rows.push(vec![
                    s.id[..12].to_string(),
                    s.name.clone(),
                    format!("{:.2}%", s.cpu_percent),
                    format!("{} / {}", human::mem(s.mem_usage), human::mem(s.mem_limit)),
                    format!(
                        "{:.2}%",
                        s.mem_usage as f64 * 100.0 / s.mem_limit.max(1) as f64
                    ),
                    format!("{} / {}", human::size(s.net.0), human::size(s.net.1)),
                    format!("{} / {}", human::size(s.block.0), human::size(s.block.1)),
                    s.pids.to_string(),
                ]);
            }
            if interactive {
                // Home and clear, as docker stats redraws.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", human::table(&rows))?;
        }
        out.flush()?;
        if no_stream {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn cmd_export(e: &Engine, container: &str, output: Option<PathBuf>) -> Result<()> {
    write_archive("Exporting", "export", output.as_deref(), |w, progress| {
        run::export(e, container, progress.writer(w))?;
        Ok(())
    })
}

/// Writes an archive to `output` — beside it, synced, then renamed, so a failure
/// leaves no partial file — or to stdout, which must not be a terminal. `write`
/// gets the writer and the progress line (`verb`, drawn on a terminal).
fn write_archive(
    verb: &str,
    what: &str,
    output: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn Write, &Progress) -> Result<()>,
) -> Result<()> {
    let progress = Progress::new(verb, None);
    let r = (|| match output {
        Some(p) => {
            let tmp = p.with_file_name(format!(
                ".{}.tmp{}",
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = io::BufWriter::new(f);
            let r = write(&mut w, &progress).and_then(|()| {
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, p).with_context(|| format!("renaming to {}", p.display()))
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to {what} to a terminal: use -o FILE or redirect stdout");
            }
            let mut w = io::BufWriter::new(io::stdout().lock());
            write(&mut w, &progress)?;
            Ok(w.flush()?)
        }
    })();
    progress.finish();
    r
}

fn run_image(root: &std::path::Path, cmd: Cmd) -> Result<()> {
    let store =
        || ImageStore::open(root).with_context(|| format!("image store under {}", root.display()));
    match cmd {
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => cmd_load(&store()?, a),
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => cmd_import(&store()?, a),
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => cmd_save(&store()?, a),
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => cmd_images(&store()?, a),
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => {
            let r = manage::remove(&store()?, &a.images, a.force)?;
            print_removal(&r, false);
            Ok(())
        }
        Cmd::Tag { source, target } | Cmd::Image(ImageCmd::Tag { source, target }) => {
            Ok(manage::tag(&store()?, &source, &target)?)
        }
        Cmd::Image(ImageCmd::Prune { all, force }) => {
            if !force {
                let what = if all {
                    "all images without at least one container associated to them"
                } else {
                    "all dangling images"
                };
                eprint!(
                    "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
                );
                let mut answer = String::new();
                io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(());
                }
            }
            let r = manage::prune(&store()?, all)?;
            print_removal(&r, true);
            Ok(())
        }
        Cmd::Image(ImageCmd::Inspect { images }) => {
            let store = store()?;
            let db = store.db()?;
            let mut out = Vec::new();
            for name in &images {
                let rec = db.resolve(name)?;
                out.push(manage::inspect(&store, &db, rec)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        _ => unreachable!("container commands are handled by run()"),
    }
}

fn cmd_load(store: &ImageStore, a: LoadArgs) -> Result<()> {
    let input = Input::from_arg(a.input.as_deref().unwrap_or("-"));
    if matches!(input, Input::Stdin) && io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is a terminal: use -i FILE or a pipe");
    }
    let progress = if a.quiet {
        Progress::hidden()
    } else {
        Progress::new("Loading", input.size())
    };
    let loaded = load(store, &input, &progress);
    progress.finish();
    for l in loaded? {
        for line in l.report() {
            println!("{line}");
        }
    }
    Ok(())
}

fn cmd_import(store: &ImageStore, a: ImportArgs) -> Result<()> {
    let tag = a.reference.as_deref().map(Reference::parse).transpose()?;
    let input = Input::from_arg(&a.file);
    let progress = Progress::new("Importing", input.size());
    let loaded = import(store, &input, tag.as_ref(), a.message.as_deref(), &progress);
    progress.finish();
    let loaded = loaded?;
    println!("{}", loaded.id);
    Ok(())
}

fn cmd_save(store: &ImageStore, a: SaveArgs) -> Result<()> {
    // save counts the bytes and layers on the progress line itself.
    write_archive("Saving", "save", a.output.as_deref(), |w, progress| {
        Ok(save(store, &a.images, w, progress)?)
    })
}

fn cmd_images(store: &ImageStore, a: ImagesArgs) -> Result<()> {
    if !matches!(a.format.as_str(), "table" | "json") {
        bail!("--format {:?}: use table or json", a.format);
    }
    let db = store.db()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let filter = a.reference.as_deref().map(|r| {
        let tagged = r.rsplit('/').next().is_some_and(|last| last.contains(':'));
        (Reference::parse(r), tagged)
    });
    // (created, repo, tag, record)
    let mut rows = Vec::new();
    for rec in db.images.values() {
        let tags = db.tags_of(rec.id());
        let names: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| {
                    let (r, tg) = t.rsplit_once(':').unwrap_or((t, ""));
                    (r.to_string(), tg.to_string())
                })
                .collect()
        };
        for (repo, tag) in names {
            if let Some((r, tagged)) = &filter {
                let Ok(r) = r else { continue };
                if r.repo != repo || (*tagged && r.tag != tag) {
                    continue;
                }
            }
            let created = rec.created.as_deref().and_then(parse_rfc3339);
            rows.push((created.unwrap_or(0), repo, tag, rec));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for (_, _, _, rec) in &rows {
            if seen.insert(rec.id().clone()) {
                println!(
                    "{}",
                    if a.no_trunc {
                        rec.id().to_string()
                    } else {
                        rec.id().short().to_string()
                    }
                );
            }
        }
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if a.format == "json" {
        for (created, repo, tag, rec) in &rows {
            let v = serde_json::json!({
                "Containers": "N/A",
                "CreatedAt": rec.created.clone().unwrap_or_default(),
                "CreatedSince": if *created > 0 { human::ago(now - created) } else { "N/A".into() },
                "Digest": "<none>",
                "ID": if a.no_trunc { rec.id().to_string() } else { rec.id().short().to_string() },
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": human::size(rec.size()),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": human::size(rec.size()),
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let mut table = vec![vec![
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for (created, repo, tag, rec) in rows {
        table.push(vec![
            repo,
            tag,
            if a.no_trunc {
                rec.id().to_string()
            } else {
                rec.id().short().to_string()
            },
            if created > 0 {
                human::ago(now - created)
            } else {
                "N/A".into()
            },
            human::size(rec.size()),
        ]);
    }
    write!(out, "{}", human::table(&table))?;
    Ok(())
}

fn print_removal(r: &Removal, prune: bool) {
    if prune && (!r.untagged.is_empty() || !r.deleted.is_empty()) {
        println!("Deleted Images:");
    }
    let (u, d) = if prune {
        ("untagged", "deleted")
    } else {
        ("Untagged", "Deleted")
    };
    for t in &r.untagged {
        println!("{u}: {t}");
    }
    for id in &r.deleted {
        println!("{d}: {id}");
    }
    if prune {
        if !r.untagged.is_empty() || !r.deleted.is_empty() {
            println!();
        }
        println!("Total reclaimed space: {}", human::size(r.freed));
    }
}
