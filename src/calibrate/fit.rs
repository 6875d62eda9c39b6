//! Fitting a model profile to a request log and a recording.
//!
//! The fitted profile keeps the base profile's structure (what the work is: FLOPs, bytes, SM
//! demand, how it widens with batch) and fits the few numbers the measurements pin down, each
//! mapped through the same functions the simulator uses on the measured partition
//! (`profile::exec_time`, `pipeline::tts_batch_time`, the LLM scheduler), so that a log the
//! simulator wrote is fitted back to the profile that wrote it.
//!
//! - **ASR and TTS** (batched calls): each execution's service time `t = α L + β G`, where `L`
//!   is the base profile's launch time and `G` its GPU time (`max(compute, memory)`) for that
//!   batch on the partition. Least squares without intercept gives `α` (launch overhead: the
//!   kernel counts scale by it; the "intercept") and `β` (work: FLOPs and bytes scale by it; the
//!   "slope" per item). When batch sizes and inputs do not vary enough to tell `L` from `G`,
//!   the recording's busy fraction (NVML utilization: time with a kernel running) fixes `β`
//!   (`β Σ G = busy × log span`); on MIG, where NVML has no utilization, both scale together.
//! - **LLM** (requests that ran alone, e.g. AIPerf at concurrency 1): time to first token and
//!   time per output token against the scheduler's prediction; Levenberg-Marquardt fits
//!   `step_overhead_us` (the intercept), `efficiency.compute` (prefill slope) and
//!   `efficiency.memory` (decode).
//! - **Memory** (`memory_gb`, ASR and TTS): the peak memory the device's processes held in
//!   the recording.
//!
//! SM demand is kept from the base profile: NVML's utilization counts time with a kernel
//! running, not SMs, so one partition's measurements cannot tell a narrow kernel from a slow
//! one (that needs the same model measured on two partition sizes).

use std::fmt::Write as _;
use std::path::Path;

use super::CalibrateError;
use super::commands::{file_name, tool};
use super::lsq::{self, Quality};
use super::measured::{self, Device, Measured};
use super::predict;
use super::requests::{Call, RequestLog, Stage};
use crate::error::InputError;
use crate::hardware::{Catalogue, GpuSpec, Partition};
use crate::nvml::recording::Recording;
use crate::profile::{LlmProfile, ModelKind, ModelProfile};

/// Below this `1 - cos²` between launch and GPU time, batch sizes cannot separate them.
const SEPARABLE: f64 = 1e-3;

/// Fewest executions (or requests) a fit accepts.
const MIN_OBSERVATIONS: usize = 3;

/// What to fit, from what.
pub struct FitInput<'a> {
    /// The profile the fit starts from.
    pub base: &'a ModelProfile,
    /// Its file (its TOML is the template of the output).
    pub base_path: &'a Path,
    /// GPU catalogue.
    pub catalogue: &'a Catalogue,
    /// The GPU type the log was measured on.
    pub gpu: &'a GpuSpec,
    /// The recording made while the log was taken.
    pub recording: &'a Recording,
    /// The request log.
    pub log: &'a RequestLog,
    /// MIG profile of the instance the model ran on (when the GPU is in MIG mode).
    pub mig: Option<&'a str>,
    /// The recording's GPU (and MIG device) the model ran on; default: the first that fits.
    pub device: Option<(u32, Option<u32>)>,
    /// The model server's process id (memory of that process only).
    pub pid: Option<u32>,
    /// Name of the fitted profile (default: the base's name with `-fitted`).
    pub name: Option<&'a str>,
    /// The LLM engine's token budget per iteration (prefill chunking).
    pub max_batched_tokens: u32,
}

/// One fitted number.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Key path in the profile, e.g. `chunk.kernels`.
    pub key: String,
    /// The base profile's value.
    pub base: f64,
    /// The fitted value.
    pub fitted: f64,
}

