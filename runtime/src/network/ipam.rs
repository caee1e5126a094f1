//! IP address management for one subnet: the free addresses as a set of
//! disjoint ranges, so the lowest free address, a given address and a release
//! each cost O(log n) in the number of ranges (and a fresh /16 is one range).
//!
//! As berth-model's bridge/IP part says: the network address, the broadcast
//! address and the gateway are never handed out, and the lowest free address
//! goes first.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::Subnet;

/// The free addresses of a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    subnet: Subnet,
    gateway: Ipv4Addr,
    /// Free ranges: first address → last address (inclusive), disjoint, not adjacent.
    free: BTreeMap<u32, u32>,
}

/// Why an address cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// None is left.
    Exhausted,
    /// Outside the subnet.
    Outside,
    /// Reserved (network, broadcast, gateway) or already handed out.
    Unavailable,
}

impl Pool {
    /// All assignable addresses of `subnet` free, but `gateway`.
    pub fn new(subnet: Subnet, gateway: Ipv4Addr) -> Pool {
        let (lo, hi) = (
            u32::from(subnet.addr()).saturating_add(1),
            u32::from(subnet.broadcast()).saturating_sub(1),
        );
        let mut p = Pool {
            subnet,
            gateway,
            free: BTreeMap::new(),
        };
        if lo <= hi {
            p.free.insert(lo, hi);
        }
        // The harness's proof that it sees a broken IPAM: this feature hands
        // the gateway out (never enable it elsewhere).
        if !cfg!(feature = "broken-ipam-gateway") {
            p.take(u32::from(gateway));
        }
        p
    }

