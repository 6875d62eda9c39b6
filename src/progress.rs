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

/// Simulated time advanced and events per second of one long run, on stderr; hidden when
/// stderr is not a terminal or when asked to be quiet.
pub struct RunProgress {
    bar: ProgressBar,
    start: std::time::Instant,
}

impl RunProgress {
    /// A bar over `duration_s` simulated seconds for run `name`.
    pub fn new(name: &str, duration_s: f64, quiet: bool) -> RunProgress {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(duration_s.ceil().max(1.0) as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:32}] {pos}/{len} simulated s  {msg}  elapsed {elapsed}  ETA {eta}",
            )
            .expect("invariant: the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        RunProgress {
            bar,
            start: std::time::Instant::now(),
        }
    }

    /// The run has reached `sim_s` simulated seconds after `events` events.
    pub fn update(&self, sim_s: f64, events: u64) {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(sim_s as u64);
        self.bar
            .set_message(format!("{:.1} M events/s", events as f64 / wall / 1e6));
    }

    /// Remove the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
