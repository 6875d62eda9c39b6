//! A node replayed from a recording: answers the [`Nvml`] calls from the header (what does
//! not change) and from one sample at a time (what does; [`Nvml::refresh`] moves to the next,
//! staying on the last). Values the recording marks absent come back as the same
//! [`CallError`], so recording a replayed node writes the recording again.
//!
//! Tests use it as the fake NVML; `inventory --from` uses it to read a recorded node.

use super::recording::{GpuInfo, Metric, MigDeviceInfo, ProcessRec, Recording, Sample};
use super::{
    CallError, CallErrorKind, CallResult, Dev, GpuInstance, MemoryInfo, MigMode, Nvml, Process,
    ProcessUtilization, Utilization,
};

/// The node of a recording, as NVML would describe it.
pub struct RecordedNvml {
    rec: Recording,
    /// Index of the current sample (`None` before the first refresh).
    cursor: Option<usize>,
}

impl RecordedNvml {
    /// Replay `rec`.
    pub fn new(rec: Recording) -> Self {
        RecordedNvml { rec, cursor: None }
    }

    /// The recording replayed.
    pub fn recording(&self) -> &Recording {
        &self.rec
    }

    fn gpu(&self, i: u32) -> CallResult<&GpuInfo> {
        self.rec
            .gpu(i)
            .ok_or_else(|| CallError::new(CallErrorKind::Other, &format!("no GPU {i}")))
    }

    fn mig(&self, gpu: u32, index: u32) -> CallResult<&MigDeviceInfo> {
        self.gpu(gpu)?
            .mig_devices
            .iter()
            .find(|m| m.index == index)
            .ok_or_else(|| CallError::new(CallErrorKind::NotFound, ""))
    }

    fn sample(&self) -> Option<&Sample> {
        self.cursor.and_then(|c| self.rec.samples.get(c))
    }

    /// A dynamic value of GPU `i` in the current sample.
    fn now<T: Clone>(
        &self,
        i: u32,
        f: impl Fn(&super::recording::GpuSample) -> &Metric<T>,
    ) -> CallResult<T> {
        let s = self
            .sample()
            .ok_or_else(|| CallError::new(CallErrorKind::Other, "no sample yet"))?;
        let g = s
            .gpus
            .iter()
            .find(|g| g.index == i)
            .ok_or_else(|| CallError::new(CallErrorKind::Other, &format!("no GPU {i}")))?;
        f(g).to_call()
    }

    /// Every process record of the current sample (or of the header before the first).
    fn all_processes(&self) -> Vec<&ProcessRec> {
        let mut out = Vec::new();
        match self.sample() {
            Some(s) => {
                for g in &s.gpus {
                    out.extend(g.processes.get().into_iter().flatten());
                    for m in &g.mig_devices {
                        out.extend(m.processes.get().into_iter().flatten());
                    }
                }
            }
            None => {
                for g in &self.rec.header.node.gpus {
                    out.extend(g.processes.get().into_iter().flatten());
                    for m in &g.mig_devices {
                        out.extend(m.processes.get().into_iter().flatten());
                    }
                }
            }
        }
        out
    }
}

fn to_processes(list: &[ProcessRec]) -> Vec<Process> {
    list.iter()
        .map(|p| Process {
            pid: p.pid,
            used_bytes: p.used_memory_bytes.value,
        })
        .collect()
}

impl Nvml for RecordedNvml {
    fn refresh(&mut self) {
        let last = self.rec.samples.len().saturating_sub(1);
        self.cursor = Some(self.cursor.map_or(0, |c| (c + 1).min(last)));
    }

    fn driver_version(&self) -> CallResult<String> {
        self.rec.header.node.driver_version.to_call()
    }

    fn cuda_driver_version(&self) -> CallResult<i32> {
        let v = self.rec.header.node.cuda_version.to_call()?;
        let (major, minor) = v.split_once('.').unwrap_or((&v, "0"));
        match (major.parse::<i32>(), minor.parse::<i32>()) {
            (Ok(a), Ok(b)) => Ok(a * 1000 + b * 10),
            _ => Err(CallError::new(
                CallErrorKind::Other,
                &format!("unreadable CUDA version {v}"),
            )),
        }
    }

    fn device_count(&self) -> CallResult<u32> {
        Ok(self.rec.header.node.gpus.len() as u32)
    }

    fn name(&self, d: Dev) -> CallResult<String> {
        match d {
            Dev::Gpu(i) => Ok(self.gpu(i)?.name.clone()),
            Dev::Mig { gpu, index } => Ok(self.mig(gpu, index)?.name.clone()),
        }
    }

    fn uuid(&self, d: Dev) -> CallResult<String> {
        match d {
            Dev::Gpu(i) => Ok(self.gpu(i)?.uuid.clone()),
            Dev::Mig { gpu, index } => Ok(self.mig(gpu, index)?.uuid.clone()),
        }
    }

