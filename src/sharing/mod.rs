//! How contexts share a partition: time-slicing (which, with one context, is a dedicated GPU)
//! and MPS (concurrent kernels of several clients in one context).
pub mod mps;
pub mod timeslice;
pub use mps::MpsShare;
pub use timeslice::{CtxId, TimeSlicer};
