//! Load: closed-loop virtual users with ramps (as the seed harness) or open-loop arrivals
//! (Poisson, Gamma, on-off, trace replay), and the shapes of LLM answers.

use std::path::{Path, PathBuf};

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Normal};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::config::{non_negative, positive};
use crate::error::InputError;

/// Closed-loop virtual users looping request -> think, added and removed linearly.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClosedLoop {
    /// Peak number of users.
    pub users: u32,
    /// Seconds over which users are added.
    pub ramp_up_s: f64,
    /// Seconds at full users.
    pub hold_s: f64,
    /// Seconds over which users are removed.
    pub ramp_down_s: f64,
    /// Pause after each end of turn, seconds.
    pub think_time_s: f64,
    /// A request not finished after this many seconds fails.
    pub timeout_s: f64,
}

/// Independent requests at exponential intervals.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Poisson {
    /// Mean arrivals per second.
    pub rate_rps: f64,
    /// Seconds during which requests arrive.
    pub duration_s: f64,
    /// A request not finished after this many seconds fails.
    pub timeout_s: f64,
}

/// A renewal process: independent Gamma-distributed gaps with mean `1 / rate_rps` and
/// coefficient of variation `cv` (shape `1 / cv²`, scale `cv² / rate_rps`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gamma {
    /// Mean arrivals per second.
    pub rate_rps: f64,
    /// Coefficient of variation of the gaps (standard deviation / mean): 1 is Poisson (and
    /// draws exactly the Poisson mode's gaps), above 1 burstier, below 1 more regular.
    pub cv: f64,
    /// Seconds during which requests arrive.
    pub duration_s: f64,
    /// A request not finished after this many seconds fails.
    pub timeout_s: f64,
}

/// How long on-off periods last.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Periods {
    /// Exponential with the given means (a Markov-modulated Poisson process).
    #[default]
    Exponential,
    /// Exactly the given lengths (a square wave).
    Fixed,
}

/// Poisson arrivals at `on_rate_rps` during ON periods and none during OFF periods, starting
/// ON at time 0. The long-run rate is `on_rate_rps × on_s / (on_s + off_s)`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnOff {
    /// Arrivals per second while ON.
    pub on_rate_rps: f64,
    /// Mean (or, with `periods = "fixed"`, exact) length of an ON period, seconds.
    pub on_s: f64,
    /// Mean (or exact) length of an OFF period, seconds.
    pub off_s: f64,
    /// Whether period lengths are exponential (default) or fixed.
    #[serde(default)]
    pub periods: Periods,
    /// Seconds during which requests arrive.
    pub duration_s: f64,
    /// A request not finished after this many seconds fails.
    pub timeout_s: f64,
}

/// How a trace file is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TraceFormat {
    /// `.jsonl` / `.ndjson` files, or a first line starting with `{`, are JSONL; a CSV header
    /// `TIMESTAMP,ContextTokens,GeneratedTokens` is Azure; any other CSV is `csv`.
    #[default]
    Auto,
    /// CSV with a header: `arrival_s` and optional `audio_s`, `prompt_tokens`,
    /// `output_tokens`, `sentences`.
    Csv,
    /// One JSON object per line with the same field names as `csv`.
    Jsonl,
    /// The public Azure LLM inference trace: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
}

/// What to do with a trace row that cannot be read.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop with an error naming the file and line.
    #[default]
    Stop,
    /// Skip the row and count it (`Trace::skipped`). Times that go backwards or are negative
    /// still stop: skipping them would silently change the trace's timing.
    Skip,
}

