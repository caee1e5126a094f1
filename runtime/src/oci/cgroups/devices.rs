//! Device access on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE,
//! generated from the OCI device rules and attached to the container's cgroup.
//!
//! v2 has no devices controller; the kernel asks the programs attached to a
//! task's cgroup and its ancestors instead, and every one must allow. The rules
//! mean here what they mean on v1 (as runc makes them mean): they are first
//! written, in order, to an emulated v1 cgroup that allows everything —
//! `a` sets the default and clears the exceptions, a rule that agrees with
//! the default takes access bits from the exception of exactly its device, one
//! against the default adds them — and the program is compiled from the
//! result. So `allow c 1:3 rw` then `deny c 1:3 w` leaves `c 1:3 r`, and an
//! O_RDWR open of /dev/null is refused on v2 as it is on v1. A new set of
//! rules replaces the program berth attached before.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::oci::error::{Error, Result};

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    fn bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND64_K: u8 = 0x57;
const RSH64_K: u8 = 0x77;
const MOV64_K: u8 = 0xb7;
const MOV64_X: u8 = 0xbf;
const JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

fn access_bits(access: &str) -> i32 {
    let a = if access.is_empty() { "rwm" } else { access };
    a.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// An exception of the emulated v1 cgroup: type, major and minor (`None`:
/// any), access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exception {
    typ: i32,
    major: Option<i64>,
    minor: Option<i64>,
    access: i32,
}

/// The emulated v1 cgroup after `rules`: whether it allows by default, and
/// its exceptions (denials if it does, permissions if not).
fn emulate(rules: &[LinuxDeviceCgroup]) -> (bool, Vec<Exception>) {
    let mut allow = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    for rule in rules {
        let typ = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => {
                allow = rule.allow();
                exceptions.clear();
                continue;
            }
            LinuxDeviceType::B => DEV_BLOCK,
            _ => DEV_CHAR,
        };
        let ex = Exception {
            typ,
            major: rule.major().filter(|m| *m >= 0),
            minor: rule.minor().filter(|m| *m >= 0),
            access: access_bits(rule.access().as_deref().unwrap_or("")),
        };
        let same = |e: &Exception| (e.typ, e.major, e.minor) == (ex.typ, ex.major, ex.minor);
        if rule.allow() == allow {
            for e in exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !ex.access;
            }
            exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = exceptions.iter_mut().find(|e| same(e)) {
            e.access |= ex.access;
        } else {
            exceptions.push(ex);
        }
    }
    (allow, exceptions)
}

