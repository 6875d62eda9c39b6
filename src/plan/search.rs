//! The search: calibrate each model on each partition type, bound the replicas (and shared
//! pool sizes) every configuration needs, then evaluate configurations in order of GPU count,
//! all of one count at a time (in parallel), until some meet the targets.
//!
//! 1. **Calibration** (one short run per partition type, one user): each model's GPU time per
//!    request on that partition, and the unloaded request latency. From these, the demand
//!    (requests per second) the load can bring at most, and how many replicas keep a stage
//!    at most 25% busy ("ample").
//! 2. **Bounds.** For each model and partition type, the fewest replicas that meet the
//!    targets when every *other* model has ample dedicated GPUs (routed to the least busy): a
//!    search on one integer (start at demand × GPU time per request, gallop, bisect). A
//!    time-sliced or MPS tenant is bounded by a whole GPU or an MPS client alone on its GPU
//!    (co-tenants only slow it). Then, as the levels need them, each shared pool *unit*
//!    (tenants per GPU, e.g. one TTS and three LLMs) gets its own bound the same way: the
//!    fewest GPUs of such a pool, the other models ample. A bound rules out fewer replicas
//!    if performance never gets worse when another stage gets more or faster replicas
//!    (monotonicity). In a closed loop that holds only approximately: a faster stage brings
//!    the others more requests. So bound runs are judged against targets loosened by
//!    `search.bound_slack`, and `search.bounds = "least-load"` runs them at the least demand
//!    a passing configuration serves (see `bound_workload`), which keeps the bounds valid
//!    for closed loops at the price of many more configurations to evaluate.
//! 3. **Levels.** For every assignment of placements to models, the bounds give the fewest
//!    GPUs it can use; the level search goes from the smallest such count upward and, at each
//!    count, enumerates every configuration with exactly that many GPUs that respects the
//!    bounds: dedicated replicas, MIG instances packed minimally (only *maximal* ones: an
//!    instance that fits for free is added, since more replicas never hurt), and shared pools
//!    of identical GPUs. The first count at which some configuration passes is the answer,
//!    and every configuration with that count is ranked; [`exhaustive`] is the brute force the
//!    tests compare it with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use serde::Serialize;

use super::evaluate::{Ctx, Headroom, Measured, Tweaks, judge, simulate, without_one_gpu};
use super::file::Mode;
use super::space::{Candidate, Packed, Placement, Pool, Slot};
use crate::experiment::{GpuEntry, MpsMemoryLimit, ReplicaPlacement, SharingSpec};
use crate::operator::export::bundle_of;
use crate::operator::{Placed, place};
use crate::workload::WorkloadSpec;

/// Slack on the shared-pool GPU-time bound (batching can shrink work per request a little).
pub const POOL_BOUND_SLACK: f64 = 0.98;
/// Busy fraction of an "ample" stage at the highest demand.
pub const AMPLE_UTILIZATION: f64 = 0.25;
/// Simulated seconds of a calibration run.
pub const CALIBRATION_S: f64 = 60.0;

/// What calibration measured.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// (model, partition type) -> GPU seconds per request, one request at a time.
    pub gpu_s_per_request: BTreeMap<String, f64>,
    /// Mean request latency with one user on whole GPUs, ms.
    pub unloaded_request_ms: f64,
    /// Most requests per second the load can bring (closed loop: users / (think time +
    /// unloaded latency)).
    pub demand_rps: f64,
    /// Replicas per model that keep it at most 25% busy at that demand (the "ample" stages).
    pub ample: Vec<u32>,
    /// The load of the bound runs (closed loop: the plan's users with a longer think time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_workload: Option<toml::Value>,
    #[serde(skip)]
    per: BTreeMap<(usize, Slot), f64>,
}

/// One per-model bound.
#[derive(Clone, Debug, Serialize)]
pub struct Bound {
    /// Model.
    pub model: String,
    /// Partition type.
    pub slot: Slot,
    /// Fewest replicas that meet the targets with the other stages ample; `None`: none up to
    /// the limit does (or the model does not fit).
    pub replicas: Option<u32>,
    /// GPU-seconds per second of its partitions at that count.
    pub busy: f64,
    /// Why it has no bound, when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// All per-model bounds, and the shared-pool bounds found so far.
#[derive(Clone, Debug, Default)]
pub struct Bounds {
    map: BTreeMap<(usize, Slot), Bound>,
    /// (time-slicing or MPS, unit) -> fewest GPUs of such a pool with the other models ample.
    pools: BTreeMap<(Placement, Vec<u32>), Option<u32>>,
}

/// One shared-pool bound, for the record.
#[derive(Clone, Debug, Serialize)]
pub struct PoolBound {
    /// `time-slicing` or `mps`.
    pub mode: String,
    /// Tenants per GPU: model -> count.
    pub unit: BTreeMap<String, u32>,
    /// Fewest GPUs that meet the targets with the other models ample.
    pub gpus: Option<u32>,
}

impl Bounds {
    /// The bound of model `m` on `slot`.
    pub fn get(&self, m: usize, slot: &Slot) -> Option<u32> {
        self.map.get(&(m, slot.clone())).and_then(|b| b.replicas)
    }

    fn busy(&self, m: usize, slot: &Slot) -> f64 {
        self.map.get(&(m, slot.clone())).map_or(0.0, |b| b.busy)
    }

    /// Every bound, in order.
    pub fn all(&self) -> Vec<Bound> {
        self.map.values().cloned().collect()
    }

    /// Every pool bound found, in order.
    pub fn pools(&self, models: &[String]) -> Vec<PoolBound> {
        self.pools
            .iter()
            .map(|((p, unit), g)| PoolBound {
                mode: p.to_string(),
                unit: unit
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| **u > 0)
                    .map(|(m, u)| (models[m].clone(), *u))
                    .collect(),
                gpus: *g,
            })
            .collect()
    }
}

