//! Model kernel profiles (loaded from `models/*.toml`) and the one function where a profile
//! meets hardware: [`exec_time`].
//!
//! A profile describes *work*, never a speed on a particular sharing mode: FLOPs, bytes, how
//! many SMs the kernels can keep busy, and how many kernels are launched. Runtime on a
//! partition follows from its SMs, bandwidth and per-SM FLOP/s, so MIG slices, whole GPUs and
//! time-sliced GPUs all differ only through the partition they hand the work.
//!
//! **Data types.** A profile's `[efficiency] dtype` (default `fp16`, which is BF16 as well) says
//! which of the GPU's peaks its tensor math runs at: `fp32`, `tf32`, `fp16`/`bf16`, `fp8` or
//! `int8` (hardware/gpus.toml, `peak_flops_per_s`). FP8 on a GPU without FP8 tensor cores
//! (Ampere: A100, A10G) runs as dequantized FP16: the weights are widened to FP16 and the math
//! runs at the FP16 peak; [`Breakdown::dtype`] says which peak was used. Bytes are the
//! profile's own: a profile for FP8 weights states FP8 bytes.

use std::path::Path;

use serde::Deserialize;

use crate::error::InputError;
use crate::hardware::Partition;
pub use crate::hardware::catalogue::Dtype;

/// What one execution of a kernel group costs, before it meets a partition.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    /// Floating-point operations (tensor-core FP16/BF16).
    pub flops: f64,
    /// Bytes moved to and from device memory.
    pub bytes: f64,
    /// How many SMs the kernels can keep busy (their grid width).
    pub sm_demand: f64,
    /// Kernel launches; each costs the model's `launch_us` in series with the kernels.
    pub launches: f64,
}

/// Where the time of one execution goes on a given partition (nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Breakdown {
    /// Time the tensor math needs on the SMs the work can use.
    pub compute_ns: f64,
    /// Time the memory traffic needs at the partition's bandwidth.
    pub memory_ns: f64,
    /// Serial kernel-launch overhead.
    pub launch_ns: f64,
    /// Runtime with the partition to itself: `max(compute, memory) + launch`.
    pub total_ns: f64,
    /// The data type whose peak the compute ran at: the profile's, except FP8 on a GPU without
    /// FP8 tensor cores, which runs as dequantized FP16.
    pub dtype: Dtype,
}

impl Breakdown {
    /// Sum of two breakdowns of work run back to back (one model's, so one data type: the
    /// later one's is kept, which also fills in a default start).
    pub fn then(self, o: Breakdown) -> Breakdown {
        Breakdown {
            compute_ns: self.compute_ns + o.compute_ns,
            memory_ns: self.memory_ns + o.memory_ns,
            launch_ns: self.launch_ns + o.launch_ns,
            total_ns: self.total_ns + o.total_ns,
            dtype: o.dtype,
        }
    }

    /// Runtime rounded to whole nanoseconds (at least 1).
    pub fn ns(&self) -> u64 {
        crate::engine::round_ns(self.total_ns).max(1)
    }
}

/// How close the model's kernels get to the hardware's peaks.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Achieved fraction of peak tensor FLOP/s on the SMs in use (0, 1].
    pub compute: f64,
    /// Achieved fraction of the partition's memory bandwidth (0, 1].
    pub memory: f64,
    /// Host-side cost of one kernel launch, microseconds.
    pub launch_us: f64,
    /// Data type of the tensor math: which of the GPU's peaks `compute` is a fraction of
    /// (`fp32`, `tf32`, `fp16` or `bf16`, `fp8`, `int8`). Default `fp16`.
    #[serde(default)]
    pub dtype: Dtype,
}

/// Roofline runtime of `w` on partition `p`: the single seam between profiles and hardware.
///
/// The compute runs at the peak of the profile's data type (`eff.dtype`); FP8 on a GPU without
/// FP8 tensor cores runs at the FP16 peak (dequantized), as [`Breakdown::dtype`] records.
pub fn exec_time(w: &Work, p: &Partition, eff: &Efficiency) -> Breakdown {
    let sms = w.sm_demand.min(f64::from(p.sms)).max(1.0);
    let (flops_per_sm, dtype) = p.flops_per_sm_per_s(eff.dtype);
    let compute_ns = w.flops / (sms * flops_per_sm * eff.compute) * 1e9;
    let memory_ns = w.bytes / (p.mem_bw_bytes_per_s * eff.memory) * 1e9;
    let launch_ns = w.launches * eff.launch_us * 1e3;
    Breakdown {
        compute_ns,
        memory_ns,
        launch_ns,
        total_ns: compute_ns.max(memory_ns) + launch_ns,
        dtype,
    }
}

