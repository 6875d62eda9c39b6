//! Run summaries and their outputs: the comparison table, `summary.json` and `runs.csv`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::config::write_atomic_all;
use crate::error::InputError;
use crate::experiment::FaultTarget;
use crate::experiment::{Experiment, RawExperiment};
use crate::metrics::{
    Counts, FaultRecord, FaultReport, KvReport, ModelAvailability, PartitionUsage, ReplicaUsage,
    STAGES, StageLatencies, all_covered_ns,
};
use crate::pipeline::{RunResult, Simulation};
use crate::serving::KvPolicy;

/// Version of the `summary.json` layout; bump on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything reported about one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Run name.
    pub name: String,
    /// Configuration label.
    pub config: String,
    /// Load label.
    pub load: String,
    /// Seed.
    pub seed: u64,
    /// GPUs in the cluster.
    pub gpus: usize,
    /// Simulated wall time including ramps, seconds.
    pub duration_s: f64,
    /// (completed + failed) / duration: the harness's definition.
    pub throughput_rps: f64,
    /// `throughput_rps` / GPUs.
    pub throughput_per_gpu_rps: f64,
    /// completed / (completed + failed); `null` when nothing was recorded.
    pub success_rate: Option<f64>,
    /// Requests completed.
    pub completed: u64,
    /// Requests failed (timed out, out of memory, or refused).
    pub failed: u64,
    /// Of the failed: out of memory (on-demand KV cache).
    pub out_of_memory: u64,
    /// Of the failed: longer than the LLM's whole KV cache.
    pub rejected: u64,
    /// Requests cancelled by departing users (not recorded).
    pub cancelled: u64,
    /// Requests started.
    pub started: u64,
    /// Latency per stage, milliseconds, over successful requests.
    pub latency_ms: StageLatencies,
    /// Mean sequences per LLM iteration.
    pub llm_mean_batch: f64,
    /// Tokens generated for completed requests per second of `duration_s`.
    pub output_tokens_per_s: f64,
    /// Use of each partition.
    pub partitions: Vec<PartitionUsage>,
    /// What each replica did (routing, batching, KV cache).
    pub replicas: Vec<ReplicaUsage>,
    /// Completed requests within the SLO per second (only with `[slo]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput_rps: Option<f64>,
    /// What faults did (only with `[faults]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultReport>,
    /// Events the engine processed.
    pub events: u64,
    /// The resolved experiment, as run.
    pub experiment: RawExperiment,
}

/// Simulate `exp` and summarise the run.
pub fn run_experiment(exp: &Experiment) -> RunSummary {
    // The summary has no use for busy timelines.
    let result = Simulation::new(exp).with_timelines(false).run();
    summarise(exp, &result)
}

