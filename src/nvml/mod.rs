//! NVML behind a small trait, [`Nvml`], so that the inventory and the recorder run the same code
//! against the live driver ([`LiveNvml`], through `nvml-wrapper`) and against a node replayed
//! from a recording ([`RecordedNvml`]), which is how they are tested without a GPU.
//!
//! Every method is a read: nothing here changes MIG mode, clocks, compute policy or anything
//! else on a GPU. A call that NVML cannot answer (not supported on this device, no permission)
//! returns a [`CallError`] whose message the recorder writes down as the reason the value is
//! absent; it is never turned into a zero.
//!
//! **Boundary:** only [`live`] names `nvml-wrapper`; the library's other modules see the trait.

use std::fmt;

pub mod inventory;
pub mod live;
pub mod recorded;
pub mod recording;
pub mod sampler;

pub use live::LiveNvml;
pub use recorded::RecordedNvml;

/// Environment variable naming the NVML library to load instead of `libnvidia-ml.so.1`.
pub const LIB_ENV: &str = "GPUSHARE_NVML_LIB";

/// Why NVML gives no utilization on a GPU in MIG mode (after `NotSupported`).
pub const MIG_NO_UTILIZATION: &str = "on MIG-enabled GPUs: NVML does not attribute \
     utilization to MIG instances (DCGM does, per GPU instance)";

/// Why a lost GPU gives no value (after `GpuLost`).
pub const GPU_LOST: &str = "(NVML_ERROR_GPU_IS_LOST): the GPU fell off the bus or is otherwise \
     inaccessible; a GPU reset or a reboot brings it back";

/// The library NVML is loaded from by default (Linux).
pub const DEFAULT_LIB: &str = "libnvidia-ml.so.1";

/// A device NVML can be asked about: a physical GPU, or one MIG device on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    /// The physical GPU with this NVML index.
    Gpu(u32),
    /// MIG device `index` (NVML's MIG device index) of GPU `gpu`.
    Mig {
        /// NVML index of the parent GPU.
        gpu: u32,
        /// MIG device index on that GPU.
        index: u32,
    },
}

/// What kind of failure an NVML call had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The device or driver does not support the query (e.g. utilization on MIG).
    NotSupported,
    /// Nothing at that index (e.g. an empty MIG device slot).
    NotFound,
    /// The caller lacks the privileges for the query.
    NoPermission,
    /// The GPU fell off the bus or is otherwise inaccessible (`NVML_ERROR_GPU_IS_LOST`).
    GpuLost,
    /// Anything else (unknown error, a symbol missing from an old driver).
    Other,
}

impl CallErrorKind {
    /// The name NVML's error has, as recordings write it at the start of a reason.
    pub fn name(self) -> &'static str {
        match self {
            CallErrorKind::NotSupported => "NotSupported",
            CallErrorKind::NotFound => "NotFound",
            CallErrorKind::NoPermission => "NoPermission",
            CallErrorKind::GpuLost => "GpuLost",
            CallErrorKind::Other => "Error",
        }
    }

    /// The kind a recorded reason starts with (`Other` when it names none).
    pub fn from_reason(reason: &str) -> CallErrorKind {
        [
            CallErrorKind::NotSupported,
            CallErrorKind::NotFound,
            CallErrorKind::NoPermission,
            CallErrorKind::GpuLost,
        ]
        .into_iter()
        .find(|k| reason.starts_with(k.name()))
        .unwrap_or(CallErrorKind::Other)
    }
}

/// Why an NVML call gave no value: its kind, and the whole reason as a recording writes it
/// (e.g. `NotSupported on MIG-enabled GPUs: NVML does not attribute utilization to MIG
/// instances`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// Kind.
    pub kind: CallErrorKind,
    /// The reason, starting with the kind's name.
    pub message: String,
}

impl CallError {
    /// A failure of `kind`; `detail` follows the kind's name in the message.
    pub fn new(kind: CallErrorKind, detail: &str) -> CallError {
        let message = if detail.is_empty() {
            kind.name().to_string()
        } else {
            format!("{} {detail}", kind.name())
        };
        CallError { kind, message }
    }

