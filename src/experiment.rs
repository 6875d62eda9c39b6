//! Experiment files: TOML (with `extends` to share parts) -> raw types -> a validated
//! [`Experiment`] whose names, layouts and memory all check out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{self, non_negative, positive};
use crate::error::InputError;
use crate::faults::{FaultKind, FaultsSpec};
use crate::hardware::{Catalogue, GpuSpec, Partition, mig};
use crate::profile::{LlmProfile, ModelKind, ModelProfile};
use crate::serving::{BatchConfig, KvPolicy, LlmConfig, RoutingPolicy};
use crate::trace::Trace;
use crate::workload::{AnswerSpec, Audio, WorkloadSpec};

/// Default time slice: the open-source driver's per-context default on Volta and later,
/// `0x80 << 3` us (docs/sources.md §2.2, [S27]).
pub const DEFAULT_TIME_SLICE_US: f64 = 1024.0;

/// Default context-switch cost, derived (not fitted) from Colfax's A30 measurement: four
/// time-sliced tenants got 160 GB/s each where MIG tenants got 196 GB/s, an 18.4% loss
/// (docs/sources.md §2.3, [S15]); a switch per 1024 us slice losing 18.4% of the time costs
/// 1024 × 0.184 / 0.816 = 230 us.
pub const DEFAULT_SWITCH_COST_US: f64 = 230.0;

/// The fix an experiment file can make when an MPS client does not fit its memory limit;
/// the operator import replaces it with one its files can make.
pub const MPS_MEMORY_HINT: &str = "set memory_limit = \"none\" to lift it";

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
    /// MPS: the replicas' kernels run concurrently through one server context, each client
    /// capped by its active-thread percentage; no context switches, no bandwidth isolation.
    Mps {
        /// Device-plugin `replicas`: how many clients may share the GPU (at most 48).
        replicas: u32,
        /// `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` per client, in placement order; default
        /// 100 / replicas each, as the device plugin sets it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        active_thread_pct: Vec<f64>,
        /// Pinned device-memory limit per client: `equal` (the card / replicas, as the device
        /// plugin sets `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`) or `none`.
        #[serde(default)]
        memory_limit: MpsMemoryLimit,
    },
}

/// Per-client memory limit under MPS.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MpsMemoryLimit {
    /// Each client may pin the card's memory / replicas.
    #[default]
    Equal,
    /// No limit: clients share the card's memory freely.
    None,
}

/// Most MPS clients per GPU (Volta and later MPS, per the MIG user guide).
pub const MPS_MAX_CLIENTS: u32 = 48;

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
    /// How requests are spread over the replicas.
    #[serde(default)]
    pub routing: RoutingPolicy,
    /// Dynamic batching (ASR and TTS models); absent: one request at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSpec>,
    /// LLM engine limits and KV cache (LLM models); absent: the defaults below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineSpec>,
}

/// Dynamic batching of a request-level model, as Triton's `dynamic_batching` block.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchingSpec {
    /// Largest batch (Triton `max_batch_size`).
    pub max_batch_size: u32,
    /// Longest a request waits for others while the replica is free, microseconds (Triton
    /// `max_queue_delay_microseconds`).
    #[serde(default)]
    pub max_queue_delay_us: f64,
    /// Sizes sent at once when the queue can fill them (Triton `preferred_batch_size`).
    #[serde(default)]
    pub preferred_batch_sizes: Vec<u32>,
}

/// Where an LLM's KV cache gets its memory.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KvCacheMode {
    /// Reserved at start-up (vLLM, TensorRT-LLM): `memory_fraction` of the partition minus
    /// weights and runtime; a full cache makes requests wait or preempts them.
    #[default]
    Preallocated,
    /// Allocated as sequences grow, from whatever the partition has free: co-located
    /// replicas are not isolated, and an allocation that finds no memory fails its request
    /// with out-of-memory.
    OnDemand,
}