/// Turn raw results into the reported summary.
pub fn summarise(exp: &Experiment, r: &RunResult) -> RunSummary {
    let Counts {
        started,
        completed,
        failed,
        cancelled,
        ..
    } = r.counts;
    let recorded = completed + failed;
    let throughput = recorded as f64 / r.duration_s;
    let mut partitions = Vec::new();
    for (pi, p) in exp.partitions.iter().enumerate() {
        let g = &exp.raw.gpus[p.gpu];
        let on_it: Vec<_> = exp.replicas.iter().filter(|x| x.partition == pi).collect();
        let wall_ns = r.duration_s * 1e9;
        partitions.push(PartitionUsage {
            gpu: g.id.clone(),
            node: g.node.clone(),
            partition: p.resources.label.clone(),
            sms: p.resources.sms,
            models: on_it
                .iter()
                .map(|x| exp.models[x.model].name.clone())
                .collect(),
            busy_fraction: r.busy_ns[pi] as f64 / wall_ns,
            switching_fraction: r.switching_ns[pi] as f64 / wall_ns,
            memory_used_gb: on_it.iter().map(|x| x.footprint_bytes).sum::<u64>() as f64 / 1e9,
            memory_peak_gb: r.peak_memory_bytes[pi] as f64 / 1e9,
            memory_total_gb: p.resources.memory_bytes as f64 / 1e9,
        });
    }
    let replicas: Vec<ReplicaUsage> = exp
        .replicas
        .iter()
        .zip(&r.replicas)
        .map(|(spec, res)| {
            let p = &exp.partitions[spec.partition];
            let kv = spec.llm.zip(res.kv).map(|(cfg, kv)| {
                let capacity = match cfg.kv {
                    KvPolicy::Preallocated { blocks } => Some(blocks),
                    KvPolicy::OnDemand => None,
                };
                KvReport {
                    capacity_tokens: capacity.map(|b| b * u64::from(cfg.block_tokens)),
                    mean_occupancy: capacity
                        .map(|b| kv.block_ns / (b.max(1) as f64 * r.duration_s * 1e9)),
                    peak_occupancy: capacity.map(|b| kv.peak_blocks as f64 / b.max(1) as f64),
                    peak_gb: (kv.peak_blocks * spec.kv_block_bytes) as f64 / 1e9,
                    preemptions: kv.preemptions,
                }
            });
            ReplicaUsage {
                model: exp.models[spec.model].name.clone(),
                gpu: exp.raw.gpus[p.gpu].id.clone(),
                partition: p.resources.label.clone(),
                routed: res.routed,
                batches: res.batches,
                mean_batch: if res.batches == 0 {
                    0.0
                } else {
                    res.batch_items as f64 / res.batches as f64
                },
                kv,
            }
        })
        .collect();
    let (llm_iterations, llm_seqs) = exp
        .replicas
        .iter()
        .zip(&r.replicas)
        .filter(|(spec, _)| spec.llm.is_some())
        .fold((0, 0), |(i, s), (_, res)| {
            (i + res.batches, s + res.batch_items)
        });
    RunSummary {
        name: exp.raw.name.clone(),
        config: exp.raw.config.clone(),
        load: exp.raw.load.clone(),
        seed: exp.raw.seed,
        gpus: exp.gpus.len(),
        duration_s: r.duration_s,
        throughput_rps: throughput,
        throughput_per_gpu_rps: throughput / exp.gpus.len() as f64,
        success_rate: (recorded > 0).then(|| completed as f64 / recorded as f64),
        completed,
        failed,
        out_of_memory: r.counts.out_of_memory,
        rejected: r.counts.rejected,
        cancelled,
        started,
        latency_ms: r.samples.summary(),
        llm_mean_batch: if llm_iterations == 0 {
            0.0
        } else {
            llm_seqs as f64 / llm_iterations as f64
        },
        output_tokens_per_s: r.output_tokens as f64 / r.duration_s,
        partitions,
        replicas,
        goodput_rps: exp.raw.slo.as_ref().map(|_| r.good as f64 / r.duration_s),
        faults: exp.raw.faults.as_ref().map(|_| fault_report(exp, r)),
        events: r.events,
        experiment: exp.raw.clone(),
    }
}

/// What faults did to the run.
fn fault_report(exp: &Experiment, r: &RunResult) -> FaultReport {
    let total_ns = r.duration_s * 1e9;
    let label = |x: usize| {
        let spec = &exp.replicas[x];
        format!(
            "{}@{}",
            exp.models[spec.model].name, exp.raw.gpus[exp.partitions[spec.partition].gpu].id
        )
    };
    let availability = exp
        .deployments
        .iter()
        .enumerate()
        .map(|(mi, d)| {
            let downs: Vec<Vec<(u64, u64)>> = d
                .replicas
                .iter()
                .map(|&x| r.replicas[x].down.clone())
                .collect();
            let up = |l: &Vec<(u64, u64)>| {
                1.0 - l.iter().map(|(a, b)| b - a).sum::<u64>() as f64 / total_ns
            };
            ModelAvailability {
                model: exp.models[mi].name.clone(),
                any_replica_up: 1.0 - all_covered_ns(&downs) as f64 / total_ns,
                replicas_up: downs.iter().map(up).sum::<f64>() / downs.len() as f64,
            }
        })
        .collect();
    let events: Vec<FaultRecord> = r
        .faults
        .iter()
        .map(|f| {
            let target = match f.target {
                FaultTarget::Replica(x) => {
                    let spec = &exp.replicas[x];
                    let local = exp.deployments[spec.model]
                        .replicas
                        .iter()
                        .position(|&g| g == x)
                        .unwrap_or(0);
                    format!("{}#{local}", exp.models[spec.model].name)
                }
                FaultTarget::Gpu(g) => exp.raw.gpus[g].id.clone(),
            };
            FaultRecord {
                at_s: f.at_ns as f64 / 1e9,
                kind: f.kind.name().to_string(),
                target,
                replicas_down: f.replicas.iter().map(|&x| label(x)).collect(),
                recovered_at_s: f.recovered_ns.map(|t| t as f64 / 1e9),
                failed: f.failed,
                retried: f.retried,
            }
        })
        .collect();
    let recovered: Vec<f64> = events
        .iter()
        .filter_map(|e| e.recovered_at_s.map(|t| t - e.at_s))
        .collect();
    FaultReport {
        lost_to_faults: r.counts.lost_to_faults,
        retried: r.counts.retried,
        unavailable: r.counts.unavailable,
        mean_time_to_recover_s: (!recovered.is_empty())
            .then(|| recovered.iter().sum::<f64>() / recovered.len() as f64),
        availability,
        events,
    }
}

