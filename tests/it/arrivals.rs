//! Open-loop arrival processes and trace replay: rates and burstiness (statistical tests with
//! tolerances from the central limit theorem, ~4 sigma), exact trace times, errors.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpushare::arrivals::{self, ArrivalSource};
use gpushare::config::parse_toml;
use gpushare::engine::{SimTime, Streams};
use gpushare::error::InputError;
use gpushare::experiment::Experiment;
use gpushare::hardware::Catalogue;
use gpushare::trace::{Trace, TraceOptions, parse_seconds_ns};
use gpushare::workload::{
    Arrival, Gamma, OnError, OnOff, Periods, Poisson, TraceFormat, TraceSpec, WorkloadSpec,
    poisson_gap_s,
};
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

use crate::root;

#[allow(dead_code)] // its `main` is the example's entry point, unused here
#[path = "../../examples/make_traces.rs"]
mod make_traces;

fn rng(seed: u64) -> ChaCha8Rng {
    Streams::new(seed).stream("arrivals")
}

/// Every arrival of `spec`, pulled one at a time.
fn all(spec: &WorkloadSpec, trace: Option<Arc<Trace>>, seed: u64) -> Vec<Arrival> {
    let mut src = ArrivalSource::new(spec, trace).expect("an open-loop workload");
    let mut rng = rng(seed);
    std::iter::from_fn(|| src.next(&mut rng)).collect()
}

fn times(spec: &WorkloadSpec, trace: Option<Arc<Trace>>, seed: u64) -> Vec<u64> {
    all(spec, trace, seed).iter().map(|a| a.at_ns).collect()
}

/// Mean and coefficient of variation of the gaps between arrivals.
fn gap_stats(t: &[u64]) -> (f64, f64) {
    let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt() / mean)
}

/// 4 sigma of the sample CV of `n` Gamma gaps with coefficient of variation `cv` (kurtosis
/// 3 + 6 cv²; the sample variance's relative error is sqrt((kurtosis - 1) / n), the CV's half).
fn cv_tolerance(cv: f64, n: usize) -> f64 {
    4.0 * cv * 0.5 * ((2.0 + 6.0 * cv * cv) / n as f64).sqrt()
}

fn poisson(rate_rps: f64, duration_s: f64) -> WorkloadSpec {
    WorkloadSpec::Poisson(Poisson {
        rate_rps,
        duration_s,
        timeout_s: 60.0,
    })
}

fn gamma(rate_rps: f64, cv: f64, duration_s: f64) -> WorkloadSpec {
    WorkloadSpec::Gamma(Gamma {
        rate_rps,
        cv,
        duration_s,
        timeout_s: 60.0,
    })
}

fn on_off(on_rate_rps: f64, on_s: f64, off_s: f64, periods: Periods, d: f64) -> WorkloadSpec {
    WorkloadSpec::OnOff(OnOff {
        on_rate_rps,
        on_s,
        off_s,
        periods,
        duration_s: d,
        timeout_s: 60.0,
    })
}

fn trace_spec(path: &Path) -> TraceSpec {
    TraceSpec {
        path: path.to_path_buf(),
        format: TraceFormat::Auto,
        rate_scale: 1.0,
        start_s: None,
        end_s: None,
        repeat: false,
        duration_s: None,
        on_error: OnError::Stop,
        timeout_s: 60.0,
    }
}

fn read(text: &str, name: &str, on_error: OnError) -> Result<Trace, InputError> {
    let opts = TraceOptions {
        format: TraceFormat::Auto,
        on_error,
    };
    Trace::read(Cursor::new(text.as_bytes()), Path::new(name), &opts)
}

fn read_ok(text: &str) -> Trace {
    read(text, "t.csv", OnError::Stop).expect("a valid trace")
}

/// Replay times of `text` (a CSV trace) under `spec`'s options.
fn replay(text: &str, edit: impl FnOnce(&mut TraceSpec)) -> Vec<u64> {
    let mut spec = trace_spec(Path::new("t.csv"));
    edit(&mut spec);
    let spec = WorkloadSpec::Trace(spec);
    times(&spec, Some(Arc::new(read_ok(text))), 0)
}

