//! Measured against simulated: the request log's arrivals (with their prompt and output
//! tokens, audio length and sentence count where the log has them) are replayed through the
//! simulator as a trace workload, on the experiment's cluster with the fitted profile in
//! place of the model it was fitted from; latency percentiles and throughput of both are
//! compared, with the error of each and their mean absolute percentage error (MAPE).
//!
//! Also: the warnings of a fitted profile simulated on another GPU, partition or driver than
//! it was measured on ([`provenance_warnings`]).

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::CalibrateError;
use super::commands::file_name;
use super::requests::{RequestLog, Stage};
use crate::error::InputError;
use crate::experiment::{self, Experiment, kind_name};
use crate::hardware::Catalogue;
use crate::metrics::{LatencySummary, Samples};
use crate::nvml::recording::Recording;
use crate::profile::ModelProfile;
use crate::report::{self, RunSummary};
use crate::trace::{Trace, TraceOptions};
use crate::workload::{Arrival, OnError, TraceFormat, TraceSpec, WorkloadSpec};

/// `exp` with its workload replaced by a replay of `arrivals` (times from 0, in order), each
/// request failing after `timeout_s`; `label` names the replay in the run's record.
pub fn with_arrivals(
    exp: &Experiment,
    arrivals: &[Arrival],
    label: &Path,
    timeout_s: f64,
) -> Result<Experiment, InputError> {
    let mut csv = String::from("arrival_s,audio_s,prompt_tokens,output_tokens,sentences\n");
    let cell = |v: Option<String>| v.unwrap_or_default();
    for a in arrivals {
        let _ = writeln!(
            csv,
            "{}.{:09},{},{},{},{}",
            a.at_ns / 1_000_000_000,
            a.at_ns % 1_000_000_000,
            cell(a.audio_s.map(|x| x.to_string())),
            cell(a.prompt_tokens.map(|x| x.to_string())),
            cell(a.output_tokens.map(|x| x.to_string())),
            cell(a.sentences.map(|x| x.to_string())),
        );
    }
    let opts = TraceOptions {
        format: TraceFormat::Csv,
        on_error: OnError::Stop,
    };
    let trace = Trace::read(Cursor::new(csv.into_bytes()), label, &opts)?;
    let spec = TraceSpec {
        path: label.to_path_buf(),
        format: TraceFormat::Csv,
        rate_scale: 1.0,
        start_s: None,
        end_s: None,
        repeat: false,
        duration_s: None,
        on_error: OnError::Stop,
        timeout_s,
    };
    let mut out = exp.clone();
    out.raw.workload = WorkloadSpec::Trace(spec);
    out.duration_s = crate::arrivals::duration_s(&out.raw.workload, Some(&trace));
    out.trace = Some(Arc::new(trace));
    Ok(out)
}

/// Warnings for the fitted profiles of `exp` that run on another GPU type or partition than
/// they were measured on, or (given the recording of the run being compared) another driver.
pub fn provenance_warnings(exp: &Experiment, recording: Option<&Recording>) -> Vec<String> {
    let mut out = Vec::new();
    for (mi, m) in exp.models.iter().enumerate() {
        let Some(cal) = &m.calibration else { continue };
        let mut seen = std::collections::BTreeSet::new();
        for r in exp.replicas.iter().filter(|r| r.model == mi) {
            let p = &exp.partitions[r.partition];
            let gpu = &exp.gpus[p.gpu];
            let partition = match &exp.raw.gpus[p.gpu].sharing {
                crate::experiment::SharingSpec::Mig { instances } => {
                    let first = exp
                        .partitions
                        .iter()
                        .position(|q| q.gpu == p.gpu)
                        .expect("invariant: a partition's GPU has partitions");
                    instances[r.partition - first].clone()
                }
                _ => "whole GPU".to_string(),
            };
            if !seen.insert((gpu.key.clone(), partition.clone())) {
                continue;
            }
            // The measured GPU may be named by any of its names (key, NVML name, PCI id...).
            let same_gpu = gpu
                .aliases()
                .iter()
                .any(|a| a.eq_ignore_ascii_case(cal.gpu.trim()));
            if !same_gpu || !partition.eq_ignore_ascii_case(&cal.partition) {
                out.push(format!(
                    "profile {} was fitted on a {} ({}) but runs on a {} ({}) on {}: its fitted \
                     numbers are carried over through the roofline, not measured there",
                    m.name, cal.gpu, cal.partition, gpu.key, partition, exp.raw.gpus[p.gpu].id
                ));
            }
        }
        if let (Some(rec), Some(d)) = (recording, &cal.driver_version)
            && let Some(now) = rec.header.node.driver_version.get()
            && now != d
        {
            out.push(format!(
                "profile {} was fitted with driver {d}; {} was recorded with driver {now}",
                m.name,
                file_name(&rec.path)
            ));
        }
    }
    out
}

