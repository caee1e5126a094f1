//! The runtime's side: the `berth-runc` binary (as containerd runs it) with
//! a root and a busybox bundle of the case's own; container ids carry a
//! per-case prefix so that cases and test runs side by side never meet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use proptest_state_machine::StateMachineTest;
use serde_json::json;

use super::assertions;
use super::reference::{LifeRef, LifeState};
use super::transitions::{Outcome, Transition};

/// The system under test.
pub struct Sut {
    /// The case's directory: `bundle/`, `root/` (berth-runc's), `stderr`.
    pub dir: tempfile::TempDir,
    /// The berth-runc binary.
    pub runc: PathBuf,
    prefix: String,
    /// Each container's cgroup (with its freezer), learnt when it was made.
    pub cgroups: BTreeMap<String, PathBuf>,
    /// The last step.
    pub step: Option<Transition>,
}

/// `BERTH_RUNC`, or the workspace's debug build (which `cargo test
/// --workspace` and `cargo xtask vm-test` build, and the VM has at that path).
pub fn runc_bin() -> PathBuf {
    std::env::var_os("BERTH_RUNC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // Without "..": in a VM only the binary's own path exists.
            let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            harness
                .parent()
                .unwrap_or(harness)
                .join("target/debug/berth-runc")
        })
}

fn bundle(dir: &std::path::Path) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("the bundle's rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static: cargo xtask setup)");
    let mut config = berth::oci::spec::default_spec();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["/bin/busybox", "sleep", "100000"]);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .expect("config.json");
}

impl Sut {
    /// A root and a bundle for a case.
    pub fn new() -> Sut {
        static CASE: AtomicU32 = AtomicU32::new(0);
        let runc = runc_bin();
        assert!(
            runc.exists(),
            "{} is missing: cargo build -p berth --bin berth-runc (or set BERTH_RUNC)",
            runc.display()
        );
        let dir = tempfile::tempdir().expect("the case's directory");
        bundle(&dir.path().join("bundle"));
        Sut {
            dir,
            runc,
            prefix: format!(
                "lc{}-{}-",
                std::process::id(),
                CASE.fetch_add(1, Ordering::Relaxed)
            ),
            cgroups: BTreeMap::new(),
            step: None,
        }
    }

    /// berth-runc's id for the model's name.
    pub fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The model's name for berth-runc's id (None: not one of this case's).
    pub fn name<'a>(&self, id: &'a str) -> Option<&'a str> {
        id.strip_prefix(&self.prefix)
    }

    /// Runs berth-runc; returns whether it succeeded, its stdout and stderr.
    /// The container's init inherits stdio at `create`: stdout and stderr go
    /// to files, so that nothing waits for the container to close a pipe.
    pub fn runc(&self, args: &[&str]) -> (bool, String, String) {
        self.runc_with(args, &[])
    }

    /// [`Sut::runc`] with more environment.
    pub fn runc_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let out = self.dir.path().join("stdout");
        let err = self.dir.path().join("stderr");
        let file = |p: &PathBuf| std::fs::File::create(p).expect("an output file");
        let status = Command::new(&self.runc)
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .status()
            .expect("running berth-runc");
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        (status.success(), read(&out), read(&err))
    }

    /// Applies `t` to the runtime; returns what came of it.
    pub fn step(&mut self, t: &Transition) -> Outcome {
        let id = self.id(t.id());
        let bundle = self.dir.path().join("bundle");
        let bundle = bundle.to_string_lossy();
        let args: Vec<&str> = match t {
            Transition::Create(_) => vec!["create", "--bundle", &bundle, &id],
            Transition::Start(_) => vec!["start", &id],
            Transition::Pause(_) => vec!["pause", &id],
            Transition::Resume(_) => vec!["resume", &id],
            Transition::Kill(_) => vec!["kill", &id, "KILL"],
            Transition::Delete(_) => vec!["delete", &id],
            Transition::ForceDelete(_) => vec!["delete", "--force", &id],
            Transition::CreateFault(..) => vec!["create", "--bundle", &bundle, &id],
        };
        let fault = match t {
            Transition::CreateFault(_, point) => format!("{point}:fail"),
            _ => String::new(),
        };
        let env: Vec<(&str, &str)> = if fault.is_empty() {
            vec![]
        } else {
            vec![(berth::fault::VAR, fault.as_str())]
        };
        let (ok, _, err) = self.runc_with(&args, &env);
        if ok {
            if let Transition::Create(name) = t {
                let pid = self.pid(&id);
                if let Some(dir) = pid.and_then(super::observe::freezer_dir) {
                    self.cgroups.insert(name.clone(), dir);
                }
            }
            return Outcome::Ok;
        }
        let err = err.trim().to_string();
        if err.contains("injected fault") {
            Outcome::Fault
        } else if err.contains("already exists") {
            Outcome::Exists
        } else if err.contains("does not exist") {
            Outcome::NotFound
        } else if let Some((_, status)) = err.rsplit_once(": it is ") {
            Outcome::BadState(status.trim().to_string())
        } else {
            Outcome::Other(err)
        }
    }

    /// The init pid `state` gives.
    pub fn pid(&self, id: &str) -> Option<i32> {
        let (ok, out, _) = self.runc(&["state", id]);
        let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        v["pid"].as_i64().map(|p| p as i32).filter(|p| *p > 0)
    }

    /// Removes every container of the case; returns what could not be.
    pub fn clean(&mut self) -> Vec<String> {
        let (_, out, _) = self.runc(&["list", "--format", "json"]);
        let ids: Vec<String> = super::observe::parse_list(&out)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        ids.iter()
            .filter_map(|id| {
                let (ok, _, err) = self.runc(&["delete", "--force", id]);
                (!ok).then(|| format!("delete --force {id}: {}", err.trim()))
            })
            .collect()
    }
}

impl Default for Sut {
    fn default() -> Self {
        Sut::new()
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = self.clean();
    }
}

/// The lifecycle state machine test.
pub struct LifeMachine;

impl StateMachineTest for LifeMachine {
    type SystemUnderTest = Sut;
    type Reference = LifeRef;

    fn init_test(_ref_state: &LifeState) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, ref_state: &LifeState, t: Transition) -> Sut {
        let got = sut.step(&t);
        sut.step = Some(t.clone());
        assertions::outcome(&t, ref_state.last.as_ref(), &got);
        sut
    }

    fn check_invariants(sut: &Sut, ref_state: &LifeState) {
        assertions::state(sut, ref_state);
    }

    fn teardown(mut sut: Sut, _ref_state: LifeState) {
        let left = sut.clean();
        assert!(left.is_empty(), "the case could not be cleaned: {left:?}");
        assertions::empty(&sut);
    }
}
