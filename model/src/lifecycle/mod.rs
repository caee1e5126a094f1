//! Container lifecycles: the operations of the OCI runtime spec (runtime.md,
//! "Lifecycle" and "Operations") with the rules runc applies to them.
//!
//! - `create` makes a container that exists until `delete`; its id is unique.
//! - `start` runs the user process of a `created` container, and only of one.
//! - `pause` freezes a `created` or `running` container; `resume` thaws a
//!   `paused` one back to what it was.
//! - `kill` signals a container that is `created`, `running` or `paused`; a
//!   stopped one has no process to signal. SIGKILL stops it.
//! - `delete` removes a `created` (its init is killed) or `stopped` container;
//!   `delete --force` removes one in any status, and succeeds for an id that
//!   does not exist (runc's rule, which containerd's clean-up relies on).
//! - Every other operation on an id that does not exist is refused as such.

use std::collections::BTreeMap;

/// A container's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Made; its user process has not started.
    Created,
    /// Its user process runs.
    Running,
    /// Frozen.
    Paused,
    /// Its process has exited.
    Stopped,
}

/// The operations whose legality depends on the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `start`
    Start,
    /// `pause`
    Pause,
    /// `resume`
    Resume,
    /// `kill`
    Kill,
    /// `delete` without `--force`
    Delete,
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A container with that id exists.
    Exists(String),
    /// No container with that id.
    NotFound(String),
    /// The operation is not allowed in the container's status.
    BadState(String, Op, Status),
}

/// The containers of one runtime root: id → status, and for a paused one
/// the status it was paused in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Containers {
    map: BTreeMap<String, (Status, Option<Status>)>,
}

impl Containers {
    /// No containers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each container's status.
    pub fn statuses(&self) -> BTreeMap<String, Status> {
        self.map.iter().map(|(k, (s, _))| (k.clone(), *s)).collect()
    }

    /// The status of `id`, if it exists.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.map.get(id).map(|(s, _)| *s)
    }

    fn get(&self, id: &str, op: Op, allowed: &[Status]) -> Result<Status, Refusal> {
        let s = self
            .status(id)
            .ok_or_else(|| Refusal::NotFound(id.into()))?;
        if allowed.contains(&s) {
            Ok(s)
        } else {
            Err(Refusal::BadState(id.into(), op, s))
        }
    }

    /// `create ID`.
    pub fn create(&mut self, id: &str) -> Result<(), Refusal> {
        if self.map.contains_key(id) {
            return Err(Refusal::Exists(id.into()));
        }
        self.map.insert(id.into(), (Status::Created, None));
        Ok(())
    }

    /// `start ID`.
    pub fn start(&mut self, id: &str) -> Result<(), Refusal> {
        self.get(id, Op::Start, &[Status::Created])?;
        self.map.insert(id.into(), (Status::Running, None));
        Ok(())
    }

    /// `pause ID`.
    pub fn pause(&mut self, id: &str) -> Result<(), Refusal> {
        let s = self.get(id, Op::Pause, &[Status::Created, Status::Running])?;
        self.map.insert(id.into(), (Status::Paused, Some(s)));
        Ok(())
    }

    /// `resume ID`.
    pub fn resume(&mut self, id: &str) -> Result<(), Refusal> {
        self.get(id, Op::Resume, &[Status::Paused])?;
        let was = self
            .map
            .get(id)
            .and_then(|(_, w)| *w)
            .unwrap_or(Status::Running);
        self.map.insert(id.into(), (was, None));
        Ok(())
    }

    /// `kill ID KILL`.
    pub fn kill(&mut self, id: &str) -> Result<(), Refusal> {
        self.get(
            id,
            Op::Kill,
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        self.map.insert(id.into(), (Status::Stopped, None));
        Ok(())
    }

    /// `delete [--force] ID`.
    pub fn delete(&mut self, id: &str, force: bool) -> Result<(), Refusal> {
        if !force {
            self.get(id, Op::Delete, &[Status::Created, Status::Stopped])?;
        }
        self.map.remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_life_and_the_refusals_on_the_way() {
        let mut c = Containers::new();
        assert_eq!(c.start("a"), Err(Refusal::NotFound("a".into())));
        c.create("a").expect("create");
        assert_eq!(c.create("a"), Err(Refusal::Exists("a".into())));
        c.pause("a").expect("a created container can be frozen");
        assert_eq!(
            c.start("a"),
            Err(Refusal::BadState("a".into(), Op::Start, Status::Paused))
        );
        c.resume("a").expect("resume");
        assert_eq!(c.status("a"), Some(Status::Created), "back to what it was");
        c.start("a").expect("start");
        assert_eq!(
            c.delete("a", false),
            Err(Refusal::BadState("a".into(), Op::Delete, Status::Running))
        );
        c.kill("a").expect("kill");
        assert_eq!(
            c.kill("a"),
            Err(Refusal::BadState("a".into(), Op::Kill, Status::Stopped))
        );
        c.delete("a", false).expect("delete");
        assert_eq!(c.status("a"), None);
        c.create("b").expect("create");
        c.start("b").expect("start");
        c.pause("b").expect("pause");
        c.delete("b", true).expect("--force removes any");
        assert!(c.statuses().is_empty());
        c.delete("b", true)
            .expect("--force of nothing is not an error");
        assert_eq!(c.delete("b", false), Err(Refusal::NotFound("b".into())));
    }
}
