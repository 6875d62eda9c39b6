//! Audio streams into ASR replicas, delivered chunk by chunk without an event per chunk.
//!
//! A user sends a clip as chunks at a fixed interval; each chunk joins its ASR replica's
//! batcher. While the replica runs a batch, a chunk that arrives only queues (the batcher
//! decides nothing until the batch ends), so those chunks need no event of their own: they
//! are put in the queue, with their own arrival times and in their own order, when the batch
//! ends ([`Simulation::catch_up`]) or when something else looks at the queue.
//!
//! An idle replica needs no event per chunk either: the chunks to come are known (each stream
//! sends at a fixed interval), so the moment the batcher will next dispatch is known too
//! ([`crate::serving::batcher::Batcher::next_dispatch`]): the chunk that fills a full or
//! preferred batch, or the instant the oldest chunk's delay runs out. That one instant gets
//! an event (an [`Event::Chunk`] ordered like that chunk's, or an [`Event::BatchTimer`]); it
//! puts the chunks that came before it in the queue, with their own arrival times, and
//! dispatches. Anything that changes the prediction (a stream opens or closes, the replica
//! crashes) first queues the chunks already sent and arms the replica again.
//!
//! Results are the same as with one event per chunk, to the byte
//! ([`Simulation::without_run_ahead`] still runs that way, for the tests): a chunk event is
//! ordered among same-instant chunk events by its stream's number, which is the order the
//! per-chunk events had (a stream's next chunk was scheduled when its previous one arrived,
//! so ties between streams fell back on the order the streams opened).

use smallvec::SmallVec;

use super::{Event, ReqId, Simulation};
use crate::engine::SimTime;
use crate::serving::batcher::Decision;

/// One clip being streamed to an ASR replica.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stream {
    req: ReqId,
    /// Opening order among all streams of the run (orders same-instant chunks).
    number: u64,
    /// When the next chunk arrives, and its index.
    next_at: SimTime,
    next: u32,
    chunks: u32,
}

impl Stream {
    /// Its opening order, and how long after `now` its next chunk arrives.
    pub(super) fn phase(&self, now: SimTime) -> (u64, u64) {
        (self.number, self.next_at.since(now))
    }

    /// When its next chunk arrives.
    pub(super) fn next_at(&self) -> SimTime {
        self.next_at
    }

    /// Chunks it has not sent yet.
    pub(super) fn left(&self) -> u32 {
        self.chunks - self.next
    }

    /// What orders streams: when the next chunk arrives, then the opening order.
    fn key(&self) -> Wake {
        (self.next_at, self.number)
    }

    /// Skip `dt` ns, in which it sent `sent` chunks.
    pub(super) fn skip(&mut self, dt: u64, sent: u32) {
        self.next_at = self.next_at.plus(dt);
        self.next += sent;
    }
}

/// The classes the engine gives chunk events and batch timers (see `EventClass for Event`).
const CHUNK_CLASS: u8 = 2;
const TIMER_CLASS: u8 = 1;

/// An idle replica's pending event: `(time, stream number)` for a chunk, or `(time, TIMER)`
/// for its batcher's timer.
pub(super) type Wake = (SimTime, u64);

/// The "stream number" of a wake that is the batcher's timer.
pub(super) const TIMER: u64 = u64::MAX;

