//! Metrics as the seed harness defines them (see `docs/metrics.md`): per-stage latency
//! percentiles over successful requests, throughput over the whole wall time, success rate,
//! and per-partition busy time and memory.

use serde::Serialize;

/// Latency stages, in report order.
pub const STAGES: [&str; 6] = ["asr", "llm_ttft", "llm_total", "tts", "e2e", "request"];

/// Collected latency samples of one stage, milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Record one latency, milliseconds.
    pub fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank quantiles at probabilities `ps` (each in (0, 1]); empty without samples.
    pub fn quantiles(&self, ps: &[f64]) -> Vec<f64> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        ps.iter()
            .map(|p| {
                let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
                v[rank.min(v.len()) - 1]
            })
            .collect()
    }

    /// Mean and nearest-rank percentiles.
    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            // Nearest rank: the smallest sample with at least p% of samples at or below it.
            let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
            v[rank.min(v.len()) - 1]
        };
        LatencySummary {
            count: v.len() as u64,
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: pct(50.0),
            p90: pct(90.0),
            p95: pct(95.0),
            p99: pct(99.0),
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
    /// Final transcript -> first LLM token.
    pub llm_ttft: LatencySummary,
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
        match stage {
            "asr" => &self.asr,
            "llm_ttft" => &self.llm_ttft,
            "llm_total" => &self.llm_total,
            "tts" => &self.tts,
            "e2e" => &self.e2e,
            "request" => &self.request,
            other => panic!("invariant: unknown stage {other}"),
        }
    }
}

/// Raw latency samples per stage.
#[derive(Clone, Debug, Default)]
pub struct StageSamples {
    /// See [`StageLatencies`].
    pub asr: Samples,
    /// See [`StageLatencies`].
    pub llm_ttft: Samples,
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
    /// The samples of `stage` (one of [`STAGES`]).
    pub fn get(&self, stage: &str) -> &Samples {
        match stage {
            "asr" => &self.asr,
            "llm_ttft" => &self.llm_ttft,
            "llm_total" => &self.llm_total,
            "tts" => &self.tts,
            "e2e" => &self.e2e,
            "request" => &self.request,
            other => panic!("invariant: unknown stage {other}"),
        }
    }

    /// Summaries of every stage.
    pub fn summary(&self) -> StageLatencies {
        StageLatencies {
            asr: self.asr.summary(),
            llm_ttft: self.llm_ttft.summary(),
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
    /// Memory held by the replicas, GB.
    pub memory_used_gb: f64,
    /// Memory of the partition, GB.
    pub memory_total_gb: f64,
}

/// Request accounting: every request started ends in exactly one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests started.
    pub started: u64,
    /// Finished within the timeout.
    pub completed: u64,
    /// Timed out.
    pub failed: u64,
    /// Cancelled because their user left (not recorded in latencies or throughput).
    pub cancelled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
