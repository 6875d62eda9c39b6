//! How contexts share a partition: time-slicing (which, with one context, is a dedicated GPU).
pub mod timeslice;
pub use timeslice::{CtxId, TimeSlicer};
