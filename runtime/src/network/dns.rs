//! The DNS files a container gets: /etc/hosts, /etc/resolv.conf, /etc/hostname,
//! written under its directory and bind-mounted over the image's.
//!
//! Containers on one user-defined network find each other by name through
//! /etc/hosts, which berth rewrites (in place: it is bind-mounted) whenever a
//! container joins or leaves the network. A file needs no resolver process
//! per network, works with every libc and busybox, and changes only when
//! membership does; the price is that a running container sees a new peer
//! only through that rewrite, which berth does under the network lock.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{Result, io};

/// The host's resolver configuration: systemd-resolved's upstream file when
/// /etc/resolv.conf points at its stub, as Docker does.
pub fn host_resolv_conf() -> String {
    let stub = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if stub.contains("127.0.0.53")
        && let Ok(up) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return up;
    }
    stub
}

/// `host` as a container in its own network namespace sees it: loopback
/// nameservers (unreachable from there) dropped, Google's public ones when none
/// is left (Docker's rule).
pub fn container_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("nameserver") {
            let ip = w.next().unwrap_or("");
            let local = ip
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if local {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// /etc/hosts: localhost, the container's own address and names, then its peers.
pub fn hosts(own: &[(Ipv4Addr, Vec<String>)], peers: &[(Ipv4Addr, Vec<String>)]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (ip, names) in own.iter().chain(peers) {
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    s
}

/// Writes `text` into `path` in place (a bind-mounted file must keep its inode).
pub fn write_in_place(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io("writing", path))?;
    f.write_all(text.as_bytes()).map_err(io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_are_replaced() {
        let r = container_resolv_conf("search lan\nnameserver 127.0.0.53\noptions edns0\n");
        assert_eq!(
            r,
            "search lan\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let r = container_resolv_conf("nameserver 10.0.0.2\nnameserver ::1\n");
        assert_eq!(r, "nameserver 10.0.0.2\n");
    }

    #[test]
    fn hosts_name_the_container_and_its_peers() {
        let h = hosts(
            &[(Ipv4Addr::new(10, 1, 0, 2), vec!["web".into(), "abc".into()])],
            &[(Ipv4Addr::new(10, 1, 0, 3), vec!["db".into()])],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.1.0.2\tweb abc\n10.1.0.3\tdb\n"));
    }
}
