//! The operations on [`Networks`], and the kernel state they imply.

use std::net::Ipv4Addr;

use super::*;

/// What must exist in the kernel, as the harness observes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kernel {
    /// Bridges, by name.
    pub bridges: BTreeSet<String>,
    /// Host-side veths and the bridge each is attached to.
    pub veths: BTreeMap<String, String>,
    /// Addresses on links: (link, address, prefix).
    pub addresses: BTreeSet<(String, Ipv4Addr, u8)>,
    /// Source subnets masqueraded on the way out.
    pub masquerade: BTreeSet<Subnet>,
    /// DNAT rules: (host address, host port, protocol) → (container address, port).
    pub dnat: BTreeMap<(Ipv4Addr, u16, Proto), (Ipv4Addr, u16)>,
}

impl Networks {
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subnet `network create` takes without `--subnet` (Podman's rule):
    /// the first 10.89.N.0/24 that neither a network nor the host overlaps.
    pub fn free_subnet(&self) -> Option<Subnet> {
        (0..=255u32)
            .map(|n| Subnet::new(Ipv4Addr::new(10, 89, n as u8, 0), 24))
            .find(|s| {
                !self.networks.values().any(|n| n.subnet.overlaps(s))
                    && !self.host.iter().any(|h| h.overlaps(s))
            })
    }

    /// The host has an address of `subnet` on one of its links.
    pub fn host_subnet(&mut self, subnet: Subnet) {
        self.host.push(subnet);
    }

    /// `network create`.
    pub fn create(
        &mut self,
        name: &str,
        bridge: &str,
        subnet: Subnet,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), Refusal> {
        if !super::valid_name(name) {
            return Err(Refusal::BadName(name.into()));
        }
        if self.networks.contains_key(name) {
            return Err(Refusal::NetworkExists(name.into()));
        }
        if let Some(n) = self.networks.values().find(|n| n.subnet.overlaps(&subnet)) {
            return Err(Refusal::SubnetOverlaps(n.name.clone()));
        }
        if self.host.iter().any(|h| h.overlaps(&subnet)) {
            return Err(Refusal::SubnetOverlaps("the host".into()));
        }
        let gateway = gateway.unwrap_or(Ipv4Addr::from(u32::from(subnet.addr) + 1));
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(Refusal::BadGateway(gateway));
        }
        let index = self.next_index;
        self.next_index += 1;
        let net = Network {
            name: name.into(),
            bridge: bridge.into(),
            subnet,
            gateway,
            index,
            leased: BTreeSet::new(),
        };
        self.networks.insert(name.into(), net);
        Ok(())
    }

    /// `network rm`: refused while endpoints remain.
    pub fn remove(&mut self, name: &str) -> Result<(), Refusal> {
        if !self.networks.contains_key(name) {
            return Err(Refusal::NoSuchNetwork(name.into()));
        }
        if self.endpoints.iter().any(|e| e.network == name) {
            return Err(Refusal::NetworkInUse(name.into()));
        }
        self.networks.remove(name);
        Ok(())
    }

    /// A container comes up in `mode` (bridge mode: on `network`, with `ip` if given).
    pub fn run(
        &mut self,
        container: &str,
        mode: Mode,
        network: Option<&str>,
        ip: Option<Ipv4Addr>,
    ) -> Result<(), Refusal> {
        // What a crashed container of this name still holds is given back
        // first (berth's store does so when a container id starts again; the
        // engine gives back all of a container that then fails to start).
        if self.gone.contains(container) {
            self.remove_container(container)?;
        }
        if self.containers.contains_key(container) {
            return Err(Refusal::ContainerExists(container.into()));
        }
        if let Mode::Container(other) = &mode
            && !self.containers.contains_key(other)
        {
            return Err(Refusal::NoSuchContainer(other.clone()));
        }
        let bridge = mode == Mode::Bridge;
        self.containers.insert(container.into(), (mode, Vec::new()));
        if let (true, Some(net)) = (bridge, network)
            && let Err(e) = self.connect(container, net, ip)
        {
            self.containers.remove(container);
            return Err(e);
        }
        Ok(())
    }

