//! MPS space sharing: one client equals a dedicated GPU, SM caps, bandwidth contention,
//! narrow kernels side by side, and the scheduler's invariants.

use gpushare::engine::SimTime;
use gpushare::hardware::{Catalogue, Partition};
use gpushare::profile::{Demand, Dtype, Efficiency, Work, exec_time};
use gpushare::sharing::{CtxId, MpsShare, TimeSlicer};
use proptest::prelude::*;

const EFF: Efficiency = Efficiency {
    compute: 0.5,
    memory: 0.8,
    launch_us: 4.0,
    dtype: Dtype::Fp16,
};

fn a100() -> Partition {
    Catalogue::builtin()
        .gpu("a100-80gb")
        .expect("catalogue has the A100 80GB")
        .full_partition()
}

fn mps(p: &Partition) -> MpsShare {
    MpsShare::new(p.sms, p.mem_bw_bytes_per_s)
}

/// A job: `(arrival_ns, client, phases)`.
type Job = (u64, CtxId, Vec<Demand>);

/// What one job went through.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Outcome {
    /// When it reached the head of its client's queue.
    start: u64,
    done: u64,
}

/// Runs `jobs` to the end (completions first at equal times), checking on the way that
/// completion times never decrease and that each client's jobs complete in FIFO order.
/// Returns each job's outcome and the time of the last event.
fn run(m: &mut MpsShare, jobs: &[Job]) -> (Vec<Outcome>, u64) {
    let mut out: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].0, i));
    let mut next = 0;
    let mut last = 0u64;
    let mut free_at = vec![0u64; m.contexts()]; // when each client's previous job completed
    let mut fifo: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); m.contexts()];
    loop {
        let nc = m.next_completion();
        let na = order.get(next).map(|&i| SimTime(jobs[i].0));
        match (nc, na) {
            (None, None) => break,
            (Some(c), a) if a.is_none_or(|a| c <= a) => {
                assert!(c.0 >= last, "completion times never decrease");
                let (ctx, tok) = m.finishing(c);
                assert_eq!(m.complete(c), (ctx, tok));
                let i = tok as usize;
                assert_eq!(fifo[ctx].pop_front(), Some(i), "FIFO per client");
                assert!(out[i].is_none(), "job {i} completed twice");
                let start = jobs[i].0.max(free_at[ctx]);
                out[i] = Some(Outcome { start, done: c.0 });
                free_at[ctx] = c.0;
                last = c.0;
            }
            (_, Some(a)) => {
                let i = order[next];
                next += 1;
                fifo[jobs[i].1].push_back(i);
                m.submit(a, jobs[i].1, i as u64, jobs[i].2.clone());
                last = a.0;
            }
            (Some(_), None) => unreachable!(),
        }
    }
    let out = out
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or_else(|| panic!("job {i} never completed")))
        .collect();
    (out, last)
}

/// Runs `(arrival_ns, ctx, work_ns)` jobs through a time-slicer; completion times by index.
fn time_sliced(ts: &mut TimeSlicer, jobs: &[(u64, CtxId, u64)]) -> Vec<u64> {
    let mut done = vec![0; jobs.len()];
    let mut next = 0;
    loop {
        let nc = ts.next_completion();
        match (nc, jobs.get(next)) {
            (None, None) => break,
            (Some(c), a) if a.is_none_or(|a| c.0 <= a.0) => {
                let (_, tok) = ts.complete(c);
                done[tok as usize] = c.0;
            }
            (_, Some(&(t, ctx, ns))) => {
                ts.submit(SimTime(t), ctx, next as u64, ns);
                next += 1;
            }
            (Some(_), None) => unreachable!(),
        }
    }
    done
}

fn work(flops: f64, bytes: f64, sm_demand: f64, launches: f64) -> Work {
    Work {
        flops,
        bytes,
        sm_demand,
        launches,
    }
}

/// A wide, compute-bound kernel group (~1.3 ms alone on an A100).
fn wide() -> Work {
    work(2e11, 1e7, 216.0, 20.0)
}