/// What one phase of work needs, independent of how many SMs or how much bandwidth it gets.
///
/// [`Work`] seen through a model's [`Efficiency`] on a partition's SM type, so that a sharing
/// mode can hand the phase any number of SMs and any bandwidth: with `s` SMs and `b` bytes/s
/// to itself the phase takes [`Demand::alone_ns`]`(s, b)` =
/// `max(sm_ns / min(s, sm_demand), bytes / b × 1e9) + launch_ns`, which is
/// [`exec_time`]'s total when `s` and `b` are the whole partition's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Demand {
    /// Compute in SM-nanoseconds: the phase's runtime on one SM at the model's efficiency,
    /// `flops / (flops_per_sm × compute efficiency) × 1e9`, at the peak of the model's data type.
    pub sm_ns: f64,
    /// Most SMs the kernels can use (their grid width); at least 1.
    pub sm_demand: f64,
    /// Bytes moved, scaled to nominal bandwidth: `bytes / memory efficiency`.
    pub bytes: f64,
    /// Serial kernel-launch overhead, nanoseconds.
    pub launch_ns: f64,
}

impl Demand {
    /// The demand of `w` on SMs of partition `p`'s type, for a model with efficiency `eff`.
    pub fn of(w: &Work, p: &Partition, eff: &Efficiency) -> Demand {
        Demand {
            sm_ns: w.flops / (p.flops_per_sm_per_s(eff.dtype).0 * eff.compute) * 1e9,
            sm_demand: w.sm_demand.max(1.0),
            bytes: w.bytes / eff.memory,
            launch_ns: w.launches * eff.launch_us * 1e3,
        }
    }

    /// Runtime in nanoseconds with `sms` SMs (> 0) and `mem_bw_bytes_per_s` (> 0) to itself.
    pub fn alone_ns(&self, sms: f64, mem_bw_bytes_per_s: f64) -> f64 {
        let compute_ns = self.sm_ns / sms.min(self.sm_demand);
        let memory_ns = self.bytes / mem_bw_bytes_per_s * 1e9;
        compute_ns.max(memory_ns) + self.launch_ns
    }

    /// `n` back-to-back repetitions as one phase (e.g. a run of identical decoder steps): same
    /// width, `n` times the compute, bytes and launches. Under any fixed allocation it takes
    /// exactly as long as the `n` phases in a row.
    pub fn repeated(self, n: f64) -> Demand {
        Demand {
            sm_ns: self.sm_ns * n,
            sm_demand: self.sm_demand,
            bytes: self.bytes * n,
            launch_ns: self.launch_ns * n,
        }
    }
}

/// A kernel group as written in a profile: its work at batch 1, and how it widens with batch.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelGroup {
    /// FLOPs of one execution at batch 1.
    pub flops: f64,
    /// Bytes of one execution at batch 1 (weights are read once whatever the batch).
    pub bytes: f64,
    /// Extra bytes per additional batch item.
    #[serde(default)]
    pub bytes_per_extra_item: f64,
    /// SMs the kernels keep busy at batch 1.
    pub sm_demand: f64,
    /// Extra SMs kept busy per additional batch item (the saturation curve's slope).
    #[serde(default)]
    pub sm_demand_per_extra_item: f64,
    /// Kernel launches per execution.
    pub kernels: f64,
}

impl KernelGroup {
    /// Work of one execution over `batch` items (FLOPs scale with items, weights do not).
    pub fn work(&self, batch: u32) -> Work {
        let extra = f64::from(batch.max(1) - 1);
        Work {
            flops: self.flops * f64::from(batch.max(1)),
            bytes: self.bytes + self.bytes_per_extra_item * extra,
            sm_demand: self.sm_demand + self.sm_demand_per_extra_item * extra,
            launches: self.kernels,
        }
    }
}

/// Streaming speech recognition: one encoder step per audio chunk.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AsrProfile {
    /// One streaming step over one chunk of audio.
    pub chunk: KernelGroup,
    /// Audio covered by one chunk, milliseconds (must match the workload's chunking).
    pub chunk_ms: f64,
}

