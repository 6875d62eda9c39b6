//! Round-robin time-slicing of CUDA contexts on one partition, advanced in bulk.
//!
//! Every partition (a whole GPU or a MIG instance) runs its contexts through a
//! [`TimeSlicer`]. With one context it is simply a FIFO at full speed; with several, the GPU
//! round-robins the contexts that have work, one quantum each, paying a context-switch cost
//! whenever the loaded context changes. A context alone keeps the GPU (bursting).
//!
//! Long contention is not simulated slice by slice: whole rounds in which no job can finish
//! are skipped in one step, so the cost of an update is O(contexts²), independent of how many
//! slices elapse. The result is exact in integer nanoseconds; a naive slice-by-slice reference
//! in the tests checks that.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::activity::{Segment, SliceLog};
use crate::engine::SimTime;
use crate::timeline::{BusyTimeline, TimelineRecorder};

/// Identifies a context (one replica's CUDA context) on a [`TimeSlicer`].
pub type CtxId = usize;

/// A context that has work, in rotation order, with the remaining work of its head job.
#[derive(Clone, Copy, Debug)]
struct Slot {
    ctx: CtxId,
    head_rem_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No context has work.
    Idle,
    /// Loading the context `ring[cur]`; `left_ns` of switch time remain.
    Switching { left_ns: u64 },
    /// `ring[cur]` runs; `slice_left_ns` of its quantum remain.
    Running { slice_left_ns: u64 },
}

/// The scheduler state that decides timing; cheap to clone for look-ahead.
#[derive(Clone, Debug)]
struct Schedule {
    quantum_ns: u64,
    switch_ns: u64,
    /// Inline for a few contexts, so that a look-ahead copy does not allocate.
    ring: SmallVec<[Slot; 4]>,
    cur: usize,
    phase: Phase,
    /// The context whose state is loaded on the GPU (no switch needed to resume it).
    loaded: Option<CtxId>,
    busy_ns: u64,
    switching_ns: u64,
}

/// Why [`Schedule::run`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The time budget was used up.
    Budget,
    /// The head job of `ring[cur]` finished after `elapsed` ns.
    Completion { elapsed: u64 },
}

impl Schedule {
    /// Advance at most `budget` ns (unbounded if `None`), stopping at the first job completion.
    fn run(&mut self, budget: Option<u64>) -> Stop {
        // The fields one by one, and the ring as a plain slice: every access in the loop
        // would otherwise ask the small vector where its items live.
        let Schedule {
            quantum_ns,
            switch_ns,
            ring,
            cur,
            phase,
            loaded,
            busy_ns,
            switching_ns,
        } = self;
        let (quantum_ns, switch_ns) = (*quantum_ns, *switch_ns);
        let ring = ring.as_mut_slice();
        let mut left = budget.unwrap_or(u64::MAX);
        let mut elapsed = 0u64;
        loop {
            match *phase {
                Phase::Idle => return Stop::Budget,
                Phase::Switching { left_ns } => {
                    if left_ns == switch_ns {
                        let skipped =
                            skip_rounds(ring, quantum_ns, switch_ns, left, busy_ns, switching_ns);
                        left -= skipped;
                        elapsed += skipped;
                    }
                    let s = left_ns.min(left);
                    left -= s;
                    elapsed += s;
                    *switching_ns += s;
                    if s == left_ns {
                        *loaded = Some(ring[*cur].ctx);
                        *phase = Phase::Running {
                            slice_left_ns: quantum_ns,
                        };
                    } else {
                        *phase = Phase::Switching {
                            left_ns: left_ns - s,
                        };
                    }
                    if left == 0 {
                        return Stop::Budget;
                    }
                }
                Phase::Running { slice_left_ns } => {
                    let alone = ring.len() == 1;
                    let head = &mut ring[*cur].head_rem_ns;
                    // A lone context renews its quantum without switching, so only its job matters.
                    let r = if alone {
                        (*head).min(left)
                    } else {
                        (*head).min(left).min(slice_left_ns)
                    };
                    *head -= r;
                    let finished = *head == 0;
                    *busy_ns += r;
                    left -= r;
                    elapsed += r;
                    let used = quantum_ns - slice_left_ns + r;
                    let slice_left = if alone {
                        quantum_ns - used % quantum_ns
                    } else {
                        quantum_ns - used
                    };
                    if finished {
                        *phase = Phase::Running {
                            slice_left_ns: slice_left,
                        };
                        return Stop::Completion { elapsed };
                    }
                    if slice_left == 0 {
                        *cur = if *cur + 1 == ring.len() { 0 } else { *cur + 1 };
                        *phase = Phase::Switching { left_ns: switch_ns };
                        if switch_ns == 0 {
                            // No switch phase to start rounds from: skip whole rounds here.
                            let skipped = skip_rounds(
                                ring,
                                quantum_ns,
                                switch_ns,
                                left,
                                busy_ns,
                                switching_ns,
                            );
                            left -= skipped;
                            elapsed += skipped;
                            *phase = Phase::Running {
                                slice_left_ns: quantum_ns,
                            };
                            *loaded = Some(ring[*cur].ctx);
                        }
                    } else {
                        *phase = Phase::Running {
                            slice_left_ns: slice_left,
                        };
                    }
                    if left == 0 {
                        return Stop::Budget;
                    }
                }
            }
        }
    }

