//! What a recording says about the device a model ran on, over the time its request log
//! covers: which GPU (and MIG device) it was, how busy its kernels kept it, and how much
//! memory its processes held.

use std::path::Path;

use super::CalibrateError;
use super::cluster::{match_gpu, profile_of};
use super::requests::RequestLog;
use crate::error::InputError;
use crate::hardware::{Catalogue, GpuSpec};
use crate::nvml::recording::{GpuInfo, MigDeviceInfo, ProcessRec, Recording};

/// Unix nanoseconds of 2000-01-01: log times above this are taken as Unix time.
const UNIX_2000_NS: i128 = 946_684_800_000_000_000;

/// Which device of a recording a model ran on.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The GPU.
    pub gpu: GpuInfo,
    /// The MIG device, when the GPU is in MIG mode.
    pub mig: Option<MigDeviceInfo>,
    /// Its catalogue MIG profile (`None`: the whole GPU).
    pub profile: Option<String>,
}

impl Device {
    /// `GPU 0` or `GPU 0, MIG device 1 (3g.40gb)`.
    pub fn describe(&self) -> String {
        match (&self.mig, &self.profile) {
            (Some(m), Some(p)) => format!("GPU {}, MIG device {} ({p})", self.gpu.index, m.index),
            _ => format!("GPU {}", self.gpu.index),
        }
    }
}

/// An error about the recording's header (line 1).
fn header_error(rec: &Recording, what: String) -> CalibrateError {
    CalibrateError::Input(InputError::Parse {
        path: rec.path.clone(),
        message: format!("line 1: {what}"),
    })
}