/// An LLM replica's engine settings (vLLM names in brackets).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Most sequences running at once (`max_num_seqs`); default: the profile's `max_batch`.
    pub max_num_seqs: Option<u32>,
    /// Most tokens in one iteration (`max_num_batched_tokens`); longer prompts are
    /// prefilled in chunks.
    #[serde(default = "default_batched_tokens")]
    pub max_batched_tokens: u32,
    /// Tokens per KV-cache block (`block_size`).
    #[serde(default = "default_block_tokens")]
    pub block_tokens: u32,
    /// Fraction of the partition's memory the replica takes (`gpu_memory_utilization`).
    #[serde(default = "default_memory_fraction")]
    pub memory_fraction: f64,
    /// Preallocated or on-demand KV cache.
    #[serde(default)]
    pub kv_cache: KvCacheMode,
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            max_num_seqs: None,
            max_batched_tokens: default_batched_tokens(),
            block_tokens: default_block_tokens(),
            memory_fraction: default_memory_fraction(),
            kv_cache: KvCacheMode::default(),
        }
    }
}

/// vLLM's default token budget per iteration with chunked prefill on large GPUs.
fn default_batched_tokens() -> u32 {
    8192
}
/// vLLM's default KV block size on CUDA.
fn default_block_tokens() -> u32 {
    16
}
/// vLLM's default `gpu_memory_utilization`.
fn default_memory_fraction() -> f64 {
    0.9
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
    /// Folder of model profiles, relative to the file that sets it: its profiles add to the
    /// built-in ones and override those of the same name (`--models DIR` overrides both; see
    /// [`crate::models`]).
    #[serde(default, skip_serializing)]
    pub models_dir: Option<String>,
    /// GPUs.
    pub gpus: Vec<GpuEntry>,
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Load.
    pub workload: WorkloadSpec,
    /// Audio clips and how they are streamed (needed when an ASR model is deployed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Audio>,
    /// LLM answer shapes.
    pub answers: AnswerSpec,
    /// Faults to inject or draw, and how the gateway retries (absent: nothing fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsSpec>,
    /// Latency target for goodput (absent: no goodput reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// How metrics are collected (absent: exact percentiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
}

/// How latency percentiles are computed.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Percentiles {
    /// Keep every sample: exact nearest-rank percentiles; memory grows with requests.
    #[default]
    Exact,
    /// An HDR histogram per stage: percentiles within 0.1%, mean exact, bounded memory.
    Streaming,
}

/// The `[metrics]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Exact or streaming percentiles.
    #[serde(default)]
    pub percentiles: Percentiles,
}

/// Service-level objective: what counts as a good request.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// A completed request within this many milliseconds (start to end) counts as goodput.
    pub request_ms: f64,
}

/// What a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// A replica (index into `Experiment::replicas`).
    Replica(usize),
    /// A GPU (index into `Experiment::gpus`).
    Gpu(usize),
}

/// A source of faults, resolved against the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSource {
    /// Kind.
    pub kind: FaultKind,
    /// What it hits.
    pub target: FaultTarget,
    /// Faults per second for a random process; `None` for one injected fault.
    pub rate_per_s: Option<f64>,
    /// When an injected fault strikes, seconds.
    pub at_s: f64,
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
    /// Contexts share it by MPS (concurrently) rather than by time-slicing.
    pub mps: bool,
}

/// A replica of a model on a partition.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// Index into `Experiment::models` (and `Experiment::deployments`).
    pub model: usize,
    /// Index into `Experiment::partitions`.
    pub partition: usize,
    /// Memory the replica holds from the start, bytes.
    pub footprint_bytes: u64,
    /// Dynamic batching (request-level models).
    pub batching: BatchConfig,
    /// Engine limits and KV cache (LLMs).
    pub llm: Option<LlmConfig>,
    /// Bytes of one KV-cache block (LLMs; 0 otherwise).
    pub kv_block_bytes: u64,
    /// MPS active-thread percentage (100 elsewhere).
    pub active_thread_pct: f64,
    /// MPS pinned-memory limit, bytes (`None`: the partition's memory).
    pub memory_limit_bytes: Option<u64>,
}

/// A deployment, resolved: its replicas and how requests reach them.
#[derive(Clone, Debug)]
pub struct DeploymentSpec {
    /// Indices into `Experiment::replicas`.
    pub replicas: Vec<usize>,
    /// Routing policy.
    pub routing: RoutingPolicy,
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
    /// Deployments, one per model, in the same order as `models`.
    pub deployments: Vec<DeploymentSpec>,
    /// The trace a trace workload replays, loaded and checked.
    pub trace: Option<Arc<Trace>>,
    /// Seconds during which requests arrive (closed loop: ramps included).
    pub duration_s: f64,
    /// Fault sources (empty without `[faults]`).
    pub fault_sources: Vec<FaultSource>,
}

