//! Serving realism end to end: KV-cache capacity, routing, memory over-commitment, batching.

use std::path::Path;

use gpushare::experiment::{EngineSpec, Experiment, llm_memory};
use gpushare::hardware::Catalogue;
use gpushare::profile::ModelKind;
use gpushare::report::{RunSummary, run_experiment};
use gpushare::study::Study;

use crate::root;

fn study(file: &str) -> Vec<RunSummary> {
    Study::load(
        &root().join("experiments").join(file),
        &Catalogue::builtin(),
    )
    .expect("study loads")
    .run()
}

/// Load an experiment written inline (models from the repository's `models/`).
fn inline(dir: &Path, body: &str) -> Experiment {
    let path = dir.join("exp.toml");
    let models = root().join("models");
    let text = format!("models_dir = {:?}\n{body}", models.display().to_string());
    std::fs::write(&path, text).unwrap();
    Experiment::load(&path, &Catalogue::builtin()).expect("inline experiment loads")
}

#[test]
fn a_3g_slice_s_smaller_kv_cache_lowers_saturation_throughput_and_lengthens_queues() {
    let runs = study("kv-cache-study.toml");
    let get = |n: &str| runs.iter().find(|r| r.name == n).unwrap();
    let whole = get("kv-whole-a100");
    let slice = get("kv-mig-3g.40gb");
    let small = get("kv-whole-a100-small-kv");
    let kv = |r: &RunSummary| {
        r.replicas[0]
            .kv
            .clone()
            .expect("llm replica has a kv report")
    };
    // The slice holds about a third of the whole card's tokens; the control holds as many.
    let (cw, cs, cc) = (
        kv(whole).capacity_tokens.unwrap(),
        kv(slice).capacity_tokens.unwrap(),
        kv(small).capacity_tokens.unwrap(),
    );
    assert!(cs * 2 < cw, "{cs} vs {cw}");
    assert!(cc.abs_diff(cs) * 100 < cs, "{cc} vs {cs}");
    // Saturated: the small caches run full and preempt, the whole card never does.
    assert!(kv(slice).peak_occupancy.unwrap() > 0.99);
    assert!(kv(small).peak_occupancy.unwrap() > 0.99);
    assert!(kv(slice).preemptions > 0 && kv(small).preemptions > 0);
    assert_eq!(kv(whole).preemptions, 0);
    // Throughput falls and queues grow with the cache, even at equal compute (the control).
    assert!(whole.output_tokens_per_s > small.output_tokens_per_s * 1.1);
    assert!(small.output_tokens_per_s > slice.output_tokens_per_s * 1.1);
    let q = |r: &RunSummary| r.latency_ms.llm_queue.p50;
    assert!(
        q(slice) > q(small) && q(small) > q(whole),
        "{} {} {}",
        q(slice),
        q(small),
        q(whole)
    );
    assert!(runs.iter().all(|r| r.success_rate == Some(1.0)));
}

#[test]
fn derived_llm_footprint_agrees_with_the_measured_single_tenant_footprint() {
    // Validation against a number not used to set anything: 73.2 GB measured on A100-80GB.
    let exp = crate::seed_experiment("baseline-light");
    let m = &exp.models[exp.model_of_kind("llm").unwrap()];
    let ModelKind::Llm(l) = &m.kind else {
        unreachable!()
    };
    let card = Catalogue::builtin().gpu("a100-80gb").unwrap().memory_bytes;
    let mem = llm_memory(l, &EngineSpec::default(), card);
    let err = mem.budget_bytes / (m.memory_gb * 1e9) - 1.0;
    assert!(err.abs() < 0.05, "derived {} GB", mem.budget_bytes / 1e9);
}

const LLM_ONLY: &str = r#"
name = "routing"
seed = 3
[workload]
mode = "poisson"
rate_rps = 6.0
duration_s = 60.0
timeout_s = 600.0
[answers]
prompt_tokens = { dist = "normal", mean = 500, sd = 100, min = 100, max = 1000 }
output_tokens = { dist = "normal", mean = 300, sd = 100, min = 50, max = 600 }
sentences = { dist = "fixed", value = 1 }
[[gpus]]
id = "big"
type = "a100-80gb"
sharing = { mode = "dedicated" }
[[gpus]]
id = "sliced"
type = "a100-80gb"
sharing = { mode = "mig", instances = ["3g.40gb", "3g.40gb"] }
[[deployments]]
model = "nemotron-nano-vl-8b"
replicas = [{ gpu = "big" }, { gpu = "sliced", instance = 0 }]
engine = { max_num_seqs = 64 }
"#;

