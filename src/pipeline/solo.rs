//! LLM replicas alone on their partition run ahead of the event queue.
//!
//! An LLM replica with a partition to itself (a dedicated GPU, or a MIG instance with no
//! other tenant) evolves on its own between the moments anything else sees it: its host step
//! and the GPU's completion of each iteration depend only on its own queue, its own requests
//! and its own KV cache. Those iterations need no event each. After an iteration, a copy of
//! its engine looks ahead ([`Simulation::solo_start`]) to the first iteration whose tokens
//! somebody else sees (a sentence end handed to TTS, the last token that releases the
//! request), or to a step that fails a request or finds nothing to run; only that one event,
//! the horizon, goes into the queue. The iterations before it stay local and run, with their
//! own timestamps and the same code as event by event, when the replica is next looked at:
//!
//! - at the horizon ([`Simulation::solo_arrive`]), which then runs as the ordinary event;
//! - when something reaches the replica first: a request enqueued, one of its requests
//!   failed or cancelled, a fault ([`Simulation::solo_interrupt`]). It catches up to the
//!   instant, puts its next step or completion back in the queue as an ordinary event, and
//!   runs event by event until its next iteration ends.
//!
//! Local steps and completions are ordered against the event that interrupts them as the
//! queue would have ordered them (time, then class, then partition for completions), so
//! results are identical to one event per step and per completion.
//!
//! The look-ahead keeps what it computed: its engine, stopped where the replica's will be at
//! the horizon, and a log of each iteration (its step time, runtime, admissions, KV blocks,
//! tokens). When every local step and completion comes before the event that looks at the
//! replica (at the horizon, always), catching up replays the log, with no planning again
//! ([`Simulation::replay`]), and swaps the engine in. When something reaches the replica
//! earlier, the log's iterations before it are replayed too, and the replica's own engine
//! (which the look-ahead left untouched) plans and retires each of them again, with the
//! log's runtimes and tokens, to stand where it would then.

use super::{Event, ReqId, Request, Simulation, Stage, slot};
use crate::engine::SimTime;
use crate::serving::{KvPolicy, LlmEngine};
use crate::sharing::Device;

/// A solo replica running ahead, and the one event it left in the queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Solo {
    /// When the horizon event fires.
    horizon: SimTime,
    /// Whether it is a host step (`Event::LlmStep`), else the GPU's completion.
    step: bool,
}

/// What one replica's look-ahead computed (its buffers are reused by the next).
#[derive(Debug, Default)]
pub(super) struct Ahead {
    /// The copy of the engine that ran ahead; after a whole replay, the replica's previous engine.
    engine: Option<Box<LlmEngine>>,
    /// Whether `engine` stopped exactly where the replica's will be at the horizon (the
    /// horizon's iteration planned, not finished; or, at a step horizon, nothing planned), so
    /// that catching up may replay `ran` and swap it in.
    whole: bool,
    /// The iterations before the horizon, in order (with a completion horizon, the last is
    /// the horizon's own, whose completion is the horizon).
    ran: Vec<Ran>,
    /// Their tokens and their first admissions, in order; `Ran` says where each one's end.
    tokens: Vec<(ReqId, u32)>,
    admitted: Vec<ReqId>,
}

/// One iteration of a look-ahead, as catching up replays it. Kept small (48 bytes): the log
/// is written when the look-ahead starts and read back when the replica catches up, by then
/// usually out of cache. Its GPU completion is `step_at + max(ns, 1)`; it has no MPS demand
/// (a solo replica's partition is never shared).
#[derive(Clone, Copy, Debug)]
struct Ran {
    step_at: SimTime,
    /// Runtime alone on the partition.
    ns: u64,
    /// KV blocks the engine held once the iteration was planned, and once it was retired.
    blocks_planned: u64,
    blocks_done: u64,
    seqs: u32,
    /// End of its tokens in `Ahead::tokens`, and of its admissions in `Ahead::admitted`.
    tokens_end: u32,
    admitted_end: u32,
}

impl Ran {
    /// When the GPU finishes it.
    fn done(&self) -> SimTime {
        self.step_at.plus(self.ns.max(1))
    }
}

/// Most iterations one look-ahead covers unless set otherwise (bounds its work; the result
/// does not depend on it).
pub(super) const MAX_AHEAD: usize = 256;