/// Speech synthesis of one sentence: text encoder, autoregressive decoder, audio codec.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TtsProfile {
    /// Seconds of speech per text token (speaking rate).
    pub speech_s_per_token: f64,
    /// Codec frames generated per second of speech (decoder steps).
    pub frames_per_speech_s: f64,
    /// Text encoder, once per sentence.
    pub encoder: KernelGroup,
    /// One autoregressive decoder step (one codec frame).
    pub decoder_step: KernelGroup,
    /// Codec decoder turning all frames of a sentence into audio (batch = frames).
    pub codec: KernelGroup,
}

/// A decoder-only LLM served with iteration-level batching.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlmProfile {
    /// Parameters (weights), count.
    pub params: f64,
    /// Bytes per weight (2 for BF16).
    pub bytes_per_param: f64,
    /// KV-cache bytes per token of context.
    pub kv_bytes_per_token: f64,
    /// Kernel launches per engine iteration.
    pub kernels_per_step: f64,
    /// SMs one token keeps busy; an iteration keeps `tokens × this` busy, up to the partition.
    pub sm_demand_per_token: f64,
    /// Host-side time per iteration (scheduling, sampling, detokenising), microseconds.
    pub step_overhead_us: f64,
    /// Most sequences batched in one iteration (the engine's max concurrent sequences);
    /// the default of a deployment's `engine.max_num_seqs`.
    pub max_batch: u32,
    /// Memory besides weights and KV cache (CUDA context, activations, graphs), GB.
    pub runtime_gb: f64,
}

impl LlmProfile {
    /// Work of one iteration: `prefill_tokens` new prompt tokens plus one token for each of
    /// `decode_seqs` sequences whose contexts sum to `context_tokens`.
    pub fn step_work(&self, prefill_tokens: u64, decode_seqs: u64, context_tokens: u64) -> Work {
        let tokens = (prefill_tokens + decode_seqs) as f64;
        Work {
            flops: 2.0 * self.params * tokens,
            bytes: self.params * self.bytes_per_param
                + self.kv_bytes_per_token * (context_tokens + prefill_tokens) as f64,
            sm_demand: self.sm_demand_per_token * tokens,
            launches: self.kernels_per_step,
        }
    }
}

/// What a model does, with its kind-specific profile.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelKind {
    /// Streaming ASR.
    Asr(AsrProfile),
    /// Sentence-by-sentence TTS.
    Tts(TtsProfile),
    /// Token-streaming LLM.
    Llm(LlmProfile),
}

/// A model profile file. (Unknown fields are caught by the flattened kind's own
/// `deny_unknown_fields`, which sees every key not consumed here.)
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ModelProfile {
    /// Name used by experiments to refer to the model.
    pub name: String,
    /// Device memory one replica holds (weights, runtime, caches), bytes.
    pub memory_gb: f64,
    /// How close the kernels get to peak.
    pub efficiency: Efficiency,
    /// Kind and kind-specific profile.
    #[serde(flatten)]
    pub kind: ModelKind,
    /// Where a fitted profile came from (`gpushare calibrate fit`); absent when hand-written.
    #[serde(default)]
    pub calibration: Option<Calibration>,
}

/// Provenance of a profile fitted to measurements, as `gpushare calibrate fit` writes it: the
/// GPU and driver measured, when, from which files, and how well the fit matched. Loading an
/// experiment that runs the profile on another GPU type or partition gives a warning.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The program that fitted it, e.g. `gpushare 0.1.0`.
    pub tool: String,
    /// When the measurement started (the recording's start, RFC 3339).
    pub date: String,
    /// Catalogue key of the GPU measured, e.g. `a100-80gb`.
    pub gpu: String,
    /// The GPU as NVML named it.
    pub gpu_name: String,
    /// The partition measured: `whole GPU` or a MIG profile such as `3g.40gb`.
    pub partition: String,
    /// Driver version of the measurement.
    #[serde(default)]
    pub driver_version: Option<String>,
    /// CUDA driver version of the measurement.
    #[serde(default)]
    pub cuda_version: Option<String>,
    /// The profile the fit started from (its other numbers are kept).
    pub base_profile: String,
    /// The recording's file name.
    pub recording: String,
    /// The request log's file name.
    pub requests: String,
    /// Which parameters were fitted, and how.
    pub method: String,
    /// Fit quality (R², residuals, observations), for the record.
    #[serde(default)]
    pub fit: toml::Table,
}