    fn pci_device_id(&self, gpu: u32) -> CallResult<u32> {
        let s = self.gpu(gpu)?.pci_device_id.to_call()?;
        u32::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16)
            .map_err(|_| CallError::new(CallErrorKind::Other, &format!("unreadable PCI id {s}")))
    }

    fn memory(&self, d: Dev) -> CallResult<MemoryInfo> {
        let (total, used) = match d {
            Dev::Gpu(i) => (
                self.gpu(i)?.memory_total_bytes.to_call()?,
                self.sample().map(|_| self.now(i, |g| &g.memory_used_bytes)),
            ),
            Dev::Mig { gpu, index } => {
                let total = self.mig(gpu, index)?.memory_total_bytes.to_call()?;
                let used = self.sample().map(|s| {
                    s.gpus
                        .iter()
                        .find(|g| g.index == gpu)
                        .and_then(|g| g.mig_devices.iter().find(|m| m.index == index))
                        .ok_or_else(|| CallError::new(CallErrorKind::NotFound, ""))
                        .and_then(|m| m.memory_used_bytes.to_call())
                });
                (total, used)
            }
        };
        // Before the first sample a recorded node reports its totals only.
        Ok(MemoryInfo {
            total,
            used: used.transpose()?.unwrap_or(0),
        })
    }

    fn sm_count(&self, d: Dev) -> CallResult<u32> {
        match d {
            Dev::Gpu(i) => self.gpu(i)?.sms.to_call(),
            Dev::Mig { gpu, index } => self.mig(gpu, index)?.sms.to_call(),
        }
    }

    fn mig_mode(&self, gpu: u32) -> CallResult<MigMode> {
        let m = self.gpu(gpu)?.mig_mode.to_call()?;
        Ok(MigMode {
            current: m.current,
            pending: m.pending,
        })
    }

    fn mig_slots(&self, gpu: u32) -> CallResult<u32> {
        Ok(self
            .gpu(gpu)?
            .mig_devices
            .iter()
            .map(|m| m.index + 1)
            .max()
            .unwrap_or(0))
    }

    fn mig_present(&self, gpu: u32, index: u32) -> CallResult<bool> {
        Ok(self.mig(gpu, index).is_ok())
    }

    fn gpu_instance(&self, gpu: u32, index: u32) -> CallResult<GpuInstance> {
        let g = self.mig(gpu, index)?.gpu_instance.to_call()?;
        Ok(GpuInstance {
            id: g.id,
            compute_instance_id: g.compute_instance_id,
            profile_id: g.profile_id,
            placement_start: g.placement_start,
            placement_size: g.placement_size,
        })
    }

    fn processes(&self, d: Dev) -> CallResult<Vec<Process>> {
        let list = match (d, self.sample()) {
            (Dev::Gpu(i), None) => self.gpu(i)?.processes.to_call()?,
            (Dev::Mig { gpu, index }, None) => self.mig(gpu, index)?.processes.to_call()?,
            (Dev::Gpu(i), Some(_)) => self.now(i, |g| &g.processes)?,
            (Dev::Mig { gpu, index }, Some(s)) => s
                .gpus
                .iter()
                .find(|g| g.index == gpu)
                .and_then(|g| g.mig_devices.iter().find(|m| m.index == index))
                .ok_or_else(|| CallError::new(CallErrorKind::NotFound, ""))?
                .processes
                .to_call()?,
        };
        Ok(to_processes(&list))
    }

    fn process_name(&self, pid: u32) -> CallResult<String> {
        self.all_processes()
            .into_iter()
            .find(|p| p.pid == pid)
            .and_then(|p| p.name.clone())
            .ok_or_else(|| CallError::new(CallErrorKind::NotFound, "no name recorded"))
    }

    fn utilization(&self, gpu: u32) -> CallResult<Utilization> {
        Ok(Utilization {
            gpu_pct: self.now(gpu, |g| &g.utilization_gpu_pct)?,
            memory_pct: self.now(gpu, |g| &g.utilization_memory_pct)?,
        })
    }

    fn process_utilization(&self, gpu: u32, _since_us: u64) -> CallResult<Vec<ProcessUtilization>> {
        // A recording already holds, per sample, the samples since the previous one.
        Ok(self
            .now(gpu, |g| &g.process_utilization)?
            .into_iter()
            .map(|p| ProcessUtilization {
                pid: p.pid,
                timestamp_us: p.timestamp_us,
                sm_pct: p.sm_pct,
                memory_pct: p.memory_pct,
            })
            .collect())
    }

    fn sm_clock_mhz(&self, gpu: u32) -> CallResult<u32> {
        self.now(gpu, |g| &g.sm_clock_mhz)
    }

    fn power_mw(&self, gpu: u32) -> CallResult<u32> {
        self.now(gpu, |g| &g.power_mw)
    }

    fn throttle_reasons(&self, gpu: u32) -> CallResult<Vec<String>> {
        self.now(gpu, |g| &g.throttle_reasons)
    }
}