/// One compared number.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Stage (`request`, `asr`, `llm_ttft`, `llm_tpot`, `llm_total`, `tts`) or `throughput`.
    pub metric: String,
    /// `mean`, `p50`, `p90`, `p95`, `p99` (ms), or `req/s`.
    pub stat: String,
    /// From the log.
    pub measured: f64,
    /// From the simulator.
    pub predicted: f64,
    /// `(predicted - measured) / measured`, percent.
    pub error_pct: f64,
}

/// The outcome of a validation.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    /// The fitted profile's name.
    pub profile: String,
    /// The deployed model it replaced.
    pub replaces: String,
    /// The experiment's name.
    pub experiment: String,
    /// Requests replayed.
    pub requests: usize,
    /// Requests the log counts as failed.
    pub measured_failed: u64,
    /// Requests the simulation completed and failed.
    pub simulated_completed: u64,
    /// See `simulated_completed`.
    pub simulated_failed: u64,
    /// Every comparison.
    pub rows: Vec<Comparison>,
    /// Mean of `|error_pct|` over the rows.
    pub mape_pct: f64,
    /// Things the user should know (provenance mismatches).
    pub warnings: Vec<String>,
}

/// What to validate.
pub struct ValidateInput<'a> {
    /// The request log measured.
    pub log: &'a RequestLog,
    /// The fitted profile file.
    pub profile_path: &'a Path,
    /// The experiment describing the cluster the log was measured on.
    pub experiment_path: &'a Path,
    /// GPU catalogue.
    pub catalogue: &'a Catalogue,
    /// The recording made with the log, to compare drivers (optional).
    pub recording: Option<&'a Recording>,
}

/// Replay the log through the experiment with the fitted profile, and compare.
pub fn validate(input: &ValidateInput) -> Result<Validation, CalibrateError> {
    let text = crate::config::read(input.profile_path)?;
    let fitted = ModelProfile::from_toml_str(&text, input.profile_path)?;
    let mut patch: toml::Value = crate::config::parse_toml(&text, input.profile_path)?;
    let merged = experiment::load_merged_value(input.experiment_path)?;
    // Resolve as written first: it says which model the fitted profile replaces, and its kind.
    let plain = experiment::resolve_value(
        merged.clone(),
        input.experiment_path,
        input.catalogue,
        &Default::default(),
    )?;
    let base = fitted.calibration.as_ref().map(|c| c.base_profile.as_str());
    let target = plain
        .models
        .iter()
        .find(|m| m.name == fitted.name)
        .or_else(|| plain.models.iter().find(|m| Some(m.name.as_str()) == base))
        .ok_or_else(|| {
            let deployed: Vec<&str> = plain.models.iter().map(|m| m.name.as_str()).collect();
            CalibrateError::Usage(format!(
                "{} deploys {}; none is {}{}: deploy the model the profile was fitted from",
                input.experiment_path.display(),
                deployed.join(", "),
                fitted.name,
                base.map_or(String::new(), |b| format!(" or its base profile {b}"))
            ))
        })?;
    if kind_name(&target.kind) != kind_name(&fitted.kind) {
        return Err(CalibrateError::Usage(format!(
            "{} is an {} profile, but {} deploys {} as an {}",
            input.profile_path.display(),
            kind_name(&fitted.kind),
            input.experiment_path.display(),
            target.name,
            kind_name(&target.kind)
        )));
    }
    let replaces = target.name.clone();
    if let Some(t) = patch.as_table_mut() {
        t.insert("name".into(), toml::Value::String(replaces.clone()));
    }
    let patches = [(replaces.clone(), patch)].into_iter().collect();
    let exp = experiment::resolve_value(merged, input.experiment_path, input.catalogue, &patches)?;

    let log = input.log;
    let requests = log.requests();
    let (first, last) = log.span_ns();
    let arrivals: Vec<Arrival> = requests
        .iter()
        .map(|(_, calls)| {
            let at = calls.iter().map(|c| c.queued_ns).min().unwrap_or(first);
            let llm = calls.iter().find(|c| c.stage == Stage::Llm);
            let asr: Vec<f64> = calls
                .iter()
                .filter(|c| c.stage == Stage::Asr)
                .filter_map(|c| c.input)
                .collect();
            let tts = calls.iter().filter(|c| c.stage == Stage::Tts).count() as u32;
            Arrival {
                at_ns: (at - first) as u64,
                audio_s: (!asr.is_empty()).then(|| asr.iter().sum()),
                prompt_tokens: llm.and_then(|c| c.input).map(|x| x.round().max(1.0) as u32),
                output_tokens: llm.and_then(|c| c.output_tokens),
                sentences: (tts > 0).then_some(tts),
            }
        })
        .collect();
    let replay = with_arrivals(&exp, &arrivals, &log.path, exp.raw.workload.timeout_s())?;
    let sim = report::run_experiment(&replay);
    let measured = measured_latencies(log);
    let mut rows = Vec::new();
    for (stage, samples) in &measured {
        let m = samples.summary();
        let p = *sim.latency_ms.get(stage);
        if m.count == 0 || p.count == 0 {
            continue;
        }
        rows.extend(compare(stage, &m, &p));
    }
    let measured_rps = (requests.len() as f64 + log.failed as f64) / ((last - first) as f64 / 1e9);
    rows.push(row("throughput", "req/s", measured_rps, sim.throughput_rps));
    let mape = rows.iter().map(|r| r.error_pct.abs()).sum::<f64>() / rows.len() as f64;
    Ok(Validation {
        profile: fitted.name.clone(),
        replaces,
        experiment: exp.raw.name.clone(),
        requests: requests.len(),
        measured_failed: log.failed,
        simulated_completed: sim.completed,
        simulated_failed: sim.failed,
        rows,
        mape_pct: mape,
        warnings: provenance_warnings(&replay, input.recording),
    })
}

