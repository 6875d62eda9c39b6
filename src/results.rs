//! A results folder as `run` and `study` write it and `plot` reads it: `summary.json` and
//! `runs.csv` (see [`crate::report`]), plus the detail behind the charts:
//! `latency_quantiles.csv` (a quantile vector per run and stage, for CDFs) and `timeline.csv`
//! (busy fraction per partition over time).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::activity::{Activity, TraceOptions};
use crate::config::write_atomic_all;
use crate::engine::SimTime;
use crate::error::InputError;
use crate::experiment::Experiment;
use crate::metrics::STAGES;
use crate::pipeline::{RunResult, Simulation};
use crate::report::{self, RunSummary};

/// Probabilities of the latency quantile vector: 0.01, 0.02, ..., 0.99, then 0.999.
pub fn quantile_levels() -> Vec<f64> {
    let mut ps: Vec<f64> = (1..=99).map(|i| f64::from(i) / 100.0).collect();
    ps.push(0.999);
    ps
}

/// Busy fractions of one partition over time.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionTimeline {
    /// GPU id.
    pub gpu: String,
    /// Partition label (`whole GPU` or the MIG profile).
    pub partition: String,
    /// `(bucket start s, bucket end s, busy fraction, switching fraction)`.
    pub buckets: Vec<(f64, f64, f64, f64)>,
}

/// What a run's charts need beyond its summary.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDetail {
    /// Run name.
    pub name: String,
    /// Per stage: latency (ms) at each of [`quantile_levels`]; empty without samples.
    pub quantiles_ms: Vec<(&'static str, Vec<f64>)>,
    /// Per partition, in the summary's order.
    pub timelines: Vec<PartitionTimeline>,
}

/// The detail of a run of `exp` that gave `r`.
pub fn detail(exp: &Experiment, r: &RunResult) -> RunDetail {
    let ps = quantile_levels();
    let end = SimTime::from_secs_f64(r.duration_s);
    RunDetail {
        name: exp.raw.name.clone(),
        quantiles_ms: STAGES
            .iter()
            .map(|s| (*s, r.samples.get(s).quantiles(&ps)))
            .collect(),
        timelines: exp
            .partitions
            .iter()
            .zip(&r.timelines)
            .map(|(p, tl)| PartitionTimeline {
                gpu: exp.raw.gpus[p.gpu].id.clone(),
                partition: p.resources.label.clone(),
                buckets: tl
                    .fractions(end)
                    .into_iter()
                    .map(|(t, b, s)| (t, (t + tl.bucket_ns as f64 / 1e9).min(r.duration_s), b, s))
                    .collect(),
            })
            .collect(),
    }
}

/// Simulate `exp`: its summary and detail, with a progress display of simulated time and
/// events per second on stderr (hidden when stderr is not a terminal or with `quiet`). The
/// detail's busy timelines are recorded only with `timelines` (a results folder draws them; a
/// printed table has no use for them).
pub fn run_experiment_with_progress(
    exp: &Experiment,
    quiet: bool,
    timelines: bool,
) -> (RunSummary, RunDetail) {
    let (summary, detail, _) = run_traced(exp, quiet, timelines, None);
    (summary, detail)
}

/// [`run_experiment_with_progress`], also recording what the GPUs did within `trace`'s
/// window and cap (see [`crate::activity`]); the summary and detail are those of the run
/// without it.
pub fn run_traced(
    exp: &Experiment,
    quiet: bool,
    timelines: bool,
    trace: Option<&TraceOptions>,
) -> (RunSummary, RunDetail, Option<Activity>) {
    let bar = crate::progress::RunProgress::new(&exp.raw.name, exp.duration_s, quiet);
    let mut sim = Simulation::new(exp).with_timelines(timelines);
    if let Some(o) = trace {
        sim = sim.with_activity(o);
    }
    let mut r = sim.run_observed(|t, events| bar.update(t.as_secs_f64(), events));
    bar.finish();
    let activity = r.activity.take();
    (report::summarise(exp, &r), detail(exp, &r), activity)
}

/// Simulate every experiment (in parallel, one run per task); results in input order.
/// `done` is called as each run finishes (a study's progress bar).
pub fn run_all(
    exps: &[Experiment],
    timelines: bool,
    done: &(dyn Fn() + Sync),
) -> Vec<(RunSummary, RunDetail)> {
    exps.par_iter()
        .map(|e| {
            let r = run_experiment_with_progress(e, true, timelines);
            done();
            r
        })
        .collect()
}

/// `latency_quantiles.csv`: `run`, `stage`, `quantile` (probability), `latency_ms`; one row
/// per run, stage and level of [`quantile_levels`] (none for a stage without samples).
pub fn latency_quantiles_csv(details: &[RunDetail]) -> String {
    let mut s = String::from("run,stage,quantile,latency_ms\n");
    let ps = quantile_levels();
    for d in details {
        for (stage, qs) in &d.quantiles_ms {
            for (p, q) in ps.iter().zip(qs) {
                let _ = writeln!(s, "{},{stage},{p},{q}", csv_field(&d.name));
            }
        }
    }
    s
}

/// `timeline.csv`: `run`, `partition` (index in the summary's `partitions`), `gpu`, `label`,
/// `t_start_s`, `t_end_s`, `busy_fraction`, `switching_fraction`; one row per time bucket.
pub fn timeline_csv(details: &[RunDetail]) -> String {
    let mut s = String::from(
        "run,partition,gpu,label,t_start_s,t_end_s,busy_fraction,switching_fraction\n",
    );
    for d in details {
        for (i, p) in d.timelines.iter().enumerate() {
            for (t0, t1, b, w) in &p.buckets {
                let _ = writeln!(
                    s,
                    "{},{i},{},{},{t0},{t1},{b},{w}",
                    csv_field(&d.name),
                    csv_field(&p.gpu),
                    csv_field(&p.partition)
                );
            }
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// File name of a study's prices in its results folder.
pub const PRICES_FILE: &str = "prices.json";

/// Write `summary.json`, `runs.csv`, `latency_quantiles.csv` and `timeline.csv` into `dir`,
/// and a study's `prices.json` (each run's price per GPU-hour and the prices' source, which the
/// charts read to draw requests per dollar), all or none; the paths written, in that order.
/// Without prices, a stale `prices.json` from an earlier study is removed.
pub fn write_outputs(
    dir: &Path,
    runs: &[(RunSummary, RunDetail)],
    prices: Option<&crate::study::RunPrices>,
) -> Result<Vec<PathBuf>, InputError> {
    report::prepare_out_dir(dir)?;
    let summaries: Vec<RunSummary> = runs.iter().map(|(s, _)| s.clone()).collect();
    let details: Vec<RunDetail> = runs.iter().map(|(_, d)| d.clone()).collect();
    let mut files = vec![
        (
            dir.join("summary.json"),
            report::summary_json(&summaries).into_bytes(),
        ),
        (
            dir.join("runs.csv"),
            report::runs_csv(&summaries).into_bytes(),
        ),
        (
            dir.join("latency_quantiles.csv"),
            latency_quantiles_csv(&details).into_bytes(),
        ),
        (
            dir.join("timeline.csv"),
            timeline_csv(&details).into_bytes(),
        ),
    ];
    let prices_path = dir.join(PRICES_FILE);
    match prices {
        Some(p) => {
            let text = serde_json::to_string_pretty(p).unwrap_or_default() + "\n";
            files.push((prices_path, text.into_bytes()));
        }
        None => match std::fs::remove_file(&prices_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(InputError::write(&prices_path, e));
            }
            _ => {}
        },
    }
    write_atomic_all(&files)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
