//! A progress bar on stderr for long commands (runs done, rate, time left); hidden when
//! stderr is not a terminal or when asked to be quiet, so logs and pipes stay clean.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts finished units of work; safe to share between threads.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` runs, labelled `label`; hidden if `quiet` or stderr is not a terminal.
    pub fn new(total: usize, label: &str, quiet: bool) -> Progress {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:32}] {pos}/{len} runs  {per_sec}  elapsed {elapsed}  ETA {eta}",
            )
            .expect("invariant: the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Progress { bar }
    }

    /// One more unit done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Remove the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
