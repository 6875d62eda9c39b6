//! Serving engines, as inference servers run models on a partition:
//!
//! - [`llm`]: vLLM-style iteration-level (continuous) batching with a paged KV cache,
//!   chunked prefill, admission control and preemption by recompute;
//! - [`batcher`]: Triton/NIM-style dynamic batching for request-level models (ASR, TTS);
//! - [`routing`]: how a gateway picks one of a model's replicas.

pub mod batcher;
pub mod llm;
pub mod routing;

pub use batcher::{BatchConfig, Batcher};
pub use llm::{KvPolicy, LlmConfig, LlmEngine, StepPlan};
pub use routing::{Router, RoutingPolicy};
