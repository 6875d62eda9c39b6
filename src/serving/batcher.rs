//! Dynamic batching for request-level models (ASR chunks, TTS sentences), as Triton's dynamic
//! batcher and the NIMs built on it do it.
//!
//! A replica runs one batch at a time. While it is busy, requests queue. When it is free the
//! batcher looks at the queue: a full batch (`max_batch_size`) goes at once; so does the
//! largest preferred batch size the queue can fill; otherwise the batcher holds the requests
//! until the oldest has waited `max_queue_delay`, then sends what it has. With the defaults
//! (batch size 1, no delay) this is a plain first-come-first-served queue.

use std::collections::VecDeque;

/// Batching limits of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Largest batch.
    pub max_batch_size: u32,
    /// Longest a request is held back waiting for others while the replica is free, ns.
    pub max_queue_delay_ns: u64,
    /// Batch sizes sent as soon as the queue can fill them (largest first).
    pub preferred_batch_sizes: Vec<u32>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 1,
            max_queue_delay_ns: 0,
            preferred_batch_sizes: Vec::new(),
        }
    }
}

/// What the replica should do after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// Run this batch now.
    Dispatch(Vec<T>),
    /// Call [`Batcher::timer`] at this time (ns): the oldest request's delay runs out then.
    Arm(u64),
    /// Nothing to do (busy, empty, or a timer is already armed).
    Wait,
}

/// One replica's batching queue.
#[derive(Debug)]
pub struct Batcher<T> {
    cfg: BatchConfig,
    queue: VecDeque<(T, u64)>,
    busy: bool,
    armed: Option<u64>,
    /// An emptied batch handed back ([`Batcher::recycle`]): the next dispatch fills it
    /// instead of allocating.
    spare: Vec<T>,
}

impl<T: Copy> Batcher<T> {
    /// An empty, idle batcher. Preferred sizes above the maximum are ignored.
    pub fn new(mut cfg: BatchConfig) -> Self {
        cfg.max_batch_size = cfg.max_batch_size.max(1);
        cfg.preferred_batch_sizes
            .retain(|&p| p >= 1 && p <= cfg.max_batch_size);
        cfg.preferred_batch_sizes.sort_unstable();
        cfg.preferred_batch_sizes.dedup();
        Batcher {
            cfg,
            queue: VecDeque::new(),
            busy: false,
            armed: None,
            spare: Vec::new(),
        }
    }

    /// Requests waiting, oldest first, with their arrival times (ns).
    pub fn waiting(&self) -> impl Iterator<Item = &(T, u64)> {
        self.queue.iter()
    }

    /// Move every time it holds `dt` ns later (a replica jumping over repeated batches).
    pub fn shift(&mut self, dt: u64) {
        for (_, at) in &mut self.queue {
            *at += dt;
        }
        if let Some(a) = &mut self.armed {
            *a += dt;
        }
    }

    /// Requests waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a batch is running.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// A request arrives at `now` (ns).
    pub fn push(&mut self, now: u64, item: T) -> Decision<T> {
        self.queue.push_back((item, now));
        self.decide(now)
    }

    /// Queue a request that arrived at `at` (ns) without deciding: a caller queueing several
    /// at once decides once, with [`Self::decide_at`] at the last one's arrival. That is what
    /// [`Self::push`] for each would have left, provided none of those pushes dispatched.
    pub fn enqueue(&mut self, at: u64, item: T) {
        self.queue.push_back((item, at));
    }

    /// Decide at `now` (ns) what the queue as it stands calls for.
    pub fn decide_at(&mut self, now: u64) -> Decision<T> {
        self.decide(now)
    }

    /// The running batch finished at `now`.
    pub fn finish(&mut self, now: u64) -> Decision<T> {
        self.busy = false;
        self.decide(now)
    }

    /// An armed timer fires at `now` (stale timers are ignored).
    pub fn timer(&mut self, now: u64) -> Decision<T> {
        if self.armed != Some(now) {
            return Decision::Wait;
        }
        self.armed = None;
        self.decide(now)
    }

