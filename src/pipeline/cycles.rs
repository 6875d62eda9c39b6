//! ASR replicas alone on their partition skip the batches that repeat.
//!
//! Every stream sends a chunk at the same fixed interval, so while the set of streams open
//! to a replica stays the same, its batches fall into a pattern: with one stream, one batch
//! per interval; with two, often three batches every two intervals. An ASR replica with a
//! partition to itself (a MIG instance or GPU nobody shares) evolves on its own between the
//! moments anything else reaches it (a stream opens or closes, a fault), and nothing outside
//! it sees a chunk before a stream's last.
//!
//! After each dispatch such a replica's state is noted relative to the instant: each stream's
//! next chunk, the queue with its waiting times, the batch on the GPU and when it ends. When
//! it equals a state noted earlier (with no touch from outside in between), the stretch
//! between the two repeats, shifted, for as long as every stream has chunks to send: the
//! state only moves forward in time and each stream's count of chunks sent. The replica then
//! jumps: one event, the completion of the batch running at the end of the last whole
//! repetition, goes in the queue instead of every batch and wake-up on the way
//! ([`Simulation::cycle_watch`]). The repetitions stop two chunks short of any stream's last,
//! so that neither a last chunk nor a look at the chunks to come that runs out of them falls
//! inside.
//!
//! Its state stays as it was at the jump until something needs it
//! ([`Simulation::cycle_settle`]): the horizon's completion, a stream opening or closing, a
//! crash, the end of the run. Then the whole repetitions before that moment are added at
//! once (stream positions, queue times, the GPU's running job and busy time, batch counts,
//! all shifted or multiplied), and the events of the part repetition before it run one by
//! one with the same code as from the queue, ordered against the event being handled as the
//! queue would have ordered them.
//!
//! A dispatch whose state repeats nothing noted yet (the first batches after a touch, the
//! last ones before a stream ends) does not wait for a repeat either: the replica runs ahead
//! ([`Simulation::run_ahead`]). Nothing outside it sees any of its batches before the first
//! of its streams' last chunks arrives, so the queue holds one timer for it, at that
//! instant, and its state stays where it was. When it settles (that timer, or a touch), its
//! batches up to that moment run locally, one by one; each dispatch on the way is noted, and
//! a repeat adds at once the whole repetitions that end before the settling event.
//!
//! Results are identical to one event per batch (`Simulation::without_run_ahead`; tested);
//! busy timelines would need the shape of each repetition, so a run that records them
//! neither jumps nor runs ahead.

use super::solo::{Key, before};
use super::{Simulation, Stage, streams};
use crate::engine::SimTime;
use crate::sharing::Device;

/// Dispatch states kept per replica while looking for a repeat.
const SEEN: usize = 6;

/// One replica's recent dispatch states, and how it is away from the queue.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// States since the replica was last reached from outside (a ring of at most [`SEEN`]).
    seen: Vec<Seen>,
    /// The ring slot written next once it is full.
    next: usize,
    /// Its jump or run-ahead in progress: its state stands where it was then.
    away: Option<Away>,
}

/// Why a replica's state stands still while time goes on.
#[derive(Clone, Copy, Debug)]
enum Away {
    /// Jumping over whole repetitions; the queue holds the completion after the last.
    Jump(Skip),
    /// Running ahead; the queue holds a timer at the first of its streams' last chunks.
    Ahead,
}

/// What a dispatch's state tells (see [`Simulation::cycle_look`]).
enum Look {
    /// Not a state a repetition can start from.
    Nothing,
    /// A state noted now: no repeat yet.
    Noted,
    /// A repeat: the jump it allows.
    Repeats(Skip),
}

/// The replica's state just after a dispatch, relative to that instant, and its running
/// totals then.
#[derive(Debug, Default)]
struct Seen {
    at: SimTime,
    busy_ns: u64,
    batches: u64,
    items: u64,
    state: Vec<u64>,
    /// [`fingerprint`] of `state`.
    print: u64,
}

/// A jump: whole repetitions of the stretch that ended at `base`.
#[derive(Clone, Copy, Debug)]
struct Skip {
    /// The dispatch the replica's state still stands at.
    base: SimTime,
    /// The class and order of the event that dispatched (the same at every repetition).
    class: u8,
    order: u64,
    /// Length of one repetition, ns, and how many the jump covers.
    period: u64,
    cycles: u64,
    /// Chunks each stream sends per repetition.
    sent: u32,
    /// Per repetition: the partition's busy ns, batches and chunks batched.
    busy_ns: u64,
    batches: u64,
    items: u64,
}

