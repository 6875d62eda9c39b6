//! MPS space sharing of one partition: the kernels of several clients run concurrently.
//!
//! Under MPS the clients (processes) of a GPU submit kernels through one server context, so
//! their kernels run side by side with no context switch. [`MpsShare`] models that as a fluid
//! (processor-sharing) system over the jobs running at an instant, one per client: the head
//! of the client's FIFO. A job is a list of phases ([`Demand`]s, e.g. a TTS encoder, its
//! decoder steps and its codec) run in order.
//!
//! # The model
//!
//! With `S` SMs and `B` bytes/s on the partition, at every instant:
//!
//! 1. **SMs.** Client `i`'s cap is `c_i = max(1, floor(pct_i × S / 100))` SMs
//!    (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`). Its running phase wants
//!    `w_i = min(sm_demand_i, c_i)`. If `Σ w_i <= S` each gets `s_i = w_i`; otherwise SMs are
//!    water-filled max-min fairly: visiting jobs by increasing want (ties by client id),
//!    each gets its want while that is at most an equal split of what is left, and all the
//!    rest get that equal split. SMs are fluid: a fraction of an SM is a share of its time.
//! 2. **Bandwidth** (no QoS: shared by need). Unconstrained, the phase takes
//!    `T_i = max(sm_ns_i / s_i, bytes_i / B × 1e9) + launch_ns_i` and moves
//!    `n_i = bytes_i / T_i` on average. If `Σ n_i <= B` every phase takes `T_i`; otherwise
//!    bandwidth is water-filled the same way (a level `L` with `Σ min(n_i, L) = B`) and a job
//!    capped at `L` takes `bytes_i / L × 1e9`: its average traffic is its share, so the
//!    bandwidth is fully used (one client's launch gaps are filled by others' transfers).
//! 3. **Progress.** Each running phase's remaining fraction falls at `1 / T_i` per ns. Shares
//!    are recomputed whenever a job starts, finishes or moves to its next phase; phase ends
//!    fall between integer nanoseconds and are handled inside [`MpsShare::advance`] and
//!    [`MpsShare::next_completion`].
//! 4. **Completion.** A job whose last phase ends at real time `x` completes at the integer
//!    `ceil(x)` (and at least 1 ns after it started): it never completes before its work is
//!    done. Between `x` and `ceil(x)` it holds nothing; its client's next job starts when
//!    the completion is retired.
//!
//! Time is tracked in `f64` offsets from the *anchor*, the last instant the set of jobs
//! changed; every query replays from the anchor, so a completion time predicted by
//! [`MpsShare::next_completion`] is exactly the one [`MpsShare::complete`] finds, however
//! many [`MpsShare::advance`] calls come between. Same inputs, same nanoseconds: no hash
//! maps, and every order is by client id.
//!
//! One client at 100 % is a dedicated partition: a job takes `Σ` over its phases of
//! [`Demand::alone_ns`] with the whole partition, i.e. [`crate::profile::exec_time`]'s
//! total, rounded up.
//!
//! # Not modelled
//!
//! - Contention other than for SMs and DRAM bandwidth: L2 cache capacity and bandwidth,
//!   shared-memory and register pressure between co-resident kernels, thread-block
//!   scheduling granularity.
//! - SMs held by a job stalled on memory are not lent to others.
//! - Client priorities, the MPS server's start-up, pinned-memory limits.
//! - The MPS client limit per device and per-client memory: the experiment loader checks
//!   them, not this scheduler. Faults (one client's fatal error reaches every client) are
//!   the pipeline's concern.

use std::collections::VecDeque;

use crate::engine::SimTime;
use crate::profile::Demand;
use crate::sharing::CtxId;
use crate::timeline::{BusyTimeline, TimelineRecorder};

/// One submitted job.
#[derive(Clone, Debug)]
struct Job {
    token: u64,
    phases: Vec<Demand>,
}

/// One MPS client (a process) and its FIFO of jobs; the head runs.
#[derive(Clone, Debug)]
struct Client {
    /// Most SMs its kernels may use.
    cap_sms: f64,
    queue: VecDeque<Job>,
}

/// Progress of a client's head job.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Index of the phase in progress.
    phase: usize,
    /// Fraction of that phase still to do, in `[0, 1]`.
    rem: f64,
    /// When it became the head.
    start: SimTime,
    /// Once its last phase has ended: when it completes, and a sequence number ordering
    /// completions due at the same instant (the one whose work ended first goes first).
    done: Option<(SimTime, u64)>,
}