fn message(e: InputError) -> String {
    e.to_string()
}

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
}

// ---- generated processes ----

#[test]
fn poisson_draws_the_same_gaps_as_before() {
    // The rule the simulation used before arrival sources: the first arrival after one gap,
    // each next max(1 ns, gap) later, stopping at the first at or past the end.
    let (rate, duration) = (3.0, 500.0);
    let end = SimTime::from_secs_f64(duration);
    let mut r = rng(11);
    let mut expected = Vec::new();
    let mut at = SimTime::from_secs_f64(poisson_gap_s(rate, &mut r));
    while at < end {
        expected.push(at.0);
        at = at.plus(SimTime::from_secs_f64(poisson_gap_s(rate, &mut r)).0.max(1));
    }
    assert!(expected.len() > 1000);
    assert_eq!(times(&poisson(rate, duration), None, 11), expected);
    // Gamma with cv = 1 is the Poisson mode, draw for draw.
    assert_eq!(times(&gamma(rate, 1.0, duration), None, 11), expected);
}

#[test]
fn poisson_has_its_rate_and_exponential_gaps() {
    let (rate, duration) = (50.0, 2000.0); // ~100k arrivals
    let t = times(&poisson(rate, duration), None, 1);
    let expected = rate * duration;
    let n = t.len() as f64;
    assert!(
        (n - expected).abs() < 4.0 * expected.sqrt(),
        "{n} arrivals, expected {expected}"
    );
    let (mean, cv) = gap_stats(&t);
    assert!(
        (mean * rate - 1.0).abs() < 4.0 / n.sqrt(),
        "mean gap {mean}"
    );
    assert!((cv - 1.0).abs() < cv_tolerance(1.0, t.len()), "cv {cv}");
    assert!(*t.last().unwrap() < SimTime::from_secs_f64(duration).0);
}

#[test]
fn gamma_has_its_rate_and_cv() {
    for cv in [0.5, 2.0] {
        let (rate, duration) = (50.0, 2000.0);
        let t = times(&gamma(rate, cv, duration), None, 2);
        let expected = rate * duration;
        let n = t.len() as f64;
        // A renewal process's count has variance ~ cv² × mean.
        assert!(
            (n - expected).abs() < 4.0 * cv * expected.sqrt(),
            "cv {cv}: {n} arrivals, expected {expected}"
        );
        let (_, got) = gap_stats(&t);
        assert!(
            (got - cv).abs() < cv_tolerance(cv, t.len()),
            "cv {cv}: measured {got}"
        );
    }
}

#[test]
fn on_off_has_the_long_run_rate_and_nothing_while_off() {
    // Fixed periods: ON [0, 2) s, OFF [2, 5) s, repeating.
    let t = times(&on_off(20.0, 2.0, 3.0, Periods::Fixed, 5000.0), None, 3);
    assert!(t.iter().all(|&at| at % 5_000_000_000 < 2_000_000_000));
    let expected = 20.0 * 5000.0 * 2.0 / 5.0;
    let n = t.len() as f64;
    assert!(
        (n - expected).abs() < 4.0 * expected.sqrt(),
        "{n} vs {expected}"
    );

    // Exponential periods (means 1 s ON, 3 s OFF): the count's variance adds the modulation,
    // 2 r² p (1 - p) T / (1/on + 1/off) for ON fraction p.
    let (r, on, off, d) = (20.0, 1.0, 3.0, 20_000.0);
    let spec = on_off(r, on, off, Periods::Exponential, d);
    let p = on / (on + off);
    assert_eq!(spec.mean_rate_rps(), Some(r * p));
    let t = times(&spec, None, 4);
    let expected = r * p * d;
    let var = expected + 2.0 * r * r * p * (1.0 - p) * d / (1.0 / on + 1.0 / off);
    let n = t.len() as f64;
    assert!((n - expected).abs() < 4.0 * var.sqrt(), "{n} vs {expected}");
    // Bursty: the gaps vary more than a Poisson process's.
    let (_, cv) = gap_stats(&t);
    assert!(cv > 1.5, "cv {cv}");
}