impl ModelProfile {
    /// Memory one replica holds, bytes.
    pub fn memory_bytes(&self) -> u64 {
        (self.memory_gb * 1e9) as u64
    }

    /// Parse and check a profile; errors name `origin` and the offending field.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<ModelProfile, InputError> {
        let p: ModelProfile = crate::config::parse_toml(text, origin)?;
        p.check(origin)?;
        Ok(p)
    }

    /// Parse and check a profile from an already-parsed TOML value (e.g. patched by a sweep).
    pub fn from_value(v: toml::Value, origin: &Path) -> Result<ModelProfile, InputError> {
        let p: ModelProfile = crate::config::from_value(v, origin)?;
        p.check(origin)?;
        Ok(p)
    }

    fn check(&self, origin: &Path) -> Result<(), InputError> {
        use crate::config::{in_range, positive};
        use limits::*;
        in_range(
            origin,
            "memory_gb",
            self.memory_gb,
            1e-3,
            MAX_MEMORY_GB,
            "GB",
        )?;
        let eff = &self.efficiency;
        in_range(
            origin,
            "efficiency.compute",
            eff.compute,
            MIN_EFFICIENCY,
            1.0,
            "",
        )?;
        in_range(
            origin,
            "efficiency.memory",
            eff.memory,
            MIN_EFFICIENCY,
            1.0,
            "",
        )?;
        in_range(
            origin,
            "efficiency.launch_us",
            eff.launch_us,
            0.0,
            MAX_LAUNCH_US,
            "us",
        )?;
        let groups: Vec<(&str, &KernelGroup)> = match &self.kind {
            ModelKind::Asr(a) => {
                in_range(origin, "chunk_ms", a.chunk_ms, 1.0, MAX_CHUNK_MS, "ms")?;
                vec![("chunk", &a.chunk)]
            }
            ModelKind::Tts(t) => {
                let (s, f) = (t.speech_s_per_token, t.frames_per_speech_s);
                in_range(origin, "speech_s_per_token", s, 1e-4, 10.0, "s")?;
                in_range(origin, "frames_per_speech_s", f, 1e-3, MAX_FRAMES_PER_S, "")?;
                vec![
                    ("encoder", &t.encoder),
                    ("decoder_step", &t.decoder_step),
                    ("codec", &t.codec),
                ]
            }
            ModelKind::Llm(l) => {
                in_range(origin, "params", l.params, 1.0, MAX_PARAMS, "")?;
                in_range(origin, "bytes_per_param", l.bytes_per_param, 0.1, 8.0, "")?;
                let kv = l.kv_bytes_per_token;
                in_range(
                    origin,
                    "kv_bytes_per_token",
                    kv,
                    1.0,
                    MAX_KV_BYTES_PER_TOKEN,
                    "",
                )?;
                positive(origin, "sm_demand_per_token", l.sm_demand_per_token)?;
                in_range(origin, "runtime_gb", l.runtime_gb, 0.0, MAX_MEMORY_GB, "GB")?;
                in_range(
                    origin,
                    "step_overhead_us",
                    l.step_overhead_us,
                    0.0,
                    1e6,
                    "us",
                )?;
                let k = l.kernels_per_step;
                in_range(origin, "kernels_per_step", k, 0.0, MAX_KERNELS, "")?;
                if l.max_batch == 0 || l.max_batch > MAX_BATCH {
                    return Err(InputError::invalid(
                        origin,
                        "max_batch",
                        l.max_batch,
                        &format!("an integer in [1, {MAX_BATCH}]"),
                    ));
                }
                vec![]
            }
        };
        for (name, g) in groups {
            let field = |f: &str| format!("{name}.{f}");
            in_range(origin, &field("flops"), g.flops, 0.0, MAX_FLOPS, "")?;
            in_range(origin, &field("bytes"), g.bytes, 0.0, MAX_BYTES, "")?;
            positive(origin, &field("sm_demand"), g.sm_demand)?;
            in_range(origin, &field("kernels"), g.kernels, 0.0, MAX_KERNELS, "")?;
            let extra = g.bytes_per_extra_item;
            in_range(
                origin,
                &field("bytes_per_extra_item"),
                extra,
                0.0,
                MAX_BYTES,
                "",
            )?;
            crate::config::non_negative(
                origin,
                &field("sm_demand_per_extra_item"),
                g.sm_demand_per_extra_item,
            )?;
        }
        Ok(())
    }
}