/// `summary.json` contents.
#[derive(Serialize)]
struct SummaryFile<'a> {
    schema_version: u32,
    tool: &'static str,
    version: &'static str,
    runs: &'a [RunSummary],
}

/// The comparison table printed on stdout: completed requests per second (`done/s`, also per
/// GPU), the success rate, goodput per GPU when a run has an `[slo]`, the counts; then the
/// latencies, partitions, replicas and LLM figures.
pub fn table(runs: &[RunSummary]) -> String {
    let mut s = String::new();
    // Served requests only: a run that fails requests fast must not look faster. Goodput
    // (within the SLO) only when a run states one.
    let slo = runs.iter().any(|r| r.goodput_rps.is_some());
    let _ = write!(
        s,
        "{:<24} {:>4} {:>9} {:>10} {:>8}",
        "run", "gpus", "done/s", "done/s/gpu", "success"
    );
    if slo {
        let _ = write!(s, " {:>11}", "goodput/gpu");
    }
    let _ = writeln!(s, " {:>6} {:>5}", "done", "fail");
    for r in runs {
        let done_rps = if r.duration_s > 0.0 {
            r.completed as f64 / r.duration_s
        } else {
            0.0
        };
        let _ = write!(
            s,
            "{:<24} {:>4} {:>9.3} {:>10.3} {:>8}",
            r.name,
            r.gpus,
            done_rps,
            done_rps / r.gpus.max(1) as f64,
            r.success_rate
                .map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0)),
        );
        if slo {
            let _ = write!(
                s,
                " {:>11}",
                r.goodput_rps.map_or("-".to_string(), |g| format!(
                    "{:.3}",
                    g / r.gpus.max(1) as f64
                ))
            );
        }
        let _ = writeln!(s, " {:>6} {:>5}", r.completed, r.failed);
    }
    let _ = writeln!(
        s,
        "\nlatency ms (mean / p50 / p95 / p99), successful requests"
    );
    let _ = write!(s, "{:<24}", "run");
    for st in TABLE_STAGES {
        let _ = write!(s, " {:>25}", st);
    }
    let _ = writeln!(s);
    for r in runs {
        let _ = write!(s, "{:<24}", r.name);
        for st in TABLE_STAGES {
            let l = r.latency_ms.get(st);
            let cell = format!("{:.0}/{:.0}/{:.0}/{:.0}", l.mean, l.p50, l.p95, l.p99);
            let _ = write!(s, " {:>25}", cell);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nbusy fraction per partition (switching), memory GB used/total"
    );
    for r in runs {
        if r.partitions.len() > CONDENSE_ABOVE {
            let _ = writeln!(s, "{:<24} {}", r.name, condensed_partitions(r));
            continue;
        }
        let parts: Vec<String> = r
            .partitions
            .iter()
            .map(|p| {
                format!(
                    "{}:{} {:.0}%{} {:.0}/{:.0}",
                    p.gpu,
                    p.partition,
                    p.busy_fraction * 100.0,
                    if p.switching_fraction > 0.0 {
                        format!(" (+{:.1}%)", p.switching_fraction * 100.0)
                    } else {
                        String::new()
                    },
                    p.memory_used_gb,
                    p.memory_total_gb
                )
            })
            .collect();
        let _ = writeln!(s, "{:<24} {}", r.name, parts.join("  "));
    }
    let _ = writeln!(
        s,
        "\nreplicas: requests routed, mean batch (chunks, sentences or sequences per run)"
    );
    for r in runs {
        if r.replicas.len() > CONDENSE_ABOVE {
            let _ = writeln!(s, "{:<24} {}", r.name, condensed_replicas(r));
            continue;
        }
        let reps: Vec<String> = r
            .replicas
            .iter()
            .map(|x| format!("{}@{} {} b{:.2}", x.model, x.gpu, x.routed, x.mean_batch))
            .collect();
        let _ = writeln!(s, "{:<24} {}", r.name, reps.join("  "));
    }
    let _ = writeln!(
        s,
        "\nLLM serving: output tokens/s, queue wait and TPOT ms (p50 / p95), per replica: \
         mean batch, KV capacity (tokens), KV occupancy mean / peak, preemptions"
    );
    for r in runs {
        let q = &r.latency_ms.llm_queue;
        let t = &r.latency_ms.llm_tpot;
        let reps: Vec<String> = r
            .replicas
            .iter()
            .filter_map(|x| {
                let kv = x.kv.as_ref()?;
                let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
                Some(format!(
                    "{}:{} b{:.1} {} {}/{} p{}",
                    x.gpu,
                    x.partition,
                    x.mean_batch,
                    kv.capacity_tokens
                        .map_or("on-demand".into(), |c| c.to_string()),
                    pct(kv.mean_occupancy),
                    pct(kv.peak_occupancy),
                    kv.preemptions
                ))
            })
            .collect();
        let reps = if reps.len() > CONDENSE_ABOVE {
            // Many LLM replicas: the spread of their figures instead of each one.
            let kvs: Vec<&KvReport> = r.replicas.iter().filter_map(|x| x.kv.as_ref()).collect();
            let peak = kvs
                .iter()
                .filter_map(|k| k.peak_occupancy)
                .fold(0.0f64, f64::max);
            let pre: u64 = kvs.iter().map(|k| k.preemptions).sum();
            vec![format!(
                "{}x LLM replicas: KV peak occupancy up to {:.0}%, {} preemptions in all",
                kvs.len(),
                peak * 100.0,
                pre
            )]
        } else {
            reps
        };
        let _ = writeln!(
            s,
            "{:<24} {:>8.0} tok/s  queue {:.0}/{:.0}  tpot {:.1}/{:.1}  {}",
            r.name,
            r.output_tokens_per_s,
            q.p50,
            q.p95,
            t.p50,
            t.p95,
            reps.join("  ")
        );
    }
    if runs.iter().any(|r| r.faults.is_some()) {
        let _ = writeln!(
            s,
            "\nfaults: count, requests lost in flight / retried / refused while down, mean time to recover, availability per model (any replica up)"
        );
        for r in runs {
            let Some(f) = &r.faults else { continue };
            let avail: Vec<String> = f
                .availability
                .iter()
                .map(|a| format!("{} {:.2}%", a.model, a.any_replica_up * 100.0))
                .collect();
            let _ = writeln!(
                s,
                "{:<24} {:>3}  {}/{}/{}  {}  {}",
                r.name,
                f.events.len(),
                f.lost_to_faults,
                f.retried,
                f.unavailable,
                f.mean_time_to_recover_s
                    .map_or("-".into(), |t| format!("{t:.0} s")),
                avail.join("  ")
            );
        }
    }
    s
}

