//! A stand-in for the NVIDIA Management Library (`libnvidia-ml.so.1`): a C shared library with
//! NVML's entry points, return codes and structures, serving a node described by a script
//! (JSON, named by `GPUSHARE_NVML_STANDIN_SCRIPT`) instead of a driver. gpushare's tests point
//! `GPUSHARE_NVML_LIB` at it and run the live commands (`inventory`, `calibrate record`)
//! exactly as against a driver.
//!
//! It is faithful where NVML is peculiar: utilization answers `NVML_ERROR_NOT_SUPPORTED` on
//! MIG-enabled GPUs and on MIG devices; process lists answer `NVML_ERROR_INSUFFICIENT_SIZE`
//! with the count needed (and processes may start between the count and the fetch); MIG mode
//! has a current and a pending value and MIG devices exist only while it is enabled now; SM
//! counts (`nvmlDeviceGetAttributes_v2`) are answered for MIG devices only; a GPU can fall off
//! the bus (`NVML_ERROR_GPU_IS_LOST` from a scripted time on); an unprivileged caller gets
//! `NVML_ERROR_NO_PERMISSION` for aggregate MIG values and GPU instance lookups.
//!
//! Read-only is checked here: every NVML function that changes state (MIG mode, clocks,
//! compute or persistence mode, power limits, resets, instance creation...) is exported, and a
//! call writes its name to the violations file (the script's `violations_file`, or
//! `GPUSHARE_NVML_STANDIN_VIOLATIONS`) and fails with `NVML_ERROR_NO_PERMISSION`.
//!
//! Time: values follow each GPU's `timeline`, measured from the first `nvmlInit`.

// NVML's C names are the exported symbols.
#![allow(non_snake_case)]
// Every export is called by C code under NVML's documented contract (valid handles, pointers to
// the named structures or NULL where NVML allows it); each one checks NULL itself.
#![allow(clippy::missing_safety_doc)]

pub mod script;

use std::ffi::{c_char, c_int, c_uint, c_ulonglong};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nvml_wrapper_sys::bindings::*;

use script::{InitOutcome, Proc, Script, Step};

/// Environment variable naming the script.
pub const SCRIPT_ENV: &str = "GPUSHARE_NVML_STANDIN_SCRIPT";

/// Environment variable naming the file a setter call is written to.
pub const VIOLATIONS_ENV: &str = "GPUSHARE_NVML_STANDIN_VIOLATIONS";

type Ret = nvmlReturn_t;
const SUCCESS: Ret = nvmlReturn_enum_NVML_SUCCESS;
const UNINITIALIZED: Ret = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
const INVALID_ARGUMENT: Ret = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: Ret = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NO_PERMISSION: Ret = nvmlReturn_enum_NVML_ERROR_NO_PERMISSION;
const NOT_FOUND: Ret = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const INSUFFICIENT_SIZE: Ret = nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
const DRIVER_NOT_LOADED: Ret = nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED;
const GPU_IS_LOST: Ret = nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST;
const ARGUMENT_VERSION_MISMATCH: Ret = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
const UNKNOWN: Ret = nvmlReturn_enum_NVML_ERROR_UNKNOWN;

/// The scripted node while NVML is initialised.
struct Node {
    script: Script,
    /// When the first `nvmlInit` succeeded (the timelines' 0 ms).
    started: Instant,
    /// The same moment, microseconds since the Unix epoch (per-process sample timestamps).
    started_unix_us: u64,
    /// Per GPU, how many process-list fetches still see the short-lived processes.
    churn_left: Vec<u32>,
}

struct Lib {
    /// `nvmlInit` calls not yet matched by `nvmlShutdown`.
    inits: u32,
    node: Option<Node>,
    /// The violations file of the last script loaded (kept after shutdown).
    violations_file: Option<PathBuf>,
}

static LIB: Mutex<Lib> = Mutex::new(Lib {
    inits: 0,
    node: None,
    violations_file: None,
});

fn lib() -> std::sync::MutexGuard<'static, Lib> {
    // A panic never crosses the C boundary (it aborts), so a poisoned lock cannot be observed
    // half-updated by a caller; take it back.
    LIB.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handles are small integers in pointer form, never dereferenced: the kind, the GPU and the
/// MIG device (or GPU instance id), each plus one so that no handle is NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handle {
    Gpu(usize),
    Mig(usize, u32),
    GpuInstance(usize, u32),
}

impl Handle {
    fn encode(self) -> usize {
        let (kind, gpu, sub) = match self {
            Handle::Gpu(g) => (1, g, 0),
            Handle::Mig(g, i) => (2, g, i as usize + 1),
            Handle::GpuInstance(g, id) => (3, g, id as usize + 1),
        };
        (kind << 28) | ((gpu + 1) << 16) | sub
    }