#[test]
fn one_client_at_full_share_is_a_dedicated_gpu() {
    let p = a100();
    let works = [
        wide(),
        work(5e10, 1e6, 30.0, 10.0),     // narrow, compute-bound
        work(1e7, 3e9, 20.0, 50.0),      // memory-bound
        work(1e9, 1e4, 0.3, 1.0),        // narrower than one SM
        work(3.3e10, 2.1e8, 77.7, 13.0), // in between
    ];
    // Each work alone, then a three-phase job of all of them in a row, spaced out so that
    // every job starts on arrival; then the same jobs back to back.
    let mut jobs: Vec<Job> = Vec::new();
    let mut want = Vec::new();
    for (i, w) in works.iter().enumerate() {
        jobs.push((i as u64 * 50_000_000, 0, vec![Demand::of(w, &p, &EFF)]));
        want.push(exec_time(w, &p, &EFF).total_ns);
    }
    let multi: Vec<Demand> = works[..3].iter().map(|w| Demand::of(w, &p, &EFF)).collect();
    let multi_ns: f64 = works[..3]
        .iter()
        .map(|w| exec_time(w, &p, &EFF).total_ns)
        .sum();
    jobs.push((400_000_000, 0, multi.clone()));
    want.push(multi_ns);
    for _ in 0..3 {
        jobs.push((500_000_000, 0, multi.clone()));
        want.push(multi_ns);
    }
    let mut m = mps(&p);
    m.add_client(100.0);
    let (out, _) = run(&mut m, &jobs);

    // A dedicated GPU, as the pipeline runs one: a lone time-sliced context, each job's
    // runtime `exec_time` rounded to the nanosecond.
    let mut ts = TimeSlicer::new(1_024_000, 50_000);
    ts.add_context();
    let ts_jobs: Vec<(u64, CtxId, u64)> = jobs
        .iter()
        .zip(&want)
        .map(|(j, ns)| (j.0, 0, (ns.round() as u64).max(1)))
        .collect();
    let ts_done = time_sliced(&mut ts, &ts_jobs);
    for (i, (o, ns)) in out.iter().zip(&want).enumerate() {
        let took = (o.done - o.start) as f64;
        assert!((took - ns).abs() <= 1.0, "job {i}: {took} vs {ns}");
        // Rounded up here, to the nearest there: at most 1 ns apart per job back to back.
        assert!(o.done.abs_diff(ts_done[i]) <= 3, "job {i}");
    }
    assert_eq!(m.switching_ns(), 0);
    let busy: u64 = out.iter().map(|o| o.done - o.start).sum();
    assert_eq!(m.busy_ns(), busy);
}

/// Runs `2n` copies of `d` on one client at 100 % and alternately on two at 50 %; returns
/// the two makespans and the two-client outcomes.
fn one_vs_two_halves(p: &Partition, d: Demand, n: usize) -> (u64, u64, Vec<Outcome>, MpsShare) {
    let mut one = mps(p);
    one.add_client(100.0);
    let (_, one_end) = run(&mut one, &vec![(0, 0, vec![d]); 2 * n]);
    let mut two = mps(p);
    let a = two.add_client(50.0);
    let b = two.add_client(50.0);
    assert_eq!((two.cap_sms(a), two.cap_sms(b)), (54, 54));
    let jobs: Vec<Job> = (0..2 * n).map(|i| (0, i % 2, vec![d])).collect();
    let (out, two_end) = run(&mut two, &jobs);
    (one_end, two_end, out, two)
}

#[test]
fn two_wide_clients_at_half_share_each_take_twice_as_long_and_together_match_one_at_full() {
    let p = a100();
    // Pure kernels (no launch gaps): exactly half the SMs each.
    let w = Work {
        launches: 0.0,
        ..wide()
    };
    let alone = exec_time(&w, &p, &EFF).total_ns;
    let (one_end, two_end, out, two) = one_vs_two_halves(&p, Demand::of(&w, &p, &EFF), 20);
    for o in &out {
        let slowdown = (o.done - o.start) as f64 / alone;
        assert!((slowdown - 2.0).abs() < 1e-3, "{slowdown}");
    }
    // Aggregate throughput: 2n jobs in the same time as on one client with the whole GPU.
    let ratio = two_end as f64 / one_end as f64;
    assert!((ratio - 1.0).abs() < 1e-3, "{ratio}");
    // Each had half the SMs all along: the GPU's SMs were all in use.
    assert!(two.sm_busy_ns() / two.busy_ns() as f64 > 0.999);

    // With launch overheads, the launches stay serial per client but overlap the other
    // client's kernels: each job takes 2x its compute plus its launches, and the pair gets a
    // little more done than one client alone.
    let b = exec_time(&wide(), &p, &EFF);
    let (one_end, two_end, out, _) = one_vs_two_halves(&p, Demand::of(&wide(), &p, &EFF), 20);
    for o in &out {
        let took = (o.done - o.start) as f64;
        let want = 2.0 * b.compute_ns + b.launch_ns;
        assert!((took / want - 1.0).abs() < 1e-3, "{took} vs {want}");
        assert!((1.9..2.0).contains(&(took / b.total_ns)));
    }
    let ratio = two_end as f64 / one_end as f64;
    assert!(ratio < 1.0 && ratio > 0.95, "{ratio}");
}

