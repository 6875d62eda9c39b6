//! Serving engines. The LLM runs iteration-level (continuous) batching: each iteration
//! prefills newly admitted sequences and generates one token for every running one, so a
//! sequence joins or leaves the batch between iterations, never waiting for a whole batch.

use std::collections::VecDeque;

/// A sequence in the LLM engine.
#[derive(Clone, Copy, Debug)]
struct Seq {
    req: u32,
    prompt: u32,
    target: u32,
    generated: u32,
    prefilled: bool,
}

/// What the next iteration computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPlan {
    /// Prompt tokens of sequences admitted this iteration.
    pub prefill_tokens: u64,
    /// Sequences generating their next token.
    pub decode_seqs: u64,
    /// Context tokens (prompt + generated) those sequences attend over.
    pub context_tokens: u64,
    /// Sequences in the iteration.
    pub seqs: u64,
}

/// One LLM replica's scheduler: FIFO admission up to `max_batch` running sequences.
#[derive(Debug)]
pub struct LlmEngine {
    max_batch: u32,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    awake: bool,
}

impl LlmEngine {
    /// An idle engine batching at most `max_batch` sequences.
    pub fn new(max_batch: u32) -> Self {
        LlmEngine {
            max_batch: max_batch.max(1),
            waiting: VecDeque::new(),
            running: Vec::new(),
            awake: false,
        }
    }

    /// Queue a request; returns true if the engine was asleep and must be woken.
    pub fn enqueue(&mut self, req: u32, prompt: u32, target: u32) -> bool {
        self.waiting.push_back(Seq {
            req,
            prompt,
            target: target.max(1),
            generated: 0,
            prefilled: false,
        });
        let wake = !self.awake;
        self.awake = true;
        wake
    }

    /// Sequences waiting for admission.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences in the batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether any sequence is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Drop sequences whose request is no longer live, admit waiting ones, and describe the
    /// iteration. `None` (and the engine sleeps) when nothing is left to run.
    pub fn plan(&mut self, live: impl Fn(u32) -> bool) -> Option<StepPlan> {
        self.running.retain(|s| live(s.req));
        self.waiting.retain(|s| live(s.req));
        while self.running.len() < self.max_batch as usize {
            let Some(s) = self.waiting.pop_front() else {
                break;
            };
            self.running.push(s);
        }
        if self.running.is_empty() {
            self.awake = false;
            return None;
        }
        let mut plan = StepPlan {
            prefill_tokens: 0,
            decode_seqs: 0,
            context_tokens: 0,
            seqs: self.running.len() as u64,
        };
        for s in &self.running {
            if s.prefilled {
                plan.decode_seqs += 1;
                plan.context_tokens += u64::from(s.prompt) + u64::from(s.generated);
            } else {
                plan.prefill_tokens += u64::from(s.prompt);
            }
        }
        Some(plan)
    }

    /// The iteration finished: every sequence in it has one more token. Returns
    /// `(request, tokens generated so far)` per sequence; finished sequences leave the batch.
    pub fn finish_step(&mut self) -> Vec<(u32, u32)> {
        let mut out = Vec::with_capacity(self.running.len());
        for s in &mut self.running {
            // Prefill samples the first token in the same iteration, as vLLM does.
            s.prefilled = true;
            s.generated += 1;
            out.push((s.req, s.generated));
        }
        self.running.retain(|s| s.generated < s.target);
        if !self.has_work() {
            self.awake = false;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_batch_and_streams_tokens() {
        let mut e = LlmEngine::new(2);
        assert!(e.enqueue(1, 100, 2));
        assert!(!e.enqueue(2, 50, 1));
        assert!(!e.enqueue(3, 10, 1));
        let p = e.plan(|_| true).unwrap();
        assert_eq!((p.prefill_tokens, p.decode_seqs, p.seqs), (150, 0, 2));
        assert_eq!(e.finish_step(), vec![(1, 1), (2, 1)]);
        // Request 2 finished; request 3 joins while 1 decodes.
        let p = e.plan(|_| true).unwrap();
        assert_eq!(
            (p.prefill_tokens, p.decode_seqs, p.context_tokens),
            (10, 1, 101)
        );
        assert_eq!(e.finish_step(), vec![(1, 2), (3, 1)]);
        assert!(!e.has_work());
        assert!(e.plan(|_| true).is_none());
    }

    #[test]
    fn cancelled_sequences_leave_at_the_next_iteration() {
        let mut e = LlmEngine::new(4);
        e.enqueue(1, 10, 5);
        e.enqueue(2, 10, 5);
        e.plan(|_| true).unwrap();
        e.finish_step();
        let p = e.plan(|r| r != 1).unwrap();
        assert_eq!(p.seqs, 1);
        assert_eq!(e.running(), 1);
    }
}
