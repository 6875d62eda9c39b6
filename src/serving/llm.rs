//! One LLM replica's scheduler, as vLLM runs it: iteration-level (continuous) batching over a
//! paged KV cache.
//!
//! Every iteration the scheduler (1) gives each running sequence that is decoding one token,
//! (2) continues prefills in progress, then (3) admits waiting sequences first come first
//! served, all within a token budget (`max_batched_tokens`, chunked prefill) and a sequence
//! limit (`max_num_seqs`). Every token scheduled needs its KV entry in a cache block. When a
//! running sequence needs a block and none is free, the most recently admitted sequence is
//! preempted: its blocks are freed and it goes back to the head of the queue, to be prefilled
//! again (prompt plus the tokens it had generated: recompute). When the cache cannot hold the
//! next waiting sequence's chunk, admission waits.
//!
//! With `KvPolicy::OnDemand` the cache has no reserved capacity: blocks are allocated from the
//! partition's free memory as they are needed, and an allocation that finds no memory is an
//! out-of-memory failure of that sequence (a framework without a block manager), not a wait.

use std::collections::VecDeque;

/// How the KV cache gets its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvPolicy {
    /// A fixed number of blocks reserved at start-up; a full cache makes admission wait and
    /// running sequences preempt one another.
    Preallocated {
        /// Blocks in the cache.
        blocks: u64,
    },
    /// Blocks allocated as needed from the memory the caller says is free; running out is an
    /// out-of-memory failure.
    OnDemand,
}

/// Scheduler limits of one LLM replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LlmConfig {
    /// Most sequences running at once.
    pub max_num_seqs: u32,
    /// Most tokens (prefill + decode) in one iteration.
    pub max_batched_tokens: u32,
    /// Tokens per KV-cache block.
    pub block_tokens: u32,
    /// Where the cache's memory comes from.
    pub kv: KvPolicy,
}

/// A sequence in the engine.
#[derive(Clone, Copy, Debug)]
struct Seq {
    req: u64,
    prompt: u32,
    target: u32,
    /// Tokens generated (and streamed) so far.
    generated: u32,
    /// Tokens whose KV entries are in the cache.
    computed: u32,
    /// Tokens scheduled in the current iteration.
    scheduled: u32,
    /// Blocks held.
    blocks: u64,
    /// When it was queued (ns), and whether it has been admitted once.
    queued_at: u64,
    admitted: bool,
}

impl Seq {
    /// Tokens that must be in the cache before the next token can be sampled: the prompt
    /// and every generated token but the last (whose KV is computed by the next decode).
    fn context(&self) -> u32 {
        self.prompt + self.generated.saturating_sub(1)
    }

    /// Still (re)building its cache: prompt, or prompt plus generated tokens after preemption.
    fn prefilling(&self) -> bool {
        self.computed < self.context()
    }

    /// Tokens left to prefill.
    fn prefill_left(&self) -> u32 {
        self.context() - self.computed
    }

    /// Whether decoding one more token needs a block beyond those held (`bt` tokens each).
    fn next_token_needs_block(&self, bt: u64) -> bool {
        u64::from(self.computed) + 1 > self.blocks * bt
    }

    /// Whether the iteration it is scheduled in samples its next token: a decode step, or
    /// the last chunk of a (re)prefill (vLLM samples the first token in the prefill's own
    /// iteration).
    fn samples(&self) -> bool {
        self.scheduled > 0
            && (!self.prefilling() || self.computed + self.scheduled >= self.context())
    }
}

/// What the next iteration computes, and what the scheduler decided to get there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Prompt (or recompute) tokens prefilled this iteration.
    pub prefill_tokens: u64,
    /// Sequences generating their next token.
    pub decode_seqs: u64,
    /// Context tokens (prompt + generated) the decoding sequences attend over.
    pub context_tokens: u64,
    /// Sequences in the iteration.
    pub seqs: u64,
    /// Requests admitted for the first time, with the time they waited in the queue (ns).
    pub admitted: Vec<(u64, u64)>,
    /// Requests preempted (blocks freed, back to the queue for recompute).
    pub preempted: Vec<u64>,
    /// Requests that failed: their allocation found no memory (on-demand cache).
    pub out_of_memory: Vec<u64>,
}