/// The state that decides timing and the accounting so far; cheap to clone for look-ahead.
#[derive(Clone, Debug, Default)]
struct Fluid {
    /// Per client: its head job's progress, if it has a job.
    heads: Vec<Option<Head>>,
    busy_ns: u64,
    sm_busy_ns: f64,
    /// Jobs whose work has ended so far (source of the sequence numbers).
    ended: u64,
}

/// What one running phase gets: SMs and the resulting phase duration.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Share {
    sms: f64,
    phase_ns: f64,
}

/// Max-min fair division of `capacity` among `wants`: everyone gets their want if they all
/// fit; otherwise, visiting wants in increasing order (ties by index), each gets its want
/// while that is at most an equal split of what is left, and the rest get that equal split.
fn water_fill(wants: &[f64], capacity: f64) -> Vec<f64> {
    if wants.iter().sum::<f64>() <= capacity {
        return wants.to_vec();
    }
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by(|&a, &b| wants[a].total_cmp(&wants[b]).then(a.cmp(&b)));
    let mut out = wants.to_vec();
    let mut left = capacity;
    for (k, &j) in order.iter().enumerate() {
        let level = left / (order.len() - k) as f64;
        if wants[j] <= level {
            left -= wants[j];
        } else {
            for &r in &order[k..] {
                out[r] = level;
            }
            break;
        }
    }
    out
}

/// Shares of the running phases `(cap_sms, demand)` on `sms` SMs and `bw` bytes/s
/// (steps 1 and 2 of the module's model).
fn allocate(sms: f64, bw: f64, running: &[(f64, &Demand)]) -> Vec<Share> {
    let wants: Vec<f64> = running
        .iter()
        .map(|(cap, d)| d.sm_demand.min(*cap))
        .collect();
    let mut shares: Vec<Share> = water_fill(&wants, sms)
        .into_iter()
        .zip(running)
        .map(|(s, (_, d))| Share {
            sms: s,
            phase_ns: d.alone_ns(s, bw),
        })
        .collect();
    let needs: Vec<f64> = shares
        .iter()
        .zip(running)
        .map(|(s, (_, d))| {
            if s.phase_ns > 0.0 {
                d.bytes / s.phase_ns * 1e9
            } else {
                0.0
            }
        })
        .collect();
    let got = water_fill(&needs, bw);
    for ((s, (_, d)), (&g, &n)) in shares.iter_mut().zip(running).zip(got.iter().zip(&needs)) {
        if g < n {
            s.phase_ns = s.phase_ns.max(d.bytes / g * 1e9);
        }
    }
    shares
}

/// Whole nanoseconds at or after the real offset `x` (>= 0).
fn ceil_ns(x: f64) -> u64 {
    x.ceil() as u64
}

/// MPS space sharing of one partition among clients, each capped by its active-thread
/// percentage and all sharing the memory bandwidth (see the module documentation).
///
/// Mirrors [`super::TimeSlicer`]: submit jobs per client, ask for the next completion,
/// advance, and retire completions one at a time.
#[derive(Clone, Debug)]
pub struct MpsShare {
    sms: u32,
    mem_bw_bytes_per_s: f64,
    clients: Vec<Client>,
    /// The last instant the set of running jobs changed, and the state then.
    anchor: SimTime,
    fluid: Fluid,
    /// The latest instant the state was brought to, and the state then (replayed from the
    /// anchor).
    now: SimTime,
    at_now: Fluid,
    /// Busy time per time bucket, when recorded.
    timeline: Option<TimelineRecorder>,
}

impl MpsShare {
    /// An MPS server on a partition with `sms` SMs (> 0) and `mem_bw_bytes_per_s` (> 0) of
    /// memory bandwidth.
    pub fn new(sms: u32, mem_bw_bytes_per_s: f64) -> Self {
        assert!(sms > 0, "invariant: a partition has SMs");
        assert!(
            mem_bw_bytes_per_s.is_finite() && mem_bw_bytes_per_s > 0.0,
            "invariant: a partition has a finite, positive memory bandwidth"
        );
        MpsShare {
            sms,
            mem_bw_bytes_per_s,
            clients: Vec::new(),
            anchor: SimTime::ZERO,
            fluid: Fluid::default(),
            now: SimTime::ZERO,
            at_now: Fluid::default(),
            timeline: None,
        }
    }