    fn decode(v: usize) -> Option<Handle> {
        let kind = v >> 28;
        let gpu = ((v >> 16) & 0xFFF).checked_sub(1)?;
        let sub = v & 0xFFFF;
        match (kind, sub) {
            (1, 0) => Some(Handle::Gpu(gpu)),
            (2, s) if s > 0 => Some(Handle::Mig(gpu, (s - 1) as u32)),
            (3, s) if s > 0 => Some(Handle::GpuInstance(gpu, (s - 1) as u32)),
            _ => None,
        }
    }

    fn device(self) -> nvmlDevice_t {
        std::ptr::without_provenance_mut(self.encode())
    }

    fn gpu_instance(self) -> nvmlGpuInstance_t {
        std::ptr::without_provenance_mut(self.encode())
    }
}

impl Node {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lost(&self, gpu: usize) -> bool {
        self.script.gpus[gpu]
            .lost_after_ms
            .is_some_and(|t| self.elapsed_ms() >= t)
    }

    fn mig_enabled(&self, gpu: usize) -> bool {
        self.script.gpus[gpu].mig_mode.is_some_and(|(c, _)| c)
    }

    /// The step of GPU `gpu`'s timeline in effect now.
    fn step(&self, gpu: usize) -> &Step {
        let now = self.elapsed_ms();
        let tl = &self.script.gpus[gpu].timeline;
        tl.iter().rev().find(|s| s.t_ms <= now).unwrap_or(&tl[0])
    }

    /// A device handle checked: known, not lost, a MIG device only while MIG is enabled.
    fn resolve(&self, h: nvmlDevice_t) -> Result<Handle, Ret> {
        let h = Handle::decode(h as usize).ok_or(INVALID_ARGUMENT)?;
        let gpu = match h {
            Handle::Gpu(g) | Handle::Mig(g, _) => g,
            Handle::GpuInstance(..) => return Err(INVALID_ARGUMENT),
        };
        let g = self.script.gpus.get(gpu).ok_or(INVALID_ARGUMENT)?;
        if self.lost(gpu) {
            return Err(GPU_IS_LOST);
        }
        if let Handle::Mig(_, i) = h
            && (!self.mig_enabled(gpu) || !g.mig_devices.iter().any(|m| m.index == i))
        {
            return Err(INVALID_ARGUMENT);
        }
        Ok(h)
    }

    fn mig(&self, gpu: usize, index: u32) -> &script::MigDevice {
        self.script.gpus[gpu]
            .mig_devices
            .iter()
            .find(|m| m.index == index)
            .expect("invariant: resolve checked the MIG device")
    }

    /// Processes on a device now (`NO_PERMISSION` for the aggregate over MIG devices when
    /// unprivileged).
    fn processes(&self, h: Handle) -> Result<Vec<Proc>, Ret> {
        let step = match h {
            Handle::Gpu(g) | Handle::Mig(g, _) => self.step(g),
            Handle::GpuInstance(..) => return Err(INVALID_ARGUMENT),
        };
        match h {
            Handle::Gpu(g) if self.mig_enabled(g) => {
                if !self.script.privileged {
                    return Err(NO_PERMISSION);
                }
                Ok(step
                    .mig
                    .values()
                    .flat_map(|m| m.processes.iter().copied())
                    .collect())
            }
            Handle::Gpu(_) => Ok(step.processes.clone()),
            Handle::Mig(_, i) => Ok(step
                .mig
                .get(&i)
                .map(|m| m.processes.clone())
                .unwrap_or_default()),
            Handle::GpuInstance(..) => Err(INVALID_ARGUMENT),
        }
    }
}

/// Run `f` on the node, or `NVML_ERROR_UNINITIALIZED` when NVML is not initialised.
fn with_node(f: impl FnOnce(&mut Node) -> Result<(), Ret>) -> Ret {
    let mut lib = lib();
    match lib.node.as_mut() {
        None => UNINITIALIZED,
        Some(node) => f(node).err().unwrap_or(SUCCESS),
    }
}

/// Write `v` through `p` (`NVML_ERROR_INVALID_ARGUMENT` for NULL).
fn put<T>(p: *mut T, v: T) -> Result<(), Ret> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: NVML's contract: a non-NULL out-pointer points to a writable T.
    unsafe { p.write(v) };
    Ok(())
}