/// One evaluated configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluated {
    /// The configuration, with its MIG packing and GPU count.
    pub config: Packed,
    /// GPUs.
    pub gpus: u32,
    /// What it did (absent if it could not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// Headroom per target.
    pub headroom: Headroom,
    /// Meets every target (and the failure budget).
    pub pass: bool,
    /// With `gpu_failures = 1`: whether it still meets them with any one GPU down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survives_gpu_failure: Option<bool>,
    /// Why it could not run (e.g. memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the search found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Calibration.
    pub calibration: Calibration,
    /// Per-model bounds.
    pub bounds: Vec<Bound>,
    /// Shared-pool bounds computed.
    pub pool_bounds: Vec<PoolBound>,
    /// Every configuration evaluated, in the order of the levels.
    pub evaluated: Vec<Evaluated>,
    /// Fewest GPUs that meet the targets, if any within the limits.
    pub min_gpus: Option<u32>,
    /// Whether every configuration with fewer GPUs (within the search space) was ruled out.
    pub proven: bool,
    /// Why the search stopped, in words.
    pub stopped: String,
    /// Simulations run.
    pub runs: usize,
}

/// The slots the plan's modes need measured for model bounds.
fn slots(ctx: &Ctx) -> Vec<Slot> {
    let s = &ctx.plan.file.search;
    let mut v = Vec::new();
    if s.modes
        .iter()
        .any(|m| matches!(m, Mode::Dedicated | Mode::TimeSlicing))
    {
        v.push(Slot::Whole);
    }
    if s.modes.contains(&Mode::Mig) {
        v.extend(ctx.plan.profiles.iter().map(|p| Slot::Mig(p.clone())));
    }
    if s.modes.contains(&Mode::Mps) {
        let mut ks = s.mps_replicas.clone();
        ks.sort();
        ks.dedup();
        v.extend(ks.into_iter().map(Slot::MpsClient));
    }
    v
}

/// The GPU entry of one replica's partition alone on a GPU.
fn gpu_for(ctx: &Ctx, id: String, slot: &Slot) -> (GpuEntry, Option<usize>) {
    let sharing = match slot {
        Slot::Whole => SharingSpec::Dedicated,
        Slot::Mig(p) => SharingSpec::Mig {
            instances: vec![p.clone()],
        },
        Slot::MpsClient(k) => SharingSpec::Mps {
            replicas: *k,
            active_thread_pct: Vec::new(),
            memory_limit: MpsMemoryLimit::Equal,
        },
    };
    let inst = matches!(slot, Slot::Mig(_)).then_some(0);
    (
        GpuEntry {
            id,
            gpu_type: ctx.plan.gpu.key.clone(),
            node: "node0".into(),
            sharing,
        },
        inst,
    )
}

/// A cluster with `counts[m]` replicas of each model on `slots[m]`, one per GPU.
fn alone_cluster(ctx: &Ctx, slots: &[Slot], counts: &[u32]) -> Placed {
    let mut gpus = Vec::new();
    let mut deployments = Vec::new();
    for (m, model) in ctx.plan.models.iter().enumerate() {
        let mut reps = Vec::new();
        for _ in 0..counts[m] {
            let (g, inst) = gpu_for(ctx, format!("gpu{}", gpus.len()), &slots[m]);
            reps.push(ReplicaPlacement {
                gpu: g.id.clone(),
                instance: inst,
            });
            gpus.push(g);
        }
        deployments.push((model.clone(), reps));
    }
    Placed { gpus, deployments }
}

/// One user, no think time, [`CALIBRATION_S`] seconds: requests one at a time.
fn calibration_workload(ctx: &Ctx) -> toml::Value {
    let timeout = ctx.plan.probe.raw.workload.timeout_s();
    let mut t = toml::Table::new();
    for (k, v) in [
        ("mode", toml::Value::String("closed-loop".into())),
        ("users", toml::Value::Integer(1)),
        ("ramp_up_s", toml::Value::Float(0.0)),
        ("hold_s", toml::Value::Float(CALIBRATION_S)),
        ("ramp_down_s", toml::Value::Float(0.0)),
        ("think_time_s", toml::Value::Float(0.0)),
        ("timeout_s", toml::Value::Float(timeout)),
    ] {
        t.insert(k.into(), v);
    }
    toml::Value::Table(t)
}

