//! User-input errors: every one names the file, the field, what was wrong and what is allowed.
//!
//! Modelled failures (timeouts, cancelled requests) are not errors: they are counted in the
//! metrics. Broken invariants are bugs and panic.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::hardware::HardwareError;

/// A problem with what the user gave us.
#[derive(Debug, Error)]
pub enum InputError {
    /// A file could not be read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What we were doing ("cannot read", "cannot write").
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field has the wrong type or name.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message, with line and column where known.
        message: String,
    },
    /// A field has a value outside what is allowed.
    #[error("{}: field `{field}` = {value}: expected {allowed}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Key path of the field, e.g. `gpus[1].sharing.instances[0]`.
        field: String,
        /// The value found.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A hardware name or MIG layout is not possible.
    #[error("{}: field `{field}`: {source}", path.display())]
    Hardware {
        /// The file.
        path: PathBuf,
        /// Key path of the field.
        field: String,
        /// What the hardware catalogue said.
        source: Box<HardwareError>,
    },
}

impl InputError {
    /// An out-of-range value.
    pub fn invalid(path: &Path, field: &str, value: impl ToString, allowed: &str) -> Self {
        InputError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }

    /// A hardware lookup or layout error at `field`.
    pub fn hardware(path: &Path, field: &str, source: HardwareError) -> Self {
        InputError::Hardware {
            path: path.to_path_buf(),
            field: field.to_string(),
            source: Box::new(source),
        }
    }

    /// A read failure.
    pub fn read(path: &Path, source: std::io::Error) -> Self {
        InputError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            source,
        }
    }

    /// A write failure.
    pub fn write(path: &Path, source: std::io::Error) -> Self {
        InputError::Io {
            path: path.to_path_buf(),
            action: "cannot write",
            source,
        }
    }
}