/// Copy `s` with its NUL into `buf` of `len` bytes; `NVML_ERROR_INSUFFICIENT_SIZE` if it does
/// not fit, as NVML answers for names, UUIDs and versions.
fn put_str(s: &str, buf: *mut c_char, len: c_uint) -> Result<(), Ret> {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    if s.len() + 1 > len as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds `len` bytes (NVML's contract) and s.len() + 1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), buf, s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

fn init() -> Ret {
    let mut lib = lib();
    if lib.inits > 0 {
        lib.inits += 1;
        return SUCCESS;
    }
    let Some(path) = std::env::var_os(SCRIPT_ENV).filter(|p| !p.is_empty()) else {
        eprintln!(
            "nvml-standin: {SCRIPT_ENV} is not set: name the JSON file describing the node to serve"
        );
        return UNKNOWN;
    };
    let script = match script::load(std::path::Path::new(&path)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nvml-standin: {e}");
            return UNKNOWN;
        }
    };
    lib.violations_file = script.violations_file.clone();
    match script.init {
        InitOutcome::Ok => {}
        InitOutcome::DriverNotLoaded => return DRIVER_NOT_LOADED,
        InitOutcome::NoPermission => return NO_PERMISSION,
    }
    let started_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let churn_left = script
        .gpus
        .iter()
        .map(|g| g.process_churn.fetches)
        .collect();
    lib.node = Some(Node {
        script,
        started: Instant::now(),
        started_unix_us,
        churn_left,
    });
    lib.inits = 1;
    SUCCESS
}

/// `nvmlInit_v2`: load the script (once) and start its clock.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Ret {
    init()
}

/// `nvmlInitWithFlags`: as `nvmlInit_v2` (the flags change nothing for a scripted node).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    init()
}

/// `nvmlShutdown`: the last one forgets the node.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Ret {
    let mut lib = lib();
    if lib.inits == 0 {
        return UNINITIALIZED;
    }
    lib.inits -= 1;
    if lib.inits == 0 {
        lib.node = None;
    }
    SUCCESS
}

/// `nvmlErrorString`: NVML's descriptions of its return codes.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    let s: &'static std::ffi::CStr = match result {
        SUCCESS => c"Success",
        UNINITIALIZED => c"Uninitialized",
        INVALID_ARGUMENT => c"Invalid Argument",
        NOT_SUPPORTED => c"Not Supported",
        NO_PERMISSION => c"Insufficient Permissions",
        NOT_FOUND => c"Not Found",
        INSUFFICIENT_SIZE => c"Insufficient Size",
        DRIVER_NOT_LOADED => c"Driver Not Loaded",
        GPU_IS_LOST => c"GPU is lost",
        ARGUMENT_VERSION_MISMATCH => c"Argument version mismatch",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// `nvmlSystemGetDriverVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    with_node(|n| put_str(&n.script.driver_version, version, length))
}

/// `nvmlSystemGetCudaDriverVersion_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(cudaDriverVersion: *mut c_int) -> Ret {
    with_node(|n| put(cudaDriverVersion, n.script.cuda_version))
}

/// `nvmlSystemGetCudaDriverVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(cudaDriverVersion: *mut c_int) -> Ret {
    with_node(|n| put(cudaDriverVersion, n.script.cuda_version))
}

/// `nvmlSystemGetProcessName`: the scripted name, cropped to `length` as NVML crops it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    with_node(|n| {
        if length == 0 {
            return Err(INVALID_ARGUMENT);
        }
        let full = n.script.process_names.get(&pid).ok_or(NOT_FOUND)?;
        let mut cut = full.len().min(length as usize - 1);
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        put_str(&full[..cut], name, length)
    })
}

/// `nvmlDeviceGetCount_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(deviceCount: *mut c_uint) -> Ret {
    with_node(|n| put(deviceCount, n.script.gpus.len() as c_uint))
}

/// `nvmlDeviceGetHandleByIndex_v2` (`NVML_ERROR_GPU_IS_LOST` once the GPU is lost).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> Ret {
    with_node(|n| {
        let g = index as usize;
        if g >= n.script.gpus.len() {
            return Err(INVALID_ARGUMENT);
        }
        if n.lost(g) {
            return Err(GPU_IS_LOST);
        }
        put(device, Handle::Gpu(g).device())
    })
}

/// `nvmlDeviceGetIndex`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => put(index, g as c_uint),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetName`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => put_str(&n.script.gpus[g].name, name, length),
        Handle::Mig(g, i) => put_str(&n.mig(g, i).name, name, length),
        Handle::GpuInstance(..) => Err(INVALID_ARGUMENT),
    })
}

/// `nvmlDeviceGetUUID`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => put_str(&n.script.gpus[g].uuid, uuid, length),
        Handle::Mig(g, i) => put_str(&n.mig(g, i).uuid, uuid, length),
        Handle::GpuInstance(..) => Err(INVALID_ARGUMENT),
    })
}

