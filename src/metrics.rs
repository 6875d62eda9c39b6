//! Metrics as the seed harness defines them (see `docs/metrics.md`): per-stage latency
//! percentiles over successful requests, throughput over the whole wall time, success rate,
//! and per-partition busy time and memory.

use serde::Serialize;

use crate::engine::round_ns;

/// The field of a per-stage struct named by `stage` (one of [`STAGES`]).
macro_rules! stage_field {
    ($s:expr, $stage:expr) => {
        match $stage {
            "asr" => &$s.asr,
            "llm_queue" => &$s.llm_queue,
            "llm_ttft" => &$s.llm_ttft,
            "llm_tpot" => &$s.llm_tpot,
            "llm_itl" => &$s.llm_itl,
            "llm_total" => &$s.llm_total,
            "tts" => &$s.tts,
            "e2e" => &$s.e2e,
            "request" => &$s.request,
            other => panic!("invariant: unknown stage {other}"),
        }
    };
}

/// Latency stages, in report order.
pub const STAGES: [&str; 9] = [
    "asr",
    "llm_queue",
    "llm_ttft",
    "llm_tpot",
    "llm_itl",
    "llm_total",
    "tts",
    "e2e",
    "request",
];

/// Collected latency samples of one stage, milliseconds: every sample (exact percentiles), or
/// a streaming histogram whose memory does not grow with the number of samples.
#[derive(Clone, Debug)]
pub enum Samples {
    /// Every sample, kept.
    Exact(Vec<f64>),
    /// An HDR histogram of nanoseconds with 3 significant digits (1 us to 2.8 h; longer
    /// latencies count as 2.8 h): percentiles within 0.1%, the mean exact (a running sum).
    Streaming(Box<Streaming>),
}

/// State of a streaming [`Samples`].
#[derive(Clone, Debug)]
pub struct Streaming {
    hist: hdrhistogram::Histogram<u64>,
    sum_ms: f64,
}

impl Streaming {
    fn record_ms(&mut self, ms: f64) {
        self.hist.saturating_record(round_ns(ms * 1e6).max(1));
        self.sum_ms += ms;
    }

    /// Record `ns`, in order: the same histogram (bucket by bucket: counts, and the
    /// extremes as the histogram reports them) and the same sum as `record_ms` of each
    /// `x as f64 / 1e6`.
    fn extend_ns(&mut self, ns: &[u64]) {
        // Below 2^50 ns (13 days) the round trip ns -> ms -> ns is off by less than 2^-2 ns,
        // so rounding it gives the value back: the histogram takes it directly.
        const DIRECT: u64 = 1 << 50;
        let mut rest = ns;
        while let Some(&x) = rest.first() {
            if x >= DIRECT {
                self.record_ms(x as f64 / 1e6);
                rest = &rest[1..];
                continue;
            }
            // A request's token gaps mostly fall in one bucket of the histogram (steps of
            // nearly the same batch): each run of them is one update of the histogram.
            let v = x.max(1);
            let low = self.hist.lowest_equivalent(v);
            let width = self.hist.equivalent_range(v);
            let run = rest
                .iter()
                .take_while(|&&y| y < DIRECT && y.max(1).wrapping_sub(low) < width)
                .count();
            self.hist.saturating_record_n(v, run as u64);
            for &y in &rest[..run] {
                self.sum_ms += y as f64 / 1e6;
            }
            rest = &rest[run..];
        }
    }
}

impl Default for Samples {
    fn default() -> Self {
        Samples::Exact(Vec::new())
    }
}

impl Samples {
    /// An empty streaming collector.
    pub fn streaming() -> Self {
        // 1 us resolution floor, up to 10^13 ns (2.8 h): fixed memory, no resizing.
        let hist = hdrhistogram::Histogram::new_with_bounds(1_000, 10_000_000_000_000, 3)
            .expect("invariant: valid histogram bounds");
        Samples::Streaming(Box::new(Streaming { hist, sum_ms: 0.0 }))
    }

    /// Record one latency, milliseconds.
    pub fn push(&mut self, ms: f64) {
        match self {
            Samples::Exact(v) => v.push(ms),
            Samples::Streaming(s) => s.record_ms(ms),
        }
    }

