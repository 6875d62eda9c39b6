//! Discrete-event engine: integer-nanosecond clock, deterministic event queue, seeded streams.
//!
//! The engine knows nothing about GPUs: it orders opaque events by `(time, class, sequence)`
//! and hands them back one at a time. Models decide what an event means.
//!
//! Besides events, the engine keeps timers: numbered slots holding at most one pending instant
//! each, which a model moves as often as it likes (a device's next completion, which every
//! new job can move). Moving a timer leaves nothing stale behind, unlike scheduling a new
//! event and ignoring the old one.

use std::cmp::Ordering;

use dary_heap::QuaternaryHeap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Simulated time in integer nanoseconds since the start of a run.
///
/// Integer time makes event order exact and reproducible on every machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub u64);

/// `ns.round() as u64` without the library call that `round` is on baseline x86-64 (a
/// measurable share of a fleet run): round half away from zero; negative and NaN to 0,
/// saturating at `u64::MAX`.
pub fn round_ns(ns: f64) -> u64 {
    // Every simulated time is below 2^62 ns: there the signed conversions (one instruction
    // each way, where the unsigned ones take several) give the same integers.
    const SIGNED_EXACT: f64 = (1u64 << 62) as f64;
    if (0.0..SIGNED_EXACT).contains(&ns) {
        let whole = ns as i64;
        return (whole + i64::from(ns - whole as f64 >= 0.5)) as u64;
    }
    let whole = ns as u64; // truncates; saturates, NaN and negatives to 0
    // Exact: `whole` and `ns` differ by less than one below 2^52, and `ns` has no
    // fraction above it.
    if ns - whole as f64 >= 0.5 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

impl SimTime {
    /// Time zero.
    pub const ZERO: SimTime = SimTime(0);

    /// From seconds (rounded to the nearest nanosecond).
    pub fn from_secs_f64(s: f64) -> SimTime {
        SimTime(round_ns(s * 1e9))
    }

    /// From milliseconds (rounded to the nearest nanosecond).
    pub fn from_millis_f64(ms: f64) -> SimTime {
        SimTime(round_ns(ms * 1e6))
    }

    /// From microseconds (rounded to the nearest nanosecond).
    pub fn from_micros_f64(us: f64) -> SimTime {
        SimTime(round_ns(us * 1e3))
    }

    /// As seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// As milliseconds.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// `self + d` nanoseconds, saturating at the end of representable time.
    pub fn plus(self, d_ns: u64) -> SimTime {
        SimTime(self.0.saturating_add(d_ns))
    }

    /// Nanoseconds from `earlier` to `self`; panics if `earlier` is later (a causality bug).
    pub fn since(self, earlier: SimTime) -> u64 {
        assert!(earlier <= self, "invariant: time never goes backwards");
        self.0 - earlier.0
    }
}

/// Events tell the queue their class: at equal times, lower classes run first.
pub trait EventClass {
    /// Rank among events scheduled for the same instant (lower first).
    fn class(&self) -> u8;
}

/// A queued event. Its key packs `(time, class, sequence)` into one integer (time in the high
/// 64 bits, class in the next 8, sequence in the low 56), so ordering is a single comparison.
struct Entry<E> {
    key: u128,
    event: E,
}

/// Sequence numbers must fit in 56 bits (7e16 events: centuries of simulation).
const SEQ_BITS: u32 = 56;

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: the heap is a max-heap and we want the earliest key on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// The event queue and clock of one run. Single-threaded by design.
pub struct Engine<E> {
    now: SimTime,
    seq: u64,
    /// Four children per node: half the levels of a binary heap, each a compare of four
    /// adjacent entries (the same order: keys are unique).
    heap: QuaternaryHeap<Entry<E>>,
    timers: Timers,
    /// The timer that fired last, still in the tree until the model has had its chance to
    /// set it again: usually it does, and clearing it first would walk the tree twice.
    fired: Option<usize>,
    processed: u64,
}

/// What [`Engine::pop_any`] hands out: an event, or a timer's slot.
#[derive(Debug, PartialEq)]
pub enum Popped<E> {
    /// A scheduled event.
    Event(E),
    /// The timer of this slot fired (it is now unset).
    Timer(usize),
}

/// Children per node of the timer tree: one 64-byte cache line of keys per group.
const FAN: usize = 8;

/// Timer slots in a tournament tree of fan-out [`FAN`]: each inner node holds the earliest
/// key of its children, so the earliest timer is at the root. A key packs a time above its
/// slot's number into one integer, so that the earliest time, and among equal times the
/// lowest slot, is simply the smallest key. Moving one timer rescans one group of siblings
/// per level (`log8` of the slot count: 4 levels for a 1,000-GPU fleet, against 11 in a
/// binary tree, each scan a branch-free minimum over one cache line), and stops where nothing
/// changes. The engine turns the root into an event key, packed like an event's, so that the
/// two compare directly.
#[derive(Debug, Default)]
struct Timers {
    /// Class of every timer.
    class: u8,
    /// Where each level starts in the tree: level 0 holds one entry per slot (padded to a
    /// multiple of [`FAN`]), each next level one per group of the previous, the last level
    /// the root alone.
    level_start: Vec<usize>,
    /// Bits of a key below the time: the slot's number.
    slot_bits: u32,
    /// Keys in 64 bits: `time << slot_bits | slot`, for times below `2^(64 - slot_bits)` ns
    /// (104 days with up to 2,048 slots).
    narrow: Tree<u64>,
    /// Keys in 128 bits (`time << 64 | slot`), from the first time set that the narrow keys
    /// cannot hold on (the narrow tree is then empty).
    wide: Option<Tree<u128>>,
}

/// A timer key: a time and a slot packed so that integer order is their order.
trait TimerKey: Copy + Ord {
    /// The key of a slot with no timer set (and of padding): after every other.
    const NONE: Self;
}

impl TimerKey for u64 {
    const NONE: u64 = u64::MAX;
}

impl TimerKey for u128 {
    const NONE: u128 = u128::MAX;
}

/// The nodes of a timer tree, laid out by `Timers::level_start`.
#[derive(Debug, Default)]
struct Tree<K> {
    key: Vec<K>,
}

impl<K: TimerKey> Tree<K> {
    /// Set leaf `slot` to `key` and update the earliest key above it.
    fn set(&mut self, level_start: &[usize], slot: usize, key: K) {
        self.key[slot] = key;
        let mut i = slot;
        for w in level_start.windows(2) {
            let (below, here) = (w[0], w[1]);
            let group = i / FAN;
            let first = below + group * FAN;
            let k: &[K; FAN] = self.key[first..first + FAN]
                .try_into()
                .expect("invariant: a group is FAN wide");
            // Pairwise, so that the comparisons of one round do not wait for each other.
            let low = k[0].min(k[1]).min(k[2].min(k[3]));
            let high = k[4].min(k[5]).min(k[6].min(k[7]));
            let earliest = low.min(high);
            let node = here + group;
            if self.key[node] == earliest {
                break; // nothing above changes either
            }
            self.key[node] = earliest;
            i = group;
        }
    }

    /// Recompute every inner node from the leaves.
    fn rebuild(&mut self, level_start: &[usize]) {
        let ends = level_start[2..].iter().copied().chain([self.key.len()]);
        for (w, end) in level_start.windows(2).zip(ends) {
            let (below, here) = (w[0], w[1]);
            for node in here..end {
                let first = below + (node - here) * FAN;
                self.key[node] = if first < here {
                    self.key[first..first + FAN]
                        .iter()
                        .copied()
                        .min()
                        .expect("invariant: a group is FAN wide")
                } else {
                    K::NONE // padding of the level above
                };
            }
        }
    }
}

impl Timers {
    fn new(slots: usize, class: u8) -> Self {
        let mut level_start = vec![0];
        let mut len = slots.max(1).next_multiple_of(FAN);
        let mut total = len;
        loop {
            len = len.div_ceil(FAN);
            if len > 1 {
                len = len.next_multiple_of(FAN);
            }
            level_start.push(total);
            total += len;
            if len == 1 {
                break;
            }
        }
        Timers {
            class,
            level_start,
            slot_bits: usize::BITS - slots.saturating_sub(1).leading_zeros(),
            narrow: Tree {
                key: vec![u64::NONE; total],
            },
            wide: None,
        }
    }

    /// The earliest timer: its time and slot (the lowest slot among equal times).
    fn top(&self) -> Option<(u64, usize)> {
        let root = *self.level_start.last()?;
        if let Some(wide) = &self.wide {
            let k = wide.key[root];
            return (k != u128::NONE).then_some(((k >> 64) as u64, k as u64 as usize));
        }
        let k = self.narrow.key[root];
        (k != u64::NONE).then(|| (k >> self.slot_bits, (k & self.slot_mask()) as usize))
    }

    fn slot_mask(&self) -> u64 {
        (1u64 << self.slot_bits) - 1
    }

    /// Set `slot` to fire at `time` (`u64::MAX`: not at all).
    #[inline]
    fn set(&mut self, slot: usize, time: u64) {
        if self.wide.is_none() {
            if time == u64::MAX {
                return self.narrow.set(&self.level_start, slot, u64::NONE);
            }
            // A key below `u64::NONE` needs the time below this.
            if time < u64::MAX >> self.slot_bits {
                let key = time << self.slot_bits | slot as u64;
                return self.narrow.set(&self.level_start, slot, key);
            }
        }
        self.set_wide(slot, time);
    }

    /// [`Self::set`] with 128-bit keys, moving to them first if need be. Kept out of line:
    /// a run reaches it only far into simulated time (past 100 days with up to 2,048 slots).
    #[cold]
    #[inline(never)]
    fn set_wide(&mut self, slot: usize, time: u64) {
        if self.wide.is_none() {
            self.widen();
        }
        let wide = self.wide.as_mut().expect("invariant: widened");
        let key = if time == u64::MAX {
            u128::NONE
        } else {
            u128::from(time) << 64 | slot as u128
        };
        wide.set(&self.level_start, slot, key);
    }

    /// Move every timer to 128-bit keys: a time too far for the narrow ones was set.
    fn widen(&mut self) {
        let mask = self.slot_mask();
        let level0 = self.level_start[1];
        let mut key = vec![u128::NONE; self.narrow.key.len()];
        for (w, &n) in key[..level0].iter_mut().zip(&self.narrow.key[..level0]) {
            if n != u64::NONE {
                *w = u128::from(n >> self.slot_bits) << 64 | u128::from(n & mask);
            }
        }
        let mut wide = Tree { key };
        wide.rebuild(&self.level_start);
        self.wide = Some(wide);
        self.narrow = Tree::default();
    }
}

impl<E: EventClass> Default for Engine<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: EventClass> Engine<E> {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        Engine {
            now: SimTime::ZERO,
            seq: 0,
            heap: QuaternaryHeap::new(),
            timers: Timers::default(),
            fired: None,
            processed: 0,
        }
    }

    /// Give the engine `slots` timers (numbered from 0, all unset), of class `class`: at the
    /// same instant they run with events by class, and among themselves by slot number. No
    /// event should be of that class. Replaces any timers set before.
    pub fn use_timers(&mut self, slots: usize, class: u8) {
        self.timers = Timers::new(slots, class);
        self.fired = None;
    }

    /// Set timer `slot` to fire at `at`, or unset it (`None`), replacing what it held.
    /// Setting it into the past is a model bug.
    pub fn set_timer(&mut self, slot: usize, at: Option<SimTime>) {
        let time = match at {
            Some(at) => {
                assert!(
                    at >= self.now && at.0 < u64::MAX,
                    "invariant: timer set in the past or at the end of time ({} ns, now {} ns)",
                    at.0,
                    self.now.0
                );
                at.0
            }
            None => u64::MAX,
        };
        if self.fired == Some(slot) {
            self.fired = None;
        }
        self.timers.set(slot, time);
    }

    /// Current simulated time (the time of the last event handed out).
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Number of events handed out so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Number of events waiting.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Schedule `event` at absolute time `at`. Scheduling into the past is a model bug.
    pub fn schedule(&mut self, at: SimTime, event: E) {
        // Ties at the same time and class keep insertion order, so runs are reproducible.
        self.push(at, event, self.seq);
        self.seq += 1;
    }

    /// Schedule `event` at `at`, ordered among the same-time events of its class by `order`
    /// instead of by insertion. For a class whose events all come through here: a model that
    /// stands one event for a chain of others (audio chunks) can then keep the order the
    /// chain would have had. `order` must fit in 56 bits.
    pub fn schedule_ordered(&mut self, at: SimTime, event: E, order: u64) {
        self.push(at, event, order);
    }

    fn push(&mut self, at: SimTime, event: E, order: u64) {
        assert!(
            at >= self.now,
            "invariant: event scheduled in the past ({} ns < now {} ns)",
            at.0,
            self.now.0
        );
        let key = Self::key(at, event.class(), order);
        self.heap.push(Entry { key, event });
    }

    fn key(at: SimTime, class: u8, order: u64) -> u128 {
        debug_assert!(order < 1 << SEQ_BITS);
        (u128::from(at.0) << 64) | (u128::from(class) << SEQ_BITS) | u128::from(order)
    }

    /// Schedule `event` `delay_ns` after now.
    pub fn schedule_in(&mut self, delay_ns: u64, event: E) {
        self.schedule(self.now.plus(delay_ns), event);
    }

    /// Take the next event or timer and advance the clock to it; `None` when neither is left.
    pub fn pop_any(&mut self) -> Option<(SimTime, Popped<E>)> {
        if let Some(slot) = self.fired.take() {
            self.timers.set(slot, u64::MAX); // it fired and was not set again
        }
        let timer = self.timers.top();
        let timer_key = timer.map_or(u128::MAX, |(t, slot)| {
            Self::key(SimTime(t), self.timers.class, slot as u64)
        });
        let (key, popped) = if self.heap.peek().is_some_and(|e| e.key < timer_key) {
            let e = self.heap.pop().expect("invariant: peeked");
            (e.key, Popped::Event(e.event))
        } else if let Some((_, slot)) = timer {
            self.fired = Some(slot);
            (timer_key, Popped::Timer(slot))
        } else {
            return None;
        };
        let time = SimTime((key >> 64) as u64);
        debug_assert!(time >= self.now);
        self.now = time;
        self.processed += 1;
        Some((time, popped))
    }

    /// Take the next event and advance the clock to it; `None` when the queue is empty. For
    /// an engine without timers (see [`Self::pop_any`]).
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        match self.pop_any()? {
            (t, Popped::Event(e)) => Some((t, e)),
            (_, Popped::Timer(slot)) => {
                panic!("invariant: timer {slot} fired in `pop` (use `pop_any` with timers)")
            }
        }
    }
}

