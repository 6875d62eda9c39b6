//! The scripted node: a JSON file describing the GPUs, their MIG devices, processes and how
//! their values change over time. Read once at `nvmlInit`; every error names the file, the
//! field and what is allowed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// What `nvmlInit_v2` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// The driver is there.
    Ok,
    /// The library loads but no kernel driver runs (`NVML_ERROR_DRIVER_NOT_LOADED`).
    DriverNotLoaded,
    /// NVML may not talk to the driver (`NVML_ERROR_NO_PERMISSION`).
    NoPermission,
}

/// The whole node.
#[derive(Clone, Debug)]
pub struct Script {
    /// `nvmlSystemGetDriverVersion`.
    pub driver_version: String,
    /// `nvmlSystemGetCudaDriverVersion_v2`, e.g. 12040.
    pub cuda_version: i32,
    /// How initialisation goes.
    pub init: InitOutcome,
    /// Whether the caller has the privileges NVML asks for aggregate MIG values and GPU
    /// instance lookups (`false`: those calls answer `NVML_ERROR_NO_PERMISSION`).
    pub privileged: bool,
    /// Where a call to a setter is written down (also `GPUSHARE_NVML_STANDIN_VIOLATIONS`).
    pub violations_file: Option<PathBuf>,
    /// `nvmlSystemGetProcessName` by pid (a pid missing here answers `NVML_ERROR_NOT_FOUND`).
    pub process_names: BTreeMap<u32, String>,
    /// GPUs in NVML index order.
    pub gpus: Vec<Gpu>,
}

/// One physical GPU.
#[derive(Clone, Debug)]
pub struct Gpu {
    /// Product name.
    pub name: String,
    /// `GPU-...`.
    pub uuid: String,
    /// PCI location and ids.
    pub pci: Pci,
    /// Installed memory, bytes.
    pub memory_total_bytes: u64,
    /// MIG mode (current, pending); `None` for a GPU without MIG (`NVML_ERROR_NOT_SUPPORTED`).
    pub mig_mode: Option<(bool, bool)>,
    /// `nvmlDeviceGetMaxMigDeviceCount`.
    pub mig_slots: u32,
    /// MIG devices (only while MIG is enabled now).
    pub mig_devices: Vec<MigDevice>,
    /// Milliseconds after `nvmlInit` at which the GPU falls off the bus
    /// (`NVML_ERROR_GPU_IS_LOST` from then on).
    pub lost_after_ms: Option<u64>,
    /// Short-lived processes that appear between a process count and the fetch that follows.
    pub process_churn: Churn,
    /// What changes over time, in time order, the first at 0 ms.
    pub timeline: Vec<Step>,
}

/// Processes that start between the count query and the fetch of a process list.
#[derive(Clone, Copy, Debug, Default)]
pub struct Churn {
    /// How many appear.
    pub extra: u32,
    /// For how many fetches (then they are gone).
    pub fetches: u32,
}

/// PCI location and ids.
#[derive(Clone, Debug)]
pub struct Pci {
    /// `00000000:07:00.0`.
    pub bus_id: String,
    /// Domain, bus, device parsed from `bus_id`.
    pub domain: u32,
    /// Bus.
    pub bus: u32,
    /// Device.
    pub device: u32,
    /// Device id with the vendor in the low 16 bits, e.g. 0x20B210DE.
    pub device_id: u32,
    /// Subsystem id.
    pub subsystem_id: u32,
}

/// One MIG device (a compute instance of a GPU instance).
#[derive(Clone, Debug)]
pub struct MigDevice {
    /// MIG device index on its GPU.
    pub index: u32,
    /// Name, e.g. `NVIDIA A100-SXM4-80GB MIG 3g.40gb`.
    pub name: String,
    /// `MIG-...`.
    pub uuid: String,
    /// GPU instance id.
    pub gpu_instance_id: u32,
    /// Compute instance id.
    pub compute_instance_id: u32,
    /// Driver profile id (9 for 3g on A100).
    pub profile_id: u32,
    /// First memory slice.
    pub placement_start: u32,
    /// Memory slices.
    pub placement_size: u32,
    /// SMs.
    pub sms: u32,
    /// Memory, bytes.
    pub memory_total_bytes: u64,
}

