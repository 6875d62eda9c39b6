//! Simulating one cluster of a plan and judging it against the targets.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::file::{Plan, Targets};
use super::packing::Packer;
use crate::experiment::{self, Experiment, GpuEntry, ReplicaPlacement, SharingSpec};
use crate::hardware::Catalogue;
use crate::operator::{self, Placed};
use crate::report::{RunSummary, run_experiment};

/// What the search shares: the plan, the catalogue, the MIG packer and a run counter.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The GPU catalogue.
    pub catalogue: &'a Catalogue,
    /// MIG packing for the plan's GPU.
    pub packer: Packer,
    /// Simulations run so far.
    pub runs: AtomicUsize,
}

impl<'a> Ctx<'a> {
    /// A context for `plan`.
    pub fn new(plan: &'a Plan, catalogue: &'a Catalogue) -> Ctx<'a> {
        Ctx {
            plan,
            catalogue,
            packer: Packer::new(&plan.gpu),
            runs: AtomicUsize::new(0),
        }
    }

    /// Simulations run so far.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }
}

/// Changes to the plan's serving settings for one cluster.
#[derive(Clone, Debug, Default)]
pub struct Tweaks {
    /// Models routed `least-outstanding` (the ample stages of per-model runs).
    pub least_outstanding: Vec<usize>,
    /// Model -> LLM `engine.memory_fraction` multiplier (time-sliced LLMs).
    pub memory_share: Vec<(usize, f64)>,
    /// Replace the workload (calibration runs).
    pub workload: Option<toml::Value>,
}

/// What a cluster did, the worst over the plan's seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measured {
    /// 95th percentile of request latency, ms (infinite when nothing completed).
    pub request_p95_ms: f64,
    /// 99th percentile of time to first token, ms (infinite when nothing completed).
    pub ttft_p99_ms: f64,
    /// Mean request latency, ms.
    pub request_mean_ms: f64,
    /// Completed / recorded (0 when nothing was recorded).
    pub success_rate: f64,
    /// Completed and failed requests per second.
    pub throughput_rps: f64,
    /// Requests completed.
    pub completed: u64,
    /// Mean over GPUs of the fraction of time their SMs ran kernels (MIG instances weighted
    /// by their SMs).
    pub utilization: f64,
    /// Per model: GPU-seconds per second of the partitions it has to itself.
    pub busy: Vec<f64>,
    /// Per model: requests it received.
    pub routed: Vec<u64>,
}

/// The experiment value of a cluster: the plan's base with `placed` and `tweaks` applied.
pub fn value_of(ctx: &Ctx, placed: &Placed, tweaks: &Tweaks) -> toml::Value {
    let mut v = ctx.plan.base.clone();
    let mut notes = Vec::new();
    operator::apply(&mut v, placed, &mut notes)
        .expect("invariant: the plan's base is a table of tables");
    let t = v.as_table_mut().expect("invariant: a table");
    if let Some(w) = &tweaks.workload {
        t.insert("workload".into(), w.clone());
    }
    if let Some(toml::Value::Array(deps)) = t.get_mut("deployments") {
        for d in deps.iter_mut() {
            let Some(model) = d.get("model").and_then(|m| m.as_str()).map(String::from) else {
                continue;
            };
            let Some(mi) = ctx.plan.models.iter().position(|m| *m == model) else {
                continue;
            };
            let dt = d.as_table_mut().expect("invariant: a table");
            if tweaks.least_outstanding.contains(&mi) {
                dt.insert(
                    "routing".into(),
                    toml::Value::String("least-outstanding".into()),
                );
            }
            if let Some((_, share)) = tweaks.memory_share.iter().find(|(m, _)| *m == mi) {
                let engine = dt
                    .entry("engine")
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                if let Some(e) = engine.as_table_mut() {
                    let f = e
                        .get("memory_fraction")
                        .and_then(|x| x.as_float())
                        .unwrap_or(0.9);
                    e.insert("memory_fraction".into(), toml::Value::Float(f * share));
                }
            }
        }
    }
    v
}

/// Resolve a cluster as an experiment (`Err`: it does not fit, e.g. memory).
pub fn resolve(ctx: &Ctx, value: toml::Value, seed: u64) -> Result<Experiment, String> {
    let mut v = value;
    if let Some(t) = v.as_table_mut() {
        t.insert("seed".into(), toml::Value::Integer(seed as i64));
    }
    experiment::resolve_value(v, &ctx.plan.path, ctx.catalogue, &Default::default()).map_err(|e| {
        let msg = e.to_string();
        let prefix = format!("{}: ", ctx.plan.path.display());
        msg.strip_prefix(&prefix).unwrap_or(&msg).to_string()
    })
}

/// Simulate a cluster under every seed of the plan: the worst of each metric.
pub fn simulate(ctx: &Ctx, placed: &Placed, tweaks: &Tweaks) -> Result<Measured, String> {
    let value = value_of(ctx, placed, tweaks);
    let mut worst: Option<Measured> = None;
    for &seed in &ctx.plan.seeds {
        let exp = resolve(ctx, value.clone(), seed)?;
        ctx.runs.fetch_add(1, Ordering::Relaxed);
        let summary = run_experiment(&exp);
        let m = measure(ctx, &exp, &summary);
        worst = Some(match worst {
            None => m,
            Some(w) => Measured {
                request_p95_ms: w.request_p95_ms.max(m.request_p95_ms),
                ttft_p99_ms: w.ttft_p99_ms.max(m.ttft_p99_ms),
                request_mean_ms: w.request_mean_ms.max(m.request_mean_ms),
                success_rate: w.success_rate.min(m.success_rate),
                throughput_rps: w.throughput_rps.min(m.throughput_rps),
                completed: w.completed.min(m.completed),
                utilization: w.utilization.max(m.utilization),
                busy: w.busy.iter().zip(&m.busy).map(|(a, b)| a.max(*b)).collect(),
                routed: w
                    .routed
                    .iter()
                    .zip(&m.routed)
                    .map(|(a, b)| (*a).max(*b))
                    .collect(),
            },
        });
    }
    Ok(worst.expect("invariant: a plan has at least one seed"))
}