    /// Record latencies of `ns` nanoseconds each, in order: the same as [`Self::push`] of
    /// each in milliseconds (`ns as f64 / 1e6`), without the round trip through milliseconds
    /// where it is exact.
    pub fn extend_ns(&mut self, ns: &[u64]) {
        match self {
            Samples::Exact(v) => v.extend(ns.iter().map(|&x| x as f64 / 1e6)),
            Samples::Streaming(s) => s.extend_ns(ns),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Samples::Exact(v) => v.len(),
            Samples::Streaming(s) => s.hist.len() as usize,
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nearest-rank quantiles at probabilities `ps` (each in (0, 1]); empty without samples.
    /// Streaming: the highest value the histogram cannot tell apart from the sample at that
    /// rank (within 0.1%).
    pub fn quantiles(&self, ps: &[f64]) -> Vec<f64> {
        if self.is_empty() {
            return Vec::new();
        }
        match self {
            Samples::Exact(v) => {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                ps.iter()
                    .map(|p| {
                        let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
                        v[rank.min(v.len()) - 1]
                    })
                    .collect()
            }
            Samples::Streaming(s) => ps
                .iter()
                .map(|p| s.hist.value_at_quantile(*p) as f64 / 1e6)
                .collect(),
        }
    }

    /// Mean and nearest-rank percentiles.
    pub fn summary(&self) -> LatencySummary {
        if self.is_empty() {
            return LatencySummary::default();
        }
        let q = self.quantiles(&[0.5, 0.9, 0.95, 0.99]);
        let (count, mean) = match self {
            Samples::Exact(v) => (v.len() as u64, v.iter().sum::<f64>() / v.len() as f64),
            Samples::Streaming(s) => (s.hist.len(), s.sum_ms / s.hist.len() as f64),
        };
        LatencySummary {
            count,
            mean,
            p50: q[0],
            p90: q[1],
            p95: q[2],
            p99: q[3],
        }
    }
}

/// Summary of one stage's latency, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Latency summaries of all stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageLatencies {
    /// First audio sent -> final transcript.
    pub asr: LatencySummary,
    /// Queued at the LLM -> first admitted into its batch (waiting for a slot or KV blocks).
    pub llm_queue: LatencySummary,
    /// Final transcript -> first LLM token.
    pub llm_ttft: LatencySummary,
    /// Time per output token after the first: (last - first token) / (tokens - 1), per
    /// request with at least two tokens.
    pub llm_tpot: LatencySummary,
    /// Inter-token latency: every gap between consecutive tokens of a request.
    pub llm_itl: LatencySummary,
    /// Final transcript -> last LLM token.
    pub llm_total: LatencySummary,
    /// Per sentence: handed to TTS -> its audio ready (queueing + synthesis).
    pub tts: LatencySummary,
    /// Final transcript -> first audio ready.
    pub e2e: LatencySummary,
    /// First audio sent -> last audio ready (end of turn).
    pub request: LatencySummary,
}

impl StageLatencies {
    /// The summary of `stage` (one of [`STAGES`]).
    pub fn get(&self, stage: &str) -> &LatencySummary {
        stage_field!(self, stage)
    }
}

/// Raw latency samples per stage.
#[derive(Clone, Debug, Default)]
pub struct StageSamples {
    /// See [`StageLatencies`].
    pub asr: Samples,
    /// See [`StageLatencies`].
    pub llm_queue: Samples,
    /// See [`StageLatencies`].
    pub llm_ttft: Samples,
    /// See [`StageLatencies`].
    pub llm_tpot: Samples,
    /// See [`StageLatencies`].
    pub llm_itl: Samples,
    /// See [`StageLatencies`].
    pub llm_total: Samples,
    /// See [`StageLatencies`].
    pub tts: Samples,
    /// See [`StageLatencies`].
    pub e2e: Samples,
    /// See [`StageLatencies`].
    pub request: Samples,
}

impl StageSamples {
    /// Empty collectors, streaming (bounded memory) or exact.
    pub fn new(streaming: bool) -> Self {
        if !streaming {
            return StageSamples::default();
        }
        let s = Samples::streaming;
        StageSamples {
            asr: s(),
            llm_queue: s(),
            llm_ttft: s(),
            llm_tpot: s(),
            llm_itl: s(),
            llm_total: s(),
            tts: s(),
            e2e: s(),
            request: s(),
        }
    }

    /// The samples of `stage` (one of [`STAGES`]).
    pub fn get(&self, stage: &str) -> &Samples {
        stage_field!(self, stage)
    }

    /// Summaries of every stage.
    pub fn summary(&self) -> StageLatencies {
        StageLatencies {
            asr: self.asr.summary(),
            llm_queue: self.llm_queue.summary(),
            llm_ttft: self.llm_ttft.summary(),
            llm_tpot: self.llm_tpot.summary(),
            llm_itl: self.llm_itl.summary(),
            llm_total: self.llm_total.summary(),
            tts: self.tts.summary(),
            e2e: self.e2e.summary(),
            request: self.request.summary(),
        }
    }
}

/// Use of one partition (a whole GPU or a MIG instance) over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionUsage {
    /// GPU id.
    pub gpu: String,
    /// Node of the GPU.
    pub node: String,
    /// Partition label (`whole GPU` or the MIG profile).
    pub partition: String,
    /// SMs of the partition.
    pub sms: u32,
    /// Models running there.
    pub models: Vec<String>,
    /// Fraction of wall time the partition ran kernels.
    pub busy_fraction: f64,
    /// Fraction of wall time lost to context switches.
    pub switching_fraction: f64,
    /// Memory the replicas hold from start-up, GB.
    pub memory_used_gb: f64,
    /// Most memory held at once, on-demand KV caches included, GB.
    pub memory_peak_gb: f64,
    /// Memory of the partition, GB.
    pub memory_total_gb: f64,
}