/// Step 1: GPU time per request per model and partition type, the demand, the ample counts.
pub fn calibrate(ctx: &Ctx) -> Result<Calibration, String> {
    let n = ctx.plan.models.len();
    let all = slots(ctx);
    let mut want = all.clone();
    if !want.contains(&Slot::Whole) {
        want.insert(0, Slot::Whole);
    }
    let tweaks = Tweaks {
        workload: Some(calibration_workload(ctx)),
        ..Tweaks::default()
    };
    // One run per partition type; a model that does not fit it runs on a whole GPU instead
    // (and gets no measurement there).
    type SlotRun = (Slot, Result<(Vec<bool>, Measured), String>);
    let results: Vec<SlotRun> = want
        .par_iter()
        .map(|slot| {
            let fits: Vec<bool> = (0..n)
                .map(|m| {
                    let mut s = vec![Slot::Whole; n];
                    s[m] = slot.clone();
                    let placed = alone_cluster(ctx, &s, &vec![1; n]);
                    let v = super::evaluate::value_of(ctx, &placed, &tweaks);
                    super::evaluate::resolve(ctx, v, ctx.plan.seeds[0]).is_ok()
                })
                .collect();
            let s: Vec<Slot> = (0..n)
                .map(|m| if fits[m] { slot.clone() } else { Slot::Whole })
                .collect();
            let placed = alone_cluster(ctx, &s, &vec![1; n]);
            (
                slot.clone(),
                simulate(ctx, &placed, &tweaks).map(|m| (fits, m)),
            )
        })
        .collect();
    let mut per = BTreeMap::new();
    let mut unloaded = None;
    let duration = CALIBRATION_S;
    for (slot, r) in results {
        let (fits, m) = r.map_err(|e| format!("calibration on {slot}: {e}"))?;
        for (mi, fit) in fits.iter().enumerate() {
            if *fit && m.routed[mi] > 0 {
                per.insert(
                    (mi, slot.clone()),
                    m.busy[mi] * duration / m.routed[mi] as f64,
                );
            }
        }
        if slot == Slot::Whole {
            unloaded = Some(m.request_mean_ms);
        }
    }
    let unloaded = unloaded.filter(|u| u.is_finite()).ok_or(
        "calibration: a single user's requests did not complete on whole GPUs (check the timeout and the models)",
    )?;
    let demand = demand_rps(ctx, unloaded / 1e3);
    let ample = (0..n)
        .map(|m| {
            let t = per.get(&(m, Slot::Whole)).copied().unwrap_or(1.0);
            let a = (demand * t / AMPLE_UTILIZATION).ceil() as u32 + 1;
            match &ctx.plan.probe.raw.workload {
                WorkloadSpec::ClosedLoop(c) => a.min(c.users).max(1),
                _ => a.max(1),
            }
        })
        .collect();
    let gpu_s_per_request = per
        .iter()
        .map(|((m, s), v)| (format!("{} on {s}", ctx.plan.models[*m]), *v))
        .collect();
    Ok(Calibration {
        gpu_s_per_request,
        unloaded_request_ms: unloaded,
        demand_rps: demand,
        ample,
        bound_workload: bound_workload(ctx, unloaded / 1e3),
        per,
    })
}

/// The load of the bound runs under `bounds = "least-load"` (`None`: the plan's own load).
/// In a closed loop the demand a stage sees depends on the other stages: a configuration that meets a request-latency target `L` has a mean request
/// latency of at most about `L`, so it serves at least `users / (think + L)` requests per
/// second. The bound runs give the users `think + L - unloaded` of thinking instead: with
/// the other stages ample they then bring at most that many requests, the least any passing
/// configuration serves. A stage too small for it (with the others as fast as they can be)
/// is too small everywhere. (Without a request target, `L` is the timeout.) Open loops keep
/// their own arrivals.
fn bound_workload(ctx: &Ctx, unloaded_s: f64) -> Option<toml::Value> {
    if ctx.plan.file.search.bounds == super::file::BoundLoad::AtLoad {
        return None;
    }
    let WorkloadSpec::ClosedLoop(c) = &ctx.plan.probe.raw.workload else {
        return None;
    };
    let l = ctx
        .plan
        .file
        .targets
        .request_p95_ms
        .map_or(c.timeout_s, |ms| ms / 1e3);
    let mut w = c.clone();
    w.think_time_s = c.think_time_s + (l - unloaded_s).max(0.0);
    toml::Value::try_from(WorkloadSpec::ClosedLoop(w)).ok()
}

/// The most requests per second the plan's load brings.
fn demand_rps(ctx: &Ctx, unloaded_s: f64) -> f64 {
    match &ctx.plan.probe.raw.workload {
        WorkloadSpec::ClosedLoop(c) => f64::from(c.users) / (c.think_time_s + unloaded_s).max(1e-3),
        WorkloadSpec::Poisson(p) => p.rate_rps,
        WorkloadSpec::Gamma(g) => g.rate_rps,
        WorkloadSpec::OnOff(o) => o.on_rate_rps,
        WorkloadSpec::Trace(_) => match &ctx.plan.probe.trace {
            Some(t) if t.span_ns() > 0 => t.len() as f64 / (t.span_ns() as f64 / 1e9),
            _ => 1.0,
        },
    }
}

/// Most replicas a bound search tries for `slot`.
fn cap(ctx: &Ctx, slot: &Slot) -> u32 {
    let g = ctx.plan.file.search.max_gpus;
    match slot {
        Slot::Whole => g,
        Slot::Mig(p) => g.saturating_mul(ctx.packer.per_gpu(p).max(1)),
        Slot::MpsClient(k) => g.saturating_mul(*k),
    }
}

/// Step 2: every per-model bound, in parallel.
pub fn bounds(ctx: &Ctx, cal: &Calibration) -> Bounds {
    let n = ctx.plan.models.len();
    let mut jobs = Vec::new();
    for m in 0..n {
        for s in slots(ctx) {
            jobs.push((m, s));
        }
    }
    let found: Vec<Bound> = jobs
        .par_iter()
        .map(|(m, s)| bound(ctx, cal, *m, s))
        .collect();
    Bounds {
        map: found
            .into_iter()
            .zip(jobs)
            .map(|(b, (m, s))| ((m, s), b))
            .collect(),
        pools: BTreeMap::new(),
    }
}