/// Above this many partitions or replicas a run's table lines are grouped (a fleet would
/// print thousands of entries otherwise).
const CONDENSE_ABOVE: usize = 12;

/// Partitions grouped by kind and models: count, mean busy (switching), memory per partition.
fn condensed_partitions(r: &RunSummary) -> String {
    let mut groups: std::collections::BTreeMap<(String, String), Vec<&PartitionUsage>> =
        std::collections::BTreeMap::new();
    for p in &r.partitions {
        groups
            .entry((p.partition.clone(), p.models.join("+")))
            .or_default()
            .push(p);
    }
    let lines: Vec<String> = groups
        .iter()
        .map(|((label, models), ps)| {
            let n = ps.len() as f64;
            let mean =
                |f: &dyn Fn(&PartitionUsage) -> f64| ps.iter().map(|p| f(p)).sum::<f64>() / n;
            let sw = mean(&|p| p.switching_fraction);
            format!(
                "{}x {} [{}] {:.0}%{} {:.0}/{:.0}",
                ps.len(),
                label,
                if models.is_empty() { "idle" } else { models },
                mean(&|p| p.busy_fraction) * 100.0,
                if sw > 0.0 {
                    format!(" (+{:.1}%)", sw * 100.0)
                } else {
                    String::new()
                },
                mean(&|p| p.memory_used_gb),
                mean(&|p| p.memory_total_gb)
            )
        })
        .collect();
    lines.join("  ")
}