#[test]
fn closed_loop_has_no_source_and_an_over_source_stays_over() {
    let closed: WorkloadSpec = parse_toml(
        "mode = \"closed-loop\"\nusers = 1\nramp_up_s = 0.0\nhold_s = 1.0\nramp_down_s = 0.0\n\
         think_time_s = 0.0\ntimeout_s = 1.0\n",
        Path::new("w.toml"),
    )
    .unwrap();
    assert!(ArrivalSource::new(&closed, None).is_none());
    let mut src = ArrivalSource::new(&poisson(1.0, 2.0), None).unwrap();
    let mut r = rng(0);
    while src.next(&mut r).is_some() {}
    let before = r.clone();
    assert!(src.next(&mut r).is_none());
    assert_eq!(r, before, "an over source draws nothing");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Time never goes backwards and nothing arrives at or after the end, for any parameters.
    #[test]
    fn generated_arrivals_are_ordered_and_inside_the_run(
        seed in 0u64..1000,
        rate in 0.01f64..1e4,
        cv in 0.01f64..10.0,
        on_s in 1e-3f64..100.0,
        off_s in 0.0f64..100.0,
        fixed in any::<bool>(),
        duration in 1e-3f64..1e3,
    ) {
        let periods = if fixed { Periods::Fixed } else { Periods::Exponential };
        for spec in [
            poisson(rate, duration),
            gamma(rate, cv, duration),
            on_off(rate, on_s, off_s, periods, duration),
        ] {
            let mut src = ArrivalSource::new(&spec, None).unwrap();
            let mut r = rng(seed);
            let end = SimTime::from_secs_f64(duration).0;
            let mut prev = 0;
            for _ in 0..5000 {
                let Some(a) = src.next(&mut r) else { break };
                prop_assert!(a.at_ns >= prev && a.at_ns < end);
                prev = a.at_ns;
            }
        }
    }
}

// ---- trace replay ----

const TIMES: &str = "arrival_s,prompt_tokens\n\
    1700000000.123456789,10\n\
    1700000000.123456790,\n\
    1700000000.5,30\n\
    1700000001.000000001,40\n\
    1700000003,50\n";