/// A fitted profile and how it was fitted.
#[derive(Clone, Debug)]
pub struct Fitted {
    /// The profile file to write.
    pub toml: String,
    /// The profile, parsed back from `toml` and checked.
    pub profile: ModelProfile,
    /// The numbers fitted.
    pub params: Vec<Param>,
    /// Fit quality per observed quantity (`service_ms`, `ttft_ms`, `tpot_ms`).
    pub quality: Vec<(String, Quality)>,
    /// Which parameters were fitted and how, in words.
    pub method: String,
    /// The summary for people.
    pub report: String,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// The device of the recording used.
    pub device: Device,
    /// What the recording measured there.
    pub measured: Measured,
}

/// Fit `input.base` to the log and recording.
pub fn fit(input: &FitInput) -> Result<Fitted, CalibrateError> {
    let rec = input.recording;
    let device = measured::select(rec, input.catalogue, input.gpu, input.mig, input.device)?;
    let part = match &device.profile {
        Some(p) => {
            let prof = input
                .gpu
                .mig_profile(p)
                .map_err(|e| CalibrateError::Usage(e.to_string()))?;
            input.gpu.mig_partition(prof)
        }
        None => input.gpu.full_partition(),
    };
    let meas = measured::measure(rec, &device, input.log, input.pid);
    let mut warnings = meas.warnings.clone();
    let body = match &input.base.kind {
        ModelKind::Asr(_) => fit_batched(input, Stage::Asr, &part, &meas, &mut warnings)?,
        ModelKind::Tts(_) => fit_batched(input, Stage::Tts, &part, &meas, &mut warnings)?,
        ModelKind::Llm(l) => fit_llm(input, l, &part, &mut warnings)?,
    };
    let mut params = body.params.clone();
    if !matches!(input.base.kind, ModelKind::Llm(_)) {
        if let Some(b) = meas.memory_peak_bytes {
            params.push(Param {
                key: "memory_gb".into(),
                base: input.base.memory_gb,
                fitted: round_sig(b as f64 / 1e9, 4),
            });
        } else {
            warnings.push(
                "no process memory in the recording for the model's device: memory_gb kept \
                 from the base profile"
                    .into(),
            );
        }
    }
    let name = input
        .name
        .map_or_else(|| format!("{}-fitted", input.base.name), str::to_string);
    let partition = device.profile.clone().unwrap_or_else(|| "whole GPU".into());
    let (toml_text, profile) = write_profile(
        input,
        &name,
        &partition,
        &params,
        &body.quality,
        &body.method,
        &device,
    )?;
    let report = report(
        input, &name, &partition, &device, &meas, &params, &body, &part,
    );
    Ok(Fitted {
        toml: toml_text,
        profile,
        params,
        quality: body.quality,
        method: body.method,
        report,
        warnings,
        device,
        measured: meas,
    })
}

/// What a kind-specific fit gives.
struct Body {
    params: Vec<Param>,
    quality: Vec<(String, Quality)>,
    method: String,
    /// Lines for the report.
    notes: Vec<String>,
}

/// One execution on the GPU: a batch of calls that started and ended together.
struct Exec {
    line: u64,
    start_ns: i128,
    end_ns: i128,
    n: u32,
    /// TTS: text tokens of each sentence in the batch.
    tokens: Vec<u32>,
    y_ns: f64,
}

