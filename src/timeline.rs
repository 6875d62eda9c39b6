//! Busy time over time: kernel and context-switch nanoseconds of one partition, bucketed into
//! fixed-width time buckets (for the device-busy timeline chart).
//!
//! The time-slicer reports each stretch of time it advances over (`from..to`) with the busy
//! and switching time inside it. Within such a stretch no job completes before its end, so
//! the partition is either idle throughout or occupied (running or switching) throughout;
//! spreading the stretch's busy and switching time evenly over it is therefore exact for the
//! occupied time of every bucket, and only the interleaving of kernels and switches inside a
//! stretch (a slice, about a millisecond) is averaged. Integer arithmetic keeps the totals
//! exact: the buckets of a partition add up to its busy and switching totals (rounding moves
//! at most a nanosecond or two per stretch between neighbouring buckets).

use serde::Serialize;

use crate::engine::SimTime;

/// Bucket widths the timeline picks from, ns (1-2-5 steps from 1 ms to 1000 s).
const WIDTHS_NS: [u64; 19] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    20_000_000_000,
    50_000_000_000,
    100_000_000_000,
    200_000_000_000,
    500_000_000_000,
    1_000_000_000_000,
];

/// At most this many buckets cover a run's nominal duration (memory stays bounded: a few KB
/// per partition).
pub const MAX_BUCKETS: u64 = 400;

/// Busy and switching ns per time bucket of one partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BusyTimeline {
    /// Bucket width, ns.
    pub bucket_ns: u64,
    /// Kernel-busy ns in each bucket.
    pub busy_ns: Vec<u64>,
    /// Context-switch ns in each bucket.
    pub switching_ns: Vec<u64>,
}

impl BusyTimeline {
    /// An empty timeline with buckets of `bucket_ns` (> 0).
    pub fn new(bucket_ns: u64) -> Self {
        assert!(bucket_ns > 0, "invariant: a bucket has a width");
        BusyTimeline {
            bucket_ns,
            busy_ns: Vec::new(),
            switching_ns: Vec::new(),
        }
    }

    /// The narrowest 1-2-5 width giving at most [`MAX_BUCKETS`] buckets over `duration`.
    pub fn width_for(duration: SimTime) -> u64 {
        WIDTHS_NS
            .iter()
            .copied()
            .find(|w| duration.0.div_ceil(*w) <= MAX_BUCKETS)
            .unwrap_or(WIDTHS_NS[WIDTHS_NS.len() - 1])
    }

    /// Spread `busy` and `switching` ns evenly over `from..to`.
    pub fn record(&mut self, from: SimTime, to: SimTime, busy: u64, switching: u64) {
        if to <= from || (busy == 0 && switching == 0) {
            return;
        }
        let b = (from.0 / self.bucket_ns) as usize;
        if to.0 <= (b as u64 + 1) * self.bucket_ns {
            // Within one bucket (the usual case): no spreading needed.
            self.add(b, busy, switching);
            return;
        }
        let span = u128::from(to.0 - from.0);
        // Share of `total` falling in from..x, rounded down; differences give each bucket's.
        let upto = |total: u64, x: u64| -> u64 {
            (u128::from(total) * u128::from(x - from.0) / span) as u64
        };
        let mut start = from.0;
        while start < to.0 {
            let b = (start / self.bucket_ns) as usize;
            let end = ((b as u64 + 1) * self.bucket_ns).min(to.0);
            self.add(
                b,
                upto(busy, end) - upto(busy, start),
                upto(switching, end) - upto(switching, start),
            );
            start = end;
        }
    }

    /// Add to bucket `b`.
    fn add(&mut self, b: usize, busy: u64, switching: u64) {
        if self.busy_ns.len() <= b {
            self.busy_ns.resize(b + 1, 0);
            self.switching_ns.resize(b + 1, 0);
        }
        self.busy_ns[b] += busy;
        self.switching_ns[b] += switching;
    }

    /// Fraction of each bucket spent running kernels, over buckets up to `end` (the last one
    /// possibly partial, divided by its own length).
    pub fn fractions(&self, end: SimTime) -> Vec<(f64, f64, f64)> {
        let n = end.0.div_ceil(self.bucket_ns) as usize;
        (0..n)
            .map(|b| {
                let start = b as u64 * self.bucket_ns;
                let len = (self.bucket_ns.min(end.0 - start)) as f64;
                let get = |v: &Vec<u64>| v.get(b).copied().unwrap_or(0) as f64 / len;
                (
                    start as f64 / 1e9,
                    get(&self.busy_ns),
                    get(&self.switching_ns),
                )
            })
            .collect()
    }
}

