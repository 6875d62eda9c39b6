//! The live driver through `nvml-wrapper`: loads `libnvidia-ml.so.1` at run time, so the
//! binary builds and runs without a driver and fails only when a command needs one.
//!
//! Read-only: only getters are called. Two calls have no safe wrapper in `nvml-wrapper`
//! 0.13 (the GPU and compute instance ids of a MIG device, and a GPU instance's placement);
//! they go through the raw symbols, checked to exist first.

use std::os::raw::c_uint;

use nvml_wrapper::Device;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{NvmlError as WrapperError, nvml_try};
use nvml_wrapper_sys::bindings::{nvmlGpuInstance_t, nvmlGpuInstanceInfo_t, nvmlReturn_t};

use super::{
    CallError, CallErrorKind, CallResult, DEFAULT_LIB, Dev, GpuInstance, LIB_ENV, MemoryInfo,
    MigMode, Nvml, NvmlError, Process, ProcessUtilization, Utilization,
};

/// How many times a process list that grew while it was read is asked for again.
const PROCESS_LIST_RETRIES: u32 = 3;

/// NVML on this machine's driver.
pub struct LiveNvml {
    nvml: nvml_wrapper::Nvml,
}

impl LiveNvml {
    /// Load NVML (from `$GPUSHARE_NVML_LIB` if set, else `libnvidia-ml.so.1`) and initialise it.
    /// Fails fast, with what to do instead, when there is no library or no driver.
    pub fn open() -> Result<LiveNvml, NvmlError> {
        let custom = std::env::var_os(LIB_ENV).filter(|p| !p.is_empty());
        let library = custom
            .as_ref()
            .map_or(DEFAULT_LIB.to_string(), |p| p.to_string_lossy().to_string());
        let result = match &custom {
            Some(path) => nvml_wrapper::Nvml::builder().lib_path(path).init(),
            None => nvml_wrapper::Nvml::init(),
        };
        result
            .map(|nvml| LiveNvml { nvml })
            .map_err(|e| init_error(e, library))
    }

    fn gpu(&self, index: u32) -> CallResult<Device<'_>> {
        self.nvml.device_by_index(index).map_err(call_error)
    }

    fn dev(&self, d: Dev) -> CallResult<Device<'_>> {
        match d {
            Dev::Gpu(i) => self.gpu(i),
            Dev::Mig { gpu, index } => self
                .gpu(gpu)?
                .mig_device_by_index(index)
                .map_err(call_error),
        }
    }

    /// Whether `gpu` runs in MIG mode now (for the reasons utilization is unsupported).
    fn mig_enabled(&self, gpu: u32) -> bool {
        self.mig_mode(gpu).is_ok_and(|m| m.current)
    }

    /// A utilization query failed: say why when MIG is the reason.
    fn utilization_error(&self, gpu: u32, e: WrapperError) -> CallError {
        let e = call_error(e);
        if e.kind == CallErrorKind::NotSupported && self.mig_enabled(gpu) {
            CallError::new(CallErrorKind::NotSupported, super::MIG_NO_UTILIZATION)
        } else {
            e
        }
    }
}

/// The message for a failed `nvmlInit`.
fn init_error(e: WrapperError, library: String) -> NvmlError {
    match e {
        WrapperError::LibloadingError(l) => NvmlError::NoLibrary {
            library,
            detail: l.to_string(),
        },
        WrapperError::DriverNotLoaded => NvmlError::DriverNotLoaded { library },
        WrapperError::NoPermission => NvmlError::NoPermission,
        WrapperError::FailedToLoadSymbol(s) => NvmlError::NoLibrary {
            library,
            detail: format!("it lacks nvmlInit_v2 ({s})"),
        },
        other => NvmlError::Init(other.to_string()),
    }
}

/// A failed call, as the recorder writes it down.
fn call_error(e: WrapperError) -> CallError {
    match e {
        WrapperError::NotSupported => CallError::new(CallErrorKind::NotSupported, ""),
        WrapperError::NotFound => CallError::new(CallErrorKind::NotFound, ""),
        WrapperError::NoPermission => CallError::new(CallErrorKind::NoPermission, ""),
        WrapperError::GpuLost => CallError::new(CallErrorKind::GpuLost, super::GPU_LOST),
        WrapperError::FailedToLoadSymbol(s) => CallError::new(
            CallErrorKind::NotSupported,
            &format!("by this driver (symbol missing: {s})"),
        ),
        other => CallError {
            kind: CallErrorKind::Other,
            message: format!("Error: {other}"),
        },
    }
}

/// A raw NVML return code as a call result.
fn check(code: nvmlReturn_t) -> CallResult<()> {
    nvml_try(code).map_err(call_error)
}

/// A raw symbol, or `NotSupported` when the driver's library lacks it.
fn symbol<'a, T, E>(sym: &'a Result<T, E>, name: &str) -> CallResult<&'a T> {
    sym.as_ref().map_err(|_| {
        CallError::new(
            CallErrorKind::NotSupported,
            &format!("by this driver (symbol missing: {name})"),
        )
    })
}

impl Nvml for LiveNvml {
    fn driver_version(&self) -> CallResult<String> {
        self.nvml.sys_driver_version().map_err(call_error)
    }

    fn cuda_driver_version(&self) -> CallResult<i32> {
        self.nvml.sys_cuda_driver_version().map_err(call_error)
    }

    fn device_count(&self) -> CallResult<u32> {
        self.nvml.device_count().map_err(call_error)
    }

    fn name(&self, d: Dev) -> CallResult<String> {
        self.dev(d)?.name().map_err(call_error)
    }

