//! `linux.seccomp` compiled to a BPF filter with libseccomp.
//!
//! The filter is built in the runtime before the container's init is cloned, so a
//! bad profile fails `create` before anything exists; the init inherits the built
//! context and loads it as its last step before exec (or before dropping
//! capabilities, when `noNewPrivileges` is off and loading needs CAP_SYS_ADMIN).
//! Unknown system call names are skipped, as runc does: profiles list calls of newer
//! kernels. A rule whose action equals the default action is redundant and skipped.

use std::collections::BTreeMap;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};

use super::error::{Error, Result};

/// A compiled filter, ready to load.
pub struct Filter(ScmpFilterContext);

fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    let name = json_name(&a);
    let value = match name.as_str() {
        "SCMP_ACT_ERRNO" => Some(errno.unwrap_or(libc::EPERM as u32) as i32),
        "SCMP_ACT_TRACE" => Some(errno.unwrap_or(libc::EPERM as u32) as i32),
        "SCMP_ACT_NOTIFY" => {
            return Err(Error::Seccomp(format!(
                "{field}: SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not support"
            )));
        }
        _ => None,
    };
    ScmpAction::from_str(&name, value).map_err(|e| Error::Seccomp(format!("{field}: {name}: {e}")))
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(arg.value()),
    };
    let datum = match arg.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => arg.value_two().unwrap_or(0),
        _ => arg.value(),
    };
    ScmpArgCompare::new(arg.index() as u32, op, datum)
}

/// Compiles a profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| Error::Seccomp(e.to_string()))?;
    // no_new_privs is the runtime's decision (process.noNewPrivileges), not libseccomp's.
    ctx.set_ctl_nnp(false)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    for arch in profile.architectures().iter().flatten() {
        let name = json_name(arch);
        let a: ScmpArch = name
            .parse()
            .map_err(|e| Error::Seccomp(format!("linux.seccomp.architectures: {name}: {e}")))?;
        if a != ScmpArch::native() {
            ctx.add_arch(a)
                .map_err(|e| Error::Seccomp(format!("adding architecture {name}: {e}")))?;
        }
    }
    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(rule.action(), rule.errno_ret(), &field)?;
        if act == default {
            continue;
        }
        // Comparisons on distinct arguments are ANDed in one rule; several on the
        // same argument become one rule each (they are alternatives), as runc does.
        let args = rule.args().clone().unwrap_or_default();
        let mut by_index: BTreeMap<usize, Vec<&LinuxSeccompArg>> = BTreeMap::new();
        for a in &args {
            by_index.entry(a.index()).or_default().push(a);
        }
        let repeated = by_index.values().any(|v| v.len() > 1);
        let rule_sets: Vec<Vec<ScmpArgCompare>> = if repeated {
            args.iter().map(|a| vec![compare(a)]).collect()
        } else {
            vec![args.iter().map(compare).collect()]
        };
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            for cmps in &rule_sets {
                let res = if cmps.is_empty() {
                    ctx.add_rule(act, sc)
                } else {
                    ctx.add_rule_conditional(act, sc, cmps)
                };
                res.map_err(|e| Error::Seccomp(format!("{field}: {name}: {e}")))?;
            }
        }
    }
    Ok(Filter(ctx))
}

impl Filter {
    /// Installs the filter on the calling thread (and what it execs).
    pub fn load(&self) -> Result<()> {
        self.0
            .load()
            .map_err(|e| Error::Seccomp(format!("loading the filter: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles() {
        let v = super::super::default_profile::profile();
        let p: LinuxSeccomp = serde_json::from_value(v).expect("profile");
        compile(&p).expect("compiles");
    }

    #[test]
    fn notify_is_refused_by_name() {
        let p: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
        }))
        .expect("profile");
        let e = compile(&p).err().expect("refused").to_string();
        assert!(
            e.contains("linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY"),
            "{e}"
        );
    }
}
