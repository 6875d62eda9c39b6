//! Plan files: the models, the load, the targets, the GPU and its price, and how far to
//! search; read, merged with their base experiment, and checked before anything runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config;
use crate::error::InputError;
use crate::experiment::{self, Experiment, load_merged_value};
use crate::hardware::{Catalogue, GpuSpec};

/// The seed study's pipeline, used when neither the plan nor its base names models.
pub const SEED_MODELS: [&str; 3] = [
    "parakeet-1.1b",
    "magpie-tts-multilingual",
    "nemotron-nano-vl-8b",
];

/// Sharing modes the search may use.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A whole GPU per replica.
    Dedicated,
    /// MIG instances.
    Mig,
    /// Time-sliced GPUs.
    TimeSlicing,
    /// MPS clients.
    Mps,
}

/// A plan file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Plan name (default output folder `results/<name>`).
    pub name: String,
    /// One line on what it plans.
    #[serde(default)]
    pub description: String,
    /// Experiment file giving the pipeline (models folder, audio, answers, serving settings of
    /// deployments), relative to the plan; its GPUs are ignored.
    #[serde(default)]
    pub base: Option<String>,
    /// Models to deploy, in pipeline order (default: the base's deployments, else the seed
    /// pipeline).
    #[serde(default)]
    pub models: Vec<String>,
    /// GPU type (catalogue key or product name).
    pub gpu: String,
    /// Price of one GPU-hour (any currency); ranks by cost and fills the cost column.
    #[serde(default)]
    pub price_per_gpu_hour: Option<f64>,
    /// Seed of the first run (default: the base's seed).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Seeds per configuration: one passes only if every seed meets the targets.
    #[serde(default = "one")]
    pub seeds: u32,
    /// The load: an experiment's `[workload]` table (default: the base's).
    #[serde(default)]
    pub workload: Option<toml::Value>,
    /// Audio, as in an experiment (default: the base's).
    #[serde(default)]
    pub audio: Option<toml::Value>,
    /// Answer shapes, as in an experiment (default: the base's).
    #[serde(default)]
    pub answers: Option<toml::Value>,
    /// Models folder, relative to the plan (default: the base's); its profiles add to or
    /// override the built-in ones.
    #[serde(default)]
    pub models_dir: Option<String>,
    /// What a configuration must meet.
    pub targets: Targets,
    /// Search space and limits.
    #[serde(default)]
    pub search: SearchSpec,
}

fn one() -> u32 {
    1
}

/// Targets; at least one latency or success target.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// 95th percentile of request latency (first audio to last audio), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_p95_ms: Option<f64>,
    /// 99th percentile of time to first token, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p99_ms: Option<f64>,
    /// Completed / (completed + failed), at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Failure budget: GPUs that may be down (0 or 1) while the targets still hold; with 1,
    /// every kind of GPU of a configuration is taken out in turn and the rest re-simulated.
    #[serde(default)]
    pub gpu_failures: u32,
}

/// How far to search.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Sharing modes to use.
    #[serde(default = "all_modes")]
    pub modes: Vec<Mode>,
    /// Tenants per time-sliced GPU (device-plugin `replicas`) to try.
    #[serde(default = "two_to_four")]
    pub time_slicing_replicas: Vec<u32>,
    /// Clients per MPS GPU (device-plugin `replicas`) to try.
    #[serde(default = "two_to_four")]
    pub mps_replicas: Vec<u32>,
    /// MIG profiles to use (default: every profile of the GPU, one of each set that gives a
    /// replica the same SMs, memory and bandwidth).
    #[serde(default)]
    pub mig_profiles: Vec<String>,
    /// Most GPUs a configuration may use.
    #[serde(default = "max_gpus")]
    pub max_gpus: u32,
    /// Also evaluate the configurations with up to this many GPUs more than the fewest that
    /// meet the targets (alternatives for the table and chart).
    #[serde(default)]
    pub extra_gpus: u32,
    /// Most simulations in all; past it the search stops and says the answer is unproven.
    #[serde(default = "max_runs")]
    pub max_runs: usize,
    /// GPUs per node in the exported files.
    #[serde(default = "gpus_per_node")]
    pub gpus_per_node: u32,
    /// Margin of the bound runs: they are judged against targets loosened by this fraction,
    /// so that noise and closed-loop feedback do not make a bound rule out a configuration
    /// that passes (larger: safer and slower).
    #[serde(default = "bound_slack")]
    pub bound_slack: f64,
    /// The load of the bound runs: `at-load` (the plan's own load, fast) or `least-load`
    /// (closed loops: the least demand any passing configuration serves; slower, and it also
    /// finds configurations that pass because a slower stage throttles the loop).
    #[serde(default)]
    pub bounds: BoundLoad,
}