/// The executions of `stage`: calls with the same start and end are one batch.
fn executions(
    calls: &[&Call],
    stage: Stage,
    log: &RequestLog,
) -> Result<Vec<Exec>, CalibrateError> {
    let mut groups: std::collections::BTreeMap<(i128, i128), Vec<&Call>> = Default::default();
    for c in calls {
        groups.entry((c.start_ns, c.end_ns)).or_default().push(c);
    }
    let mut out = Vec::new();
    for ((start, end), group) in groups {
        let n = group
            .iter()
            .map(|c| c.batch)
            .max()
            .unwrap_or(1)
            .max(group.len() as u32);
        let mut tokens = Vec::new();
        if stage == Stage::Tts {
            for c in &group {
                let Some(k) = c.input else {
                    return Err(CalibrateError::Input(InputError::Parse {
                        path: log.path.clone(),
                        message: format!(
                            "line {}: a tts call needs input_size (the sentence's text tokens) \
                             to be fitted",
                            c.line
                        ),
                    }));
                };
                tokens.push((k.round() as u32).max(1));
            }
            let mean = (tokens.iter().map(|&k| f64::from(k)).sum::<f64>() / tokens.len() as f64)
                .round() as u32;
            while (tokens.len() as u32) < n {
                tokens.push(mean.max(1));
            }
        }
        out.push(Exec {
            line: group.iter().map(|c| c.line).min().unwrap_or(0),
            start_ns: start,
            end_ns: end,
            n,
            tokens,
            y_ns: (end - start) as f64,
        });
    }
    out.sort_by_key(|e| e.line);
    Ok(out)
}

/// Key paths of the kernel groups of an ASR or TTS profile.
fn groups_of(kind: &ModelKind) -> Vec<&'static str> {
    match kind {
        ModelKind::Asr(_) => vec!["chunk"],
        ModelKind::Tts(_) => vec!["encoder", "decoder_step", "codec"],
        ModelKind::Llm(_) => vec![],
    }
}