/// Replay of a recorded trace of arrivals (and, where it has them, per-request attributes).
///
/// Order of operations: the window `[start_s, end_s)` is cut in the trace's own time (seconds
/// after its first row) and shifted so that `start_s` is time 0; times are then divided by
/// `rate_scale`; with `loop`, the window repeats back to back until `duration_s`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// The trace file, relative to the experiment file that sets it.
    pub path: PathBuf,
    /// File format (default: recognised from the extension and first line).
    #[serde(default)]
    pub format: TraceFormat,
    /// Rate multiplier: 2.0 replays twice as fast (every time divided by 2).
    #[serde(default = "one")]
    pub rate_scale: f64,
    /// Start of the window, seconds after the trace's first row (default 0).
    #[serde(default)]
    pub start_s: Option<f64>,
    /// End of the window (excluded), seconds after the trace's first row (default: the end).
    #[serde(default)]
    pub end_s: Option<f64>,
    /// Repeat the window back to back until `duration_s`. The period is `end_s - start_s`
    /// when `end_s` is set, else the last arrival's time in the window plus the window's mean
    /// gap (so copies neither overlap nor leave a hole).
    #[serde(default, rename = "loop")]
    pub repeat: bool,
    /// Stop replaying at this simulated time, seconds (required with `loop`).
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Whether an unreadable row stops the run (default) or is skipped.
    #[serde(default)]
    pub on_error: OnError,
    /// A request not finished after this many seconds fails.
    pub timeout_s: f64,
}

fn one() -> f64 {
    1.0
}

/// One open-loop request: when it arrives and any attributes the trace gave it. Attributes
/// left `None` are drawn from the experiment's `[audio]` and `[answers]` tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arrival {
    /// Arrival time, ns since the start of the run.
    pub at_ns: u64,
    /// Length of the request's audio, seconds.
    pub audio_s: Option<f64>,
    /// Prompt tokens of the LLM request.
    pub prompt_tokens: Option<u32>,
    /// Tokens the LLM generates.
    pub output_tokens: Option<u32>,
    /// Sentences the answer is cut into.
    pub sentences: Option<u32>,
}

/// How requests arrive: `mode = "closed-loop"`, `"poisson"`, `"gamma"`, `"on-off"` or
/// `"trace"`, each with its own fields.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum WorkloadSpec {
    /// Virtual users with ramps, as the seed harness.
    ClosedLoop(ClosedLoop),
    /// Open-loop Poisson arrivals.
    Poisson(Poisson),
    /// Open-loop renewal process with Gamma gaps (burstiness set by `cv`).
    Gamma(Gamma),
    /// Open-loop Poisson arrivals switched on and off.
    OnOff(OnOff),
    /// Open-loop replay of a trace file.
    Trace(TraceSpec),
}

impl<'de> Deserialize<'de> for WorkloadSpec {
    // Two stages (read `mode`, then the variant's own table) so that errors keep the key path
    // and list the allowed fields, which serde's internally tagged enums lose.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let mode = t
            .remove("mode")
            .ok_or_else(|| D::Error::missing_field("mode"))?;
        let variants = &["closed-loop", "poisson", "gamma", "on-off", "trace"];
        let Some(mode) = mode.as_str() else {
            return Err(D::Error::custom(format!(
                "`mode` = {mode}: expected one of {variants:?}"
            )));
        };
        match mode {
            "closed-loop" => crate::config::variant(t).map(WorkloadSpec::ClosedLoop),
            "poisson" => crate::config::variant(t).map(WorkloadSpec::Poisson),
            "gamma" => crate::config::variant(t).map(WorkloadSpec::Gamma),
            "on-off" => crate::config::variant(t).map(WorkloadSpec::OnOff),
            "trace" => crate::config::variant(t).map(WorkloadSpec::Trace),
            other => Err(D::Error::unknown_variant(other, variants)),
        }
    }
}

impl WorkloadSpec {
    /// Total simulated wall time (ramps included), seconds. For a trace this is its
    /// `duration_s`, or 0 when it has none (it then ends with its last arrival, which only
    /// the loaded trace knows: see `arrivals::duration_s`).
    pub fn duration_s(&self) -> f64 {
        match self {
            WorkloadSpec::ClosedLoop(c) => c.ramp_up_s + c.hold_s + c.ramp_down_s,
            WorkloadSpec::Poisson(p) => p.duration_s,
            WorkloadSpec::Gamma(g) => g.duration_s,
            WorkloadSpec::OnOff(o) => o.duration_s,
            WorkloadSpec::Trace(t) => t.duration_s.unwrap_or(0.0),
        }
    }

