//! Load: closed-loop virtual users with ramps (as the seed harness) or open-loop Poisson
//! arrivals, and the shapes of LLM answers (prompt and output tokens, sentences).

use std::path::Path;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Normal};
use serde::{Deserialize, Serialize};

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

/// How requests arrive (`mode = "closed-loop"` or `mode = "poisson"`).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum WorkloadSpec {
    /// Virtual users with ramps, as the seed harness.
    ClosedLoop(ClosedLoop),
    /// Open-loop Poisson arrivals.
    Poisson(Poisson),
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
        let variants = &["closed-loop", "poisson"];
        let Some(mode) = mode.as_str() else {
            return Err(D::Error::custom(format!(
                "`mode` = {mode}: expected one of {variants:?}"
            )));
        };
        match mode {
            "closed-loop" => crate::config::variant(t).map(WorkloadSpec::ClosedLoop),
            "poisson" => crate::config::variant(t).map(WorkloadSpec::Poisson),
            other => Err(D::Error::unknown_variant(other, variants)),
        }
    }
}

impl WorkloadSpec {
    /// Total simulated wall time (ramps included), seconds.
    pub fn duration_s(&self) -> f64 {
        match self {
            WorkloadSpec::ClosedLoop(c) => c.ramp_up_s + c.hold_s + c.ramp_down_s,
            WorkloadSpec::Poisson(p) => p.duration_s,
        }
    }

    /// Request timeout, seconds.
    pub fn timeout_s(&self) -> f64 {
        match self {
            WorkloadSpec::ClosedLoop(c) => c.timeout_s,
            WorkloadSpec::Poisson(p) => p.timeout_s,
        }
    }

    /// Check ranges; errors name `origin` and the field.
    pub fn check(&self, origin: &Path) -> Result<(), InputError> {
        match self {
            WorkloadSpec::ClosedLoop(c) => {
                if c.users == 0 {
                    return Err(InputError::invalid(
                        origin,
                        "workload.users",
                        0,
                        "an integer >= 1",
                    ));
                }
                seconds(origin, "workload.ramp_up_s", c.ramp_up_s, false)?;
                seconds(origin, "workload.hold_s", c.hold_s, true)?;
                seconds(origin, "workload.ramp_down_s", c.ramp_down_s, false)?;
                seconds(origin, "workload.think_time_s", c.think_time_s, false)?;
            }
            WorkloadSpec::Poisson(p) => {
                positive(origin, "workload.rate_rps", p.rate_rps)?;
                seconds(origin, "workload.duration_s", p.duration_s, true)?;
            }
        }
        seconds(origin, "workload.timeout_s", self.timeout_s(), true)?;
        if self.duration_s() > MAX_SECONDS {
            return Err(InputError::invalid(
                origin,
                "workload",
                format!("{} s in all", self.duration_s()),
                &format!("a total duration of at most {MAX_SECONDS:e} s"),
            ));
        }
        Ok(())
    }
}

/// The longest simulated span accepted (about 3 years): far beyond any study, and far from
/// the ~585 years at which nanosecond time would overflow.
pub const MAX_SECONDS: f64 = 1e8;

fn seconds(origin: &Path, field: &str, x: f64, strictly_positive: bool) -> Result<(), InputError> {
    if strictly_positive {
        positive(origin, field, x)?;
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
    pub sentence_ends: Vec<u32>,
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
        let prompt_tokens = spec.prompt_tokens.sample(rng);
        let out = spec.output_tokens.sample(rng);
        let n = spec.sentences.sample(rng).min(out);
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
    fn seed_clips_take_38_to_44_chunks() {
        assert_eq!(chunks_for(4.771, 128.0), 38);
        assert_eq!(chunks_for(5.536, 128.0), 44);
    }
}