impl StepPlan {
    /// Empty, keeping the lists' memory.
    fn clear(&mut self) {
        let StepPlan {
            prefill_tokens,
            decode_seqs,
            context_tokens,
            seqs,
            admitted,
            preempted,
            out_of_memory,
        } = self;
        (*prefill_tokens, *decode_seqs, *context_tokens, *seqs) = (0, 0, 0, 0);
        admitted.clear();
        preempted.clear();
        out_of_memory.clear();
    }
}

/// KV-cache usage integrated over time, for the occupancy report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KvUsage {
    /// Sum of blocks held × ns.
    pub block_ns: f64,
    /// Most blocks held at once.
    pub peak_blocks: u64,
    /// Preemptions.
    pub preemptions: u64,
}

/// One LLM replica's scheduler.
#[derive(Debug)]
pub struct LlmEngine {
    cfg: LlmConfig,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    awake: bool,
    used_blocks: u64,
    usage: KvUsage,
    last_change_ns: u64,
}

impl Clone for LlmEngine {
    fn clone(&self) -> Self {
        let mut e = LlmEngine::new(self.cfg);
        e.clone_from(self);
        e
    }

    /// Reuses this engine's buffers (a look-ahead copy is taken often).
    fn clone_from(&mut self, other: &Self) {
        self.cfg = other.cfg;
        self.waiting.clone_from(&other.waiting);
        self.running.clone_from(&other.running);
        self.awake = other.awake;
        self.used_blocks = other.used_blocks;
        self.usage = other.usage;
        self.last_change_ns = other.last_change_ns;
    }
}

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: u64, block_tokens: u32) -> u64 {
    tokens.div_ceil(u64::from(block_tokens))
}

impl LlmEngine {
    /// An idle engine.
    pub fn new(cfg: LlmConfig) -> Self {
        LlmEngine {
            cfg: LlmConfig {
                max_num_seqs: cfg.max_num_seqs.max(1),
                max_batched_tokens: cfg.max_batched_tokens.max(1),
                block_tokens: cfg.block_tokens.max(1),
                kv: cfg.kv,
            },
            waiting: VecDeque::new(),
            running: Vec::new(),
            awake: false,
            used_blocks: 0,
            usage: KvUsage::default(),
            last_change_ns: 0,
        }
    }

    /// The engine's limits.
    pub fn config(&self) -> LlmConfig {
        self.cfg
    }

    /// Whether a request of `prompt` + `target` tokens could ever run alone in a preallocated
    /// cache (vLLM refuses longer requests up front; admitting one would stall the queue).
    pub fn fits(&self, prompt: u32, target: u32) -> bool {
        match self.cfg.kv {
            KvPolicy::Preallocated { blocks } => {
                blocks_for(u64::from(prompt) + u64::from(target), self.cfg.block_tokens) <= blocks
            }
            KvPolicy::OnDemand => true,
        }
    }

    /// Queue a request at `now_ns`; returns true if the engine was asleep and must be woken.
    pub fn enqueue(&mut self, now_ns: u64, req: u64, prompt: u32, target: u32) -> bool {
        self.waiting.push_back(Seq {
            req,
            prompt: prompt.max(1),
            target: target.max(1),
            generated: 0,
            computed: 0,
            scheduled: 0,
            blocks: 0,
            queued_at: now_ns,
            admitted: false,
        });
        let wake = !self.awake;
        self.awake = true;
        wake
    }

    /// Sequences waiting for admission.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences admitted and not finished.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether any sequence is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// KV blocks held now.
    pub fn used_blocks(&self) -> u64 {
        self.used_blocks
    }

    /// KV usage integrated up to `now_ns`.
    pub fn usage(&mut self, now_ns: u64) -> KvUsage {
        self.account(now_ns);
        self.usage
    }

    fn account(&mut self, now_ns: u64) {
        let dt = now_ns.saturating_sub(self.last_change_ns);
        self.usage.block_ns += self.used_blocks as f64 * dt as f64;
        self.last_change_ns = self.last_change_ns.max(now_ns);
    }

    fn set_blocks(&mut self, seq_blocks: &mut u64, to: u64) {
        self.used_blocks = self.used_blocks - *seq_blocks + to;
        *seq_blocks = to;
        self.usage.peak_blocks = self.usage.peak_blocks.max(self.used_blocks);
    }