    /// Register a client with this active-thread percentage (`0 < pct <= 100`); it may use
    /// at most `max(1, floor(pct × SMs / 100))` SMs. Returns its id.
    pub fn add_client(&mut self, active_thread_pct: f64) -> CtxId {
        assert!(
            active_thread_pct > 0.0 && active_thread_pct <= 100.0,
            "invariant: active-thread percentage in (0, 100] (checked by the loader)"
        );
        let cap = (active_thread_pct * f64::from(self.sms) / 100.0)
            .floor()
            .max(1.0);
        self.clients.push(Client {
            cap_sms: cap,
            queue: VecDeque::new(),
        });
        self.fluid.heads.push(None);
        self.at_now.heads.push(None);
        self.clients.len() - 1
    }

    /// Number of registered clients.
    pub fn contexts(&self) -> usize {
        self.clients.len()
    }

    /// Most SMs client `ctx` may use (its active-thread cap).
    pub fn cap_sms(&self, ctx: CtxId) -> u32 {
        self.clients[ctx].cap_sms as u32
    }

    /// Jobs queued or running on `ctx`.
    pub fn queued(&self, ctx: CtxId) -> usize {
        self.clients[ctx].queue.len()
    }

    /// Nanoseconds with at least one job running (up to the last update); a job runs from
    /// when it reaches the head of its client's queue until it is retired.
    pub fn busy_ns(&self) -> u64 {
        self.at_now.busy_ns
    }

    /// Occupancy-weighted busy time: `∫ SMs in use dt / SMs`, nanoseconds (up to the last
    /// update). At most [`Self::busy_ns`].
    pub fn sm_busy_ns(&self) -> f64 {
        self.at_now.sm_busy_ns
    }

    /// Time spent switching contexts: always 0, MPS runs every client in one context.
    pub fn switching_ns(&self) -> u64 {
        0
    }

    /// Also record busy time per bucket of `bucket_ns` (see [`BusyTimeline`]).
    pub fn record_timeline(&mut self, bucket_ns: u64) {
        self.timeline = Some(TimelineRecorder::new(bucket_ns));
    }

    /// The recorded timeline, if any (up to the last update).
    pub fn timeline(&self) -> Option<BusyTimeline> {
        self.timeline.as_ref().map(TimelineRecorder::timeline)
    }

    /// Bring the state forward to `t`; no job may complete strictly before `t`.
    pub fn advance(&mut self, t: SimTime) {
        if t.since(self.now) == 0 {
            return;
        }
        let busy_before = self.at_now.busy_ns;
        let mut f = self.fluid.clone();
        self.run(&mut f, Some(t.since(self.anchor)));
        for h in f.heads.iter().flatten() {
            if let Some((due, _)) = h.done {
                assert!(
                    due >= t,
                    "invariant: a job completion was skipped (completion events must be handled first)"
                );
            }
        }
        if let Some(tl) = &mut self.timeline {
            tl.record(self.now, t, f.busy_ns - busy_before, 0);
        }
        self.at_now = f;
        self.now = t;
    }

    /// Queue a job on `ctx` at `t`: its phases run in order, after the jobs already queued
    /// there. Every demand must be finite and non-negative, with `sm_demand >= 1` (as
    /// [`Demand::of`] makes it); no phases is a job with no work (it takes 1 ns).
    pub fn submit(&mut self, t: SimTime, ctx: CtxId, token: u64, phases: Vec<Demand>) {
        for d in &phases {
            assert!(
                [d.sm_ns, d.bytes, d.launch_ns]
                    .iter()
                    .all(|v| v.is_finite() && *v >= 0.0)
                    && d.sm_demand.is_finite()
                    && d.sm_demand >= 1.0,
                "invariant: a phase's demand is finite, non-negative and wants at least 1 SM: {d:?}"
            );
        }
        let phases = if phases.is_empty() {
            vec![Demand {
                sm_demand: 1.0,
                ..Demand::default()
            }]
        } else {
            phases
        };
        self.advance(t);
        self.clients[ctx].queue.push_back(Job { token, phases });
        if self.clients[ctx].queue.len() > 1 {
            return; // waits behind its client's running job: no timing changes
        }
        self.rebase();
        self.fluid.heads[ctx] = Some(Head {
            phase: 0,
            rem: 1.0,
            start: t,
            done: None,
        });
        self.at_now = self.fluid.clone();
    }