    /// Request timeout, seconds.
    pub fn timeout_s(&self) -> f64 {
        match self {
            WorkloadSpec::ClosedLoop(c) => c.timeout_s,
            WorkloadSpec::Poisson(p) => p.timeout_s,
            WorkloadSpec::Gamma(g) => g.timeout_s,
            WorkloadSpec::OnOff(o) => o.timeout_s,
            WorkloadSpec::Trace(t) => t.timeout_s,
        }
    }

    /// Long-run mean arrival rate of a generated open-loop process, requests per second
    /// (`None` for closed-loop users and traces).
    pub fn mean_rate_rps(&self) -> Option<f64> {
        match self {
            WorkloadSpec::Poisson(p) => Some(p.rate_rps),
            WorkloadSpec::Gamma(g) => Some(g.rate_rps),
            WorkloadSpec::OnOff(o) => Some(o.on_rate_rps * o.on_s / (o.on_s + o.off_s)),
            WorkloadSpec::ClosedLoop(_) | WorkloadSpec::Trace(_) => None,
        }
    }

    /// Check ranges; errors name `origin` and the field. A trace's file is checked when it is
    /// loaded (`Trace::from_spec`).
    pub fn check(&self, origin: &Path) -> Result<(), InputError> {
        match self {
            WorkloadSpec::ClosedLoop(c) => {
                if c.users == 0 || c.users > MAX_USERS {
                    return Err(InputError::invalid(
                        origin,
                        "workload.users",
                        c.users,
                        &format!("an integer in [1, {MAX_USERS}]"),
                    ));
                }
                seconds(origin, "workload.ramp_up_s", c.ramp_up_s, false)?;
                seconds(origin, "workload.hold_s", c.hold_s, true)?;
                seconds(origin, "workload.ramp_down_s", c.ramp_down_s, false)?;
                seconds(origin, "workload.think_time_s", c.think_time_s, false)?;
            }
            WorkloadSpec::Poisson(p) => {
                rate(origin, "workload.rate_rps", p.rate_rps)?;
                seconds(origin, "workload.duration_s", p.duration_s, true)?;
            }
            WorkloadSpec::Gamma(g) => {
                rate(origin, "workload.rate_rps", g.rate_rps)?;
                if !(MIN_CV..=MAX_CV).contains(&g.cv) {
                    return Err(InputError::invalid(
                        origin,
                        "workload.cv",
                        crate::config::num(g.cv),
                        &format!(
                            "a number in [{MIN_CV}, {MAX_CV}] (1 = Poisson, > 1 burstier, \
                             < 1 more regular)"
                        ),
                    ));
                }
                seconds(origin, "workload.duration_s", g.duration_s, true)?;
            }
            WorkloadSpec::OnOff(o) => {
                rate(origin, "workload.on_rate_rps", o.on_rate_rps)?;
                seconds(origin, "workload.on_s", o.on_s, true)?;
                if o.on_s < MIN_ON_S {
                    return Err(InputError::invalid(
                        origin,
                        "workload.on_s",
                        crate::config::num(o.on_s),
                        &format!("at least {MIN_ON_S} s"),
                    ));
                }
                seconds(origin, "workload.off_s", o.off_s, false)?;
                seconds(origin, "workload.duration_s", o.duration_s, true)?;
            }
            WorkloadSpec::Trace(t) => t.check(origin)?,
        }
        seconds(origin, "workload.timeout_s", self.timeout_s(), true)?;
        if self.duration_s() > MAX_SECONDS {
            return Err(InputError::invalid(
                origin,
                "workload",
                format!("{} s in all", crate::config::num(self.duration_s())),
                &format!("a total duration of at most {MAX_SECONDS:e} s"),
            ));
        }
        if let Some(rps) = self.mean_rate_rps() {
            let expected = rps * self.duration_s();
            if expected > MAX_EXPECTED_REQUESTS {
                return Err(InputError::invalid(
                    origin,
                    "workload",
                    format!(
                        "{} req/s for {} s (about {} requests)",
                        crate::config::num(rps),
                        crate::config::num(self.duration_s()),
                        crate::config::num(expected.round())
                    ),
                    &format!(
                        "at most {MAX_EXPECTED_REQUESTS:e} expected requests in one run \
                         (a lower rate or a shorter duration)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl TraceSpec {
    /// Check the options (not the file).
    fn check(&self, origin: &Path) -> Result<(), InputError> {
        if self.path.as_os_str().is_empty() {
            return Err(InputError::invalid(
                origin,
                "workload.path",
                "\"\"",
                "the path of a trace file",
            ));
        }
        positive(origin, "workload.rate_scale", self.rate_scale)?;
        if let Some(s) = self.start_s {
            seconds(origin, "workload.start_s", s, false)?;
        }
        if let Some(e) = self.end_s {
            seconds(origin, "workload.end_s", e, true)?;
            let start = self.start_s.unwrap_or(0.0);
            if e <= start {
                return Err(InputError::invalid(
                    origin,
                    "workload.end_s",
                    crate::config::num(e),
                    &format!("a time after start_s ({})", crate::config::num(start)),
                ));
            }
        }
        if let Some(d) = self.duration_s {
            seconds(origin, "workload.duration_s", d, true)?;
        } else if self.repeat {
            return Err(InputError::invalid(
                origin,
                "workload.duration_s",
                "none",
                "a duration in seconds when `loop = true` (a looped trace never ends otherwise)",
            ));
        }
        Ok(())
    }
}

/// Smallest Gamma `cv` accepted (shape 10,000: nearly evenly spaced arrivals).
pub const MIN_CV: f64 = 0.01;
/// Largest Gamma `cv` accepted (shape 0.01: extreme bursts).
pub const MAX_CV: f64 = 10.0;
/// Shortest on-off ON period accepted, seconds: far shorter than any request, and it bounds
/// the work of skipping through periods.
pub const MIN_ON_S: f64 = 1e-3;

/// The longest simulated span accepted (about 3 years): far beyond any study, and far from
/// the ~585 years at which nanosecond time would overflow.
pub const MAX_SECONDS: f64 = 1e8;

/// Most closed-loop users in one run.
pub const MAX_USERS: u32 = 1_000_000;

/// Highest arrival rate, requests per second.
pub const MAX_RATE_RPS: f64 = 1e6;

/// Most requests an open-loop or trace workload may be expected to issue in one run: about
/// seven times the 1,000-GPU fleet's hour (7.2 M requests, about a minute to simulate), so a
/// mistyped rate or duration is refused at once instead of running for hours.
pub const MAX_EXPECTED_REQUESTS: f64 = 5e7;

/// Shortest span accepted where a span must be positive.
pub const MIN_SECONDS: f64 = 1e-3;

fn rate(origin: &Path, field: &str, x: f64) -> Result<(), InputError> {
    crate::config::in_range(origin, field, x, 1e-9, MAX_RATE_RPS, "req/s")
}

fn seconds(origin: &Path, field: &str, x: f64, strictly_positive: bool) -> Result<(), InputError> {
    if strictly_positive {
        positive(origin, field, x)?;
        // Shorter spans round to no time at all on the engine's nanosecond clock.
        if x < MIN_SECONDS {
            return Err(InputError::invalid(
                origin,
                field,
                crate::config::num(x),
                &format!("at least {MIN_SECONDS} s"),
            ));
        }
    } else {
        non_negative(origin, field, x)?;
    }
    if x > MAX_SECONDS {
        return Err(InputError::invalid(
            origin,
            field,
            crate::config::num(x),
            &format!("at most {MAX_SECONDS:e} s"),
        ));
    }
    Ok(())
}

/// Audio streaming as the harness does it: fixed-size chunks sent at a fixed interval.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Audio {
    /// Clip lengths, seconds, used round-robin by each user.
    pub clips_s: Vec<f64>,
    /// Audio per chunk, milliseconds.
    pub chunk_ms: f64,
    /// Time between chunk sends, milliseconds (10 ms for 128 ms chunks: faster than real time).
    pub chunk_interval_ms: f64,
}

impl Audio {
    /// Check ranges.
    pub fn check(&self, origin: &Path) -> Result<(), InputError> {
        if self.clips_s.is_empty() {
            return Err(InputError::invalid(
                origin,
                "audio.clips_s",
                "[]",
                "at least one clip length",
            ));
        }
        for (i, c) in self.clips_s.iter().enumerate() {
            seconds(origin, &format!("audio.clips_s[{i}]"), *c, true)?;
        }
        positive(origin, "audio.chunk_ms", self.chunk_ms)?;
        positive(origin, "audio.chunk_interval_ms", self.chunk_interval_ms)?;
        if self.chunk_interval_ms > MAX_SECONDS {
            return Err(InputError::invalid(
                origin,
                "audio.chunk_interval_ms",
                self.chunk_interval_ms,
                "at most 1e8",
            ));
        }
        Ok(())
    }
}

/// A distribution of a positive count, as written in experiments.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CountDist {
    /// Always `value`.
    Fixed {
        /// The value.
        value: u32,
    },
    /// Uniform integer in `[min, max]`.
    Uniform {
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
    /// Normal, rounded and clamped to `[min, max]`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        sd: f64,
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
}

impl CountDist {
    /// Draw one value.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        match *self {
            CountDist::Fixed { value } => value,
            CountDist::Uniform { min, max } => rng.random_range(min..=max),
            CountDist::Normal { mean, sd, min, max } => {
                let n = Normal::new(mean, sd).expect("invariant: checked sd >= 0");
                (n.sample(rng).round().max(0.0) as u32).clamp(min, max)
            }
        }
    }

    fn check(&self, origin: &Path, field: &str) -> Result<(), InputError> {
        let (lo, hi) = match *self {
            CountDist::Fixed { value } => (value, value),
            CountDist::Uniform { min, max } => (min, max),
            CountDist::Normal { mean, sd, min, max } => {
                positive(origin, &format!("{field}.mean"), mean)?;
                non_negative(origin, &format!("{field}.sd"), sd)?;
                (min, max)
            }
        };
        if lo == 0 || lo > hi {
            return Err(InputError::invalid(
                origin,
                field,
                format!("min {lo}, max {hi}"),
                "1 <= min <= max",
            ));
        }
        Ok(())
    }
}

/// Shapes of the LLM's answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    /// Prompt tokens (system prompt + transcript).
    pub prompt_tokens: CountDist,
    /// Generated tokens.
    pub output_tokens: CountDist,
    /// Sentences the answer is cut into (capped at the output tokens).
    pub sentences: CountDist,
}

impl AnswerSpec {
    /// Check ranges.
    pub fn check(&self, origin: &Path) -> Result<(), InputError> {
        self.prompt_tokens.check(origin, "answers.prompt_tokens")?;
        self.output_tokens.check(origin, "answers.output_tokens")?;
        self.sentences.check(origin, "answers.sentences")
    }
}

/// One drawn answer: its prompt, and where each sentence ends (cumulative token counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Cumulative token index at which each sentence ends; the last equals the output length.
    /// Inline for a few sentences: read at every token, it stays in the request's memory.
    pub sentence_ends: SmallVec<[u32; 4]>,
}

impl Answer {
    /// Total generated tokens.
    pub fn output_tokens(&self) -> u32 {
        *self
            .sentence_ends
            .last()
            .expect("invariant: an answer has a sentence")
    }

