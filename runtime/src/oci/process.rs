//! The container process: everything from `process` that is applied in the child
//! just before exec — rlimits, OOM score, user and groups, capabilities,
//! no_new_privs, seccomp, cwd, the executable lookup, and closing inherited fds.
//!
//! [`Prepared`] is built in the runtime (so bad values fail before anything is
//! cloned); [`Prepared::apply`] and [`Prepared::exec`] run in the child.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, Process};

use super::error::{Error, Result, SysContext};
use super::seccomp::{self, Filter};

/// The five capability sets.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

/// A process ready to be applied in the child.
pub struct Prepared {
    /// argv
    pub args: Vec<String>,
    /// envp, KEY=VALUE
    pub env: Vec<String>,
    /// working directory inside the container
    pub cwd: PathBuf,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    umask: Option<u32>,
    caps: Option<CapSets>,
    rlimits: Vec<(u32, u64, u64)>,
    no_new_privs: bool,
    oom_score_adj: Option<i32>,
    seccomp: Option<Filter>,
    /// whether the process gets a pty
    pub terminal: bool,
}

fn cap_set(set: &Option<oci_spec::runtime::Capabilities>, supported: &CapsHashSet) -> CapsHashSet {
    set.iter()
        .flatten()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?.as_str()?.to_string();
            name.parse::<Capability>().ok()
        })
        // Capabilities this kernel does not know are skipped, as runc does.
        .filter(|c| supported.contains(c))
        .collect()
}

