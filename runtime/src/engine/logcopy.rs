//! Copying a container's output into its json-file log, until its init ends.
//!
//! This file uses only `std`, `libc` and `super::time`, because it is compiled
//! twice: into the library (the in-process fallback of `berth monitor`) and into
//! the small `berth-monitor` binary that watches a detached container, whose
//! resident memory has to stay small.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::time::now_rfc3339_nanos;

/// The container's log: Docker's json-file lines, rotated at `max_size` bytes
/// into `<log>.1` … `<log>.<max_files - 1>`.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
}

impl LogWriter {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: PathBuf, max_size: Option<u64>, max_files: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Writes one line of `stream` (`stdout` or `stderr`).
    pub fn line(&mut self, stream: &str, text: &[u8]) {
        let bytes = json_line(stream, text, &now_rfc3339_nanos());
        if let Some(max) = self.max_size
            && self.size > 0
            && self.size + bytes.len() as u64 > max
        {
            self.rotate();
        }
        if self.file.write_all(&bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let name = |i: u32| rotated(&self.path, i);
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
        {
            self.file = f;
            self.size = 0;
        }
    }
}

/// The `i`th rotated log beside `path` (0: the current one).
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    if i == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    s.into()
}

/// One json-file line, `{"log":…,"stream":…,"time":…}\n`, escaped as JSON
/// requires (invalid UTF-8 becomes U+FFFD, as Docker's log driver writes it).
pub fn json_line(stream: &str, text: &[u8], time: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    out.extend_from_slice(b"{\"log\":");
    json_string(&mut out, &String::from_utf8_lossy(text));
    out.extend_from_slice(b",\"stream\":");
    json_string(&mut out, stream);
    out.extend_from_slice(b",\"time\":");
    json_string(&mut out, time);
    out.extend_from_slice(b"}\n");
    out
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Reaps every ended child without waiting (this process is a subreaper, so
/// the container's orphans end here); returns the exit code of `pid` if it was
/// among them (128 + the signal for a killed one).
fn reap(pid: i32) -> Option<i32> {
    let mut code = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let got = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if got <= 0 {
            // No more ended children; ECHILD means `pid` is not ours (any more).
            if got < 0 && code.is_none() {
                code = Some(255);
            }
            return code;
        }
        if got == pid {
            code = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                255
            });
        }
    }
}

/// Copies the container's output (each source with its stream name) into the
/// log until its init `pid` (a child of this process) ends; returns its exit
/// code.
pub fn copy_output(pid: i32, sources: Vec<(OwnedFd, &str)>, log: &mut LogWriter) -> i32 {
    let n_src = sources.len();
    let mut open = vec![true; n_src];
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); n_src];
    let mut buf = vec![0u8; 64 * 1024];
    let mut code: Option<i32> = None;
    loop {
        let mut pfds: Vec<libc::pollfd> = sources
            .iter()
            .zip(&open)
            .map(|((f, _), o)| libc::pollfd {
                fd: if *o { f.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 200) };
        if n > 0 {
            for i in 0..n_src {
                if !open[i] || pfds[i].revents == 0 {
                    continue;
                }
                let (fd, stream) = (&sources[i].0, sources[i].1);
                // SAFETY: reading into our buffer from our descriptor.
                let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    // End of file, or EIO from a pty whose other side is closed.
                    open[i] = false;
                    if !partial[i].is_empty() {
                        log.line(stream, &std::mem::take(&mut partial[i]));
                    }
                    continue;
                }
                partial[i].extend_from_slice(&buf[..got as usize]);
                while let Some(nl) = partial[i].iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial[i].drain(..=nl).collect();
                    log.line(stream, &line);
                }
            }
        }
        if code.is_none() {
            code = reap(pid);
        } else {
            let _ = reap(pid);
        }
        // Done when the output is closed and the init is gone; output still held
        // open by a process that outlived the init gets a moment more, not forever.
        if let Some(c) = code
            && (open.iter().all(|o| !o) || n <= 0)
        {
            for (i, p) in partial.iter_mut().enumerate() {
                if !p.is_empty() {
                    log.line(sources[i].1, &std::mem::take(p));
                }
            }
            return c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_json_serde_writes() {
        for text in [
            &b"plain\n"[..],
            b"quote \" back \\ tab \t cr \r bell \x07 esc \x1b\n",
            b"caf\xc3\xa9 \xff\xfe broken\n",
            b"",
        ] {
            let ours = json_line("stderr", text, "2026-11-28T00:00:00.000000001Z");
            let theirs = serde_json::json!({
                "log": String::from_utf8_lossy(text),
                "stream": "stderr",
                "time": "2026-11-28T00:00:00.000000001Z",
            })
            .to_string()
                + "\n";
            assert_eq!(String::from_utf8_lossy(&ours), theirs);
        }
    }
}