fn fit_batched(
    input: &FitInput,
    stage: Stage,
    part: &Partition,
    meas: &Measured,
    warnings: &mut Vec<String>,
) -> Result<Body, CalibrateError> {
    let m = input.base;
    let calls: Vec<&Call> = input.log.stage(stage).collect();
    if calls.is_empty() {
        let stages: std::collections::BTreeSet<&str> =
            input.log.calls.iter().map(|c| c.stage.name()).collect();
        return Err(CalibrateError::Data(format!(
            "{}: no {} calls to fit {} to (the log has {})",
            input.log.path.display(),
            stage.name(),
            m.name,
            stages.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let execs = executions(&calls, stage, input.log)?;
    if execs.len() < MIN_OBSERVATIONS {
        return Err(CalibrateError::Data(format!(
            "{}: {} {} executions; a fit needs at least {MIN_OBSERVATIONS}",
            input.log.path.display(),
            execs.len(),
            stage.name()
        )));
    }
    if let ModelKind::Asr(a) = &m.kind {
        let chunk_s = a.chunk_ms / 1000.0;
        if let Some(c) = calls.iter().find(|c| {
            c.input
                .is_some_and(|x| (x - chunk_s).abs() > 0.01 * chunk_s)
        }) {
            warnings.push(format!(
                "{} line {}: an asr call of {} s of audio, but {} streams {} ms chunks: the fit \
                 treats every call as one chunk",
                file_name(&input.log.path),
                c.line,
                c.input.unwrap_or_default(),
                m.name,
                a.chunk_ms
            ));
        }
    }
    let bds: Vec<_> = execs
        .iter()
        .map(|e| match &m.kind {
            ModelKind::Asr(a) => predict::asr_batch(a, m, part, e.n),
            ModelKind::Tts(t) => predict::tts_batch(t, m, part, &e.tokens),
            ModelKind::Llm(_) => unreachable!("invariant: batched fits are asr or tts"),
        })
        .collect();
    let l: Vec<f64> = bds.iter().map(|b| b.launch_ns).collect();
    let g: Vec<f64> = bds.iter().map(|b| b.total_ns - b.launch_ns).collect();
    let y: Vec<f64> = execs.iter().map(|e| e.y_ns).collect();
    let (a2, b2, sep) = lsq::two(&l, &g, &y);
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let (first, last) = input.log.span_ns();
    // The base profile's GPU time of the executions within the window the recording's
    // utilization covers (the whole log when the two cannot be lined up).
    let (from, to) = meas.busy_window.unwrap_or((first, last));
    let busy_span = (to - from) as f64;
    let g_in: f64 = execs
        .iter()
        .zip(&g)
        .map(|(e, gi)| {
            let overlap = (e.end_ns.min(to) - e.start_ns.max(from)).max(0) as f64;
            let len = (e.end_ns - e.start_ns) as f64;
            if len > 0.0 { gi * overlap / len } else { 0.0 }
        })
        .sum();
    let (alpha, beta, method) = if sep >= SEPARABLE && a2 > 0.0 && b2 > 0.0 {
        (
            a2,
            b2,
            "launch and work scales by least squares over the executions' batch sizes and \
             inputs"
                .to_string(),
        )
    } else if let Some(u) = meas.busy {
        let beta = u * busy_span / g_in;
        let mut alpha = (sum(&y) - beta * sum(&g)) / sum(&l);
        if alpha < 0.0 {
            warnings.push(format!(
                "the recording's busy fraction ({:.1}%) is more than the service times leave for \
                 kernels: launch overhead set to 0",
                u * 100.0
            ));
            alpha = 0.0;
        }
        (
            alpha,
            beta,
            format!(
                "work scale from the recording's busy fraction ({:.1}% of the log's span with a \
                 kernel running), launch scale from the rest of the service time (batch sizes \
                 alone could not separate them)",
                u * 100.0
            ),
        )
    } else {
        let w: Vec<f64> = l.iter().zip(&g).map(|(a, b)| a + b).collect();
        let s = lsq::scale(&w, &y);
        warnings.push(format!(
            "batch sizes and inputs do not separate launch overhead from work, and {}: both \
             are scaled together, keeping the base profile's split",
            meas.busy_absent
                .clone()
                .unwrap_or_else(|| "the recording has no busy fraction".into())
        ));
        (
            s,
            s,
            "one scale for launch and work (batch sizes could not separate them and the \
             recording has no busy fraction)"
                .to_string(),
        )
    };
    if !(alpha.is_finite() && beta.is_finite() && beta > 0.0) {
        return Err(CalibrateError::Data(format!(
            "{}: the service times do not give a usable fit (launch scale {alpha}, work scale \
             {beta})",
            input.log.path.display()
        )));
    }
    let pred: Vec<f64> = l
        .iter()
        .zip(&g)
        .map(|(a, b)| alpha * a + beta * b)
        .collect();
    let ms = |v: &[f64]| v.iter().map(|x| x / 1e6).collect::<Vec<f64>>();
    let q = lsq::quality(&ms(&y), &ms(&pred));
    let mut params = Vec::new();
    for grp in groups_of(&m.kind) {
        let kg = match (&m.kind, grp) {
            (ModelKind::Asr(a), _) => &a.chunk,
            (ModelKind::Tts(t), "encoder") => &t.encoder,
            (ModelKind::Tts(t), "decoder_step") => &t.decoder_step,
            (ModelKind::Tts(t), _) => &t.codec,
            (ModelKind::Llm(_), _) => unreachable!("invariant: no kernel groups in an llm"),
        };
        params.push(Param {
            key: format!("{grp}.kernels"),
            base: kg.kernels,
            fitted: round_sig(kg.kernels * alpha, 6),
        });
        for (k, v) in [
            ("flops", kg.flops),
            ("bytes", kg.bytes),
            ("bytes_per_extra_item", kg.bytes_per_extra_item),
        ] {
            if v > 0.0 {
                params.push(Param {
                    key: format!("{grp}.{k}"),
                    base: v,
                    fitted: round_sig(v * beta, 6),
                });
            }
        }
    }
    let mut notes = vec![format!(
        "launch scale {alpha:.4}, work scale {beta:.4}: {method}"
    )];
    let x: Vec<f64> = execs
        .iter()
        .map(|e| match stage {
            Stage::Tts => e.tokens.iter().map(|&k| f64::from(k)).sum(),
            _ => f64::from(e.n),
        })
        .collect();
    let unit = if stage == Stage::Tts {
        "text token in the batch"
    } else {
        "call in the batch"
    };
    if let Some((a, b)) = lsq::line(&x, &ms(&y)) {
        let lq = lsq::quality(&ms(&y), &x.iter().map(|v| a + b * v).collect::<Vec<_>>());
        notes.push(format!(
            "as a straight line: service time = {a:.3} ms + {b:.4} ms per {unit} (R² {:.3})",
            lq.r2
        ));
    }
    if let Some(u) = meas.busy {
        let fitted_busy = beta * g_in / busy_span;
        notes.push(format!(
            "kernel-busy fraction: measured {:.1}% (NVML utilization over {}), fitted profile \
             {:.1}%",
            u * 100.0,
            meas.window,
            fitted_busy * 100.0
        ));
    }
    Ok(Body {
        params,
        quality: vec![("service_ms".into(), q)],
        method: format!(
            "{} kernels scaled by {alpha:.4} (launch overhead) and FLOPs and bytes by \
             {beta:.4} (work), {method}; SM demand kept",
            groups_of(&m.kind).join(", ")
        ),
        notes,
    })
}

/// A request the LLM served alone: its prompt and output tokens, TTFT and TPOT (ns).
struct LlmObs {
    prompt: u32,
    output: u32,
    ttft: f64,
    tpot: Option<f64>,
}

fn fit_llm(
    input: &FitInput,
    l: &LlmProfile,
    part: &Partition,
    warnings: &mut Vec<String>,
) -> Result<Body, CalibrateError> {
    let log = input.log;
    let mut calls: Vec<&Call> = log.stage(Stage::Llm).collect();
    if calls.is_empty() {
        return Err(CalibrateError::Data(format!(
            "{}: no llm calls to fit {} to",
            log.path.display(),
            input.base.name
        )));
    }
    if let Some(c) = calls
        .iter()
        .find(|c| c.input.is_none() || c.output_tokens.is_none() || c.first_token_ns.is_none())
    {
        return Err(CalibrateError::Input(InputError::Parse {
            path: log.path.clone(),
            message: format!(
                "line {}: an llm call needs its prompt tokens (CSV input_size, AIPerf \
                 input_sequence_length), output tokens (output_tokens, output_sequence_length) \
                 and first-token time (first_token_s, time_to_first_token) to be fitted",
                c.line
            ),
        }));
    }
    calls.sort_by_key(|c| (c.queued_ns, c.line));
    // Only requests that ran alone: the fit predicts a request with the engine to itself.
    let alone: Vec<&Call> = calls
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            let before = calls[..*i].iter().all(|o| o.end_ns <= c.queued_ns);
            let after = calls[i + 1..].iter().all(|o| o.queued_ns >= c.end_ns);
            before && after
        })
        .map(|(_, c)| *c)
        .collect();
    if alone.len() < calls.len() {
        warnings.push(format!(
            "{} of {} llm requests overlapped others (concurrency > 1): the fit uses the {} that \
             ran alone (record the log at concurrency 1, e.g. AIPerf --concurrency 1)",
            calls.len() - alone.len(),
            calls.len(),
            alone.len()
        ));
    }
    if alone.len() < MIN_OBSERVATIONS {
        return Err(CalibrateError::Data(format!(
            "{}: {} llm requests ran alone; the fit needs at least {MIN_OBSERVATIONS} (the \
             others overlap: record at concurrency 1)",
            log.path.display(),
            alone.len()
        )));
    }
    let obs: Vec<LlmObs> = alone
        .iter()
        .map(|c| {
            let first = c.first_token_ns.expect("invariant: checked above");
            let out = c.output_tokens.expect("invariant: checked above");
            LlmObs {
                prompt: c.input.expect("invariant: checked above").round().max(1.0) as u32,
                output: out,
                ttft: (first - c.queued_ns) as f64,
                tpot: (out >= 2).then(|| (c.end_ns - first) as f64 / f64::from(out - 1)),
            }
        })
        .collect();
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        if n == 0 { 1.0 } else { (s / n as f64).max(1.0) }
    };
    let ttft_scale = mean(&mut obs.iter().map(|o| o.ttft));
    let tpot_scale = mean(&mut obs.iter().filter_map(|o| o.tpot));
    let model = |theta: &[f64]| -> Vec<(f64, f64)> {
        let mut prof = input.base.clone();
        prof.efficiency.compute = theta[1];
        prof.efficiency.memory = theta[2];
        let mut ll = l.clone();
        ll.step_overhead_us = theta[0];
        obs.iter()
            .map(|o| {
                let (first, last) = predict::llm_alone(
                    &ll,
                    &prof,
                    part,
                    input.max_batched_tokens,
                    o.prompt,
                    o.output,
                );
                let tpot = if o.output >= 2 {
                    (last - first) as f64 / f64::from(o.output - 1)
                } else {
                    0.0
                };
                (first as f64, tpot)
            })
            .collect()
    };
    let residuals = |theta: &[f64]| -> Vec<f64> {
        let p = model(theta);
        let mut r = Vec::with_capacity(2 * obs.len());
        for (o, (ttft, tpot)) in obs.iter().zip(&p) {
            r.push((ttft - o.ttft) / ttft_scale);
            if let Some(t) = o.tpot {
                r.push((tpot - t) / tpot_scale);
            }
        }
        r
    };
    let prompts: Vec<f64> = obs.iter().map(|o| f64::from(o.prompt)).collect();
    let pmin = prompts.iter().copied().fold(f64::INFINITY, f64::min);
    let pmax = prompts.iter().copied().fold(0.0, f64::max);
    let varied = pmax > 1.2 * pmin;
    let has_tpot = obs.iter().any(|o| o.tpot.is_some());
    let fixed = [!varied, false, !has_tpot];
    if !varied {
        warnings.push(
            "the prompts all have about the same length, so step overhead and prefill speed \
             cannot be told apart: step_overhead_us kept from the base profile"
                .into(),
        );
    }
    if !has_tpot {
        warnings.push(
            "no request generated two tokens or more: efficiency.memory (decode) kept from the \
             base profile"
                .into(),
        );
    }
    let start = [
        l.step_overhead_us,
        input.base.efficiency.compute,
        input.base.efficiency.memory,
    ];
    let (theta, converged) = lsq::levenberg_marquardt(
        &residuals,
        &start,
        &[0.0, 1e-3, 1e-3],
        &[1e6, 1.0, 1.0],
        &fixed,
    );
    if !converged {
        warnings.push("the LLM fit stopped before converging; check its R² below".into());
    }
    for (k, name) in [(1, "efficiency.compute"), (2, "efficiency.memory")] {
        if theta[k] >= 1.0 - 1e-9 && !fixed[k] {
            warnings.push(format!(
                "{name} reached 1 (the catalogue's peak): the measured GPU is faster than the \
                 profile's work allows on a {}; check --gpu and the base profile",
                input.gpu.key
            ));
        }
    }
    let pred = model(&theta);
    let ttft_obs: Vec<f64> = obs.iter().map(|o| o.ttft / 1e6).collect();
    let ttft_pred: Vec<f64> = pred.iter().map(|p| p.0 / 1e6).collect();
    let (tpot_obs, tpot_pred): (Vec<f64>, Vec<f64>) = obs
        .iter()
        .zip(&pred)
        .filter_map(|(o, p)| o.tpot.map(|t| (t / 1e6, p.1 / 1e6)))
        .unzip();
    let mut quality = vec![("ttft_ms".to_string(), lsq::quality(&ttft_obs, &ttft_pred))];
    if !tpot_obs.is_empty() {
        quality.push(("tpot_ms".into(), lsq::quality(&tpot_obs, &tpot_pred)));
    }
    let params = vec![
        Param {
            key: "step_overhead_us".into(),
            base: l.step_overhead_us,
            fitted: round_sig(theta[0], 6),
        },
        Param {
            key: "efficiency.compute".into(),
            base: input.base.efficiency.compute,
            fitted: round_sig(theta[1], 6),
        },
        Param {
            key: "efficiency.memory".into(),
            base: input.base.efficiency.memory,
            fitted: round_sig(theta[2], 6),
        },
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| !fixed[*i])
    .map(|(_, p)| p)
    .collect();
    let mut notes = vec![format!(
        "{} requests that ran alone (prompts {pmin:.0} to {pmax:.0} tokens)",
        obs.len()
    )];
    if let Some((a, b)) = lsq::line(&prompts, &ttft_obs) {
        notes.push(format!(
            "as a straight line: time to first token = {a:.2} ms + {:.4} ms per prompt token",
            b
        ));
    }
    Ok(Body {
        params,
        quality,
        method: "step_overhead_us (intercept), efficiency.compute (prefill) and \
                 efficiency.memory (decode) by Levenberg-Marquardt on time to first token and \
                 time per output token of requests that ran alone, predicted by the simulator's \
                 scheduler; model size, KV bytes and SM demand kept"
            .into(),
        notes,
    })
}

/// `x` to `digits` significant digits (deterministic, for readable files).
pub fn round_sig(x: f64, digits: usize) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{:.*e}", digits.saturating_sub(1), x)
        .parse()
        .unwrap_or(x)
}