/// The ranges a model profile's numbers must lie in. Each is far beyond any real model, and
/// small enough that the longest job they allow (a whole batch at the lowest efficiency on one
/// SM) stays below 2^63 ns, so no derived time overflows the engine's clock.
pub mod limits {
    /// Most memory a model may need, GB.
    pub const MAX_MEMORY_GB: f64 = 1e5;
    /// Lowest compute or memory efficiency (a fraction of peak).
    pub const MIN_EFFICIENCY: f64 = 1e-3;
    /// Longest host-side cost of one kernel launch, microseconds.
    pub const MAX_LAUNCH_US: f64 = 1e4;
    /// Longest ASR audio chunk, milliseconds.
    pub const MAX_CHUNK_MS: f64 = 6e4;
    /// Most TTS frames per second of speech.
    pub const MAX_FRAMES_PER_S: f64 = 1e5;
    /// Most LLM parameters.
    pub const MAX_PARAMS: f64 = 1e13;
    /// Most KV-cache bytes per token.
    pub const MAX_KV_BYTES_PER_TOKEN: f64 = 1e8;
    /// Most FLOPs in one kernel group for one item (a petaFLOP).
    pub const MAX_FLOPS: f64 = 1e15;
    /// Most bytes one kernel group moves for one item (10 TB).
    pub const MAX_BYTES: f64 = 1e13;
    /// Most kernel launches in one group or LLM step.
    pub const MAX_KERNELS: f64 = 1e5;
    /// Largest LLM batch.
    pub const MAX_BATCH: u32 = 4096;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(sms: u32, bw: f64) -> Partition {
        Partition {
            sms,
            mem_bw_bytes_per_s: bw,
            memory_bytes: 80_000_000_000,
            peaks_per_sm: crate::hardware::catalogue::Peaks {
                fp32: 19.5e12 / 108.0,
                tf32: 156e12 / 108.0,
                fp16: 312e12 / 108.0,
                fp8: None,
                int8: 624e12 / 108.0,
            },
            label: "test".into(),
        }
    }

    const EFF: Efficiency = Efficiency {
        compute: 0.5,
        memory: 0.8,
        launch_us: 4.0,
        dtype: Dtype::Fp16,
    };

    #[test]
    fn narrow_kernel_runs_as_fast_on_a_3g_slice_as_on_the_whole_gpu() {
        let w = Work {
            flops: 5e10,
            bytes: 1e6,
            sm_demand: 30.0,
            launches: 10.0,
        };
        let whole = exec_time(&w, &part(108, 2039e9), &EFF);
        let slice = exec_time(&w, &part(42, 1019.5e9), &EFF);
        assert!(whole.compute_ns > whole.memory_ns);
        assert_eq!(whole.total_ns, slice.total_ns);
    }

