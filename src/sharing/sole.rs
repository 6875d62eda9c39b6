//! A partition with one tenant: a dedicated GPU, or a MIG instance nobody else uses.
//!
//! Nobody shares its time, so it is a FIFO at full speed: the head job ends its runtime after
//! it started, the next starts then. It is what a [`super::TimeSlicer`] with one context
//! does (a lone context keeps the GPU: no quantum, no switch), without the round-robin's
//! state, so that the many dedicated partitions of a fleet cost a few fields each per update.
//! The property test below checks it against the time-slicer step by step.

use std::collections::VecDeque;

use crate::engine::SimTime;
use crate::timeline::{BusyTimeline, TimelineRecorder};

use super::CtxId;

/// The scheduler of a partition with a single context (context id 0).
#[derive(Debug, Default)]
pub struct SoleDevice {
    now: SimTime,
    /// When the head job ends (meaningful while `queue` is not empty).
    head_end: SimTime,
    busy_ns: u64,
    /// Queued jobs `(token, work_ns)`; the head one runs.
    queue: VecDeque<(u64, u64)>,
    /// Whether its one context is registered.
    registered: bool,
    timeline: Option<TimelineRecorder>,
}

impl SoleDevice {
    /// An idle partition with no context yet.
    pub fn new() -> Self {
        SoleDevice::default()
    }

    /// Register its context (once); returns its id, 0.
    pub fn add_context(&mut self) -> CtxId {
        assert!(
            !self.registered,
            "invariant: a sole partition has one context"
        );
        self.registered = true;
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

    /// Nanoseconds the GPU spent running kernels so far (up to the last update).
    pub fn busy_ns(&self) -> u64 {
        self.busy_ns
    }

    /// Jobs queued or running.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bring the state forward to `t`; no job may finish strictly before `t`.
    pub fn advance(&mut self, t: SimTime) {
        let dt = t.since(self.now);
        if dt == 0 {
            return;
        }
        let busy = if self.queue.is_empty() {
            0
        } else {
            assert!(
                t <= self.head_end,
                "invariant: a job completion was skipped (completion events must be handled first)"
            );
            dt
        };
        self.busy_ns += busy;
        if let Some(tl) = &mut self.timeline {
            tl.record(self.now, t, busy, 0);
        }
        self.now = t;
    }

    /// Queue a job of `work_ns` at `t`.
    pub fn submit(&mut self, t: SimTime, token: u64, work_ns: u64) {
        self.advance(t);
        let work_ns = work_ns.max(1);
        if self.queue.is_empty() {
            self.head_end = t.plus(work_ns);
        }
        self.queue.push_back((token, work_ns));
    }

    /// Jump `dt` ns ahead over a stretch that kept the partition busy `busy_ns` of it and
    /// left it as it is now, shifted: the running job ends `dt` later. Not while recording
    /// a timeline (the stretch's shape is not known).
    pub fn shift(&mut self, dt: u64, busy_ns: u64) {
        assert!(
            self.timeline.is_none(),
            "invariant: a partition recording its timeline is not jumped"
        );
        self.now = self.now.plus(dt);
        self.head_end = self.head_end.plus(dt);
        self.busy_ns += busy_ns;
    }

    /// A job of `work_ns` submitted at `t` to the idle device and run to its end: the same
    /// as [`Self::submit`], then [`Self::finishing`] and [`Self::complete`] at the end, in
    /// one step. Returns the end.
    pub fn run_alone(&mut self, t: SimTime, work_ns: u64) -> SimTime {
        assert!(
            self.queue.is_empty(),
            "invariant: run_alone() on an idle device"
        );
        self.advance(t);
        let end = t.plus(work_ns.max(1));
        let busy = end.since(t);
        self.busy_ns += busy;
        if let Some(tl) = &mut self.timeline {
            tl.record(t, end, busy, 0);
        }
        self.now = end;
        self.head_end = end;
        end
    }

    /// Exact time of the next job completion if nothing else is submitted.
    pub fn next_completion(&self) -> Option<SimTime> {
        (!self.queue.is_empty()).then_some(self.head_end)
    }

    /// At `t` (= [`Self::next_completion`]), the job that finishes: `(0, token)`.
    pub fn finishing(&mut self, t: SimTime) -> (CtxId, u64) {
        self.advance(t);
        assert!(
            !self.queue.is_empty() && self.head_end == t,
            "invariant: finishing() only at a completion"
        );
        (0, self.queue[0].0)
    }

    /// At `t` (= [`Self::next_completion`]), retire the finished job; returns `(0, token)`.
    pub fn complete(&mut self, t: SimTime) -> (CtxId, u64) {
        let (ctx, token) = self.finishing(t);
        self.queue.pop_front();
        if let Some(&(_, work_ns)) = self.queue.front() {
            self.head_end = t.plus(work_ns);
        }
        (ctx, token)
    }

    /// At `t`, drop every job, the running one included (its process died). Returns the
    /// number dropped.
    pub fn clear(&mut self, t: SimTime) -> usize {
        self.advance(t);
        let n = self.queue.len();
        self.queue.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharing::TimeSlicer;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of submissions, completions and clears gives the same completions,
        /// busy time and timeline as a time-slicer with one context.
        #[test]
        fn behaves_as_a_time_slicer_with_one_context(
            ops in proptest::collection::vec((0u8..4, 0u64..3_000, 0u64..5_000), 1..80),
        ) {
            let mut sole = SoleDevice::new();
            let mut ts = TimeSlicer::new(1_000, 200);
            prop_assert_eq!(sole.add_context(), ts.add_context());
            sole.record_timeline(700);
            ts.record_timeline(700);
            let mut now = SimTime::ZERO;
            for (i, &(op, gap, work)) in ops.iter().enumerate() {
                prop_assert_eq!(sole.next_completion(), ts.next_completion());
                // Never step past a completion: handle it first.
                let mut t = now.plus(gap);
                if let Some(c) = sole.next_completion() && c <= t {
                    t = c;
                    prop_assert_eq!(sole.finishing(t), ts.finishing(t));
                    prop_assert_eq!(sole.complete(t), ts.complete(t));
                } else {
                    match op {
                        0 if sole.queued() == 0 => {
                            // A job run alone in one step, against submit-then-complete.
                            let end = sole.run_alone(t, work);
                            ts.submit(t, 0, i as u64, work);
                            prop_assert_eq!(ts.next_completion(), Some(end));
                            ts.finishing(end);
                            ts.complete(end);
                            t = end;
                        }
                        0 | 1 => {
                            sole.submit(t, i as u64, work);
                            ts.submit(t, 0, i as u64, work);
                        }
                        2 => prop_assert_eq!(sole.clear(t), ts.clear(t, 0)),
                        _ => {
                            sole.advance(t);
                            ts.advance(t);
                        }
                    }
                }
                now = t;
                prop_assert_eq!(sole.busy_ns(), ts.busy_ns());
                prop_assert_eq!(sole.queued(), ts.queued(0));
            }
            prop_assert_eq!(sole.timeline(), ts.timeline());
        }
    }

    #[test]
    #[should_panic(expected = "completion was skipped")]
    fn stepping_past_a_completion_is_a_bug() {
        let mut s = SoleDevice::new();
        s.add_context();
        s.submit(SimTime(0), 1, 100);
        s.advance(SimTime(101));
    }
}