/// Set `path` (dotted) in a TOML table to `v`.
fn set(value: &mut toml::Value, path: &str, v: toml::Value) {
    let mut cur = value;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        let t = cur
            .as_table_mut()
            .expect("invariant: profile sections are tables");
        cur = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    cur.as_table_mut()
        .expect("invariant: profile sections are tables")
        .insert(parts[parts.len() - 1].to_string(), v);
}

fn quality_table(quality: &[(String, Quality)]) -> toml::Table {
    let mut t = toml::Table::new();
    for (what, q) in quality {
        let mut e = toml::Table::new();
        e.insert("observations".into(), toml::Value::Integer(q.n as i64));
        e.insert("r2".into(), toml::Value::Float(round_sig(q.r2, 6)));
        e.insert(
            "rms_residual".into(),
            toml::Value::Float(round_sig(q.rms, 6)),
        );
        e.insert(
            "max_abs_residual".into(),
            toml::Value::Float(round_sig(q.max_abs, 6)),
        );
        e.insert(
            "mape_pct".into(),
            toml::Value::Float(round_sig(q.mape_pct, 6)),
        );
        t.insert(what.clone(), toml::Value::Table(e));
    }
    t
}

#[allow(clippy::too_many_arguments)]
fn write_profile(
    input: &FitInput,
    name: &str,
    partition: &str,
    params: &[Param],
    quality: &[(String, Quality)],
    method: &str,
    device: &Device,
) -> Result<(String, ModelProfile), CalibrateError> {
    let text = crate::config::read(input.base_path)?;
    let mut value: toml::Value = crate::config::parse_toml(&text, input.base_path)?;
    if let Some(t) = value.as_table_mut() {
        t.remove("calibration");
    }
    set(&mut value, "name", toml::Value::String(name.into()));
    for p in params {
        set(&mut value, &p.key, toml::Value::Float(p.fitted));
    }
    let node = &input.recording.header.node;
    let mut cal = toml::Table::new();
    let s = |x: &str| toml::Value::String(x.to_string());
    cal.insert("tool".into(), s(&tool()));
    cal.insert("date".into(), s(&input.recording.header.started_at));
    cal.insert("gpu".into(), s(&input.gpu.key));
    cal.insert("gpu_name".into(), s(&device.gpu.name));
    cal.insert("partition".into(), s(partition));
    if let Some(d) = node.driver_version.get() {
        cal.insert("driver_version".into(), s(d));
    }
    if let Some(c) = node.cuda_version.get() {
        cal.insert("cuda_version".into(), s(c));
    }
    cal.insert("base_profile".into(), s(&input.base.name));
    cal.insert("recording".into(), s(&file_name(&input.recording.path)));
    cal.insert("requests".into(), s(&file_name(&input.log.path)));
    cal.insert("method".into(), s(method));
    cal.insert("fit".into(), toml::Value::Table(quality_table(quality)));
    set(&mut value, "calibration", toml::Value::Table(cal));
    let body = toml::to_string(&value).map_err(|e| {
        CalibrateError::Data(format!("cannot write the fitted profile as TOML: {e}"))
    })?;
    let body = annotate(&body, params);
    let header = format!(
        "# Fitted by `gpushare calibrate fit` to measurements: {} on {} ({}), from the request \
         log {} and the recording {}.\n# Numbers marked `fitted` were fitted (see \
         [calibration]); all others are the base profile {}'s, with their sources there.\n",
        input.base.name,
        input.gpu.key,
        partition,
        file_name(&input.log.path),
        file_name(&input.recording.path),
        file_name(input.base_path),
    );
    let out = format!("{header}{body}");
    let origin = Path::new(name);
    let profile = ModelProfile::from_toml_str(&out, origin).map_err(|e| {
        CalibrateError::Data(format!(
            "the fitted numbers do not make a valid profile ({e}); the measurements may be of \
             another model than {}",
            input.base.name
        ))
    })?;
    Ok((out, profile))
}

