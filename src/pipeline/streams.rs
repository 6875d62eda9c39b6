//! Audio streams into ASR replicas, delivered chunk by chunk without an event per chunk.
//!
//! A user sends a clip as chunks at a fixed interval; each chunk joins its ASR replica's
//! batcher. While the replica runs a batch, a chunk that arrives only queues (the batcher
//! decides nothing until the batch ends), so those chunks need no event of their own: they
//! are put in the queue, with their own arrival times and in their own order, when the batch
//! ends ([`Simulation::catch_up`]) or when something else looks at the queue. Only while the
//! replica is idle does the next chunk get an event ([`Event::Chunk`]), because then it may
//! start a batch or arm the batcher's timer.
//!
//! Results are the same as with one event per chunk, to the byte: a chunk event is ordered
//! among same-instant chunk events by its stream's number, which is the order the per-chunk
//! events had (a stream's next chunk was scheduled when its previous one arrived, so ties
//! between streams fell back on the order the streams opened).

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

/// The class the engine gives chunk events (see `EventClass for Event`).
const CHUNK_CLASS: u8 = 2;

impl Simulation<'_> {
    /// `req` starts streaming its clip to ASR replica `replica` at `now`.
    pub(super) fn open_stream(&mut self, now: SimTime, req: ReqId, replica: usize, chunks: u32) {
        let number = self.streams_opened;
        self.streams_opened += 1;
        self.replicas[replica].streams.push(Stream {
            req,
            number,
            next_at: now,
            next: 0,
            chunks,
        });
        self.arm_chunk(replica);
    }

    /// `req` stops streaming to `replica` (it failed, was cancelled, or its replica is being
    /// left): the chunks it sent until now are queued first.
    pub(super) fn close_stream(&mut self, req: ReqId, replica: usize) {
        if !self.replicas[replica].streams.iter().any(|s| s.req == req) {
            return;
        }
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
        r.chunk_armed = None;
    }

    /// The chunk event for `stream` at `replica` fires (stale unless it is the armed one).
    pub(super) fn chunk_arrives(&mut self, now: SimTime, replica: usize, stream: u64) {
        if self.replicas[replica].chunk_armed != Some((now, stream)) {
            return;
        }
        self.replicas[replica].chunk_armed = None;
        if self.busy(replica) {
            return; // it queues with the others when the running batch ends
        }
        let i = self.replicas[replica]
            .streams
            .iter()
            .position(|s| s.number == stream)
            .expect("invariant: an armed chunk's stream is open");
        let d = self.deliver(replica, i);
        self.apply(now, replica, d);
        self.arm_chunk(replica);
    }

    /// Queue every chunk of `replica`'s streams that arrived before the event now being
    /// handled (at `now`, of class `class`), in arrival order.
    pub(super) fn catch_up(&mut self, replica: usize, now: SimTime, class: u8) {
        while let Some((i, at)) = self.earliest(replica) {
            if at > now || (at == now && CHUNK_CLASS >= class) {
                break;
            }
            let d = self.deliver(replica, i);
            debug_assert!(
                matches!(d, Decision::Wait),
                "invariant: only a busy replica has chunks to catch up"
            );
            self.apply(now, replica, d);
        }
    }

    /// Keep one chunk event pending for an idle replica: its earliest chunk to come.
    pub(super) fn arm_chunk(&mut self, replica: usize) {
        if self.busy(replica) {
            return;
        }
        let next = self.earliest(replica).map(|(i, at)| {
            let s = &self.replicas[replica].streams[i];
            (at, s.number)
        });
        if next == self.replicas[replica].chunk_armed {
            return;
        }
        self.replicas[replica].chunk_armed = next;
        if let Some((at, number)) = next {
            self.engine.schedule_ordered(
                at,
                Event::Chunk {
                    replica: replica as u32,
                    stream: number,
                },
                number,
            );
        }
    }

    /// Whether `replica` runs a batch (its queue only grows until the batch ends).
    fn busy(&self, replica: usize) -> bool {
        self.replicas[replica]
            .batcher
            .as_ref()
            .is_some_and(|b| b.busy())
    }

    /// The stream whose next chunk comes first (ties: the stream opened first).
    fn earliest(&self, replica: usize) -> Option<(usize, SimTime)> {
        self.replicas[replica]
            .streams
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| (s.next_at, s.number))
            .map(|(i, s)| (i, s.next_at))
    }

    /// Put stream `i`'s next chunk in the replica's batcher, at its arrival time.
    fn deliver(&mut self, replica: usize, i: usize) -> Decision<super::Item> {
        let interval = self.chunk_interval_ns;
        let r = &mut self.replicas[replica];
        let s = &mut r.streams[i];
        let (req, at) = (s.req, s.next_at);
        s.next += 1;
        s.next_at = at.plus(interval);
        let last = s.next == s.chunks;
        if last {
            r.streams.swap_remove(i);
        }
        r.batcher
            .as_mut()
            .expect("invariant: asr replicas batch")
            .push(at.0, (req, u32::from(last)))
    }
}