impl Skip {
    /// The whole repetitions that end (at the dispatch closing them) before the event at
    /// `bound`.
    fn before(&self, bound: Key) -> u64 {
        let closes = |k: u64| (self.base.plus(k * self.period), self.class, self.order);
        let mut k = (bound.0.0.saturating_sub(self.base.0) / self.period).min(self.cycles);
        if k > 0 && !before(closes(k), bound) {
            k -= 1;
        }
        k
    }
}

/// What runs next for a settling replica.
enum Local {
    Done(SimTime),
    Wake(streams::Wake),
}

/// Whether two noted states are equal. Written out: states that differ usually do so in
/// their first few words (a stream's phase), which an inline loop finds sooner than a call
/// to compare the whole memory.
fn same(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// A word that equal states share (and different ones seldom do): the noted states are
/// screened by it without a branch each, and compared in full only where it matches.
fn fingerprint(state: &[u64]) -> u64 {
    state
        .iter()
        .fold(state.len() as u64, |h, &w| h.rotate_left(7) ^ w)
}

impl Watch {
    fn forget(&mut self) {
        self.seen.iter_mut().for_each(|s| s.state.clear());
        self.next = 0;
    }
}

impl Simulation<'_> {
    /// Whether replica `r` may jump over repeating batches: an ASR replica alone on its
    /// partition, with chunks delivered lazily and no busy timeline recorded.
    fn may_cycle(&self, r: usize) -> bool {
        let rep = &self.replicas[r];
        self.cycles
            && self.lazy_chunks
            && !self.timelines
            && self.chunk_interval_ns > 0
            && rep.stage == Stage::Asr
            && matches!(self.slicers[rep.partition], Device::Sole(_))
    }

    /// Replica `r` dispatched a batch at `now` (the event being handled): note its state, and
    /// jump if it repeats one noted before.
    pub(super) fn cycle_watch(&mut self, r: usize) {
        if !self.may_cycle(r) || self.watch[r].away.is_some() {
            return;
        }
        match self.cycle_look(r, self.current_key()) {
            Look::Nothing => {}
            Look::Noted => self.run_ahead(r),
            Look::Repeats(skip) => self.cycle_start(r, skip),
        }
    }

    /// Replica `r` dispatched in the event at `at` (from the queue, or local): note its
    /// state, or find the jump it repeats.
    fn cycle_look(&mut self, r: usize, at: Key) -> Look {
        let now = at.0;
        let mut state = std::mem::take(&mut self.cycle_scratch);
        if !self.cycle_state(r, now, &mut state) {
            self.cycle_scratch = state;
            return Look::Nothing;
        }
        let print = fingerprint(&state);
        let skip = self
            .cycle_prior(r, now, &state, print)
            .and_then(|prior| self.cycle_repeat(r, at, prior));
        match skip {
            Some(skip) => {
                self.cycle_scratch = state;
                self.watch[r].forget();
                Look::Repeats(skip)
            }
            None => {
                self.cycle_note(r, now, state, print);
                Look::Noted
            }
        }
    }

    /// Replica `r` dispatched and repeats nothing noted yet: it runs ahead on its own until
    /// the first of its streams' last chunks arrives (nothing outside it sees any of its
    /// batches before that), unless something reaches it first. Its batches then run
    /// locally when it settles (watching for repeats on the way), and the queue holds one
    /// timer for it, at that instant.
    fn run_ahead(&mut self, r: usize) {
        let interval = self.chunk_interval_ns;
        let rep = &self.replicas[r];
        let p = rep.partition;
        let Some(horizon) = rep
            .streams
            .iter()
            .map(|s| s.next_at().plus(u64::from(s.left() - 1) * interval))
            .min()
        else {
            return;
        };
        match self.sole_end(p) {
            Some(end) if end < horizon => {}
            _ => return, // no batch of its own ends before: nothing to run ahead
        }
        // A last chunk already queued or running ends its stream inside the stretch.
        let b = rep.batcher.as_ref().expect("invariant: asr replicas batch");
        if rep.in_flight.iter().any(|&(_, last)| last == 1)
            || b.waiting().any(|&((_, last), _)| last == 1)
        {
            return;
        }
        self.watch[r].away = Some(Away::Ahead);
        self.cycling_on[p] = Some(r as u32);
        self.armed[p] = Some(horizon);
        self.engine.set_timer(p, Some(horizon));
    }

    /// The first state noted for replica `r` before `now` that equals `state` (fingerprint
    /// `print`): its time and totals then.
    fn cycle_prior(
        &self,
        r: usize,
        now: SimTime,
        state: &[u64],
        print: u64,
    ) -> Option<(SimTime, u64, u64, u64)> {
        let seen = &self.watch[r].seen;
        // Candidates as bits, in ring order; then the first that really is equal.
        let mut candidates = 0u32;
        for (i, s) in seen.iter().enumerate() {
            let hit = (s.print == print) & (s.at < now) & !s.state.is_empty();
            candidates |= u32::from(hit) << i;
        }
        while candidates != 0 {
            let s = &seen[candidates.trailing_zeros() as usize];
            if same(&s.state, state) {
                return Some((s.at, s.busy_ns, s.batches, s.items));
            }
            candidates &= candidates - 1;
        }
        None
    }

    /// Replica `r`'s state after its dispatch at `now`, relative to `now`, into `out`; false
    /// if it is not a state a repetition can start from.
    fn cycle_state(&self, r: usize, now: SimTime, out: &mut Vec<u64>) -> bool {
        let rep = &self.replicas[r];
        let Some(b) = rep.batcher.as_ref() else {
            return false;
        };
        let Some(end) = self.sole_end(rep.partition) else {
            return false;
        };
        if rep.streams.is_empty() || !b.busy() || rep.wake.is_some() {
            return false;
        }
        out.clear();
        out.push(rep.streams.len() as u64);
        for s in &rep.streams {
            let (number, wait) = s.phase(now);
            out.extend([number, wait]);
        }
        out.push(b.queued() as u64);
        for &((req, last), at) in b.waiting() {
            out.extend([req, u64::from(last), now.since(SimTime(at))]);
        }
        out.push(rep.in_flight.len() as u64);
        for &(req, last) in &rep.in_flight {
            out.extend([req, u64::from(last)]);
        }
        out.push(end.since(now));
        true
    }

    /// Keep `state` (replica `r` just after its dispatch at `now`; `print` its fingerprint)
    /// in the ring.
    fn cycle_note(&mut self, r: usize, now: SimTime, state: Vec<u64>, print: u64) {
        let rep = &self.replicas[r];
        let (busy_ns, batches, items) = (
            self.slicers[rep.partition].busy_ns(),
            rep.batches,
            rep.batch_items,
        );
        let w = &mut self.watch[r];
        let slot = if w.seen.len() < SEEN {
            w.seen.push(Seen::default());
            w.seen.len() - 1
        } else {
            let s = w.next;
            w.next = (w.next + 1) % SEEN;
            s
        };
        let s = &mut w.seen[slot];
        let old = std::mem::replace(&mut s.state, state);
        (s.at, s.busy_ns, s.batches, s.items, s.print) = (now, busy_ns, batches, items, print);
        self.cycle_scratch = old;
    }

    /// Replica `r` jumps over the whole repetitions of `skip`: its state stays, and the
    /// queue holds the completion of the batch running at the end of the last.
    fn cycle_start(&mut self, r: usize, skip: Skip) {
        let p = self.replicas[r].partition;
        let end = self.sole_end(p).expect("invariant: a batch runs");
        let horizon = end.plus(skip.cycles * skip.period);
        self.watch[r].away = Some(Away::Jump(skip));
        self.cycling_on[p] = Some(r as u32);
        self.armed[p] = Some(horizon);
        self.engine.set_timer(p, Some(horizon));
    }

    /// The jump from replica `r`'s dispatch in the event at `from` back where it was at
    /// `prior`: every whole repetition its streams allow. `None` if they allow none.
    fn cycle_repeat(&self, r: usize, from: Key, prior: (SimTime, u64, u64, u64)) -> Option<Skip> {
        let (at, busy_then, batches_then, items_then) = prior;
        let period = from.0.since(at);
        let interval = self.chunk_interval_ns;
        // Equal chunk phases mean every stream sent the same whole number of chunks.
        debug_assert_eq!(period % interval, 0);
        let sent = period / interval;
        let rep = &self.replicas[r];
        let cycles = rep
            .streams
            .iter()
            .map(|s| u64::from(s.left()).saturating_sub(2) / sent)
            .min()
            .unwrap_or(0);
        if cycles == 0 {
            return None;
        }
        let p = rep.partition;
        Some(Skip {
            base: from.0,
            class: from.1,
            order: from.2,
            period,
            cycles,
            sent: u32::try_from(sent).expect("invariant: a repetition is a few chunks"),
            busy_ns: self.slicers[p].busy_ns() - busy_then,
            batches: rep.batches - batches_then,
            items: rep.batch_items - items_then,
        })
    }

    /// The replica jumping on partition `p`, if any.
    pub(super) fn cycling_owner(&self, p: usize) -> Option<usize> {
        self.cycling_on[p].map(|r| r as usize)
    }

    /// Something reaches replica `r` now (a stream opens or closes, it crashes): it catches
    /// up to the event being handled and forgets the states it noted.
    pub(super) fn cycle_touch(&mut self, r: usize) {
        if self.watch[r].away.is_some() {
            self.cycle_settle(r, self.current_key());
        }
        self.watch[r].forget();
    }

    /// At the end of the run: every replica still jumping catches up to `bound`.
    pub(super) fn cycle_settle_all(&mut self, bound: Key) {
        for p in 0..self.cycling_on.len() {
            if let Some(r) = self.cycling_owner(p) {
                self.cycle_catch_up(r, bound);
            }
        }
    }

    /// Bring replica `r`, jumping, to where it is just before the event at `bound`, and put
    /// its next event in the queue.
    pub(super) fn cycle_settle(&mut self, r: usize, bound: Key) {
        if self.cycle_catch_up(r, bound) {
            let p = self.replicas[r].partition;
            let next = self.sole_end(p);
            self.armed[p] = next;
            self.engine.set_timer(p, next);
            self.replicas[r].wake = None;
            self.arm_chunk(r);
        }
    }

    /// Bring replica `r`, jumping, to where it is just before the event at `bound`: add the
    /// whole repetitions before it and run the rest one event at a time. False if its
    /// queued event is still the right one (it stands at the last repetition's dispatch).
    fn cycle_catch_up(&mut self, r: usize, bound: Key) -> bool {
        let Some(away) = self.watch[r].away.take() else {
            return false;
        };
        let p = self.replicas[r].partition;
        self.cycling_on[p] = None;
        if let Away::Jump(s) = away {
            let k = s.before(bound);
            self.cycle_shift(r, &s, k);
            if k == s.cycles {
                return false; // at the last repetition's dispatch: its completion is queued
            }
        }
        // The part repetition, or the stretch run ahead, event by event, without the queue.
        // A dispatch on the way is watched as one from the queue would be, and a repeat
        // jumps at once over the whole repetitions that end before `bound`.
        let outer = self.dispatched.take();
        self.committing = true;
        while let Some(next) = self.cycle_next(r) {
            let key = match next {
                Local::Done(t) => (t, 0, p as u64),
                Local::Wake((t, stream)) if stream == streams::TIMER => (t, 1, 0),
                Local::Wake((t, stream)) => (t, 2, stream),
            };
            if !before(key, bound) {
                break;
            }
            match next {
                Local::Done(t) => self.device_done(t, p),
                Local::Wake((t, stream)) if stream == streams::TIMER => self.batch_timer(t, r),
                Local::Wake((t, stream)) => self.chunk_arrives(t, r, stream),
            }
            if self.dispatched.take().is_some()
                && let Look::Repeats(s) = self.cycle_look(r, key)
            {
                self.cycle_shift(r, &s, s.before(bound));
            }
        }
        self.committing = false;
        self.dispatched = outer;
        true
    }

    /// Add `k` repetitions of `s` to replica `r` at once: stream positions, queue times, the
    /// partition's running job and busy time, batch counts.
    fn cycle_shift(&mut self, r: usize, s: &Skip, k: u64) {
        if k == 0 {
            return;
        }
        let p = self.replicas[r].partition;
        let dt = k * s.period;
        let rep = &mut self.replicas[r];
        for st in &mut rep.streams {
            st.skip(dt, s.sent * k as u32);
        }
        rep.batcher
            .as_mut()
            .expect("invariant: asr replicas batch")
            .shift(dt);
        rep.batches += k * s.batches;
        rep.batch_items += k * s.items;
        let Device::Sole(d) = &mut self.slicers[p] else {
            unreachable!("invariant: only sole partitions jump");
        };
        d.shift(dt, k * s.busy_ns);
    }

    /// When the job on sole partition `p` ends, if one runs.
    fn sole_end(&self, p: usize) -> Option<SimTime> {
        match &self.slicers[p] {
            Device::Sole(d) => d.next_completion(),
            _ => None,
        }
    }

    /// Settling replica `r`'s next event: its batch's completion, or its idle wake-up.
    fn cycle_next(&self, r: usize) -> Option<Local> {
        let rep = &self.replicas[r];
        match self.sole_end(rep.partition) {
            Some(t) => Some(Local::Done(t)),
            None => rep.wake.map(Local::Wake),
        }
    }
}