#[test]
fn replay_reproduces_the_trace_to_the_nanosecond() {
    let t = read_ok(TIMES);
    let expected = [0, 1, 376_543_211, 876_543_212, 2_876_543_211];
    assert_eq!(
        t.arrivals().iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(t.format(), TraceFormat::Csv);
    assert_eq!(t.skipped(), 0);
    let replayed = all(
        &WorkloadSpec::Trace(trace_spec(Path::new("t.csv"))),
        Some(Arc::new(t)),
        0,
    );
    assert_eq!(
        replayed.iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        expected
    );
    let prompts: Vec<_> = replayed.iter().map(|a| a.prompt_tokens).collect();
    assert_eq!(prompts, [Some(10), None, Some(30), Some(40), Some(50)]);
    assert!(
        replayed
            .iter()
            .all(|a| a.audio_s.is_none() && a.output_tokens.is_none())
    );
}

#[test]
fn rate_scale_divides_times() {
    let t = replay(TIMES, |s| s.rate_scale = 2.0);
    // Halves, rounded half up to the ns.
    assert_eq!(t, [0, 1, 188_271_606, 438_271_606, 1_438_271_606]);
    let t = replay(TIMES, |s| s.rate_scale = 0.5);
    assert_eq!(t, [0, 2, 753_086_422, 1_753_086_424, 5_753_086_422]);
}

#[test]
fn window_is_cut_in_trace_time_and_starts_at_zero() {
    let text = "arrival_s\n0\n0.5\n1\n2\n2.999999999\n3\n4\n";
    // [1, 3): rows at 1, 2 and 2.999999999 s, shifted by the window start.
    assert_eq!(
        replay(text, |s| {
            s.start_s = Some(1.0);
            s.end_s = Some(3.0);
        }),
        [0, 1_000_000_000, 1_999_999_999]
    );
    // The window is cut before scaling: [1, 3) at twice the rate.
    assert_eq!(
        replay(text, |s| {
            s.start_s = Some(1.0);
            s.end_s = Some(3.0);
            s.rate_scale = 2.0;
        }),
        [0, 500_000_000, 1_000_000_000]
    );
    // A window start between rows keeps the lead-in.
    assert_eq!(replay(text, |s| s.start_s = Some(3.5)), [500_000_000]);
}

#[test]
fn loop_repeats_back_to_back_until_the_duration() {
    let text = "arrival_s\n10\n11\n12\n";
    // Period = last arrival + mean gap = 2 + 1 s: evenly spaced across copies.
    let t = replay(text, |s| {
        s.repeat = true;
        s.duration_s = Some(7.0);
    });
    assert_eq!(t, (0..7).map(|k| k * 1_000_000_000).collect::<Vec<_>>());
    // With end_s the period is the window: [0, 5) repeats every 5 s.
    let t = replay(text, |s| {
        s.repeat = true;
        s.end_s = Some(5.0);
        s.duration_s = Some(12.0);
    });
    let s = 1_000_000_000;
    assert_eq!(t, [0, s, 2 * s, 5 * s, 6 * s, 7 * s, 10 * s, 11 * s]);
    // Scaled: twice the rate, the period halves too.
    let t = replay(text, |s| {
        s.repeat = true;
        s.rate_scale = 2.0;
        s.duration_s = Some(3.0);
    });
    assert_eq!(t, (0..6).map(|k| k * 500_000_000).collect::<Vec<_>>());
    // Without loop, duration_s cuts the replay.
    assert_eq!(replay(text, |s| s.duration_s = Some(1.5)), [0, s]);
}

#[test]
fn trace_duration_is_the_last_replayed_arrival_or_duration_s() {
    let trace = read_ok("arrival_s\n0\n1\n4\n");
    let mut spec = trace_spec(Path::new("t.csv"));
    spec.rate_scale = 2.0;
    let w = WorkloadSpec::Trace(spec.clone());
    assert_eq!(arrivals::duration_s(&w, Some(&trace)), 2.0);
    assert_eq!(w.duration_s(), 0.0);
    spec.duration_s = Some(9.0);
    let w = WorkloadSpec::Trace(spec);
    assert_eq!(arrivals::duration_s(&w, Some(&trace)), 9.0);
    assert_eq!(arrivals::duration_s(&poisson(1.0, 5.0), None), 5.0);
}

#[test]
fn azure_timestamps_are_exact() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-11-16 18:15:46.6805900,4808,10\n\
        2023-11-16 18:15:47.0000001,2000,1\n\
        2023-11-16 23:59:59.9999999,374,44\n\
        2023-11-17 00:00:00,1,1\n\
        2023-11-17 00:00:00.000000001+00:00,5,6\n\
        2023-11-17 02:00:00.5+02:00,7,8\n";
    let t = read(text, "AzureLLMInferenceTrace_code.csv", OnError::Stop).unwrap();
    assert_eq!(t.format(), TraceFormat::Azure);
    let day_end =
        ((23 - 18) * 3600 + (59 - 15) * 60 + (59 - 46)) * 1_000_000_000 + 999_999_900 - 680_590_000;
    let expected = [
        0,
        319_410_100,
        day_end,
        day_end + 100,
        day_end + 101,
        day_end + 500_000_100,
    ];
    assert_eq!(
        t.arrivals().iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        expected
    );
    let a = &t.arrivals()[0];
    assert_eq!((a.prompt_tokens, a.output_tokens), (Some(4808), Some(10)));
    assert_eq!((a.audio_s, a.sentences), (None, None));
}

