//! Links, addresses and routes over rtnetlink.
//!
//! Each call runs on its own tokio current-thread runtime (no worker threads,
//! so nothing here breaks the fork-safety rule). Work inside a container's
//! network namespace uses a netlink socket opened while this thread had
//! `setns`'d into it: a socket stays in the namespace it was made in.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::{Error, Result, io};

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| Error::Netlink {
        what,
        msg: match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            other => other.to_string(),
        },
    }
}

fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
        _ => 0,
    }
}

/// Runs `f` with a netlink handle in the network namespace of `pid` (the
/// engine's own namespace when None).
fn with_handle<T>(pid: Option<i32>, f: impl AsyncFnOnce(Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io("starting", "a tokio runtime for netlink"))?;
    let _in_rt = rt.enter();
    let (conn, handle, _) = match pid {
        None => rtnetlink::new_connection().map_err(io("opening", "a netlink socket"))?,
        Some(pid) => {
            let path = format!("/proc/{pid}/ns/net");
            let target = File::open(&path).map_err(io("opening", &path))?;
            let own = File::open("/proc/thread-self/ns/net")
                .map_err(io("opening", "/proc/thread-self/ns/net"))?;
            setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netlink {
                what: format!("setns {path}"),
                msg: e.desc().into(),
            })?;
            let made = rtnetlink::new_connection();
            setns(&own, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netlink {
                what: "setns back to the engine's network namespace".into(),
                msg: e.desc().into(),
            })?;
            made.map_err(io("opening", format!("a netlink socket in {path}")))?
        }
    };
    let task = rt.spawn(conn);
    let r = rt.block_on(f(handle));
    task.abort();
    r
}

async fn find(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("get link {name}"))(e)),
    }
}

fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(n) => Some(*n),
        _ => None,
    })
}

/// Makes bridge `name` with `gateway/prefix` on it, up, unless it exists; lets
/// DNAT'd 127.0.0.1 traffic leave through it (route_localnet).
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    with_handle(None, async |h| {
        bridge_in(&h, name, gateway, prefix).await.map(|_| ())
    })?;
    route_localnet(name)
}

fn route_localnet(bridge: &str) -> Result<()> {
    let p = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&p, "1").map_err(io("writing", &p))
}

/// [`ensure_bridge`]'s netlink part, on a connection of the caller's; the
/// bridge's link as found before it was set up.
async fn bridge_in(h: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<LinkMessage> {
    {
        let link = match find(h, name).await? {
            Some(l) => l,
            None => {
                match h.link().add(LinkBridge::new(name).build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == libc::EEXIST => {}
                    Err(e) => return Err(nl(format!("add bridge {name}"))(e)),
                }
                find(h, name).await?.ok_or_else(|| Error::Netlink {
                    what: format!("add bridge {name}"),
                    msg: "not there after it was made".into(),
                })?
            }
        };
        let idx = link.header.index;
        match h
            .address()
            .add(idx, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == libc::EEXIST => {}
            Err(e) => return Err(nl(format!("add address {gateway}/{prefix} to {name}"))(e)),
        }
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("set {name} up")))?;
        Ok(link)
    }
}

/// Deletes link `name` (a bridge, or a veth and so its peer); gone already is fine.
pub fn delete_link(name: &str) -> Result<()> {
    with_handle(None, async |h| {
        let Some(l) = find(&h, name).await? else {
            return Ok(());
        };
        match h.link().del(l.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == libc::ENODEV => Ok(()),
            Err(e) => Err(nl(format!("delete link {name}"))(e)),
        }
    })
}

/// Whether link `name` exists in the engine's namespace.
pub fn exists(name: &str) -> Result<bool> {
    with_handle(None, async |h| Ok(find(&h, name).await?.is_some()))
}

/// IPv4 addresses on the host's links: (link name, address, prefix).
pub fn host_addresses() -> Result<Vec<(String, Ipv4Addr, u8)>> {
    with_handle(None, async |h| {
        let links: Vec<LinkMessage> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("dump links"))?;
        let name = |idx: u32| {
            links
                .iter()
                .find(|l| l.header.index == idx)
                .and_then(|l| {
                    l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                })
                .unwrap_or_default()
        };
        let addrs: Vec<_> = h
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("dump addresses"))?;
        Ok(addrs
            .iter()
            .filter_map(|a| {
                a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Address(IpAddr::V4(ip)) => {
                        Some((name(a.header.index), *ip, a.header.prefix_len))
                    }
                    _ => None,
                })
            })
            .collect())
    })
}