/// A count within one look-ahead (at most [`MAX_AHEAD`] iterations of `max_num_seqs`
/// sequences each), stored in 32 bits.
fn small(n: u64) -> u32 {
    u32::try_from(n).expect("invariant: a look-ahead's counts fit in 32 bits")
}

/// An event's place in the queue: time, class, then order within the class (the partition,
/// for completions; insertion order is not known for the other classes).
pub(super) type Key = (SimTime, u8, u64);

/// Whether the queue runs `a` before `b`. Same-instant events of the same class other than
/// completions run in insertion order, which a local event has none of: the one already in
/// the queue is taken to come first.
pub(super) fn before(a: Key, b: Key) -> bool {
    a.0 < b.0 || (a.0 == b.0 && (a.1 < b.1 || (a.1 == b.1 && a.1 == 0 && a.2 < b.2)))
}

/// Whether the `generated`-th token of `r` is seen outside its LLM replica: it ends a
/// sentence (handed to TTS) or the answer (releases the replica).
pub(super) fn seen_by_others(r: &Request, generated: u32) -> bool {
    generated == r.answer.output_tokens() || r.answer.sentence_ends.contains(&generated)
}

impl Simulation<'_> {
    /// The solo LLM replica on `part` that is running ahead, if any.
    pub(super) fn solo_owner(&self, part: usize) -> Option<usize> {
        let r = self.solo_of[part]? as usize;
        self.replicas[r].solo.is_some().then_some(r)
    }

    /// Solo replica `r` finished an iteration at `now` and has work left: look ahead for its
    /// horizon and leave only that in the queue (or, if its very next step is the horizon,
    /// schedule that step as usual).
    pub(super) fn solo_start(&mut self, now: SimTime, r: usize) {
        let overhead = self.replicas[r].step_overhead_ns;
        let mut ahead = std::mem::take(&mut self.ahead[r]);
        let mut plan = std::mem::take(&mut self.ahead_plan);
        ahead.ran.clear();
        ahead.tokens.clear();
        ahead.admitted.clear();
        let real = self.replicas[r]
            .llm
            .as_ref()
            .expect("invariant: llm replica");
        let e = match &mut ahead.engine {
            Some(e) => {
                e.clone_from(real);
                e
            }
            None => ahead.engine.insert(real.clone()),
        };
        let on_demand = e.config().kv == KvPolicy::OnDemand;
        let cost = self.step_cost(r);
        let mut t = now;
        let (horizon, step, whole) = loop {
            let step_at = t.plus(overhead);
            if ahead.ran.len() == self.look_ahead {
                break (step_at, true, true);
            }
            // The same inputs as the real step: live requests, and the blocks free were the
            // engine's own cache what this copy holds.
            let seen = if on_demand {
                e.used_blocks()
            } else {
                self.replicas[r].kv_blocks_seen
            };
            let free = self.free_kv_blocks(r, seen);
            let requests = &self.requests;
            let planned = e.plan_into(
                step_at.0,
                |req| {
                    let q = &requests[slot(req)];
                    q.generation == (req >> 32) as u32 && q.status == super::Status::Active
                },
                free,
                &mut plan,
            );
            if !planned || plan.seqs == 0 || !plan.out_of_memory.is_empty() {
                // It sleeps or fails a request: an ordinary step (this copy planned it).
                break (step_at, true, false);
            }
            let (ns, demand) = cost.time(&plan);
            debug_assert!(
                demand.is_none(),
                "invariant: a solo partition is not under MPS"
            );
            let done = step_at.plus(ns.max(1));
            let blocks_planned = e.used_blocks();
            ahead.admitted.extend(plan.admitted.iter().map(|&(q, _)| q));
            let first = ahead.tokens.len();
            e.sampled_into(&mut ahead.tokens);
            let seen = ahead.tokens[first..]
                .iter()
                .any(|&(q, g)| self.is_active(q) && seen_by_others(&self.requests[slot(q)], g));
            ahead.ran.push(Ran {
                step_at,
                ns,
                blocks_planned,
                blocks_done: blocks_planned,
                seqs: small(plan.seqs),
                tokens_end: small(ahead.tokens.len() as u64),
                admitted_end: small(ahead.admitted.len() as u64),
            });
            if seen {
                break (done, false, true); // left planned: the horizon retires it
            }
            e.finish_sampled_step(done.0);
            let last = ahead.ran.last_mut().expect("invariant: pushed above");
            last.blocks_done = e.used_blocks();
            if !e.has_work() {
                break (done, false, false);
            }
            t = done;
        };
        ahead.whole = whole;
        let steps = ahead.ran.len();
        self.ahead[r] = ahead;
        self.ahead_plan = plan;
        if step && steps == 0 {
            self.llm_wake(now, r);
            return;
        }
        let rep = &mut self.replicas[r];
        rep.step_at = Some(now.plus(overhead));
        rep.solo = Some(Solo { horizon, step });
        let epoch = rep.epoch;
        if step {
            self.engine.schedule(
                horizon,
                Event::LlmStep {
                    replica: r as u32,
                    epoch,
                },
            );
        } else {
            let p = rep.partition;
            self.engine.set_timer(p, Some(horizon));
        }
    }

    /// The event being handled is a step (`step`) or completion of replica `r`: if it is the
    /// horizon of `r` running ahead, catch up to it and go back to event by event (the
    /// caller then handles it as usual). Returns false for a step left over from a step
    /// horizon that an interruption replaced, while `r` runs ahead toward another: its steps
    /// are local, and the caller must ignore it.
    pub(super) fn solo_arrive(&mut self, r: usize, step: bool) -> bool {
        let Some(s) = self.replicas[r].solo else {
            return true;
        };
        if s.step != step || (step && s.horizon != self.engine.now()) {
            return !step;
        }
        self.settle(r, self.current_key());
        debug_assert_eq!(self.solo_next(r), Some((s.horizon, s.step)));
        self.replicas[r].solo = None;
        true
    }

    /// Something reaches replica `r` now: if it runs ahead, catch up to now and put its next
    /// step or completion in the queue.
    pub(super) fn solo_interrupt(&mut self, r: usize) {
        let Some(s) = self.replicas[r].solo else {
            return;
        };
        self.settle(r, self.current_key());
        self.replicas[r].solo = None;
        let p = self.replicas[r].partition;
        let next = self
            .solo_next(r)
            .filter(|&(t, step)| (t, step) != (s.horizon, s.step));
        match next {
            Some((t, true)) => {
                if !s.step {
                    self.engine.set_timer(p, None); // the horizon was a completion
                }
                let epoch = self.replicas[r].epoch;
                self.engine.schedule(
                    t,
                    Event::LlmStep {
                        replica: r as u32,
                        epoch,
                    },
                );
            }
            Some((t, false)) => self.engine.set_timer(p, Some(t)),
            None => {} // the horizon is next: its event is already queued
        }
    }

    /// `req` is about to change (fail, be cancelled): the replica generating it catches up.
    pub(super) fn solo_interrupt_for(&mut self, req: ReqId) {
        if let Some(g) = self.requests[slot(req)].routed[Stage::Llm as usize] {
            self.solo_interrupt(g as usize);
        }
    }

    /// Every replica running ahead catches up and goes back to event by event.
    pub(super) fn solo_settle_all(&mut self) {
        for r in 0..self.replicas.len() {
            self.solo_interrupt(r);
        }
    }

    /// At the end of the run: every replica running ahead catches up to `bound`.
    pub(super) fn solo_settle_to(&mut self, bound: Key) {
        for r in 0..self.replicas.len() {
            self.settle(r, bound);
        }
    }

    /// Run replica `r`'s logged iterations as its local steps and completions would have
    /// run (see [`Self::settle`]): with no `bound`, all of them up to its horizon `s`, and
    /// the look-ahead's engine is swapped in; else those the queue orders before `bound`,
    /// planned and retired again on the replica's own engine (which the look-ahead left
    /// where it started) so that it stands where it would then, with the log's runtimes and
    /// tokens.
    fn replay(&mut self, r: usize, s: Solo, bound: Option<Key>) {
        let p = self.replicas[r].partition;
        let mut ahead = std::mem::take(&mut self.ahead[r]);
        let mut plan = std::mem::take(&mut self.ahead_plan);
        let after = |k: Key| bound.is_some_and(|b| !before(k, b));
        self.committing = true;
        let (mut tokens_from, mut admitted_from) = (0, 0);
        let n = ahead.ran.len();
        for (i, x) in ahead.ran.iter().enumerate() {
            if after((x.step_at, 1, 0)) {
                break; // its step is still to come (already noted in `step_at`)
            }
            // The step, as `llm_submit` runs it.
            self.replicas[r].step_at = None;
            if bound.is_some() {
                self.replan(r, x, &mut plan);
            }
            self.track_kv_blocks(r, x.blocks_planned);
            for &q in &ahead.admitted[admitted_from..x.admitted_end as usize] {
                self.requests[slot(q)].admitted_at = Some(x.step_at);
            }
            admitted_from = x.admitted_end as usize;
            if (i + 1 == n && !s.step) || after((x.done(), 0, p as u64)) {
                // Its completion is the horizon, or still to come: it stays on the device.
                self.llm_run(x.step_at, r, u64::from(x.seqs), x.ns, None);
                break;
            }
            // Submitted and, alone on the partition, completed at `done` (as
            // `Event::DeviceDone` and `llm_iteration_done` run it), in one step.
            let rep = &mut self.replicas[r];
            rep.batches += 1;
            rep.batch_items += u64::from(x.seqs);
            if bound.is_some() {
                rep.llm
                    .as_mut()
                    .expect("invariant: llm replica")
                    .finish_sampled_step(x.done().0);
            }
            let Device::Sole(device) = &mut self.slicers[p] else {
                panic!("invariant: a solo replica's partition is sole");
            };
            let done = device.run_alone(x.step_at, x.ns);
            debug_assert_eq!(done, x.done());
            if self.activity.is_some() {
                let reqs = ahead.tokens[tokens_from..x.tokens_end as usize].iter();
                let reqs = reqs.map(|&(q, _)| q);
                let end = crate::activity::JobEnd::Done;
                self.trace_job(Some((x.step_at, x.seqs)), done, r, reqs, end);
            }
            self.armed[p] = None;
            self.track_kv_blocks(r, x.blocks_done);
            for &(q, g) in &ahead.tokens[tokens_from..x.tokens_end as usize] {
                self.on_token(done, q, g);
            }
            tokens_from = x.tokens_end as usize;
            self.llm_wake(done, r);
        }
        self.committing = false;
        if bound.is_none() {
            let engine = ahead
                .engine
                .as_mut()
                .expect("invariant: a look-ahead's engine");
            std::mem::swap(
                self.replicas[r]
                    .llm
                    .as_mut()
                    .expect("invariant: llm replica"),
                engine,
            );
        }
        ahead.whole = false;
        ahead.ran.clear();
        self.ahead[r] = ahead;
        self.ahead_plan = plan;
    }

    /// Plan logged iteration `x` again on replica `r`'s own engine, with the inputs the
    /// look-ahead gave its copy (the same live requests and free blocks): the same plan.
    fn replan(&mut self, r: usize, x: &Ran, plan: &mut crate::serving::StepPlan) {
        let planned = self.llm_plan(x.step_at, r, plan);
        debug_assert!(
            planned
                && plan.seqs == u64::from(x.seqs)
                && self.replicas[r].llm.as_ref().map(|e| e.used_blocks()) == Some(x.blocks_planned),
            "invariant: an iteration planned again plans as it did ahead"
        );
    }

    /// The event being handled, as a queue position.
    pub(super) fn current_key(&self) -> Key {
        (self.engine.now(), self.current_class, self.current_order)
    }

    /// The next local event of replica `r`: its host step, or its iteration's completion.
    fn solo_next(&self, r: usize) -> Option<(SimTime, bool)> {
        let rep = &self.replicas[r];
        match rep.step_at {
            Some(t) => Some((t, true)),
            None => self.armed[rep.partition].map(|d| (d, false)),
        }
    }

    /// Run replica `r`'s local steps and completions that the queue orders before `bound`,
    /// stopping at its horizon.
    fn settle(&mut self, r: usize, bound: Key) {
        let Some(s) = self.replicas[r].solo else {
            return;
        };
        let p = self.replicas[r].partition;
        if self.ahead[r].whole {
            // The last local event: the horizon's own step, or the completion before it.
            let last = self.ahead[r].ran.last().map(|x| {
                if s.step {
                    (x.done(), 0, p as u64)
                } else {
                    (x.step_at, 1, 0)
                }
            });
            if last.is_some_and(|k| before(k, bound)) {
                self.replay(r, s, None);
                return;
            }
        }
        // Something comes first: only the iterations before it, on the replica's engine.
        self.replay(r, s, Some(bound));
    }
}