    /// Draw an answer: output tokens split into sentences of near-equal length.
    pub fn draw(spec: &AnswerSpec, rng: &mut ChaCha8Rng) -> Answer {
        Answer::draw_with(spec, rng, None, None, None)
    }

    /// Draw an answer, using the counts given (e.g. by a trace) in place of drawn ones.
    ///
    /// All three counts are drawn whether given or not, in the order prompt, output,
    /// sentences, so the stream advances the same way for every request (and with nothing
    /// given this is exactly [`Answer::draw`]). The output is at least 1 token, and the
    /// sentences between 1 and the output tokens.
    pub fn draw_with(
        spec: &AnswerSpec,
        rng: &mut ChaCha8Rng,
        prompt: Option<u32>,
        output: Option<u32>,
        sentences: Option<u32>,
    ) -> Answer {
        let drawn_prompt = spec.prompt_tokens.sample(rng);
        let drawn_out = spec.output_tokens.sample(rng);
        let drawn_sentences = spec.sentences.sample(rng);
        let prompt_tokens = prompt.unwrap_or(drawn_prompt);
        let out = output.unwrap_or(drawn_out).max(1);
        let n = sentences.unwrap_or(drawn_sentences).clamp(1, out);
        let sentence_ends = (1..=n)
            .map(|k| (u64::from(out) * u64::from(k) / u64::from(n)) as u32)
            .collect();
        Answer {
            prompt_tokens,
            sentence_ends,
        }
    }
}

/// When closed-loop user `i` (0-based) of `users` starts and stops, seconds.
///
/// Users join at an even rate over the ramp-up (the first at 0) and leave at an even rate over
/// the ramp-down, newest first, the last at the very end.
pub fn user_window(
    i: u32,
    users: u32,
    ramp_up_s: f64,
    hold_s: f64,
    ramp_down_s: f64,
) -> (f64, f64) {
    let start = ramp_up_s * f64::from(i) / f64::from(users);
    let leave_rank = users - 1 - i; // newest leaves first
    let stop = ramp_up_s + hold_s + ramp_down_s * f64::from(leave_rank + 1) / f64::from(users);
    (start, stop)
}

/// Next exponential inter-arrival gap for rate `rate_rps`, seconds.
pub fn poisson_gap_s(rate_rps: f64, rng: &mut ChaCha8Rng) -> f64 {
    Exp::new(rate_rps)
        .expect("invariant: checked rate > 0")
        .sample(rng)
}

/// Number of chunks a clip of `clip_s` is sent in.
pub fn chunks_for(clip_s: f64, chunk_ms: f64) -> u32 {
    ((clip_s * 1000.0 / chunk_ms).ceil() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Streams;

    #[test]
    fn users_ramp_linearly_and_leave_newest_first() {
        let w: Vec<_> = (0..5)
            .map(|i| user_window(i, 5, 10.0, 120.0, 5.0))
            .collect();
        assert_eq!(w[0].0, 0.0);
        assert_eq!(w[4].0, 8.0);
        assert_eq!(w[4].1, 131.0);
        assert_eq!(w[0].1, 135.0);
    }

    #[test]
    fn answers_split_into_ordered_sentences() {
        let spec = AnswerSpec {
            prompt_tokens: CountDist::Fixed { value: 100 },
            output_tokens: CountDist::Normal {
                mean: 40.0,
                sd: 10.0,
                min: 2,
                max: 90,
            },
            sentences: CountDist::Uniform { min: 1, max: 4 },
        };
        let mut rng = Streams::new(3).stream("answers");
        for _ in 0..200 {
            let a = Answer::draw(&spec, &mut rng);
            assert!(a.sentence_ends.windows(2).all(|w| w[0] < w[1]));
            assert!(a.output_tokens() >= 2 && a.output_tokens() <= 90);
        }
    }

    #[test]
    fn given_counts_replace_drawn_ones_and_the_stream_advances_the_same() {
        let spec = AnswerSpec {
            prompt_tokens: CountDist::Normal {
                mean: 250.0,
                sd: 50.0,
                min: 100,
                max: 600,
            },
            output_tokens: CountDist::Uniform { min: 12, max: 96 },
            sentences: CountDist::Uniform { min: 2, max: 3 },
        };
        let mut a = Streams::new(5).stream("answers");
        let mut b = a.clone();
        for i in 0..100u32 {
            let drawn = Answer::draw(&spec, &mut a);
            let given = match i % 3 {
                0 => Answer::draw_with(&spec, &mut b, None, None, None),
                1 => Answer::draw_with(&spec, &mut b, Some(4000), None, None),
                _ => Answer::draw_with(&spec, &mut b, None, Some(7), Some(9)),
            };
            match i % 3 {
                0 => assert_eq!(given, drawn),
                1 => {
                    assert_eq!(given.prompt_tokens, 4000);
                    assert_eq!(given.sentence_ends, drawn.sentence_ends);
                }
                _ => {
                    // More sentences than tokens: one token per sentence.
                    assert_eq!(given.prompt_tokens, drawn.prompt_tokens);
                    assert_eq!(given.sentence_ends[..], (1..=7).collect::<Vec<_>>());
                }
            }
        }
        assert_eq!(a, b, "both streams drew the same numbers");
    }

    #[test]
    fn seed_clips_take_38_to_44_chunks() {
        assert_eq!(chunks_for(4.771, 128.0), 38);
        assert_eq!(chunks_for(5.536, 128.0), 44);
    }
}