/// What one endpoint needs on both sides.
#[derive(Debug, Clone)]
pub struct Plumbing<'a> {
    /// The bridge to attach to (made, addressed and up first if it is not).
    pub bridge: &'a str,
    /// The bridge's own address: the network's gateway.
    pub bridge_gateway: Ipv4Addr,
    /// The host end's name.
    pub host_veth: &'a str,
    /// The container's init.
    pub pid: i32,
    /// The name inside.
    pub ifname: &'a str,
    /// The address and prefix.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The default route's gateway (None: no default route).
    pub gateway: Option<Ipv4Addr>,
    /// The MAC.
    pub mac: [u8; 6],
}

/// Makes the veth pair of an endpoint in one request: the host end on the
/// bridge, up; the other end made directly in the namespace of `pid` with its
/// name, MAC and MTU (moving a device between namespaces afterwards costs an
/// RCU grace period, tens of milliseconds). Then, inside: up, the address,
/// loopback up, the default route through the gateway; hairpin on the bridge
/// port. On error the pair is removed.
pub fn plumb(p: &Plumbing) -> Result<()> {
    // The bridge is ensured on the same connection as the pair is made (one
    // runtime, socket and bridge lookup less per container).
    let made = with_handle(None, async |h| {
        let br = bridge_in(&h, p.bridge, p.bridge_gateway, p.prefix).await?;
        let mtu = mtu_of(&br).unwrap_or(1500);
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(p.ifname.to_string())
            .address(p.mac.to_vec())
            .mtu(mtu)
            .setns_by_pid(p.pid as u32)
            .build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(p.host_veth.to_string())
            .mtu(mtu)
            .controller(br.header.index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        let what = format!(
            "add veth {} (its peer {} in the namespace of {})",
            p.host_veth, p.ifname, p.pid
        );
        match h.link().add(veth.clone()).execute().await {
            // The same container's last run: its namespace is still being
            // dismantled by the kernel. Delete that pair now, then add again.
            Err(e) if errno(&e) == libc::EEXIST => {
                if let Some(old) = find(&h, p.host_veth).await? {
                    let _ = h.link().del(old.header.index).execute().await;
                }
                h.link().add(veth).execute().await.map_err(nl(what))
            }
            other => other.map_err(nl(what)),
        }?;
        // Hairpin: a container's connection to a port it publishes itself,
        // DNAT'd back to it, leaves through the port it came in by when the
        // bridge's traffic goes through netfilter (br_netfilter loaded).
        // RTM_NEWLINK on the existing port, by name, without
        // CREATE/EXCL/REPLACE (the kernel refuses those for a device that
        // exists; RTM_SETLINK ignores port data).
        use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST};
        h.link()
            .add(
                LinkBridgePort::new(0)
                    .name(p.host_veth.to_string())
                    .hairpin(true)
                    .build(),
            )
            .set_flags(NLM_F_REQUEST | NLM_F_ACK)
            .execute()
            .await
            .map_err(nl(format!("set hairpin on {}", p.host_veth)))
    });
    let made = made.and_then(|()| route_localnet(p.bridge));
    let done = made.and_then(|()| {
        with_handle(Some(p.pid), async |h| {
            let inner = find(&h, p.ifname).await?.ok_or_else(|| Error::Netlink {
                what: format!("find {} in the container", p.ifname),
                msg: "no such device".into(),
            })?;
            let idx = inner.header.index;
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(nl(format!("set {} up in the container", p.ifname)))?;
            h.address()
                .add(idx, IpAddr::V4(p.ip), p.prefix)
                .execute()
                .await
                .map_err(nl(format!(
                    "add address {}/{} to {}",
                    p.ip, p.prefix, p.ifname
                )))?;
            if let Some(lo) = find(&h, "lo").await? {
                h.link()
                    .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                    .execute()
                    .await
                    .map_err(nl("set lo up"))?;
            }
            if let Some(gw) = p.gateway {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(idx)
                    .build();
                match h.route().add(route).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == libc::EEXIST => {}
                    Err(e) => return Err(nl(format!("add default route via {gw}"))(e)),
                }
            }
            Ok(())
        })
    });
    if done.is_err() {
        let _ = delete_link(p.host_veth);
    }
    done
}

/// Removes interface `ifname` from the namespace of `pid` (which deletes its
/// host end too).
pub fn unplumb_in(pid: i32, ifname: &str) -> Result<()> {
    with_handle(Some(pid), async |h| {
        let Some(l) = find(&h, ifname).await? else {
            return Ok(());
        };
        h.link()
            .del(l.header.index)
            .execute()
            .await
            .map_err(nl(format!("delete {ifname} in the container")))
    })
}