#[test]
fn two_narrow_clients_run_side_by_side_unlike_time_slicing() {
    let p = a100();
    let w = work(3e10, 1e7, 20.0, 10.0);
    let d = Demand::of(&w, &p, &EFF);
    let alone = exec_time(&w, &p, &EFF).total_ns;
    assert!(exec_time(&w, &p, &EFF).compute_ns > 10.0 * exec_time(&w, &p, &EFF).memory_ns);
    for pcts in [[100.0, 100.0], [50.0, 50.0], [20.0, 30.0]] {
        let mut m = mps(&p);
        for pct in pcts {
            m.add_client(pct);
        }
        let (out, end) = run(&mut m, &[(0, 0, vec![d]), (0, 1, vec![d])]);
        for o in &out {
            let slowdown = (o.done - o.start) as f64 / alone;
            assert!(slowdown < 1.03, "{pcts:?}: {slowdown}");
        }
        // Only 40 of 108 SMs in use.
        let occupancy = m.sm_busy_ns() / m.busy_ns() as f64;
        assert!((occupancy - 40.0 / 108.0).abs() < 0.01, "{occupancy}");

        // Time-slicing runs them one after the other.
        let mut ts = TimeSlicer::new(1_024_000, 50_000);
        ts.add_context();
        ts.add_context();
        let ns = alone.round() as u64;
        let ts_end = time_sliced(&mut ts, &[(0, 0, ns), (0, 1, ns)])
            .into_iter()
            .max()
            .unwrap_or(0);
        assert!((end as f64) < 0.55 * ts_end as f64, "{end} vs {ts_end}");
    }
}

#[test]
fn two_memory_bound_clients_each_run_at_half_speed_whatever_their_caps() {
    let p = a100();
    let w = work(1e8, 4e9, 20.0, 10.0);
    let b = exec_time(&w, &p, &EFF);
    assert!(b.memory_ns > 50.0 * b.compute_ns);
    let d = Demand::of(&w, &p, &EFF);
    for pcts in [[100.0, 100.0], [50.0, 50.0], [10.0, 90.0], [5.0, 5.0]] {
        let mut m = mps(&p);
        for pct in pcts {
            m.add_client(pct);
        }
        let (out, _) = run(&mut m, &[(0, 0, vec![d]), (0, 1, vec![d])]);
        for o in &out {
            // Half the bandwidth each; one client's launch gaps carry the other's traffic.
            let took = (o.done - o.start) as f64;
            let want = 2.0 * b.memory_ns;
            assert!(
                (took / want - 1.0).abs() < 1e-3,
                "{pcts:?}: {took} vs {want}"
            );
            let slowdown = took / b.total_ns;
            assert!((1.9..=2.0).contains(&slowdown), "{pcts:?}: {slowdown}");
        }
    }
}

#[test]
fn a_quarter_share_never_gets_more_than_its_27_sms() {
    let p = a100();
    let d = Demand::of(&wide(), &p, &EFF);
    let on_27 = d.alone_ns(27.0, p.mem_bw_bytes_per_s);
    for clients in 1..=2 {
        let mut m = mps(&p);
        for _ in 0..clients {
            let c = m.add_client(25.0);
            assert_eq!(m.cap_sms(c), 27);
        }
        let jobs: Vec<Job> = (0..clients).map(|c| (0, c, vec![d])).collect();
        let (out, _) = run(&mut m, &jobs);
        for o in &out {
            let took = (o.done - o.start) as f64;
            assert!((took - on_27).abs() <= 1.0, "{took} vs {on_27}");
        }
        let occupancy = m.sm_busy_ns() / m.busy_ns() as f64;
        let want = 27.0 * clients as f64 / 108.0;
        assert!((occupancy - want).abs() < 1e-3, "{occupancy} vs {want}");
    }
}

fn demand() -> impl Strategy<Value = Demand> {
    (0.0f64..2e8, 1.0f64..150.0, 0.0f64..4e6, 0.0f64..20_000.0).prop_map(
        |(sm_ns, sm_demand, bytes, launch_ns)| Demand {
            sm_ns,
            sm_demand,
            bytes,
            launch_ns,
        },
    )
}

proptest! {
    #[test]
    fn every_job_completes_once_in_order_and_never_faster_than_alone(
        pcts in proptest::collection::vec(1.0f64..=100.0, 1..5),
        raw in proptest::collection::vec(
            (0u64..30_000_000, 0usize..4, proptest::collection::vec(demand(), 0..4)),
            1..30,
        ),
    ) {
        let p = a100();
        let jobs: Vec<Job> = raw
            .into_iter()
            .map(|(t, c, ph)| (t, c % pcts.len(), ph))
            .collect();
        let fresh = || {
            let mut m = mps(&p);
            for &pct in &pcts {
                m.add_client(pct);
            }
            m
        };
        let mut m = fresh();
        let (out, end) = run(&mut m, &jobs);
        prop_assert!(m.busy_ns() <= end);
        prop_assert!(m.sm_busy_ns() <= m.busy_ns() as f64 + 1e-6);
        for (job, o) in jobs.iter().zip(&out) {
            let alone: f64 = job
                .2
                .iter()
                .map(|d| d.alone_ns(f64::from(p.sms), p.mem_bw_bytes_per_s))
                .sum();
            let took = (o.done - o.start) as f64;
            prop_assert!(took >= 1.0);
            prop_assert!(took >= alone * (1.0 - 1e-9) - 1e-6, "{took} < {alone}");
        }
        // Determinism: the same inputs give the same nanoseconds.
        let mut again = fresh();
        prop_assert_eq!(run(&mut again, &jobs), (out, end));
        prop_assert_eq!(again.busy_ns(), m.busy_ns());
        prop_assert_eq!(again.sm_busy_ns().to_bits(), m.sm_busy_ns().to_bits());
    }
}