/// The values from `t_ms` on, until the next step.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Milliseconds after `nvmlInit`.
    pub t_ms: u64,
    /// GPU and memory utilization, percent.
    pub utilization: (u32, u32),
    /// Memory allocated on the whole GPU (outside MIG mode), bytes.
    pub memory_used_bytes: u64,
    /// SM clock, MHz.
    pub sm_clock_mhz: u32,
    /// Power, mW.
    pub power_mw: u32,
    /// Clock throttle reasons, NVML's bit mask.
    pub throttle_reasons: u64,
    /// Processes on the whole GPU (outside MIG mode).
    pub processes: Vec<Proc>,
    /// Per-process utilization samples taken at this step: (pid, SM %, memory %).
    pub process_utilization: Vec<(u32, u32, u32)>,
    /// Per MIG device index: memory used and processes.
    pub mig: BTreeMap<u32, MigStep>,
}

/// A MIG device's values in a step.
#[derive(Clone, Debug, Default)]
pub struct MigStep {
    /// Memory used, bytes.
    pub memory_used_bytes: u64,
    /// Processes on it.
    pub processes: Vec<Proc>,
}

/// A process with a compute context.
#[derive(Clone, Copy, Debug)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Memory it holds (`None`: NVML reports it as not available).
    pub used_memory_bytes: Option<u64>,
}

/// NVML's clock throttle reason bits, by the names the script uses.
pub const THROTTLE_REASONS: &[(&str, u64)] = &[
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
];

/// Reads one JSON value at a key path, with errors naming the file and the path.
struct Reader<'a> {
    file: &'a Path,
}

type Res<T> = Result<T, String>;

impl Reader<'_> {
    fn err(&self, path: &str, what: impl std::fmt::Display) -> String {
        format!("{}: field `{path}`: {what}", self.file.display())
    }

    fn obj<'v>(&self, v: &'v Value, path: &str, allowed: &[&str]) -> Res<&'v Map<String, Value>> {
        let m = v
            .as_object()
            .ok_or_else(|| self.err(path, "expected an object"))?;
        if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(self.err(
                &join(path, k),
                format!("unknown field (allowed: {})", allowed.join(", ")),
            ));
        }
        Ok(m)
    }

    fn req<'v>(&self, m: &'v Map<String, Value>, path: &str, key: &str) -> Res<&'v Value> {
        m.get(key)
            .ok_or_else(|| self.err(&join(path, key), "missing (required)"))
    }

    fn string(&self, v: &Value, path: &str) -> Res<String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.err(path, "expected a string"))
    }

    fn u64(&self, v: &Value, path: &str) -> Res<u64> {
        v.as_u64()
            .ok_or_else(|| self.err(path, "expected a whole number >= 0"))
    }

    fn u32(&self, v: &Value, path: &str) -> Res<u32> {
        let n = self.u64(v, path)?;
        u32::try_from(n).map_err(|_| self.err(path, format!("{n} is above {}", u32::MAX)))
    }

    fn pct(&self, v: &Value, path: &str) -> Res<u32> {
        let n = self.u32(v, path)?;
        if n > 100 {
            return Err(self.err(path, format!("{n}: a percentage is 0 to 100")));
        }
        Ok(n)
    }

    fn bool(&self, v: &Value, path: &str) -> Res<bool> {
        v.as_bool()
            .ok_or_else(|| self.err(path, "expected true or false"))
    }

    fn hex32(&self, v: &Value, path: &str) -> Res<u32> {
        let s = self.string(v, path)?;
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
        digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.err(path, format!("\"{s}\": expected 0x and 8 hex digits")))
    }

    fn array<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Vec<Value>> {
        v.as_array()
            .ok_or_else(|| self.err(path, "expected an array"))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Read and check the script at `file`.
pub fn load(file: &Path) -> Res<Script> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read the script: {e}", file.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: line {} column {}: not JSON: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })?;
    parse(&value, file)
}