    /// Hand back a dispatched batch once its items are done with: its memory is reused.
    pub fn recycle(&mut self, mut batch: Vec<T>) {
        batch.clear();
        if batch.capacity() > self.spare.capacity() {
            self.spare = batch;
        }
    }

    /// Drop queued requests that no longer want an answer.
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        self.queue.retain(|(t, _)| keep(t));
    }

    /// When this batcher, free, next dispatches if requests arrive at the times `arrivals`
    /// gives (each with a key, in arrival order) and nothing else happens: `(time, Some(key))`
    /// at the arrival that fills a full or preferred batch (or any arrival, with no delay);
    /// `(time, None)` when the oldest request's delay runs out first (a timer at the instant
    /// of an arrival runs before it); `None` when it is busy or nothing is ever queued. The
    /// same decisions [`Self::push`] and [`Self::timer`] would take, without taking them.
    pub fn next_dispatch<K>(
        &self,
        arrivals: impl IntoIterator<Item = (u64, K)>,
    ) -> Option<(u64, Option<K>)> {
        if self.busy {
            return None;
        }
        let delay = self.cfg.max_queue_delay_ns;
        let at_once = u64::from(
            self.cfg
                .preferred_batch_sizes
                .first()
                .map_or(self.cfg.max_batch_size, |&p| p.min(self.cfg.max_batch_size)),
        );
        let mut n = self.queue.len() as u64;
        let mut oldest = self.queue.front().map(|&(_, at)| at);
        for (t, key) in arrivals {
            if let Some(o) = oldest
                && o + delay <= t
            {
                return Some((o + delay, None));
            }
            n += 1;
            let o = *oldest.get_or_insert(t);
            if n >= at_once || t >= o + delay {
                return Some((t, Some(key)));
            }
        }
        oldest.map(|o| (o + delay, None))
    }

    fn decide(&mut self, now: u64) -> Decision<T> {
        if self.busy || self.queue.is_empty() {
            return Decision::Wait;
        }
        let n = self.queue.len() as u32;
        let max = self.cfg.max_batch_size;
        let oldest = self.queue.front().expect("invariant: not empty").1;
        let due = oldest + self.cfg.max_queue_delay_ns;
        let size = if n >= max {
            Some(max)
        } else if let Some(&p) = self
            .cfg
            .preferred_batch_sizes
            .iter()
            .rev()
            .find(|&&p| p <= n)
        {
            Some(p)
        } else if now >= due {
            Some(n)
        } else {
            None
        };
        match size {
            Some(k) => {
                self.busy = true;
                self.armed = None;
                let mut batch = std::mem::take(&mut self.spare);
                // One by one from the front: cheaper than a drain for the few a batch holds.
                batch.extend((0..k).map_while(|_| self.queue.pop_front().map(|(t, _)| t)));
                Decision::Dispatch(batch)
            }
            None if self.armed == Some(due) => Decision::Wait,
            None => {
                self.armed = Some(due);
                Decision::Arm(due)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(max: u32, delay: u64, preferred: &[u32]) -> BatchConfig {
        BatchConfig {
            max_batch_size: max,
            max_queue_delay_ns: delay,
            preferred_batch_sizes: preferred.to_vec(),
        }
    }

    #[test]
    fn defaults_are_first_come_first_served_one_at_a_time() {
        let mut b = Batcher::new(BatchConfig::default());
        assert_eq!(b.push(0, 1), Decision::Dispatch(vec![1]));
        assert_eq!(b.push(1, 2), Decision::Wait);
        assert_eq!(b.push(2, 3), Decision::Wait);
        assert_eq!(b.finish(5), Decision::Dispatch(vec![2]));
        assert_eq!(b.finish(6), Decision::Dispatch(vec![3]));
        assert_eq!(b.finish(7), Decision::Wait);
    }

    #[test]
    fn holds_for_the_delay_then_sends_what_it_has() {
        let mut b = Batcher::new(cfg(4, 100, &[]));
        assert_eq!(b.push(0, 1), Decision::Arm(100));
        assert_eq!(b.push(30, 2), Decision::Wait);
        assert_eq!(b.timer(50), Decision::Wait, "a stale timer does nothing");
        assert_eq!(b.timer(100), Decision::Dispatch(vec![1, 2]));
    }

    #[test]
    fn a_full_batch_or_a_preferred_size_goes_at_once() {
        let mut b = Batcher::new(cfg(4, 1000, &[2]));
        assert_eq!(b.push(0, 1), Decision::Arm(1000));
        assert_eq!(b.push(1, 2), Decision::Dispatch(vec![1, 2]));
        for i in 3..=8 {
            b.push(2, i);
        }
        assert_eq!(b.finish(3), Decision::Dispatch(vec![3, 4, 5, 6]));
        assert_eq!(b.finish(4), Decision::Dispatch(vec![7, 8]));
    }

    #[test]
    fn a_recycled_batch_comes_back_empty_with_its_memory() {
        let mut b = Batcher::new(cfg(2, 10, &[]));
        assert_eq!(b.push(0, 0), Decision::Arm(10));
        let Decision::Dispatch(first) = b.push(0, 1) else {
            panic!("two queued: a full batch")
        };
        assert_eq!(first, vec![0, 1]);
        b.push(1, 2);
        b.push(1, 3);
        let (ptr, cap) = (first.as_ptr(), first.capacity());
        b.recycle(first);
        let Decision::Dispatch(second) = b.finish(2) else {
            panic!("two queued: a full batch")
        };
        assert_eq!(second, vec![2, 3]);
        assert_eq!((second.as_ptr(), second.capacity()), (ptr, cap));
    }

    proptest! {
        /// `next_dispatch` predicts what pushing the arrivals one by one (with the timer
        /// firing before an arrival at its instant) does, from any free state.
        #[test]
        fn next_dispatch_predicts_the_pushes_and_the_timer(
            before in proptest::collection::vec(0u64..300, 0..6),
            gaps in proptest::collection::vec(0u64..300, 0..12),
            max in 1u32..8,
            delay in 0u64..500,
            preferred in proptest::collection::vec(1u32..8, 0..3),
        ) {
            let mut b = Batcher::new(cfg(max, delay, &preferred));
            // Reach a free state with requests queued: some arrive while a batch runs.
            let mut t = 0;
            let mut armed = None;
            match b.push(t, 1000) {
                Decision::Dispatch(batch) => b.recycle(batch),
                Decision::Arm(d) => armed = Some(d),
                Decision::Wait => {}
            }
            for g in &before {
                t += g;
                if b.busy() {
                    b.push(t, 1000 + t);
                } else {
                    match b.push(t, 1000 + t) {
                        Decision::Dispatch(batch) => {
                            armed = None;
                            b.recycle(batch);
                        }
                        Decision::Arm(d) => armed = Some(d),
                        Decision::Wait => {}
                    }
                }
            }
            if b.busy() {
                armed = None;
                match b.finish(t) {
                    Decision::Dispatch(_) => return Ok(()), // busy again: nothing to predict
                    Decision::Arm(d) => armed = Some(d),
                    Decision::Wait => {}
                }
            }
            if armed.is_some_and(|d| d <= t) {
                return Ok(()); // its timer would have fired already
            }
            let mut arrivals = Vec::new();
            for (i, g) in gaps.iter().enumerate() {
                t += g;
                arrivals.push((t, i));
            }
            let predicted = b.next_dispatch(arrivals.iter().copied());
            let mut actual = None;
            for &(at, i) in &arrivals {
                if let Some(d) = armed && d <= at {
                    prop_assert!(matches!(b.timer(d), Decision::Dispatch(_)));
                    actual = Some((d, None));
                    break;
                }
                match b.push(at, at) {
                    Decision::Dispatch(_) => {
                        actual = Some((at, Some(i)));
                        break;
                    }
                    Decision::Arm(d) => armed = Some(d),
                    Decision::Wait => {}
                }
            }
            if actual.is_none() && let Some(d) = armed {
                prop_assert!(matches!(b.timer(d), Decision::Dispatch(_)));
                actual = Some((d, None));
            }
            prop_assert_eq!(predicted, actual);
        }
    }

    proptest! {
        /// Queueing arrivals and deciding once, at the last, leaves a batcher as pushing each
        /// does, whenever none of those pushes dispatches.
        #[test]
        fn queueing_then_deciding_once_is_pushing_each(
            busy in any::<bool>(),
            gaps in proptest::collection::vec(0u64..300, 1..8),
            max in 1u32..8,
            delay in 0u64..500,
            preferred in proptest::collection::vec(1u32..8, 0..3),
        ) {
            let (mut pushed, mut queued) = (
                Batcher::new(cfg(max, delay, &preferred)),
                Batcher::new(cfg(max, delay, &preferred)),
            );
            if busy {
                // A batch runs: its request dispatched at once.
                let one = cfg(1, 0, &[]);
                pushed = Batcher::new(one.clone());
                queued = Batcher::new(one);
                prop_assert!(matches!(pushed.push(0, 0), Decision::Dispatch(_)));
                prop_assert!(matches!(queued.push(0, 0), Decision::Dispatch(_)));
            }
            let mut t = 0;
            let mut dispatched = false;
            for (i, g) in gaps.iter().enumerate() {
                t += g;
                dispatched |= matches!(pushed.push(t, i as u64 + 1), Decision::Dispatch(_));
                queued.enqueue(t, i as u64 + 1);
            }
            prop_assume!(!dispatched);
            let d = queued.decide_at(t);
            prop_assert!(!matches!(d, Decision::Dispatch(_)));
            prop_assert_eq!(format!("{pushed:?}"), format!("{queued:?}"));
        }
    }

    proptest! {
        /// Drive a batcher with random arrivals and service times: batches never exceed the
        /// limit, requests leave in order, and none is held longer than the delay while the
        /// replica is free.
        #[test]
        fn batches_respect_size_order_and_delay(
            gaps in proptest::collection::vec(0u64..400, 1..60),
            service in 1u64..600,
            max in 1u32..8,
            delay in 0u64..500,
            preferred in proptest::collection::vec(1u32..8, 0..3),
        ) {
            let mut b = Batcher::new(cfg(max, delay, &preferred));
            let mut arrivals = Vec::new();
            let mut t = 0;
            for g in &gaps { t += g; arrivals.push(t); }
            let mut next = 0usize;
            let mut done_at: Option<u64> = None;
            let mut timer: Option<u64> = None;
            let mut free_since = 0u64;
            let mut sent = Vec::new();
            loop {
                // The next event: an arrival, the batch's end, or the timer.
                let cands = [arrivals.get(next).copied(), done_at, timer];
                let Some(now) = cands.iter().flatten().min().copied() else { break };
                let d = if done_at == Some(now) {
                    done_at = None;
                    free_since = now;
                    b.finish(now)
                } else if arrivals.get(next) == Some(&now) {
                    next += 1;
                    b.push(now, (next - 1, now))
                } else {
                    timer = None;
                    b.timer(now)
                };
                match d {
                    Decision::Dispatch(batch) => {
                        prop_assert!(!batch.is_empty() && batch.len() <= max as usize);
                        for &(i, at) in &batch {
                            // Held at most `delay` beyond the later of arrival and free time.
                            prop_assert!(now <= at.max(free_since) + delay,
                                "item {} dispatched at {} (arrived {}, free {})", i, now, at, free_since);
                            sent.push(i);
                        }
                        done_at = Some(now + service);
                    }
                    Decision::Arm(at) => timer = Some(at),
                    Decision::Wait => {}
                }
            }
            prop_assert_eq!(sent, (0..arrivals.len()).collect::<Vec<_>>());
        }
    }
}
