//! Synthetic measurements for tests and examples. **Not measured on a GPU**: a node described
//! from the documented A100/H100 facts (`hardware/gpus.toml`, from docs/sources.md), recordings of
//! it under a chosen load, and request logs computed by the simulator from a known profile
//! (the LLM's by full simulation runs, one request each; the ASR's by the simulator's
//! batcher and roofline on one replica).
//!
//! Everything here is deterministic: same arguments, same bytes.

use std::fmt::Write as _;
use std::path::Path;

use rand::RngExt;

use super::predict;
use super::validate::replay_summary;
use crate::engine::Streams;
use crate::error::InputError;
use crate::experiment::Experiment;
use crate::hardware::Partition;
use crate::nvml::recording::{
    End, FORMAT, GpuInfo, GpuInstanceRec, GpuSample, Header, Metric, MigDeviceInfo, MigModeRec,
    MigSample, Node, ProcessRec, ProcessUtilizationRec, Sample, StoppedBy, VERSION, Writer,
};
use crate::nvml::{CallErrorKind, MIG_NO_UTILIZATION};
use crate::profile::{ModelKind, ModelProfile};
use crate::serving::{BatchConfig, Batcher, batcher::Decision};
use crate::workload::Arrival;

/// The note synthetic recordings carry in their header.
pub const NOTE: &str = "SYNTHETIC: made by gpushare's calibrate::synth from documented \
     A100/H100 facts and the simulator; not measured on a GPU";

/// Start of the synthetic recordings: 2026-05-04T09:00:00Z, Unix ns.
pub const START_UNIX_NS: i128 = 1_777_885_200_000_000_000;

/// Process ids of the synthetic node's model servers: ASR, TTS (on the A100's two 3g.40gb
/// instances) and the LLM (on the H100).
pub const PIDS: [u32; 3] = [4101, 4102, 4103];

fn mib(n: u64) -> u64 {
    n << 20
}

fn proc(pid: u32, name: &str, bytes: u64) -> ProcessRec {
    ProcessRec {
        pid,
        name: Some(name.into()),
        used_memory_bytes: Metric::of(bytes),
    }
}

/// A node with an A100-SXM4-80GB in MIG mode (two 3g.40gb instances at memory slices 0 and
/// 4, the seed study's layout) serving ASR and TTS, and an H100 80GB HBM3 without MIG
/// serving the LLM. Memory and SM figures are the catalogue's (docs/sources.md §1.4, §1.5);
/// process memory is the seed study's measured footprints (ASR 9.6 GB, TTS 13.4 GB, LLM
/// 73.2 GB); ids and names are made up.
pub fn node() -> Node {
    let not_supported = |what: &str| Metric::absent(format!("NotSupported{what}"));
    let asr = proc(PIDS[0], "tritonserver", mib(9155)); // 9.6 GB
    let tts = proc(PIDS[1], "tritonserver", mib(12779)); // 13.4 GB
    let llm = proc(PIDS[2], "python3", mib(69809)); // 73.2 GB
    let mig = |index: u32, gi: u32, start: u32, uuid: &str, p: &ProcessRec| MigDeviceInfo {
        index,
        name: "NVIDIA A100-SXM4-80GB MIG 3g.40gb".into(),
        uuid: uuid.into(),
        profile: Some("3g.40gb".into()),
        gpu_instance: Metric::of(GpuInstanceRec {
            id: gi,
            compute_instance_id: 0,
            profile_id: 9,
            placement_start: start,
            placement_size: 4,
        }),
        sms: Metric::of(42),
        memory_total_bytes: Metric::of(mib(40192)),
        processes: Metric::of(vec![p.clone()]),
    };
    Node {
        driver_version: Metric::of("550.54.15".into()),
        cuda_version: Metric::of("12.4".into()),
        gpus: vec![
            GpuInfo {
                index: 0,
                name: "NVIDIA A100-SXM4-80GB".into(),
                uuid: "GPU-5a1f0c7e-0000-4000-8000-00000000a100".into(),
                pci_device_id: Metric::of("0x20B210DE".into()),
                memory_total_bytes: Metric::of(mib(80896)),
                // NVML's device attributes answer for MIG device handles only.
                sms: not_supported(""),
                mig_mode: Metric::of(MigModeRec {
                    current: true,
                    pending: true,
                }),
                mig_devices: vec![
                    mig(0, 1, 0, "MIG-5a1f0c7e-0000-4000-8000-0000000a1001", &asr),
                    mig(1, 2, 4, "MIG-5a1f0c7e-0000-4000-8000-0000000a1002", &tts),
                ],
                processes: Metric::of(vec![asr.clone(), tts.clone()]),
            },
            GpuInfo {
                index: 1,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-5a1f0c7e-0000-4000-8000-00000000b100".into(),
                pci_device_id: Metric::of("0x233010DE".into()),
                memory_total_bytes: Metric::of(mib(81152)),
                sms: not_supported(""),
                mig_mode: Metric::of(MigModeRec {
                    current: false,
                    pending: false,
                }),
                mig_devices: Vec::new(),
                processes: Metric::of(vec![llm]),
            },
        ],
    }
}

