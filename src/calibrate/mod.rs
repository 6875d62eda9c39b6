//! Calibration from measurements, read-only: what a node has ([`cluster`]: its inventory as a
//! cluster file), request logs of a real service ([`requests`]), what a recording measured
//! on the model's device ([`measured`]), fitting a model profile to them ([`fit`], through
//! [`predict`] and [`lsq`]), and checking the fitted profile against the log it did not see
//! fitted, by replaying the log's arrivals through the simulator ([`validate`]).
//! [`synth`] makes synthetic logs and recordings from the simulator for tests and examples.
//! [`commands`] holds the `inventory` and `calibrate` commands.
//!
//! NVML itself is behind [`crate::nvml`]; everything here also works from recorded files, so
//! no command but the live ones needs a GPU or a driver.

pub mod cluster;
pub mod commands;
pub mod fit;
pub mod lsq;
pub mod measured;
pub mod predict;
pub mod requests;
pub mod synth;
pub mod validate;

use crate::error::InputError;

/// Why a calibration command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A file is unreadable or wrong (names the file, line and field).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The options do not fit together or do not fit the files.
    #[error("{0}")]
    Usage(String),
    /// The data cannot support what was asked (too few observations, no variation).
    #[error("{0}")]
    Data(String),
}