/// Check a script already parsed as JSON; `file` names it in errors.
pub fn parse(v: &Value, file: &Path) -> Res<Script> {
    let r = Reader { file };
    let top = r.obj(
        v,
        "",
        &[
            "driver_version",
            "cuda_version",
            "init",
            "privileged",
            "violations_file",
            "process_names",
            "gpus",
        ],
    )?;
    let init = match top.get("init").map(|v| r.string(v, "init")).transpose()? {
        None => InitOutcome::Ok,
        Some(s) => match s.as_str() {
            "ok" => InitOutcome::Ok,
            "driver_not_loaded" => InitOutcome::DriverNotLoaded,
            "no_permission" => InitOutcome::NoPermission,
            other => {
                return Err(r.err(
                    "init",
                    format!("\"{other}\": expected ok, driver_not_loaded or no_permission"),
                ));
            }
        },
    };
    let mut process_names = BTreeMap::new();
    if let Some(names) = top.get("process_names") {
        let m = names
            .as_object()
            .ok_or_else(|| r.err("process_names", "expected an object of pid: name"))?;
        for (pid, name) in m {
            let path = format!("process_names.{pid}");
            let pid: u32 = pid
                .parse()
                .map_err(|_| r.err(&path, "the key must be a process id"))?;
            process_names.insert(pid, r.string(name, &path)?);
        }
    }
    let gpus = r.array(r.req(top, "", "gpus")?, "gpus")?;
    let gpus = gpus
        .iter()
        .enumerate()
        .map(|(i, g)| gpu(&r, g, &format!("gpus[{i}]")))
        .collect::<Res<Vec<_>>>()?;
    let cuda = match top.get("cuda_version") {
        None => 12040,
        Some(v) => i32::try_from(r.u32(v, "cuda_version")?)
            .map_err(|_| r.err("cuda_version", "too large"))?,
    };
    Ok(Script {
        driver_version: match top.get("driver_version") {
            None => "550.54.15".into(),
            Some(v) => r.string(v, "driver_version")?,
        },
        cuda_version: cuda,
        init,
        privileged: match top.get("privileged") {
            None => true,
            Some(v) => r.bool(v, "privileged")?,
        },
        violations_file: top
            .get("violations_file")
            .map(|v| r.string(v, "violations_file").map(PathBuf::from))
            .transpose()?,
        process_names,
        gpus,
    })
}