fn cap_sets(c: &LinuxCapabilities) -> CapSets {
    let supported = caps::runtime::thread_all_supported();
    CapSets {
        bounding: cap_set(c.bounding(), &supported),
        effective: cap_set(c.effective(), &supported),
        permitted: cap_set(c.permitted(), &supported),
        inheritable: cap_set(c.inheritable(), &supported),
        ambient: cap_set(c.ambient(), &supported),
    }
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

impl Prepared {
    /// From a spec process and the container's seccomp profile.
    pub fn new(p: &Process, profile: Option<&LinuxSeccomp>, bpf_cache: &Path) -> Result<Self> {
        let mut rlimits = Vec::new();
        for (i, r) in p.rlimits().iter().flatten().enumerate() {
            let name = serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let res = rlimit_resource(&name).ok_or_else(|| {
                Error::Other(format!(
                    "process.rlimits[{i}].type {name:?} is not a resource limit"
                ))
            })?;
            rlimits.push((res, r.soft(), r.hard()));
        }
        let user = p.user();
        Ok(Prepared {
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            caps: p.capabilities().as_ref().map(cap_sets),
            rlimits,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            seccomp: profile
                .map(|pr| seccomp::compile_cached(pr, bpf_cache))
                .transpose()?,
            terminal: p.terminal().unwrap_or(false),
        })
    }

    /// Applies everything but the exec, in runc's order. Runs in the child, in the
    /// container's namespaces and root.
    pub fn apply(&self, setgroups_allowed: bool) -> Result<()> {
        for &(res, soft, hard) in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: prlimit on this process with a valid struct.
            if unsafe { libc::prlimit(0, res as _, &lim, std::ptr::null_mut()) } != 0 {
                return Err(Error::Sys {
                    what: format!("setting rlimit {res} to {soft}/{hard}"),
                    source: nix::errno::Errno::last(),
                });
            }
        }
        if let Some(adj) = self.oom_score_adj {
            fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| Error::Io {
                what: "writing",
                path: "/proc/self/oom_score_adj".into(),
                source: e,
            })?;
        }
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we have it.
        if !self.no_new_privs
            && let Some(f) = &self.seccomp
        {
            f.load()?;
            crate::profile::mark("init: seccomp loaded");
        }
        if let Some(c) = &self.caps {
            for cap in caps::all() {
                if !c.bounding.contains(&cap)
                    && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
                {
                    caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                        Error::Other(format!("dropping {cap} from the bounding set: {e}"))
                    })?;
                }
            }
        }
        self.switch_user(setgroups_allowed)?;
        std::env::set_current_dir(&self.cwd).map_err(|e| Error::Io {
            what: "chdir to process.cwd",
            path: self.cwd.clone(),
            source: e,
        })?;
        verify_cwd(&self.cwd)?;
        if let Some(c) = &self.caps {
            let set = |which: CapSet, v: &CapsHashSet| {
                caps::set(None, which, v)
                    .map_err(|e| Error::Other(format!("setting {which:?} capabilities: {e}")))
            };
            set(CapSet::Effective, &c.effective)?;
            set(CapSet::Permitted, &c.permitted)?;
            set(CapSet::Inheritable, &c.inheritable)?;
            if !c.ambient.is_empty() {
                set(CapSet::Ambient, &c.ambient)?;
            }
        }
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        if self.no_new_privs {
            // SAFETY: prctl with constant arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(Error::Sys {
                    what: "PR_SET_NO_NEW_PRIVS".into(),
                    source: nix::errno::Errno::last(),
                });
            }
            if let Some(f) = &self.seccomp {
                f.load()?;
                crate::profile::mark("init: seccomp loaded");
            }
        }
        Ok(())
    }

    fn switch_user(&self, setgroups_allowed: bool) -> Result<()> {
        // Keep the permitted set across the uid change; capset restores the rest.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        if setgroups_allowed {
            let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            setgroups(&groups).sys(|| format!("setgroups {:?}", self.groups))?;
        } else if !self.groups.is_empty() {
            return Err(Error::Other(
                "process.user.additionalGids: setgroups is denied in this user namespace".into(),
            ));
        }
        let (u, g) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        setresgid(g, g, g).sys(|| format!("setting gid {}", self.gid))?;
        setresuid(u, u, u).sys(|| format!("setting uid {}", self.uid))?;
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        Ok(())
    }

    /// Finds the executable as execvp would, in the process's PATH; the error is
    /// the one runc gives.
    pub fn resolve_executable(&self) -> Result<PathBuf> {
        let arg0 = self.args.first().map(String::as_str).unwrap_or("");
        if arg0.contains('/') {
            let p = PathBuf::from(arg0);
            return match fs::metadata(&p) {
                Ok(m) if m.is_file() && executable(&p) => Ok(p),
                Ok(_) => Err(Error::Other(format!("exec: {arg0:?}: permission denied"))),
                Err(e) => Err(Error::Other(format!("exec: {arg0:?}: stat {arg0}: {e}"))),
            };
        }
        let path = self
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let cand = Path::new(dir).join(arg0);
            if fs::metadata(&cand).map(|m| m.is_file()).unwrap_or(false) && executable(&cand) {
                return Ok(cand);
            }
        }
        Err(Error::Other(format!(
            "exec: {arg0:?}: executable file not found in $PATH"
        )))
    }

    /// The environment, with HOME added from /etc/passwd when missing (as runc does).
    fn final_env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        if !env.iter().any(|kv| kv.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                home_of(self.uid).unwrap_or_else(|| "/".into())
            ));
        }
        env
    }

    /// Marks every fd from `first` on close-on-exec and execs. Returns only on failure.
    pub fn exec(&self, exe: &Path, first_inherited_fd_to_close: u32) -> Error {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first_inherited_fd_to_close,
                u32::MAX,
                4u32,
            )
        };
        let to_c = |s: &str| CString::new(s).unwrap_or_default();
        let argv: Vec<CString> = self.args.iter().map(|a| to_c(a)).collect();
        let envp: Vec<CString> = self.final_env().iter().map(|a| to_c(a)).collect();
        let path = CString::new(exe.as_os_str().as_bytes()).unwrap_or_default();
        reset_signals();
        match nix::unistd::execve(&path, &argv, &envp) {
            Err(e) => Error::Other(format!("exec {}: {e}", exe.display())),
        }
    }
}

/// Default dispositions for every signal and an empty mask: the container's
/// process starts as a Docker container's does, whatever its starter had. (A
/// shell's background job ignores SIGINT and SIGQUIT, and `nohup` SIGHUP; an
/// ignored signal would otherwise stay ignored across exec.)
fn reset_signals() {
    // The kernel's struct sigaction; all zero is SIG_DFL with no flags. The
    // raw call reaches signals 32 and 33 too, which glibc keeps to itself.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct and an 8-byte mask; an
        // error (a profile that denies it) leaves that signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: an empty, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

/// The cwd must be inside the container's root: a cwd reached through a leaked
/// host directory fd shows as "(unreachable)" (CVE-2024-21626).
fn verify_cwd(cwd: &Path) -> Result<()> {
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(Error::Other(format!(
            "process.cwd {}: resolves outside the container root ({})",
            cwd.display(),
            p.display()
        ))),
        Err(e) => Err(Error::Other(format!(
            "process.cwd {}: resolves outside the container root ({e})",
            cwd.display()
        ))),
    }
}