    fn uuid(&self, d: Dev) -> CallResult<String> {
        self.dev(d)?.uuid().map_err(call_error)
    }

    fn pci_device_id(&self, gpu: u32) -> CallResult<u32> {
        Ok(self.gpu(gpu)?.pci_info().map_err(call_error)?.pci_device_id)
    }

    fn memory(&self, d: Dev) -> CallResult<MemoryInfo> {
        let m = self.dev(d)?.memory_info().map_err(call_error)?;
        Ok(MemoryInfo {
            total: m.total,
            used: m.used,
        })
    }

    fn sm_count(&self, d: Dev) -> CallResult<u32> {
        Ok(self
            .dev(d)?
            .attributes()
            .map_err(call_error)?
            .multiprocessor_count)
    }

    fn mig_mode(&self, gpu: u32) -> CallResult<MigMode> {
        let m = self.gpu(gpu)?.mig_mode().map_err(call_error)?;
        Ok(MigMode {
            current: m.current != 0,
            pending: m.pending != 0,
        })
    }

    fn mig_slots(&self, gpu: u32) -> CallResult<u32> {
        self.gpu(gpu)?.mig_device_count().map_err(call_error)
    }

    fn mig_present(&self, gpu: u32, index: u32) -> CallResult<bool> {
        match self.gpu(gpu)?.mig_device_by_index(index) {
            Ok(_) => Ok(true),
            Err(WrapperError::NotFound | WrapperError::InvalidArg) => Ok(false),
            Err(e) => Err(call_error(e)),
        }
    }

    fn gpu_instance(&self, gpu: u32, index: u32) -> CallResult<GpuInstance> {
        let parent = self.gpu(gpu)?;
        let mig = parent.mig_device_by_index(index).map_err(call_error)?;
        let lib = self.nvml.lib();
        let gi_id_of = symbol(
            &lib.nvmlDeviceGetGpuInstanceId,
            "nvmlDeviceGetGpuInstanceId",
        )?;
        let ci_id_of = symbol(
            &lib.nvmlDeviceGetComputeInstanceId,
            "nvmlDeviceGetComputeInstanceId",
        )?;
        let gi_by_id = symbol(
            &lib.nvmlDeviceGetGpuInstanceById,
            "nvmlDeviceGetGpuInstanceById",
        )?;
        let gi_info = symbol(&lib.nvmlGpuInstanceGetInfo, "nvmlGpuInstanceGetInfo")?;
        // SAFETY: the handles come from the wrapper and live as long as `self.nvml`; every
        // out-pointer points to a local of the type the C prototype names; only getters are
        // called.
        unsafe {
            let mut id: c_uint = 0;
            check(gi_id_of(mig.handle(), &mut id))?;
            let mut ci: c_uint = 0;
            check(ci_id_of(mig.handle(), &mut ci))?;
            let mut gi: nvmlGpuInstance_t = std::ptr::null_mut();
            check(gi_by_id(parent.handle(), id, &mut gi))?;
            let mut info: nvmlGpuInstanceInfo_t = std::mem::zeroed();
            check(gi_info(gi, &mut info))?;
            Ok(GpuInstance {
                id,
                compute_instance_id: ci,
                profile_id: info.profileId,
                placement_start: info.placement.start,
                placement_size: info.placement.size,
            })
        }
    }

    fn processes(&self, d: Dev) -> CallResult<Vec<Process>> {
        let dev = self.dev(d)?;
        // The wrapper counts the processes, then fetches into a list five entries longer;
        // processes that start in between overflow it (InsufficientSize). nvml.h says the
        // list is dynamic: ask again.
        let mut retries = 0;
        let list = loop {
            match dev.running_compute_processes() {
                Err(WrapperError::InsufficientSize(_)) if retries < PROCESS_LIST_RETRIES => {
                    retries += 1;
                }
                r => break r.map_err(call_error)?,
            }
        };
        Ok(list
            .into_iter()
            .map(|p| Process {
                pid: p.pid,
                used_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
            })
            .collect())
    }

    fn process_name(&self, pid: u32) -> CallResult<String> {
        self.nvml.sys_process_name(pid, 256).map_err(call_error)
    }

    fn utilization(&self, gpu: u32) -> CallResult<Utilization> {
        let u = self
            .gpu(gpu)?
            .utilization_rates()
            .map_err(|e| self.utilization_error(gpu, e))?;
        Ok(Utilization {
            gpu_pct: u.gpu,
            memory_pct: u.memory,
        })
    }

    fn process_utilization(&self, gpu: u32, since_us: u64) -> CallResult<Vec<ProcessUtilization>> {
        match self.gpu(gpu)?.process_utilization_stats(since_us) {
            Ok(list) => Ok(list
                .into_iter()
                .map(|s| ProcessUtilization {
                    pid: s.pid,
                    timestamp_us: s.timestamp,
                    sm_pct: s.sm_util,
                    memory_pct: s.mem_util,
                })
                .collect()),
            // NVML answers NotFound when no process had a sample since `since_us`.
            Err(WrapperError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(self.utilization_error(gpu, e)),
        }
    }

    fn sm_clock_mhz(&self, gpu: u32) -> CallResult<u32> {
        self.gpu(gpu)?.clock_info(Clock::SM).map_err(call_error)
    }

    fn power_mw(&self, gpu: u32) -> CallResult<u32> {
        self.gpu(gpu)?.power_usage().map_err(call_error)
    }

    fn throttle_reasons(&self, gpu: u32) -> CallResult<Vec<String>> {
        let r = self
            .gpu(gpu)?
            .current_throttle_reasons()
            .map_err(call_error)?;
        Ok(r.iter_names().map(|(n, _)| n.to_lowercase()).collect())
    }
}
