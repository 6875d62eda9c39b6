//! gpushare: a discrete-event simulator of GPU clusters whose GPUs are shared between
//! inference models by MIG, time-slicing, or dedicated placement.
//!
//! Reading guide, in dependency order:
//! - [`engine`]: clock, event queue, random streams; knows nothing of GPUs.
//! - [`hardware`]: the GPU catalogue (data), MIG profiles, placement rules, partitions.
//! - [`sharing`]: how contexts share a partition (round-robin time-slicing, in bulk).
//! - [`profile`]: model kernel profiles and [`profile::exec_time`], where work meets hardware;
//!   [`models`]: the built-in profiles and the folders that add to or override them.
//! - [`serving`]: serving engines (LLM continuous batching with a KV cache, dynamic batching,
//!   routing).
//! - [`faults`]: fault kinds, their rates and recovery, and what they take down.
//! - [`workload`]: users, arrivals, answer shapes.
//! - [`pipeline`]: the voice pipeline simulated end to end.
//! - [`metrics`], [`report`]: what a run measured, and its table, JSON and CSV.
//! - [`timeline`], [`results`]: busy time over time, latency quantiles, and the results folder;
//!   [`activity`]: what the GPUs did, as a trace Perfetto and chrome://tracing open.
//! - [`experiment`], [`study`], [`config`], [`error`]: input files and their errors.
//! - [`sweep`]: parameter sweeps (parallel, resumable, shardable) and their tables.
//! - [`plot`]: report charts (PNG, SVG) from a results folder.
//! - [`operator`]: the GPU Operator's files (mig-parted, device plugin, Deployments) in and out.
//! - [`plan`]: capacity planning: the fewest GPUs, and the layout, that meet a load's targets.
//! - [`progress`]: the progress bar of long commands.
//! - [`nvml`], [`calibrate`]: the node read through NVML (live or recorded), recordings, fitted
//!   profiles and measured-vs-simulated validation.
//! - [`cli`]: the sweep, merge, plot, operator and plan commands behind the binary.
#![deny(missing_docs)]

pub mod activity;
pub mod arrivals;
pub mod calibrate;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod faults;
pub mod hardware;
pub mod metrics;
pub mod models;
pub mod nvml;
pub mod operator;
pub mod pipeline;
pub mod plan;
pub mod plot;
pub mod profile;
pub mod progress;
pub mod report;
pub mod results;
pub mod serving;
pub mod sharing;
pub mod study;
pub mod sweep;
pub mod timeline;
pub mod trace;
pub mod workload;
