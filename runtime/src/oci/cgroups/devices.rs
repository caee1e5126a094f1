//! Device access on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE,
//! generated from the OCI device rules and attached to the container's cgroup.
//!
//! v2 has no devices controller; the kernel asks the programs attached to a
//! task's cgroup instead. The rules keep v1's meaning: they are read in order and
//! the last one that matches decides; when none matches, access is allowed unless
//! a rule denied every device (`{"allow": false, "type": "a"}`), as a v1 cgroup
//! that starts from "allow all" would do.

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
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

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
    let deny_all = rules
        .iter()
        .any(|r| !r.allow() && r.typ().unwrap_or_default() == LinuxDeviceType::A);
    // An allow-everything rule followed only by allows (--privileged, with its
    // device list): every access is allowed, whatever the rest say.
    let whole = |r: &LinuxDeviceCgroup| r.typ().unwrap_or_default() == LinuxDeviceType::A;
    if let Some(k) = rules.iter().rposition(whole)
        && rules[k..].iter().all(|r| r.allow())
    {
        p.push(Insn::new(MOV64_K, 0, 0, 0, 1));
        p.push(Insn::new(EXIT, 0, 0, 0, 0));
        return p;
    }
    // The last matching rule decides: test them from the last to the first.
    for rule in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        let typ = rule.typ().unwrap_or_default();
        let whole = typ == LinuxDeviceType::A;
        if !whole {
            let t = match typ {
                LinuxDeviceType::B => DEV_BLOCK,
                _ => DEV_CHAR,
            };
            block.push(Insn::new(JNE_K, 2, 0, 0, t));
            let acc = access_bits(rule.access().as_deref().unwrap_or(""));
            if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
                // Matches only if every requested access bit is in the rule's set.
                block.push(Insn::new(MOV64_X, 1, 3, 0, 0));
                block.push(Insn::new(AND64_K, 1, 0, 0, !acc & 7));
                block.push(Insn::new(JNE_K, 1, 0, 0, 0));
            }
            if let Some(m) = rule.major().filter(|m| *m >= 0) {
                block.push(Insn::new(JNE_K, 4, 0, 0, m as i32));
            }
            if let Some(m) = rule.minor().filter(|m| *m >= 0) {
                block.push(Insn::new(JNE_K, 5, 0, 0, m as i32));
            }
        }
        block.push(Insn::new(MOV64_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(Insn::new(EXIT, 0, 0, 0, 0));
        // Every test jumps past the end of its block.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code == JNE_K {
                insn.off = (len - i - 1) as i16;
            }
        }
        let unconditional = len == 2;
        p.extend(block);
        if unconditional {
            // It always decides: anything after it would be unreachable, which the
            // verifier refuses.
            return p;
        }
    }
    p.push(Insn::new(MOV64_K, 0, 0, 0, i32::from(!deny_all)));
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

/// Loads the program for `rules` and attaches it to the cgroup at `dir`.
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
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_le_bytes());
    attr[8..12].copy_from_slice(&6u32.to_le_bytes()); // BPF_CGROUP_DEVICE
    attr[12..16].copy_from_slice(&2u32.to_le_bytes()); // BPF_F_ALLOW_MULTI
    bpf(8, &mut attr).map(drop).map_err(|e| {
        Error::Other(format!(
            "linux.resources.devices: attaching the device filter to {}: {e}",
            dir.display()
        ))
    })
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
                EXIT => return r[0],
                _ => panic!("unknown op"),
            }
            pc += 1;
        }
    }

    #[test]
    fn last_matching_rule_decides() {
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
            "the later deny of w wins"
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
        let attached = attach(&dir, &rules);
        let procs = CString::new(dir.join("cgroup.procs").to_str().expect("path")).expect("c");
        let (null, zero) = (
            CString::new("/dev/null").expect("c"),
            CString::new("/dev/zero").expect("c"),
        );
        // SAFETY: the child only makes raw system calls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                let ok_null = libc::open(null.as_ptr(), libc::O_RDONLY) >= 0;
                let denied_zero = libc::open(zero.as_ptr(), libc::O_RDONLY) < 0
                    && *libc::__errno_location() == libc::EPERM;
                libc::_exit(if ok_null && denied_zero {
                    0
                } else if ok_null {
                    2
                } else {
                    3
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let _ = std::fs::remove_dir(&dir);
        attached.expect("attach");
        assert!(libc::WIFEXITED(status), "child died: {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "2: /dev/zero was not denied, 3: /dev/null was denied"
        );
    }
}