#[test]
fn jsonl_times_are_exact_and_attributes_optional() {
    let text = "{\"arrival_s\": 5.000000001, \"audio_s\": 4.5, \"sentences\": 2}\n\
        \n\
        {\"arrival_s\": 5.25, \"prompt_tokens\": null, \"output_tokens\": 7}\n\
        {\"arrival_s\": 6e0}\n";
    let t = read(text, "t.jsonl", OnError::Stop).unwrap();
    assert_eq!(t.format(), TraceFormat::Jsonl);
    let a = t.arrivals();
    assert_eq!(
        a.iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        [0, 249_999_999, 999_999_999]
    );
    assert_eq!((a[0].audio_s, a[0].sentences), (Some(4.5), Some(2)));
    assert_eq!((a[1].prompt_tokens, a[1].output_tokens), (None, Some(7)));
    // Recognised by its first line too.
    assert_eq!(
        read(text, "t.txt", OnError::Stop).unwrap().format(),
        TraceFormat::Jsonl
    );
}

#[test]
fn shipped_traces_are_what_the_generator_writes_and_load() {
    let dir = root().join("experiments/traces");
    for (name, text, format, rows) in [
        (
            "voice-requests.csv",
            make_traces::voice_requests(),
            TraceFormat::Csv,
            300,
        ),
        (
            "azure-style.csv",
            make_traces::azure_style(),
            TraceFormat::Azure,
            500,
        ),
    ] {
        let path = dir.join(name);
        let shipped = std::fs::read_to_string(&path).unwrap();
        assert!(
            shipped == text,
            "{name} differs from the generator's output"
        );
        let t = Trace::load(&path, &TraceOptions::default()).unwrap();
        assert_eq!((t.format(), t.len(), t.skipped()), (format, rows, 0));
        let a = &t.arrivals()[0];
        assert!(a.prompt_tokens.is_some() && a.output_tokens.is_some());
        assert_eq!(a.audio_s.is_some(), format == TraceFormat::Csv);
    }
}

#[test]
fn trace_paths_are_relative_to_the_file_that_sets_them() {
    let cat = Catalogue::builtin();
    for stem in ["mig-voice-trace", "azure-llm"] {
        let path = root().join(format!("experiments/traces/{stem}.toml"));
        let exp = Experiment::load(&path, &cat).unwrap();
        let WorkloadSpec::Trace(spec) = &exp.raw.workload else {
            panic!("{stem}: a trace workload");
        };
        let trace = Trace::from_spec(spec, &path).unwrap();
        let n = times(&exp.raw.workload, Some(Arc::new(trace)), 0).len();
        assert!(n >= 300, "{stem}: {n} arrivals");
    }
    // A base file in another folder sets the path; the experiment extends it from elsewhere.
    let dir = TempDir::new().unwrap();
    std::fs::create_dir_all(dir.path().join("base/data")).unwrap();
    std::fs::create_dir_all(dir.path().join("runs")).unwrap();
    std::fs::write(dir.path().join("base/data/t.csv"), "arrival_s\n0\n1\n").unwrap();
    std::fs::write(
        dir.path().join("base/load.toml"),
        "[workload]\nmode = \"trace\"\npath = \"data/t.csv\"\ntimeout_s = 5.0\n",
    )
    .unwrap();
    let seed = root().join("experiments/seed");
    let exp_path = dir.path().join("runs/x.toml");
    std::fs::write(
        &exp_path,
        format!(
            "extends = [{:?}, {:?}, \"../base/load.toml\"]\nname = \"x\"\n",
            seed.join("voice-pipeline.toml"),
            seed.join("mig.toml")
        ),
    )
    .unwrap();
    let exp = Experiment::load(&exp_path, &cat).unwrap();
    let WorkloadSpec::Trace(spec) = &exp.raw.workload else {
        panic!("a trace workload");
    };
    assert_eq!(Trace::from_spec(spec, &exp_path).unwrap().len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Times written with nine decimals come back exactly, and any replay is in time order.
    #[test]
    fn any_trace_replays_exactly_and_in_order(
        gaps in prop::collection::vec(0u64..5_000_000_000, 1..60),
        origin in 0u64..4_000_000_000_000_000_000,
        scale in 0.1f64..10.0,
        repeat in any::<bool>(),
    ) {
        let mut text = String::from("arrival_s\n");
        let mut t = origin;
        let mut rel = Vec::new();
        for g in &gaps {
            t += g;
            rel.push(t - origin - gaps[0]);
            text.push_str(&format!("{}.{:09}\n", t / 1_000_000_000, t % 1_000_000_000));
        }
        prop_assert_eq!(replay(&text, |_| {}), rel.clone());
        let span = *rel.last().unwrap();
        let looped = repeat && gaps.len() > 1 && span > 0;
        let got = replay(&text, |s| {
            s.rate_scale = scale;
            s.repeat = looped;
            s.duration_s = Some(3.0 * span as f64 / 1e9 / scale + 1.0);
        });
        prop_assert!(got.windows(2).all(|w| w[0] <= w[1]));
        prop_assert!(got.len() >= rel.len());
    }

    /// Seconds with nine decimals parse to exactly the ns they were written from.
    #[test]
    fn nanosecond_decimals_round_trip(ns in any::<u64>()) {
        let text = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        prop_assert_eq!(parse_seconds_ns(&text), Ok(i128::from(ns)));
    }

    /// No input makes the reader panic: it gives a trace or an error.
    #[test]
    fn no_input_panics(
        bytes in prop::collection::vec(
            prop::sample::select(b"0123456789.,-+e\n\r {}\":arrival_sTIMESTAMP\xef\xbb\xbf\xff".to_vec()),
            0..200,
        ),
        format in prop::sample::select(vec![
            TraceFormat::Auto, TraceFormat::Csv, TraceFormat::Jsonl, TraceFormat::Azure,
        ]),
        skip in any::<bool>(),
    ) {
        let opts = TraceOptions {
            format,
            on_error: if skip { OnError::Skip } else { OnError::Stop },
        };
        for prefix in [&b""[..], b"arrival_s,prompt_tokens\n", b"TIMESTAMP,ContextTokens,GeneratedTokens\n"] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&bytes);
            let _ = Trace::read(Cursor::new(input), Path::new("fuzz.csv"), &opts);
        }
    }
}