/// Copy `s` into a fixed C char array, NUL-terminated (cut if too long).
fn fill(dst: &mut [c_char], s: &str) {
    let room = dst.len().saturating_sub(1);
    for (d, b) in dst.iter_mut().zip(s.bytes().take(room)) {
        *d = b as c_char;
    }
}

/// `nvmlDeviceGetPciInfo_v3` (physical GPUs; a MIG device answers for its GPU).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> Ret {
    with_node(|n| {
        let g = match n.resolve(device)? {
            Handle::Gpu(g) | Handle::Mig(g, _) => g,
            Handle::GpuInstance(..) => return Err(INVALID_ARGUMENT),
        };
        let p = &n.script.gpus[g].pci;
        // SAFETY: all-zero is a valid nvmlPciInfo_t (integers and char arrays).
        let mut info: nvmlPciInfo_t = unsafe { std::mem::zeroed() };
        info.domain = p.domain;
        info.bus = p.bus;
        info.device = p.device;
        info.pciDeviceId = p.device_id;
        info.pciSubSystemId = p.subsystem_id;
        fill(&mut info.busId, &p.bus_id);
        // The legacy id has a 4-digit domain.
        let legacy = format!("{:04X}:{:02X}:{:02X}.0", p.domain & 0xFFFF, p.bus, p.device);
        fill(&mut info.busIdLegacy, &legacy);
        put(pci, info)
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`: checks the structure version as NVML does. On a MIG-enabled
/// GPU the whole GPU's figures are an aggregate that needs privileges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> Ret {
    with_node(|n| {
        let h = n.resolve(device)?;
        if memory.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let want = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
        // SAFETY: non-NULL, points to the caller's nvmlMemory_v2_t.
        if unsafe { (*memory).version } != want {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let (total, used) = match h {
            Handle::Gpu(g) if n.mig_enabled(g) => {
                if !n.script.privileged {
                    return Err(NO_PERMISSION);
                }
                let used = n.step(g).mig.values().map(|m| m.memory_used_bytes).sum();
                (n.script.gpus[g].memory_total_bytes, used)
            }
            Handle::Gpu(g) => (
                n.script.gpus[g].memory_total_bytes,
                n.step(g).memory_used_bytes,
            ),
            Handle::Mig(g, i) => (
                n.mig(g, i).memory_total_bytes,
                n.step(g).mig.get(&i).map_or(0, |m| m.memory_used_bytes),
            ),
            Handle::GpuInstance(..) => return Err(INVALID_ARGUMENT),
        };
        put(
            memory,
            nvmlMemory_v2_t {
                version: want,
                total,
                reserved: 0,
                free: total.saturating_sub(used),
                used,
            },
        )
    })
}

/// `nvmlDeviceGetAttributes_v2`: NVML answers it for MIG device handles only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetAttributes_v2(
    device: nvmlDevice_t,
    attributes: *mut nvmlDeviceAttributes_t,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Mig(g, i) => {
            let m = n.mig(g, i);
            // SAFETY: all-zero is a valid nvmlDeviceAttributes_t (integers).
            let mut a: nvmlDeviceAttributes_t = unsafe { std::mem::zeroed() };
            a.multiprocessorCount = m.sms;
            a.gpuInstanceSliceCount = m.placement_size.min(7);
            a.computeInstanceSliceCount = m.placement_size.min(7);
            a.memorySizeMB = m.memory_total_bytes >> 20;
            put(attributes, a)
        }
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetMigMode`: current and pending (`NVML_ERROR_NOT_SUPPORTED` without MIG).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    currentMode: *mut c_uint,
    pendingMode: *mut c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => {
            let (c, p) = n.script.gpus[g].mig_mode.ok_or(NOT_SUPPORTED)?;
            put(currentMode, c as c_uint)?;
            put(pendingMode, p as c_uint)
        }
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetMaxMigDeviceCount`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) if n.script.gpus[g].mig_mode.is_some() => {
            put(count, n.script.gpus[g].mig_slots)
        }
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetMigDeviceHandleByIndex`: `NVML_ERROR_NOT_FOUND` for an empty slot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    migDevice: *mut nvmlDevice_t,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => {
            let gpu = &n.script.gpus[g];
            if gpu.mig_mode.is_none() || !n.mig_enabled(g) {
                return Err(NOT_SUPPORTED);
            }
            if index >= gpu.mig_slots {
                return Err(INVALID_ARGUMENT);
            }
            if !gpu.mig_devices.iter().any(|m| m.index == index) {
                return Err(NOT_FOUND);
            }
            put(migDevice, Handle::Mig(g, index).device())
        }
        _ => Err(INVALID_ARGUMENT),
    })
}