/// Records a [`BusyTimeline`], keeping the bucket being filled next to the device's own state:
/// a device reports a stretch at every change, almost always within the current bucket, and
/// the timeline's arrays, one more memory line per partition, are touched only when the
/// bucket changes. Sums are integers, so the result is the same as recording directly.
#[derive(Clone, Debug)]
pub struct TimelineRecorder {
    /// Buckets closed so far.
    closed: BusyTimeline,
    /// The bucket being filled: index, busy and switching ns.
    open: Option<(usize, u64, u64)>,
}

impl TimelineRecorder {
    /// A recorder with buckets of `bucket_ns` (> 0).
    pub fn new(bucket_ns: u64) -> Self {
        TimelineRecorder {
            closed: BusyTimeline::new(bucket_ns),
            open: None,
        }
    }

    /// As [`BusyTimeline::record`].
    pub fn record(&mut self, from: SimTime, to: SimTime, busy: u64, switching: u64) {
        if to <= from || (busy == 0 && switching == 0) {
            return;
        }
        let w = self.closed.bucket_ns;
        let b = (from.0 / w) as usize;
        if to.0 <= (b as u64 + 1) * w {
            if let Some((ob, ob_busy, ob_switching)) = &mut self.open
                && *ob == b
            {
                *ob_busy += busy;
                *ob_switching += switching;
                return;
            }
            self.close();
            self.open = Some((b, busy, switching));
            return;
        }
        self.close();
        self.closed.record(from, to, busy, switching);
    }

    /// Write the open bucket to the arrays.
    fn close(&mut self) {
        if let Some((b, busy, switching)) = self.open.take() {
            self.closed.add(b, busy, switching);
        }
    }

    /// The timeline recorded so far.
    pub fn timeline(&self) -> BusyTimeline {
        let mut t = self.closed.clone();
        if let Some((b, busy, switching)) = self.open {
            t.add(b, busy, switching);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_kept_exactly_and_spread_by_overlap() {
        let mut t = BusyTimeline::new(10);
        t.record(SimTime(5), SimTime(35), 20, 10);
        assert_eq!(t.busy_ns.iter().sum::<u64>(), 20);
        assert_eq!(t.switching_ns.iter().sum::<u64>(), 10);
        // 5 of 30 ns in bucket 0, 10 in buckets 1 and 2, 5 in bucket 3.
        assert_eq!(t.busy_ns, vec![3, 7, 6, 4]);
        assert_eq!(t.switching_ns, vec![1, 4, 3, 2]);
        t.record(SimTime(40), SimTime(40), 5, 0);
        assert_eq!(t.busy_ns.len(), 4);
    }

    #[test]
    fn the_recorder_gives_the_timeline_recorded_directly() {
        let stretches = [
            (0, 3, 2, 1),
            (3, 7, 4, 0),
            (7, 9, 0, 0),
            (9, 12, 1, 2),
            (12, 18, 5, 1),
            (18, 55, 30, 7),
            (55, 58, 3, 0),
            (61, 69, 8, 0),
            (80, 80, 5, 5),
        ];
        let mut direct = BusyTimeline::new(10);
        let mut rec = TimelineRecorder::new(10);
        for (k, &(a, b, busy, sw)) in stretches.iter().enumerate() {
            direct.record(SimTime(a), SimTime(b), busy, sw);
            rec.record(SimTime(a), SimTime(b), busy, sw);
            assert_eq!(rec.timeline(), direct, "after stretch {k}");
        }
        assert_eq!(direct.busy_ns.len(), 7);
    }

    #[test]
    fn width_gives_at_most_the_bucket_cap() {
        assert_eq!(
            BusyTimeline::width_for(SimTime::from_secs_f64(375.0)),
            1_000_000_000
        );
        assert_eq!(
            BusyTimeline::width_for(SimTime::from_secs_f64(135.0)),
            500_000_000
        );
        assert_eq!(
            BusyTimeline::width_for(SimTime::from_secs_f64(0.1)),
            1_000_000
        );
    }

    #[test]
    fn fractions_divide_by_bucket_length() {
        let mut t = BusyTimeline::new(10);
        t.record(SimTime(0), SimTime(15), 15, 0);
        let f = t.fractions(SimTime(15));
        assert_eq!(f, vec![(0.0, 1.0, 0.0), (1e-8, 1.0, 0.0)]);
    }
}
