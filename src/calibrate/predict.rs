//! What a profile predicts for one call running alone on a partition, computed with the
//! simulator's own pieces (`profile::exec_time`, `pipeline::tts_batch_time`, the LLM engine's
//! scheduler), so that a fit is exact where the simulator is: a log the simulator wrote is
//! fitted back to the profile that wrote it.

use crate::hardware::Partition;
use crate::profile::{AsrProfile, Breakdown, LlmProfile, ModelProfile, TtsProfile, exec_time};
use crate::serving::{KvPolicy, LlmConfig, LlmEngine};

/// One ASR batch of `n` chunks.
pub fn asr_batch(a: &AsrProfile, m: &ModelProfile, part: &Partition, n: u32) -> Breakdown {
    exec_time(&a.chunk.work(n.max(1)), part, &m.efficiency)
}

/// One TTS batch of sentences with `tokens` text tokens each.
pub fn tts_batch(t: &TtsProfile, m: &ModelProfile, part: &Partition, tokens: &[u32]) -> Breakdown {
    crate::pipeline::tts_batch_time(t, &m.efficiency, part, tokens)
}

/// One LLM request alone on its replica: when its first token and its last token come, ns
/// after it reached the engine (the engine's step overhead, then iterations as the
/// simulator runs them: chunked prefill within `max_batched_tokens`, then one decode
/// iteration per token).
pub fn llm_alone(
    l: &LlmProfile,
    m: &ModelProfile,
    part: &Partition,
    max_batched_tokens: u32,
    prompt: u32,
    output: u32,
) -> (u64, u64) {
    let d = llm_alone_detail(l, m, part, max_batched_tokens, prompt, output);
    (d.first_token_ns, d.last_token_ns)
}

/// [`llm_alone`] with the time its kernels kept the GPU busy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlmAlone {
    /// First token, ns after arrival.
    pub first_token_ns: u64,
    /// Last token, ns after arrival.
    pub last_token_ns: u64,
    /// Kernel time (`max(compute, memory)` of each iteration, no launch overhead), ns.
    pub kernel_ns: f64,
}

/// See [`llm_alone`].
pub fn llm_alone_detail(
    l: &LlmProfile,
    m: &ModelProfile,
    part: &Partition,
    max_batched_tokens: u32,
    prompt: u32,
    output: u32,
) -> LlmAlone {
    let mut engine = LlmEngine::new(LlmConfig {
        max_num_seqs: 1,
        max_batched_tokens,
        block_tokens: 16,
        kv: KvPolicy::Preallocated {
            blocks: u64::MAX / 4,
        },
    });
    let overhead_ns = crate::engine::SimTime::from_micros_f64(l.step_overhead_us).0;
    engine.enqueue(0, 0, prompt.max(1), output.max(1));
    let (mut now, mut first, mut last, mut kernel) = (0u64, None, 0u64, 0.0);
    while engine.has_work() {
        now += overhead_ns;
        let Some(plan) = engine.plan(now, |_| true, 0) else {
            break;
        };
        let work = l.step_work(plan.prefill_tokens, plan.decode_seqs, plan.context_tokens);
        let b = exec_time(&work, part, &m.efficiency);
        kernel += b.total_ns - b.launch_ns;
        now += b.ns();
        for (_, generated) in engine.finish_step(now) {
            if generated == 1 {
                first = Some(now);
            }
            last = now;
        }
    }
    LlmAlone {
        first_token_ns: first.unwrap_or(last),
        last_token_ns: last,
        kernel_ns: kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Catalogue;
    use crate::profile::ModelKind;

    #[test]
    fn llm_alone_is_overhead_plus_roofline_per_iteration() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/nemotron-nano-vl-8b.toml"
        ))
        .unwrap();
        let m = ModelProfile::from_toml_str(&text, std::path::Path::new("m.toml")).unwrap();
        let ModelKind::Llm(l) = &m.kind else { panic!() };
        let part = Catalogue::builtin()
            .gpu("a100-80gb")
            .unwrap()
            .full_partition();
        let (first, last) = llm_alone(l, &m, &part, 8192, 250, 3);
        let step =
            |p: u64, d: u64, c: u64| exec_time(&l.step_work(p, d, c), &part, &m.efficiency).ns();
        let o = 500_000;
        assert_eq!(first, o + step(250, 0, 0));
        // Decode of token 2 attends over 250 + 1 tokens, token 3 over 252.
        assert_eq!(last, first + 2 * o + step(0, 1, 251) + step(0, 1, 252));
    }
}