/// Replicas grouped by model: count, requests routed in all, mean batch over all batches.
fn condensed_replicas(r: &RunSummary) -> String {
    let mut groups: std::collections::BTreeMap<&str, (usize, u64, u64, f64)> =
        std::collections::BTreeMap::new();
    for x in &r.replicas {
        let g = groups.entry(&x.model).or_default();
        g.0 += 1;
        g.1 += x.routed;
        g.2 += x.batches;
        g.3 += x.mean_batch * x.batches as f64;
    }
    let lines: Vec<String> = groups
        .iter()
        .map(|(m, (n, routed, batches, items))| {
            let b = if *batches == 0 {
                0.0
            } else {
                items / *batches as f64
            };
            format!("{n}x {m} {routed} b{b:.2}")
        })
        .collect();
    lines.join("  ")
}

/// Stages shown in the printed table (all of [`STAGES`] are in the files).
const TABLE_STAGES: [&str; 7] = [
    "asr",
    "llm_ttft",
    "llm_tpot",
    "llm_total",
    "tts",
    "e2e",
    "request",
];

/// `summary.json` bytes (stable field order, so identical runs give identical bytes).
pub fn summary_json(runs: &[RunSummary]) -> String {
    let f = SummaryFile {
        schema_version: SCHEMA_VERSION,
        tool: "gpushare",
        version: env!("CARGO_PKG_VERSION"),
        runs,
    };
    let mut s = serde_json::to_string_pretty(&f).expect("invariant: summaries serialise");
    s.push('\n');
    s
}

/// `runs.csv` bytes: one row per run, one column per metric.
pub fn runs_csv(runs: &[RunSummary]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "name",
        "config",
        "load",
        "seed",
        "gpus",
        "duration_s",
        "throughput_rps",
        "throughput_per_gpu_rps",
        "success_rate",
        "started",
        "completed",
        "failed",
        "cancelled",
        "out_of_memory",
        "rejected",
        "lost_to_faults",
        "retried",
        "llm_mean_batch",
        "output_tokens_per_s",
        "goodput_rps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for st in STAGES {
        for q in ["mean", "p50", "p90", "p95", "p99"] {
            header.push(format!("{st}_{q}_ms"));
        }
    }
    w.write_record(&header).expect("invariant: in-memory write");
    for r in runs {
        let mut row = vec![
            r.name.clone(),
            r.config.clone(),
            r.load.clone(),
            r.seed.to_string(),
            r.gpus.to_string(),
            r.duration_s.to_string(),
            r.throughput_rps.to_string(),
            r.throughput_per_gpu_rps.to_string(),
            r.success_rate.map_or(String::new(), |x| x.to_string()),
            r.started.to_string(),
            r.completed.to_string(),
            r.failed.to_string(),
            r.cancelled.to_string(),
            r.out_of_memory.to_string(),
            r.rejected.to_string(),
            r.faults
                .as_ref()
                .map_or(String::new(), |f| f.lost_to_faults.to_string()),
            r.faults
                .as_ref()
                .map_or(String::new(), |f| f.retried.to_string()),
            r.llm_mean_batch.to_string(),
            r.output_tokens_per_s.to_string(),
            r.goodput_rps.map_or(String::new(), |g| g.to_string()),
        ];
        for st in STAGES {
            let l = r.latency_ms.get(st);
            for v in [l.mean, l.p50, l.p90, l.p95, l.p99] {
                row.push(v.to_string());
            }
        }
        w.write_record(&row).expect("invariant: in-memory write");
    }
    String::from_utf8(w.into_inner().expect("invariant: in-memory flush")).expect("invariant: utf8")
}

/// Create the output folder (before a run, so a bad `--out` fails before any work is done).
pub fn prepare_out_dir(dir: &Path) -> Result<(), InputError> {
    std::fs::create_dir_all(dir).map_err(|e| InputError::write(dir, e))
}

/// Write `summary.json` and `runs.csv` into `dir` (created if needed), as a pair: both are
/// written to temporary files first and only then renamed into place.
pub fn write_outputs(dir: &Path, runs: &[RunSummary]) -> Result<(), InputError> {
    prepare_out_dir(dir)?;
    write_atomic_all(&[
        (dir.join("summary.json"), summary_json(runs).into_bytes()),
        (dir.join("runs.csv"), runs_csv(runs).into_bytes()),
    ])
}
