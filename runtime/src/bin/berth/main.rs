//! berth: containers from images, with Docker's command line. This part: the
//! image commands (load, import, save, images, rmi, tag, image prune/inspect).

mod human;

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
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
        Ok(()) => ExitCode::SUCCESS,
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
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let store = || {
        ImageStore::open(&cli.root)
            .with_context(|| format!("image store under {}", cli.root.display()))
    };
    match cli.cmd {
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
    let progress = Progress::new("Saving", None);
    let r = match &a.output {
        Some(p) => {
            // Written beside the target and renamed, so a failed save leaves no partial file.
            let tmp = p.with_file_name(format!(
                ".{}.tmp{}",
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let r = save(store, &a.images, io::BufWriter::new(f), &progress)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    std::fs::rename(&tmp, p).with_context(|| format!("renaming to {}", p.display()))
                });
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal: use -o FILE or redirect stdout");
            }
            save(
                store,
                &a.images,
                io::BufWriter::new(io::stdout().lock()),
                &progress,
            )
            .map_err(Into::into)
        }
    };
    progress.finish();
    r
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