fn gpu(r: &Reader, v: &Value, path: &str) -> Res<Gpu> {
    let m = r.obj(
        v,
        path,
        &[
            "name",
            "uuid",
            "pci",
            "memory_total_bytes",
            "mig_mode",
            "mig_slots",
            "mig_devices",
            "lost_after_ms",
            "process_churn",
            "timeline",
        ],
    )?;
    let p = |k: &str| join(path, k);
    let pci_path = p("pci");
    let pm = r.obj(
        r.req(m, path, "pci")?,
        &pci_path,
        &["bus_id", "device_id", "subsystem_id"],
    )?;
    let bus_id = r.string(r.req(pm, &pci_path, "bus_id")?, &join(&pci_path, "bus_id"))?;
    let (domain, bus, device) = parse_bus_id(&bus_id).ok_or_else(|| {
        r.err(
            &join(&pci_path, "bus_id"),
            format!("\"{bus_id}\": expected DDDDDDDD:BB:DD.F in hex, e.g. 00000000:07:00.0"),
        )
    })?;
    let pci = Pci {
        bus_id,
        domain,
        bus,
        device,
        device_id: r.hex32(
            r.req(pm, &pci_path, "device_id")?,
            &join(&pci_path, "device_id"),
        )?,
        subsystem_id: match pm.get("subsystem_id") {
            None => 0,
            Some(v) => r.hex32(v, &join(&pci_path, "subsystem_id"))?,
        },
    };
    let mig_mode = match m.get("mig_mode") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let mp = p("mig_mode");
            let mm = r.obj(v, &mp, &["current", "pending"])?;
            let current = r.bool(r.req(mm, &mp, "current")?, &join(&mp, "current"))?;
            let pending = match mm.get("pending") {
                None => current,
                Some(v) => r.bool(v, &join(&mp, "pending"))?,
            };
            Some((current, pending))
        }
    };
    let mig_slots = match m.get("mig_slots") {
        None => 7,
        Some(v) => r.u32(v, &p("mig_slots"))?,
    };
    let mut mig_devices = Vec::new();
    if let Some(list) = m.get("mig_devices") {
        let mp = p("mig_devices");
        for (i, d) in r.array(list, &mp)?.iter().enumerate() {
            let dp = format!("{mp}[{i}]");
            let dev = mig_device(r, d, &dp)?;
            if dev.index >= mig_slots {
                return Err(r.err(
                    &join(&dp, "index"),
                    format!(
                        "{}: the GPU has MIG device slots 0 to {}",
                        dev.index,
                        mig_slots.saturating_sub(1)
                    ),
                ));
            }
            if mig_devices.iter().any(|o: &MigDevice| o.index == dev.index) {
                return Err(r.err(&join(&dp, "index"), format!("{}: used twice", dev.index)));
            }
            mig_devices.push(dev);
        }
    }
    if !mig_devices.is_empty() && !mig_mode.is_some_and(|(current, _)| current) {
        return Err(r.err(
            &p("mig_devices"),
            "listed, but `mig_mode.current` is not true: a GPU has MIG devices only while MIG \
             is enabled now (a pending change takes effect at the next GPU reset)",
        ));
    }
    let process_churn = match m.get("process_churn") {
        None => Churn::default(),
        Some(v) => {
            let cp = p("process_churn");
            let cm = r.obj(v, &cp, &["extra", "fetches"])?;
            Churn {
                extra: r.u32(r.req(cm, &cp, "extra")?, &join(&cp, "extra"))?,
                fetches: r.u32(r.req(cm, &cp, "fetches")?, &join(&cp, "fetches"))?,
            }
        }
    };
    let mut timeline: Vec<Step> = Vec::new();
    if let Some(list) = m.get("timeline") {
        let tp = p("timeline");
        for (i, s) in r.array(list, &tp)?.iter().enumerate() {
            let sp = format!("{tp}[{i}]");
            let st = step(r, s, &sp)?;
            let ok = match timeline.last() {
                None => st.t_ms == 0,
                Some(prev) => st.t_ms > prev.t_ms,
            };
            if !ok {
                return Err(r.err(
                    &join(&sp, "t_ms"),
                    format!(
                        "{}: the first step is at 0 and each later one after the one before",
                        st.t_ms
                    ),
                ));
            }
            timeline.push(st);
        }
    }
    if timeline.is_empty() {
        timeline.push(Step::default());
    }
    Ok(Gpu {
        name: r.string(r.req(m, path, "name")?, &p("name"))?,
        uuid: r.string(r.req(m, path, "uuid")?, &p("uuid"))?,
        pci,
        memory_total_bytes: r.u64(
            r.req(m, path, "memory_total_bytes")?,
            &p("memory_total_bytes"),
        )?,
        mig_mode,
        mig_slots,
        mig_devices,
        lost_after_ms: m
            .get("lost_after_ms")
            .map(|v| r.u64(v, &p("lost_after_ms")))
            .transpose()?,
        process_churn,
        timeline,
    })
}

fn mig_device(r: &Reader, v: &Value, path: &str) -> Res<MigDevice> {
    let m = r.obj(
        v,
        path,
        &[
            "index",
            "name",
            "uuid",
            "gpu_instance_id",
            "compute_instance_id",
            "profile_id",
            "placement",
            "sms",
            "memory_total_bytes",
        ],
    )?;
    let p = |k: &str| join(path, k);
    let num = |k: &str| r.u32(r.req(m, path, k)?, &p(k));
    let placement = r.array(r.req(m, path, "placement")?, &p("placement"))?;
    let [start, size] = placement.as_slice() else {
        return Err(r.err(&p("placement"), "expected [start, size] in memory slices"));
    };
    Ok(MigDevice {
        index: num("index")?,
        name: r.string(r.req(m, path, "name")?, &p("name"))?,
        uuid: r.string(r.req(m, path, "uuid")?, &p("uuid"))?,
        gpu_instance_id: num("gpu_instance_id")?,
        compute_instance_id: num("compute_instance_id")?,
        profile_id: num("profile_id")?,
        placement_start: r.u32(start, &format!("{}[0]", p("placement")))?,
        placement_size: r.u32(size, &format!("{}[1]", p("placement")))?,
        sms: num("sms")?,
        memory_total_bytes: r.u64(
            r.req(m, path, "memory_total_bytes")?,
            &p("memory_total_bytes"),
        )?,
    })
}

