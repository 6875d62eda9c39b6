//! Experiment files: TOML (with `extends` to share parts) -> raw types -> a validated
//! [`Experiment`] whose names, layouts and memory all check out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{self, non_negative, positive};
use crate::error::InputError;
use crate::hardware::{Catalogue, GpuSpec, Partition, mig};
use crate::profile::{ModelKind, ModelProfile};
use crate::workload::{AnswerSpec, Audio, WorkloadSpec};

/// Default time slice: the open-source driver's per-context default on Volta and later,
/// `0x80 << 3` us (hardware.md §2.2, [S27]).
pub const DEFAULT_TIME_SLICE_US: f64 = 1024.0;

/// Default context-switch cost, derived (not fitted) from Colfax's A30 measurement: four
/// time-sliced tenants got 160 GB/s each where MIG tenants got 196 GB/s, an 18.4% loss
/// (hardware.md §2.3, [S15]); a switch per 1024 us slice losing 18.4% of the time costs
/// 1024 × 0.184 / 0.816 = 230 us.
pub const DEFAULT_SWITCH_COST_US: f64 = 230.0;

/// How a GPU is shared, as written in the experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SharingSpec {
    /// One replica owns the whole GPU.
    Dedicated,
    /// The device plugin hands out `replicas` references; their contexts are time-sliced.
    TimeSlicing {
        /// Device-plugin `replicas`: how many pods may share the GPU.
        replicas: u32,
        /// Quantum per context, microseconds.
        #[serde(default = "default_slice")]
        time_slice_us: f64,
        /// Cost of switching the loaded context, microseconds.
        #[serde(default = "default_switch")]
        switch_cost_us: f64,
    },
    /// MIG instances, in creation order; each takes one replica.
    Mig {
        /// Profile names, e.g. `["3g.40gb", "3g.40gb"]`.
        instances: Vec<String>,
    },
}

fn default_slice() -> f64 {
    DEFAULT_TIME_SLICE_US
}
fn default_switch() -> f64 {
    DEFAULT_SWITCH_COST_US
}

/// One GPU of the cluster.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuEntry {
    /// Name used by deployments (e.g. `gpu0`).
    pub id: String,
    /// Catalogue key, e.g. `a100-80gb`.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// Node the GPU sits in (for reports).
    #[serde(default = "default_node")]
    pub node: String,
    /// Sharing mode.
    pub sharing: SharingSpec,
}

fn default_node() -> String {
    "node0".into()
}

/// Where one replica runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplicaPlacement {
    /// GPU id.
    pub gpu: String,
    /// MIG instance index on that GPU (MIG GPUs only).
    pub instance: Option<usize>,
}

/// A model deployed as one or more replicas.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Model profile name (`models/<name>.toml`).
    pub model: String,
    /// Replica placements.
    pub replicas: Vec<ReplicaPlacement>,
}

/// The experiment file as written (after `extends` are merged).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// Run name.
    pub name: String,
    /// Configuration label (e.g. `mig`), for tables.
    #[serde(default)]
    pub config: String,
    /// Load label (e.g. `heavy`), for tables.
    #[serde(default)]
    pub load: String,
    /// Random seed.
    #[serde(default)]
    pub seed: u64,
    /// Files merged under this one, relative to it (already applied when parsed).
    #[serde(default, skip_serializing)]
    pub extends: Vec<String>,
    /// Folder of model profiles, relative to the experiment file (default: the nearest
    /// `models/` folder above it).
    #[serde(default, skip_serializing)]
    pub models_dir: Option<String>,
    /// GPUs.
    pub gpus: Vec<GpuEntry>,
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Load.
    pub workload: WorkloadSpec,
    /// Audio clips and how they are streamed.
    pub audio: Audio,
    /// LLM answer shapes.
    pub answers: AnswerSpec,
}