/// What one replica did over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaUsage {
    /// Model.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// Partition label.
    pub partition: String,
    /// Requests the router sent here.
    pub routed: u64,
    /// Batches (ASR, TTS) or iterations (LLM) run.
    pub batches: u64,
    /// Mean items per batch (chunks, sentences) or sequences per iteration.
    pub mean_batch: f64,
    /// KV cache (LLMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvReport>,
}

/// An LLM replica's KV cache over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvReport {
    /// Tokens the cache holds (`null` for an on-demand cache, bounded only by free memory).
    pub capacity_tokens: Option<u64>,
    /// Time-weighted mean of blocks in use / capacity (`null` for on-demand).
    pub mean_occupancy: Option<f64>,
    /// Most blocks in use at once / capacity (`null` for on-demand).
    pub peak_occupancy: Option<f64>,
    /// Most KV memory held at once, GB.
    pub peak_gb: f64,
    /// Sequences preempted (and later recomputed) because the cache was full.
    pub preemptions: u64,
}

/// What faults did to a run (only reported when the experiment has `[faults]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultReport {
    /// Requests failed because their replica went down and no retry was left or possible.
    pub lost_to_faults: u64,
    /// Retries the gateway made.
    pub retried: u64,
    /// Requests refused because every replica of a stage they reached was down.
    pub unavailable: u64,
    /// Mean time from a fault until every replica it took down was back, seconds (over the
    /// faults that recovered within the run; `null` if none did).
    pub mean_time_to_recover_s: Option<f64>,
    /// Per model: the fraction of the run it could serve.
    pub availability: Vec<ModelAvailability>,
    /// Every fault, in order.
    pub events: Vec<FaultRecord>,
}

/// How available one model was.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelAvailability {
    /// Model.
    pub model: String,
    /// Fraction of the run with at least one replica up.
    pub any_replica_up: f64,
    /// Mean over its replicas of the fraction of the run each was up.
    pub replicas_up: f64,
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultRecord {
    /// When, seconds.
    pub at_s: f64,
    /// Kind (`app-crash`, ...).
    pub kind: String,
    /// What it struck: `model#replica` or a GPU id.
    pub target: String,
    /// Replicas it took down, as `model@gpu`.
    pub replicas_down: Vec<String>,
    /// When the last of them was back, seconds (`null` if still down at the end).
    pub recovered_at_s: Option<f64>,
    /// Requests it failed.
    pub failed: u64,
    /// Requests retried elsewhere.
    pub retried: u64,
}

