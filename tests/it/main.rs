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

/// Load an experiment written into `dir` beside an inventory's cluster file `node.toml`
/// (gpu0 with two 3g.40gb instances, gpu1 a whole H100): the seed pipeline under a light
/// Poisson load of `duration_s`. The cluster file must load as it is, with those partitions.
pub fn experiment_on_inventory(dir: &Path, name: &str, duration_s: f64) -> Experiment {
    let path = dir.join("exp.toml");
    std::fs::write(&path, inventory_experiment_text(name, duration_s)).unwrap();
    let e = Experiment::load(&path, &Catalogue::builtin()).unwrap();
    let labels: Vec<&str> = e
        .partitions
        .iter()
        .map(|p| p.resources.label.as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "A100-SXM4-80GB MIG 3g.40gb",
            "A100-SXM4-80GB MIG 3g.40gb",
            "H100-SXM5-80GB"
        ]
    );
    e
}

fn inventory_experiment_text(name: &str, duration_s: f64) -> String {
    format!(
        r#"extends = ["node.toml"]
name = "{name}"

[[deployments]]
model = "parakeet-1.1b"
replicas = [{{ gpu = "gpu0", instance = 0 }}]

[[deployments]]
model = "magpie-tts-multilingual"
replicas = [{{ gpu = "gpu0", instance = 1 }}]

[[deployments]]
model = "nemotron-nano-vl-8b"
replicas = [{{ gpu = "gpu1" }}]

[workload]
mode = "poisson"
rate_rps = 1.0
duration_s = {duration_s:?}
timeout_s = 60.0

[audio]
clips_s = [4.8]
chunk_ms = 128.0
chunk_interval_ms = 10.0

[answers]
prompt_tokens = {{ dist = "fixed", value = 250 }}
output_tokens = {{ dist = "fixed", value = 40 }}
sentences = {{ dist = "fixed", value = 2 }}
"#
    )
}