    #[test]
    fn wide_kernel_slows_in_proportion_to_sms() {
        let w = Work {
            flops: 5e11,
            bytes: 1e6,
            sm_demand: 108.0,
            launches: 0.0,
        };
        let whole = exec_time(&w, &part(108, 2039e9), &EFF);
        let slice = exec_time(&w, &part(42, 1019.5e9), &EFF);
        let ratio = slice.total_ns / whole.total_ns;
        assert!((ratio - 108.0 / 42.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn demand_alone_on_the_whole_partition_is_exec_time() {
        let p = part(108, 2039e9);
        let works = [
            // compute-bound, narrow
            (5e10, 1e6, 30.0, 10.0),
            // compute-bound, wider than the GPU
            (5e11, 1e6, 300.0, 3.0),
            // memory-bound
            (1e6, 2e9, 20.0, 0.0),
            // grid narrower than one SM: exec_time rounds the SMs up to 1
            (1e9, 1e3, 0.25, 1.0),
            // no SMs asked for at all, and no work
            (0.0, 0.0, 0.0, 0.0),
        ];
        for (flops, bytes, sm_demand, launches) in works {
            let w = Work {
                flops,
                bytes,
                sm_demand,
                launches,
            };
            let d = Demand::of(&w, &p, &EFF);
            let want = exec_time(&w, &p, &EFF).total_ns;
            let got = d.alone_ns(f64::from(p.sms), p.mem_bw_bytes_per_s);
            assert!(
                (got - want).abs() <= 1e-9 * want.max(1.0),
                "{w:?}: {got} vs {want}"
            );
            let ten = d
                .repeated(10.0)
                .alone_ns(f64::from(p.sms), p.mem_bw_bytes_per_s);
            assert!((ten - 10.0 * want).abs() <= 1e-9 * want.max(1.0), "{w:?}");
        }
    }

    #[test]
    fn demand_with_fewer_sms_slows_only_the_compute() {
        let p = part(108, 2039e9);
        let w = Work {
            flops: 5e11,
            bytes: 1e6,
            sm_demand: 108.0,
            launches: 0.0,
        };
        let d = Demand::of(&w, &p, &EFF);
        let half = d.alone_ns(54.0, p.mem_bw_bytes_per_s);
        let whole = d.alone_ns(108.0, p.mem_bw_bytes_per_s);
        assert!((half / whole - 2.0).abs() < 1e-12);
        // The same on a 54-SM partition, through exec_time.
        let slice = exec_time(&w, &part(54, 2039e9), &EFF).total_ns;
        assert!((half - slice).abs() <= 1e-9 * slice);
    }

    #[test]
    fn memory_bound_work_follows_bandwidth() {
        let w = Work {
            flops: 1e6,
            bytes: 2e9,
            sm_demand: 20.0,
            launches: 0.0,
        };
        let whole = exec_time(&w, &part(108, 2039e9), &EFF);
        let slice = exec_time(&w, &part(42, 1019.5e9), &EFF);
        assert!((slice.total_ns / whole.total_ns - 2.0).abs() < 1e-9);
    }

    #[test]
    fn fp8_runs_at_the_fp8_peak_where_there_is_one_and_as_fp16_where_not() {
        use crate::hardware::Catalogue;
        let cat = Catalogue::builtin();
        let h100 = cat.gpu("h100-80gb").unwrap().full_partition();
        let a100 = cat.gpu("a100-80gb").unwrap().full_partition();
        // Compute-bound work wide enough to fill either GPU.
        let w = Work {
            flops: 5e12,
            bytes: 1e6,
            sm_demand: 1000.0,
            launches: 0.0,
        };
        let fp8 = Efficiency {
            dtype: Dtype::Fp8,
            ..EFF
        };
        let h_fp8 = exec_time(&w, &h100, &fp8);
        let h_fp16 = exec_time(&w, &h100, &EFF);
        let a_fp8 = exec_time(&w, &a100, &fp8);
        let a_fp16 = exec_time(&w, &a100, &EFF);
        assert_eq!(h_fp8.dtype, Dtype::Fp8);
        // H100: FP8 has twice the FP16 peak (datasheet), so half the compute time.
        assert!((h_fp16.compute_ns / h_fp8.compute_ns - 1979e12 / 989.4e12).abs() < 1e-9);
        // A100 has no FP8 tensor cores: dequantized to FP16, the same time as FP16.
        assert_eq!(a_fp8.dtype, Dtype::Fp16);
        assert_eq!(a_fp8.total_ns, a_fp16.total_ns);
        // So an FP8 profile on H100 runs faster than on A100, by the peaks alone.
        assert!(h_fp8.total_ns < a_fp8.total_ns);
        let ratio = a_fp8.compute_ns / h_fp8.compute_ns;
        assert!((ratio - 1979e12 / 312e12).abs() < 1e-9, "{ratio}");
        // Demand sees the same peak.
        let d = Demand::of(&w, &h100, &fp8);
        assert!((d.alone_ns(132.0, h100.mem_bw_bytes_per_s) - h_fp8.total_ns).abs() < 1e-3);
    }

    #[test]
    fn dtype_is_read_from_the_efficiency_table_and_defaults_to_fp16() {
        let e: Efficiency = toml::from_str("compute = 0.5\nmemory = 0.8\nlaunch_us = 4.0").unwrap();
        assert_eq!(e.dtype, Dtype::Fp16);
        let e: Efficiency =
            toml::from_str("compute = 0.5\nmemory = 0.8\nlaunch_us = 4.0\ndtype = \"bf16\"")
                .unwrap();
        assert_eq!(e.dtype, Dtype::Fp16);
        let e: Efficiency =
            toml::from_str("compute = 0.5\nmemory = 0.8\nlaunch_us = 4.0\ndtype = \"fp8\"")
                .unwrap();
        assert_eq!(e.dtype, Dtype::Fp8);
        let bad = toml::from_str::<Efficiency>(
            "compute = 0.5\nmemory = 0.8\nlaunch_us = 4.0\ndtype = \"fp4\"",
        );
        assert!(bad.is_err());
    }
}