    /// At `t`, drop every job of `ctx`, the running one included (its process died); the
    /// others' shares grow at once. Returns the number of jobs dropped.
    pub fn clear(&mut self, t: SimTime, ctx: CtxId) -> usize {
        self.advance(t);
        let n = self.clients[ctx].queue.len();
        if n == 0 {
            return 0;
        }
        self.rebase();
        self.clients[ctx].queue.clear();
        self.fluid.heads[ctx] = None;
        self.at_now = self.fluid.clone();
        n
    }

    /// Exact time of the next job completion if nothing else is submitted. Phase ends are
    /// internal: they change shares but are not reported.
    pub fn next_completion(&self) -> Option<SimTime> {
        let mut look = self.fluid.clone();
        self.run(&mut look, None)
    }

    /// At `t` (= [`Self::next_completion`]), the job that completes: `(ctx, token)`. Work
    /// submitted to that client before [`Self::complete`] queues behind it. When several
    /// complete at `t`, the one whose work ended first (then the lowest client id).
    pub fn finishing(&mut self, t: SimTime) -> (CtxId, u64) {
        self.advance(t);
        let ctx = self.completing(t);
        let job = self.clients[ctx]
            .queue
            .front()
            .expect("invariant: a completing client has a job");
        (ctx, job.token)
    }

    /// At `t` (= [`Self::next_completion`]), retire the completed job (the one
    /// [`Self::finishing`] names) and start its client's next job; returns `(ctx, token)`.
    pub fn complete(&mut self, t: SimTime) -> (CtxId, u64) {
        self.advance(t);
        let ctx = self.completing(t);
        self.rebase();
        let job = self.clients[ctx]
            .queue
            .pop_front()
            .expect("invariant: a completing client has a job");
        self.fluid.heads[ctx] = (!self.clients[ctx].queue.is_empty()).then_some(Head {
            phase: 0,
            rem: 1.0,
            start: t,
            done: None,
        });
        self.at_now = self.fluid.clone();
        (ctx, job.token)
    }

    /// The client whose job completes at `t` (state already at `t`).
    fn completing(&self, t: SimTime) -> CtxId {
        self.at_now
            .heads
            .iter()
            .enumerate()
            .filter_map(|(ctx, h)| match h.and_then(|h| h.done) {
                Some((due, seq)) if due == t => Some((seq, ctx)),
                _ => None,
            })
            .min()
            .expect("invariant: finishing()/complete() only at a completion")
            .1
    }

    /// Make the current instant the anchor (the set of running jobs is about to change).
    fn rebase(&mut self) {
        self.anchor = self.now;
        self.fluid = self.at_now.clone();
    }

    /// Shares of the phases running in `f`, with their client ids.
    fn shares(&self, f: &Fluid) -> Vec<(CtxId, Share)> {
        let running: Vec<(CtxId, f64, &Demand)> = f
            .heads
            .iter()
            .enumerate()
            .filter_map(|(ctx, h)| {
                let h = h.as_ref().filter(|h| h.done.is_none())?;
                let c = &self.clients[ctx];
                Some((ctx, c.cap_sms, &c.queue[0].phases[h.phase]))
            })
            .collect();
        let args: Vec<(f64, &Demand)> = running.iter().map(|&(_, c, d)| (c, d)).collect();
        let shares = allocate(f64::from(self.sms), self.mem_bw_bytes_per_s, &args);
        running.iter().map(|r| r.0).zip(shares).collect()
    }