    /// Plan the next iteration at `now_ns`. `live` says which requests still want their
    /// answer (others are dropped and their blocks freed); `free_blocks` is how many blocks
    /// the partition has free beyond this engine's (consulted only by an on-demand cache).
    /// Returns `None`, and the engine sleeps, when nothing is left to run.
    pub fn plan(
        &mut self,
        now_ns: u64,
        live: impl Fn(u64) -> bool,
        free_blocks: u64,
    ) -> Option<StepPlan> {
        let mut plan = StepPlan::default();
        self.plan_into(now_ns, live, free_blocks, &mut plan)
            .then_some(plan)
    }

    /// [`Self::plan`] into `plan` (a buffer the caller reuses: its lists keep their memory);
    /// false where `plan` would return `None`.
    pub fn plan_into(
        &mut self,
        now_ns: u64,
        live: impl Fn(u64) -> bool,
        free_blocks: u64,
        plan: &mut StepPlan,
    ) -> bool {
        self.account(now_ns);
        plan.clear();
        if self.decode_only(&live, free_blocks, plan) {
            return true;
        }
        self.plan_general(now_ns, live, free_blocks, plan)
    }

    /// Blocks this engine may still take: what its reserved cache has left, or (on demand)
    /// the `free_blocks` its partition has.
    fn available_blocks(&self, free_blocks: u64) -> u64 {
        match self.cfg.kv {
            KvPolicy::Preallocated { blocks } => blocks - self.used_blocks,
            KvPolicy::OnDemand => free_blocks,
        }
    }

    /// The common iteration, planned without the general path's bookkeeping: nothing
    /// waiting, every running sequence alive and decoding, all within the token budget, and
    /// the cache has the blocks they need. Each sequence then decodes one token, exactly as
    /// [`Self::plan_general`] would schedule it. Returns false, having changed nothing, when
    /// the iteration is not of that kind.
    fn decode_only(
        &mut self,
        live: &impl Fn(u64) -> bool,
        free_blocks: u64,
        plan: &mut StepPlan,
    ) -> bool {
        let n = self.running.len();
        if n == 0 || !self.waiting.is_empty() || n > self.cfg.max_batched_tokens as usize {
            return false;
        }
        let bt = u64::from(self.cfg.block_tokens);
        let mut need = 0;
        for s in &self.running {
            if s.prefilling() || !live(s.req) {
                return false;
            }
            debug_assert!(
                s.blocks * bt >= u64::from(s.computed),
                "invariant: blocks hold the cache"
            );
            need += u64::from(s.next_token_needs_block(bt));
        }
        if need > self.available_blocks(free_blocks) {
            return false; // someone is preempted or runs out of memory
        }
        let mut context = 0;
        for s in &mut self.running {
            s.blocks += u64::from(s.next_token_needs_block(bt));
            s.scheduled = 1;
            context += u64::from(s.computed) + 1;
        }
        self.used_blocks += need;
        self.usage.peak_blocks = self.usage.peak_blocks.max(self.used_blocks);
        plan.seqs = n as u64;
        plan.decode_seqs = n as u64;
        plan.context_tokens = context;
        true
    }

    /// [`Self::plan_into`] for any iteration: drops the requests no longer live, schedules
    /// decodes and prefill chunks within the budget, preempts or fails on a full cache, and
    /// admits waiting sequences.
    fn plan_general(
        &mut self,
        now_ns: u64,
        live: impl Fn(u64) -> bool,
        free_blocks: u64,
        plan: &mut StepPlan,
    ) -> bool {
        // One liveness check per sequence (it reads the request, usually a cache miss).
        let used = &mut self.used_blocks;
        let mut keep = |s: &Seq| {
            let alive = live(s.req);
            if !alive {
                *used -= s.blocks;
            }
            alive
        };
        self.running.retain(&mut keep);
        self.waiting.retain(&mut keep);
        let bt = self.cfg.block_tokens;
        let mut avail = self.available_blocks(free_blocks);
        let mut budget = self.cfg.max_batched_tokens;
        for s in &mut self.running {
            s.scheduled = 0;
        }

        // 1 + 2: running sequences, oldest first; a sequence short of a block preempts the
        // newest (possibly itself) until it fits.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = self.running[i];
            let want = if s.prefilling() {
                s.prefill_left().min(budget)
            } else {
                1
            };
            let need = blocks_for(u64::from(s.computed + want), bt).saturating_sub(s.blocks);
            if need > avail {
                if let KvPolicy::OnDemand = self.cfg.kv {
                    let gone = self.running.remove(i);
                    self.used_blocks -= gone.blocks;
                    avail += gone.blocks;
                    plan.out_of_memory.push(gone.req);
                    continue;
                }
                // Preempt the newest running sequence and try again.
                let victim = self.running.pop().expect("invariant: i < len");
                self.used_blocks -= victim.blocks;
                avail += victim.blocks;
                budget += victim.scheduled;
                self.usage.preemptions += 1;
                plan.preempted.push(victim.req);
                self.waiting.push_front(Seq {
                    computed: 0,
                    blocks: 0,
                    scheduled: 0,
                    ..victim
                });
                continue; // re-examine index i (it may have been the victim)
            }
            avail -= need;
            let mut blocks = s.blocks;
            self.set_blocks(&mut blocks, s.blocks + need);
            let s = &mut self.running[i];
            s.blocks = blocks;
            s.scheduled = want;
            budget -= want;
            i += 1;
        }