    /// `network connect`: a new endpoint.
    pub fn connect(
        &mut self,
        container: &str,
        network: &str,
        ip: Option<Ipv4Addr>,
    ) -> Result<(), Refusal> {
        match self.containers.get(container) {
            None => return Err(Refusal::NoSuchContainer(container.into())),
            Some((Mode::Bridge, _)) => {}
            Some(_) => return Err(Refusal::NotBridgeMode(container.into())),
        }
        if self
            .endpoints
            .iter()
            .any(|e| e.container == container && e.network == network)
        {
            return Err(Refusal::AlreadyConnected(container.into(), network.into()));
        }
        let net = self
            .networks
            .get_mut(network)
            .ok_or_else(|| Refusal::NoSuchNetwork(network.into()))?;
        let ip = match ip {
            Some(ip) if !net.subnet.contains(ip) => return Err(Refusal::AddressOutsideSubnet(ip)),
            Some(ip) if !net.assignable(ip) || net.leased.contains(&ip) => {
                return Err(Refusal::AddressUnavailable(ip));
            }
            Some(ip) => ip,
            None => net
                .next_free()
                .ok_or_else(|| Refusal::SubnetExhausted(network.into()))?,
        };
        net.leased.insert(ip);
        let host_veth = veth_name(container, net.index);
        self.endpoints.push(Endpoint {
            container: container.into(),
            network: network.into(),
            ip,
            mac: mac_for(ip),
            host_veth,
        });
        Ok(())
    }

    /// `network disconnect`: the endpoint goes, its address returns.
    pub fn disconnect(&mut self, container: &str, network: &str) -> Result<(), Refusal> {
        let pos = self
            .endpoints
            .iter()
            .position(|e| e.container == container && e.network == network)
            .ok_or_else(|| Refusal::NoSuchContainer(container.into()))?;
        let ep = self.endpoints.remove(pos);
        if let Some(net) = self.networks.get_mut(network) {
            net.leased.remove(&ep.ip);
        }
        Ok(())
    }

    /// Whether `port`'s host address, port and protocol are published.
    fn published(&self, port: &Port) -> bool {
        self.containers
            .values()
            .flat_map(|(_, ports)| ports.iter())
            .any(|(p, _)| {
                p.host_port == port.host_port
                    && p.proto == port.proto
                    && (p.host_ip == port.host_ip
                        || p.host_ip.is_unspecified()
                        || port.host_ip.is_unspecified())
            })
    }

    /// `-p [host_ip::]container_port/proto`: the first port of the ephemeral
    /// range `lo..=hi` that is not published (on the host address or
    /// 0.0.0.0), as Docker's allocator hands them out in order.
    pub fn free_host_port(&self, mut port: Port, lo: u16, hi: u16) -> Result<Port, Refusal> {
        for p in lo..=hi {
            port.host_port = p;
            if !self.published(&port) {
                return Ok(port);
            }
        }
        Err(Refusal::NoFreePort(port.host_ip, port.proto))
    }

    /// `-p host_ip:host_port:container_port/proto` for a running container.
    pub fn publish(&mut self, container: &str, port: Port) -> Result<(), Refusal> {
        if !self.containers.contains_key(container) {
            return Err(Refusal::NoSuchContainer(container.into()));
        }
        if self.published(&port) {
            return Err(Refusal::PortInUse(port.host_ip, port.host_port, port.proto));
        }
        let (_, ports) = self.containers.get_mut(container).expect("checked");
        ports.push((port, container.into()));
        Ok(())
    }

    /// The container's namespace dies and nobody gives back what it held
    /// (its process and its owner were killed): its veths go with the
    /// namespace (the kernel deletes a veth pair with either end), while its
    /// leases, published ports (their DNAT rules) and its record stay until
    /// a recovery ([`Networks::remove_container`]) or a new run of the same
    /// container gives them back. Nothing reaches it meanwhile.
    pub fn crash(&mut self, container: &str) -> Result<(), Refusal> {
        if !self.containers.contains_key(container) {
            return Err(Refusal::NoSuchContainer(container.into()));
        }
        self.gone.insert(container.into());
        Ok(())
    }

    /// Whether `container` crashed and what it held was not given back yet.
    pub fn is_gone(&self, container: &str) -> bool {
        self.gone.contains(container)
    }