/// The load of the bound runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BoundLoad {
    /// The plan's own load.
    #[default]
    AtLoad,
    /// The least demand a passing configuration serves (closed loops; open loops: their own).
    LeastLoad,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            modes: all_modes(),
            time_slicing_replicas: two_to_four(),
            mps_replicas: two_to_four(),
            mig_profiles: Vec::new(),
            max_gpus: max_gpus(),
            extra_gpus: 0,
            max_runs: max_runs(),
            gpus_per_node: gpus_per_node(),
            bound_slack: bound_slack(),
            bounds: BoundLoad::default(),
        }
    }
}

fn all_modes() -> Vec<Mode> {
    vec![Mode::Dedicated, Mode::Mig, Mode::TimeSlicing, Mode::Mps]
}
fn two_to_four() -> Vec<u32> {
    vec![2, 3, 4]
}
fn max_gpus() -> u32 {
    512
}
fn max_runs() -> usize {
    5000
}
fn gpus_per_node() -> u32 {
    8
}
fn bound_slack() -> f64 {
    0.1
}

/// A plan, checked: the experiment every configuration shares, and the search settings.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The file as written.
    pub file: PlanFile,
    /// The plan file.
    pub path: PathBuf,
    /// The experiment value without `gpus` (deployments hold the serving settings per model).
    pub base: toml::Value,
    /// Models in pipeline order.
    pub models: Vec<String>,
    /// The GPU.
    pub gpu: GpuSpec,
    /// MIG profiles searched.
    pub profiles: Vec<String>,
    /// Seeds of every configuration.
    pub seeds: Vec<u64>,
    /// A resolved experiment with one dedicated GPU per model (for demand estimates).
    pub probe: Experiment,
}

fn bad(path: &Path, field: &str, value: impl ToString, allowed: &str) -> InputError {
    InputError::invalid(path, field, value, allowed)
}