        // 3: admit waiting sequences, first come first served; stop at the first that does
        // not fit (admission waits for blocks to free up). Not in an iteration that had to
        // preempt: the victim would be readmitted only to be preempted again (as vLLM).
        while plan.preempted.is_empty()
            && budget > 0
            && self.running.len() < self.cfg.max_num_seqs as usize
        {
            let Some(s) = self.waiting.front().copied() else {
                break;
            };
            let want = s.prefill_left().min(budget);
            let need = blocks_for(u64::from(want), bt);
            if need > avail {
                if let KvPolicy::OnDemand = self.cfg.kv {
                    self.waiting.pop_front();
                    plan.out_of_memory.push(s.req);
                    continue;
                }
                break;
            }
            self.waiting.pop_front();
            avail -= need;
            let mut blocks = 0;
            self.set_blocks(&mut blocks, need);
            if !s.admitted {
                plan.admitted
                    .push((s.req, now_ns.saturating_sub(s.queued_at)));
            }
            self.running.push(Seq {
                blocks,
                scheduled: want,
                admitted: true,
                ..s
            });
            budget -= want;
        }

        for s in &self.running {
            if s.scheduled == 0 {
                continue;
            }
            plan.seqs += 1;
            if s.prefilling() {
                plan.prefill_tokens += u64::from(s.scheduled);
            } else {
                plan.decode_seqs += 1;
                // The new token attends over the whole context, itself included.
                plan.context_tokens += u64::from(s.computed + s.scheduled);
            }
        }
        if plan.seqs == 0 {
            // Nothing to run. With failures to report the caller gets an empty iteration
            // (and wakes the engine again if work is left); otherwise the engine sleeps.
            self.awake = self.has_work() && !plan.out_of_memory.is_empty();
            if !self.awake && plan.out_of_memory.is_empty() {
                return false;
            }
        }
        true
    }

    /// The iteration finished at `now_ns`. Every scheduled token's KV is now computed; each
    /// sequence whose cache is complete samples one token. Returns `(request, tokens
    /// generated so far)` per sampled token; finished sequences leave and free their blocks.
    pub fn finish_step(&mut self, now_ns: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::with_capacity(self.running.len());
        self.finish_step_into(now_ns, &mut out);
        out
    }

    /// The tokens the planned iteration samples when it finishes, as
    /// [`Self::finish_step_into`] will append them, without finishing it.
    pub fn sampled_into(&self, out: &mut Vec<(u64, u32)>) {
        out.extend(
            self.running
                .iter()
                .filter(|s| s.samples())
                .map(|s| (s.req, s.generated + 1)),
        );
    }

    /// [`Self::finish_step`], appending to `out` (a buffer the caller reuses).
    pub fn finish_step_into(&mut self, now_ns: u64, out: &mut Vec<(u64, u32)>) {
        self.finish(now_ns, |req, generated| out.push((req, generated)));
    }

    /// [`Self::finish_step_into`] when its tokens were already taken with
    /// [`Self::sampled_into`] (they would be the same).
    pub fn finish_sampled_step(&mut self, now_ns: u64) {
        self.finish(now_ns, |_, _| {});
    }

    fn finish(&mut self, now_ns: u64, mut emit: impl FnMut(u64, u32)) {
        self.account(now_ns);
        let mut any_done = false;
        for s in &mut self.running {
            if s.scheduled > 0 {
                let samples = s.samples();
                s.computed += s.scheduled;
                s.scheduled = 0;
                if samples {
                    s.generated += 1;
                    emit(s.req, s.generated);
                }
            }
            any_done |= s.generated >= s.target;
        }
        if any_done {
            let mut freed = 0;
            self.running.retain(|s| {
                let done = s.generated >= s.target;
                if done {
                    freed += s.blocks;
                }
                !done
            });
            self.used_blocks -= freed;
        }
        if !self.has_work() {
            self.awake = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seqs: u32, tokens: u32, blocks: u64) -> LlmConfig {
        LlmConfig {
            max_num_seqs: seqs,
            max_batched_tokens: tokens,
            block_tokens: 16,
            kv: KvPolicy::Preallocated { blocks },
        }
    }

    #[test]
    fn admits_up_to_max_batch_and_streams_tokens() {
        let mut e = LlmEngine::new(cfg(2, 8192, 1000));
        assert!(e.enqueue(0, 1, 100, 2));
        assert!(!e.enqueue(0, 2, 50, 1));
        assert!(!e.enqueue(0, 3, 10, 1));
        let p = e.plan(0, |_| true, 0).unwrap();
        assert_eq!((p.prefill_tokens, p.decode_seqs, p.seqs), (150, 0, 2));
        assert_eq!(p.admitted, vec![(1, 0), (2, 0)]);
        assert_eq!(e.finish_step(10), vec![(1, 1), (2, 1)]);
        // Request 2 finished; request 3 joins while 1 decodes.
        let p = e.plan(20, |_| true, 0).unwrap();
        assert_eq!(
            (p.prefill_tokens, p.decode_seqs, p.context_tokens),
            (10, 1, 101)
        );
        assert_eq!(p.admitted, vec![(3, 20)]);
        assert_eq!(e.finish_step(30), vec![(1, 2), (3, 1)]);
        assert!(!e.has_work());
        assert_eq!(e.used_blocks(), 0);
        assert!(e.plan(40, |_| true, 0).is_none());
    }

    #[test]
    fn cancelled_sequences_leave_at_the_next_iteration_and_free_their_blocks() {
        let mut e = LlmEngine::new(cfg(4, 8192, 100));
        e.enqueue(0, 1, 10, 5);
        e.enqueue(0, 2, 40, 5);
        e.plan(0, |_| true, 0).unwrap();
        assert_eq!(e.used_blocks(), 1 + 3);
        e.finish_step(1);
        let p = e.plan(2, |r| r != 1, 0).unwrap();
        assert_eq!(p.seqs, 1);
        assert_eq!(e.running(), 1);
        assert_eq!(e.used_blocks(), 3);
    }

    #[test]
    fn long_prompts_prefill_in_chunks_within_the_token_budget() {
        let mut e = LlmEngine::new(cfg(4, 512, 1000));
        e.enqueue(0, 1, 1200, 2);
        let p = e.plan(0, |_| true, 0).unwrap();
        assert_eq!(p.prefill_tokens, 512);
        assert!(
            e.finish_step(1).is_empty(),
            "no token before the prompt is in"
        );
        assert_eq!(e.plan(2, |_| true, 0).unwrap().prefill_tokens, 512);
        assert!(e.finish_step(3).is_empty());
        let p = e.plan(4, |_| true, 0).unwrap();
        assert_eq!(p.prefill_tokens, 176);
        assert_eq!(e.finish_step(5), vec![(1, 1)]);
        let p = e.plan(6, |_| true, 0).unwrap();
        assert_eq!((p.decode_seqs, p.context_tokens), (1, 1201));
        assert_eq!(e.finish_step(7), vec![(1, 2)]);
    }

    #[test]
    fn a_full_cache_makes_admission_wait() {
        // 10 blocks of 16 tokens: a 100-token prompt takes 7, the next one must wait.
        let mut e = LlmEngine::new(cfg(8, 8192, 10));
        e.enqueue(0, 1, 100, 3);
        e.enqueue(0, 2, 100, 3);
        let p = e.plan(0, |_| true, 0).unwrap();
        assert_eq!(p.admitted.len(), 1);
        assert_eq!(e.waiting(), 1);
        for t in 1..=3 {
            e.finish_step(t * 10);
            if e.has_work() {
                e.plan(t * 10 + 1, |_| true, 0).unwrap();
            }
        }
        // Request 1 finished after 3 tokens; 2 got in when its blocks freed.
        assert_eq!(e.waiting(), 0);
        assert_eq!(e.running(), 1);
    }

    #[test]
    fn growth_past_a_full_cache_preempts_the_newest_and_resumes_it_by_recompute() {
        // 4 blocks = 64 tokens; two sequences of 30-token prompts, 20 tokens each.
        let mut e = LlmEngine::new(cfg(8, 8192, 4));
        e.enqueue(0, 1, 30, 20);
        e.enqueue(0, 2, 30, 20);
        let mut t = 0;
        let mut tokens = [0u32; 3];
        let mut preempted = Vec::new();
        while e.has_work() {
            let p = e.plan(t, |_| true, 0).unwrap();
            assert!(e.used_blocks() <= 4);
            preempted.extend(p.preempted);
            t += 1;
            for (r, g) in e.finish_step(t) {
                assert_eq!(g, tokens[r as usize] + 1, "tokens stream in order");
                tokens[r as usize] = g;
            }
            t += 1;
        }
        assert_eq!(preempted, vec![2]);
        assert_eq!(tokens[1..], [20, 20]);
        assert_eq!(e.used_blocks(), 0);
        assert_eq!(e.usage(t).preemptions, 1);
    }

    #[test]
    fn requests_longer_than_the_cache_do_not_fit() {
        let e = LlmEngine::new(cfg(8, 8192, 4));
        assert!(e.fits(40, 24));
        assert!(!e.fits(40, 25));
    }

    #[test]
    fn on_demand_cache_fails_allocations_beyond_free_memory() {
        let mut e = LlmEngine::new(LlmConfig {
            kv: KvPolicy::OnDemand,
            ..cfg(8, 8192, 0)
        });
        e.enqueue(0, 1, 30, 5);
        e.enqueue(0, 2, 30, 5);
        // Memory for 3 blocks: the first takes 2, the second finds only 1.
        let p = e.plan(0, |_| true, 3).unwrap();
        assert_eq!(p.out_of_memory, vec![2]);
        assert_eq!(e.used_blocks(), 2);
    }

    proptest::proptest! {
        /// Random requests against a small cache, with some cancelled midway: blocks in use
        /// never exceed the capacity and always equal what the sequences hold; every request
        /// that is not cancelled streams its tokens in order and finishes, however often it
        /// was preempted and recomputed.
        #[test]
        fn kv_accounting_holds_and_every_admitted_sequence_finishes(
            reqs in proptest::collection::vec((1u32..120, 1u32..60, 0u64..40, proptest::bool::weighted(0.15)), 1..25),
            blocks in 12u64..40,
            seqs in 1u32..8,
            budget in 16u32..256,
        ) {
            let mut e = LlmEngine::new(cfg(seqs, budget, blocks));
            let mut t = 0u64;
            let mut pending: Vec<(u64, u32, u32, u64, bool)> = reqs
                .iter()
                .enumerate()
                .filter(|(_, r)| e.fits(r.0, r.1))
                .map(|(i, r)| (i as u64, r.0, r.1, r.2, r.3))
                .collect();
            pending.sort_by_key(|p| p.3);
            let n = reqs.len();
            let mut tokens = vec![0u32; n];
            let mut cancelled = vec![false; n];
            let mut steps = 0;
            while !pending.is_empty() || e.has_work() {
                while pending.first().is_some_and(|p| p.3 <= t) {
                    let (id, prompt, out, _, _) = pending.remove(0);
                    e.enqueue(t, id, prompt, out);
                }
                // Cancel flagged requests once they have a token.
                for (i, r) in reqs.iter().enumerate() {
                    if r.3 && tokens[i] > 0 {
                        cancelled[i] = true;
                    }
                }
                if let Some(p) = e.plan(t, |r| !cancelled[r as usize], 0) {
                    proptest::prop_assert!(e.used_blocks() <= blocks);
                    let held: u64 = e.running.iter().map(|s| s.blocks).sum();
                    proptest::prop_assert_eq!(held, e.used_blocks());
                    proptest::prop_assert!(p.seqs <= u64::from(seqs));
                    proptest::prop_assert!(p.prefill_tokens + p.decode_seqs <= u64::from(budget));
                    let mut sampled = Vec::new();
                    e.sampled_into(&mut sampled);
                    let finished = e.finish_step(t + 1);
                    // What the plan said it would sample is what finishing it sampled.
                    proptest::prop_assert_eq!(&sampled, &finished);
                    for (r, g) in finished {
                        proptest::prop_assert_eq!(g, tokens[r as usize] + 1);
                        tokens[r as usize] = g;
                    }
                }
                t += 2;
                steps += 1;
                proptest::prop_assert!(steps < 100_000, "no progress");
            }
            proptest::prop_assert_eq!(e.used_blocks(), 0);
            for (i, r) in reqs.iter().enumerate() {
                let fits = blocks_for(u64::from(r.0) + u64::from(r.1), 16) <= blocks;
                if fits && !cancelled[i] {
                    proptest::prop_assert_eq!(tokens[i], r.1, "request {} finished", i);
                }
            }
        }
    }

    proptest::proptest! {
        /// The decode-only shortcut plans exactly as the general path: random requests,
        /// preallocated or on-demand caches (with varying free memory), cancellations; at
        /// every iteration the plan and the whole engine state match a copy planned by the
        /// general path.
        #[test]
        fn decode_only_iterations_plan_as_the_general_path(
            reqs in proptest::collection::vec((1u32..80, 1u32..40, 0u64..60, proptest::bool::weighted(0.1)), 1..20),
            blocks in 8u64..40,
            on_demand in proptest::bool::ANY,
            free in proptest::collection::vec(0u64..12, 1..7),
            seqs in 1u32..8,
            budget in 1u32..96,
        ) {
            let kv = if on_demand { KvPolicy::OnDemand } else { KvPolicy::Preallocated { blocks } };
            let mut e = LlmEngine::new(LlmConfig { kv, ..cfg(seqs, budget, blocks) });
            let mut pending: Vec<_> = reqs.iter().enumerate().filter(|(_, r)| e.fits(r.0, r.1)).collect();
            pending.sort_by_key(|(_, r)| r.2);
            let mut tokens = vec![0u32; reqs.len()];
            let mut t = 0u64;
            for step in 0..400usize {
                while pending.first().is_some_and(|(_, r)| r.2 <= t) {
                    let (id, r) = pending.remove(0);
                    e.enqueue(t, id as u64, r.0, r.1);
                }
                let live = |q: u64| !(reqs[q as usize].3 && tokens[q as usize] > 2);
                let free_now = free[step % free.len()];
                let mut general = e.clone();
                let mut want = StepPlan::default();
                general.account(t);
                let planned_general = general.plan_general(t, live, free_now, &mut want);
                let mut got = StepPlan::default();
                let planned = e.plan_into(t, live, free_now, &mut got);
                proptest::prop_assert_eq!(planned, planned_general);
                proptest::prop_assert_eq!(&got, &want);
                proptest::prop_assert_eq!(format!("{e:?}"), format!("{general:?}"));
                if planned {
                    for (r, g) in e.finish_step(t + 1) {
                        tokens[r as usize] = g;
                    }
                }
                t += 2;
            }
        }
    }

    #[test]
    fn decoding_sequences_take_the_shortcut_until_the_cache_is_short() {
        // 2 blocks of 16 tokens: a 15-token prompt decodes within them up to 32 tokens.
        let mut e = LlmEngine::new(cfg(4, 64, 2));
        e.enqueue(0, 1, 15, 40);
        let p = e.plan(0, |_| true, 0).unwrap();
        assert_eq!(
            p.prefill_tokens, 15,
            "a prefill is not a decode-only iteration"
        );
        e.finish_step(1);
        let mut plan = StepPlan::default();
        assert!(e.clone().decode_only(&|_| true, 0, &mut plan));
        assert_eq!((plan.decode_seqs, plan.context_tokens), (1, 16));
        assert!(
            !e.clone().decode_only(&|_| false, 0, &mut plan),
            "a dropped request"
        );
        for t in 2..19 {
            e.plan(t * 2, |_| true, 0).unwrap();
            e.finish_step(t * 2 + 1);
        }
        assert_eq!(e.used_blocks(), 2);
        assert!(
            !e.clone().decode_only(&|_| true, 0, &mut plan),
            "the next token needs a third block: the general path preempts"
        );
    }

    #[test]
    fn occupancy_integrates_blocks_over_time() {
        let mut e = LlmEngine::new(cfg(8, 8192, 100));
        e.enqueue(0, 1, 32, 1);
        e.plan(100, |_| true, 0).unwrap(); // 2 blocks from t=100
        e.finish_step(300); // done at 300: freed
        let u = e.usage(1000);
        assert_eq!(u.block_ns, 2.0 * 200.0);
        assert_eq!(u.peak_blocks, 2);
    }
}
