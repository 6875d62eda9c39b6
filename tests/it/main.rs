//! Integration tests: one binary, one module per area.

mod arrivals;
mod calibrate;
mod cli;
mod faults;
mod gpu_trace;
mod invariants;
mod limits;
mod mps;
mod nvml;
mod operator;
mod plan;
mod plot;
mod seed;
mod serving;
mod sweep;

use std::path::{Path, PathBuf};

use gpushare::experiment::Experiment;
use gpushare::hardware::Catalogue;
use gpushare::workload::WorkloadSpec;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Load a seed experiment by stem, e.g. `mig-heavy`.
pub fn seed_experiment(stem: &str) -> Experiment {
    let path = root().join("experiments/seed").join(format!("{stem}.toml"));
    Experiment::load(&path, &Catalogue::builtin()).expect("seed experiments load")
}

/// Shrink a closed-loop workload's ramps and hold by `factor` (e.g. 0.25).
pub fn shorten(exp: &mut Experiment, factor: f64) {
    if let WorkloadSpec::ClosedLoop(c) = &mut exp.raw.workload {
        c.ramp_up_s *= factor;
        c.hold_s *= factor;
        c.ramp_down_s *= factor;
    }
}

/// Path helper for messages.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}