/// `nvmlDeviceIsMigDeviceHandle`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    isMigDevice: *mut c_uint,
) -> Ret {
    with_node(|n| {
        let is = matches!(n.resolve(device)?, Handle::Mig(..));
        put(isMigDevice, is as c_uint)
    })
}

/// `nvmlDeviceGetDeviceHandleFromMigDeviceHandle`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    migDevice: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> Ret {
    with_node(|n| match n.resolve(migDevice)? {
        Handle::Mig(g, _) => put(device, Handle::Gpu(g).device()),
        _ => Err(INVALID_ARGUMENT),
    })
}

/// `nvmlDeviceGetGpuInstanceId` (MIG device handles only).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: nvmlDevice_t, id: *mut c_uint) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Mig(g, i) => put(id, n.mig(g, i).gpu_instance_id),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetComputeInstanceId` (MIG device handles only).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Mig(g, i) => put(id, n.mig(g, i).compute_instance_id),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetGpuInstanceById`: needs privileges; `NVML_ERROR_NOT_FOUND` for an unknown id.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceById(
    device: nvmlDevice_t,
    id: c_uint,
    gpuInstance: *mut nvmlGpuInstance_t,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => {
            if !n.mig_enabled(g) {
                return Err(NOT_SUPPORTED);
            }
            if !n.script.privileged {
                return Err(NO_PERMISSION);
            }
            if !n.script.gpus[g]
                .mig_devices
                .iter()
                .any(|m| m.gpu_instance_id == id)
            {
                return Err(NOT_FOUND);
            }
            put(gpuInstance, Handle::GpuInstance(g, id).gpu_instance())
        }
        _ => Err(INVALID_ARGUMENT),
    })
}

/// `nvmlGpuInstanceGetInfo`: parent device, id, profile id and placement.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpuInstanceGetInfo(
    gpuInstance: nvmlGpuInstance_t,
    info: *mut nvmlGpuInstanceInfo_t,
) -> Ret {
    with_node(|n| {
        let Some(Handle::GpuInstance(g, id)) = Handle::decode(gpuInstance as usize) else {
            return Err(INVALID_ARGUMENT);
        };
        let gpu = n.script.gpus.get(g).ok_or(INVALID_ARGUMENT)?;
        if n.lost(g) {
            return Err(GPU_IS_LOST);
        }
        let m = gpu
            .mig_devices
            .iter()
            .find(|m| m.gpu_instance_id == id)
            .ok_or(INVALID_ARGUMENT)?;
        put(
            info,
            nvmlGpuInstanceInfo_t {
                device: Handle::Gpu(g).device(),
                id,
                profileId: m.profile_id,
                placement: nvmlGpuInstancePlacement_t {
                    start: m.placement_start,
                    size: m.placement_size,
                },
            },
        )
    })
}

/// `nvmlDeviceGetComputeRunningProcesses_v3`: with too small a buffer (or a NULL one with a
/// count of 0) it sets the count needed and answers `NVML_ERROR_INSUFFICIENT_SIZE`; processes
/// scripted as churn start between the count and the next fetch.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    infoCount: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> Ret {
    with_node(|n| {
        let h = n.resolve(device)?;
        let mut list = n.processes(h)?;
        let g = match h {
            Handle::Gpu(g) | Handle::Mig(g, _) => g,
            Handle::GpuInstance(..) => return Err(INVALID_ARGUMENT),
        };
        if infoCount.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if !infos.is_null() && n.churn_left[g] > 0 {
            n.churn_left[g] -= 1;
            let extra = n.script.gpus[g].process_churn.extra;
            list.extend((0..extra).map(|k| Proc {
                pid: 900_000 + k,
                used_memory_bytes: Some(0),
            }));
        }
        // SAFETY: non-NULL, the caller's count.
        let room = unsafe { *infoCount } as usize;
        // SAFETY: as above.
        unsafe { *infoCount = list.len() as c_uint };
        if list.is_empty() {
            return Ok(());
        }
        if infos.is_null() || room < list.len() {
            return Err(INSUFFICIENT_SIZE);
        }
        let (gi, ci) = match h {
            Handle::Mig(g, i) => (n.mig(g, i).gpu_instance_id, n.mig(g, i).compute_instance_id),
            _ => (u32::MAX, u32::MAX),
        };
        for (k, p) in list.iter().enumerate() {
            // SAFETY: `infos` holds `room` >= list.len() entries.
            unsafe {
                infos.add(k).write(nvmlProcessInfo_t {
                    pid: p.pid,
                    // NVML_VALUE_NOT_AVAILABLE: all bits set.
                    usedGpuMemory: p.used_memory_bytes.unwrap_or(u64::MAX),
                    gpuInstanceId: gi,
                    computeInstanceId: ci,
                })
            };
        }
        Ok(())
    })
}