/// Latency samples per simulator stage, from the log.
fn measured_latencies(log: &RequestLog) -> Vec<(&'static str, Samples)> {
    let ms = |a: i128, b: i128| (b - a) as f64 / 1e6;
    let mut request = Samples::default();
    let mut asr = Samples::default();
    let (mut ttft, mut tpot, mut total, mut tts) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for (_, calls) in log.requests() {
        let start = calls.iter().map(|c| c.queued_ns).min().unwrap_or(0);
        let end = calls.iter().map(|c| c.end_ns).max().unwrap_or(0);
        request.push(ms(start, end));
        let a: Vec<_> = calls.iter().filter(|c| c.stage == Stage::Asr).collect();
        if !a.is_empty() {
            let s = a.iter().map(|c| c.queued_ns).min().unwrap_or(0);
            let e = a.iter().map(|c| c.end_ns).max().unwrap_or(0);
            asr.push(ms(s, e));
        }
        for c in &calls {
            match c.stage {
                Stage::Llm => {
                    total.push(ms(c.queued_ns, c.end_ns));
                    if let Some(f) = c.first_token_ns {
                        ttft.push(ms(c.queued_ns, f));
                        if let Some(n) = c.output_tokens.filter(|&n| n >= 2) {
                            tpot.push(ms(f, c.end_ns) / f64::from(n - 1));
                        }
                    }
                }
                Stage::Tts => tts.push(ms(c.queued_ns, c.end_ns)),
                Stage::Asr => {}
            }
        }
    }
    vec![
        ("request", request),
        ("asr", asr),
        ("llm_ttft", ttft),
        ("llm_tpot", tpot),
        ("llm_total", total),
        ("tts", tts),
    ]
}

fn row(metric: &str, stat: &str, measured: f64, predicted: f64) -> Comparison {
    Comparison {
        metric: metric.into(),
        stat: stat.into(),
        measured,
        predicted,
        error_pct: if measured != 0.0 {
            (predicted - measured) / measured * 100.0
        } else {
            0.0
        },
    }
}

fn compare(stage: &str, m: &LatencySummary, p: &LatencySummary) -> Vec<Comparison> {
    [
        ("mean", m.mean, p.mean),
        ("p50", m.p50, p.p50),
        ("p90", m.p90, p.p90),
        ("p95", m.p95, p.p95),
        ("p99", m.p99, p.p99),
    ]
    .into_iter()
    .map(|(s, a, b)| row(stage, s, a, b))
    .collect()
}

/// The comparison as a table.
pub fn table(v: &Validation) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} (in place of {}) on {}: {} requests replayed; simulated {} completed, {} failed \
         (the log: {} failed)",
        v.profile,
        v.replaces,
        v.experiment,
        v.requests,
        v.simulated_completed,
        v.simulated_failed,
        v.measured_failed
    );
    let _ = writeln!(
        t,
        "{:<12} {:<6} {:>13} {:>13} {:>9}",
        "metric", "stat", "measured", "simulated", "error"
    );
    for r in &v.rows {
        let _ = writeln!(
            t,
            "{:<12} {:<6} {:>13.3} {:>13.3} {:>8.2}%",
            r.metric, r.stat, r.measured, r.predicted, r.error_pct
        );
    }
    let _ = writeln!(
        t,
        "MAPE over {} numbers: {:.2}% (latencies in ms)",
        v.rows.len(),
        v.mape_pct
    );
    t
}

/// The comparison as JSON (for `--out`).
pub fn json(v: &Validation) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("invariant: validations serialize");
    s.push('\n');
    s
}

/// Run a summary for tests and tools: the experiment replaying `arrivals`.
pub fn replay_summary(
    exp: &Experiment,
    arrivals: &[Arrival],
    label: &Path,
) -> Result<RunSummary, InputError> {
    let e = with_arrivals(exp, arrivals, label, exp.raw.workload.timeout_s())?;
    Ok(report::run_experiment(&e))
}