    /// Log the turns and switches of the next `dt` ns from `from` (no job finishing before
    /// its end), leaving `self` where they end. It runs [`Self::run`] itself, one phase at a
    /// time: each budget ends at the phase's end, shorter than a round, so nothing is
    /// skipped in bulk and the phases are exactly those the bulk advance went through.
    fn log(&mut self, from: SimTime, dt: u64, log: &mut SliceLog) {
        let end = from.0 + dt;
        let mut at = from.0;
        while at < end && !log.full() {
            let (len, switch) = match self.phase {
                Phase::Idle => return,
                Phase::Switching { left_ns } => (left_ns, true),
                Phase::Running { slice_left_ns } => {
                    let head = self.ring[self.cur].head_rem_ns;
                    // A lone context renews its quantum: its turn lasts as long as its work.
                    let len = if self.ring.len() == 1 {
                        head
                    } else {
                        head.min(slice_left_ns)
                    };
                    (len, false)
                }
            };
            let step = len.min(end - at);
            if step == 0 {
                return;
            }
            log.push(Segment {
                from: at,
                to: at + step,
                ctx: self.ring[self.cur].ctx as u32,
                switch,
            });
            self.run(Some(step));
            at += step;
        }
    }

    /// The GPU turns to `ring[cur]`: switch into it (or, with no switch cost, run it at once).
    fn enter_current(&mut self) {
        self.phase = if self.switch_ns > 0 {
            Phase::Switching {
                left_ns: self.switch_ns,
            }
        } else {
            self.loaded = Some(self.ring[self.cur].ctx);
            Phase::Running {
                slice_left_ns: self.quantum_ns,
            }
        };
    }
}

/// At the start of a round (about to switch into `ring[cur]`), skip every whole round in
/// which no head job can finish and which fits in `budget`, adding its busy and switching
/// time. Returns the time skipped.
fn skip_rounds(
    ring: &mut [Slot],
    quantum_ns: u64,
    switch_ns: u64,
    budget: u64,
    busy_ns: &mut u64,
    switching_ns: &mut u64,
) -> u64 {
    let k = ring.len() as u64;
    if k < 2 {
        return 0;
    }
    let round = k.saturating_mul(switch_ns.saturating_add(quantum_ns));
    let by_work = ring
        .iter()
        .map(|s| (s.head_rem_ns - 1) / quantum_ns)
        .min()
        .unwrap_or(0);
    let m = by_work.min(budget / round);
    if m == 0 {
        return 0;
    }
    for s in ring.iter_mut() {
        s.head_rem_ns -= m * quantum_ns;
    }
    *busy_ns += m * k * quantum_ns;
    *switching_ns += m * k * switch_ns;
    m * round
}