fn gpu_list(rec: &Recording, cat: &Catalogue) -> String {
    rec.header
        .node
        .gpus
        .iter()
        .map(|g| {
            format!(
                "{}: {} ({}, {})",
                g.index,
                g.name,
                g.pci_device_id.get().map_or("?", String::as_str),
                match_gpu(cat, g).map_or("not in the catalogue", |(s, _)| s.key.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The device of `rec` the model ran on: `device` (`(gpu, mig device)`) if given, else the
/// first GPU of type `spec` (and its MIG device of profile `mig`). A recording with no GPU of
/// that type is an error naming the file: it was made on another GPU.
pub fn select(
    rec: &Recording,
    cat: &Catalogue,
    spec: &GpuSpec,
    mig: Option<&str>,
    device: Option<(u32, Option<u32>)>,
) -> Result<Device, CalibrateError> {
    let is_type = |g: &GpuInfo| match_gpu(cat, g).is_some_and(|(s, _)| s.key == spec.key);
    let gpu = match device {
        Some((i, _)) => {
            let g = rec.gpu(i).ok_or_else(|| {
                header_error(
                    rec,
                    format!("--device {i}: the recording has GPUs {}", gpu_list(rec, cat)),
                )
            })?;
            if !is_type(g) {
                return Err(header_error(
                    rec,
                    format!(
                        "GPU {i} of the recording is {} ({}), not of type {}: the recording is \
                         from another GPU. Fit with --gpu set to its type, or use a recording of the \
                         GPU the request log was taken on",
                        g.name,
                        g.pci_device_id.get().map_or("?", String::as_str),
                        spec.key
                    ),
                ));
            }
            g
        }
        None => rec.header.node.gpus.iter().find(|g| is_type(g)).ok_or_else(|| {
            header_error(
                rec,
                format!(
                    "the recording was made on GPUs {}; none is of type {}: it is from another GPU. \
                     Fit with --gpu set to the type the log was measured on, or use a recording \
                     of that GPU",
                    gpu_list(rec, cat),
                    spec.key
                ),
            )
        })?,
    };
    let mig_on = gpu.mig_mode.get().is_some_and(|m| m.current);
    if !mig_on {
        if let Some(p) = mig {
            return Err(CalibrateError::Usage(format!(
                "--mig {p}: GPU {} of {} is not in MIG mode; leave --mig out to fit on the \
                 whole GPU",
                gpu.index,
                rec.path.display()
            )));
        }
        if let Some((_, Some(m))) = device {
            return Err(CalibrateError::Usage(format!(
                "--device {}:{m}: GPU {} is not in MIG mode",
                gpu.index, gpu.index
            )));
        }
        return Ok(Device {
            gpu: gpu.clone(),
            mig: None,
            profile: None,
        });
    }
    let with_profile: Vec<(&MigDeviceInfo, String)> = gpu
        .mig_devices
        .iter()
        .filter_map(|m| profile_of(m, spec).ok().map(|p| (m, p)))
        .collect();
    let listed = || {
        with_profile
            .iter()
            .map(|(m, p)| format!("{}:{} ({p})", gpu.index, m.index))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pick = match (device.and_then(|d| d.1), mig) {
        (Some(idx), want) => {
            let found = with_profile.iter().find(|(m, _)| m.index == idx);
            match (found, want) {
                (Some((_, p)), Some(w)) if !p.eq_ignore_ascii_case(w) => {
                    return Err(CalibrateError::Usage(format!(
                        "--device {}:{idx} is a {p} instance, not {w}",
                        gpu.index
                    )));
                }
                (Some(x), _) => x.clone(),
                (None, _) => {
                    return Err(CalibrateError::Usage(format!(
                        "--device {}:{idx}: no such MIG device; the GPU has {}",
                        gpu.index,
                        listed()
                    )));
                }
            }
        }
        (None, Some(w)) => with_profile
            .iter()
            .find(|(_, p)| p.eq_ignore_ascii_case(w))
            .cloned()
            .ok_or_else(|| {
                CalibrateError::Usage(format!(
                    "--mig {w}: GPU {} has no such instance; it has {}",
                    gpu.index,
                    listed()
                ))
            })?,
        (None, None) if with_profile.len() == 1 => with_profile[0].clone(),
        (None, None) => {
            return Err(CalibrateError::Usage(format!(
                "GPU {} of {} is in MIG mode: say which instance the model ran on with --mig \
                 PROFILE or --device GPU:MIG (it has {})",
                gpu.index,
                rec.path.display(),
                listed()
            )));
        }
    };
    Ok(Device {
        gpu: gpu.clone(),
        mig: Some(pick.0.clone()),
        profile: Some(pick.1),
    })
}

/// What the recording measured on a device over the log's time.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Mean percent of NVML's sample periods with a kernel running, as a fraction, over the
    /// samples used (`None` on MIG, where NVML has no utilization).
    pub busy: Option<f64>,
    /// Why `busy` is absent.
    pub busy_absent: Option<String>,
    /// The time `busy` covers on the log's clock (Unix ns), when the two line up.
    pub busy_window: Option<(i128, i128)>,
    /// Most memory the device's processes (or `pid`) held in one sample, bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Samples used.
    pub samples: usize,
    /// How the samples were chosen (the log's window, or the whole recording).
    pub window: String,
    /// Notes for the user.
    pub warnings: Vec<String>,
}

/// Summarise `rec` on `dev` over the time `log` covers (when the log's clock is Unix time;
/// otherwise over the whole recording, with a warning).
pub fn measure(rec: &Recording, dev: &Device, log: &RequestLog, pid: Option<u32>) -> Measured {
    let mut warnings = Vec::new();
    let (first, last) = log.span_ns();
    let start = rec.started_unix_ns();
    let period = i128::from(rec.header.interval_ms) * 1_000_000;
    let in_window: Vec<usize> = match start {
        Some(s) if first >= UNIX_2000_NS => rec
            .samples
            .iter()
            .enumerate()
            .filter(|(_, x)| {
                // A sample describes the interval before it: keep those wholly inside the log.
                let t = s + i128::from(x.t_ms) * 1_000_000;
                t - period >= first && t <= last
            })
            .map(|(i, _)| i)
            .collect(),
        _ => Vec::new(),
    };
    let aligned = start.is_some() && first >= UNIX_2000_NS;
    let busy_window = match (start, in_window.first(), in_window.last()) {
        (Some(s), Some(&a), Some(&b)) if aligned => Some((
            s + i128::from(rec.samples[a].t_ms) * 1_000_000 - period,
            s + i128::from(rec.samples[b].t_ms) * 1_000_000,
        )),
        _ => None,
    };
    let (use_idx, window) = if aligned && !in_window.is_empty() {
        (
            in_window,
            format!(
                "the request log's span ({:.1} s)",
                (last - first) as f64 / 1e9
            ),
        )
    } else {
        if aligned {
            warnings.push(format!(
                "{}: no sample falls within the request log's time span ({} ..{} s Unix time): \
                 the recording was made at another time; its busy fraction and memory are \
                 those of the whole recording",
                rec.path.display(),
                first / 1_000_000_000,
                last / 1_000_000_000
            ));
        } else {
            warnings.push(format!(
                "{}: its times are not Unix time, so the recording cannot be lined up with it; \
                 the busy fraction and memory are those of the whole recording",
                file(&log.path)
            ));
        }
        (
            (0..rec.samples.len()).collect(),
            "the whole recording".to_string(),
        )
    };
    let gpu_samples: Vec<_> = use_idx
        .iter()
        .filter_map(|&i| {
            rec.samples[i]
                .gpus
                .iter()
                .find(|g| g.index == dev.gpu.index)
        })
        .collect();
    // Busy fraction: whole-GPU utilization (none on MIG).
    let utils: Vec<f64> = gpu_samples
        .iter()
        .filter_map(|g| g.utilization_gpu_pct.get().map(|u| f64::from(*u) / 100.0))
        .collect();
    let (busy, busy_absent) = if dev.mig.is_some() {
        (
            None,
            Some(
                "the model ran on a MIG instance: NVML has no utilization per instance (DCGM \
                 has)"
                    .to_string(),
            ),
        )
    } else if utils.is_empty() {
        let why = gpu_samples
            .iter()
            .find_map(|g| g.utilization_gpu_pct.unsupported.clone())
            .unwrap_or_else(|| "no samples".into());
        (
            None,
            Some(format!("no utilization in the recording ({why})")),
        )
    } else {
        (Some(utils.iter().sum::<f64>() / utils.len() as f64), None)
    };
    // Memory: the device's processes (or `pid`), summed per sample, peak over samples.
    let held = |list: &[ProcessRec]| -> Option<u64> {
        let chosen: Vec<u64> = list
            .iter()
            .filter(|p| pid.is_none_or(|x| x == p.pid))
            .filter_map(|p| p.used_memory_bytes.get().copied())
            .collect();
        (!chosen.is_empty()).then(|| chosen.iter().sum())
    };
    let peak = gpu_samples
        .iter()
        .filter_map(|g| match &dev.mig {
            Some(m) => g
                .mig_devices
                .iter()
                .find(|x| x.index == m.index)
                .and_then(|x| x.processes.get())
                .and_then(|l| held(l)),
            None => g.processes.get().and_then(|l| held(l)),
        })
        .max();
    Measured {
        busy_window: busy.and(busy_window),
        busy,
        busy_absent,
        memory_peak_bytes: peak,
        samples: gpu_samples.len(),
        window,
        warnings,
    }
}

fn file(p: &Path) -> String {
    super::commands::file_name(p)
}
