//! The runtime's side: berth-runc with a root and a busybox bundle of the
//! case's own; each container's config.json lists its namespaces.

use std::collections::BTreeMap;

use berth_model::namespaces::Kind;
use proptest_state_machine::StateMachineTest;
use serde_json::json;

use super::assertions;
use super::observe::ns_file;
use super::reference::{NsRef, NsState};
use super::transitions::{Outcome, Source, Transition};
use crate::lifecycle::sut::Sut as Runc;

/// A container's processes: its init and the exec'd ones, in order.
#[derive(Debug, Clone, Default)]
pub struct Procs {
    /// the init's pid
    pub init: i32,
    /// exec'd processes' pids
    pub execs: Vec<i32>,
}

/// The system under test.
pub struct Sut {
    /// berth-runc in a root of the case's own.
    pub runc: Runc,
    /// Containers not yet stopped.
    pub containers: BTreeMap<String, Procs>,
    /// The last step.
    pub step: Option<Transition>,
}

fn type_name(k: Kind) -> &'static str {
    match k {
        Kind::Net => "network",
        Kind::Mnt => "mount",
        other => ns_file(other),
    }
}

impl Sut {
    /// A root and a bundle for a case.
    pub fn new() -> Sut {
        Sut {
            runc: Runc::new(),
            containers: BTreeMap::new(),
            step: None,
        }
    }

    fn write_config(&self, ns: &[(Kind, Source)]) -> Result<(), String> {
        let path = self.runc.dir.path().join("bundle/config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut list = vec![json!({"type": "mount"})];
        for (k, src) in ns {
            match src {
                Source::Host => {}
                Source::New => list.push(json!({"type": type_name(*k)})),
                Source::Join(other) => {
                    let pid = self.containers.get(other).map(|c| c.init).unwrap_or(0);
                    list.push(json!({
                        "type": type_name(*k),
                        "path": format!("/proc/{pid}/ns/{}", ns_file(*k)),
                    }));
                }
            }
        }
        config["linux"]["namespaces"] = json!(list);
        // A hostname needs a uts namespace of the container's own.
        let own_uts = ns.iter().any(|(k, s)| *k == Kind::Uts && *s == Source::New);
        if !own_uts && let Some(p) = config.as_object_mut() {
            p.remove("hostname");
        }
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())
    }

    /// Applies `t` to the runtime; returns what came of it.
    pub fn step(&mut self, t: &Transition) -> Outcome {
        self.step = Some(t.clone());
        match t {
            Transition::Run { name, ns } => {
                if let Err(e) = self.write_config(ns) {
                    return Outcome::Other(format!("config.json: {e}"));
                }
                let id = self.runc.id(name);
                let bundle = self.runc.dir.path().join("bundle");
                let (ok, _, err) =
                    self.runc
                        .runc(&["run", "-d", "--bundle", &bundle.to_string_lossy(), &id]);
                if !ok {
                    // Nothing may be left of a refused run.
                    let _ = self.runc.runc(&["delete", "--force", &id]);
                    let err = err.trim().to_string();
                    // berth-runc names the namespace path that is gone.
                    return if err.contains("/ns/") && err.contains("does not exist") {
                        Outcome::NoSuchProcess
                    } else if err.contains("mounting cgroups") && err.contains("ENOENT") {
                        Outcome::CgroupRootGone
                    } else {
                        Outcome::Other(err)
                    };
                }
                match self.runc.pid(&id) {
                    Some(init) => {
                        self.containers.insert(
                            name.clone(),
                            Procs {
                                init,
                                execs: Vec::new(),
                            },
                        );
                        Outcome::Ok
                    }
                    None => Outcome::Other(format!("{id}: no pid after run")),
                }
            }
            Transition::Exec(name) => {
                let id = self.runc.id(name);
                let pidfile = self.runc.dir.path().join("exec.pid");
                let _ = std::fs::remove_file(&pidfile);
                let (ok, _, err) = self.runc.runc(&[
                    "exec",
                    "-d",
                    "--pid-file",
                    &pidfile.to_string_lossy(),
                    &id,
                    "/bin/busybox",
                    "sleep",
                    "100000",
                ]);
                let pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                match (ok, pid) {
                    (true, Some(pid)) => {
                        if let Some(c) = self.containers.get_mut(name) {
                            c.execs.push(pid);
                        }
                        Outcome::Ok
                    }
                    _ => Outcome::Other(format!("exec: {}", err.trim())),
                }
            }
            Transition::Stop(name) => {
                let id = self.runc.id(name);
                let _ = self.runc.runc(&["kill", "--all", &id, "KILL"]);
                let (ok, _, err) = self.runc.runc(&["delete", "--force", &id]);
                if let Some(c) = self.containers.remove(name) {
                    for p in std::iter::once(c.init).chain(c.execs) {
                        wait_gone(p);
                    }
                }
                if ok {
                    Outcome::Ok
                } else {
                    Outcome::Other(err.trim().to_string())
                }
            }
        }
    }
}

/// Waits (up to 5 s) for a killed process to be gone: its reaper may take a
/// moment.
fn wait_gone(pid: i32) {
    for _ in 0..500 {
        if !super::observe::alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Default for Sut {
    fn default() -> Self {
        Sut::new()
    }
}

/// The namespaces state machine test.
pub struct NsMachine;

impl StateMachineTest for NsMachine {
    type SystemUnderTest = Sut;
    type Reference = NsRef;

    fn init_test(_ref_state: &NsState) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, ref_state: &NsState, t: Transition) -> Sut {
        let got = sut.step(&t);
        assertions::outcome(&t, ref_state.last.as_ref(), &got);
        sut
    }

    fn check_invariants(sut: &Sut, ref_state: &NsState) {
        assertions::state(sut, ref_state);
    }

    fn teardown(mut sut: Sut, _ref_state: NsState) {
        let left = sut.runc.clean();
        assert!(left.is_empty(), "the case could not be cleaned: {left:?}");
        let procs: Vec<i32> = sut
            .containers
            .values()
            .flat_map(|c| std::iter::once(c.init).chain(c.execs.iter().copied()))
            .collect();
        for p in &procs {
            wait_gone(*p);
        }
        let live: Vec<&i32> = procs
            .iter()
            .filter(|p| super::observe::alive(**p))
            .collect();
        assert!(live.is_empty(), "processes left: {live:?}");
        sut.containers.clear();
    }
}