/// Round-robin time-slicing of contexts on one partition.
#[derive(Debug)]
pub struct TimeSlicer {
    now: SimTime,
    sched: Schedule,
    /// Queued jobs per context: `(token, work_ns)`; the head job's progress lives in the ring.
    queues: Vec<VecDeque<(u64, u64)>>,
    /// Busy and switching time per time bucket, when recorded.
    timeline: Option<TimelineRecorder>,
    /// With several contexts: the schedule as [`Self::next_completion`] ran it forward to
    /// that completion, and when. The [`Self::advance`] that reaches exactly that instant
    /// takes it instead of running the schedule again; any other drops it.
    ahead: Option<(SimTime, Schedule)>,
}

impl TimeSlicer {
    /// A slicer with quantum `quantum_ns` (> 0) and per-switch cost `switch_ns`.
    pub fn new(quantum_ns: u64, switch_ns: u64) -> Self {
        assert!(quantum_ns > 0, "invariant: time slice must be positive");
        TimeSlicer {
            now: SimTime::ZERO,
            sched: Schedule {
                quantum_ns,
                switch_ns,
                ring: SmallVec::new(),
                cur: 0,
                phase: Phase::Idle,
                loaded: None,
                busy_ns: 0,
                switching_ns: 0,
            },
            queues: Vec::new(),
            timeline: None,
            ahead: None,
        }
    }

    /// Also record busy and switching time per bucket of `bucket_ns` (see [`BusyTimeline`]).
    pub fn record_timeline(&mut self, bucket_ns: u64) {
        self.timeline = Some(TimelineRecorder::new(bucket_ns));
    }

    /// Log the turns and switches from the last update to `t` (>= it), those the next
    /// update, to `t`, goes through; for a trace (see `sharing::Traced`). Nothing changes:
    /// a copy of the schedule walks the stretch.
    pub fn log_until(&self, t: SimTime, log: &mut SliceLog) {
        let dt = t.since(self.now);
        if dt > 0 && log.wants(self.now, t) {
            self.sched.clone().log(self.now, dt, log);
        }
    }

    /// The recorded timeline, if any (up to the last update).
    pub fn timeline(&self) -> Option<BusyTimeline> {
        self.timeline.as_ref().map(TimelineRecorder::timeline)
    }

    /// Register a context; returns its id.
    pub fn add_context(&mut self) -> CtxId {
        self.ahead = None;
        self.queues.push(VecDeque::new());
        self.queues.len() - 1
    }

    /// Number of registered contexts.
    pub fn contexts(&self) -> usize {
        self.queues.len()
    }

    /// Nanoseconds the GPU spent running kernels so far (up to the last update).
    pub fn busy_ns(&self) -> u64 {
        self.sched.busy_ns
    }

    /// Nanoseconds the GPU spent switching contexts so far.
    pub fn switching_ns(&self) -> u64 {
        self.sched.switching_ns
    }

    /// Jobs queued or running on `ctx`.
    pub fn queued(&self, ctx: CtxId) -> usize {
        self.queues[ctx].len()
    }

    /// Bring the state forward to `t`; no job may finish strictly before `t`.
    pub fn advance(&mut self, t: SimTime) {
        let dt = t.since(self.now);
        let ahead = self.ahead.take();
        if dt > 0 {
            let before = (self.sched.busy_ns, self.sched.switching_ns);
            let elapsed = if let Some((_, sched)) = ahead.filter(|a| a.0 == t) {
                // Bounded by `dt`, the run stops at the same completion in the same state.
                self.sched = sched;
                dt
            } else {
                match self.sched.run(Some(dt)) {
                    Stop::Budget => dt,
                    Stop::Completion { elapsed } => elapsed,
                }
            };
            assert_eq!(
                elapsed, dt,
                "invariant: a job completion was skipped (completion events must be handled first)"
            );
            if let Some(tl) = &mut self.timeline {
                let busy = self.sched.busy_ns - before.0;
                tl.record(self.now, t, busy, self.sched.switching_ns - before.1);
            }
        }
        self.now = t;
    }