/// Samples of `node` every `interval_ms`, GPU `g` busy `busy(g, t_ms)` (a fraction) over
/// the interval before `t_ms`. Values NVML does not give on MIG are absent with its reason.
/// SM clocks are the boost clocks (A100 1410 MHz, docs/sources.md §4; H100 1980 MHz, datasheet);
/// power is illustrative (idle 60 W plus up to 300 W with load).
pub fn samples(
    node: &Node,
    interval_ms: u64,
    count: usize,
    busy: &dyn Fn(u32, u64) -> f64,
) -> Vec<Sample> {
    let start_us = (START_UNIX_NS / 1000) as u64;
    (0..count as u64)
        .map(|k| {
            let t_ms = k * interval_ms;
            let gpus = node
                .gpus
                .iter()
                .map(|g| {
                    let mig_on = g.mig_mode.get().is_some_and(|m| m.current);
                    let b = busy(g.index, t_ms).clamp(0.0, 1.0);
                    let pct = (b * 100.0).round() as u32;
                    let reason = format!(
                        "{} {MIG_NO_UTILIZATION}",
                        CallErrorKind::NotSupported.name()
                    );
                    let procs = g.processes.get().cloned().unwrap_or_default();
                    let held: u64 = procs.iter().filter_map(|p| p.used_memory_bytes.get()).sum();
                    let per_process = procs
                        .first()
                        .filter(|_| pct > 0)
                        .map(|p| ProcessUtilizationRec {
                            pid: p.pid,
                            timestamp_us: start_us + t_ms * 1000,
                            sm_pct: pct,
                            memory_pct: (b * 60.0).round() as u32,
                        })
                        .into_iter()
                        .collect();
                    let h100 = g.name.contains("H100");
                    GpuSample {
                        index: g.index,
                        utilization_gpu_pct: if mig_on {
                            Metric::absent(reason.clone())
                        } else {
                            Metric::of(pct)
                        },
                        utilization_memory_pct: if mig_on {
                            Metric::absent(reason.clone())
                        } else {
                            Metric::of((b * 60.0).round() as u32)
                        },
                        memory_used_bytes: Metric::of(held + mib(512)),
                        sm_clock_mhz: Metric::of(if h100 { 1980 } else { 1410 }),
                        power_mw: Metric::of(60_000 + (b * 300_000.0).round() as u32),
                        throttle_reasons: Metric::of(if pct == 0 {
                            vec!["gpu_idle".to_string()]
                        } else {
                            Vec::new()
                        }),
                        processes: Metric::of(procs.clone()),
                        process_utilization: if mig_on {
                            Metric::absent(reason.clone())
                        } else {
                            Metric::of(per_process)
                        },
                        mig_devices: g
                            .mig_devices
                            .iter()
                            .map(|m| {
                                let ps = m.processes.get().cloned().unwrap_or_default();
                                MigSample {
                                    index: m.index,
                                    memory_used_bytes: Metric::of(
                                        ps.iter()
                                            .filter_map(|p| p.used_memory_bytes.get())
                                            .sum::<u64>()
                                            + mib(64),
                                    ),
                                    processes: Metric::of(ps),
                                }
                            })
                            .collect(),
                    }
                })
                .collect();
            Sample { t_ms, gpus }
        })
        .collect()
}

/// A recording file's text: header (with [`NOTE`]), the samples, and an end record.
pub fn recording(node: &Node, interval_ms: u64, samples: &[Sample]) -> String {
    let mut w = Writer::new(Vec::new());
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        tool: "gpushare calibrate::synth".into(),
        started_at: crate::nvml::sampler::rfc3339(START_UNIX_NS),
        interval_ms,
        note: Some(NOTE.into()),
        node: node.clone(),
    };
    let io = "invariant: writing to memory cannot fail";
    w.header(&header).expect(io);
    for s in samples {
        w.sample(s).expect(io);
    }
    w.end(&End {
        t_ms: samples.len() as u64 * interval_ms,
        samples: samples.len() as u64,
        stopped_by: StoppedBy::Duration,
    })
    .expect(io);
    String::from_utf8(w.into_inner()).expect("invariant: JSON is UTF-8")
}

