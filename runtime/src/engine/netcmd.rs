//! `berth network …` and `berth port`: what the engine adds to the network
//! code (container names, running state, Docker's JSON).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::container::{NetworkMode, Status};
use super::{Engine, Error, Result};
use crate::network::{self, PortSpec, mac_string};

/// `network inspect`: Docker's fields.
pub fn inspect(e: &Engine, what: &str) -> Result<Value> {
    let n = e.networks.get(what)?;
    let mut containers = serde_json::Map::new();
    for ep in e.networks.endpoints_on(&n.name)? {
        containers.insert(
            ep.container.clone(),
            json!({
                "Name": ep.name,
                "MacAddress": mac_string(&ep.mac),
                "IPv4Address": format!("{}/{}", ep.ip, n.subnet.prefix()),
                "IPv6Address": "",
            }),
        );
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
        "Internal": false,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": n.bridge},
        "Labels": {},
    }))
}

/// `network rm`.
pub fn remove(e: &Engine, what: &str) -> Result<()> {
    e.networks.remove(what)?;
    Ok(())
}

/// `network prune`: user-defined networks without containers, and no
/// container record names them.
pub fn prune(e: &Engine) -> Result<Vec<String>> {
    let named: Vec<String> = e
        .containers
        .list()?
        .into_iter()
        .filter_map(|c| match c.config.network {
            NetworkMode::Bridge(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut gone = Vec::new();
    for n in e.networks.list()? {
        if n.name == network::DEFAULT || named.contains(&n.name) {
            continue;
        }
        if e.networks.endpoints_on(&n.name)?.is_empty() {
            e.networks.remove(&n.name)?;
            gone.push(n.name);
        }
    }
    Ok(gone)
}

fn running(e: &Engine, what: &str) -> Result<super::container::Container> {
    let c = e.containers.resolve(what)?;
    if !c.state.init_running() {
        return Err(Error::State {
            id: c.name.clone(),
            msg: "is not running".into(),
        });
    }
    if !matches!(c.config.network, NetworkMode::Bridge(_)) {
        return Err(Error::State {
            id: c.name.clone(),
            msg: format!(
                "is in network mode {}: only bridge-mode containers join networks",
                super::run::network_mode(&c.config.network)
            ),
        });
    }
    Ok(c)
}

/// `network connect NETWORK CONTAINER`.
pub fn connect(e: &Engine, net: &str, what: &str, ip: Option<Ipv4Addr>) -> Result<()> {
    let c = running(e, what)?;
    let _l = e.containers.lock(&c.id)?;
    e.networks.connect(
        &network::Attach {
            container: &c.id,
            name: &c.name,
            hostname: &c.config.hostname,
            networks: &[net.to_string()],
            ip,
            ports: &[],
            hosts_file: &e.containers.dir(&c.id).join("hosts"),
        },
        c.state.pid,
    )?;
    Ok(())
}

/// `network disconnect NETWORK CONTAINER`.
pub fn disconnect(e: &Engine, net: &str, what: &str) -> Result<()> {
    let c = e.containers.resolve(what)?;
    let _l = e.containers.lock(&c.id)?;
    let pid = (c.state.status == Status::Running && c.state.init_running()).then_some(c.state.pid);
    e.networks.disconnect(&c.id, &c.name, net, pid)?;
    Ok(())
}

/// `port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080` lines, or the
/// host addresses of one port.
pub fn ports(e: &Engine, what: &str, port: Option<&str>) -> Result<Vec<String>> {
    let c = e.containers.resolve(what)?;
    let published = e.networks.ports_of(&c.id)?;
    let want = port
        .map(|p| {
            PortSpec::parse(p).and_then(|v| {
                v.first()
                    .copied()
                    .ok_or_else(|| network::Error::Invalid("port".into(), p.to_string()))
            })
        })
        .transpose()?;
    let mut out = Vec::new();
    for p in &published {
        match want {
            Some(w) if (w.container_port, w.proto) != (p.container_port, p.proto) => {}
            Some(_) => out.push(format!("{}:{}", p.host_ip, p.host_port)),
            None => out.push(format!(
                "{}/{} -> {}:{}",
                p.container_port, p.proto, p.host_ip, p.host_port
            )),
        }
    }
    if out.is_empty()
        && let Some(p) = port
    {
        return Err(Error::State {
            id: c.name,
            msg: format!("no public port {p:?} published"),
        });
    }
    Ok(out)
}

/// `NetworkSettings` of `docker inspect` for container `id` in `mode`.
pub fn settings(e: &Engine, id: &str, mode: &NetworkMode, running: bool) -> Value {
    let eps = if running {
        e.networks.endpoints_of(id).unwrap_or_default()
    } else {
        Vec::new()
    };
    let ports = e.networks.ports_of(id).unwrap_or_default();
    let mut pmap = serde_json::Map::new();
    for p in &ports {
        let k = format!("{}/{}", p.container_port, p.proto);
        let entry = pmap.entry(k).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
        }
    }
    let mut nets = serde_json::Map::new();
    for ep in &eps {
        let n = e.networks.get(&ep.network).ok();
        nets.insert(
            ep.network.clone(),
            json!({
                "NetworkID": n.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                "EndpointID": ep.host_veth,
                "Gateway": n.as_ref().map(|n| n.gateway.to_string()).unwrap_or_default(),
                "IPAddress": ep.ip.to_string(),
                "IPPrefixLen": n.as_ref().map(|n| n.subnet.prefix()).unwrap_or(0),
                "MacAddress": mac_string(&ep.mac),
            }),
        );
    }
    if nets.is_empty() {
        let name = super::run::network_mode(mode);
        if !name.starts_with("container:") {
            nets.insert(
                name,
                json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}),
            );
        }
    }
    let first = eps.first();
    let gw = first
        .and_then(|ep| e.networks.get(&ep.network).ok())
        .map(|n| (n.gateway.to_string(), n.subnet.prefix()));
    json!({
        "Ports": pmap,
        "IPAddress": first.map(|ep| ep.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": gw.as_ref().map(|g| g.1).unwrap_or(0),
        "Gateway": gw.map(|g| g.0).unwrap_or_default(),
        "MacAddress": first.map(|ep| mac_string(&ep.mac)).unwrap_or_default(),
        "Networks": nets,
    })
}