/// `nvmlDeviceGetUtilizationRates`: `NVML_ERROR_NOT_SUPPORTED` on MIG-enabled GPUs and MIG
/// devices.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) if !n.mig_enabled(g) => {
            let (gpu, memory) = n.step(g).utilization;
            put(utilization, nvmlUtilization_t { gpu, memory })
        }
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetProcessUtilization`: the samples taken since `lastSeenTimeStamp` (each step's
/// `process_utilization`, stamped at the step's start), `NVML_ERROR_NOT_FOUND` when there is
/// none, the count needed with `NVML_ERROR_INSUFFICIENT_SIZE` for a NULL or small buffer;
/// `NVML_ERROR_NOT_SUPPORTED` on MIG-enabled GPUs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: nvmlDevice_t,
    utilization: *mut nvmlProcessUtilizationSample_t,
    processSamplesCount: *mut c_uint,
    lastSeenTimeStamp: c_ulonglong,
) -> Ret {
    with_node(|n| {
        let g = match n.resolve(device)? {
            Handle::Gpu(g) if !n.mig_enabled(g) => g,
            _ => return Err(NOT_SUPPORTED),
        };
        if processSamplesCount.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let now = n.elapsed_ms();
        let samples: Vec<nvmlProcessUtilizationSample_t> = n.script.gpus[g]
            .timeline
            .iter()
            .filter(|s| s.t_ms <= now)
            .flat_map(|s| {
                let ts = n.started_unix_us + s.t_ms * 1000;
                s.process_utilization.iter().map(move |&(pid, sm, mem)| {
                    nvmlProcessUtilizationSample_t {
                        pid,
                        timeStamp: ts,
                        smUtil: sm,
                        memUtil: mem,
                        encUtil: 0,
                        decUtil: 0,
                    }
                })
            })
            .filter(|s| s.timeStamp > lastSeenTimeStamp)
            .collect();
        if samples.is_empty() {
            return Err(NOT_FOUND);
        }
        // SAFETY: non-NULL, the caller's count.
        let room = unsafe { *processSamplesCount } as usize;
        // SAFETY: as above.
        unsafe { *processSamplesCount = samples.len() as c_uint };
        if utilization.is_null() || room < samples.len() {
            return Err(INSUFFICIENT_SIZE);
        }
        for (k, s) in samples.into_iter().enumerate() {
            // SAFETY: `utilization` holds `room` >= samples.len() entries.
            unsafe { utilization.add(k).write(s) };
        }
        Ok(())
    })
}

/// `nvmlDeviceGetClockInfo`: SM and graphics clocks of a physical GPU.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    type_: nvmlClockType_t,
    clock: *mut c_uint,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g)
            if type_ == nvmlClockType_enum_NVML_CLOCK_SM
                || type_ == nvmlClockType_enum_NVML_CLOCK_GRAPHICS =>
        {
            put(clock, n.step(g).sm_clock_mhz)
        }
        Handle::Gpu(_) => Err(NOT_SUPPORTED),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetPowerUsage` (physical GPUs).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power: *mut c_uint) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => put(power, n.step(g).power_mw),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetCurrentClocksThrottleReasons` (physical GPUs).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    clocksThrottleReasons: *mut c_ulonglong,
) -> Ret {
    with_node(|n| match n.resolve(device)? {
        Handle::Gpu(g) => put(clocksThrottleReasons, n.step(g).throttle_reasons),
        _ => Err(NOT_SUPPORTED),
    })
}

/// `nvmlDeviceGetCurrentClocksEventReasons`: the newer name of the same query.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    clocksEventReasons: *mut c_ulonglong,
) -> Ret {
    // SAFETY: same contract as the function called.
    unsafe { nvmlDeviceGetCurrentClocksThrottleReasons(device, clocksEventReasons) }
}

/// A state-changing function was called: write its name down and refuse.
fn violation(name: &str) -> Ret {
    eprintln!("nvml-standin: read-only violated: {name} was called");
    let file = std::env::var_os(VIOLATIONS_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| lib().violations_file.clone());
    if let Some(file) = file {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{name}"));
        if let Err(e) = written {
            eprintln!("nvml-standin: cannot write {}: {e}", file.display());
        }
    }
    NO_PERMISSION
}

/// Exports each state-changing NVML function as a refusal that records the call. The
/// arguments are not declared: under the C calling conventions of the supported targets the
/// caller owns the argument area, so a function that reads none of its arguments may be
/// called with any of them.
macro_rules! setters {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($name), "`: changes state, so it is refused and recorded.")]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name() -> Ret {
                violation(stringify!($name))
            }
        )*
        /// Every state-changing function exported (and refused).
        pub const SETTERS: &[&str] = &[$(stringify!($name)),*];
    };
}

