//! Device access: v1's devices controller, and v2's device filter programs.
//!
//! Rules encoded here, from the kernel's security/device_cgroup.c and
//! Documentation/admin-guide/cgroup-v1/devices.rst:
//!
//! - v1: each cgroup has a default (allow or deny every device) and a list of
//!   exceptions `(type, major, minor, access)`, `*` for any number. In an
//!   allowing cgroup the exceptions are denials: an access is refused if any
//!   exception shares a device and one access bit with it. In a denying cgroup
//!   they are permissions: an access is allowed only if one exception covers
//!   the device and every bit asked for.
//! - A new cgroup starts as a copy of its parent.
//! - Writing `a` to `devices.allow` or `devices.deny` sets the default and
//!   clears the exceptions (`allow` takes the parent's exceptions back); it is
//!   refused with EINVAL while the cgroup has children, and `allow` with EPERM
//!   under a denying parent.
//! - Writing one rule where it agrees with the default removes access bits
//!   from the exception of exactly that `(type, major, minor)`, if there is
//!   one (no other is touched: `deny c 1:* w` leaves `c 1:3 rw` as it is).
//!   Writing one against the default adds the bits to that exception, or a
//!   new one.
//! - A child may not gain what its parent lacks (EPERM): a new permission in
//!   a denying cgroup must be covered by one of a denying parent's, and must
//!   not touch one of an allowing parent's denials; an allowing cgroup may not
//!   drop a denial that touches one of its parent's.
//! - A new denial reaches every descendant, parents first: an allowing one
//!   under an allowing writer adds it, any other loses the matching bits; each
//!   then drops the exceptions its parent no longer permits.
//! - v2 has no devices controller: programs attached to a cgroup decide, and
//!   an access is allowed only if every program along the cgroup's path
//!   allows it. berth (like runc) compiles a container's OCI rules into one
//!   program, and replaces the cgroup's program on a new set of rules; the
//!   program means what the rules would mean written in order to a v1
//!   cgroup that allowed everything, without a parent to ask ([`emulate`]).

use std::fmt;

/// Read (`r`).
pub const READ: u8 = 1;
/// Write (`w`).
pub const WRITE: u8 = 2;
/// Making a node (`m`, mknod).
pub const MKNOD: u8 = 4;
/// Every access.
pub const ALL: u8 = READ | WRITE | MKNOD;

/// A device's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `c`
    Char,
    /// `b`
    Block,
}