    /// Queue a job of `work_ns` (its runtime with the partition to itself) on `ctx` at `t`.
    pub fn submit(&mut self, t: SimTime, ctx: CtxId, token: u64, work_ns: u64) {
        self.advance(t);
        let work_ns = work_ns.max(1);
        self.queues[ctx].push_back((token, work_ns));
        if self.queues[ctx].len() > 1 {
            return; // already in the rotation
        }
        let s = &mut self.sched;
        let slot = Slot {
            ctx,
            head_rem_ns: work_ns,
        };
        if s.phase == Phase::Idle {
            s.ring.clear();
            s.ring.push(slot);
            s.cur = 0;
            s.phase = match s.loaded {
                Some(l) if l != ctx && s.switch_ns > 0 => Phase::Switching {
                    left_ns: s.switch_ns,
                },
                _ => {
                    s.loaded = Some(ctx);
                    Phase::Running {
                        slice_left_ns: s.quantum_ns,
                    }
                }
            };
        } else {
            // Joins at the end of the rotation: served after everyone already waiting.
            s.ring.insert(s.cur, slot);
            s.cur += 1;
        }
    }

    /// Exact time of the next job completion if nothing else is submitted.
    pub fn next_completion(&mut self) -> Option<SimTime> {
        let s = &self.sched;
        if let [lone] = s.ring[..] {
            // One context (a dedicated GPU or MIG instance, mostly): no look-ahead needed.
            return match s.phase {
                Phase::Idle => None,
                Phase::Running { .. } => Some(self.now.plus(lone.head_rem_ns)),
                Phase::Switching { left_ns } => Some(self.now.plus(left_ns + lone.head_rem_ns)),
            };
        }
        if s.phase == Phase::Idle {
            return None;
        }
        if let Some((at, _)) = &self.ahead {
            return Some(*at);
        }
        let mut look = self.sched.clone();
        match look.run(None) {
            Stop::Completion { elapsed } => {
                let at = self.now.plus(elapsed);
                self.ahead = Some((at, look));
                Some(at)
            }
            Stop::Budget => unreachable!("a busy schedule always completes a job"),
        }
    }

    /// At `t`, drop every job of `ctx`, the running one included (its process died); the
    /// GPU moves on to the next context with work. Returns the number of jobs dropped.
    pub fn clear(&mut self, t: SimTime, ctx: CtxId) -> usize {
        self.advance(t);
        let n = self.queues[ctx].len();
        if n == 0 {
            return 0;
        }
        self.queues[ctx].clear();
        let s = &mut self.sched;
        let pos = s
            .ring
            .iter()
            .position(|x| x.ctx == ctx)
            .expect("invariant: a context with jobs is in the rotation");
        s.ring.remove(pos);
        if s.loaded == Some(ctx) {
            s.loaded = None;
        }
        if s.ring.is_empty() {
            s.phase = Phase::Idle;
            s.cur = 0;
        } else if pos < s.cur {
            s.cur -= 1;
        } else if pos == s.cur {
            s.cur %= s.ring.len();
            s.enter_current();
        }
        n
    }

    /// At `t` (= [`Self::next_completion`]), the job that finishes: `(ctx, token)`. Work
    /// submitted to that context before [`Self::complete`] queues behind it, so the context
    /// keeps its quantum: a server that hands the GPU its next batch at the same instant does
    /// not give up its turn.
    pub fn finishing(&mut self, t: SimTime) -> (CtxId, u64) {
        self.advance(t);
        let s = &self.sched;
        assert!(
            matches!(s.phase, Phase::Running { .. }) && s.ring[s.cur].head_rem_ns == 0,
            "invariant: finishing() only at a completion"
        );
        let ctx = s.ring[s.cur].ctx;
        (
            ctx,
            self.queues[ctx].front().expect("invariant: running job").0,
        )
    }

