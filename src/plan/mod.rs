//! Capacity planning: the configurations that meet a load's latency and success targets with
//! the fewest GPUs (or the lowest cost), across dedicated GPUs, MIG layouts, time-slicing and
//! MPS, with the GPU Operator files to apply the answer.
//!
//! - [`mod@file`]: the plan file (models, load, targets, GPU, price, search limits).
//! - [`space`]: the configurations searched and how one becomes a cluster.
//! - [`packing`]: MIG instances packed on the fewest GPUs.
//! - [`evaluate`]: simulating a cluster and judging it against the targets.
//! - [`search`]: calibration, per-model bounds, the search by GPU count, and brute force.
//! - [`output`]: the ranked table, `plan.json`, `candidates.csv`, the recommended files.
//!
//! Runs are the simulator's own (`report::run_experiment`); configurations of one GPU count
//! are simulated in parallel (rayon) and their results sorted, so outputs do not depend on the
//! thread count.

pub mod evaluate;
pub mod file;
pub mod output;
pub mod packing;
pub mod search;
pub mod space;

use std::path::{Path, PathBuf};

pub use file::Plan;
pub use output::PlanReport;

use crate::config::write_atomic_all;
use crate::error::InputError;
use crate::hardware::Catalogue;
use crate::plot::pareto::{Pareto, Point};

/// Run the plan at `path`; `on_level(gpus, configurations)` is called before each GPU count is
/// evaluated (progress).
pub fn run(
    path: &Path,
    catalogue: &Catalogue,
    on_level: &(dyn Fn(u32, usize) + Sync),
) -> Result<(PlanReport, Plan), InputError> {
    let plan = Plan::load(path, catalogue)?;
    let report = {
        let ctx = evaluate::Ctx::new(&plan, catalogue);
        let outcome = search::run(&ctx, on_level).map_err(|m| InputError::Parse {
            path: path.to_path_buf(),
            message: m,
        })?;
        PlanReport::new(&plan.file, &ctx, outcome)
    };
    Ok((report, plan))
}

/// The candidates chart of a report.
pub fn chart(r: &PlanReport) -> Pareto {
    let (y_desc, target, pick): (&str, Option<f64>, fn(&evaluate::Measured) -> f64) =
        match (r.targets.request_p95_ms, r.targets.ttft_p99_ms) {
            (Some(t), _) => ("request latency p95, ms", Some(t), |m| m.request_p95_ms),
            (None, Some(t)) => ("time to first token p99, ms", Some(t), |m| m.ttft_p99_ms),
            (None, None) => ("request latency p95, ms", None, |m| m.request_p95_ms),
        };
    let x_desc = match r.price_per_gpu_hour {
        Some(_) => "cost per hour (GPUs x price per GPU-hour)",
        None => "GPUs",
    };
    let points = r
        .candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let m = c.measured.as_ref()?;
            Some(Point {
                x: r.cost(c.gpus).unwrap_or(f64::from(c.gpus)),
                y: pick(m),
                modes: c.config.candidate.modes(),
                pass: c.pass,
                recommended: r.recommended == Some(i),
            })
        })
        .collect();
    Pareto {
        title: format!("Plan {}: configurations evaluated", r.name),
        x_desc: x_desc.into(),
        y_desc: y_desc.into(),
        target,
        points,
    }
}

/// Write the results folder `out`: `plan.json`, `candidates.csv`, `recommended/` and, with
/// `plot` (a folder and an image size), `plan_candidates.{png,svg}` there; all files together
/// or none.
pub fn write(
    plan: &Plan,
    catalogue: &Catalogue,
    report: &PlanReport,
    out: &Path,
    plot: Option<(PathBuf, crate::plot::Options)>,
) -> Result<Vec<PathBuf>, String> {
    let ctx = evaluate::Ctx::new(plan, catalogue);
    let files = output::files(&ctx, report, out).map_err(|e| e.to_string())?;
    let mut paths: Vec<(PathBuf, Vec<u8>)> =
        files.into_iter().map(|(n, b)| (out.join(n), b)).collect();
    if let Some((dir, opts)) = plot {
        let c = chart(report);
        if c.points.iter().all(|p| !p.y.is_finite()) {
            return Err(format!(
                "{}: cannot draw plan_candidates: no configuration completed a request",
                out.display()
            ));
        }
        let (png, svg) = crate::plot::render(&c, opts).map_err(|e| e.to_string())?;
        paths.push((dir.join("plan_candidates.png"), png));
        paths.push((dir.join("plan_candidates.svg"), svg.into_bytes()));
    }
    for (p, _) in &paths {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| InputError::write(d, e).to_string())?;
        }
    }
    write_atomic_all(&paths).map_err(|e| e.to_string())?;
    Ok(paths.into_iter().map(|(p, _)| p).collect())
}