    /// A pool with `leased` taken (those outside the pool are ignored).
    pub fn with_leases(
        subnet: Subnet,
        gateway: Ipv4Addr,
        leased: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Pool {
        let mut p = Pool::new(subnet, gateway);
        for ip in leased {
            p.take(u32::from(ip));
        }
        p
    }

    /// Hands out the lowest free address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, Refused> {
        // The benchmarks' proof that they see a slowdown (never enabled elsewhere).
        if cfg!(feature = "slowed-ipam") {
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        let (&lo, &hi) = self.free.iter().next().ok_or(Refused::Exhausted)?;
        self.free.remove(&lo);
        if lo < hi {
            self.free.insert(lo + 1, hi);
        }
        Ok(Ipv4Addr::from(lo))
    }

    /// Hands out `ip` itself.
    pub fn allocate_ip(&mut self, ip: Ipv4Addr) -> Result<Ipv4Addr, Refused> {
        if !self.subnet.contains(ip) {
            return Err(Refused::Outside);
        }
        if self.take(u32::from(ip)) {
            Ok(ip)
        } else {
            Err(Refused::Unavailable)
        }
    }

    /// Gives `ip` back (an address the pool never hands out is ignored).
    pub fn release(&mut self, ip: Ipv4Addr) {
        let a = u32::from(ip);
        let assignable = self.subnet.contains(ip)
            && ip != self.subnet.addr()
            && ip != self.subnet.broadcast()
            && ip != self.gateway;
        if !assignable || self.is_free(a) {
            return;
        }
        let (mut lo, mut hi) = (a, a);
        // Merge with the range ending just below and the one starting just above.
        if let Some((&l, &h)) = self.free.range(..a).next_back()
            && h.checked_add(1) == Some(a)
        {
            self.free.remove(&l);
            lo = l;
        }
        if let Some(h) = a.checked_add(1).and_then(|n| self.free.remove(&n)) {
            hi = h;
        }
        self.free.insert(lo, hi);
    }

    /// Whether `ip` is free.
    pub fn is_free_ip(&self, ip: Ipv4Addr) -> bool {
        self.is_free(u32::from(ip))
    }

    /// How many addresses are free.
    pub fn free_count(&self) -> u64 {
        self.free.iter().map(|(l, h)| u64::from(h - l) + 1).sum()
    }

    fn is_free(&self, a: u32) -> bool {
        self.free
            .range(..=a)
            .next_back()
            .is_some_and(|(_, &h)| a <= h)
    }

    /// Removes `a` from the free ranges; false when it was not free.
    fn take(&mut self, a: u32) -> bool {
        let Some((&lo, &hi)) = self.free.range(..=a).next_back() else {
            return false;
        };
        if a > hi {
            return false;
        }
        self.free.remove(&lo);
        if lo < a {
            self.free.insert(lo, a - 1);
        }
        if a < hi {
            self.free.insert(a + 1, hi);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Subnet {
        s.parse().expect("subnet")
    }

    #[test]
    fn a_29_hands_out_five_then_refuses() {
        let mut p = Pool::new(net("10.9.0.0/29"), Ipv4Addr::new(10, 9, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5).map(|_| p.allocate().expect("free")).collect();
        assert_eq!(
            got,
            (2..=6)
                .map(|i| Ipv4Addr::new(10, 9, 0, i))
                .collect::<Vec<_>>()
        );
        assert_eq!(p.allocate(), Err(Refused::Exhausted));
        p.release(Ipv4Addr::new(10, 9, 0, 4));
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 9, 0, 4)));
    }

    #[test]
    fn fixed_addresses_and_reserved_ones() {
        let mut p = Pool::new(net("10.9.0.0/24"), Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 0, 1)),
            Err(Refused::Unavailable)
        );
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 0, 0)),
            Err(Refused::Unavailable)
        );
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 0, 255)),
            Err(Refused::Unavailable)
        );
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 1, 5)),
            Err(Refused::Outside)
        );
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 0, 7)),
            Ok(Ipv4Addr::new(10, 9, 0, 7))
        );
        assert_eq!(
            p.allocate_ip(Ipv4Addr::new(10, 9, 0, 7)),
            Err(Refused::Unavailable)
        );
        assert_eq!(p.free_count(), 253 - 1);
        p.release(Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(p.free_count(), 252, "the gateway never becomes free");
    }

    proptest! {
        /// The pool hands out exactly what berth-model's network would.
        #[test]
        fn agrees_with_the_model(ops in proptest::collection::vec((0u8..3, 0u32..64), 1..120)) {
            use berth_model::network::{Mode, Networks, Subnet as MSubnet};
            let subnet = net("10.7.0.0/26");
            let gw = Ipv4Addr::new(10, 7, 0, 1);
            let mut pool = Pool::new(subnet, gw);
            let mut model = Networks::new();
            model.create("n", "br", MSubnet::new(Ipv4Addr::new(10, 7, 0, 0), 26), Some(gw)).expect("create");
            let mut held: Vec<(String, Ipv4Addr)> = Vec::new();
            for (i, (op, x)) in ops.into_iter().enumerate() {
                let name = format!("c{i}");
                match op {
                    0 => {
                        let m = model.run(&name, Mode::Bridge, Some("n"), None);
                        let r = pool.allocate();
                        prop_assert_eq!(m.is_ok(), r.is_ok());
                        if let Ok(ip) = r {
                            let ep = model.endpoints().iter().find(|e| e.container == name).expect("endpoint");
                            prop_assert_eq!(ep.ip, ip);
                            held.push((name, ip));
                        }
                    }
                    1 => {
                        let ip = Ipv4Addr::from(u32::from(subnet.addr()) + x);
                        let m = model.run(&name, Mode::Bridge, Some("n"), Some(ip));
                        let r = pool.allocate_ip(ip);
                        prop_assert_eq!(m.is_ok(), r.is_ok());
                        if r.is_ok() {
                            held.push((name, ip));
                        }
                    }
                    _ if !held.is_empty() => {
                        let (name, ip) = held.remove(x as usize % held.len());
                        model.remove_container(&name).expect("remove");
                        pool.release(ip);
                    }
                    _ => {}
                }
                let leased = &model.network("n").expect("net").leased;
                prop_assert_eq!(pool.free_count(), 61 - leased.len() as u64);
            }
        }
    }
}
