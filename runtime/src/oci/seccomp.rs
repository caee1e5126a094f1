//! `linux.seccomp` compiled to a BPF filter with libseccomp.
//!
//! The filter is built in the runtime before the container's init is cloned, so a
//! bad profile fails `create` before anything exists; the init inherits the built
//! context and loads it as its last step before exec (or before dropping
//! capabilities, when `noNewPrivileges` is off and loading needs CAP_SYS_ADMIN).
//! Unknown system call names are skipped, as runc does: profiles list calls of newer
//! kernels. A rule whose action equals the default action is redundant and skipped.
//!
//! Compiling Docker's profile with libseccomp costs about 25 ms — most of a
//! container start. [`compile_cached`] keeps the BPF it produces in a cache keyed
//! by the SHA-256 of the profile's JSON, so every later start loads the program
//! directly (crun does the same).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// A compiled filter, ready to load.
pub enum Filter {
    /// Built by libseccomp in this process.
    Context(ScmpFilterContext),
    /// A BPF program (sock_filter array) from the cache.
    Bpf(Vec<u8>),
}

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
    Ok(Filter::Context(ctx))
}

/// Like [`compile`], through a cache of BPF programs in `cache_dir`. A cache that
/// cannot be read or written only costs the compile.
pub fn compile_cached(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter> {
    let json = serde_json::to_vec(profile).map_err(|e| Error::Seccomp(e.to_string()))?;
    let key = hex::encode(Sha256::digest(&json));
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Ok(bpf) = fs::read(&path)
        && !bpf.is_empty()
        && bpf.len() % 8 == 0
    {
        return Ok(Filter::Bpf(bpf));
    }
    let filter = compile(profile)?;
    let Filter::Context(ctx) = &filter else {
        return Ok(filter);
    };
    if fs::create_dir_all(cache_dir).is_ok() {
        let tmp = cache_dir.join(format!("{key}.tmp{}", std::process::id()));
        let written = File::create(&tmp)
            .ok()
            .and_then(|f| ctx.export_bpf(&f).ok());
        if written.is_some() {
            let _ = fs::rename(&tmp, &path);
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
    Ok(filter)
}

impl Filter {
    /// Installs the filter on the calling thread (and what it execs).
    pub fn load(&self) -> Result<()> {
        match self {
            Filter::Context(ctx) => ctx
                .load()
                .map_err(|e| Error::Seccomp(format!("loading the filter: {e}"))),
            Filter::Bpf(bpf) => {
                let prog = libc::sock_fprog {
                    len: (bpf.len() / 8) as u16,
                    filter: bpf.as_ptr() as *mut libc::sock_filter,
                };
                // SAFETY: a valid program description that the kernel copies.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &prog as *const libc::sock_fprog,
                    )
                };
                if r != 0 {
                    return Err(Error::Seccomp(format!(
                        "loading the filter: {}",
                        std::io::Error::last_os_error()
                    )));
                }
                Ok(())
            }
        }
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
    fn cache_stores_the_bpf_and_reuses_it() {
        let v = super::super::default_profile::profile();
        let p: LinuxSeccomp = serde_json::from_value(v).expect("profile");
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            compile_cached(&p, dir.path()).expect("compiles"),
            Filter::Context(_)
        ));
        let files: Vec<_> = fs::read_dir(dir.path()).expect("dir").flatten().collect();
        assert_eq!(files.len(), 1);
        match compile_cached(&p, dir.path()).expect("cached") {
            Filter::Bpf(bpf) => assert_eq!(bpf, fs::read(files[0].path()).expect("read")),
            Filter::Context(_) => panic!("the cache was not used"),
        }
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
