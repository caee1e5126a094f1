//! berth's nftables table, rendered whole from the network state and
//! replaced in one `nft -f` transaction (`add table` + `delete table` + the
//! table), so it never holds half of a change and no other table is touched.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::{Error, Network, PortSpec, Result};

/// A published port and the container address it goes to.
pub type Dnat = (PortSpec, Ipv4Addr);

/// The script that makes table `ip TABLE` say exactly this (or removes it when
/// there is no network).
pub fn render(table: &str, networks: &[Network], ports: &[Dnat]) -> String {
    let mut s = format!("add table ip {table}\ndelete table ip {table}\n");
    if networks.is_empty() {
        return s;
    }
    s.push_str(&format!("table ip {table} {{\n"));
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain ports {\n");
    for (p, to) in ports {
        let daddr = if p.host_ip.is_unspecified() {
            String::new()
        } else {
            format!("ip daddr {} ", p.host_ip)
        };
        s.push_str(&format!(
            "    {daddr}{proto} dport {hp} dnat to {to}:{cp}\n",
            proto = p.proto,
            hp = p.host_port,
            cp = p.container_port
        ));
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for n in networks {
        let (br, sub) = (&n.bridge, n.subnet);
        // Out to the world; back in through a published port from the same
        // network (hairpin) or from the host's loopback.
        s.push_str(&format!(
            "    ip saddr {sub} oifname != \"{br}\" masquerade\n"
        ));
        s.push_str(&format!(
            "    oifname \"{br}\" ip saddr {sub} ct status dnat masquerade\n"
        ));
        s.push_str(&format!(
            "    oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade\n"
        ));
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct status dnat accept\n");
    for a in networks {
        for b in networks {
            if a.bridge != b.bridge {
                s.push_str(&format!(
                    "    iifname \"{}\" oifname \"{}\" drop\n",
                    a.bridge, b.bridge
                ));
            }
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// The `nft` binary.
fn nft() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Runs `script` through `nft -f -`.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new(nft())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("running {}: {e} (apt-get install nftables)", nft())))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("failed");
        return Err(Error::Nft(first.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Proto, Subnet};

    fn net(name: &str, br: &str, sub: &str) -> Network {
        let subnet: Subnet = sub.parse().expect("subnet");
        Network {
            name: name.into(),
            id: String::new(),
            bridge: br.into(),
            subnet,
            gateway: subnet.first_host(),
            index: 0,
            created: String::new(),
        }
    }

    #[test]
    fn no_network_removes_the_table() {
        assert_eq!(
            render("berth", &[], &[]),
            "add table ip berth\ndelete table ip berth\n"
        );
    }

    #[test]
    fn rules_for_networks_and_ports() {
        let nets = [
            net("a", "br-a", "10.1.0.0/24"),
            net("b", "br-b", "10.2.0.0/24"),
        ];
        let port = |ip: [u8; 4], hp, cp| PortSpec {
            host_ip: Ipv4Addr::from(ip),
            host_port: hp,
            container_port: cp,
            proto: Proto::Tcp,
        };
        let s = render(
            "berth",
            &nets,
            &[
                (port([0; 4], 8080, 80), Ipv4Addr::new(10, 1, 0, 2)),
                (port([127, 0, 0, 1], 53, 53), Ipv4Addr::new(10, 2, 0, 2)),
            ],
        );
        assert!(
            s.contains("    tcp dport 8080 dnat to 10.1.0.2:80\n"),
            "{s}"
        );
        assert!(s.contains("    ip daddr 127.0.0.1 tcp dport 53 dnat to 10.2.0.2:53\n"));
        assert!(s.contains("    ip saddr 10.1.0.0/24 oifname != \"br-a\" masquerade\n"));
        assert!(s.contains("    iifname \"br-a\" oifname \"br-b\" drop\n"));
        assert!(s.contains("    iifname \"br-b\" oifname \"br-a\" drop\n"));
    }
}