/// A partition of the cluster: a whole GPU or one MIG instance, with its contexts.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    /// Index of the GPU in `Experiment::gpus`.
    pub gpu: usize,
    /// Compute resources the partition's contexts see.
    pub resources: Partition,
    /// Quantum, ns.
    pub time_slice_ns: u64,
    /// Switch cost, ns.
    pub switch_ns: u64,
}

/// A replica of a model on a partition.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// Index into `Experiment::models`.
    pub model: usize,
    /// Index into `Experiment::partitions`.
    pub partition: usize,
}

/// A validated experiment, ready to simulate.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// As written (merged), for the record.
    pub raw: RawExperiment,
    /// GPU specs, one per `raw.gpus` entry.
    pub gpus: Vec<GpuSpec>,
    /// Partitions (whole GPUs and MIG instances).
    pub partitions: Vec<PartitionSpec>,
    /// Model profiles in deployment order.
    pub models: Vec<ModelProfile>,
    /// Replicas.
    pub replicas: Vec<ReplicaSpec>,
}

impl Experiment {
    /// Load, merge, parse and validate an experiment file.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Experiment, InputError> {
        let merged = load_merged(path, 0)?;
        let raw: RawExperiment = config::from_value(merged, path)?;
        let models_dir = match &raw.models_dir {
            // Already made relative to the file that set it (see `load_merged`).
            Some(d) => PathBuf::from(d),
            None => find_models_dir(path),
        };
        Self::resolve(raw, path, catalogue, &models_dir)
    }

    /// Validate a parsed experiment; `origin` is used in error messages.
    pub fn resolve(
        raw: RawExperiment,
        origin: &Path,
        catalogue: &Catalogue,
        models_dir: &Path,
    ) -> Result<Experiment, InputError> {
        Self::resolve_patched(raw, origin, catalogue, models_dir, &BTreeMap::new())
    }

    /// [`Self::resolve`], with `profile_patches` (model name -> TOML table) deep-merged over
    /// those models' profile files before they are parsed (sweeps over profile parameters).
    pub fn resolve_patched(
        raw: RawExperiment,
        origin: &Path,
        catalogue: &Catalogue,
        models_dir: &Path,
        profile_patches: &BTreeMap<String, toml::Value>,
    ) -> Result<Experiment, InputError> {
        raw.workload.check(origin)?;
        raw.audio.check(origin)?;
        raw.answers.check(origin)?;
        if raw.gpus.is_empty() {
            return Err(InputError::invalid(
                origin,
                "gpus",
                "[]",
                "at least one GPU",
            ));
        }
        let mut gpus = Vec::new();
        let mut partitions = Vec::new();
        // Per GPU: (first partition index, number of partitions, context capacity per partition).
        let mut gpu_parts: BTreeMap<String, (usize, usize, u32, usize)> = BTreeMap::new();
        for (gi, g) in raw.gpus.iter().enumerate() {
            let field = format!("gpus[{gi}]");
            if gpu_parts.contains_key(&g.id) {
                return Err(InputError::invalid(
                    origin,
                    &format!("{field}.id"),
                    &g.id,
                    "a GPU id not used by another GPU",
                ));
            }
            let spec = catalogue
                .gpu(&g.gpu_type)
                .map_err(|e| InputError::hardware(origin, &format!("{field}.type"), e))?
                .clone();
            let first = partitions.len();
            let (count, cap) = match &g.sharing {
                SharingSpec::Dedicated => {
                    partitions.push(PartitionSpec {
                        gpu: gi,
                        resources: spec.full_partition(),
                        time_slice_ns: (DEFAULT_TIME_SLICE_US * 1e3) as u64,
                        switch_ns: 0,
                    });
                    (1, 1)
                }
                SharingSpec::TimeSlicing {
                    replicas,
                    time_slice_us,
                    switch_cost_us,
                } => {
                    if *replicas == 0 {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{field}.sharing.replicas"),
                            0,
                            "an integer >= 1",
                        ));
                    }
                    positive(
                        origin,
                        &format!("{field}.sharing.time_slice_us"),
                        *time_slice_us,
                    )?;
                    non_negative(
                        origin,
                        &format!("{field}.sharing.switch_cost_us"),
                        *switch_cost_us,
                    )?;
                    for (name, v, lo) in [
                        ("time_slice_us", *time_slice_us, 1.0),
                        ("switch_cost_us", *switch_cost_us, 0.0),
                    ] {
                        if !(lo..=1e6).contains(&v) {
                            return Err(InputError::invalid(
                                origin,
                                &format!("{field}.sharing.{name}"),
                                crate::config::num(v),
                                &format!("a number of microseconds in [{lo}, 1e6]"),
                            ));
                        }
                    }
                    partitions.push(PartitionSpec {
                        gpu: gi,
                        resources: spec.full_partition(),
                        time_slice_ns: (time_slice_us * 1e3).round().max(1.0) as u64,
                        switch_ns: (switch_cost_us * 1e3).round() as u64,
                    });
                    (1, *replicas)
                }
                SharingSpec::Mig { instances } => {
                    let names: Vec<&str> = instances.iter().map(String::as_str).collect();
                    if names.is_empty() {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{field}.sharing.instances"),
                            "[]",
                            "at least one MIG profile, e.g. [\"3g.40gb\", \"3g.40gb\"]",
                        ));
                    }
                    mig::validate_layout(&spec, &names).map_err(|e| {
                        InputError::hardware(origin, &format!("{field}.sharing.instances"), e)
                    })?;
                    for name in &names {
                        let p = spec.mig_profile(name).map_err(|e| {
                            InputError::hardware(origin, &format!("{field}.sharing.instances"), e)
                        })?;
                        partitions.push(PartitionSpec {
                            gpu: gi,
                            resources: spec.mig_partition(p),
                            time_slice_ns: (DEFAULT_TIME_SLICE_US * 1e3) as u64,
                            switch_ns: 0,
                        });
                    }
                    (names.len(), 1)
                }
            };
            gpu_parts.insert(g.id.clone(), (first, count, cap, gi));
            gpus.push(spec);
        }

        let mut models = Vec::new();
        let mut replicas = Vec::new();
        let mut contexts = vec![0u32; partitions.len()];
        let mut memory = vec![0u64; partitions.len()];
        if raw.deployments.is_empty() {
            return Err(InputError::invalid(
                origin,
                "deployments",
                "[]",
                "at least one deployment",
            ));
        }
        for (di, d) in raw.deployments.iter().enumerate() {
            let field = format!("deployments[{di}]");
            let patch = profile_patches.get(&d.model);
            let model = load_model(
                models_dir,
                &d.model,
                origin,
                &format!("{field}.model"),
                patch,
            )?;
            if d.replicas.is_empty() {
                return Err(InputError::invalid(
                    origin,
                    &format!("{field}.replicas"),
                    "[]",
                    "at least one replica placement",
                ));
            }
            let mi = models.len();
            for (ri, r) in d.replicas.iter().enumerate() {
                let rf = format!("{field}.replicas[{ri}]");
                let Some(&(first, count, cap, gi)) = gpu_parts.get(&r.gpu) else {
                    let known: Vec<&str> = raw.gpus.iter().map(|g| g.id.as_str()).collect();
                    return Err(InputError::invalid(
                        origin,
                        &format!("{rf}.gpu"),
                        &r.gpu,
                        &format!("one of the GPU ids: {}", known.join(", ")),
                    ));
                };
                let is_mig = matches!(raw.gpus[gi].sharing, SharingSpec::Mig { .. });
                let part = match (is_mig, r.instance) {
                    (true, Some(i)) if i < count => first + i,
                    (true, other) => {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{rf}.instance"),
                            other.map_or("missing".to_string(), |i| i.to_string()),
                            &format!("a MIG instance index 0..{} on GPU {}", count - 1, r.gpu),
                        ));
                    }
                    (false, Some(i)) => {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{rf}.instance"),
                            i,
                            &format!("no instance: GPU {} is not in MIG mode", r.gpu),
                        ));
                    }
                    (false, None) => first,
                };
                contexts[part] += 1;
                if contexts[part] > cap {
                    let allowed = match raw.gpus[gi].sharing {
                        SharingSpec::Dedicated => format!(
                            "at most one replica on dedicated GPU {}; use mode = \"time-slicing\" to share it",
                            r.gpu
                        ),
                        SharingSpec::TimeSlicing { replicas, .. } => format!(
                            "at most {replicas} replicas on GPU {} (device-plugin replicas = {replicas})",
                            r.gpu
                        ),
                        SharingSpec::Mig { .. } => {
                            format!("one replica per MIG instance on GPU {}", r.gpu)
                        }
                    };
                    return Err(InputError::invalid(
                        origin,
                        &format!("{rf}.gpu"),
                        &r.gpu,
                        &allowed,
                    ));
                }
                memory[part] += model.memory_bytes();
                let avail = partitions[part].resources.memory_bytes;
                if memory[part] > avail {
                    return Err(InputError::invalid(
                        origin,
                        &rf,
                        format!(
                            "{} ({:.1} GB) on {} {}",
                            model.name, model.memory_gb, r.gpu, partitions[part].resources.label
                        ),
                        &format!(
                            "replicas whose memory fits the partition: {:.1} GB needed in all, {:.1} GB available",
                            memory[part] as f64 / 1e9,
                            avail as f64 / 1e9
                        ),
                    ));
                }
                replicas.push(ReplicaSpec {
                    model: mi,
                    partition: part,
                });
            }
            models.push(model);
        }
        for kind in ["asr", "llm", "tts"] {
            let n = models.iter().filter(|m| kind_name(&m.kind) == kind).count();
            if n != 1 {
                return Err(InputError::invalid(
                    origin,
                    "deployments",
                    format!("{n} {kind} deployments"),
                    "exactly one deployment each of an asr, an llm and a tts model (the voice pipeline)",
                ));
            }
        }
        let chunk_ms = raw.audio.chunk_ms;
        for m in &models {
            if let ModelKind::Asr(a) = &m.kind
                && (a.chunk_ms - chunk_ms).abs() > 1e-9
            {
                return Err(InputError::invalid(
                    origin,
                    "audio.chunk_ms",
                    chunk_ms,
                    &format!(
                        "{} ms, the chunk size the ASR profile {} is written for",
                        a.chunk_ms, m.name
                    ),
                ));
            }
        }
        Ok(Experiment {
            raw,
            gpus,
            partitions,
            models,
            replicas,
        })
    }

    /// Index of the model of kind `kind` (`asr`, `llm`, `tts`).
    pub fn model_of_kind(&self, kind: &str) -> usize {
        self.models
            .iter()
            .position(|m| kind_name(&m.kind) == kind)
            .expect("invariant: validated experiments have one model of each kind")
    }
}