fn step(r: &Reader, v: &Value, path: &str) -> Res<Step> {
    let m = r.obj(
        v,
        path,
        &[
            "t_ms",
            "utilization",
            "memory_used_bytes",
            "sm_clock_mhz",
            "power_mw",
            "throttle_reasons",
            "processes",
            "process_utilization",
            "mig",
        ],
    )?;
    let p = |k: &str| join(path, k);
    let opt_u32 = |k: &str| m.get(k).map(|v| r.u32(v, &p(k))).transpose();
    let utilization = match m.get("utilization") {
        None => (0, 0),
        Some(v) => {
            let up = p("utilization");
            let um = r.obj(v, &up, &["gpu", "memory"])?;
            (
                r.pct(r.req(um, &up, "gpu")?, &join(&up, "gpu"))?,
                r.pct(r.req(um, &up, "memory")?, &join(&up, "memory"))?,
            )
        }
    };
    let mut throttle_reasons = 0;
    if let Some(list) = m.get("throttle_reasons") {
        for (i, n) in r.array(list, &p("throttle_reasons"))?.iter().enumerate() {
            let np = format!("{}[{i}]", p("throttle_reasons"));
            let name = r.string(n, &np)?;
            let bit = THROTTLE_REASONS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    let known: Vec<&str> = THROTTLE_REASONS.iter().map(|(k, _)| *k).collect();
                    r.err(
                        &np,
                        format!("\"{name}\": expected one of {}", known.join(", ")),
                    )
                })?;
            throttle_reasons |= bit;
        }
    }
    let mut process_utilization = Vec::new();
    if let Some(list) = m.get("process_utilization") {
        let pp = p("process_utilization");
        for (i, s) in r.array(list, &pp)?.iter().enumerate() {
            let sp = format!("{pp}[{i}]");
            let sm = r.obj(s, &sp, &["pid", "sm", "memory"])?;
            process_utilization.push((
                r.u32(r.req(sm, &sp, "pid")?, &join(&sp, "pid"))?,
                r.pct(r.req(sm, &sp, "sm")?, &join(&sp, "sm"))?,
                r.pct(r.req(sm, &sp, "memory")?, &join(&sp, "memory"))?,
            ));
        }
    }
    let mut mig = BTreeMap::new();
    if let Some(list) = m.get("mig") {
        let mp = p("mig");
        for (i, d) in r.array(list, &mp)?.iter().enumerate() {
            let dp = format!("{mp}[{i}]");
            let dm = r.obj(d, &dp, &["index", "memory_used_bytes", "processes"])?;
            let index = r.u32(r.req(dm, &dp, "index")?, &join(&dp, "index"))?;
            mig.insert(
                index,
                MigStep {
                    memory_used_bytes: match dm.get("memory_used_bytes") {
                        None => 0,
                        Some(v) => r.u64(v, &join(&dp, "memory_used_bytes"))?,
                    },
                    processes: processes(r, dm.get("processes"), &join(&dp, "processes"))?,
                },
            );
        }
    }
    Ok(Step {
        t_ms: r.u64(r.req(m, path, "t_ms")?, &p("t_ms"))?,
        utilization,
        memory_used_bytes: m
            .get("memory_used_bytes")
            .map(|v| r.u64(v, &p("memory_used_bytes")))
            .transpose()?
            .unwrap_or(0),
        sm_clock_mhz: opt_u32("sm_clock_mhz")?.unwrap_or(1410),
        power_mw: opt_u32("power_mw")?.unwrap_or(60_000),
        throttle_reasons,
        processes: processes(r, m.get("processes"), &p("processes"))?,
        process_utilization,
        mig,
    })
}