/// The fewest replicas of model `m` on `slot` that meet the targets, the others ample.
fn bound(ctx: &Ctx, cal: &Calibration, m: usize, slot: &Slot) -> Bound {
    let model = ctx.plan.models[m].clone();
    let none = |why: String| Bound {
        model: model.clone(),
        slot: slot.clone(),
        replicas: None,
        busy: 0.0,
        why: Some(why),
    };
    let Some(&t) = cal.per.get(&(m, slot.clone())) else {
        return none(format!("{model} does not fit a {slot}"));
    };
    let n = ctx.plan.models.len();
    let limit = cap(ctx, slot);
    let tweaks = Tweaks {
        least_outstanding: (0..n).filter(|&x| x != m).collect(),
        workload: cal.bound_workload.clone(),
        ..Tweaks::default()
    };
    let mut memo: BTreeMap<u32, Option<f64>> = BTreeMap::new();
    let mut eval = |r: u32| -> Option<f64> {
        if let Some(v) = memo.get(&r) {
            return *v;
        }
        let mut slots = vec![Slot::Whole; n];
        slots[m] = slot.clone();
        let mut counts = cal.ample.clone();
        counts[m] = r;
        let placed = alone_cluster(ctx, &slots, &counts);
        let v = simulate(ctx, &placed, &tweaks)
            .ok()
            .and_then(|me| judge(&relaxed(ctx), &me).0.then_some(me.busy[m]));
        memo.insert(r, v);
        v
    };
    let start = ((cal.demand_rps * t).ceil() as u32).clamp(1, limit);
    let Some(hi) = smallest(start, 0, limit, &mut |r| eval(r).is_some()) else {
        return none(format!(
            "no count up to {limit} meets the targets with the other stages ample"
        ));
    };
    Bound {
        model,
        slot: slot.clone(),
        replicas: Some(hi),
        busy: eval(hi).unwrap_or(0.0),
        why: None,
    }
}

/// The targets the bound runs are judged against: the plan's, loosened by
/// `search.bound_slack` (latencies times `1 + slack`, the failure budget times `1 + slack`).
/// Bounds assume that a configuration never does worse when another stage gets more or
/// faster replicas; in a closed loop a faster stage brings the others more requests, and runs
/// are noisy, so the bounds leave this margin rather than rule out a configuration that would
/// have passed by a hair.
fn relaxed(ctx: &Ctx) -> super::file::Targets {
    let t = &ctx.plan.file.targets;
    let k = 1.0 + ctx.plan.file.search.bound_slack;
    super::file::Targets {
        request_p95_ms: t.request_p95_ms.map(|x| x * k),
        ttft_p99_ms: t.ttft_p99_ms.map(|x| x * k),
        success_rate: t.success_rate.map(|s| (1.0 - (1.0 - s) * k).max(0.0)),
        gpu_failures: t.gpu_failures,
    }
}

