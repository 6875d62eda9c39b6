//! Benchmarks: the event engine (PHOLD-like, against a bare binary-heap loop), one seed run,
//! the whole seed study, and a small fleet. Run with `cargo bench`; figures in BENCHMARKS.md.

/// The allocator the command-line binary uses (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use gpushare::engine::{Engine, EventClass, Popped, SimTime, Streams};
use gpushare::experiment::Experiment;
use gpushare::hardware::Catalogue;
use gpushare::report::run_experiment;
use rand::RngExt;

fn main() {
    divan::main();
}

/// Events handed out per PHOLD measurement.
const PHOLD_EVENTS: u64 = 1_000_000;
/// Events pending at any time (the population of a PHOLD model).
const PHOLD_POPULATION: u64 = 10_000;

/// A PHOLD message: which logical process it is for.
#[derive(Clone, Copy)]
struct Msg(u32);

impl EventClass for Msg {
    fn class(&self) -> u8 {
        0
    }
}

/// PHOLD on the engine: every event schedules one more at a random delay for a random process.
#[divan::bench]
fn engine_phold(b: Bencher) {
    b.counter(ItemsCount::new(PHOLD_EVENTS)).bench_local(|| {
        let mut rng = Streams::new(1).stream("phold");
        let mut e: Engine<Msg> = Engine::new();
        for i in 0..PHOLD_POPULATION {
            e.schedule(SimTime(rng.random_range(0..1_000_000)), Msg(i as u32));
        }
        for _ in 0..PHOLD_EVENTS {
            let (now, m) = e.pop().expect("population never empties");
            let lp = (m.0 + rng.random_range(1..64)) % PHOLD_POPULATION as u32;
            e.schedule(now.plus(rng.random_range(1..1_000_000)), Msg(lp));
        }
        black_box(e.processed())
    });
}

/// Timers as the pipeline uses them, one per partition of a 1,000-GPU fleet (1,400): each
/// firing sets its timer again (the partition's next job) and moves another one (a job
/// submitted elsewhere moves that partition's completion).
#[divan::bench]
fn engine_timers(b: Bencher) {
    const SLOTS: usize = 1_400;
    b.counter(ItemsCount::new(PHOLD_EVENTS)).bench_local(|| {
        let mut rng = Streams::new(1).stream("timers");
        let mut e: Engine<Msg> = Engine::new();
        e.use_timers(SLOTS, 0);
        for s in 0..SLOTS {
            e.set_timer(s, Some(SimTime(rng.random_range(0..1_000_000))));
        }
        for _ in 0..PHOLD_EVENTS {
            let Some((now, Popped::Timer(s))) = e.pop_any() else {
                unreachable!("only timers are set");
            };
            e.set_timer(s, Some(now.plus(rng.random_range(1..1_000_000))));
            let other = rng.random_range(0..SLOTS);
            e.set_timer(other, Some(now.plus(rng.random_range(1..1_000_000))));
        }
        black_box(e.processed())
    });
}

/// The same PHOLD loop on a bare `BinaryHeap<Reverse<(u64, u64, u32)>>`: the floor the
/// engine's overhead is measured against.
#[divan::bench]
fn bare_heap_phold(b: Bencher) {
    b.counter(ItemsCount::new(PHOLD_EVENTS)).bench_local(|| {
        let mut rng = Streams::new(1).stream("phold");
        let mut h = BinaryHeap::new();
        let mut seq = 0u64;
        for i in 0..PHOLD_POPULATION {
            h.push(Reverse((rng.random_range(0..1_000_000u64), seq, i as u32)));
            seq += 1;
        }
        for _ in 0..PHOLD_EVENTS {
            let Reverse((now, _, lp)) = h.pop().expect("population never empties");
            let lp = (lp + rng.random_range(1..64)) % PHOLD_POPULATION as u32;
            h.push(Reverse((now + rng.random_range(1..1_000_000u64), seq, lp)));
            seq += 1;
        }
        black_box(h.len())
    });
}

fn experiment(rel: &str) -> Experiment {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    Experiment::load(&path, &Catalogue::builtin()).expect("shipped experiments load")
}

/// One seed run: heavy load under time-slicing and MIG (375 simulated seconds, 50 users).
#[divan::bench(args = ["time-slicing-heavy", "mig-heavy"])]
fn seed_heavy_run(b: Bencher, stem: &str) {
    let exp = experiment(&format!("experiments/seed/{stem}.toml"));
    b.bench_local(|| black_box(run_experiment(&exp)));
}

/// The whole seed study (six runs, one after the other).
#[divan::bench]
fn seed_study(b: Bencher) {
    let study = gpushare::study::Study::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/seed-study.toml"),
        &Catalogue::builtin(),
    )
    .expect("the seed study loads");
    b.bench_local(|| {
        for e in &study.experiments {
            black_box(run_experiment(e));
        }
    });
}

/// A 10-GPU fleet pod for 60 simulated seconds (1,200 voice requests).
#[divan::bench(sample_count = 10)]
fn fleet_10_gpus_60s(b: Bencher) {
    let mut exp = experiment("experiments/fleet/fleet-10.toml");
    if let gpushare::workload::WorkloadSpec::Poisson(p) = &mut exp.raw.workload {
        p.duration_s = 60.0;
    }
    exp.duration_s = 60.0;
    b.bench_local(|| black_box(run_experiment(&exp)));
}