    /// The container goes (or its owner died and is recovered): endpoints,
    /// addresses and ports are released.
    pub fn remove_container(&mut self, container: &str) -> Result<(), Refusal> {
        if self.containers.remove(container).is_none() {
            return Err(Refusal::NoSuchContainer(container.into()));
        }
        self.gone.remove(container);
        let nets: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| e.container == container)
            .map(|e| e.network.clone())
            .collect();
        for n in nets {
            self.disconnect(container, &n)?;
        }
        Ok(())
    }

    /// Where a TCP connection to `dst:port` lands: the container and the port
    /// it is delivered to, or `None` when no container gets it (dropped,
    /// refused, or nothing routes there). `from` is the host (`None`) or a
    /// container's network namespace (a `container:` mode container is its
    /// owner's; a host-mode one is the host). Whether something listens there
    /// is the caller's knowledge. The rules are berth's (and Docker's):
    /// - a container's address is reached from the host, from the container
    ///   itself, and from containers on one of the networks it has that
    ///   address on; a container on another network only is cut off (the
    ///   networks are isolated from each other);
    /// - a published TCP port is reached on the host's loopback (from the
    ///   host) and on the gateways (from the host, and from a container on
    ///   that gateway's network; hairpin to itself included), when its host
    ///   address is 0.0.0.0 or that address; it goes to the publishing
    ///   container's first endpoint, so it needs one.
    ///
    /// - nothing reaches a crashed container, nor leaves it.
    ///
    /// Not modelled: other host addresses from a container (they go by its
    /// default route).
    pub fn tcp_lands(&self, from: Option<&str>, dst: Ipv4Addr, port: u16) -> Option<(String, u16)> {
        let lands = self.tcp_lands_alive(from, dst, port)?;
        (!self.gone.contains(&lands.0)).then_some(lands)
    }

    /// [`Networks::tcp_lands`] but for the crashed container it may land in.
    fn tcp_lands_alive(
        &self,
        from: Option<&str>,
        dst: Ipv4Addr,
        port: u16,
    ) -> Option<(String, u16)> {
        let from = match from {
            None => None,
            Some(c) => match self.containers.get(c) {
                None => return None,
                Some((Mode::Host, _)) => None,
                Some((Mode::Container(owner), _)) => Some(owner.as_str()),
                Some(_) => Some(c),
            },
        };
        // A crashed container's namespace (or its owner's) is gone.
        if from.is_some_and(|c| self.gone.contains(c)) {
            return None;
        }
        let on = |c: &str, network: &str| {
            self.endpoints
                .iter()
                .any(|e| e.container == c && e.network == network)
        };
        if let Some(e) = self.endpoints.iter().find(|e| e.ip == dst) {
            return match from {
                None => Some((e.container.clone(), port)),
                Some(a) if a == e.container || on(a, &e.network) => {
                    Some((e.container.clone(), port))
                }
                Some(_) => None,
            };
        }
        let host_address = match from {
            None => dst.is_loopback() || self.networks.values().any(|n| n.gateway == dst),
            Some(a) => self
                .networks
                .values()
                .any(|n| n.gateway == dst && on(a, &n.name)),
        };
        if !host_address {
            return None;
        }
        let (p, owner) = self
            .containers
            .iter()
            .flat_map(|(c, (_, ports))| ports.iter().map(move |(p, _)| (p, c)))
            .find(|(p, _)| {
                p.proto == Proto::Tcp
                    && p.host_port == port
                    && (p.host_ip.is_unspecified() || p.host_ip == dst)
            })?;
        let ep = self.endpoints.iter().find(|e| &e.container == owner)?;
        Some((ep.container.clone(), p.container_port))
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// A network.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.get(name)
    }

    /// The containers and their modes.
    pub fn containers(&self) -> impl Iterator<Item = (&str, &Mode)> {
        self.containers.iter().map(|(n, (m, _))| (n.as_str(), m))
    }

    /// What must exist in the kernel for this state.
    pub fn kernel(&self) -> Kernel {
        let mut k = Kernel::default();
        for n in self.networks.values() {
            k.bridges.insert(n.bridge.clone());
            k.addresses
                .insert((n.bridge.clone(), n.gateway, n.subnet.prefix));
            k.masquerade.insert(n.subnet);
        }
        // A crashed container's veths went with its namespace.
        for e in self
            .endpoints
            .iter()
            .filter(|e| !self.gone.contains(&e.container))
        {
            k.veths.insert(
                e.host_veth.clone(),
                self.networks[&e.network].bridge.clone(),
            );
        }
        for (name, (_, ports)) in &self.containers {
            // A published port goes to the container's first endpoint.
            let Some(ep) = self.endpoints.iter().find(|e| &e.container == name) else {
                continue;
            };
            for (p, _) in ports {
                k.dnat
                    .insert((p.host_ip, p.host_port, p.proto), (ep.ip, p.container_port));
            }
        }
        k
    }
}