// Every function of nvml-wrapper-sys 0.10's NVML that changes a GPU, the driver or the
// system (set, reset, clear, create, destroy, modify, remove, discover, activate, write).
setters!(
    nvmlComputeInstanceDestroy,
    nvmlDeviceClearAccountingPids,
    nvmlDeviceClearCpuAffinity,
    nvmlDeviceClearEccErrorCounts,
    nvmlDeviceClearFieldValues,
    nvmlDeviceCreateGpuInstance,
    nvmlDeviceCreateGpuInstanceWithPlacement,
    nvmlDeviceDiscoverGpus,
    nvmlDeviceModifyDrainState,
    nvmlDevicePowerSmoothingActivatePresetProfile,
    nvmlDevicePowerSmoothingSetState,
    nvmlDevicePowerSmoothingUpdatePresetProfileParam,
    nvmlDeviceReadWritePRM_v1,
    nvmlDeviceRemoveGpu_v2,
    nvmlDeviceResetApplicationsClocks,
    nvmlDeviceResetGpuLockedClocks,
    nvmlDeviceResetMemoryLockedClocks,
    nvmlDeviceResetNvLinkErrorCounters,
    nvmlDeviceResetNvLinkUtilizationCounter,
    nvmlDeviceSetAPIRestriction,
    nvmlDeviceSetAccountingMode,
    nvmlDeviceSetApplicationsClocks,
    nvmlDeviceSetAutoBoostedClocksEnabled,
    nvmlDeviceSetClockOffsets,
    nvmlDeviceSetComputeMode,
    nvmlDeviceSetConfComputeUnprotectedMemSize,
    nvmlDeviceSetCpuAffinity,
    nvmlDeviceSetDefaultAutoBoostedClocksEnabled,
    nvmlDeviceSetDefaultFanSpeed_v2,
    nvmlDeviceSetDramEncryptionMode,
    nvmlDeviceSetDriverModel,
    nvmlDeviceSetEccMode,
    nvmlDeviceSetFanControlPolicy,
    nvmlDeviceSetFanSpeed_v2,
    nvmlDeviceSetGpcClkVfOffset,
    nvmlDeviceSetGpuLockedClocks,
    nvmlDeviceSetGpuOperationMode,
    nvmlDeviceSetMemClkVfOffset,
    nvmlDeviceSetMemoryLockedClocks,
    nvmlDeviceSetMigMode,
    nvmlDeviceSetNvLinkDeviceLowPowerThreshold,
    nvmlDeviceSetNvLinkUtilizationControl,
    nvmlDeviceSetNvlinkBwMode,
    nvmlDeviceSetPersistenceMode,
    nvmlDeviceSetPowerManagementLimit,
    nvmlDeviceSetPowerManagementLimit_v2,
    nvmlDeviceSetPowerMizerMode_v1,
    nvmlDeviceSetTemperatureThreshold,
    nvmlDeviceSetVgpuCapabilities,
    nvmlDeviceSetVgpuHeterogeneousMode,
    nvmlDeviceSetVgpuSchedulerState,
    nvmlDeviceSetVirtualizationMode,
    nvmlDeviceWorkloadPowerProfileClearRequestedProfiles,
    nvmlDeviceWorkloadPowerProfileSetRequestedProfiles,
    nvmlGpmSetStreamingEnabled,
    nvmlGpuInstanceCreateComputeInstance,
    nvmlGpuInstanceCreateComputeInstanceWithPlacement,
    nvmlGpuInstanceDestroy,
    nvmlGpuInstanceSetVgpuHeterogeneousMode,
    nvmlGpuInstanceSetVgpuSchedulerState,
    nvmlSetVgpuVersion,
    nvmlSystemSetConfComputeGpusReadyState,
    nvmlSystemSetConfComputeKeyRotationThresholdInfo,
    nvmlSystemSetNvlinkBwMode,
    nvmlUnitSetLedState,
    nvmlVgpuInstanceClearAccountingPids,
    nvmlVgpuInstanceSetEncoderCapacity,
);