/// Mark each fitted key's line with `# fitted (base X)`.
fn annotate(body: &str, params: &[Param]) -> String {
    let mut table = String::new();
    let mut out = String::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed.trim_matches(['[', ']']).to_string();
        }
        out.push_str(line);
        if let Some((key, _)) = trimmed.split_once(" = ") {
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            if let Some(p) = params.iter().find(|p| p.key == path) {
                let _ = write!(out, "  # fitted (base {})", p.base);
            }
        }
        out.push('\n');
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn report(
    input: &FitInput,
    name: &str,
    partition: &str,
    device: &Device,
    meas: &Measured,
    params: &[Param],
    body: &Body,
    part: &Partition,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "fitted {name} from {} on {} {} ({}, {} of {}; {} samples over {})",
        input.base.name,
        input.gpu.key,
        partition,
        part.label,
        device.describe(),
        file_name(&input.recording.path),
        meas.samples,
        meas.window
    );
    let _ = writeln!(
        t,
        "request log {}: {} calls",
        file_name(&input.log.path),
        input.log.calls.len()
    );
    for n in &body.notes {
        let _ = writeln!(t, "  {n}");
    }
    for (what, q) in &body.quality {
        let _ = writeln!(
            t,
            "  fit of {what}: {} observations, R² {:.4}, RMS residual {:.4}, max |residual| \
             {:.4}, MAPE {:.2}%",
            q.n, q.r2, q.rms, q.max_abs, q.mape_pct
        );
    }
    let _ = writeln!(t, "{:<34} {:>14} {:>14}", "parameter", "base", "fitted");
    for p in params {
        let _ = writeln!(t, "{:<34} {:>14} {:>14}", p.key, num(p.base), num(p.fitted));
    }
    t
}

fn num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
        format!("{x:.4e}")
    } else {
        format!("{}", round_sig(x, 6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(round_sig(1234.5678, 3), 1230.0);
        assert_eq!(round_sig(0.000123456, 2), 0.00012);
        assert_eq!(round_sig(0.0, 3), 0.0);
    }

    #[test]
    fn fitted_lines_are_marked() {
        let body = "name = \"x\"\nmemory_gb = 9.5\n\n[chunk]\nkernels = 600.0\nflops = 1.0\n";
        let p = [
            Param {
                key: "chunk.kernels".into(),
                base: 840.0,
                fitted: 600.0,
            },
            Param {
                key: "memory_gb".into(),
                base: 9.6,
                fitted: 9.5,
            },
        ];
        let out = annotate(body, &p);
        assert!(
            out.contains("kernels = 600.0  # fitted (base 840)"),
            "{out}"
        );
        assert!(
            out.contains("memory_gb = 9.5  # fitted (base 9.6)"),
            "{out}"
        );
        assert!(out.contains("flops = 1.0\n"), "{out}");
    }
}