#[test]
fn routing_policies_distribute_as_specified() {
    let dir = tempfile::tempdir().unwrap();
    let routed = |policy: &str| {
        let body = LLM_ONLY.replace(
            "engine = { max_num_seqs = 64 }",
            &format!("engine = {{ max_num_seqs = 64 }}\nrouting = \"{policy}\""),
        );
        let s = run_experiment(&inline(dir.path(), &body));
        assert_eq!(s.success_rate, Some(1.0));
        (s.replicas[0].routed, s.replicas[1].routed)
    };
    // Round robin alternates whatever the replicas' speed.
    let (a, b) = routed("round-robin");
    assert!(a.abs_diff(b) <= 1, "{a} {b}");
    // The whole GPU drains faster, so load-aware policies send it more.
    let (a, b) = routed("least-outstanding");
    assert!(a > b + b / 5, "least-outstanding {a} vs {b}");
    let (a, b) = routed("power-of-two");
    assert!(a > b + b / 5, "power-of-two {a} vs {b}");
}

const TWO_LLMS_TIME_SLICED: &str = r#"
name = "oom"
seed = 1
[workload]
mode = "poisson"
rate_rps = 10.0
duration_s = 30.0
timeout_s = 600.0
[answers]
prompt_tokens = { dist = "normal", mean = 1500, sd = 300, min = 500, max = 3000 }
output_tokens = { dist = "normal", mean = 1000, sd = 200, min = 200, max = 2000 }
sentences = { dist = "fixed", value = 1 }
[[gpus]]
id = "gpu0"
type = "a100-80gb"
sharing = { mode = "time-slicing", replicas = 2 }
[[deployments]]
model = "nemotron-nano-vl-8b"
replicas = [{ gpu = "gpu0" }, { gpu = "gpu0" }]
"#;

#[test]
fn on_demand_kv_caches_sharing_a_card_run_out_of_memory_where_preallocated_ones_wait() {
    let dir = tempfile::tempdir().unwrap();
    let run = |engine: &str| {
        let body = format!("{TWO_LLMS_TIME_SLICED}engine = {engine}\n");
        run_experiment(&inline(dir.path(), &body))
    };
    let on_demand = run("{ kv_cache = \"on-demand\", max_num_seqs = 256 }");
    assert!(on_demand.out_of_memory > 0, "{:?}", on_demand.out_of_memory);
    assert_eq!(on_demand.failed, on_demand.out_of_memory);
    let p = &on_demand.partitions[0];
    assert!(p.memory_peak_gb <= p.memory_total_gb && p.memory_peak_gb > 0.95 * p.memory_total_gb);
    // The same pair with reserved caches that fit the card: no failure, only waiting.
    let reserved = run("{ memory_fraction = 0.45, max_num_seqs = 256 }");
    assert_eq!(reserved.failed, 0);
    assert_eq!(reserved.completed, reserved.started);
    assert!(reserved.latency_ms.llm_queue.p95 > 0.0);
}

#[test]
fn dynamic_batching_forms_batches_under_contention_and_relieves_a_time_sliced_gpu() {
    let runs = study("batching-study.toml");
    let get = |n: &str| runs.iter().find(|r| r.name == n).unwrap();
    let plain = get("time-slicing-heavy");
    let batched = get("time-slicing-heavy-batched");
    let asr = |r: &RunSummary| {
        r.replicas
            .iter()
            .find(|x| x.model == "parakeet-1.1b")
            .unwrap()
            .clone()
    };
    assert_eq!(asr(plain).mean_batch, 1.0);
    assert!(asr(batched).mean_batch > 1.2 && asr(batched).mean_batch <= 16.0);
    assert!(batched.throughput_per_gpu_rps > plain.throughput_per_gpu_rps * 1.15);
    // Once ASR and TTS batch, the LLM's GPU is the limit, as in the MIG configuration.
    let mig = get("mig-heavy-batched");
    assert!((batched.throughput_per_gpu_rps / mig.throughput_per_gpu_rps - 1.0).abs() < 0.05);
}

#[test]
fn scaling_out_over_two_nodes_doubles_the_seed_mig_capacity() {
    let path = root().join("experiments/scale-out.toml");
    let s = run_experiment(&Experiment::load(&path, &Catalogue::builtin()).unwrap());
    let mig = run_experiment(&crate::seed_experiment("mig-heavy"));
    assert_eq!(s.gpus, 2 * mig.gpus);
    assert!((s.throughput_rps / (2.0 * mig.throughput_rps) - 1.0).abs() < 0.05);
    assert_eq!(s.success_rate, Some(1.0));
    // Each stage's two replicas share its requests evenly.
    for pair in s.replicas.chunks(2) {
        let (a, b) = (pair[0].routed, pair[1].routed);
        assert!(a.abs_diff(b) * 20 < a + b, "{}: {a} vs {b}", pair[0].model);
    }
    assert!(s.partitions.iter().any(|p| p.node == "node1"));
}

