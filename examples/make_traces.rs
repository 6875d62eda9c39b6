//! Writes the synthetic traces shipped in `experiments/traces/` (deterministic, fixed seeds):
//!
//! ```sh
//! cargo run --example make_traces            # rewrites experiments/traces/*.csv
//! cargo run --example make_traces -- OUT_DIR # writes them elsewhere
//! ```
//!
//! - `voice-requests.csv` (`csv` format): 300 voice requests over about four minutes, quiet,
//!   then a two-minute rush, then quiet again, each with its audio length, prompt and output
//!   tokens and sentences.
//! - `azure-style.csv` (Azure LLM inference trace format): 500 bursty LLM requests (Gamma
//!   gaps, cv 3) with long contexts (500-4000 tokens) and outputs of 50-500 tokens.

use std::path::PathBuf;

use chrono::{NaiveDate, TimeDelta};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};

/// `voice-requests.csv`: arrival times to the microsecond, piecewise-constant Poisson rate.
pub fn voice_requests() -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_501);
    let mut out = String::from("arrival_s,audio_s,prompt_tokens,output_tokens,sentences\n");
    let mut t_s = 0.0_f64;
    for _ in 0..300 {
        // 0.6 req/s, a rush of 2 req/s from 60 s to 180 s, then 0.6 req/s again.
        let rate = if (60.0..180.0).contains(&t_s) {
            2.0
        } else {
            0.6
        };
        let t_us = (t_s * 1e6).round() as u64;
        let audio_ms: u32 = rng.random_range(1500..=8000);
        // A 150-token system prompt plus the transcript: ~2.5 words/s, ~1.3 tokens per word.
        let prompt = 150 + (f64::from(audio_ms) * 3.25e-3).round() as u32;
        let output: u32 = rng.random_range(20..=120);
        let sentences = rng.random_range(1..=4u32).min(output);
        out.push_str(&format!(
            "{}.{:06},{}.{:03},{prompt},{output},{sentences}\n",
            t_us / 1_000_000,
            t_us % 1_000_000,
            audio_ms / 1000,
            audio_ms % 1000,
        ));
        t_s += Exp::new(rate).expect("rate > 0").sample(&mut rng);
    }
    out
}

/// `azure-style.csv`: Azure's columns and timestamp layout (100 ns ticks, 7 digits).
pub fn azure_style() -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(20_231_116);
    let mut out = String::from("TIMESTAMP,ContextTokens,GeneratedTokens\n");
    let start = NaiveDate::from_ymd_opt(2023, 11, 16)
        .and_then(|d| d.and_hms_nano_opt(18, 15, 46, 680_590_000))
        .expect("a valid date");
    // Mean 2 req/s, cv 3: shape 1/9, scale 9/2 s.
    let gaps: Gamma<f64> = Gamma::new(1.0 / 9.0, 9.0 / 2.0).expect("valid Gamma");
    let mut ticks: i64 = 0; // 100 ns each
    for _ in 0..500 {
        let t = start + TimeDelta::nanoseconds(ticks * 100);
        let context = log_uniform(&mut rng, 500.0, 4000.0);
        let generated = log_uniform(&mut rng, 50.0, 500.0);
        out.push_str(&format!(
            "{}.{:07},{context},{generated}\n",
            t.format("%Y-%m-%d %H:%M:%S"),
            t.and_utc().timestamp_subsec_nanos() / 100
        ));
        ticks += (gaps.sample(&mut rng) * 1e7).round() as i64;
    }
    out
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> u32 {
    let u: f64 = rng.random_range(0.0..1.0);
    (lo * (hi / lo).powf(u)).round() as u32
}

fn main() {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/traces"),
        PathBuf::from,
    );
    for (name, text) in [
        ("voice-requests.csv", voice_requests()),
        ("azure-style.csv", azure_style()),
    ] {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("{}: cannot write: {e}", path.display());
            std::process::exit(1);
        }
        println!("wrote {}", path.display());
    }
}
