//! Calibration from measurements: what a node has ([`cluster`]: inventory to cluster file),
//! and the commands behind `gpushare inventory` and `gpushare calibrate` ([`commands`]).
//!
//! NVML itself is behind [`crate::nvml`]; everything here also works from recorded files, so
//! no command but the live ones needs a GPU or a driver.

pub mod cluster;
pub mod commands;
pub mod lsq;
pub mod predict;
pub mod requests;