/// Total length of the times covered by every one of the interval lists (each sorted and
/// non-overlapping, `[from, to)`): e.g. the time all replicas of a model were down at once.
pub fn all_covered_ns(lists: &[Vec<(u64, u64)>]) -> u64 {
    let Some((first, rest)) = lists.split_first() else {
        return 0;
    };
    let mut acc = first.clone();
    for l in rest {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < acc.len() && j < l.len() {
            let lo = acc[i].0.max(l[j].0);
            let hi = acc[i].1.min(l[j].1);
            if lo < hi {
                out.push((lo, hi));
            }
            if acc[i].1 < l[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        acc = out;
    }
    acc.iter().map(|(a, b)| b - a).sum()
}

/// Request accounting: every request started ends in exactly one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests started.
    pub started: u64,
    /// Finished within the timeout.
    pub completed: u64,
    /// Failed: timed out, out of memory, or refused.
    pub failed: u64,
    /// Of the failed: an on-demand KV allocation found the partition's memory full.
    pub out_of_memory: u64,
    /// Of the failed: longer than the LLM replica's whole KV cache (refused on arrival).
    pub rejected: u64,
    /// Of the failed: their replica went down (fault) and no retry was left or possible.
    pub lost_to_faults: u64,
    /// Retries the gateway made after faults (a request may be retried more than once).
    pub retried: u64,
    /// Of the failed: refused on arrival at a stage whose replicas were all down.
    pub unavailable: u64,
    /// Cancelled because their user left (not recorded in latencies or throughput).
    pub cancelled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_all_replicas_are_down_is_the_intersection() {
        let a = vec![(0, 10), (20, 30)];
        let b = vec![(5, 25)];
        assert_eq!(all_covered_ns(&[a.clone(), b.clone()]), 5 + 5);
        assert_eq!(all_covered_ns(&[a]), 20);
        assert_eq!(all_covered_ns(&[b, vec![]]), 0);
        assert_eq!(all_covered_ns(&[]), 0);
    }

    #[test]
    fn streaming_percentiles_stay_within_a_thousandth_of_the_exact_ones() {
        let mut exact = Samples::default();
        let mut hist = Samples::streaming();
        // A skewed spread from 0.1 ms to ~20 s.
        for i in 1..=20_000u32 {
            let ms = 0.1 * 1.0005f64.powi(i as i32);
            exact.push(ms);
            hist.push(ms);
        }
        let (e, h) = (exact.summary(), hist.summary());
        assert_eq!(e.count, h.count);
        assert!((e.mean - h.mean).abs() < 1e-9 * e.mean);
        for (a, b) in [
            (e.p50, h.p50),
            (e.p90, h.p90),
            (e.p95, h.p95),
            (e.p99, h.p99),
        ] {
            assert!((b / a - 1.0).abs() < 1e-3, "{a} vs {b}");
        }
    }

    /// Runs of token gaps that end exactly at a bucket's edge, from either side.
    #[test]
    fn runs_of_nanoseconds_stop_at_bucket_edges() {
        let Samples::Streaming(probe) = Samples::streaming() else {
            panic!("streaming samples");
        };
        for v in [
            1u64,
            999,
            1_000,
            4_095,
            1 << 20,
            11_968_511,
            1 << 40,
            (1 << 50) - 5,
        ] {
            let low = probe.hist.lowest_equivalent(v);
            let next = low + probe.hist.equivalent_range(v);
            let ns = [
                low,
                next - 1,
                next,
                next + 1,
                low,
                low.saturating_sub(1),
                next,
            ];
            let (mut by_ms, mut by_ns) = (Samples::streaming(), Samples::streaming());
            for &x in &ns {
                by_ms.push(x as f64 / 1e6);
            }
            by_ns.extend_ns(&ns);
            let (Samples::Streaming(a), Samples::Streaming(b)) = (&by_ms, &by_ns) else {
                panic!("streaming samples");
            };
            assert!(a.hist == b.hist, "{v}");
            assert_eq!(a.sum_ms.to_bits(), b.sum_ms.to_bits(), "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn recording_nanoseconds_is_recording_their_milliseconds(
            ns in proptest::collection::vec(
                // Clustered values too, as token gaps are: runs within one bucket of the
                // histogram (8,192 ns wide there), and runs that cross into the next.
                proptest::prop_oneof![
                    0u64..1 << 20,
                    0u64..1 << 45,
                    (1u64 << 49)..1 << 53,
                    11_960_000u64..11_990_000,
                    0u64..3,
                ],
                1..200,
            ),
        ) {
            let (mut by_ms, mut by_ns) = (Samples::streaming(), Samples::streaming());
            let (mut exact_ms, mut exact_ns) = (Samples::default(), Samples::default());
            let half = ns.len() / 2;
            for &x in &ns {
                by_ms.push(x as f64 / 1e6);
                exact_ms.push(x as f64 / 1e6);
            }
            for &x in &ns[..half] {
                by_ns.extend_ns(&[x]);
                exact_ns.extend_ns(&[x]);
            }
            by_ns.extend_ns(&ns[half..]);
            exact_ns.extend_ns(&ns[half..]);
            let (Samples::Streaming(a), Samples::Streaming(b)) = (&by_ms, &by_ns) else {
                panic!("streaming samples");
            };
            proptest::prop_assert!(a.hist == b.hist);
            proptest::prop_assert_eq!(a.sum_ms.to_bits(), b.sum_ms.to_bits());
            let ps = [0.001, 0.1, 0.5, 0.9, 0.99, 1.0];
            proptest::prop_assert_eq!(by_ms.quantiles(&ps), by_ns.quantiles(&ps));
            let (Samples::Exact(a), Samples::Exact(b)) = (&exact_ms, &exact_ns) else {
                panic!("exact samples");
            };
            proptest::prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for x in 1..=100 {
            s.push(f64::from(x));
        }
        let m = s.summary();
        assert_eq!((m.p50, m.p90, m.p95, m.p99), (50.0, 90.0, 95.0, 99.0));
        assert_eq!(m.mean, 50.5);
        assert_eq!(m.count, 100);
        assert_eq!(s.quantiles(&[0.01, 0.5, 0.999]), vec![1.0, 50.0, 100.0]);
        assert!(Samples::default().quantiles(&[0.5]).is_empty());
    }
}