/// The text of an access set: "rwm", "r", …
pub fn access_text(a: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .into_iter()
        .filter(|(bit, _)| a & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

fn number(n: Option<u32>) -> String {
    n.map_or("*".into(), |n| n.to_string())
}

/// One rule, as written to `devices.allow` / `devices.deny`, or as one of
/// OCI's `linux.resources.devices`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow (or deny).
    pub allow: bool,
    /// The type; `None` is `a`: every device, and the rule sets the default.
    pub kind: Option<Kind>,
    /// The major number (`None`: any).
    pub major: Option<u32>,
    /// The minor number (`None`: any).
    pub minor: Option<u32>,
    /// The access bits.
    pub access: u8,
}

impl Rule {
    /// `a`: allow or deny every device.
    pub fn all(allow: bool) -> Rule {
        Rule {
            allow,
            kind: None,
            major: None,
            minor: None,
            access: ALL,
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.allow { "allow" } else { "deny" };
        match self.kind {
            None => write!(f, "{verb} a"),
            Some(k) => write!(
                f,
                "{verb} {} {}:{} {}",
                if k == Kind::Char { 'c' } else { 'b' },
                number(self.major),
                number(self.minor),
                access_text(self.access)
            ),
        }
    }
}

/// An exception of a v1 cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// The type.
    pub kind: Kind,
    /// The major number (`None`: any).
    pub major: Option<u32>,
    /// The minor number (`None`: any).
    pub minor: Option<u32>,
    /// The access bits.
    pub access: u8,
}

impl Exception {
    fn same_device(&self, other: &Exception) -> bool {
        (self.kind, self.major, self.minor) == (other.kind, other.major, other.minor)
    }

    /// Covers the device and every bit of `access` (a `*` asked for is
    /// covered only by a `*`): the kernel's `match_exception`.
    fn covers(&self, kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> bool {
        self.kind == kind
            && (self.major.is_none() || self.major == major)
            && (self.minor.is_none() || self.minor == minor)
            && access & !self.access == 0
    }

    /// Shares a device and an access bit with the request (`*` on either
    /// side shares): the kernel's `match_exception_partial`.
    fn touches(&self, kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> bool {
        let num = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        self.kind == kind
            && num(self.major, major)
            && num(self.minor, minor)
            && access & self.access != 0
    }
}

/// One cgroup's device state: the default and the exceptions, in the
/// order `devices.list` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    /// Every device allowed but the exceptions (or denied but them).
    pub allow_by_default: bool,
    /// The exceptions.
    pub exceptions: Vec<Exception>,
}

impl Default for Devices {
    /// The root's: everything allowed.
    fn default() -> Self {
        Devices {
            allow_by_default: true,
            exceptions: Vec::new(),
        }
    }
}

impl Devices {
    /// Adds the bits to the exception of the same device, or a new one.
    fn add(&mut self, ex: Exception) {
        match self.exceptions.iter_mut().find(|e| e.same_device(&ex)) {
            Some(e) => e.access |= ex.access,
            None => self.exceptions.push(ex),
        }
    }

    /// Takes the bits from the exception of the same device; one left
    /// without bits goes.
    fn remove(&mut self, ex: &Exception) {
        for e in self.exceptions.iter_mut().filter(|e| e.same_device(ex)) {
            e.access &= !ex.access;
        }
        self.exceptions.retain(|e| e.access != 0);
    }

    fn covered(&self, ex: &Exception) -> bool {
        self.exceptions
            .iter()
            .any(|e| e.covers(ex.kind, ex.major, ex.minor, ex.access))
    }

    fn touched(&self, ex: &Exception) -> bool {
        self.exceptions
            .iter()
            .any(|e| e.touches(ex.kind, ex.major, ex.minor, ex.access))
    }

    /// Whether an access of `access` to the device is allowed.
    pub fn allows(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let ex = Exception {
            kind,
            major: Some(major),
            minor: Some(minor),
            access,
        };
        if self.allow_by_default {
            !self.touched(&ex)
        } else {
            self.covered(&ex)
        }
    }

    /// The lines of `devices.list`: `a *:* rwm` for an allowing cgroup (its
    /// denials are not shown), the permissions of a denying one.
    pub fn list(&self) -> Vec<String> {
        if self.allow_by_default {
            return vec!["a *:* rwm".into()];
        }
        self.exceptions
            .iter()
            .map(|e| {
                format!(
                    "{} {}:{} {}",
                    if e.kind == Kind::Char { 'c' } else { 'b' },
                    number(e.major),
                    number(e.minor),
                    access_text(e.access)
                )
            })
            .collect()
    }

    /// Whether a cgroup in state `self` may hold `ex` (in its own default
    /// `child_allows`): the kernel's `verify_new_ex` on the parent.
    fn permits(&self, ex: &Exception, child_allows: bool) -> bool {
        match (self.allow_by_default, child_allows) {
            (true, true) => true,
            (true, false) => !self.touched(ex),
            (false, _) => self.covered(ex),
        }
    }

    /// One rule written with no parent to ask and no children to tell.
    pub fn apply(&mut self, rule: &Rule) {
        let Some(kind) = rule.kind else {
            *self = Devices {
                allow_by_default: rule.allow,
                exceptions: Vec::new(),
            };
            return;
        };
        let ex = Exception {
            kind,
            major: rule.major,
            minor: rule.minor,
            access: rule.access,
        };
        if rule.allow == self.allow_by_default {
            self.remove(&ex);
        } else {
            self.add(ex);
        }
    }
}

/// What a v2 program compiled from `rules` decides: the rules written in
/// order to a cgroup that allowed everything.
pub fn emulate(rules: &[Rule]) -> Devices {
    let mut d = Devices::default();
    for r in rules {
        d.apply(r);
    }
    d
}

/// Why a write to `devices.allow` / `devices.deny` is refused.
fn refuse_children(path: &str) -> super::Refusal {
    super::Refusal::DevicesWithChildren(path.into())
}

impl super::Hierarchy {
    fn devices_of(&self, path: &str) -> Option<&Devices> {
        self.cgroups.get(path).map(|c| &c.devices)
    }

    /// v1: writes `rule` to `path`'s `devices.allow` or `devices.deny`.
    pub fn write_devices(&mut self, path: &str, rule: &Rule) -> Result<(), super::Refusal> {
        use super::Refusal;
        self.get(path)?;
        let parent = super::parent_of(path)
            .and_then(|p| self.devices_of(p))
            .cloned();
        let own = self.cgroups[path].devices.clone();
        let Some(kind) = rule.kind else {
            if self.has_children(path) {
                return Err(refuse_children(path));
            }
            let new = if rule.allow {
                match &parent {
                    Some(p) if !p.allow_by_default => {
                        return Err(Refusal::DeviceNotPermitted(path.into()));
                    }
                    Some(p) => p.clone(),
                    None => Devices::default(),
                }
            } else {
                Devices {
                    allow_by_default: false,
                    exceptions: Vec::new(),
                }
            };
            self.cgroups.get_mut(path).expect("checked").devices = new;
            return Ok(());
        };
        let ex = Exception {
            kind,
            major: rule.major,
            minor: rule.minor,
            access: rule.access,
        };
        if rule.allow {
            let allowed = match &parent {
                None => true,
                // Dropping a denial: not one the parent holds too.
                Some(p) if own.allow_by_default => !p.touched(&ex),
                Some(p) => p.permits(&ex, false),
            };
            if !allowed {
                return Err(Refusal::DeviceNotPermitted(path.into()));
            }
            self.cgroups
                .get_mut(path)
                .expect("checked")
                .devices
                .apply(rule);
            return Ok(());
        }
        self.cgroups
            .get_mut(path)
            .expect("checked")
            .devices
            .apply(rule);
        // The new denial reaches the descendants, parents first (paths sort
        // a parent before its children).
        let writer_allows = own.allow_by_default;
        let below = format!("{path}/");
        let descendants: Vec<String> = self
            .cgroups
            .keys()
            .filter(|p| p.starts_with(&below))
            .cloned()
            .collect();
        for d in descendants {
            let parent = super::parent_of(&d)
                .and_then(|p| self.devices_of(p))
                .cloned()
                .unwrap_or_default();
            let devs = &mut self.cgroups.get_mut(&d).expect("listed").devices;
            if writer_allows && devs.allow_by_default {
                devs.add(ex);
            } else {
                devs.remove(&ex);
            }
            let allows = devs.allow_by_default;
            for e in devs.exceptions.clone() {
                if !parent.permits(&e, allows) {
                    devs.remove(&e);
                }
            }
        }
        Ok(())
    }

    /// v2: attaches the program compiled from `rules` to `path`, in place of
    /// the one berth attached before.
    pub fn set_device_filter(&mut self, path: &str, rules: &[Rule]) -> Result<(), super::Refusal> {
        self.get(path)?;
        self.cgroups.get_mut(path).expect("checked").device_filter = Some(emulate(rules));
        Ok(())
    }

    /// Whether a process in `path` may access the device: v1 asks the
    /// cgroup's own state, v2 every program from the root down.
    pub fn device_allowed(
        &self,
        path: &str,
        kind: Kind,
        major: u32,
        minor: u32,
        access: u8,
    ) -> bool {
        if !self.v2 {
            return self
                .devices_of(path)
                .is_none_or(|d| d.allows(kind, major, minor, access));
        }
        self.chain(path).into_iter().all(|p| {
            self.cgroups
                .get(p)
                .and_then(|c| c.device_filter.as_ref())
                .is_none_or(|d| d.allows(kind, major, minor, access))
        })
    }
}
