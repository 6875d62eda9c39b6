//! Invariants: determinism, request conservation, and metamorphic relations.

use gpushare::engine::SimTime;
use gpushare::experiment::Experiment;
use gpushare::experiment::SharingSpec;
use gpushare::hardware::Catalogue;
use gpushare::pipeline::Simulation;
use gpushare::report::{run_experiment, summary_json};
use gpushare::workload::{Poisson, WorkloadSpec};
use proptest::prelude::*;

use crate::{seed_experiment, shorten};

#[test]
fn same_seed_gives_identical_summary_bytes_and_other_seeds_differ() {
    let mut e = seed_experiment("time-slicing-heavy");
    shorten(&mut e, 0.2);
    let a = summary_json(&[run_experiment(&e)]);
    let b = summary_json(&[run_experiment(&e)]);
    assert_eq!(a, b);
    e.raw.seed += 1;
    let c = summary_json(&[run_experiment(&e)]);
    assert_ne!(a, c);
}

#[test]
fn one_tenant_time_sliced_equals_dedicated() {
    let mut ded = seed_experiment("baseline-heavy");
    shorten(&mut ded, 0.2);
    let mut ts = ded.clone();
    for g in &mut ts.raw.gpus {
        g.sharing = SharingSpec::TimeSlicing {
            replicas: 4,
            time_slice_us: 1024.0,
            switch_cost_us: 500.0,
        };
    }
    // The partitions are what the simulator runs on; rebuild them as the loader would.
    for p in &mut ts.partitions {
        p.switch_ns = 500_000;
    }
    let a = run_experiment(&ded);
    let b = run_experiment(&ts);
    assert_eq!(a.completed, b.completed);
    assert_eq!(a.latency_ms, b.latency_ms);
    assert!(b.partitions.iter().all(|p| p.switching_fraction == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Every request started is completed, failed or cancelled, whatever the seed, mode and load.
    #[test]
    fn every_request_is_accounted_for(
        seed in 0u64..1000,
        stem in prop::sample::select(vec!["baseline-heavy", "time-slicing-heavy", "mig-heavy", "mig-light"]),
        factor in 0.02f64..0.1,
        timeout_s in 2.0f64..60.0,
    ) {
        let mut e = seed_experiment(stem);
        shorten(&mut e, factor);
        e.raw.seed = seed;
        if let WorkloadSpec::ClosedLoop(c) = &mut e.raw.workload {
            c.timeout_s = timeout_s;
        }
        let r = Simulation::new(&e).run();
        let c = r.counts;
        prop_assert_eq!(c.started, c.completed + c.failed + c.cancelled);
        prop_assert_eq!(r.samples.request.len() as u64, c.completed);
        for (i, p) in e.partitions.iter().enumerate() {
            let _ = p;
            prop_assert!(r.busy_ns[i] + r.switching_ns[i] <= SimTime::from_secs_f64(r.duration_s).0);
        }
    }

    /// Open-loop arrivals drain: every request ends completed or failed.
    #[test]
    fn poisson_requests_all_end(seed in 0u64..1000, rate in 0.2f64..4.0) {
        let mut e = seed_experiment("mig-light");
        e.raw.workload = WorkloadSpec::Poisson(Poisson { rate_rps: rate, duration_s: 20.0, timeout_s: 30.0 });
        e.raw.seed = seed;
        let r = Simulation::new(&e).run();
        prop_assert_eq!(r.counts.cancelled, 0);
        prop_assert_eq!(r.counts.started, r.counts.completed + r.counts.failed);
    }
}

/// Busy time is counted inside the measured window only, so it never exceeds wall time,
/// however the last events straddle the window's end (closed loop) or however long an
/// overloaded open loop takes to drain.
#[test]
fn busy_fractions_stay_within_wall_time() {
    let mut closed = seed_experiment("baseline-light");
    if let WorkloadSpec::ClosedLoop(c) = &mut closed.raw.workload {
        (c.users, c.ramp_up_s, c.hold_s, c.ramp_down_s) = (1, 0.0, 0.1, 0.0);
    }
    closed.raw.audio.as_mut().unwrap().chunk_interval_ms = 1.0;
    let mut open = seed_experiment("baseline-light");
    open.raw.workload = WorkloadSpec::Poisson(Poisson {
        rate_rps: 20.0,
        duration_s: 10.0,
        timeout_s: 30.0,
    });
    for e in [&closed, &open] {
        let r = run_experiment(e);
        for p in &r.partitions {
            assert!(
                p.busy_fraction + p.switching_fraction <= 1.0 + 1e-12,
                "{p:?}"
            );
        }
    }
    // Overloaded open loop: throughput is what drained, not the offered 20 req/s.
    let r = run_experiment(&open);
    assert!(r.throughput_rps < 5.0, "{}", r.throughput_rps);
}

/// LLM replicas alone on their partition run ahead of the event queue, and ASR replicas alone
/// on theirs jump over repeating batches (without busy timelines); the same run with one
/// event per step, per completion and per batch must give identical results, on experiments
/// that reach every way a running-ahead or jumping replica is interrupted: new requests and
/// streams, timeouts, crashes and restarts, KV-cache exhaustion, streamed sentences to TTS,
/// look-aheads stopped by their limit.
#[test]
fn running_ahead_changes_nothing_but_the_event_count() {
    let files = [
        "seed/baseline-heavy.toml",
        "seed/mig-heavy.toml",
        "faults/baseline-heavy-faults.toml",
        "faults/mig-heavy-faults.toml",
        "batching/mig-heavy-batched.toml",
        "kv-cache/whole-a100-small-kv.toml",
        "kv-cache/mig-3g40gb.toml",
        "fleet/fleet-10.toml",
    ];
    let mut fewer = 0;
    let mut jumped = 0;
    for f in files {
        let path = crate::root().join("experiments").join(f);
        let mut e = Experiment::load(&path, &Catalogue::builtin()).expect("experiment loads");
        shorten(&mut e, 0.3);
        if let WorkloadSpec::Poisson(p) = &mut e.raw.workload {
            p.duration_s = p.duration_s.min(30.0);
        }
        for seed in [1, 2] {
            e.raw.seed = seed;
            if seed == 2 {
                // Retried requests and KV exhaustion that crashes the LLM reach the replica too.
                let faults = e.raw.faults.get_or_insert_with(Default::default);
                faults.retries = 2;
                faults.oom_crashes = true;
            }
            let mut ahead = Simulation::new(&e).run();
            let mut stepped = Simulation::new(&e).without_run_ahead().run();
            let mut bare = Simulation::new(&e).with_timelines(false).run();
            let mut bare_stepped = Simulation::new(&e)
                .with_timelines(false)
                .without_run_ahead()
                .run();
            // Look-aheads cut short by their limit end at a step horizon in the middle of
            // the work, which interruptions then replace.
            let mut short = Simulation::new(&e).with_look_ahead(3).run();
            assert!(ahead.events <= stepped.events, "{f} seed {seed}");
            if ahead.events < stepped.events {
                fewer += 1;
            }
            // Jumps happen only without timelines.
            assert!(bare.events <= ahead.events, "{f} seed {seed}");
            if bare.events < ahead.events {
                jumped += 1;
            }
            for r in [
                &mut ahead,
                &mut stepped,
                &mut bare,
                &mut bare_stepped,
                &mut short,
            ] {
                r.events = 0;
            }
            assert_eq!(
                format!("{short:?}"),
                format!("{stepped:?}"),
                "{f} seed {seed} with look-aheads of 3 iterations"
            );
            assert_eq!(
                format!("{ahead:?}"),
                format!("{stepped:?}"),
                "{f} seed {seed}"
            );
            assert_eq!(
                format!("{bare:?}"),
                format!("{bare_stepped:?}"),
                "{f} seed {seed} without timelines"
            );
        }
    }
    // Every file has an LLM replica alone on a partition: running ahead must have saved events.
    assert_eq!(fewer, 2 * files.len());
    // Most have an ASR replica alone on a partition (a MIG instance, a dedicated GPU).
    assert!(jumped >= files.len(), "{jumped}");
}

/// Sweeps, plans and `run` without a results folder record no busy timelines; everything
/// else in the results but the event count must be what a run that records them gives.
#[test]
fn skipping_timelines_changes_nothing_else() {
    for f in [
        "seed/time-slicing-heavy.toml",
        "seed/mps-heavy.toml",
        "fleet/fleet-10.toml",
    ] {
        let path = crate::root().join("experiments").join(f);
        let mut e = Experiment::load(&path, &Catalogue::builtin()).expect("experiment loads");
        shorten(&mut e, 0.3);
        if let WorkloadSpec::Poisson(p) = &mut e.raw.workload {
            p.duration_s = p.duration_s.min(20.0);
        }
        let full = Simulation::new(&e).run();
        let mut bare = Simulation::new(&e).with_timelines(false).run();
        assert_eq!(full.timelines.len(), e.partitions.len(), "{f}");
        assert!(
            full.timelines
                .iter()
                .any(|t| t.busy_ns.iter().any(|&b| b > 0)),
            "{f}"
        );
        assert!(bare.timelines.is_empty(), "{f}");
        bare.timelines = full.timelines.clone();
        // Without timelines, ASR replicas alone on their partition may jump over repeating
        // batches (fewer events, see `pipeline::cycles`); nothing else may differ.
        assert!(bare.events <= full.events, "{f}");
        bare.events = full.events;
        assert_eq!(format!("{full:?}"), format!("{bare:?}"), "{f}");
    }
}