/// `asr`, `llm` or `tts`.
pub fn kind_name(k: &ModelKind) -> &'static str {
    match k {
        ModelKind::Asr(_) => "asr",
        ModelKind::Llm(_) => "llm",
        ModelKind::Tts(_) => "tts",
    }
}

fn load_model(
    dir: &Path,
    name: &str,
    origin: &Path,
    field: &str,
    patch: Option<&toml::Value>,
) -> Result<ModelProfile, InputError> {
    let path = dir.join(format!("{name}.toml"));
    if !path.is_file() {
        let mut known: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let p = e.path();
                        if p.extension()? != "toml" {
                            return None;
                        }
                        Some(p.file_stem()?.to_string_lossy().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        return Err(InputError::invalid(
            origin,
            field,
            format!("\"{name}\""),
            &format!(
                "a model profile in {}: {}",
                dir.display(),
                if known.is_empty() {
                    "(none found)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let p = match patch {
        None => ModelProfile::from_toml_str(&config::read(&path)?, &path)?,
        Some(patch) => {
            let mut v: toml::Value = config::parse_toml(&config::read(&path)?, &path)?;
            merge(&mut v, patch.clone());
            ModelProfile::from_value(v, &path)?
        }
    };
    if p.name != name {
        return Err(InputError::invalid(
            &path,
            "name",
            format!("\"{}\"", p.name),
            &format!("the file's stem, \"{name}\""),
        ));
    }
    Ok(p)
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The nearest `models/` folder at or above the experiment's folder, else `./models`.
fn find_models_dir(path: &Path) -> PathBuf {
    let start = std::fs::canonicalize(base_dir(path)).unwrap_or_else(|_| base_dir(path));
    start
        .ancestors()
        .map(|d| d.join("models"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The experiment file at `path` as one TOML value, its `extends` merged underneath it and
/// `models_dir` made relative to the working folder: what [`Experiment::load`] parses. Sweeps
/// edit this value before resolving it with [`resolve_value`].
pub fn load_merged_value(path: &Path) -> Result<toml::Value, InputError> {
    load_merged(path, 0)
}

/// Parse and validate a merged experiment value (see [`load_merged_value`]); `origin` names the
/// file in messages and locates the default `models/` folder. `profile_patches` maps a model
/// name to a TOML table merged over its profile (see [`Experiment::resolve_patched`]); a patch
/// for a model no deployment uses is an error.
pub fn resolve_value(
    value: toml::Value,
    origin: &Path,
    catalogue: &Catalogue,
    profile_patches: &BTreeMap<String, toml::Value>,
) -> Result<Experiment, InputError> {
    let raw: RawExperiment = config::from_value(value, origin)?;
    for name in profile_patches.keys() {
        if !raw.deployments.iter().any(|d| &d.model == name) {
            let used: Vec<&str> = raw.deployments.iter().map(|d| d.model.as_str()).collect();
            return Err(InputError::invalid(
                origin,
                &format!("profiles.{name}"),
                format!("\"{name}\""),
                &format!("a deployed model: {}", used.join(", ")),
            ));
        }
    }
    let models_dir = match &raw.models_dir {
        Some(d) => PathBuf::from(d),
        None => find_models_dir(origin),
    };
    Experiment::resolve_patched(raw, origin, catalogue, &models_dir, profile_patches)
}

/// Read `path`, merging the files it `extends` underneath it (deep merge of tables; arrays and
/// scalars in the including file replace those it extends).
fn load_merged(path: &Path, depth: usize) -> Result<toml::Value, InputError> {
    if depth > 8 {
        return Err(InputError::invalid(
            path,
            "extends",
            "a cycle or deep chain",
            "at most 8 levels of extends",
        ));
    }
    let text = config::read(path)?;
    let mut own: toml::Value = config::parse_toml(&text, path)?;
    let extends: Vec<String> = match own.get("extends") {
        None => Vec::new(),
        Some(v) => config::from_value(v.clone(), path)
            .map_err(|_| InputError::invalid(path, "extends", v, "a list of file paths"))?,
    };
    let mut merged = toml::Value::Table(Default::default());
    for e in &extends {
        let sub = base_dir(path).join(e);
        merge(&mut merged, load_merged(&sub, depth + 1)?);
    }
    if let Some(t) = own.as_table_mut() {
        t.remove("extends");
        // A models_dir is relative to the file that writes it, not to the one extending it.
        if let Some(toml::Value::String(d)) = t.get("models_dir") {
            let abs = base_dir(path).join(d).to_string_lossy().to_string();
            t.insert("models_dir".into(), toml::Value::String(abs));
        }
    }
    merge(&mut merged, own);
    Ok(merged)
}

fn merge(into: &mut toml::Value, from: toml::Value) {
    match (into, from) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