/// The program for `rules`.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    // r1 = ctx: { u32 access_type (access << 16 | type); u32 major; u32 minor }
    let mut p = vec![
        Insn::new(LDX_W, 2, 1, 0, 0),
        Insn::new(AND64_K, 2, 0, 0, 0xffff), // r2 = type
        Insn::new(LDX_W, 3, 1, 0, 0),
        Insn::new(RSH64_K, 3, 0, 0, 16), // r3 = access
        Insn::new(LDX_W, 4, 1, 4, 0),    // r4 = major
        Insn::new(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    let (allow, exceptions) = emulate(rules);
    for ex in exceptions {
        let mut block = vec![Insn::new(JNE_K, 2, 0, 0, ex.typ)];
        if let Some(m) = ex.major {
            block.push(Insn::new(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = ex.minor {
            block.push(Insn::new(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(Insn::new(MOV64_X, 1, 3, 0, 0));
        if allow {
            // A denial: it decides if the request shares an access bit with it.
            block.push(Insn::new(AND64_K, 1, 0, 0, ex.access));
            block.push(Insn::new(JEQ_K, 1, 0, 0, 0));
        } else {
            // A permission: it decides if it has every bit asked for.
            block.push(Insn::new(AND64_K, 1, 0, 0, !ex.access & ACC_ALL));
            block.push(Insn::new(JNE_K, 1, 0, 0, 0));
        }
        block.push(Insn::new(MOV64_K, 0, 0, 0, i32::from(!allow)));
        block.push(Insn::new(EXIT, 0, 0, 0, 0));
        // Every test jumps past the end of its block.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if matches!(insn.code, JNE_K | JEQ_K) {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(Insn::new(MOV64_K, 0, 0, 0, i32::from(allow)));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: the attribute buffer is zeroed beyond the fields set, and as large
    // as the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The ids of the programs attached to the cgroup `cg` itself (not those it
/// inherits).
fn attached(cg: &std::fs::File) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&6u32.to_le_bytes()); // BPF_CGROUP_DEVICE
    attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_le_bytes());
    attr[24..28].copy_from_slice(&(ids.len() as u32).to_le_bytes());
    bpf(16, &mut attr)?; // BPF_PROG_QUERY
    let n = u32::from_le_bytes([attr[24], attr[25], attr[26], attr[27]]) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// Loads the program for `rules` and attaches it to the cgroup at `dir`, in
/// place of the ones attached there before.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let code: Vec<u8> = program(rules).into_iter().flat_map(Insn::bytes).collect();
    let license = CString::new("Apache-2.0").expect("static");
    // Loaded without the verifier's log first (a long program's log would not fit
    // a small buffer, and the kernel then refuses with ENOSPC); on failure, again
    // with a log large enough to say why.
    let load = |log: &mut Vec<u8>| {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&15u32.to_le_bytes()); // BPF_PROG_TYPE_CGROUP_DEVICE
        attr[4..8].copy_from_slice(&((code.len() / 8) as u32).to_le_bytes());
        attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_le_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_le_bytes());
        if !log.is_empty() {
            attr[24..28].copy_from_slice(&1u32.to_le_bytes()); // log_level
            attr[28..32].copy_from_slice(&(log.len() as u32).to_le_bytes());
            attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_le_bytes());
        }
        bpf(5, &mut attr)
    };
    let fd = load(&mut Vec::new()).or_else(|_| {
        let mut log = vec![0u8; 1 << 20];
        load(&mut log).map_err(|e| {
            let msg = String::from_utf8_lossy(&log)
                .trim_end_matches('\0')
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .to_string();
            Error::Other(format!(
                "linux.resources.devices: loading the device filter: {e}: {msg}"
            ))
        })
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|e| Error::Io {
        what: "opening cgroup",
        path: dir.to_path_buf(),
        source: e,
    })?;
    let failed = |what: &str, e: std::io::Error| {
        Error::Other(format!(
            "linux.resources.devices: {what} the device filter of {}: {e}",
            dir.display()
        ))
    };
    let old = attached(&cg).map_err(|e| failed("listing", e))?;
    // The new program first, then the old ones go: no moment without a filter.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_le_bytes());
    attr[8..12].copy_from_slice(&6u32.to_le_bytes()); // BPF_CGROUP_DEVICE
    attr[12..16].copy_from_slice(&2u32.to_le_bytes()); // BPF_F_ALLOW_MULTI
    bpf(8, &mut attr).map_err(|e| failed("attaching", e))?; // BPF_PROG_ATTACH
    for id in old {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&id.to_le_bytes());
        let fd = bpf(13, &mut attr).map_err(|e| failed("opening an old program of", e))?; // BPF_PROG_GET_FD_BY_ID
        // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new descriptor that we own.
        let old = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_le_bytes());
        attr[4..8].copy_from_slice(&(old.as_raw_fd() as u32).to_le_bytes());
        attr[8..12].copy_from_slice(&6u32.to_le_bytes()); // BPF_CGROUP_DEVICE
        bpf(9, &mut attr).map_err(|e| failed("detaching an old program from", e))?; // BPF_PROG_DETACH
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .major(major)
            .minor(minor)
            .access(access)
            .build()
            .expect("rule")
    }

    /// Runs the program the way the kernel would, for one access.
    fn eval(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let mut r = [0i64; 11];
        let ctx = [(access << 16) | typ, major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            match i.code {
                LDX_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                AND64_K => r[dst] &= i64::from(i.imm),
                RSH64_K => r[dst] >>= i.imm,
                MOV64_K => r[dst] = i64::from(i.imm),
                MOV64_X => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                JEQ_K => {
                    if r[dst] == i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                _ => panic!("unknown op"),
            }
            pc += 1;
        }
    }

    #[test]
    fn rules_mean_what_they_mean_on_v1() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(true, LinuxDeviceType::C, 136, -1, "rw"),
            rule(false, LinuxDeviceType::C, 1, 3, "w"),
        ];
        let p = program(&rules);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "the later deny of w takes it away"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            0,
            "read and write at once: w is no longer there (v1 refuses it too)"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_READ, 1, 5),
            0,
            "not allowed: deny all"
        );
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 1, 3), 0, "type must match");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "m is not in rw");
        let allow_by_default = program(&[rule(false, LinuxDeviceType::B, 8, 0, "rwm")]);
        assert_eq!(eval(&allow_by_default, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(eval(&allow_by_default, DEV_BLOCK, ACC_READ, 8, 0), 0);
        // In an allowing cgroup a denial is refused on any shared bit, and an
        // allow removes only the exception of exactly its device.
        let wildcard = program(&[
            rule(false, LinuxDeviceType::C, 1, -1, "w"),
            rule(true, LinuxDeviceType::C, 1, 3, "w"),
        ]);
        assert_eq!(eval(&wildcard, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(eval(&wildcard, DEV_CHAR, ACC_READ, 1, 3), 1);
        let privileged = program(&[
            rule(true, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
        ]);
        assert_eq!(eval(&privileged, DEV_BLOCK, ACC_ALL, 8, 0), 1);
    }

    /// The kernel itself enforces the program: a process in the cgroup may open
    /// /dev/null (allowed) and not /dev/zero (denied). Needs root and a cgroup2 mount.
    #[test]
    fn kernel_enforces_the_filter() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let Some(unified) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
        else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let dir = unified.join(format!("berth-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        let rules = vec![
            rule(false, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
        ];
        let procs = CString::new(dir.join("cgroup.procs").to_str().expect("path")).expect("c");
        let (null, zero) = (
            CString::new("/dev/null").expect("c"),
            CString::new("/dev/zero").expect("c"),
        );
        // Whether a process in the cgroup may open /dev/null and /dev/zero
        // (bit 0 and 1 of its exit status).
        let probe = || {
            // SAFETY: the child only makes raw system calls and _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let null = libc::open(null.as_ptr(), libc::O_RDONLY) >= 0;
                    let zero = libc::open(zero.as_ptr(), libc::O_RDONLY) >= 0;
                    libc::_exit(i32::from(null) | (i32::from(zero) << 1));
                }
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child died: {status}");
            libc::WEXITSTATUS(status)
        };
        let first = attach(&dir, &rules).map(|()| probe());
        // A new set of rules replaces the program (it is not added beside it).
        let second = attach(&dir, &[rule(true, LinuxDeviceType::A, -1, -1, "rwm")]).map(|()| {
            let cg = std::fs::File::open(&dir).expect("open cgroup");
            (probe(), attached(&cg).map(|ids| ids.len()).unwrap_or(0))
        });
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(first.expect("attach"), 1, "/dev/null only");
        assert_eq!(
            second.expect("attach again"),
            (3, 1),
            "both devices, one program attached"
        );
    }
}