    /// Replay `f` (the state at the anchor) forward. With a budget, for that many ns, marking
    /// jobs done on the way, and return `None`; without one, until the earliest completion
    /// is known, and return it (`None` if no job is queued).
    fn run(&self, f: &mut Fluid, budget: Option<u64>) -> Option<SimTime> {
        let mut best = f.heads.iter().flatten().filter_map(|h| h.done).min();
        if let Some(b) = budget
            && f.heads.iter().any(Option::is_some)
        {
            f.busy_ns += b;
        }
        let limit = budget.map(|b| b as f64);
        let sms = f64::from(self.sms);
        let mut t = 0.0f64; // ns since the anchor
        loop {
            match limit {
                // No completion after `t` can come before `anchor + ceil(t)`.
                None => {
                    if let Some((due, _)) = best
                        && self.anchor.plus(ceil_ns(t)) >= due
                    {
                        return Some(due);
                    }
                }
                Some(l) if t >= l => return None,
                Some(_) => {}
            }
            let shares = self.shares(f);
            if shares.is_empty() {
                return best.map(|b| b.0);
            }
            let head = |f: &Fluid, ctx: CtxId| f.heads[ctx].expect("invariant: running head");
            let seg = shares
                .iter()
                .map(|(ctx, s)| head(f, *ctx).rem * s.phase_ns)
                .fold(f64::INFINITY, f64::min);
            let end = t + seg;
            let step = match limit {
                Some(l) if end > l => l - t,
                _ => seg,
            };
            f.sm_busy_ns += step * shares.iter().map(|(_, s)| s.sms).sum::<f64>() / sms;
            if step < seg {
                for (ctx, s) in &shares {
                    let h = f.heads[*ctx].as_mut().expect("invariant: running head");
                    h.rem = (h.rem - step / s.phase_ns).max(0.0);
                }
                return None;
            }
            for (ctx, s) in &shares {
                let n_phases = self.clients[*ctx].queue[0].phases.len();
                let h = f.heads[*ctx].as_mut().expect("invariant: running head");
                if h.rem * s.phase_ns > seg {
                    h.rem = (h.rem - seg / s.phase_ns).max(0.0);
                } else if h.phase + 1 < n_phases {
                    h.phase += 1;
                    h.rem = 1.0;
                } else {
                    h.rem = 0.0;
                    f.ended += 1;
                    let due = self.anchor.plus(ceil_ns(end)).max(h.start.plus(1));
                    h.done = Some((due, f.ended));
                    best = match best {
                        Some(b) => Some(b.min((due, f.ended))),
                        None => Some((due, f.ended)),
                    };
                }
            }
            t = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMS: u32 = 108;
    const BW: f64 = 2039e9;

    /// A phase of `sm_ns` SM-ns over up to `width` SMs moving `bytes`, no launches.
    fn phase(sm_ns: f64, width: f64, bytes: f64) -> Demand {
        Demand {
            sm_ns,
            sm_demand: width,
            bytes,
            launch_ns: 0.0,
        }
    }

    #[test]
    fn water_fill_gives_wants_when_they_fit_and_max_min_shares_otherwise() {
        assert_eq!(water_fill(&[10.0, 20.0], 108.0), vec![10.0, 20.0]);
        assert_eq!(water_fill(&[108.0, 108.0], 108.0), vec![54.0, 54.0]);
        assert_eq!(
            water_fill(&[10.0, 108.0, 108.0], 108.0),
            vec![10.0, 49.0, 49.0]
        );
        assert_eq!(
            water_fill(&[60.0, 30.0, 60.0], 100.0),
            vec![35.0, 30.0, 35.0]
        );
    }

    #[test]
    fn capped_bandwidth_is_fully_used() {
        let a = phase(1.0, 10.0, 1e9);
        let b = phase(1.0, 10.0, 3e9);
        let shares = allocate(108.0, BW, &[(108.0, &a), (108.0, &b)]);
        let used: f64 = [(&a, shares[0]), (&b, shares[1])]
            .iter()
            .map(|(d, s)| d.bytes / s.phase_ns * 1e9)
            .sum();
        assert!((used / BW - 1.0).abs() < 1e-12, "{used}");
        // Equal levels: each moves half the bandwidth.
        assert!((shares[1].phase_ns / shares[0].phase_ns - 3.0).abs() < 1e-12);
    }

    #[test]
    fn phase_boundaries_between_events_change_shares() {
        // Client a: 1 ms of narrow work, then a wide phase. Client b: one wide phase.
        // While a is narrow (20 SMs), b gets 88 of its 108; afterwards they split 54/54.
        let mut m = MpsShare::new(SMS, BW);
        let a = m.add_client(100.0);
        let b = m.add_client(100.0);
        m.submit(
            SimTime(0),
            a,
            0,
            vec![phase(20.0 * 1e6, 20.0, 0.0), phase(324e6, 108.0, 0.0)],
        );
        m.submit(SimTime(0), b, 1, vec![phase(108.0 * 2e6, 108.0, 0.0)]);
        // b: 1 ms at 88 SMs does 88e6 SM-ns; 128e6 left at 54 SMs = 2.370... ms.
        let b_done: f64 = 1e6 + (216e6 - 88e6) / 54.0;
        // a's wide phase (324e6 SM-ns) runs at 54 SMs while b runs, then alone at 108.
        let a_at_b = (b_done - 1e6) * 54.0;
        let a_done = b_done + (324e6 - a_at_b) / 108.0;
        assert!(a_at_b < 324e6);
        let t1 = m.next_completion().unwrap();
        assert_eq!(t1.0, b_done.ceil() as u64);
        // An advance part-way must not change the prediction.
        m.advance(SimTime(1_500_000));
        assert_eq!(m.next_completion(), Some(t1));
        assert_eq!(m.complete(t1), (b, 1));
        let t2 = m.next_completion().unwrap();
        assert!((t2.0 as f64 - a_done).abs() <= 1.0, "{} vs {a_done}", t2.0);
        assert_eq!(m.complete(t2), (a, 0));
        assert_eq!(m.next_completion(), None);
        assert_eq!(m.busy_ns(), t2.0);
        // SMs were all in use until b finished; then a alone on all of them.
        assert!((m.sm_busy_ns() - t2.0 as f64).abs() < 2.0);
    }

    #[test]
    fn a_job_with_no_work_takes_one_nanosecond() {
        let mut m = MpsShare::new(SMS, BW);
        let a = m.add_client(50.0);
        m.submit(SimTime(7), a, 3, vec![]);
        m.submit(SimTime(7), a, 4, vec![phase(0.0, 1.0, 0.0)]);
        assert_eq!(m.next_completion(), Some(SimTime(8)));
        assert_eq!(m.complete(SimTime(8)), (a, 3));
        assert_eq!(m.next_completion(), Some(SimTime(9)));
        assert_eq!(m.complete(SimTime(9)), (a, 4));
    }

    #[test]
    fn same_instant_completions_come_out_one_by_one_in_client_order() {
        let mut m = MpsShare::new(SMS, BW);
        let a = m.add_client(50.0);
        let b = m.add_client(50.0);
        for c in [b, a] {
            m.submit(SimTime(0), c, c as u64, vec![phase(54e6, 54.0, 0.0)]);
        }
        let t = m.next_completion().unwrap();
        assert_eq!(t, SimTime(1_000_000));
        assert_eq!(m.finishing(t), (a, 0));
        assert_eq!(m.complete(t), (a, 0));
        assert_eq!(m.next_completion(), Some(t));
        assert_eq!(m.complete(t), (b, 1));
    }

    /// A job for the reference: `(arrival_ns, client, phases)`.
    type RefJob = (u64, usize, Vec<Demand>);

    /// Runs jobs to the end through the public API, probing with `advance` at `probes`
    /// (each at or before the next completion); returns completion times by job index.
    fn run_all(m: &mut MpsShare, jobs: &[RefJob], probes: &[u64]) -> Vec<u64> {
        let mut done = vec![u64::MAX; jobs.len()];
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| (jobs[i].0, i));
        let mut next = 0;
        let mut probes: VecDeque<u64> = probes.iter().copied().collect();
        loop {
            let nc = m.next_completion();
            let na = order.get(next).map(|&i| SimTime(jobs[i].0));
            while let Some(&p) = probes.front()
                && nc.is_some_and(|c| SimTime(p) <= c)
                && na.is_none_or(|a| SimTime(p) <= a)
            {
                probes.pop_front();
                if SimTime(p) >= m.now {
                    m.advance(SimTime(p));
                    assert_eq!(m.next_completion(), nc, "a probe moved a prediction");
                }
            }
            match (nc, na) {
                (None, None) => break,
                (Some(c), a) if a.is_none_or(|a| c <= a) => {
                    let (_, tok) = m.complete(c);
                    done[tok as usize] = c.0;
                }
                (_, Some(a)) => {
                    let i = order[next];
                    next += 1;
                    m.submit(a, jobs[i].1, i as u64, jobs[i].2.clone());
                }
                (Some(_), None) => unreachable!(),
            }
        }
        done
    }

    /// Independent reference: absolute time, every change handled in one time-ordered loop
    /// (phase ends, then retirements, then arrivals at the same instant).
    fn reference(caps: &[f64], jobs: &[RefJob]) -> Vec<u64> {
        struct Run {
            job: usize,
            phase: usize,
            rem: f64,
            start: u64,
            retire: Option<u64>,
        }
        let n = caps.len();
        let mut done = vec![u64::MAX; jobs.len()];
        let mut queues: Vec<VecDeque<usize>> = vec![VecDeque::new(); n];
        let mut runs: Vec<Option<Run>> = (0..n).map(|_| None).collect();
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| (jobs[i].0, i));
        let mut order: VecDeque<usize> = order.into();
        let mut t = 0.0f64;
        let mut ended = 0u64;
        let mut seqs = vec![0u64; n];
        let phases = |r: &Run| &jobs[r.job].2;
        loop {
            let running: Vec<usize> = (0..n)
                .filter(|&c| runs[c].as_ref().is_some_and(|r| r.retire.is_none()))
                .collect();
            let args: Vec<(f64, &Demand)> = running
                .iter()
                .map(|&c| {
                    let r = runs[c].as_ref().unwrap();
                    (caps[c], &phases(r)[r.phase])
                })
                .collect();
            let shares = allocate(f64::from(SMS), BW, &args);
            let phase_end = running
                .iter()
                .zip(&shares)
                .map(|(&c, s)| t + runs[c].as_ref().unwrap().rem * s.phase_ns)
                .fold(f64::INFINITY, f64::min);
            let retire = runs
                .iter()
                .flatten()
                .filter_map(|r| r.retire)
                .min()
                .map_or(f64::INFINITY, |x| x as f64);
            let arrive = order.front().map_or(f64::INFINITY, |&i| jobs[i].0 as f64);
            let next = phase_end.min(retire).min(arrive);
            if next == f64::INFINITY {
                break;
            }
            for (&c, s) in running.iter().zip(&shares) {
                let r = runs[c].as_mut().unwrap();
                if t + r.rem * s.phase_ns <= next {
                    if r.phase + 1 < jobs[r.job].2.len() {
                        r.phase += 1;
                        r.rem = 1.0;
                    } else {
                        r.rem = 0.0;
                        r.retire = Some((next.ceil() as u64).max(r.start + 1));
                        ended += 1;
                        seqs[c] = ended;
                    }
                } else {
                    r.rem = (r.rem - (next - t) / s.phase_ns).max(0.0);
                }
            }
            t = next;
            if phase_end == next {
                continue;
            }
            if retire == next {
                let c = (0..n)
                    .filter(|&c| {
                        runs[c]
                            .as_ref()
                            .is_some_and(|r| r.retire.is_some_and(|x| x as f64 == next))
                    })
                    .min_by_key(|&c| seqs[c])
                    .unwrap();
                let r = runs[c].take().unwrap();
                done[r.job] = next as u64;
                queues[c].pop_front();
                runs[c] = queues[c].front().map(|&j| Run {
                    job: j,
                    phase: 0,
                    rem: 1.0,
                    start: next as u64,
                    retire: None,
                });
                continue;
            }
            let i = order.pop_front().unwrap();
            let c = jobs[i].1;
            queues[c].push_back(i);
            if queues[c].len() == 1 {
                runs[c] = Some(Run {
                    job: i,
                    phase: 0,
                    rem: 1.0,
                    start: jobs[i].0,
                    retire: None,
                });
            }
        }
        done
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

    fn jobs() -> impl Strategy<Value = Vec<RefJob>> {
        proptest::collection::vec(
            (
                0u64..20_000_000,
                0usize..3,
                proptest::collection::vec(demand(), 1..4),
            ),
            1..20,
        )
    }

    proptest! {
        #[test]
        fn matches_the_absolute_time_reference(
            pcts in proptest::collection::vec(1.0f64..=100.0, 3),
            jobs in jobs(),
            probes in proptest::collection::vec(0u64..30_000_000, 0..10),
        ) {
            let mut m = MpsShare::new(SMS, BW);
            let caps: Vec<f64> = pcts
                .iter()
                .map(|&p| {
                    let c = m.add_client(p);
                    f64::from(m.cap_sms(c))
                })
                .collect();
            let mut probes = probes;
            probes.sort_unstable();
            let fast = run_all(&mut m, &jobs, &probes);
            let slow = reference(&caps, &jobs);
            for (f, s) in fast.iter().zip(&slow) {
                prop_assert!(f.abs_diff(*s) <= 2, "{fast:?} vs {slow:?}");
            }
        }
    }
}