/// Derives independent, reproducible random streams from one run seed.
///
/// Each purpose (arrivals, answer lengths, ...) gets its own stream, so adding draws for one
/// purpose never shifts the numbers another purpose sees.
#[derive(Clone, Copy, Debug)]
pub struct Streams {
    seed: u64,
}

impl Streams {
    /// Streams for a run seed.
    pub fn new(seed: u64) -> Self {
        Streams { seed }
    }

    /// The stream named `purpose`; the same seed and name always give the same sequence.
    pub fn stream(&self, purpose: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(splitmix64(self.seed ^ fnv1a(purpose.as_bytes())))
    }
}

/// FNV-1a: a stable hash (unlike `std`'s, which may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finaliser: spreads nearby seeds far apart.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[derive(Debug, PartialEq)]
    struct Ev(u8, &'static str);
    impl EventClass for Ev {
        fn class(&self) -> u8 {
            self.0
        }
    }

    #[test]
    fn rounding_to_ns_matches_the_library_round() {
        let edge = [
            0.0,
            0.5,
            1.5,
            2.5,
            0.499_999_999_999_999_94,
            1e6 + 0.5,
            4_503_599_627_370_495.5, // 2^52 - 0.5
            9_007_199_254_740_993.0,
            4_611_686_018_427_387_904.0, // 2^62
            4_611_686_018_427_386_880.0, // the float below 2^62
            9_223_372_036_854_775_808.0, // 2^63
            1e20,
            f64::INFINITY,
            -0.3,
            -2.5,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut x = 0.1f64;
        let spread = std::iter::from_fn(|| {
            x *= 1.37;
            (x < 1e21).then_some(x)
        });
        for ns in edge.into_iter().chain(spread) {
            for v in [ns, ns + 0.5, ns - 0.5] {
                assert_eq!(round_ns(v), v.round() as u64, "{v}");
            }
        }
    }

    #[test]
    fn orders_by_time_then_class_then_insertion() {
        let mut e = Engine::new();
        e.schedule(SimTime(10), Ev(1, "t10-c1-a"));
        e.schedule(SimTime(5), Ev(2, "t5"));
        e.schedule(SimTime(10), Ev(0, "t10-c0"));
        e.schedule(SimTime(10), Ev(1, "t10-c1-b"));
        let order: Vec<_> = std::iter::from_fn(|| e.pop()).map(|(_, ev)| ev.1).collect();
        assert_eq!(order, ["t5", "t10-c0", "t10-c1-a", "t10-c1-b"]);
        assert_eq!(e.now(), SimTime(10));
        assert_eq!(e.processed(), 4);
    }

    #[test]
    fn ordered_events_keep_their_given_order_within_their_class() {
        let mut e = Engine::new();
        e.schedule_ordered(SimTime(10), Ev(2, "c2-order7"), 7);
        e.schedule(SimTime(10), Ev(3, "c3"));
        e.schedule_ordered(SimTime(10), Ev(2, "c2-order3"), 3);
        e.schedule(SimTime(10), Ev(1, "c1"));
        e.schedule_ordered(SimTime(4), Ev(2, "t4-order9"), 9);
        let order: Vec<_> = std::iter::from_fn(|| e.pop()).map(|(_, ev)| ev.1).collect();
        assert_eq!(order, ["t4-order9", "c1", "c2-order3", "c2-order7", "c3"]);
    }

    #[test]
    fn timers_fire_once_in_order_with_events_and_can_move() {
        let mut e = Engine::new();
        e.use_timers(5, 1);
        e.set_timer(3, Some(SimTime(20)));
        e.set_timer(1, Some(SimTime(10)));
        e.set_timer(4, Some(SimTime(10)));
        e.set_timer(2, Some(SimTime(30)));
        e.set_timer(2, Some(SimTime(8))); // moved earlier: fires once, at 8
        e.set_timer(3, None); // unset: never fires
        e.schedule(SimTime(10), Ev(0, "c0"));
        e.schedule(SimTime(10), Ev(2, "c2"));
        let mut order = Vec::new();
        while let Some((t, p)) = e.pop_any() {
            order.push(match p {
                Popped::Event(ev) => format!("{} {}", t.0, ev.1),
                Popped::Timer(s) => format!("{} timer {s}", t.0),
            });
            if order.len() == 2 {
                e.set_timer(2, Some(SimTime(12))); // set again after firing
            }
        }
        assert_eq!(
            order,
            [
                "8 timer 2",
                "10 c0",
                "10 timer 1",
                "10 timer 4",
                "10 c2",
                "12 timer 2"
            ]
        );
        assert_eq!(e.processed(), 6);
    }

    /// Timers behave as one pending event per slot, the latest setting winning. `ops` sets
    /// (or unsets) a slot some nanoseconds from now: an offset of 10 or more is multiplied by
    /// `far` (saturating just below the end of time).
    fn check_timers_against_a_list(
        slots: usize,
        ops: Vec<(usize, Option<u64>)>,
        far: u64,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut e: Engine<Ev> = Engine::new();
        e.use_timers(slots, 0);
        let mut model: Vec<Option<u64>> = vec![None; slots];
        for (slot, at) in ops {
            // Crowd most operations onto a few slots, so that equal times meet.
            let slot = if slot % 2 == 0 {
                slot % 9 % slots
            } else {
                slot % slots
            };
            let at = at.map(|d| {
                let d = if d >= 10 { d.saturating_mul(far) } else { d };
                e.now().0.saturating_add(d).min(u64::MAX - 1)
            });
            e.set_timer(slot, at.map(SimTime));
            model[slot] = at;
            // Every few operations, fire the earliest timer of the model.
            if slot % 3 == 0 {
                let want = model
                    .iter()
                    .enumerate()
                    .filter_map(|(s, t)| t.map(|t| (t, s)))
                    .min();
                let got = e.pop_any().map(|(t, p)| (t.0, p));
                match want {
                    Some((t, s)) => {
                        proptest::prop_assert_eq!(got, Some((t, Popped::Timer(s))));
                        model[s] = None;
                    }
                    None => proptest::prop_assert!(got.is_none()),
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// Times drawn from a short range, so that equal times are common; up to 600 slots,
        /// so that the tree has up to four levels and padded groups.
        #[test]
        fn timers_match_a_list_of_pending_instants(
            slots in 1usize..600,
            ops in proptest::collection::vec((0usize..600, proptest::option::of(0u64..12)), 1..300),
        ) {
            check_timers_against_a_list(slots, ops, 1)?;
        }

        /// The same with some times too far for 64-bit keys (beyond 2^54 ns with 600 slots):
        /// the tree moves to 128-bit keys on the way.
        #[test]
        fn timers_far_in_the_future_match_a_list_too(
            slots in 1usize..600,
            ops in proptest::collection::vec((0usize..600, proptest::option::of(0u64..12)), 1..300),
        ) {
            check_timers_against_a_list(slots, ops, 1 << 55)?;
        }
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_into_the_past_panics() {
        let mut e = Engine::new();
        e.schedule(SimTime(10), Ev(0, "a"));
        e.pop();
        e.schedule(SimTime(9), Ev(0, "b"));
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let s = Streams::new(7);
        let a1: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(s.stream("a"), |r, _| Some(r.random()))
            .collect();
        let a2: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(s.stream("a"), |r, _| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(s.stream("b"), |r, _| Some(r.random()))
            .collect();
        let other_seed: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Streams::new(8).stream("a"), |r, _| Some(r.random()))
            .collect();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, other_seed);
    }
}