/// The smallest value in `(known_fail, limit]` for which `pass` holds, assuming it is monotone:
/// try `start`, gallop away from it (down while passing, up while failing), then bisect.
fn smallest(
    start: u32,
    known_fail: u32,
    limit: u32,
    pass: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let start = start.clamp(known_fail + 1, limit.max(known_fail + 1));
    if start > limit {
        return None;
    }
    let (mut lo, mut hi) = (known_fail, None::<u32>);
    if pass(start) {
        hi = Some(start);
        let mut step = 1;
        loop {
            let r = start.saturating_sub(step);
            if r <= lo {
                break;
            }
            if pass(r) {
                hi = Some(r);
                step *= 2;
            } else {
                lo = r;
                break;
            }
        }
    } else {
        lo = start;
        let mut step = 1;
        while hi.is_none() {
            let r = (start + step).min(limit);
            if pass(r) {
                hi = Some(r);
            } else {
                lo = r;
                if r == limit {
                    break;
                }
                step *= 2;
            }
        }
    }
    let mut hi = hi?;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pass(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The fewest GPUs of a shared pool running `unit` tenants per GPU (time-slicing or MPS) that
/// meet the targets with the other models ample, searched from `floor + 1` (the per-model
/// bounds already rule out `floor`).
fn unit_bound(
    ctx: &Ctx,
    cal: &Calibration,
    which: &Placement,
    unit: &[u32],
    floor: u32,
) -> Option<u32> {
    let n = ctx.plan.models.len();
    let k: u32 = unit.iter().sum();
    let limit = ctx.plan.file.search.max_gpus;
    let mut tweaks = Tweaks {
        least_outstanding: (0..n).filter(|&m| unit[m] == 0).collect(),
        workload: cal.bound_workload.clone(),
        ..Tweaks::default()
    };
    if *which == Placement::TimeSlicing {
        for (m, &u) in unit.iter().enumerate() {
            if u > 0
                && matches!(
                    ctx.plan.probe.models[m].kind,
                    crate::profile::ModelKind::Llm(_)
                )
            {
                tweaks.memory_share.push((m, 1.0 / f64::from(k)));
            }
        }
    }
    let mut pass = |g: u32| -> bool {
        let mut gpus = Vec::new();
        let mut deployments: Vec<(String, Vec<ReplicaPlacement>)> = ctx
            .plan
            .models
            .iter()
            .map(|m| (m.clone(), Vec::new()))
            .collect();
        for _ in 0..g {
            let id = format!("gpu{}", gpus.len());
            let sharing = match which {
                Placement::Mps => SharingSpec::Mps {
                    replicas: k,
                    active_thread_pct: Vec::new(),
                    memory_limit: MpsMemoryLimit::Equal,
                },
                _ => SharingSpec::TimeSlicing {
                    replicas: k,
                    time_slice_us: crate::experiment::DEFAULT_TIME_SLICE_US,
                    switch_cost_us: crate::experiment::DEFAULT_SWITCH_COST_US,
                },
            };
            for (m, &u) in unit.iter().enumerate() {
                for _ in 0..u {
                    deployments[m].1.push(ReplicaPlacement {
                        gpu: id.clone(),
                        instance: None,
                    });
                }
            }
            gpus.push(GpuEntry {
                id,
                gpu_type: ctx.plan.gpu.key.clone(),
                node: "node0".into(),
                sharing,
            });
        }
        for m in 0..n {
            if unit[m] == 0 {
                for _ in 0..cal.ample[m] {
                    let id = format!("gpu{}", gpus.len());
                    deployments[m].1.push(ReplicaPlacement {
                        gpu: id.clone(),
                        instance: None,
                    });
                    gpus.push(GpuEntry {
                        id,
                        gpu_type: ctx.plan.gpu.key.clone(),
                        node: "node0".into(),
                        sharing: SharingSpec::Dedicated,
                    });
                }
            }
        }
        simulate(ctx, &Placed { gpus, deployments }, &tweaks)
            .map(|m| judge(&relaxed(ctx), &m).0)
            .unwrap_or(false)
    };
    smallest(floor + 1, floor, limit, &mut pass)
}

/// The placements open to model `m` given its bounds.
fn options(ctx: &Ctx, b: &Bounds, m: usize) -> Vec<Placement> {
    let s = &ctx.plan.file.search;
    let mut v = Vec::new();
    if s.modes.contains(&Mode::Dedicated) && b.get(m, &Slot::Whole).is_some() {
        v.push(Placement::Dedicated);
    }
    if s.modes.contains(&Mode::Mig) {
        for p in &ctx.plan.profiles {
            if b.get(m, &Slot::Mig(p.clone())).is_some() {
                v.push(Placement::Mig(p.clone()));
            }
        }
    }
    if s.modes.contains(&Mode::TimeSlicing) && b.get(m, &Slot::Whole).is_some() {
        v.push(Placement::TimeSlicing);
    }
    if s.modes.contains(&Mode::Mps)
        && s.mps_replicas
            .iter()
            .any(|&k| b.get(m, &Slot::MpsClient(k)).is_some())
    {
        v.push(Placement::Mps);
    }
    v
}

/// Units (tenants per GPU of each pool model, every model at least once) of `k` tenants.
fn units(models: &[usize], n: usize, k: u32) -> Vec<Vec<u32>> {
    fn go(models: &[usize], i: usize, left: u32, cur: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if i == models.len() {
            if left == 0 {
                out.push(cur.clone());
            }
            return;
        }
        let rest = (models.len() - i - 1) as u32;
        for u in 1..=left.saturating_sub(rest) {
            cur[models[i]] = u;
            go(models, i + 1, left - u, cur, out);
        }
        cur[models[i]] = 0;
    }
    let mut out = Vec::new();
    if models.is_empty() || (k as usize) < models.len() {
        return out;
    }
    go(models, 0, k, &mut vec![0; n], &mut out);
    out
}

/// A shared pool option: its size, tenants per GPU, and (MPS) the client share.
#[derive(Clone, Debug)]
struct PoolOption {
    unit: Vec<u32>,
    min_gpus: u32,
    /// Whether `min_gpus` is the pool's own bound (else only the per-model bounds).
    refined: bool,
}

/// Pool options of an assignment: (time-slicing, MPS).
fn pool_options(ctx: &Ctx, b: &Bounds, a: &[Placement], which: Placement) -> Vec<PoolOption> {
    let n = a.len();
    let members: Vec<usize> = (0..n).filter(|&m| a[m] == which).collect();
    if members.is_empty() {
        return Vec::new();
    }
    let s = &ctx.plan.file.search;
    let ks = if which == Placement::Mps {
        &s.mps_replicas
    } else {
        &s.time_slicing_replicas
    };
    let mut ks = ks.clone();
    ks.sort();
    ks.dedup();
    let mut out = Vec::new();
    for k in ks {
        for unit in units(&members, n, k) {
            let mut min = 1u32;
            let mut ok = true;
            let mut busy = 0.0;
            for &m in &members {
                let slot = if which == Placement::Mps {
                    Slot::MpsClient(k)
                } else {
                    Slot::Whole
                };
                match b.get(m, &slot) {
                    Some(r) => min = min.max(r.div_ceil(unit[m])),
                    None => ok = false,
                }
                busy += b.busy(m, &slot);
            }
            if which == Placement::TimeSlicing {
                min = min.max((busy * POOL_BOUND_SLACK).ceil() as u32);
            }
            if !ok {
                continue;
            }
            match b.pools.get(&(which.clone(), unit.clone())) {
                Some(None) => {}
                Some(Some(g)) => out.push(PoolOption {
                    unit,
                    min_gpus: *g.max(&min),
                    refined: true,
                }),
                None => out.push(PoolOption {
                    unit,
                    min_gpus: min,
                    refined: false,
                }),
            }
        }
    }
    out
}

/// Fewest GPUs of an assignment under the bounds (`None`: some model has no bound there);
/// once the count is known to exceed `within`, a quicker, smaller bound above it may be
/// returned instead.
fn lower_bound(ctx: &Ctx, b: &Bounds, a: &[Placement], within: u32) -> Option<u32> {
    let mut total = 0u32;
    let mut need: BTreeMap<String, u32> = BTreeMap::new();
    for (m, p) in a.iter().enumerate() {
        match p {
            Placement::Dedicated => total += b.get(m, &Slot::Whole)?,
            Placement::Mig(prof) => {
                *need.entry(prof.clone()).or_insert(0) += b.get(m, &Slot::Mig(prof.clone()))?
            }
            _ => {}
        }
    }
    for which in [Placement::TimeSlicing, Placement::Mps] {
        if a.contains(&which) {
            total += pool_options(ctx, b, a, which)
                .iter()
                .map(|o| o.min_gpus)
                .min()?;
        }
    }
    let quick = total + ctx.packer.quick_bound(&need);
    if quick > within {
        return Some(quick);
    }
    Some(total + ctx.packer.bins(&need)?)
}

/// Compositions of `extra` over `k` parts.
fn compositions(extra: u32, k: usize) -> Vec<Vec<u32>> {
    if k == 0 {
        return if extra == 0 { vec![vec![]] } else { vec![] };
    }
    let mut out = Vec::new();
    for first in 0..=extra {
        for mut rest in compositions(extra - first, k - 1) {
            rest.insert(0, first);
            out.push(rest);
        }
    }
    out
}

/// The MIG replica vectors (over `mig` models) at least `lb`, packed on exactly `gpus` GPUs,
/// to which no replica can be added without another GPU.
fn maximal_mig(ctx: &Ctx, a: &[Placement], mig: &[usize], lb: &[u32], gpus: u32) -> Vec<Vec<u32>> {
    let need_of = |r: &[u32]| -> BTreeMap<String, u32> {
        let mut need = BTreeMap::new();
        for (i, &m) in mig.iter().enumerate() {
            if let Placement::Mig(p) = &a[m] {
                *need.entry(p.clone()).or_insert(0) += r[i];
            }
        }
        need
    };
    let bins = |r: &[u32]| ctx.packer.bins(&need_of(r)).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    let mut r = lb.to_vec();
    fn go(
        i: usize,
        r: &mut Vec<u32>,
        gpus: u32,
        bins: &dyn Fn(&[u32]) -> u32,
        out: &mut Vec<Vec<u32>>,
    ) {
        if i + 1 == r.len() {
            // Last model: as many as fit.
            if bins(r) > gpus {
                return;
            }
            while bins(&{
                let mut x = r.clone();
                x[i] += 1;
                x
            }) <= gpus
            {
                r[i] += 1;
            }
            let maximal = (0..r.len()).all(|k| {
                let mut x = r.clone();
                x[k] += 1;
                bins(&x) > gpus
            });
            if bins(r) == gpus && maximal {
                out.push(r.clone());
            }
            return;
        }
        let base = r[i];
        while bins(r) <= gpus {
            let saved = r[i + 1..].to_vec();
            go(i + 1, r, gpus, bins, out);
            r[i + 1..].copy_from_slice(&saved);
            r[i] += 1;
        }
        r[i] = base;
    }
    if mig.is_empty() {
        if gpus == 0 {
            out.push(Vec::new());
        }
        return out;
    }
    go(0, &mut r, gpus, &bins, &mut out);
    out.sort();
    out.dedup();
    out
}

/// Every configuration of assignment `a` with exactly `g` GPUs that respects the bounds.
fn enumerate(ctx: &Ctx, b: &Bounds, a: &[Placement], lb_total: u32, g: u32) -> Vec<Candidate> {
    let n = a.len();
    let ded: Vec<usize> = (0..n).filter(|&m| a[m] == Placement::Dedicated).collect();
    let mig: Vec<usize> = (0..n)
        .filter(|&m| matches!(a[m], Placement::Mig(_)))
        .collect();
    let ded_lb: Vec<u32> = ded
        .iter()
        .map(|&m| b.get(m, &Slot::Whole).unwrap_or(1))
        .collect();
    let mig_lb: Vec<u32> = mig
        .iter()
        .map(|&m| match &a[m] {
            Placement::Mig(p) => b.get(m, &Slot::Mig(p.clone())).unwrap_or(1),
            _ => unreachable!("invariant: MIG members"),
        })
        .collect();
    let mut lb_need = BTreeMap::new();
    for (i, &m) in mig.iter().enumerate() {
        if let Placement::Mig(p) = &a[m] {
            *lb_need.entry(p.clone()).or_insert(0) += mig_lb[i];
        }
    }
    let mig_min = ctx.packer.bins(&lb_need).unwrap_or(u32::MAX);
    let ts = pool_options(ctx, b, a, Placement::TimeSlicing);
    let mps = pool_options(ctx, b, a, Placement::Mps);
    let ts_min = ts.iter().map(|o| o.min_gpus).min();
    let mps_min = mps.iter().map(|o| o.min_gpus).min();
    let slack = g - lb_total;
    let mut out = Vec::new();
    for dd in 0..=slack {
        for dm in 0..=slack - dd {
            if mig.is_empty() && dm > 0 {
                continue;
            }
            for dt in 0..=slack - dd - dm {
                if ts_min.is_none() && dt > 0 {
                    continue;
                }
                let dp = slack - dd - dm - dt;
                if mps_min.is_none() && dp > 0 {
                    continue;
                }
                let ded_sets: Vec<Vec<u32>> = compositions(dd, ded.len())
                    .into_iter()
                    .map(|c| c.iter().zip(&ded_lb).map(|(x, l)| x + l).collect())
                    .collect();
                let mig_sets = maximal_mig(ctx, a, &mig, &mig_lb, mig_min + dm);
                let ts_sets: Vec<Option<Pool>> = match ts_min {
                    None => vec![None],
                    Some(t) => ts
                        .iter()
                        .filter(|o| o.min_gpus <= t + dt)
                        .map(|o| {
                            Some(Pool {
                                gpus: t + dt,
                                unit: o.unit.clone(),
                            })
                        })
                        .collect(),
                };
                let mps_sets: Vec<Option<Pool>> = match mps_min {
                    None => vec![None],
                    Some(p) => mps
                        .iter()
                        .filter(|o| o.min_gpus <= p + dp)
                        .map(|o| {
                            Some(Pool {
                                gpus: p + dp,
                                unit: o.unit.clone(),
                            })
                        })
                        .collect(),
                };
                for d in &ded_sets {
                    for mr in &mig_sets {
                        for t in &ts_sets {
                            for p in &mps_sets {
                                let mut replicas = vec![0u32; n];
                                for (i, &m) in ded.iter().enumerate() {
                                    replicas[m] = d[i];
                                }
                                for (i, &m) in mig.iter().enumerate() {
                                    replicas[m] = mr[i];
                                }
                                out.push(Candidate::with_pools(
                                    a.to_vec(),
                                    replicas,
                                    t.clone(),
                                    p.clone(),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every assignment of placements to models open under the per-model bounds.
fn assignments(ctx: &Ctx, b: &Bounds) -> Vec<Vec<Placement>> {
    let n = ctx.plan.models.len();
    let opts: Vec<Vec<Placement>> = (0..n).map(|m| options(ctx, b, m)).collect();
    let mut cur = Vec::new();
    fn go(opts: &[Vec<Placement>], cur: &mut Vec<Placement>, out: &mut Vec<Vec<Placement>>) {
        if cur.len() == opts.len() {
            out.push(cur.clone());
            return;
        }
        for o in &opts[cur.len()] {
            cur.push(o.clone());
            go(opts, cur, out);
            cur.pop();
        }
    }
    let mut all = Vec::new();
    go(&opts, &mut cur, &mut all);
    all
}

/// The cluster of a packed configuration (through the GPU Operator files' own placement).
pub fn placed_of(ctx: &Ctx, s: &Packed) -> Result<Placed, String> {
    let layout = s.layout(
        &ctx.plan.models,
        &ctx.plan.gpu,
        ctx.plan.file.search.gpus_per_node,
    );
    let bundle = bundle_of(&layout, ctx.catalogue).map_err(|e| e.to_string())?;
    place(&bundle, ctx.catalogue).map_err(|e| e.to_string())
}

/// The tweaks a configuration needs: a time-sliced LLM takes 1 / replicas of its memory share.
pub fn tweaks_for(ctx: &Ctx, c: &Candidate) -> Tweaks {
    let mut t = Tweaks::default();
    if let Some(p) = &c.time_slicing {
        for (m, &u) in p.unit.iter().enumerate() {
            if u > 0
                && matches!(
                    ctx.plan.probe.models[m].kind,
                    crate::profile::ModelKind::Llm(_)
                )
            {
                t.memory_share.push((m, 1.0 / f64::from(p.replicas())));
            }
        }
    }
    t
}

/// Simulate and judge one configuration (and, with a failure budget, its losses of a GPU).
pub fn evaluate(ctx: &Ctx, s: Packed) -> Evaluated {
    let gpus = s.gpus;
    let mut e = Evaluated {
        config: s,
        gpus,
        measured: None,
        headroom: Headroom::default(),
        pass: false,
        survives_gpu_failure: None,
        error: None,
    };
    let placed = match placed_of(ctx, &e.config) {
        Ok(p) => p,
        Err(m) => {
            e.error = Some(m);
            return e;
        }
    };
    let tweaks = tweaks_for(ctx, &e.config.candidate);
    match simulate(ctx, &placed, &tweaks) {
        Ok(m) => {
            let (pass, h) = judge(&ctx.plan.file.targets, &m);
            e.pass = pass;
            e.headroom = h;
            e.measured = Some(m);
        }
        Err(msg) => e.error = Some(msg),
    }
    if e.pass && ctx.plan.file.targets.gpu_failures > 0 {
        let survives = without_one_gpu(&placed).into_iter().all(|(_, p)| match p {
            None => false,
            Some(p) => simulate(ctx, &p, &tweaks)
                .map(|m| judge(&ctx.plan.file.targets, &m).0)
                .unwrap_or(false),
        });
        e.survives_gpu_failure = Some(survives);
        e.pass = survives;
    }
    e
}

/// Order of evaluated configurations: passing first, then fewer GPUs, then more headroom on
/// the binding target, then the configuration itself (deterministic).
pub fn rank(a: &Evaluated, b: &Evaluated) -> std::cmp::Ordering {
    b.pass
        .cmp(&a.pass)
        .then(a.gpus.cmp(&b.gpus))
        .then(b.headroom.worst().total_cmp(&a.headroom.worst()))
        .then(a.config.candidate.cmp(&b.config.candidate))
}

/// Fill in the shared-pool bounds that assignments within `g` GPUs need (in parallel).
fn refine_pools(ctx: &Ctx, cal: &Calibration, b: &mut Bounds, asg: &[Vec<Placement>], g: u32) {
    let mut need: BTreeMap<(Placement, Vec<u32>), u32> = BTreeMap::new();
    for a in asg {
        if lower_bound(ctx, b, a, g).is_none_or(|lb| lb > g) {
            continue;
        }
        for which in [Placement::TimeSlicing, Placement::Mps] {
            for o in pool_options(ctx, b, a, which.clone()) {
                if !o.refined && o.min_gpus <= g {
                    need.insert((which.clone(), o.unit), o.min_gpus.saturating_sub(1));
                }
            }
        }
    }
    let jobs: Vec<((Placement, Vec<u32>), u32)> = need.into_iter().collect();
    let found: Vec<Option<u32>> = jobs
        .par_iter()
        .map(|((which, unit), floor)| unit_bound(ctx, cal, which, unit, *floor))
        .collect();
    for ((key, _), r) in jobs.into_iter().zip(found) {
        b.pools.insert(key, r);
    }
}

/// Steps 1 to 3.
pub fn run(ctx: &Ctx, on_level: &(dyn Fn(u32, usize) + Sync)) -> Result<Outcome, String> {
    let cal = calibrate(ctx)?;
    let mut b = bounds(ctx, &cal);
    let search = &ctx.plan.file.search;
    let asg = assignments(ctx, &b);
    let mut evaluated: Vec<Evaluated> = Vec::new();
    let mut seen: BTreeSet<Candidate> = BTreeSet::new();
    let mut min_gpus = None;
    let mut proven = true;
    let mut stopped = String::new();
    let start = asg.iter().filter_map(|a| lower_bound(ctx, &b, a, 0)).min();
    let mut g = start.unwrap_or(u32::MAX);
    let mut last = None;
    while g <= search.max_gpus && last.is_none_or(|l| g <= l) {
        refine_pools(ctx, &cal, &mut b, &asg, g);
        let mut level: Vec<Packed> = Vec::new();
        for a in &asg {
            let Some(lb) = lower_bound(ctx, &b, a, g) else {
                continue;
            };
            if lb > g {
                continue;
            }
            for c in enumerate(ctx, &b, a, lb, g) {
                if seen.insert(c.clone())
                    && let Some(s) = c.packed(&ctx.plan.gpu, &ctx.packer)
                    && s.gpus == g
                {
                    level.push(s);
                }
            }
        }
        level.sort_by(|x, y| x.candidate.cmp(&y.candidate));
        let budget = search
            .max_runs
            .saturating_sub(ctx.runs.load(Ordering::Relaxed));
        let per = ctx.plan.seeds.len() * (1 + ctx.plan.file.targets.gpu_failures as usize);
        if level.len() * per > budget {
            proven = false;
            stopped = format!(
                "stopped at {g} GPUs: {} configurations would exceed search.max_runs = {}",
                level.len(),
                search.max_runs
            );
            level.truncate(budget / per.max(1));
        }
        on_level(g, level.len());
        let mut done: Vec<Evaluated> = level.into_par_iter().map(|s| evaluate(ctx, s)).collect();
        done.sort_by(rank);
        let any = done.iter().any(|e| e.pass);
        evaluated.extend(done);
        if any && min_gpus.is_none() {
            min_gpus = Some(g);
            last = Some(g + search.extra_gpus);
        }
        if !stopped.is_empty() {
            break;
        }
        g += 1;
    }
    if stopped.is_empty() {
        stopped = match (min_gpus, start) {
            (Some(m), _) => {
                format!("{m} GPUs is the fewest that meet the targets in the search space")
            }
            (None, None) => {
                "no model has a placement that meets the targets even with the other stages ample"
                    .into()
            }
            (None, Some(_)) => format!(
                "no configuration with at most {} GPUs meets the targets",
                search.max_gpus
            ),
        };
    }
    Ok(Outcome {
        calibration: cal,
        bounds: b.all(),
        pool_bounds: b.pools(&ctx.plan.models),
        evaluated,
        min_gpus,
        proven,
        stopped,
        runs: ctx.runs(),
    })
}

/// Brute force, for tests: every configuration of the search space with at most `max_gpus`
/// GPUs and at most `max_replicas` replicas per model (no bounds, no dominance), evaluated.
pub fn exhaustive(ctx: &Ctx, max_gpus: u32, max_replicas: u32) -> Vec<Evaluated> {
    let n = ctx.plan.models.len();
    let s = &ctx.plan.file.search;
    let mut opts: Vec<Placement> = Vec::new();
    if s.modes.contains(&Mode::Dedicated) {
        opts.push(Placement::Dedicated);
    }
    if s.modes.contains(&Mode::Mig) {
        opts.extend(ctx.plan.profiles.iter().map(|p| Placement::Mig(p.clone())));
    }
    if s.modes.contains(&Mode::TimeSlicing) {
        opts.push(Placement::TimeSlicing);
    }
    if s.modes.contains(&Mode::Mps) {
        opts.push(Placement::Mps);
    }
    let mut cands: BTreeSet<Candidate> = BTreeSet::new();
    let mut a = vec![Placement::Dedicated; n];
    fn each_assignment(
        opts: &[Placement],
        a: &mut Vec<Placement>,
        i: usize,
        f: &mut dyn FnMut(&[Placement]),
    ) {
        if i == a.len() {
            return f(a);
        }
        for o in opts {
            a[i] = o.clone();
            each_assignment(opts, a, i + 1, f);
        }
    }
    each_assignment(&opts, &mut a, 0, &mut |a: &[Placement]| {
        let plain: Vec<usize> = (0..n)
            .filter(|&m| matches!(a[m], Placement::Dedicated | Placement::Mig(_)))
            .collect();
        let mut pools: Vec<(Placement, Vec<Option<Pool>>)> = Vec::new();
        for (which, ks) in [
            (Placement::TimeSlicing, &s.time_slicing_replicas),
            (Placement::Mps, &s.mps_replicas),
        ] {
            let members: Vec<usize> = (0..n).filter(|&m| a[m] == which).collect();
            let mut v = Vec::new();
            if members.is_empty() {
                v.push(None);
            } else {
                for &k in ks {
                    for unit in units(&members, n, k) {
                        for gpus in 1..=max_gpus {
                            if unit.iter().all(|&u| u * gpus <= max_replicas) {
                                v.push(Some(Pool {
                                    gpus,
                                    unit: unit.clone(),
                                }));
                            }
                        }
                    }
                }
            }
            pools.push((which, v));
        }
        for counts in (0..plain.len())
            .map(|_| 1..=max_replicas)
            .fold(vec![vec![]], |acc, r| {
                acc.into_iter()
                    .flat_map(|p| {
                        r.clone().map(move |x| {
                            let mut q = p.clone();
                            q.push(x);
                            q
                        })
                    })
                    .collect()
            })
        {
            for t in &pools[0].1 {
                for p in &pools[1].1 {
                    let mut replicas = vec![0u32; n];
                    for (i, &m) in plain.iter().enumerate() {
                        replicas[m] = counts[i];
                    }
                    cands.insert(Candidate::with_pools(
                        a.to_vec(),
                        replicas,
                        t.clone(),
                        p.clone(),
                    ));
                }
            }
        }
    });
    let sized: Vec<Packed> = cands
        .into_iter()
        .filter_map(|c| c.packed(&ctx.plan.gpu, &ctx.packer))
        .filter(|s| s.gpus <= max_gpus)
        .collect();
    let mut done: Vec<Evaluated> = sized.into_par_iter().map(|s| evaluate(ctx, s)).collect();
    done.sort_by(rank);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compositions() {
        assert_eq!(units(&[0, 2], 3, 2), vec![vec![1, 0, 1]]);
        assert_eq!(units(&[0, 2], 3, 3), vec![vec![1, 0, 2], vec![2, 0, 1]]);
        assert!(units(&[0, 1, 2], 3, 2).is_empty());
        assert_eq!(units(&[1], 2, 3), vec![vec![0, 3]]);
        assert_eq!(compositions(2, 2), vec![vec![0, 2], vec![1, 1], vec![2, 0]]);
        assert_eq!(compositions(0, 0), vec![Vec::<u32>::new()]);
    }
}
