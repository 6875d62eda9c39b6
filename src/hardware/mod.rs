//! GPU catalogue (data), MIG profiles, placement rules and compute partitions.

pub mod catalogue;
mod check;
pub mod error;
pub mod mig;

pub use catalogue::{Catalogue, Dtype, GpuSpec, MigProfile, Partition, Peaks};
pub use error::HardwareError;
pub use mig::{
    PlacedInstance, format_layout, maximal_layouts, maximal_placements, validate_layout,
};