impl Plan {
    /// Read and check a plan file.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Plan, InputError> {
        let file: PlanFile = config::parse_toml(&config::read(path)?, path)?;
        config::folder_name(path, "name", &file.name)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut base = match &file.base {
            Some(b) => {
                let p = dir.join(b);
                if !p.is_file() {
                    return Err(bad(
                        path,
                        "base",
                        format!("\"{b}\""),
                        &format!(
                            "an experiment file relative to the plan ({} does not exist)",
                            p.display()
                        ),
                    ));
                }
                load_merged_value(&p)?
            }
            None => toml::Value::Table(Default::default()),
        };
        let t = base
            .as_table_mut()
            .expect("invariant: merged experiments are tables");
        for (k, v) in [
            ("workload", &file.workload),
            ("audio", &file.audio),
            ("answers", &file.answers),
        ] {
            if let Some(v) = v {
                t.insert(k.into(), v.clone());
            }
        }
        if let Some(toml::Value::Table(w)) = t.get_mut("workload")
            && file.workload.is_some()
            && let Some(toml::Value::String(p)) = w.get("path").cloned()
        {
            w.insert(
                "path".into(),
                toml::Value::String(dir.join(p).to_string_lossy().to_string()),
            );
        }
        if let Some(m) = &file.models_dir {
            t.insert(
                "models_dir".into(),
                toml::Value::String(dir.join(m).to_string_lossy().to_string()),
            );
        }
        t.insert("name".into(), toml::Value::String(file.name.clone()));
        if let Some(s) = file.seed {
            t.insert("seed".into(), toml::Value::Integer(s as i64));
        }
        t.remove("gpus");
        if t.contains_key("faults") {
            return Err(bad(
                path,
                "base",
                "an experiment with [faults]",
                "a base without injected or random faults: the planner's failure budget is targets.gpu_failures",
            ));
        }
        let base_models: Vec<String> = match t.get("deployments") {
            Some(toml::Value::Array(a)) => a
                .iter()
                .filter_map(|d| d.get("model")?.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let models: Vec<String> = if !file.models.is_empty() {
            file.models.clone()
        } else if !base_models.is_empty() {
            base_models
        } else {
            SEED_MODELS.iter().map(|s| s.to_string()).collect()
        };
        for (i, m) in models.iter().enumerate() {
            if models[..i].contains(m) {
                return Err(bad(
                    path,
                    &format!("models[{i}]"),
                    format!("\"{m}\""),
                    "each model once",
                ));
            }
        }
        let gpu = catalogue
            .gpu(&file.gpu)
            .map_err(|e| InputError::hardware(path, "gpu", e))?
            .clone();
        if let Some(p) = file.price_per_gpu_hour {
            config::positive(path, "price_per_gpu_hour", p)?;
        }
        let tg = &file.targets;
        if tg.request_p95_ms.is_none() && tg.ttft_p99_ms.is_none() && tg.success_rate.is_none() {
            return Err(bad(
                path,
                "targets",
                "no target",
                "at least one of request_p95_ms, ttft_p99_ms, success_rate",
            ));
        }
        for (k, v) in [
            ("request_p95_ms", tg.request_p95_ms),
            ("ttft_p99_ms", tg.ttft_p99_ms),
        ] {
            if let Some(v) = v {
                config::positive(path, &format!("targets.{k}"), v)?;
            }
        }
        if let Some(s) = tg.success_rate {
            config::fraction(path, "targets.success_rate", s)?;
        }
        if tg.gpu_failures > 1 {
            return Err(bad(
                path,
                "targets.gpu_failures",
                tg.gpu_failures,
                "0 or 1 (GPUs that may be down at once)",
            ));
        }
        let s = &file.search;
        if s.modes.is_empty() {
            return Err(bad(
                path,
                "search.modes",
                "[]",
                "some of \"dedicated\", \"mig\", \"time-slicing\", \"mps\"",
            ));
        }
        for (k, list, max) in [
            ("time_slicing_replicas", &s.time_slicing_replicas, 16),
            ("mps_replicas", &s.mps_replicas, experiment::MPS_MAX_CLIENTS),
        ] {
            for (i, &r) in list.iter().enumerate() {
                if !(2..=max).contains(&r) {
                    return Err(bad(
                        path,
                        &format!("search.{k}[{i}]"),
                        r,
                        &format!(
                            "an integer in [2, {max}] (the device plugin needs replicas >= 2)"
                        ),
                    ));
                }
            }
        }
        if s.modes.contains(&Mode::Mig) && gpu.mig_profiles.is_empty() {
            return Err(bad(
                path,
                "search.modes",
                "\"mig\"",
                &format!("modes the {} supports: it has no MIG profiles", gpu.name),
            ));
        }
        let profiles = if s.mig_profiles.is_empty() {
            distinct_profiles(&gpu)
        } else {
            let mut v = Vec::new();
            for (i, p) in s.mig_profiles.iter().enumerate() {
                let q = gpu.mig_profile(p).map_err(|e| {
                    InputError::hardware(path, &format!("search.mig_profiles[{i}]"), e)
                })?;
                v.push(q.name.clone());
            }
            v
        };
        if !(1..=100_000).contains(&s.max_gpus) {
            return Err(bad(
                path,
                "search.max_gpus",
                s.max_gpus,
                "an integer in [1, 100000]",
            ));
        }
        if s.max_runs == 0 {
            return Err(bad(path, "search.max_runs", 0, "an integer >= 1"));
        }
        if !(1..=64).contains(&s.gpus_per_node) {
            return Err(bad(
                path,
                "search.gpus_per_node",
                s.gpus_per_node,
                "an integer in [1, 64]",
            ));
        }
        if !(s.bound_slack.is_finite() && (0.0..=1.0).contains(&s.bound_slack)) {
            return Err(bad(
                path,
                "search.bound_slack",
                s.bound_slack,
                "a fraction in [0, 1]",
            ));
        }
        if !(1..=100).contains(&file.seeds) {
            return Err(bad(path, "seeds", file.seeds, "an integer in [1, 100]"));
        }
        // Keep the base's serving settings of the planned models only.
        let deps: Vec<toml::Value> = models
            .iter()
            .map(|m| {
                let found = match t.get("deployments") {
                    Some(toml::Value::Array(a)) => a
                        .iter()
                        .find(|d| d.get("model").and_then(|x| x.as_str()) == Some(m))
                        .cloned(),
                    _ => None,
                };
                found.unwrap_or_else(|| {
                    let mut d = toml::Table::new();
                    d.insert("model".into(), toml::Value::String(m.clone()));
                    toml::Value::Table(d)
                })
            })
            .collect();
        t.insert("deployments".into(), toml::Value::Array(deps));
        let first_seed = t.get("seed").and_then(|s| s.as_integer()).unwrap_or(0) as u64;
        let seeds = (0..u64::from(file.seeds)).map(|i| first_seed + i).collect();
        // One dedicated GPU per model: checks the workload, audio, answers and models now.
        let probe_value = probe(&base, &models, &gpu);
        let probe = experiment::resolve_value(probe_value, path, catalogue, &Default::default())?;
        Ok(Plan {
            path: path.to_path_buf(),
            file,
            base,
            models,
            gpu,
            profiles,
            seeds,
            probe,
        })
    }

    /// Price per GPU-hour, if given.
    pub fn price(&self) -> Option<f64> {
        self.file.price_per_gpu_hour
    }
}

/// The base value with one dedicated GPU per model.
fn probe(base: &toml::Value, models: &[String], gpu: &GpuSpec) -> toml::Value {
    let mut v = base.clone();
    let t = v.as_table_mut().expect("invariant: a table");
    let gpus: Vec<toml::Value> = (0..models.len())
        .map(|i| {
            toml::Value::try_from(crate::experiment::GpuEntry {
                id: format!("gpu{i}"),
                gpu_type: gpu.key.clone(),
                node: "node0".into(),
                sharing: crate::experiment::SharingSpec::Dedicated,
            })
            .expect("invariant: GPU entries serialise")
        })
        .collect();
    t.insert("gpus".into(), toml::Value::Array(gpus));
    if let Some(toml::Value::Array(deps)) = t.get_mut("deployments") {
        for (i, d) in deps.iter_mut().enumerate() {
            let mut r = toml::Table::new();
            r.insert("gpu".into(), toml::Value::String(format!("gpu{i}")));
            d.as_table_mut().expect("invariant: a table").insert(
                "replicas".into(),
                toml::Value::Array(vec![toml::Value::Table(r)]),
            );
        }
    }
    v
}

/// The GPU's profiles, keeping the first of any set that gives a context the same SMs, memory
/// and bandwidth (`1g.10gb+me` adds media engines the simulator does not use).
pub fn distinct_profiles(gpu: &GpuSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut profiles: Vec<_> = gpu.mig_profiles.iter().collect();
    profiles.sort_by_key(|p| {
        (
            p.extra,
            std::cmp::Reverse(p.sm_slices),
            std::cmp::Reverse(p.memory_slices),
            p.name.clone(),
        )
    });
    for p in profiles {
        let key = (p.sms, p.memory_bytes, p.memory_slices);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(p.name.clone());
        }
    }
    out
}
