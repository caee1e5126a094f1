//! One container's network set up and torn down by berth, as a whole process,
//! for `cargo xtask compare` to time beside the CNI bridge plugin's ADD and DEL.
//!
//! ```text
//! net-setup create ROOT SUBNET     a bridge network "cmp" under berth root ROOT
//! net-setup setup ROOT N PID       container N: a lease, the veth pair into PID's
//!                                  network namespace, bridge, address, routes
//! net-setup release ROOT N         its lease back, its veth deleted (the
//!                                  namespace still there, as for CNI's DEL)
//!                                  and its hosts file removed
//! net-setup rm ROOT                the network, its bridge and nftables rules
//! ```
//!
//! Run it only in a network namespace made for it (compare runs in one).

use std::path::Path;

use anyhow::{Context, Result, bail};
use berth::network::{Attach, Networks, Subnet};

fn main() {
    if let Err(e) = run() {
        eprintln!("net-setup: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["create", root, subnet] => {
            let subnet: Subnet = subnet
                .parse()
                .map_err(|e| anyhow::anyhow!("subnet {subnet:?}: {e}"))?;
            Networks::open(Path::new(root), None)?.create("cmp", Some(subnet), None)?;
        }
        ["setup", root, n, pid] => {
            berth::profile::mark("main");
            let pid: i32 = pid.parse().with_context(|| format!("PID {pid:?}: a pid"))?;
            let nets = Networks::open(Path::new(root), None)?;
            let id = id(n)?;
            nets.reserve(&Attach {
                container: &id,
                name: "cmp",
                hostname: "cmp",
                networks: &["cmp".to_string()],
                ip: None,
                ports: &[],
                // Its own hosts file, as the engine gives each container one
                // in its own directory.
                hosts_file: &hosts_file(root, &id),
            })?;
            berth::profile::mark("reserved");
            nets.plumb(&id, pid)?;
            berth::profile::mark("plumbed");
        }
        ["release", root, n] => {
            let id = id(n)?;
            Networks::open(Path::new(root), None)?.release(&id, true)?;
            let hosts = hosts_file(root, &id);
            std::fs::remove_file(&hosts)
                .with_context(|| format!("removing {}", hosts.display()))?;
        }
        ["rm", root] => {
            Networks::open(Path::new(root), None)?.remove("cmp")?;
        }
        _ => bail!(
            "usage: net-setup create ROOT SUBNET | setup ROOT N PID | release ROOT N | rm ROOT"
        ),
    }
    Ok(())
}

/// Container `id`'s hosts file.
fn hosts_file(root: &str, id: &str) -> std::path::PathBuf {
    Path::new(root).join(format!("hosts-{}", &id[..12]))
}

/// Container N's id: unique in its first nine digits, which name the veth.
fn id(n: &str) -> Result<String> {
    let n: u64 = n.parse().with_context(|| format!("N {n:?}: a number"))?;
    Ok(format!("{n:09x}{}", "0".repeat(55)))
}