fn processes(r: &Reader, v: Option<&Value>, path: &str) -> Res<Vec<Proc>> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    r.array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pp = format!("{path}[{i}]");
            let m = r.obj(p, &pp, &["pid", "used_memory_bytes"])?;
            Ok(Proc {
                pid: r.u32(r.req(m, &pp, "pid")?, &join(&pp, "pid"))?,
                used_memory_bytes: match m.get("used_memory_bytes") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(r.u64(v, &join(&pp, "used_memory_bytes"))?),
                },
            })
        })
        .collect()
}

/// `00000000:07:00.0` as (domain, bus, device).
fn parse_bus_id(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.split(':');
    let domain = u32::from_str_radix(parts.next()?, 16).ok()?;
    let bus = u32::from_str_radix(parts.next()?, 16).ok()?;
    let (dev, func) = parts.next()?.split_once('.')?;
    u32::from_str_radix(func, 16).ok()?;
    let device = u32::from_str_radix(dev, 16).ok()?;
    parts.next().is_none().then_some((domain, bus, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Res<Script> {
        parse(&serde_json::from_str(text).unwrap(), Path::new("node.json"))
    }

    const GPU: &str = r#"{"name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-1",
        "pci": {"bus_id": "00000000:07:00.0", "device_id": "0x20B210DE"},
        "memory_total_bytes": 85899345920"#;

    #[test]
    fn a_minimal_script_reads_with_defaults() {
        let s = check(&format!(r#"{{"gpus": [{GPU}}}]}}"#)).unwrap();
        assert_eq!(s.gpus[0].pci.bus, 7);
        assert_eq!(s.gpus[0].pci.device_id, 0x20B2_10DE);
        assert_eq!(s.gpus[0].mig_mode, None);
        assert_eq!(s.gpus[0].timeline.len(), 1);
        assert!(s.privileged);
    }

    #[test]
    fn errors_name_the_file_the_field_and_what_is_allowed() {
        let e = check(&format!(r#"{{"gpus": [{GPU}, "colour": 1}}]}}"#)).unwrap_err();
        assert!(
            e.starts_with("node.json: field `gpus[0].colour`: unknown field"),
            "{e}"
        );
        let e = check(&format!(
            r#"{{"gpus": [{GPU}, "timeline": [{{"t_ms": 0, "throttle_reasons": ["hot"]}}]}}]}}"#
        ))
        .unwrap_err();
        assert!(e.contains("gpus[0].timeline[0].throttle_reasons[0]"), "{e}");
        assert!(e.contains("sw_power_cap"), "{e}");
        let e = check(&format!(
            r#"{{"gpus": [{GPU}, "timeline": [{{"t_ms": 5}}]}}]}}"#
        ))
        .unwrap_err();
        assert!(e.contains("the first step is at 0"), "{e}");
    }

    #[test]
    fn mig_devices_need_mig_enabled_now() {
        let dev = r#"{"index": 0, "name": "x MIG 7g.80gb", "uuid": "MIG-1", "gpu_instance_id": 0,
            "compute_instance_id": 0, "profile_id": 0, "placement": [0, 8], "sms": 98,
            "memory_total_bytes": 1}"#;
        let e = check(&format!(
            r#"{{"gpus": [{GPU}, "mig_mode": {{"current": false, "pending": true}}, "mig_devices": [{dev}]}}]}}"#
        ))
        .unwrap_err();
        assert!(e.contains("only while MIG is enabled now"), "{e}");
        let ok = check(&format!(
            r#"{{"gpus": [{GPU}, "mig_mode": {{"current": true}}, "mig_devices": [{dev}]}}]}}"#
        ))
        .unwrap();
        assert_eq!(ok.gpus[0].mig_mode, Some((true, true)));
    }

    #[test]
    fn bus_ids_parse_as_hex() {
        assert_eq!(parse_bus_id("00000000:B7:00.0"), Some((0, 0xB7, 0)));
        assert_eq!(parse_bus_id("0000:07:00"), None);
    }
}