impl Experiment {
    /// Load, merge, parse and validate an experiment file.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Experiment, InputError> {
        let merged = load_merged(path, 0)?;
        let raw: RawExperiment = config::from_value(merged, path)?;
        // Already made relative to the file that set it (see `load_merged`).
        let models_dir = raw.models_dir.as_ref().map(PathBuf::from);
        Self::resolve(raw, path, catalogue, models_dir.as_deref())
    }

    /// Validate a parsed experiment; `origin` is used in error messages. Model profiles come
    /// from the catalogue's `--models` folder, then `models_dir`, then the built-in ones.
    pub fn resolve(
        raw: RawExperiment,
        origin: &Path,
        catalogue: &Catalogue,
        models_dir: Option<&Path>,
    ) -> Result<Experiment, InputError> {
        Self::resolve_patched(raw, origin, catalogue, models_dir, &BTreeMap::new())
    }

    /// [`Self::resolve`], with `profile_patches` (model name -> TOML table) deep-merged over
    /// those models' profile files before they are parsed (sweeps over profile parameters).
    pub fn resolve_patched(
        raw: RawExperiment,
        origin: &Path,
        catalogue: &Catalogue,
        models_dir: Option<&Path>,
        profile_patches: &BTreeMap<String, toml::Value>,
    ) -> Result<Experiment, InputError> {
        let sources = crate::models::Sources::new([catalogue.models_dir(), models_dir]);
        raw.workload.check(origin)?;
        let trace = match &raw.workload {
            WorkloadSpec::Trace(t) => Some(Arc::new(Trace::from_spec(t, origin)?)),
            _ => None,
        };
        let duration_s = crate::arrivals::duration_s(&raw.workload, trace.as_deref());
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
                        mps: false,
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
                        mps: false,
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
                            mps: false,
                        });
                    }
                    (names.len(), 1)
                }
                SharingSpec::Mps {
                    replicas,
                    active_thread_pct,
                    ..
                } => {
                    if !(1..=MPS_MAX_CLIENTS).contains(replicas) {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{field}.sharing.replicas"),
                            replicas,
                            &format!("an integer in [1, {MPS_MAX_CLIENTS}] (MPS clients per GPU)"),
                        ));
                    }
                    if !active_thread_pct.is_empty()
                        && active_thread_pct.len() != *replicas as usize
                    {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{field}.sharing.active_thread_pct"),
                            format!("{} values", active_thread_pct.len()),
                            &format!("one percentage per client: {replicas} values"),
                        ));
                    }
                    for (i, &p) in active_thread_pct.iter().enumerate() {
                        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
                            return Err(InputError::invalid(
                                origin,
                                &format!("{field}.sharing.active_thread_pct[{i}]"),
                                crate::config::num(p),
                                "a percentage in (0, 100]: a client cannot use more than the GPU",
                            ));
                        }
                    }
                    partitions.push(PartitionSpec {
                        gpu: gi,
                        resources: spec.full_partition(),
                        time_slice_ns: (DEFAULT_TIME_SLICE_US * 1e3) as u64,
                        switch_ns: 0,
                        mps: true,
                    });
                    (1, *replicas)
                }
            };
            gpu_parts.insert(g.id.clone(), (first, count, cap, gi));
            gpus.push(spec);
        }

        if raw.deployments.is_empty() {
            return Err(InputError::invalid(
                origin,
                "deployments",
                "[]",
                "at least one deployment",
            ));
        }
        let mut models = Vec::new();
        let mut replicas = Vec::new();
        let mut deployments = Vec::new();
        let mut contexts = vec![0u32; partitions.len()];
        for (di, d) in raw.deployments.iter().enumerate() {
            let field = format!("deployments[{di}]");
            let patch = profile_patches.get(&d.model);
            let model = load_model(&sources, &d.model, origin, &format!("{field}.model"), patch)?;
            if d.replicas.is_empty() {
                return Err(InputError::invalid(
                    origin,
                    &format!("{field}.replicas"),
                    "[]",
                    "at least one replica placement",
                ));
            }
            let batching = batch_config(d, &model, origin, &field)?;
            let engine = engine_spec(d, &model, origin, &field)?;
            let mi = models.len();
            let mut ids = Vec::new();
            for (ri, r) in d.replicas.iter().enumerate() {
                let rf = format!("{field}.replicas[{ri}]");
                let part = place(&raw, &gpu_parts, r, &rf, origin)?;
                contexts[part] += 1;
                let (_, _, cap, gi) = gpu_parts[&r.gpu];
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
                        SharingSpec::Mps { replicas, .. } => format!(
                            "at most {replicas} MPS clients on GPU {} (device-plugin replicas = {replicas})",
                            r.gpu
                        ),
                    };
                    return Err(InputError::invalid(
                        origin,
                        &format!("{rf}.gpu"),
                        &r.gpu,
                        &allowed,
                    ));
                }
                let resources = &partitions[part].resources;
                // Under MPS each client has its own thread percentage and may have a pinned
                // memory limit, which is then all the memory it sees.
                let (active_thread_pct, memory_limit_bytes) = match &raw.gpus[gi].sharing {
                    SharingSpec::Mps {
                        replicas,
                        active_thread_pct,
                        memory_limit,
                    } => (
                        active_thread_pct
                            .get(contexts[part] as usize - 1)
                            .copied()
                            .unwrap_or(100.0 / f64::from(*replicas)),
                        (*memory_limit == MpsMemoryLimit::Equal)
                            .then(|| resources.memory_bytes / u64::from(*replicas)),
                    ),
                    _ => (100.0, None),
                };
                let visible_bytes = memory_limit_bytes.unwrap_or(resources.memory_bytes);
                let (footprint_bytes, llm, kv_block_bytes) = match (&model.kind, &engine) {
                    (ModelKind::Llm(l), Some(e)) => {
                        let memory = llm_memory(l, e, visible_bytes);
                        let kv = match e.kv_cache {
                            KvCacheMode::Preallocated => {
                                if memory.kv_bytes < memory.block_bytes as f64 {
                                    return Err(InputError::invalid(
                                        origin,
                                        &format!("{field}.engine.memory_fraction"),
                                        crate::config::num(e.memory_fraction),
                                        &format!(
                                            "a fraction of {} {} ({:.1} GB) that holds the weights and runtime of {} ({:.1} GB) and leaves room for a KV cache",
                                            r.gpu,
                                            resources.label,
                                            visible_bytes as f64 / 1e9,
                                            model.name,
                                            memory.fixed_bytes / 1e9
                                        ),
                                    ));
                                }
                                KvPolicy::Preallocated {
                                    blocks: (memory.kv_bytes / memory.block_bytes as f64) as u64,
                                }
                            }
                            KvCacheMode::OnDemand => KvPolicy::OnDemand,
                        };
                        let cfg = LlmConfig {
                            max_num_seqs: e.max_num_seqs.unwrap_or(l.max_batch),
                            max_batched_tokens: e.max_batched_tokens,
                            block_tokens: e.block_tokens,
                            kv,
                        };
                        (memory.footprint_bytes(kv), Some(cfg), memory.block_bytes)
                    }
                    _ => (model.memory_bytes(), None, 0),
                };
                if let Some(limit) = memory_limit_bytes
                    && footprint_bytes > limit
                {
                    return Err(InputError::invalid(
                        origin,
                        &rf,
                        format!(
                            "{} ({:.1} GB) on {}",
                            model.name,
                            footprint_bytes as f64 / 1e9,
                            r.gpu
                        ),
                        &format!(
                            "a client within its MPS pinned-memory limit of {:.1} GB (the card / replicas; {MPS_MEMORY_HINT})",
                            limit as f64 / 1e9
                        ),
                    ));
                }
                replicas.push(ReplicaSpec {
                    model: mi,
                    partition: part,
                    footprint_bytes,
                    batching: batching.clone(),
                    llm,
                    kv_block_bytes,
                    active_thread_pct,
                    memory_limit_bytes,
                });
                ids.push(replicas.len() - 1);
                check_memory(
                    &raw,
                    &partitions,
                    &models,
                    &model,
                    &replicas,
                    part,
                    &rf,
                    origin,
                )?;
            }
            deployments.push(DeploymentSpec {
                replicas: ids,
                routing: d.routing,
            });
            models.push(model);
        }
        for (kind, allowed) in [("asr", 0..=1), ("llm", 1..=1), ("tts", 0..=1)] {
            let n = models.iter().filter(|m| kind_name(&m.kind) == kind).count();
            if !allowed.contains(&n) {
                return Err(InputError::invalid(
                    origin,
                    "deployments",
                    format!("{n} {kind} deployments"),
                    "one llm deployment, with at most one asr deployment before it and one tts deployment after it",
                ));
            }
        }
        let has_asr = models.iter().any(|m| matches!(m.kind, ModelKind::Asr(_)));
        match (&raw.audio, has_asr) {
            (None, true) => {
                return Err(InputError::invalid(
                    origin,
                    "audio",
                    "missing",
                    "an [audio] table (clips_s, chunk_ms, chunk_interval_ms) when an asr model is deployed",
                ));
            }
            (Some(audio), _) => audio.check(origin)?,
            (None, false) => {}
        }
        for m in &models {
            if let (ModelKind::Asr(a), Some(audio)) = (&m.kind, &raw.audio)
                && (a.chunk_ms - audio.chunk_ms).abs() > 1e-9
            {
                return Err(InputError::invalid(
                    origin,
                    "audio.chunk_ms",
                    audio.chunk_ms,
                    &format!(
                        "{} ms, the chunk size the ASR profile {} is written for",
                        a.chunk_ms, m.name
                    ),
                ));
            }
        }
        Experiment {
            raw,
            gpus,
            partitions,
            models,
            replicas,
            deployments,
            fault_sources: Vec::new(),
            trace,
            duration_s,
        }
        .with_faults(origin)
    }

    /// Check `[faults]` and `[slo]` and resolve fault sources to replicas and GPUs.
    fn with_faults(mut self, origin: &Path) -> Result<Experiment, InputError> {
        if let Some(slo) = &self.raw.slo {
            positive(origin, "slo.request_ms", slo.request_ms)?;
        }
        let Some(f) = self.raw.faults.clone() else {
            return Ok(self);
        };
        f.check(origin)?;
        let model_index = |name: &str, field: &str| {
            self.models
                .iter()
                .position(|m| m.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                    InputError::invalid(
                        origin,
                        field,
                        format!("\"{name}\""),
                        &format!("a deployed model: {}", known.join(", ")),
                    )
                })
        };
        let gpu_index = |id: &str, field: &str| {
            self.raw
                .gpus
                .iter()
                .position(|g| g.id == id)
                .ok_or_else(|| {
                    let known: Vec<&str> = self.raw.gpus.iter().map(|g| g.id.as_str()).collect();
                    InputError::invalid(
                        origin,
                        field,
                        format!("\"{id}\""),
                        &format!("one of the GPU ids: {}", known.join(", ")),
                    )
                })
        };
        let mut sources = Vec::new();
        for (i, r) in f.random.iter().enumerate() {
            let rate = 1.0 / (r.mtbf_h * 3600.0);
            let targets: Vec<FaultTarget> = if r.kind.per_replica() {
                let mut models = Vec::new();
                for (k, m) in r.models.iter().enumerate() {
                    models.push(model_index(m, &format!("faults.random[{i}].models[{k}]"))?);
                }
                (0..self.replicas.len())
                    .filter(|&x| models.is_empty() || models.contains(&self.replicas[x].model))
                    .map(FaultTarget::Replica)
                    .collect()
            } else {
                let mut gpus = Vec::new();
                for (k, g) in r.gpus.iter().enumerate() {
                    gpus.push(gpu_index(g, &format!("faults.random[{i}].gpus[{k}]"))?);
                }
                (0..self.gpus.len())
                    .filter(|g| gpus.is_empty() || gpus.contains(g))
                    .map(FaultTarget::Gpu)
                    .collect()
            };
            for target in targets {
                sources.push(FaultSource {
                    kind: r.kind,
                    target,
                    rate_per_s: Some(rate),
                    at_s: 0.0,
                });
            }
        }
        for (i, inj) in f.inject.iter().enumerate() {
            let field = format!("faults.inject[{i}]");
            let target = match (&inj.model, &inj.gpu) {
                (Some(m), _) => {
                    let mi = model_index(m, &format!("{field}.model"))?;
                    let reps = &self.deployments[mi].replicas;
                    let Some(&r) = reps.get(inj.replica) else {
                        return Err(InputError::invalid(
                            origin,
                            &format!("{field}.replica"),
                            inj.replica,
                            &format!("a replica index 0..{} of {m}", reps.len() - 1),
                        ));
                    };
                    FaultTarget::Replica(r)
                }
                (None, Some(g)) => FaultTarget::Gpu(gpu_index(g, &format!("{field}.gpu"))?),
                (None, None) => unreachable!("invariant: checked by FaultsSpec::check"),
            };
            sources.push(FaultSource {
                kind: inj.kind,
                target,
                rate_per_s: None,
                at_s: inj.at_s,
            });
        }
        self.fault_sources = sources;
        Ok(self)
    }

    /// The replicas a fault of `kind` on `target` takes down: the blast radius, which follows
    /// the sharing mode (see [`crate::faults`]).
    pub fn blast_radius(&self, kind: FaultKind, target: FaultTarget) -> Vec<usize> {
        let on_partition = |p: usize| -> Vec<usize> {
            (0..self.replicas.len())
                .filter(|&r| self.replicas[r].partition == p)
                .collect()
        };
        let on_gpus = |gpus: &[usize]| -> Vec<usize> {
            (0..self.replicas.len())
                .filter(|&r| gpus.contains(&self.partitions[self.replicas[r].partition].gpu))
                .collect()
        };
        match (kind, target) {
            (FaultKind::AppCrash, FaultTarget::Replica(r)) => {
                let p = self.replicas[r].partition;
                match self.raw.gpus[self.partitions[p].gpu].sharing {
                    // One fault domain: every context on the GPU goes; under MPS the fatal
                    // exception reaches every client of the server.
                    SharingSpec::TimeSlicing { .. } | SharingSpec::Mps { .. } => on_partition(p),
                    SharingSpec::Mig { .. } | SharingSpec::Dedicated => vec![r],
                }
            }
            (FaultKind::EccContained, FaultTarget::Replica(r)) => {
                let p = self.replicas[r].partition;
                match self.raw.gpus[self.partitions[p].gpu].sharing {
                    // Separate contexts contain it, except MPS's one shared server context.
                    SharingSpec::Mps { .. } => on_partition(p),
                    _ => vec![r],
                }
            }
            (FaultKind::Oom, FaultTarget::Replica(r)) => vec![r],
            (FaultKind::EccUncontained, FaultTarget::Gpu(g)) => on_gpus(&[g]),
            (FaultKind::FellOffBus, FaultTarget::Gpu(g)) => {
                let node = &self.raw.gpus[g].node;
                let gpus: Vec<usize> = (0..self.gpus.len())
                    .filter(|&x| &self.raw.gpus[x].node == node)
                    .collect();
                on_gpus(&gpus)
            }
            (k, t) => panic!("invariant: {} faults do not target {t:?}", k.name()),
        }
    }

    /// Index of the model of kind `kind` (`asr`, `llm`, `tts`), if one is deployed.
    pub fn model_of_kind(&self, kind: &str) -> Option<usize> {
        self.models.iter().position(|m| kind_name(&m.kind) == kind)
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
    sources: &crate::models::Sources,
    name: &str,
    origin: &Path,
    field: &str,
    patch: Option<&toml::Value>,
) -> Result<ModelProfile, InputError> {
    let Some(found) = sources.find(name)? else {
        return Err(InputError::invalid(
            origin,
            field,
            format!("\"{name}\""),
            &sources.describe(),
        ));
    };
    let path = &found.origin;
    let p = match patch {
        None => ModelProfile::from_toml_str(&found.text, path)?,
        Some(patch) => {
            let mut v: toml::Value = config::parse_toml(&found.text, path)?;
            merge(&mut v, patch.clone());
            ModelProfile::from_value(v, path)?
        }
    };
    if p.name != name {
        return Err(InputError::invalid(
            path,
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

/// The experiment file at `path` as one TOML value, its `extends` merged underneath it and
/// `models_dir` made relative to the working folder: what [`Experiment::load`] parses. Sweeps
/// edit this value before resolving it with [`resolve_value`].
pub fn load_merged_value(path: &Path) -> Result<toml::Value, InputError> {
    load_merged(path, 0)
}

/// Parse and validate a merged experiment value (see [`load_merged_value`]); `origin` names the
/// file in messages. `profile_patches` maps a model
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
    let models_dir = raw.models_dir.as_ref().map(PathBuf::from);
    Experiment::resolve_patched(
        raw,
        origin,
        catalogue,
        models_dir.as_deref(),
        profile_patches,
    )
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
        // So is a trace's path.
        if let Some(toml::Value::Table(w)) = t.get_mut("workload")
            && let Some(toml::Value::String(p)) = w.get("path")
        {
            let abs = base_dir(path).join(p).to_string_lossy().to_string();
            w.insert("path".into(), toml::Value::String(abs));
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

/// How an LLM replica's memory divides on a partition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlmMemory {
    /// Weights and runtime (CUDA context, activations): held whatever the load, bytes.
    pub fixed_bytes: f64,
    /// `memory_fraction` of the partition: what a preallocating engine takes, bytes.
    pub budget_bytes: f64,
    /// What is left of the budget for the KV cache, bytes (negative if nothing).
    pub kv_bytes: f64,
    /// One KV block (`block_tokens` tokens), bytes.
    pub block_bytes: u64,
}

impl LlmMemory {
    /// Memory held from start-up under a KV policy.
    pub fn footprint_bytes(&self, kv: KvPolicy) -> u64 {
        match kv {
            KvPolicy::Preallocated { .. } => self.budget_bytes as u64,
            KvPolicy::OnDemand => self.fixed_bytes as u64,
        }
    }
}

/// Memory of an LLM replica with engine settings `e` on a partition of `partition_bytes`.
pub fn llm_memory(l: &LlmProfile, e: &EngineSpec, partition_bytes: u64) -> LlmMemory {
    let fixed = l.params * l.bytes_per_param + l.runtime_gb * 1e9;
    let budget = e.memory_fraction * partition_bytes as f64;
    LlmMemory {
        fixed_bytes: fixed,
        budget_bytes: budget,
        kv_bytes: budget - fixed,
        block_bytes: (l.kv_bytes_per_token * f64::from(e.block_tokens)).ceil() as u64,
    }
}

/// The partition a placement names, checked against the GPU's sharing mode.
fn place(
    raw: &RawExperiment,
    gpu_parts: &BTreeMap<String, (usize, usize, u32, usize)>,
    r: &ReplicaPlacement,
    rf: &str,
    origin: &Path,
) -> Result<usize, InputError> {
    let Some(&(first, count, _, gi)) = gpu_parts.get(&r.gpu) else {
        let known: Vec<&str> = raw.gpus.iter().map(|g| g.id.as_str()).collect();
        return Err(InputError::invalid(
            origin,
            &format!("{rf}.gpu"),
            &r.gpu,
            &format!("one of the GPU ids: {}", known.join(", ")),
        ));
    };
    let is_mig = matches!(raw.gpus[gi].sharing, SharingSpec::Mig { .. });
    match (is_mig, r.instance) {
        (true, Some(i)) if i < count => Ok(first + i),
        (true, other) => Err(InputError::invalid(
            origin,
            &format!("{rf}.instance"),
            other.map_or("missing".to_string(), |i| i.to_string()),
            &format!("a MIG instance index 0..{} on GPU {}", count - 1, r.gpu),
        )),
        (false, Some(i)) => Err(InputError::invalid(
            origin,
            &format!("{rf}.instance"),
            i,
            &format!("no instance: GPU {} is not in MIG mode", r.gpu),
        )),
        (false, None) => Ok(first),
    }
}

/// The replicas on partition `part` must fit its memory at start-up. Under MIG a replica
/// that does not fit its instance is refused; under time-slicing the co-located replicas
/// share the card with no isolation, so an over-committed card is refused at load time.
#[allow(clippy::too_many_arguments)]
fn check_memory(
    raw: &RawExperiment,
    partitions: &[PartitionSpec],
    models: &[ModelProfile],
    current: &ModelProfile,
    replicas: &[ReplicaSpec],
    part: usize,
    rf: &str,
    origin: &Path,
) -> Result<(), InputError> {
    let on_it: Vec<&ReplicaSpec> = replicas.iter().filter(|r| r.partition == part).collect();
    let used: u64 = on_it.iter().map(|r| r.footprint_bytes).sum();
    let p = &partitions[part];
    let avail = p.resources.memory_bytes;
    if used <= avail {
        return Ok(());
    }
    let name = |r: &ReplicaSpec| models.get(r.model).unwrap_or(current).name.clone();
    let parts: Vec<String> = on_it
        .iter()
        .map(|r| format!("{} {:.1} GB", name(r), r.footprint_bytes as f64 / 1e9))
        .collect();
    let g = &raw.gpus[p.gpu];
    let how = match g.sharing {
        SharingSpec::Mig { .. } => "a replica whose memory fits its MIG instance".to_string(),
        SharingSpec::TimeSlicing { .. } => "co-located replicas whose memory fits the card: under time-slicing they share it with no isolation (lower an LLM's engine.memory_fraction, use kv_cache = \"on-demand\", or move a replica)".to_string(),
        SharingSpec::Dedicated => "a replica whose memory fits the GPU".to_string(),
        SharingSpec::Mps { .. } => "MPS clients whose memory fits the card together (lower an LLM's engine.memory_fraction or move a replica)".to_string(),
    };
    Err(InputError::invalid(
        origin,
        rf,
        format!(
            "{} on {} {}: {} = {:.1} GB",
            current.name,
            g.id,
            p.resources.label,
            parts.join(" + "),
            used as f64 / 1e9
        ),
        &format!("{how}; {:.1} GB available", avail as f64 / 1e9),
    ))
}

/// Dynamic batching of a deployment, checked.
fn batch_config(
    d: &Deployment,
    model: &ModelProfile,
    origin: &Path,
    field: &str,
) -> Result<BatchConfig, InputError> {
    let Some(b) = &d.batching else {
        return Ok(BatchConfig::default());
    };
    let f = format!("{field}.batching");
    if let ModelKind::Llm(_) = model.kind {
        return Err(InputError::invalid(
            origin,
            &f,
            "a [batching] table",
            &format!(
                "no [batching] for the llm {}: it batches by iteration; set [deployments.engine] (max_num_seqs, max_batched_tokens) instead",
                model.name
            ),
        ));
    }
    if !(1..=4096).contains(&b.max_batch_size) {
        return Err(InputError::invalid(
            origin,
            &format!("{f}.max_batch_size"),
            b.max_batch_size,
            "an integer in [1, 4096]",
        ));
    }
    non_negative(
        origin,
        &format!("{f}.max_queue_delay_us"),
        b.max_queue_delay_us,
    )?;
    if b.max_queue_delay_us > 1e7 {
        return Err(InputError::invalid(
            origin,
            &format!("{f}.max_queue_delay_us"),
            crate::config::num(b.max_queue_delay_us),
            "at most 1e7 us (10 s)",
        ));
    }
    for (i, &p) in b.preferred_batch_sizes.iter().enumerate() {
        if p == 0 || p > b.max_batch_size {
            return Err(InputError::invalid(
                origin,
                &format!("{f}.preferred_batch_sizes[{i}]"),
                p,
                &format!("a size in [1, max_batch_size = {}]", b.max_batch_size),
            ));
        }
    }
    Ok(BatchConfig {
        max_batch_size: b.max_batch_size,
        max_queue_delay_ns: (b.max_queue_delay_us * 1e3).round() as u64,
        preferred_batch_sizes: b.preferred_batch_sizes.clone(),
    })
}

/// Engine settings of a deployment, checked (`None` for models that are not LLMs).
fn engine_spec(
    d: &Deployment,
    model: &ModelProfile,
    origin: &Path,
    field: &str,
) -> Result<Option<EngineSpec>, InputError> {
    let f = format!("{field}.engine");
    let ModelKind::Llm(_) = model.kind else {
        if d.engine.is_some() {
            return Err(InputError::invalid(
                origin,
                &f,
                "an [engine] table",
                &format!(
                    "no [engine] for the {} model {}: engine settings are for llms; use [deployments.batching]",
                    kind_name(&model.kind),
                    model.name
                ),
            ));
        }
        return Ok(None);
    };
    let e = d.engine.clone().unwrap_or_default();
    if let Some(0) = e.max_num_seqs {
        return Err(InputError::invalid(
            origin,
            &format!("{f}.max_num_seqs"),
            0,
            "an integer >= 1",
        ));
    }
    if e.max_batched_tokens == 0 {
        return Err(InputError::invalid(
            origin,
            &format!("{f}.max_batched_tokens"),
            0,
            "an integer >= 1",
        ));
    }
    if !(1..=4096).contains(&e.block_tokens) {
        return Err(InputError::invalid(
            origin,
            &format!("{f}.block_tokens"),
            e.block_tokens,
            "an integer in [1, 4096]",
        ));
    }
    crate::config::fraction(origin, &format!("{f}.memory_fraction"), e.memory_fraction)?;
    Ok(Some(e))
}

/// The model profiles in `dir` (file stems of its `.toml` files), sorted; empty if unreadable.
pub fn profile_names(dir: &Path) -> Vec<String> {
    crate::models::profile_names(dir)
}
