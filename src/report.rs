//! Run summaries and their outputs: the comparison table, `summary.json` and `runs.csv`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::config::write_atomic_all;
use crate::error::InputError;
use crate::experiment::{Experiment, RawExperiment};
use crate::metrics::{Counts, PartitionUsage, STAGES, StageLatencies};
use crate::pipeline::{RunResult, Simulation};

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
    /// Requests failed (timed out).
    pub failed: u64,
    /// Requests cancelled by departing users (not recorded).
    pub cancelled: u64,
    /// Requests started.
    pub started: u64,
    /// Latency per stage, milliseconds, over successful requests.
    pub latency_ms: StageLatencies,
    /// Mean sequences per LLM iteration.
    pub llm_mean_batch: f64,
    /// Use of each partition.
    pub partitions: Vec<PartitionUsage>,
    /// Events the engine processed.
    pub events: u64,
    /// The resolved experiment, as run.
    pub experiment: RawExperiment,
}

/// Simulate `exp` and summarise the run.
pub fn run_experiment(exp: &Experiment) -> RunSummary {
    let result = Simulation::new(exp).run();
    summarise(exp, &result)
}

/// Turn raw results into the reported summary.
pub fn summarise(exp: &Experiment, r: &RunResult) -> RunSummary {
    let Counts {
        started,
        completed,
        failed,
        cancelled,
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
            memory_used_gb: on_it.iter().map(|x| exp.models[x.model].memory_gb).sum(),
            memory_total_gb: p.resources.memory_bytes as f64 / 1e9,
        });
    }
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
        cancelled,
        started,
        latency_ms: r.samples.summary(),
        llm_mean_batch: if r.llm_iterations == 0 {
            0.0
        } else {
            r.llm_batched_seqs as f64 / r.llm_iterations as f64
        },
        partitions,
        events: r.events,
        experiment: exp.raw.clone(),
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

/// The comparison table printed on stdout.
pub fn table(runs: &[RunSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>4} {:>9} {:>9} {:>8} {:>6} {:>5}",
        "run", "gpus", "req/s", "req/s/gpu", "success", "done", "fail"
    );
    for r in runs {
        let _ = writeln!(
            s,
            "{:<24} {:>4} {:>9.3} {:>9.3} {:>8} {:>6} {:>5}",
            r.name,
            r.gpus,
            r.throughput_rps,
            r.throughput_per_gpu_rps,
            r.success_rate
                .map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0)),
            r.completed,
            r.failed
        );
    }
    let _ = writeln!(
        s,
        "\nlatency ms (mean / p50 / p95 / p99), successful requests"
    );
    let _ = write!(s, "{:<24}", "run");
    for st in STAGES {
        let _ = write!(s, " {:>25}", st);
    }
    let _ = writeln!(s);
    for r in runs {
        let _ = write!(s, "{:<24}", r.name);
        for st in STAGES {
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
    s
}

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
        "llm_mean_batch",
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
            r.llm_mean_batch.to_string(),
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
