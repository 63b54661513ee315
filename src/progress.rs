//! A progress bar for the one-shot commands (`vulngate audit`, `vulngate precheck`):
//! drawn on stderr only when stderr is a terminal, so pipes, files and tests see clean
//! output; cleared when done so the table that follows stands alone.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `len` steps, visible only on a terminal.
    pub fn new(len: usize, what: &'static str) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len as u64), target);
        // A fixed template: the fallback only matters if the template were invalid.
        let style =
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    pub fn step(&self) {
        self.bar.inc(1);
    }

    pub(crate) fn set_message(&self, what: &'static str) {
        self.bar.set_message(what);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
