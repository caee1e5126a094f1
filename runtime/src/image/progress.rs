//! Progress of long imports and exports: bytes, layers and a rate, drawn on
//! stderr when it is a terminal, nothing otherwise.

use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress line (hidden when stderr is not a terminal).
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    /// A progress line for `verb` ("Loading", "Saving", …), `total` bytes if known.
    pub fn new(verb: &str, total: Option<u64>) -> Self {
        let visible = io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            format!(
                "{verb} {{bytes}}/{{total_bytes}} ({{binary_bytes_per_sec}}) {{msg}} [{{wide_bar}}] {{eta}}"
            )
        } else {
            format!("{verb} {{bytes}} ({{binary_bytes_per_sec}}) {{msg}} {{spinner}}")
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar, visible }
    }

    /// A progress that never draws (library callers, tests).
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
            visible: false,
        }
    }

    /// Counts bytes.
    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Shows the layer count.
    pub fn layers(&self, done: usize, total: usize) {
        self.bar.set_message(format!("layers {done}/{total}"));
    }

    /// Draws the final state (bytes, rate, layers) and leaves it on the terminal.
    pub fn finish(&self) {
        if self.visible && !self.bar.is_finished() {
            self.bar.finish();
            eprintln!();
        }
    }

    /// Wraps a reader so that what passes through is counted.
    pub fn reader<R: Read>(&self, r: R) -> Counting<R> {
        Counting {
            inner: r,
            p: self.clone(),
        }
    }

    /// Wraps a writer so that what passes through is counted.
    pub fn writer<W: Write>(&self, w: W) -> Counting<W> {
        Counting {
            inner: w,
            p: self.clone(),
        }
    }
}

/// A reader or writer that reports to a [`Progress`].
pub struct Counting<T> {
    inner: T,
    p: Progress,
}

impl<T> Counting<T> {
    /// The wrapped reader or writer.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.p.add(n as u64);
        Ok(n)
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.p.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