/// Kernel time of a GPU: `(start, end, kernel ns)` of each execution, Unix ns.
pub type Busy = Vec<(i128, i128, f64)>;

/// The fraction of `[from, to)` the executions kept kernels running (each spreads its kernel
/// time evenly over its span).
pub fn busy_fraction(busy: &Busy, from: i128, to: i128) -> f64 {
    let mut k = 0.0;
    for &(s, e, kernel) in busy {
        let overlap = (e.min(to) - s.max(from)).max(0) as f64;
        if e > s {
            k += kernel * overlap / (e - s) as f64;
        }
    }
    k / (to - from) as f64
}

/// Unix ns as a decimal of seconds with 9 digits.
fn secs(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// An AIPerf `profile_export.jsonl` for `requests` (prompt, output tokens) sent one at a time
/// to the LLM of `exp` (an experiment that deploys one LLM and no ASR or TTS), `gap_ns` apart
/// from [`START_UNIX_NS`]: each request's times come from a full simulation run of it alone.
/// Also the kernel time each kept the LLM's GPU busy.
pub fn llm_aiperf_log(
    exp: &Experiment,
    requests: &[(u32, u32)],
    gap_ns: i128,
) -> Result<(String, Busy), InputError> {
    let mi = exp
        .model_of_kind("llm")
        .expect("invariant: the caller deploys an llm");
    let m = &exp.models[mi];
    let ModelKind::Llm(l) = &m.kind else {
        unreachable!("invariant: model_of_kind");
    };
    let replica = exp
        .replicas
        .iter()
        .find(|r| r.model == mi)
        .expect("invariant: a deployment has a replica");
    let part = &exp.partitions[replica.partition].resources;
    let tokens = replica.llm.map_or(8192, |c| c.max_batched_tokens);
    let mut out = String::new();
    let mut busy = Vec::new();
    for (i, &(prompt, output)) in requests.iter().enumerate() {
        let arrival = Arrival {
            at_ns: 0,
            prompt_tokens: Some(prompt),
            output_tokens: Some(output),
            sentences: Some(1),
            ..Arrival::default()
        };
        let s = replay_summary(exp, &[arrival], Path::new("synthetic"))?;
        assert_eq!(s.completed, 1, "invariant: a lone request completes");
        let ttft_ns = (s.latency_ms.llm_ttft.mean * 1e6).round() as i128;
        let total_ns = (s.latency_ms.llm_total.mean * 1e6).round() as i128;
        let start = START_UNIX_NS + i as i128 * gap_ns;
        let end = start + total_ns;
        let d = predict::llm_alone_detail(l, m, part, tokens, prompt, output);
        busy.push((start, end, d.kernel_ns));
        let itl_ms = if output >= 2 {
            (total_ns - ttft_ns) as f64 / 1e6 / f64::from(output - 1)
        } else {
            0.0
        };
        let rec = serde_json::json!({
            "metadata": {
                "session_num": i,
                "x_request_id": format!("synthetic-{i:04}"),
                "x_correlation_id": format!("synthetic-session-{i:04}"),
                "conversation_id": format!("synthetic-conversation-{i:04}"),
                "turn_index": 0,
                "request_start_ns": start as i64,
                "request_ack_ns": (start + ttft_ns) as i64,
                "request_end_ns": end as i64,
                "worker_id": "worker_synthetic",
                "record_processor_id": "record_processor_synthetic",
                "benchmark_phase": "profiling",
                "was_cancelled": false,
                "cancellation_time_ns": null
            },
            "metrics": {
                "input_sequence_length": {"value": prompt, "unit": "tokens"},
                "time_to_first_token": {"value": ttft_ns as f64 / 1e6, "unit": "ms"},
                "request_latency": {"value": total_ns as f64 / 1e6, "unit": "ms"},
                "output_token_count": {"value": output, "unit": "tokens"},
                "output_sequence_length": {"value": output, "unit": "tokens"},
                "inter_token_latency": {"value": itl_ms, "unit": "ms"}
            },
            "error": null
        });
        out.push_str(&serde_json::to_string(&rec).expect("invariant: JSON serializes"));
        out.push('\n');
    }
    Ok((out, busy))
}

/// How the synthetic ASR service is loaded.
#[derive(Clone, Debug)]
pub struct AsrLoad {
    /// Requests (audio streams).
    pub requests: usize,
    /// Poisson arrival rate of requests, per second.
    pub rate_rps: f64,
    /// Chunks per request.
    pub chunks: u32,
    /// Gap between a stream's chunks, ns.
    pub chunk_interval_ns: u64,
    /// Dynamic batching of the replica.
    pub batching: BatchConfig,
    /// Service times are multiplied by `1 + jitter × u`, `u` uniform in [-1, 1] (0: exact).
    pub jitter: f64,
    /// Seed of the arrivals and jitter.
    pub seed: u64,
}

/// The batch on the GPU: when it ends, its chunks (request, queued at), when it started.
type Running = (u64, Vec<(u32, u64)>, u64);

/// A CSV request log of a streaming ASR replica of profile `m` on `part` under `load`: chunk
/// calls queue in the simulator's dynamic batcher and run for the profile's roofline time
/// (times Unix ns from [`START_UNIX_NS`]). Also the kernel time of each execution.
pub fn asr_csv_log(m: &ModelProfile, part: &Partition, load: &AsrLoad) -> (String, Busy) {
    let ModelKind::Asr(a) = &m.kind else {
        panic!("invariant: asr_csv_log needs an asr profile");
    };
    let mut rng = Streams::new(load.seed).stream("synthetic-asr");
    // Chunk arrivals: (time, request, chunk).
    let mut arrivals: Vec<(u64, u32, u32)> = Vec::new();
    let mut t = 0.0f64;
    for r in 0..load.requests as u32 {
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / load.rate_rps;
        let at = (t * 1e9) as u64;
        for c in 0..load.chunks {
            arrivals.push((at + u64::from(c) * load.chunk_interval_ns, r, c));
        }
    }
    arrivals.sort();
    let mut batcher: Batcher<(u32, u64)> = Batcher::new(load.batching.clone());
    let mut rows: Vec<(u64, u32, u64, u64, u32)> = Vec::new(); // queued, request, start, end, batch
    let mut busy = Vec::new();
    let mut running: Option<Running> = None;
    let mut timer: Option<u64> = None;
    let mut next = 0usize;
    let dispatch = |now: u64,
                    items: Vec<(u32, u64)>,
                    running: &mut Option<Running>,
                    rng: &mut rand_chacha::ChaCha8Rng,
                    busy: &mut Busy| {
        let b = predict::asr_batch(a, m, part, items.len() as u32);
        let u: f64 = rng.random();
        let f = 1.0 + load.jitter * (2.0 * u - 1.0);
        let dur = (b.total_ns * f).round().max(1.0) as u64;
        busy.push((
            START_UNIX_NS + i128::from(now),
            START_UNIX_NS + i128::from(now + dur),
            (b.total_ns - b.launch_ns) * f,
        ));
        *running = Some((now + dur, items, now));
    };
    loop {
        let next_arrival = arrivals.get(next).map(|x| x.0);
        let next_end = running.as_ref().map(|r| r.0);
        let now = match [next_end, timer, next_arrival].into_iter().flatten().min() {
            Some(x) => x,
            None => break,
        };
        // Order at one instant: completions, then timers, then arrivals (as the simulator).
        let decision = if next_end == Some(now) {
            let (end, items, start) = running.take().expect("invariant: running");
            let n = items.len() as u32;
            for (req, queued) in items {
                rows.push((queued, req, start, end, n));
            }
            batcher.finish(now)
        } else if timer == Some(now) {
            timer = None;
            batcher.timer(now)
        } else {
            let (at, req, _) = arrivals[next];
            next += 1;
            batcher.push(now, (req, at))
        };
        match decision {
            Decision::Dispatch(items) => dispatch(now, items, &mut running, &mut rng, &mut busy),
            Decision::Arm(at) => timer = Some(at),
            Decision::Wait => {}
        }
    }
    rows.sort_by_key(|r| (r.0, r.1, r.2));
    let mut csv = String::from("request_id,stage,queued_s,start_s,end_s,batch_size,input_size\n");
    let abs = |ns: u64| secs(START_UNIX_NS + i128::from(ns));
    for (queued, req, start, end, n) in rows {
        let _ = writeln!(
            csv,
            "r{req:05},asr,{},{},{},{n},{}",
            abs(queued),
            abs(start),
            abs(end),
            a.chunk_ms / 1000.0
        );
    }
    (csv, busy)
}

/// What the synthetic LLM "really" is: the Nemotron profile with these numbers changed (the
/// fit should find them again from the log).
pub fn llm_truth() -> toml::Value {
    toml::toml! {
        step_overhead_us = 650.0
        [efficiency]
        compute = 0.42
        memory = 0.74
        launch_us = 4.0
    }
    .into()
}

/// What the synthetic ASR "really" is: the Parakeet profile with 700 kernels per step instead
/// of 840 and 1.2 times the work.
pub fn asr_truth() -> toml::Value {
    toml::toml! {
        [chunk]
        kernels = 700.0
        flops = 5.28e9
        bytes = 2.64e9
    }
    .into()
}

/// The synthetic LLM requests: (prompt, output) tokens, prompts 100 to 2000.
pub fn llm_requests(n: usize) -> Vec<(u32, u32)> {
    (0..n as u32)
        .map(|i| (100 + (i * 397) % 1900, 20 + (i * 53) % 180))
        .collect()
}

/// The synthetic ASR load of the fixtures: 24 streams of 38 chunks (4.9 s of audio in 128 ms
/// chunks sent every 10 ms, as the seed harness streams) at 0.2 per second, batched up to 8
/// with a 2 ms delay, service times jittered by ±3%.
pub fn asr_load() -> AsrLoad {
    AsrLoad {
        requests: 24,
        rate_rps: 0.2,
        chunks: 38,
        chunk_interval_ns: 10_000_000,
        batching: BatchConfig {
            max_batch_size: 8,
            max_queue_delay_ns: 2_000_000,
            preferred_batch_sizes: Vec::new(),
        },
        jitter: 0.03,
        seed: 7,
    }
}

/// The experiment at `path` with the model `model`'s profile patched by `patch`.
pub fn experiment_with(
    path: &Path,
    catalogue: &crate::hardware::Catalogue,
    model: &str,
    patch: toml::Value,
) -> Result<Experiment, InputError> {
    let merged = crate::experiment::load_merged_value(path)?;
    let patches = [(model.to_string(), patch)].into_iter().collect();
    crate::experiment::resolve_value(merged, path, catalogue, &patches)
}

/// The synthetic calibration fixtures of `dir` (which holds `llm-h100.toml`), by file name:
/// `node.jsonl` (5 samples of [`node`]), `recording.jsonl` (the node over the two logs,
/// 2 s samples), `llm-aiperf.jsonl` (40 requests to the LLM of [`llm_truth`] on the H100,
/// 3 s apart) and `asr-requests.csv` (the ASR of [`asr_truth`] on the A100's first 3g.40gb
/// instance under [`asr_load`]).
pub fn fixture_files(
    dir: &Path,
    catalogue: &crate::hardware::Catalogue,
) -> Result<Vec<(String, String)>, InputError> {
    let node = node();
    let short = samples(&node, 1000, 5, &|g, _| if g == 1 { 0.91 } else { 0.0 });
    let llm_exp = experiment_with(
        &dir.join("llm-h100.toml"),
        catalogue,
        "nemotron-nano-vl-8b",
        llm_truth(),
    )?;
    let (aiperf, llm_busy) = llm_aiperf_log(&llm_exp, &llm_requests(40), 3_000_000_000)?;
    let models = dir.join("../../../models/parakeet-1.1b.toml");
    let mut asr_value: toml::Value =
        crate::config::parse_toml(&crate::config::read(&models)?, &models)?;
    merge(&mut asr_value, asr_truth());
    let asr = ModelProfile::from_value(asr_value, &models)?;
    let a100 = catalogue
        .gpu("a100-80gb")
        .expect("invariant: the catalogue has the A100-80GB");
    let part = a100.mig_partition(
        a100.mig_profile("3g.40gb")
            .expect("invariant: the A100-80GB has 3g.40gb"),
    );
    let (asr_csv, _) = asr_csv_log(&asr, &part, &asr_load());
    let interval = 2000;
    let long = samples(&node, interval, 61, &|g, t| {
        if g != 1 || t == 0 {
            return 0.0;
        }
        let to = START_UNIX_NS + i128::from(t) * 1_000_000;
        busy_fraction(&llm_busy, to - i128::from(interval) * 1_000_000, to)
    });
    Ok(vec![
        ("node.jsonl".into(), recording(&node, 1000, &short)),
        ("recording.jsonl".into(), recording(&node, interval, &long)),
        ("llm-aiperf.jsonl".into(), aiperf),
        ("asr-requests.csv".into(), asr_csv),
    ])
}

/// Deep-merge `from` into `into` (tables merge, other values replace).
fn merge(into: &mut toml::Value, from: toml::Value) {
    match (into, from) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(x) => merge(x, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