// ---- errors ----

#[test]
fn a_malformed_row_names_the_file_line_and_column() {
    let text = "arrival_s,prompt_tokens\n0,5\n1,abc\n2,7\n";
    let msg = message(read(text, "trace.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["trace.csv", "line 3", "prompt_tokens", "abc"]);
    let msg = message(read("arrival_s\n0\nsoon\n", "trace.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["trace.csv", "line 3", "arrival_s", "soon"]);
    let msg =
        message(read("arrival_s,sentences\n0,1\n1,2,3\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["line 3", "3 fields, expected 2"]);
    let msg = message(read("arrival_s,output_tokens\n0,0\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(
        &msg,
        &["line 2", "output_tokens", "`0`", "whole number from 1 to"],
    );
    let msg = message(
        read(
            "{\"arrival_s\": 1}\n{\"arrival_s\": 2, \"tokens\": 3}\n",
            "t.jsonl",
            OnError::Stop,
        )
        .unwrap_err(),
    );
    assert_mentions(&msg, &["t.jsonl", "line 2", "unknown field `tokens`"]);
    let msg = message(
        read(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15,1,1\n",
            "a.csv",
            OnError::Stop,
        )
        .unwrap_err(),
    );
    assert_mentions(
        &msg,
        &[
            "a.csv",
            "line 2",
            "TIMESTAMP",
            "2023-11-16 18:15:46.6805900",
        ],
    );
}

#[test]
fn skip_mode_skips_and_counts_bad_rows() {
    let text = "arrival_s,prompt_tokens\n0,5\n1,abc\nnope,1\n2,7\n3,4,5\n4,0\n";
    let t = read(text, "t.csv", OnError::Skip).unwrap();
    assert_eq!(t.skipped(), 4);
    assert_eq!(
        t.arrivals().iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        [0, 2_000_000_000]
    );
    assert_mentions(t.first_skipped().unwrap(), &["line 3", "prompt_tokens"]);
    // Nothing readable at all is still an error.
    let msg = message(read("arrival_s\nx\ny\n", "t.csv", OnError::Skip).unwrap_err());
    assert_mentions(&msg, &["no readable rows", "2 skipped", "line 2"]);
}

#[test]
fn negative_and_backward_times_stop_even_when_skipping() {
    for on_error in [OnError::Stop, OnError::Skip] {
        let msg = message(read("arrival_s\n0\n-1.5\n", "t.csv", on_error).unwrap_err());
        assert_mentions(&msg, &["t.csv", "line 3", "-1.5", ">= 0"]);
        let msg = message(read("arrival_s\n0\n5\n4.9\n6\n", "t.csv", on_error).unwrap_err());
        assert_mentions(&msg, &["t.csv", "line 4", "4.9", "line 3", "time order"]);
    }
    // Equal times are in order.
    assert_eq!(read_ok("arrival_s\n1\n1\n").len(), 2);
}

#[test]
fn empty_traces_and_windows_are_errors() {
    for text in ["", "\n\n", "arrival_s\n", "arrival_s,audio_s\n\n"] {
        let msg = message(read(text, "t.csv", OnError::Stop).unwrap_err());
        assert_mentions(&msg, &["t.csv", "empty"]);
    }
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "arrival_s\n0\n1\n5\n").unwrap();
    let origin = Path::new("exp.toml");
    let mut spec = trace_spec(&path);
    spec.start_s = Some(1.5);
    spec.end_s = Some(4.0);
    let msg = message(Trace::from_spec(&spec, origin).unwrap_err());
    assert_mentions(
        &msg,
        &[
            "exp.toml",
            "workload.start_s",
            "[1.5, 4)",
            "3 arrivals",
            "5 s",
        ],
    );
    let mut spec = trace_spec(&path);
    spec.start_s = Some(6.0);
    assert!(Trace::from_spec(&spec, origin).is_err());
    // A loop needs a period.
    std::fs::write(&path, "arrival_s\n3\n").unwrap();
    let mut spec = trace_spec(&path);
    spec.repeat = true;
    spec.duration_s = Some(10.0);
    let msg = message(Trace::from_spec(&spec, origin).unwrap_err());
    assert_mentions(&msg, &["workload.loop", "end_s"]);
    spec.end_s = Some(1.0);
    assert!(Trace::from_spec(&spec, origin).is_ok());
    // A replay longer than the longest run accepted.
    std::fs::write(&path, "arrival_s\n0\n1000\n").unwrap();
    let mut spec = trace_spec(&path);
    spec.rate_scale = 1e-6;
    let msg = message(Trace::from_spec(&spec, origin).unwrap_err());
    assert_mentions(&msg, &["workload.rate_scale", "1e8"]);
}

#[test]
fn bad_headers_missing_files_and_unknown_formats_are_errors() {
    let msg = message(read("arrival_s,prompt\n0,1\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(
        &msg,
        &["line 1", "unknown column `prompt`", "prompt_tokens"],
    );
    let msg = message(read("0.5,1\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["line 1", "unknown column `0.5`", "arrival_s"]);
    let msg = message(read("audio_s\n1\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["no `arrival_s` column"]);
    let msg = message(read("arrival_s,arrival_s\n1,1\n", "t.csv", OnError::Stop).unwrap_err());
    assert_mentions(&msg, &["appears twice"]);
    let opts = TraceOptions {
        format: TraceFormat::Azure,
        on_error: OnError::Stop,
    };
    let msg =
        message(Trace::read(Cursor::new("arrival_s\n1\n"), Path::new("t.csv"), &opts).unwrap_err());
    assert_mentions(&msg, &["TIMESTAMP,ContextTokens,GeneratedTokens"]);

    let missing = PathBuf::from("no/such/trace.csv");
    let msg = message(Trace::load(&missing, &TraceOptions::default()).unwrap_err());
    assert_mentions(&msg, &["no/such/trace.csv", "cannot read"]);

    let err = parse_toml::<WorkloadSpec>(
        "mode = \"trace\"\npath = \"t.csv\"\nformat = \"xml\"\ntimeout_s = 1.0\n",
        Path::new("exp.toml"),
    )
    .unwrap_err();
    assert_mentions(&message(err), &["exp.toml", "format", "xml", "azure"]);
}

#[test]
fn workload_options_are_checked() {
    let check = |text: &str| {
        let w: WorkloadSpec = parse_toml(text, Path::new("exp.toml")).unwrap();
        w.check(Path::new("exp.toml")).map_err(message)
    };
    let ok = [
        "mode = \"gamma\"\nrate_rps = 2.0\ncv = 3.0\nduration_s = 10.0\ntimeout_s = 5.0\n",
        "mode = \"on-off\"\non_rate_rps = 2.0\non_s = 1.0\noff_s = 0.0\nduration_s = 10.0\n\
         timeout_s = 5.0\n",
        "mode = \"on-off\"\non_rate_rps = 2.0\non_s = 1.0\noff_s = 2.0\nperiods = \"fixed\"\n\
         duration_s = 10.0\ntimeout_s = 5.0\n",
        "mode = \"trace\"\npath = \"t.csv\"\ntimeout_s = 5.0\n",
        "mode = \"trace\"\npath = \"t.csv\"\nformat = \"azure\"\nrate_scale = 3.0\nstart_s = 1.0\n\
         end_s = 2.0\nloop = true\nduration_s = 60.0\non_error = \"skip\"\ntimeout_s = 5.0\n",
    ];
    for text in ok {
        assert_eq!(check(text), Ok(()), "{text}");
    }
    let bad = [
        (
            "mode = \"gamma\"\nrate_rps = 2.0\ncv = 0.0\nduration_s = 10.0\ntimeout_s = 5.0\n",
            &["workload.cv", "[0.01, 10]"][..],
        ),
        (
            "mode = \"gamma\"\nrate_rps = 2.0\ncv = nan\nduration_s = 10.0\ntimeout_s = 5.0\n",
            &["workload.cv", "NaN"],
        ),
        (
            "mode = \"gamma\"\nrate_rps = -2.0\ncv = 1.0\nduration_s = 10.0\ntimeout_s = 5.0\n",
            &["workload.rate_rps", "[1e-9, 1000000] req/s"],
        ),
        (
            "mode = \"on-off\"\non_rate_rps = 2.0\non_s = 0.0001\noff_s = 1.0\nduration_s = 10.0\n\
             timeout_s = 5.0\n",
            &["workload.on_s", "0.001"],
        ),
        (
            "mode = \"on-off\"\non_rate_rps = 2.0\non_s = 1.0\noff_s = -1.0\nduration_s = 10.0\n\
             timeout_s = 5.0\n",
            &["workload.off_s", ">= 0"],
        ),
        (
            "mode = \"trace\"\npath = \"\"\ntimeout_s = 5.0\n",
            &["workload.path", "trace file"],
        ),
        (
            "mode = \"trace\"\npath = \"t.csv\"\nrate_scale = 0.0\ntimeout_s = 5.0\n",
            &["workload.rate_scale", "> 0"],
        ),
        (
            "mode = \"trace\"\npath = \"t.csv\"\nstart_s = 5.0\nend_s = 5.0\ntimeout_s = 5.0\n",
            &["workload.end_s", "after start_s"],
        ),
        (
            "mode = \"trace\"\npath = \"t.csv\"\nloop = true\ntimeout_s = 5.0\n",
            &["workload.duration_s", "loop = true"],
        ),
        (
            "mode = \"trace\"\npath = \"t.csv\"\nduration_s = 1e9\ntimeout_s = 5.0\n",
            &["workload.duration_s", "1e8"],
        ),
    ];
    for (text, needles) in bad {
        let msg = check(text).expect_err(text);
        assert_mentions(&msg, needles);
        assert_mentions(&msg, &["exp.toml"]);
    }
    // Unknown fields keep their key path and list the allowed ones.
    let err = parse_toml::<WorkloadSpec>(
        "mode = \"on-off\"\nrate_rps = 1.0\non_s = 1.0\noff_s = 1.0\nduration_s = 1.0\n\
         timeout_s = 1.0\n",
        Path::new("exp.toml"),
    )
    .unwrap_err();
    assert_mentions(&message(err), &["rate_rps", "on_rate_rps"]);
}