/// The plan's metrics from one run.
fn measure(ctx: &Ctx, exp: &Experiment, s: &RunSummary) -> Measured {
    let lat = |count: u64, v: f64| if count == 0 { f64::INFINITY } else { v };
    let models = &ctx.plan.models;
    let mut busy = vec![0.0; models.len()];
    for p in &s.partitions {
        if let [only] = p.models.as_slice()
            && let Some(i) = models.iter().position(|m| m == only)
        {
            busy[i] += p.busy_fraction;
        }
    }
    let mut routed = vec![0u64; models.len()];
    for r in &s.replicas {
        if let Some(i) = models.iter().position(|m| *m == r.model) {
            routed[i] += r.routed;
        }
    }
    let full_mig_sms = exp
        .gpus
        .first()
        .and_then(|g| g.mig_profiles.iter().map(|p| p.sms).max())
        .unwrap_or(1);
    let mut per_gpu: Vec<(String, f64)> = Vec::new();
    for (pi, p) in s.partitions.iter().enumerate() {
        let part = &exp.partitions[pi];
        let weight = match exp.raw.gpus[part.gpu].sharing {
            SharingSpec::Mig { .. } => f64::from(p.sms) / f64::from(full_mig_sms),
            _ => 1.0,
        };
        match per_gpu.iter_mut().find(|(g, _)| *g == p.gpu) {
            Some(x) => x.1 += p.busy_fraction * weight,
            None => per_gpu.push((p.gpu.clone(), p.busy_fraction * weight)),
        }
    }
    let utilization = if per_gpu.is_empty() {
        0.0
    } else {
        per_gpu.iter().map(|x| x.1.min(1.0)).sum::<f64>() / per_gpu.len() as f64
    };
    Measured {
        request_p95_ms: lat(s.latency_ms.request.count, s.latency_ms.request.p95),
        ttft_p99_ms: lat(s.latency_ms.llm_ttft.count, s.latency_ms.llm_ttft.p99),
        request_mean_ms: lat(s.latency_ms.request.count, s.latency_ms.request.mean),
        success_rate: s.success_rate.unwrap_or(0.0),
        throughput_rps: s.throughput_rps,
        completed: s.completed,
        utilization,
        busy,
        routed,
    }
}

/// How far a cluster is from each target: `(target - value) / target` for latencies,
/// `(value - target) / (1 - target)` for the success rate (the share of the failure budget
/// left); negative when missed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Headroom {
    /// Request p95.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_p95: Option<f64>,
    /// TTFT p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p99: Option<f64>,
    /// Success rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
}

impl Headroom {
    /// The smallest headroom (the binding target).
    pub fn worst(&self) -> f64 {
        [self.request_p95, self.ttft_p99, self.success_rate]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min)
    }
}

/// Headroom of `m` against `t`, and whether every target is met.
pub fn judge(t: &Targets, m: &Measured) -> (bool, Headroom) {
    let lat = |target: Option<f64>, v: f64| {
        target.map(|t| if v.is_finite() { (t - v) / t } else { -1.0 })
    };
    let h = Headroom {
        request_p95: lat(t.request_p95_ms, m.request_p95_ms),
        ttft_p99: lat(t.ttft_p99_ms, m.ttft_p99_ms),
        success_rate: t.success_rate.map(|s| {
            if s < 1.0 {
                (m.success_rate - s) / (1.0 - s)
            } else {
                m.success_rate - 1.0
            }
        }),
    };
    let pass = m.completed > 0 && h.worst() >= 0.0;
    (pass, h)
}

/// The clusters left when one GPU of each kind (same sharing, same models) is down: its
/// replicas removed. `None` for a kind whose loss leaves a model with no replica.
pub fn without_one_gpu(placed: &Placed) -> Vec<(String, Option<Placed>)> {
    let mut kinds: Vec<(String, String)> = Vec::new();
    for g in &placed.gpus {
        let mut on: Vec<String> = Vec::new();
        for (m, reps) in &placed.deployments {
            for r in reps.iter().filter(|r| r.gpu == g.id) {
                on.push(format!(
                    "{m}{}",
                    r.instance.map_or(String::new(), |i| format!("#{i}"))
                ));
            }
        }
        on.sort();
        let kind = format!("{:?} {}", g.sharing, on.join(","));
        if !kinds.iter().any(|(k, _)| *k == kind) {
            kinds.push((kind, g.id.clone()));
        }
    }
    kinds
        .into_iter()
        .map(|(_, id)| {
            let gpus: Vec<GpuEntry> = placed.gpus.iter().filter(|g| g.id != id).cloned().collect();
            let deployments: Vec<(String, Vec<ReplicaPlacement>)> = placed
                .deployments
                .iter()
                .map(|(m, r)| {
                    (
                        m.clone(),
                        r.iter().filter(|x| x.gpu != id).cloned().collect(),
                    )
                })
                .collect();
            let ok = deployments.iter().all(|(_, r)| !r.is_empty());
            (id, ok.then_some(Placed { gpus, deployments }))
        })
        .collect()
}
