//! The seed study, on shortened durations: the ordering of the three configurations, success,
//! and the light load bounded by users rather than GPUs.

use gpushare::report::{RunSummary, run_experiment};

use crate::{seed_experiment, shorten};

fn run_short(stem: &str, factor: f64) -> RunSummary {
    let mut e = seed_experiment(stem);
    shorten(&mut e, factor);
    run_experiment(&e)
}

#[test]
fn heavy_load_orders_mig_above_time_slicing_above_baseline_per_gpu() {
    let base = run_short("baseline-heavy", 0.4);
    let ts = run_short("time-slicing-heavy", 0.4);
    let mig = run_short("mig-heavy", 0.4);
    for r in [&base, &ts, &mig] {
        assert_eq!(r.success_rate, Some(1.0), "{}: {} failed", r.name, r.failed);
        assert!(
            r.completed > 100,
            "{}: only {} requests",
            r.name,
            r.completed
        );
    }
    assert!(
        mig.throughput_per_gpu_rps > ts.throughput_per_gpu_rps * 1.15,
        "MIG {} vs time-slicing {}",
        mig.throughput_per_gpu_rps,
        ts.throughput_per_gpu_rps
    );
    assert!(ts.throughput_per_gpu_rps > base.throughput_per_gpu_rps);
    // The LLM dominates request time where the LLM is the bottleneck.
    for r in [&base, &mig] {
        assert!(
            r.latency_ms.llm_total.mean > 0.8 * r.latency_ms.request.mean,
            "{}",
            r.name
        );
    }
}

#[test]
fn light_load_is_bounded_by_users_not_gpus() {
    for stem in ["baseline-light", "time-slicing-light", "mig-light"] {
        let r = run_short(stem, 0.5);
        assert_eq!(r.success_rate, Some(1.0));
        // Closed loop: throughput = mean users / (response time + think time) when no queue
        // builds up anywhere; every partition keeps idle time.
        for p in &r.partitions {
            assert!(
                p.busy_fraction + p.switching_fraction < 0.9,
                "{stem}: {} {} saturated",
                p.gpu,
                p.partition
            );
        }
        let e = seed_experiment(stem);
        let gpushare::workload::WorkloadSpec::ClosedLoop(c) = &e.raw.workload else {
            unreachable!()
        };
        let (users, ramp_up_s, hold_s, ramp_down_s, think_time_s) = (
            c.users,
            c.ramp_up_s,
            c.hold_s,
            c.ramp_down_s,
            c.think_time_s,
        );
        let (ru, h, rd) = (ramp_up_s * 0.5, hold_s * 0.5, ramp_down_s * 0.5);
        let user_seconds = f64::from(users) * (ru / 2.0 + h + rd / 2.0);
        let cycle_s = r.latency_ms.request.mean / 1e3 + think_time_s;
        let bound = user_seconds / cycle_s / r.duration_s;
        assert!(
            (r.throughput_rps / bound - 1.0).abs() < 0.08,
            "{stem}: {} req/s vs user bound {bound}",
            r.throughput_rps
        );
    }
}

#[test]
fn a_lone_tts_burst_finishes_faster_time_sliced_than_on_a_3g_slice() {
    // Bursting: with the neighbour idle, a time-sliced context has the whole GPU, while a MIG
    // instance keeps only its 42 SMs and half the bandwidth.
    let ts = seed_experiment("time-slicing-light");
    let mig = seed_experiment("mig-light");
    let tts = |e: &gpushare::experiment::Experiment| {
        let m = e.model_of_kind("tts").unwrap();
        let r = e.replicas.iter().find(|r| r.model == m).unwrap();
        let gpushare::profile::ModelKind::Tts(t) = &e.models[m].kind else {
            unreachable!()
        };
        gpushare::pipeline::tts_sentence_time(
            t,
            &e.models[m].efficiency,
            &e.partitions[r.partition].resources,
            15,
        )
        .total_ns
    };
    assert!(tts(&ts) < tts(&mig) * 0.9, "{} vs {}", tts(&ts), tts(&mig));
}

#[test]
fn full_seed_study_reproduces_the_published_heavy_load_figures() {
    // Fitted targets (README "Calibration"): MIG 1.00 and time-slicing 0.76 req/s per GPU,
    // each within 5%; the baseline below time-slicing; 100% success everywhere.
    let study = gpushare::study::Study::load(
        &crate::root().join("experiments/seed-study.toml"),
        &gpushare::hardware::Catalogue::builtin(),
    )
    .unwrap();
    let runs = study.run();
    let get = |n: &str| runs.iter().find(|r| r.name == n).unwrap();
    let mig = get("mig-heavy").throughput_per_gpu_rps;
    let ts = get("time-slicing-heavy").throughput_per_gpu_rps;
    let base = get("baseline-heavy").throughput_per_gpu_rps;
    assert!((mig / 1.00 - 1.0).abs() < 0.05, "MIG {mig}");
    assert!((ts / 0.76 - 1.0).abs() < 0.05, "time-slicing {ts}");
    assert!(base < ts, "baseline {base} vs time-slicing {ts}");
    assert!(runs.iter().all(|r| r.success_rate == Some(1.0)));
}

/// The `summary.json` of the seed study and of the studies that exercise the other paths
/// (MPS, faults, KV cache, batching), without the `events` counters (a measure of the engine's
/// work, not a result): optimisations that do not change the model must leave them
/// byte-identical. After an intended model change, regenerate them with
/// `GPUSHARE_BLESS=1 cargo test --release golden` and say why in the commit.
#[test]
fn study_summaries_match_their_golden_files() {
    for stem in [
        "seed-study",
        "mps-study",
        "fault-study",
        "kv-cache-study",
        "batching-study",
    ] {
        let study = gpushare::study::Study::load(
            &crate::root().join(format!("experiments/{stem}.toml")),
            &gpushare::hardware::Catalogue::builtin(),
        )
        .unwrap();
        let mut json: serde_json::Value =
            serde_json::from_str(&gpushare::report::summary_json(&study.run())).unwrap();
        for r in json["runs"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("events");
        }
        json.as_object_mut().unwrap().remove("version");
        let text = serde_json::to_string_pretty(&json).unwrap() + "\n";
        let path = crate::root().join(format!("tests/golden/{stem}-summary.json"));
        if std::env::var_os("GPUSHARE_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).expect("golden file (see the doc comment)");
        assert!(
            text == golden,
            "{stem}: the summary changed; see this test's doc comment"
        );
    }
}