#[test]
fn a_batch_s_runtime_follows_its_width_so_batching_meets_the_slice_size() {
    // A streaming ASR step is bound by reading its weights and launching its kernels, so a
    // batch of 8 costs what one chunk costs, on a 3g.40gb slice as on the whole GPU. A batch
    // of 64 needs the SMs: the slice (42 SMs) slows markedly, the whole GPU (108) barely.
    let mig = crate::seed_experiment("mig-heavy");
    let base = crate::seed_experiment("baseline-heavy");
    let asr_time = |e: &Experiment, n: u32| {
        let mi = e.model_of_kind("asr").unwrap();
        let r = e.replicas.iter().find(|r| r.model == mi).unwrap();
        let m = &e.models[mi];
        let ModelKind::Asr(a) = &m.kind else {
            unreachable!()
        };
        let part = &e.partitions[r.partition].resources;
        gpushare::profile::exec_time(&a.chunk.work(n), part, &m.efficiency).total_ns
    };
    for e in [&mig, &base] {
        assert_eq!(asr_time(e, 8), asr_time(e, 1));
    }
    let slice = asr_time(&mig, 64) / asr_time(&mig, 1);
    let whole = asr_time(&base, 64) / asr_time(&base, 1);
    assert!(
        slice > 1.25 && whole < 1.15,
        "slice x{slice}, whole x{whole}"
    );
}

#[test]
fn a_replayed_trace_starts_one_request_per_row_with_the_row_s_attributes() {
    let path = root().join("experiments/traces/mig-voice-trace.toml");
    let exp = Experiment::load(&path, &Catalogue::builtin()).unwrap();
    let rows = exp.trace.as_ref().unwrap().len() as u64;
    let s = run_experiment(&exp);
    assert_eq!(s.started, rows);
    assert_eq!(s.completed + s.failed + s.cancelled, rows);
    // Every row gives its own audio length: ASR chunks = sum over rows of ceil(audio / 128 ms).
    let chunks: u64 = exp
        .trace
        .as_ref()
        .unwrap()
        .arrivals()
        .iter()
        .map(|a| gpushare::workload::chunks_for(a.audio_s.unwrap(), 128.0) as u64)
        .sum();
    let asr = s
        .replicas
        .iter()
        .find(|r| r.model == "parakeet-1.1b")
        .unwrap();
    assert_eq!((asr.batches as f64 * asr.mean_batch).round() as u64, chunks);
}

#[test]
fn an_llm_that_dies_of_a_failed_allocation_takes_its_in_flight_requests_along() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{TWO_LLMS_TIME_SLICED}engine = {{ kv_cache = \"on-demand\", max_num_seqs = 256 }}\n[faults]\noom_crashes = true\n"
    );
    let s = run_experiment(&inline(dir.path(), &body));
    let f = s.faults.as_ref().unwrap();
    assert!(!f.events.is_empty());
    for e in &f.events {
        // Out of memory ends one process, not the card: only the allocating replica goes.
        assert_eq!(e.kind, "oom");
        assert_eq!(e.replicas_down.len(), 1);
        let took = e.recovered_at_s.unwrap() - e.at_s;
        assert!((took - 30.0).abs() < 1e-6, "{took}");
    }
    assert!(f.lost_to_faults > 0);
    assert_eq!(s.failed, s.out_of_memory + f.lost_to_faults + f.unavailable);
}

#[test]
fn mps_runs_the_seed_s_asr_and_tts_side_by_side_without_switching() {
    let runs = study("mps-study.toml");
    let get = |n: &str| runs.iter().find(|r| r.name == n).unwrap();
    let (mps, ts, mig) = (
        get("mps-heavy"),
        get("time-slicing-heavy"),
        get("mig-heavy"),
    );
    // No context switches, and both clients' narrow kernels run concurrently: capacity as
    // MIG's, far above time-slicing's.
    assert_eq!(mps.partitions[0].switching_fraction, 0.0);
    assert!(mps.throughput_per_gpu_rps > ts.throughput_per_gpu_rps * 1.2);
    assert!((mps.throughput_per_gpu_rps / mig.throughput_per_gpu_rps - 1.0).abs() < 0.05);
    // TTS keeps the card's full bandwidth (MIG halves it), so its sentences are quicker.
    assert!(mps.latency_ms.tts.mean < mig.latency_ms.tts.mean);
    assert!(runs.iter().all(|r| r.success_rate == Some(1.0)));
}
