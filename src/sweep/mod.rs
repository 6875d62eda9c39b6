//! Parameter sweeps: a base experiment and overrides (a grid of key paths, named override
//! sets called modes, seeds), run in parallel, shardable across machines, with tidy outputs.
//!
//! - [`keypath`]: key paths into an experiment's TOML and setting values there.
//! - [`plan`]: the sweep file and its expansion into points and runs.
//! - [`runner`]: running a plan (rayon), the per-run store behind `--resume`, outputs.
//! - [`record`]: `sweep.json`, and merging shard outputs.
//! - [`table`]: `runs.csv` and `points.csv` (generic columns).
//! - [`stats`]: mean and 95% confidence interval over seeds; the knee of a curve.
//! - [`shard`]: which runs a machine takes (`--shard I/N`, Kubernetes, Slurm).
//!
//! Overrides are applied to the merged TOML value of the base experiment before it is
//! parsed, so every experiment field (present or future) can be swept without code here.

pub mod keypath;
pub mod plan;
pub mod record;
pub mod runner;
pub mod shard;
pub mod stats;
pub mod table;

pub use plan::Plan;
pub use record::SweepRecord;
pub use runner::{Options, run, write_outputs};
pub use shard::Shard;