    /// The failure a recording wrote down as `reason`.
    pub fn from_reason(reason: &str) -> CallError {
        CallError {
            kind: CallErrorKind::from_reason(reason),
            message: reason.to_string(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

/// The result of one NVML call.
pub type CallResult<T> = Result<T, CallError>;

/// Memory of a device, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Installed (GPU) or assigned (MIG device) memory.
    pub total: u64,
    /// Allocated.
    pub used: u64,
}

/// MIG mode of a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigMode {
    /// Enabled now.
    pub current: bool,
    /// Enabled after the next GPU reset (differs from `current` while a change is pending).
    pub pending: bool,
}

/// The GPU instance (and compute instance) behind one MIG device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuInstance {
    /// GPU instance id on its GPU.
    pub id: u32,
    /// Compute instance id within the GPU instance.
    pub compute_instance_id: u32,
    /// Driver profile id (19, 20, 15, 14, 9, 5, 0 on A100/H100), as nvidia-smi prints it.
    pub profile_id: u32,
    /// First memory slice the instance occupies.
    pub placement_start: u32,
    /// Memory slices it occupies.
    pub placement_size: u32,
}

/// A process with a compute context on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Device memory it holds, bytes (`None`: NVML reports it as not available).
    pub used_bytes: Option<u64>,
}

/// Device utilization over NVML's last sample period (1/6 s to 1 s depending on the product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utilization {
    /// Percent of the period in which at least one kernel ran (not SM occupancy).
    pub gpu_pct: u32,
    /// Percent of the period in which device memory was read or written.
    pub memory_pct: u32,
}

/// One per-process utilization sample (non-MIG GPUs only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessUtilization {
    /// Process id.
    pub pid: u32,
    /// CPU timestamp of the sample, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// SM (compute) utilization, percent.
    pub sm_pct: u32,
    /// Frame-buffer memory utilization, percent.
    pub memory_pct: u32,
}

/// The read-only NVML calls the inventory and the recorder make.
pub trait Nvml {
    /// Called once before each sample: the live driver reads fresh values at every call; a
    /// recorded node moves on to its next sample.
    fn refresh(&mut self) {}
    /// Driver version, e.g. `550.54.15`.
    fn driver_version(&self) -> CallResult<String>;
    /// CUDA driver version as NVML encodes it (`12040` is 12.4).
    fn cuda_driver_version(&self) -> CallResult<i32>;
    /// Physical GPUs.
    fn device_count(&self) -> CallResult<u32>;
    /// Product name, e.g. `NVIDIA A100-SXM4-80GB` (a MIG device's ends in `MIG 3g.40gb`).
    fn name(&self, d: Dev) -> CallResult<String>;
    /// UUID (`GPU-...` or `MIG-...`).
    fn uuid(&self, d: Dev) -> CallResult<String>;
    /// PCI device id with the vendor in the low 16 bits, e.g. `0x20B210DE`.
    fn pci_device_id(&self, gpu: u32) -> CallResult<u32>;
    /// Memory totals.
    fn memory(&self, d: Dev) -> CallResult<MemoryInfo>;
    /// SMs of the device (NVML answers this for MIG devices; not all drivers for whole GPUs).
    fn sm_count(&self, d: Dev) -> CallResult<u32>;
    /// MIG mode (`NotSupported` on GPUs without MIG).
    fn mig_mode(&self, gpu: u32) -> CallResult<MigMode>;
    /// How many MIG device slots the GPU has.
    fn mig_slots(&self, gpu: u32) -> CallResult<u32>;
    /// Whether MIG device slot `index` holds a device.
    fn mig_present(&self, gpu: u32, index: u32) -> CallResult<bool>;
    /// The GPU instance behind MIG device `index`.
    fn gpu_instance(&self, gpu: u32, index: u32) -> CallResult<GpuInstance>;
    /// Processes with a compute context on the device, with their memory.
    fn processes(&self, d: Dev) -> CallResult<Vec<Process>>;
    /// Name of a process (`NoPermission` for other users' processes on some systems).
    fn process_name(&self, pid: u32) -> CallResult<String>;
    /// Utilization of a whole GPU (`NotSupported` on MIG-enabled GPUs).
    fn utilization(&self, gpu: u32) -> CallResult<Utilization>;
    /// Per-process utilization samples newer than `since_us` (CPU µs since the epoch).
    fn process_utilization(&self, gpu: u32, since_us: u64) -> CallResult<Vec<ProcessUtilization>>;
    /// Current SM clock, MHz.
    fn sm_clock_mhz(&self, gpu: u32) -> CallResult<u32>;
    /// Power draw, milliwatts (instantaneous on A100, a 1 s average on later GPUs).
    fn power_mw(&self, gpu: u32) -> CallResult<u32>;
    /// Active clock throttle reasons, by name (`gpu_idle`, `sw_power_cap`, ...).
    fn throttle_reasons(&self, gpu: u32) -> CallResult<Vec<String>>;
}