    /// At `t` (= [`Self::next_completion`]), retire the finished job; returns `(ctx, token)`.
    pub fn complete(&mut self, t: SimTime) -> (CtxId, u64) {
        self.advance(t);
        let s = &mut self.sched;
        let Phase::Running { slice_left_ns } = s.phase else {
            panic!("invariant: completion while the GPU is not running a context");
        };
        let slot = s.ring[s.cur];
        assert_eq!(
            slot.head_rem_ns, 0,
            "invariant: completion before the job's work is done"
        );
        let (token, _) = self.queues[slot.ctx]
            .pop_front()
            .expect("invariant: running context has a job");
        if let Some(&(_, next_work)) = self.queues[slot.ctx].front() {
            // The same context keeps the rest of its quantum for its next job.
            s.ring[s.cur].head_rem_ns = next_work;
            if slice_left_ns == 0 && s.ring.len() > 1 {
                s.cur = (s.cur + 1) % s.ring.len();
                s.phase = Phase::Switching {
                    left_ns: s.switch_ns,
                };
                if s.switch_ns == 0 {
                    s.loaded = Some(s.ring[s.cur].ctx);
                    s.phase = Phase::Running {
                        slice_left_ns: s.quantum_ns,
                    };
                }
            } else if slice_left_ns == 0 {
                s.phase = Phase::Running {
                    slice_left_ns: s.quantum_ns,
                };
            }
        } else {
            s.ring.remove(s.cur);
            if s.ring.is_empty() {
                s.phase = Phase::Idle;
                s.cur = 0;
            } else {
                s.cur %= s.ring.len();
                s.enter_current();
            }
        }
        (slot.ctx, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn clearing_a_context_drops_its_jobs_and_hands_the_gpu_on() {
        let mut ts = TimeSlicer::new(1000, 100);
        let (a, b) = (ts.add_context(), ts.add_context());
        ts.submit(SimTime(0), a, 1, 10_000);
        ts.submit(SimTime(0), a, 2, 10_000);
        ts.submit(SimTime(0), b, 3, 500);
        assert_eq!(ts.clear(SimTime(300), a), 2);
        assert_eq!(ts.clear(SimTime(300), a), 0);
        // b loads (100 ns switch) and runs its 500 ns alone.
        assert_eq!(ts.next_completion(), Some(SimTime(900)));
        assert_eq!(ts.complete(SimTime(900)), (b, 3));
        assert_eq!(ts.next_completion(), None);
    }

    const Q: u64 = 1_024_000;
    const C: u64 = 50_000;

    /// Runs jobs `(arrival_ns, ctx, work_ns)` to the end; returns completion times by token.
    fn run_all(ts: &mut TimeSlicer, jobs: &[(u64, usize, u64)]) -> Vec<u64> {
        let mut done = vec![0u64; jobs.len()];
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| (jobs[i].0, i));
        let mut next_arrival = 0;
        loop {
            let nc = ts.next_completion();
            let na = order.get(next_arrival).map(|&i| SimTime(jobs[i].0));
            match (nc, na) {
                (None, None) => break,
                (Some(c), a) if a.is_none_or(|a| c <= a) => {
                    let (_, tok) = ts.complete(c);
                    done[tok as usize] = c.0;
                }
                (Some(_), None) => unreachable!(),
                (_, Some(a)) => {
                    let i = order[next_arrival];
                    next_arrival += 1;
                    ts.submit(a, jobs[i].1, i as u64, jobs[i].2);
                }
            }
        }
        done
    }

    /// Independent reference: steps one slice (or switch, or job end) at a time.
    fn naive(q: u64, c: u64, nctx: usize, jobs: &[(u64, usize, u64)]) -> Vec<u64> {
        let mut done = vec![0u64; jobs.len()];
        let mut queues: Vec<VecDeque<(usize, u64)>> = vec![VecDeque::new(); nctx];
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        pending.sort_by_key(|&i| (jobs[i].0, i));
        let mut pending: VecDeque<usize> = pending.into();
        let mut ring: Vec<usize> = Vec::new(); // contexts with work, rotation order
        let mut cur = 0usize;
        let mut loaded: Option<usize> = None;
        let mut t = 0u64;
        let admit = |t: u64,
                     pending: &mut VecDeque<usize>,
                     queues: &mut Vec<VecDeque<(usize, u64)>>,
                     ring: &mut Vec<usize>,
                     cur: &mut usize| {
            while let Some(&i) = pending.front() {
                if jobs[i].0 > t {
                    break;
                }
                pending.pop_front();
                let x = jobs[i].1;
                queues[x].push_back((i, jobs[i].2.max(1)));
                if queues[x].len() == 1 {
                    if ring.is_empty() {
                        ring.push(x);
                        *cur = 0;
                    } else {
                        ring.insert(*cur, x);
                        *cur += 1;
                    }
                }
            }
        };
        loop {
            admit(t, &mut pending, &mut queues, &mut ring, &mut cur);
            if ring.is_empty() {
                match pending.front() {
                    Some(&i) => {
                        t = jobs[i].0;
                        continue;
                    }
                    None => break,
                }
            }
            let x = ring[cur];
            if loaded.is_some_and(|l| l != x) && c > 0 {
                // Switch, admitting arrivals that land during it.
                let end = t + c;
                while let Some(&i) = pending.front() {
                    if jobs[i].0 >= end {
                        break;
                    }
                    t = jobs[i].0;
                    admit(t, &mut pending, &mut queues, &mut ring, &mut cur);
                }
                t = end;
            }
            loaded = Some(x);
            // One quantum for x, in 1-ns-accurate pieces split at arrivals and job ends.
            let mut slice = q;
            loop {
                admit(t, &mut pending, &mut queues, &mut ring, &mut cur);
                let cur_x = ring[cur];
                debug_assert_eq!(cur_x, x);
                let alone = ring.len() == 1;
                let (tok, rem) = queues[x][0];
                let next_arr = pending.front().map(|&i| jobs[i].0 - t).unwrap_or(u64::MAX);
                let step = rem
                    .min(next_arr.max(1))
                    .min(if alone { u64::MAX } else { slice });
                let step = if alone { step.min(slice) } else { step };
                queues[x][0].1 -= step;
                t += step;
                slice -= step;
                if queues[x][0].1 == 0 {
                    done[tok] = t;
                    queues[x].pop_front();
                    if queues[x].is_empty() {
                        ring.remove(cur);
                        if !ring.is_empty() {
                            cur %= ring.len();
                        }
                        break;
                    }
                }
                if slice == 0 {
                    // The quantum ends before anything arriving at this instant joins.
                    if ring.len() > 1 {
                        cur = (cur + 1) % ring.len();
                        break;
                    }
                    slice = q;
                }
            }
        }
        done
    }

    #[test]
    fn the_log_shows_each_turn_and_switch_of_a_bulk_advance() {
        use crate::activity::{Budget, TraceOptions};
        use crate::sharing::Device;
        let mut ts = TimeSlicer::new(Q, C);
        let a = ts.add_context();
        let b = ts.add_context();
        let jobs = [(0, a, 3 * Q), (0, b, 3 * Q + 5)];
        let done = run_all(&mut ts, &jobs);
        // The same jobs on a traced device.
        let mut d = Device::Sliced(Box::new(TimeSlicer::new(Q, C)));
        d.record_slices(&Budget::new(&TraceOptions::default()));
        d.add_context(100.0);
        d.add_context(100.0);
        for (i, &(t, ctx, work)) in jobs.iter().enumerate() {
            d.submit(SimTime(t), ctx, i as u64, work, Vec::new());
        }
        while let Some(c) = d.next_completion() {
            d.complete(c);
        }
        assert_eq!(
            (d.busy_ns(), d.switching_ns()),
            (ts.busy_ns(), ts.switching_ns())
        );
        let segs = d.take_slices();
        let shape: Vec<(u32, bool, u64)> = segs
            .iter()
            .map(|s| (s.ctx, s.switch, s.to - s.from))
            .collect();
        let (a, b) = (a as u32, b as u32);
        // `a` runs first (nothing to switch from), then they alternate; `b` ends alone.
        let mut want = vec![(a, false, Q)];
        for _ in 0..2 {
            want.extend([(b, true, C), (b, false, Q), (a, true, C), (a, false, Q)]);
        }
        want.extend([(b, true, C), (b, false, Q + 5)]);
        assert_eq!(shape, want);
        assert!(segs.windows(2).all(|w| w[0].to == w[1].from));
        assert_eq!(segs.last().unwrap().to, done[1]);
        assert_eq!(
            segs.iter().filter(|s| s.switch).count() as u64 * C,
            ts.switching_ns()
        );
    }

    #[test]
    fn lone_context_is_not_slowed() {
        let mut ts = TimeSlicer::new(Q, C);
        let a = ts.add_context();
        ts.add_context();
        let done = run_all(&mut ts, &[(0, a, 10_000_000), (20_000_000, a, 3_000_000)]);
        assert_eq!(done, vec![10_000_000, 23_000_000]);
        assert_eq!(ts.switching_ns(), 0);
    }

    #[test]
    fn two_saturated_contexts_each_get_half_minus_switching() {
        let mut ts = TimeSlicer::new(Q, C);
        let a = ts.add_context();
        let b = ts.add_context();
        let work = 100 * Q;
        let done = run_all(&mut ts, &[(0, a, work), (0, b, work)]);
        // Alone each would finish at 100 quanta; sharing, both need ~2x plus one switch per slice.
        let ideal_shared = 2 * work;
        for d in &done {
            assert!(*d > ideal_shared - Q && *d <= ideal_shared + 200 * C, "{d}");
        }
        let slowdown = done[1] as f64 / work as f64;
        let expected = 2.0 * (Q + C) as f64 / Q as f64;
        assert!(
            (slowdown - expected).abs() < 0.02,
            "{slowdown} vs {expected}"
        );
    }

    #[test]
    fn burst_while_neighbour_idle_runs_at_full_speed() {
        let mut ts = TimeSlicer::new(Q, C);
        let asr = ts.add_context();
        let tts = ts.add_context();
        // ASR works 0..5 ms; TTS bursts at 10 ms for 3 ms: one switch, then full speed.
        let done = run_all(
            &mut ts,
            &[(0, asr, 5_000_000), (10_000_000, tts, 3_000_000)],
        );
        assert_eq!(done[1], 10_000_000 + C + 3_000_000);
    }

    #[test]
    fn newcomer_waits_for_the_current_slice_to_end() {
        let mut ts = TimeSlicer::new(Q, C);
        let a = ts.add_context();
        let b = ts.add_context();
        let done = run_all(&mut ts, &[(0, a, 10 * Q), (Q / 4, b, 1000)]);
        assert_eq!(done[1], Q + C + 1000);
    }

    proptest! {
        #[test]
        fn bulk_matches_slice_by_slice_reference(
            q in 1_000u64..2_000_000,
            c in 0u64..300_000,
            nctx in 1usize..4,
            jobs in proptest::collection::vec((0u64..50_000_000, 0usize..3, 1u64..20_000_000), 1..25)
        ) {
            // One context: the lone context keeps the GPU (what `SoleDevice` does).
            let jobs: Vec<_> = jobs.into_iter().map(|(t, x, w)| (t, x % nctx, w)).collect();
            let mut ts = TimeSlicer::new(q, c);
            for _ in 0..nctx { ts.add_context(); }
            let fast = run_all(&mut ts, &jobs);
            let slow = naive(q, c, nctx, &jobs);
            prop_assert_eq!(fast, slow);
            // Every job ran to the end, so the GPU was busy for exactly their work.
            prop_assert_eq!(ts.busy_ns(), jobs.iter().map(|j| j.2).sum::<u64>());
        }
    }
}