impl Simulation<'_> {
    /// `req` starts streaming its clip to ASR replica `replica` at `now`.
    pub(super) fn open_stream(&mut self, now: SimTime, req: ReqId, replica: usize, chunks: u32) {
        self.cycle_touch(replica);
        let number = self.streams_opened;
        self.streams_opened += 1;
        let streams = &mut self.replicas[replica].streams;
        let at = streams.partition_point(|s| s.key() < (now, number));
        streams.insert(
            at,
            Stream {
                req,
                number,
                next_at: now,
                next: 0,
                chunks,
            },
        );
        self.arm_chunk(replica);
    }

    /// `req` stops streaming to `replica` (it failed, was cancelled, or its replica is being
    /// left): the chunks it sent until now are queued first.
    pub(super) fn close_stream(&mut self, req: ReqId, replica: usize) {
        if !self.replicas[replica].streams.iter().any(|s| s.req == req) {
            return;
        }
        self.cycle_touch(replica);
        let (now, class) = (self.engine.now(), self.current_class);
        self.catch_up(replica, now, class);
        // Catching up may have sent its last chunk (and dropped it already).
        self.replicas[replica].streams.retain(|s| s.req != req);
        self.arm_chunk(replica);
    }

    /// A crashed replica's streams are gone with it (their requests are retried or failed).
    pub(super) fn drop_streams(&mut self, replica: usize) {
        let r = &mut self.replicas[replica];
        r.streams.clear();
        r.wake = None;
    }

    /// The chunk event for `stream` at `replica` fires (stale unless it is the armed one):
    /// the chunks up to it join the batcher (with one event per chunk, just this one).
    pub(super) fn chunk_arrives(&mut self, now: SimTime, replica: usize, stream: u64) {
        if self.replicas[replica].wake != Some((now, stream)) {
            return;
        }
        self.replicas[replica].wake = None;
        if self.busy(replica) {
            return; // it queues with the others when the running batch ends
        }
        loop {
            let next = self
                .earliest(replica)
                .expect("invariant: an armed chunk's stream is open");
            let d = self.deliver(replica);
            if next == (now, stream) {
                self.apply(now, replica, d);
                break;
            }
            debug_assert!(
                !matches!(d, Decision::Dispatch(_)),
                "invariant: no chunk before the armed one dispatches"
            );
        }
        self.arm_chunk(replica);
    }

    /// The batch timer of `replica` fires at `now`: whether to run it. With one event per
    /// chunk, always (the batcher ignores a stale one). Waiting for the next dispatch, only
    /// the armed one, which is taken and first queues the chunks sent before it.
    pub(super) fn take_batch_timer(&mut self, replica: usize, now: SimTime) -> bool {
        if !self.waits_for_dispatch(replica) {
            return true;
        }
        if self.replicas[replica].wake != Some((now, TIMER)) {
            return false;
        }
        self.replicas[replica].wake = None;
        self.catch_up(replica, now, TIMER_CLASS);
        true
    }

    /// Whether an idle `replica` waits for its next dispatch rather than for each chunk.
    pub(super) fn waits_for_dispatch(&self, replica: usize) -> bool {
        self.lazy_chunks && self.replicas[replica].stage == super::Stage::Asr
    }

    /// Queue every chunk of `replica`'s streams that arrived before the event now being
    /// handled (at `now`, of class `class`), in arrival order.
    pub(super) fn catch_up(&mut self, replica: usize, now: SimTime, class: u8) {
        // A replica whose idle wake-ups are its next dispatch never acts on its batcher's
        // decisions on the way (a dispatch is the armed event's, a timer is part of the next
        // dispatch): its chunks are queued and the batcher decides once, at the last one's
        // arrival, which leaves it as deciding at each would.
        let once = self.waits_for_dispatch(replica);
        let mut last = None;
        while let Some((at, _)) = self.earliest(replica) {
            if at > now || (at == now && CHUNK_CLASS >= class) {
                break;
            }
            if once {
                self.enqueue(replica);
                last = Some(at);
                continue;
            }
            let d = self.deliver(replica);
            debug_assert!(
                !matches!(d, Decision::Dispatch(_)),
                "invariant: chunks caught up dispatch nothing (the armed event does)"
            );
            self.apply(now, replica, d);
        }
        let Some(at) = last else { return };
        let b = self.batcher_mut(replica);
        if b.busy() {
            return; // a busy batcher decides nothing
        }
        let d = b.decide_at(at.0);
        debug_assert!(
            !matches!(d, Decision::Dispatch(_)),
            "invariant: chunks caught up dispatch nothing (the armed event does)"
        );
    }

    /// Keep one event pending for an idle replica: its next dispatch, or (one event per
    /// chunk) its earliest chunk to come.
    pub(super) fn arm_chunk(&mut self, replica: usize) {
        if self.busy(replica) {
            return;
        }
        let next = if self.waits_for_dispatch(replica) {
            self.next_dispatch(replica)
        } else {
            self.earliest(replica)
        };
        if next == self.replicas[replica].wake {
            return;
        }
        self.replicas[replica].wake = next;
        if self.committing {
            return; // a replica catching up runs its wake-ups itself (see `cycles`)
        }
        match next {
            Some((at, TIMER)) => {
                let epoch = self.replicas[replica].epoch;
                self.engine.schedule(
                    at,
                    Event::BatchTimer {
                        replica: replica as u32,
                        epoch,
                    },
                );
            }
            Some((at, number)) => self.engine.schedule_ordered(
                at,
                Event::Chunk {
                    replica: replica as u32,
                    stream: number,
                },
                number,
            ),
            None => {}
        }
    }

    /// When idle `replica` next dispatches, given the chunks its streams will send.
    fn next_dispatch(&self, replica: usize) -> Option<Wake> {
        let r = &self.replicas[replica];
        let interval = self.chunk_interval_ns;
        // The chunks to come, in arrival order (ties: the stream opened first).
        let mut next: SmallVec<[(SimTime, u64, u32); 4]> = r
            .streams
            .iter()
            .map(|s| (s.next_at, s.number, s.chunks - s.next))
            .collect();
        let chunks = std::iter::from_fn(|| {
            let s = next
                .iter_mut()
                .filter(|s| s.2 > 0)
                .min_by_key(|s| (s.0, s.1))?;
            let chunk = (s.0.0, s.1);
            s.0 = s.0.plus(interval);
            s.2 -= 1;
            Some(chunk)
        });
        let (at, key) = r
            .batcher
            .as_ref()
            .expect("invariant: asr replicas batch")
            .next_dispatch(chunks)?;
        Some((SimTime(at), key.unwrap_or(TIMER)))
    }

    /// Whether `replica` runs a batch (its queue only grows until the batch ends).
    fn busy(&self, replica: usize) -> bool {
        self.replicas[replica]
            .batcher
            .as_ref()
            .is_some_and(|b| b.busy())
    }

    /// When the next chunk to come arrives, and its stream's number: the first stream's, as a
    /// replica keeps its streams in the order of their next chunks (ties: opened first).
    fn earliest(&self, replica: usize) -> Option<Wake> {
        self.replicas[replica].streams.first().map(Stream::key)
    }

    /// Put the next chunk to come (the first stream's) in the replica's batcher, at its
    /// arrival time (the stream closes after its last), without the batcher's decision;
    /// returns that time. Inlined: a catch-up calls it for every chunk.
    #[inline(always)]
    fn enqueue(&mut self, replica: usize) -> SimTime {
        let interval = self.chunk_interval_ns;
        let r = &mut self.replicas[replica];
        let s = &mut r.streams[0];
        let (req, at) = (s.req, s.next_at);
        s.next += 1;
        s.next_at = at.plus(interval);
        let last = s.next == s.chunks;
        if last {
            r.streams.remove(0);
        } else {
            // Back to its place in the order: past every stream whose next chunk now comes
            // first (usually all of them, as streams send at one interval).
            let mut j = 0;
            while j + 1 < r.streams.len() && r.streams[j + 1].key() < r.streams[j].key() {
                r.streams.swap(j, j + 1);
                j += 1;
            }
        }
        r.batcher
            .as_mut()
            .expect("invariant: asr replicas batch")
            .enqueue(at.0, (req, u32::from(last)));
        at
    }

    /// [`Self::enqueue`], and the batcher's decision at the chunk's arrival.
    fn deliver(&mut self, replica: usize) -> Decision<super::Item> {
        let at = self.enqueue(replica);
        self.batcher_mut(replica).decide_at(at.0)
    }

    /// The batcher of ASR replica `replica`.
    fn batcher_mut(&mut self, replica: usize) -> &mut crate::serving::Batcher<super::Item> {
        self.replicas[replica]
            .batcher
            .as_mut()
            .expect("invariant: asr replicas batch")
    }
}
