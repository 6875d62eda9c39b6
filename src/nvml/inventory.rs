//! The node's inventory read through [`Nvml`]: driver and CUDA versions, each GPU's identity,
//! memory, SMs, MIG mode, MIG devices (profile, GPU instance, placement) and processes.
//!
//! Only the GPU count and each device's name and UUID are required; anything else NVML cannot
//! give is kept as an absent [`Metric`] with NVML's reason.

use super::recording::{
    GpuInfo, GpuInstanceRec, Metric, MigDeviceInfo, MigModeRec, Node, ProcessRec,
};
use super::{
    CallResult, Dev, Nvml, NvmlError, call, cuda_version_string, mig_profile_from_name,
    pci_id_string,
};

/// The reason written for a process whose memory NVML reports as not available.
pub const MEMORY_NOT_AVAILABLE: &str =
    "NotAvailable: NVML reports this process's memory as not available";

/// Read the node's inventory.
pub fn collect(nvml: &dyn Nvml) -> Result<Node, NvmlError> {
    let count = nvml.device_count().map_err(call("count the GPUs"))?;
    let mut gpus = Vec::new();
    for i in 0..count {
        let d = Dev::Gpu(i);
        let name = nvml
            .name(d)
            .map_err(call(format!("read the name of GPU {i}")))?;
        let uuid = nvml
            .uuid(d)
            .map_err(call(format!("read the UUID of GPU {i}")))?;
        let mig_mode = nvml.mig_mode(i).map(|m| MigModeRec {
            current: m.current,
            pending: m.pending,
        });
        let mig_devices = match mig_mode {
            Ok(m) if m.current => mig_devices(nvml, i)?,
            _ => Vec::new(),
        };
        gpus.push(GpuInfo {
            index: i,
            name,
            uuid,
            pci_device_id: Metric::from_call(nvml.pci_device_id(i).map(pci_id_string)),
            memory_total_bytes: Metric::from_call(nvml.memory(d).map(|m| m.total)),
            sms: Metric::from_call(nvml.sm_count(d)),
            mig_mode: Metric::from_call(mig_mode),
            mig_devices,
            processes: Metric::from_call(processes(nvml, d)),
        });
    }
    Ok(Node {
        driver_version: Metric::from_call(nvml.driver_version()),
        cuda_version: Metric::from_call(nvml.cuda_driver_version().map(cuda_version_string)),
        gpus,
    })
}

/// The MIG devices of GPU `gpu` (in MIG mode), in index order.
fn mig_devices(nvml: &dyn Nvml, gpu: u32) -> Result<Vec<MigDeviceInfo>, NvmlError> {
    let slots = nvml
        .mig_slots(gpu)
        .map_err(call(format!("count the MIG device slots of GPU {gpu}")))?;
    let mut out = Vec::new();
    for index in 0..slots {
        let present = nvml
            .mig_present(gpu, index)
            .map_err(call(format!("look up MIG device {index} of GPU {gpu}")))?;
        if !present {
            continue;
        }
        let d = Dev::Mig { gpu, index };
        let name = nvml
            .name(d)
            .map_err(call(format!("read the name of MIG device {gpu}:{index}")))?;
        let uuid = nvml
            .uuid(d)
            .map_err(call(format!("read the UUID of MIG device {gpu}:{index}")))?;
        let gi = nvml.gpu_instance(gpu, index).map(|g| GpuInstanceRec {
            id: g.id,
            compute_instance_id: g.compute_instance_id,
            profile_id: g.profile_id,
            placement_start: g.placement_start,
            placement_size: g.placement_size,
        });
        out.push(MigDeviceInfo {
            index,
            profile: mig_profile_from_name(&name),
            name,
            uuid,
            gpu_instance: Metric::from_call(gi),
            sms: Metric::from_call(nvml.sm_count(d)),
            memory_total_bytes: Metric::from_call(nvml.memory(d).map(|m| m.total)),
            processes: Metric::from_call(processes(nvml, d)),
        });
    }
    Ok(out)
}

/// The processes on `d` with their names and memory, by pid.
pub fn processes(nvml: &dyn Nvml, d: Dev) -> CallResult<Vec<ProcessRec>> {
    let mut list: Vec<ProcessRec> = nvml
        .processes(d)?
        .into_iter()
        .map(|p| ProcessRec {
            pid: p.pid,
            name: nvml.process_name(p.pid).ok(),
            used_memory_bytes: match p.used_bytes {
                Some(b) => Metric::of(b),
                None => Metric::absent(MEMORY_NOT_AVAILABLE),
            },
        })
        .collect();
    list.sort_by_key(|p| p.pid);
    Ok(list)
}