/// Why NVML could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    /// The library could not be loaded: no NVIDIA driver installed, or not on the loader path.
    #[error(
        "cannot load the NVIDIA Management Library ({library}): {detail}. No NVIDIA driver is \
         installed here, or its library is not on the loader path (set {LIB_ENV} to its full \
         path). {RECORDED_HINT}"
    )]
    NoLibrary {
        /// The library name or path tried.
        library: String,
        /// What the loader said.
        detail: String,
    },
    /// The library loaded, but no driver is running.
    #[error(
        "the NVIDIA Management Library ({library}) loaded, but the NVIDIA driver is not running \
         (NVML: DriverNotLoaded). {RECORDED_HINT}"
    )]
    DriverNotLoaded {
        /// The library name or path loaded.
        library: String,
    },
    /// NVML refused to talk to the driver.
    #[error(
        "NVML has no permission to talk to the NVIDIA driver (NVML: NoPermission). {RECORDED_HINT}"
    )]
    NoPermission,
    /// Initialisation failed otherwise.
    #[error("NVML failed to start: {0}. {RECORDED_HINT}")]
    Init(String),
    /// A call the command cannot do without failed.
    #[error("NVML could not {what}: {source}")]
    Call {
        /// What was asked, e.g. `read the name of GPU 0`.
        what: String,
        /// NVML's answer.
        source: CallError,
    },
}

/// How to go on without a driver, appended to the messages of [`NvmlError`].
pub const RECORDED_HINT: &str = "Commands that read a live GPU need one; without a GPU, use \
     recorded files instead: `gpushare inventory --from REC.jsonl` and `gpushare calibrate fit \
     --recording REC.jsonl ...` read a recording made by `gpushare calibrate record` on a \
     machine with the driver";

/// `what` failed with `e`.
pub fn call(what: impl Into<String>) -> impl FnOnce(CallError) -> NvmlError {
    let what = what.into();
    move |source| NvmlError::Call { what, source }
}

/// A CUDA driver version as NVML encodes it (`12040`) written as `12.4`.
pub fn cuda_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// A PCI device id written as the catalogue writes it, e.g. `0x20B210DE`.
pub fn pci_id_string(id: u32) -> String {
    format!("0x{id:08X}")
}

/// The MIG profile a MIG device's name ends with: `NVIDIA A100-SXM4-80GB MIG 3g.40gb` gives
/// `3g.40gb`; a compute instance smaller than its GPU instance (`MIG 1c.3g.40gb`) gives the
/// GPU instance's profile, `3g.40gb`.
pub fn mig_profile_from_name(name: &str) -> Option<String> {
    let (_, tail) = name.rsplit_once("MIG ")?;
    let tail = tail.trim();
    let gi = match tail.split_once("c.") {
        Some((c, rest)) if !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()) => rest,
        _ => tail,
    };
    (!gi.is_empty()).then(|| gi.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_from_mig_device_names() {
        assert_eq!(
            mig_profile_from_name("NVIDIA A100-SXM4-80GB MIG 3g.40gb").as_deref(),
            Some("3g.40gb")
        );
        assert_eq!(
            mig_profile_from_name("NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb").as_deref(),
            Some("3g.40gb")
        );
        assert_eq!(
            mig_profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me").as_deref(),
            Some("1g.10gb+me")
        );
        assert_eq!(mig_profile_from_name("NVIDIA H100 80GB HBM3"), None);
    }

    #[test]
    fn versions_and_ids_as_written() {
        assert_eq!(cuda_version_string(12040), "12.4");
        assert_eq!(cuda_version_string(11080), "11.8");
        assert_eq!(pci_id_string(0x20B2_10DE), "0x20B210DE");
    }

    #[test]
    fn call_errors_round_trip_through_their_reason() {
        let e = CallError::new(CallErrorKind::NotSupported, "on MIG-enabled GPUs");
        assert_eq!(e.message, "NotSupported on MIG-enabled GPUs");
        assert_eq!(CallError::from_reason(&e.message), e);
        assert_eq!(
            CallError::from_reason("something odd").kind,
            CallErrorKind::Other
        );
        let lost = CallError::new(CallErrorKind::GpuLost, GPU_LOST);
        assert!(lost.message.starts_with("GpuLost (NVML_ERROR_GPU_IS_LOST)"));
        assert_eq!(CallError::from_reason(&lost.message), lost);
    }

    #[test]
    fn no_library_message_says_what_to_do() {
        let e = NvmlError::NoLibrary {
            library: DEFAULT_LIB.into(),
            detail: "cannot open shared object file".into(),
        };
        let m = e.to_string();
        assert!(m.contains("libnvidia-ml.so.1"), "{m}");
        assert!(m.contains("inventory --from"), "{m}");
        assert!(m.contains(LIB_ENV), "{m}");
    }
}