/// Checked at compile time, never called: each read export has the exact signature that
/// nvml-wrapper-sys (and so nvml-wrapper) calls it with.
#[allow(dead_code)]
fn signatures_match_the_bindings(lib: &NvmlLib) {
    fn same<T, E>(_: &Result<T, E>, _: T) {}
    same(&lib.nvmlInit_v2, nvmlInit_v2);
    same(&lib.nvmlInitWithFlags, nvmlInitWithFlags);
    same(&lib.nvmlShutdown, nvmlShutdown);
    same(&lib.nvmlErrorString, nvmlErrorString);
    same(&lib.nvmlSystemGetDriverVersion, nvmlSystemGetDriverVersion);
    same(
        &lib.nvmlSystemGetCudaDriverVersion,
        nvmlSystemGetCudaDriverVersion,
    );
    same(
        &lib.nvmlSystemGetCudaDriverVersion_v2,
        nvmlSystemGetCudaDriverVersion_v2,
    );
    same(&lib.nvmlSystemGetProcessName, nvmlSystemGetProcessName);
    same(&lib.nvmlDeviceGetCount_v2, nvmlDeviceGetCount_v2);
    same(
        &lib.nvmlDeviceGetHandleByIndex_v2,
        nvmlDeviceGetHandleByIndex_v2,
    );
    same(&lib.nvmlDeviceGetIndex, nvmlDeviceGetIndex);
    same(&lib.nvmlDeviceGetName, nvmlDeviceGetName);
    same(&lib.nvmlDeviceGetUUID, nvmlDeviceGetUUID);
    same(&lib.nvmlDeviceGetPciInfo_v3, nvmlDeviceGetPciInfo_v3);
    same(&lib.nvmlDeviceGetMemoryInfo_v2, nvmlDeviceGetMemoryInfo_v2);
    same(&lib.nvmlDeviceGetAttributes_v2, nvmlDeviceGetAttributes_v2);
    same(&lib.nvmlDeviceGetMigMode, nvmlDeviceGetMigMode);
    same(
        &lib.nvmlDeviceGetMaxMigDeviceCount,
        nvmlDeviceGetMaxMigDeviceCount,
    );
    same(
        &lib.nvmlDeviceGetMigDeviceHandleByIndex,
        nvmlDeviceGetMigDeviceHandleByIndex,
    );
    same(
        &lib.nvmlDeviceIsMigDeviceHandle,
        nvmlDeviceIsMigDeviceHandle,
    );
    same(
        &lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
        nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
    );
    same(&lib.nvmlDeviceGetGpuInstanceId, nvmlDeviceGetGpuInstanceId);
    same(
        &lib.nvmlDeviceGetComputeInstanceId,
        nvmlDeviceGetComputeInstanceId,
    );
    same(
        &lib.nvmlDeviceGetGpuInstanceById,
        nvmlDeviceGetGpuInstanceById,
    );
    same(&lib.nvmlGpuInstanceGetInfo, nvmlGpuInstanceGetInfo);
    same(
        &lib.nvmlDeviceGetComputeRunningProcesses_v3,
        nvmlDeviceGetComputeRunningProcesses_v3,
    );
    same(
        &lib.nvmlDeviceGetUtilizationRates,
        nvmlDeviceGetUtilizationRates,
    );
    same(
        &lib.nvmlDeviceGetProcessUtilization,
        nvmlDeviceGetProcessUtilization,
    );
    same(&lib.nvmlDeviceGetClockInfo, nvmlDeviceGetClockInfo);
    same(&lib.nvmlDeviceGetPowerUsage, nvmlDeviceGetPowerUsage);
    same(
        &lib.nvmlDeviceGetCurrentClocksThrottleReasons,
        nvmlDeviceGetCurrentClocksThrottleReasons,
    );
    same(
        &lib.nvmlDeviceGetCurrentClocksEventReasons,
        nvmlDeviceGetCurrentClocksEventReasons,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_are_never_null() {
        for h in [
            Handle::Gpu(0),
            Handle::Gpu(7),
            Handle::Mig(3, 0),
            Handle::Mig(0, 6),
            Handle::GpuInstance(1, 0),
            Handle::GpuInstance(1, 13),
        ] {
            assert_ne!(h.encode(), 0);
            assert_eq!(Handle::decode(h.encode()), Some(h));
        }
        assert_eq!(Handle::decode(0), None);
        assert_eq!(Handle::decode(0xdead_beef_0000), None);
    }

    #[test]
    fn strings_that_do_not_fit_answer_insufficient_size() {
        let mut buf = [0 as c_char; 4];
        assert_eq!(put_str("abcd", buf.as_mut_ptr(), 4), Err(INSUFFICIENT_SIZE));
        assert_eq!(put_str("abc", buf.as_mut_ptr(), 4), Ok(()));
        assert_eq!(buf, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
    }

    #[test]
    fn the_setters_list_has_no_read_function_and_no_duplicate() {
        let mut seen = std::collections::BTreeSet::new();
        for s in SETTERS {
            assert!(seen.insert(*s), "{s} twice");
            assert!(!s.contains("Get"), "{s} reads");
        }
        assert!(SETTERS.contains(&"nvmlDeviceSetMigMode"));
    }
}
