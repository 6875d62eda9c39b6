//! The recording format: JSON Lines, one header record, then samples, then an end record.
//!
//! ```text
//! {"record":"header","format":"gpushare-nvml-recording","version":1,"tool":"gpushare 0.1.0",
//!  "started_at":"2026-05-04T09:00:00.000Z","interval_ms":1000,"node":{...}}
//! {"record":"sample","t_ms":0,"gpus":[{...}]}
//! {"record":"end","t_ms":60000,"samples":61,"stopped_by":"duration"}
//! ```
//!
//! The header's `node` is the inventory ([`Node`]). Every value NVML may fail to give is a
//! [`Metric`]: `{"value": 42}`, or `{"value": null, "unsupported": "NotSupported on MIG-enabled
//! GPUs: ..."}`; an unsupported metric is never written as zero. `docs/calibration.md` lists
//! every field.
//!
//! **Invariant:** a loaded [`Recording`] has a header, samples whose `t_ms` never decrease, and
//! per sample exactly the header's GPUs in the header's order. A bad line is an
//! [`InputError`] naming the file, the line and the field.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{CallError, CallResult};
use crate::error::InputError;

/// The `format` of a recording's header.
pub const FORMAT: &str = "gpushare-nvml-recording";

/// The `version` of the format this build writes and reads.
pub const VERSION: u32 = 1;

/// A value NVML gave, or why it gave none.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric<T> {
    /// The value (`None` exactly when `unsupported` says why).
    pub value: Option<T>,
    /// Why there is no value (an NVML error name first, e.g. `NotSupported ...`).
    pub unsupported: Option<String>,
}

impl<T> Metric<T> {
    /// A value.
    pub fn of(value: T) -> Self {
        Metric {
            value: Some(value),
            unsupported: None,
        }
    }

    /// No value, for `reason`.
    pub fn absent(reason: impl Into<String>) -> Self {
        Metric {
            value: None,
            unsupported: Some(reason.into()),
        }
    }

    /// The outcome of an NVML call.
    pub fn from_call(r: CallResult<T>) -> Self {
        match r {
            Ok(v) => Metric::of(v),
            Err(e) => Metric::absent(e.message),
        }
    }

    /// The value, if there is one.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The metric as the NVML call that gave it (for replaying a recording).
    pub fn to_call(&self) -> CallResult<T>
    where
        T: Clone,
    {
        match (&self.value, &self.unsupported) {
            (Some(v), _) => Ok(v.clone()),
            (None, reason) => Err(CallError::from_reason(reason.as_deref().unwrap_or(""))),
        }
    }

    /// The value mapped, or the same reason.
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Metric<U> {
        Metric {
            value: self.value.as_ref().map(f),
            unsupported: self.unsupported.clone(),
        }
    }
}

impl<T: Serialize> Serialize for Metric<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("value", &self.value)?;
        if let Some(r) = &self.unsupported {
            m.serialize_entry("unsupported", r)?;
        }
        m.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Metric<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<T> {
            value: Option<T>,
            #[serde(default)]
            unsupported: Option<String>,
        }
        let raw = Raw::<T>::deserialize(d)?;
        match (&raw.value, &raw.unsupported) {
            (Some(_), Some(_)) => Err(D::Error::custom(
                "a metric has a `value` or says why it is `unsupported`, not both",
            )),
            (None, None) => Err(D::Error::custom(
                "`value` is null without an `unsupported` reason: an absent metric says why",
            )),
            (None, Some(r)) if r.trim().is_empty() => {
                Err(D::Error::custom("`unsupported` is empty: say why"))
            }
            _ => Ok(Metric {
                value: raw.value,
                unsupported: raw.unsupported,
            }),
        }
    }
}

/// The node as NVML describes it: what `gpushare inventory` prints and a recording's header
/// holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Driver version, e.g. `550.54.15`.
    pub driver_version: Metric<String>,
    /// CUDA driver version, e.g. `12.4`.
    pub cuda_version: Metric<String>,
    /// GPUs in NVML index order.
    pub gpus: Vec<GpuInfo>,
}

/// One physical GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Product name, e.g. `NVIDIA A100-SXM4-80GB`.
    pub name: String,
    /// UUID, `GPU-...`.
    pub uuid: String,
    /// PCI device id with vendor, e.g. `0x20B210DE` (how the catalogue matches the GPU).
    pub pci_device_id: Metric<String>,
    /// Installed memory, bytes.
    pub memory_total_bytes: Metric<u64>,
    /// SMs (NVML's device attributes; not every driver answers for whole GPUs).
    pub sms: Metric<u32>,
    /// MIG mode, current and pending (`unsupported` on GPUs without MIG).
    pub mig_mode: Metric<MigModeRec>,
    /// MIG devices in NVML's MIG index order (empty outside MIG mode).
    pub mig_devices: Vec<MigDeviceInfo>,
    /// Processes with a compute context on the whole GPU when the inventory was taken.
    pub processes: Metric<Vec<ProcessRec>>,
}

/// MIG mode as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigModeRec {
    /// Enabled now.
    pub current: bool,
    /// Enabled after the next GPU reset.
    pub pending: bool,
}

/// One MIG device (a compute instance of a GPU instance, as CUDA sees it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigDeviceInfo {
    /// NVML MIG device index on its GPU.
    pub index: u32,
    /// Name, e.g. `NVIDIA A100-SXM4-80GB MIG 3g.40gb`.
    pub name: String,
    /// UUID, `MIG-...`.
    pub uuid: String,
    /// GPU-instance profile read from the name, e.g. `3g.40gb`.
    pub profile: Option<String>,
    /// The GPU instance behind it: ids, profile id, placement.
    pub gpu_instance: Metric<GpuInstanceRec>,
    /// SMs of the device.
    pub sms: Metric<u32>,
    /// Memory of the device, bytes.
    pub memory_total_bytes: Metric<u64>,
    /// Processes on it when the inventory was taken.
    pub processes: Metric<Vec<ProcessRec>>,
}

/// A GPU instance as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInstanceRec {
    /// GPU instance id.
    pub id: u32,
    /// Compute instance id within it.
    pub compute_instance_id: u32,
    /// Driver profile id (as nvidia-smi prints it).
    pub profile_id: u32,
    /// First memory slice.
    pub placement_start: u32,
    /// Memory slices.
    pub placement_size: u32,
}

/// A process on a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRec {
    /// Process id.
    pub pid: u32,
    /// Process name, when NVML could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Device memory it holds, bytes.
    pub used_memory_bytes: Metric<u64>,
}

/// One per-process utilization sample (non-MIG GPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessUtilizationRec {
    /// Process id.
    pub pid: u32,
    /// CPU timestamp, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// SM utilization, percent of the sample period with a kernel of this process running.
    pub sm_pct: u32,
    /// Memory utilization, percent.
    pub memory_pct: u32,
}

/// The first record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The program that wrote it, e.g. `gpushare 0.1.0`.
    pub tool: String,
    /// Wall-clock time of the first sample, RFC 3339 UTC.
    pub started_at: String,
    /// Sampling interval, milliseconds.
    pub interval_ms: u64,
    /// Free text on how the recording was made (e.g. that it is synthetic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The node when recording started.
    pub node: Node,
}

/// One sample of every GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Milliseconds after `started_at` (monotonic clock).
    pub t_ms: u64,
    /// Per GPU, in the header's order.
    pub gpus: Vec<GpuSample>,
}

/// One GPU's values in a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSample {
    /// NVML index (as in the header).
    pub index: u32,
    /// Percent of NVML's sample period with at least one kernel running.
    pub utilization_gpu_pct: Metric<u32>,
    /// Percent of the period with device memory being read or written.
    pub utilization_memory_pct: Metric<u32>,
    /// Memory allocated on the GPU, bytes.
    pub memory_used_bytes: Metric<u64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Metric<u32>,
    /// Power draw, milliwatts.
    pub power_mw: Metric<u32>,
    /// Active clock throttle reasons.
    pub throttle_reasons: Metric<Vec<String>>,
    /// Processes on the GPU and their memory.
    pub processes: Metric<Vec<ProcessRec>>,
    /// Per-process utilization samples since the previous sample (non-MIG GPUs).
    pub process_utilization: Metric<Vec<ProcessUtilizationRec>>,
    /// Per MIG device, in the header's order.
    pub mig_devices: Vec<MigSample>,
}

/// One MIG device's values in a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigSample {
    /// MIG device index (as in the header).
    pub index: u32,
    /// Memory allocated on the instance, bytes.
    pub memory_used_bytes: Metric<u64>,
    /// Processes on it and their memory.
    pub processes: Metric<Vec<ProcessRec>>,
}

/// Why recording stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoppedBy {
    /// The requested duration was reached.
    Duration,
    /// Ctrl-C (or SIGTERM) ended it.
    Interrupt,
}

/// The last record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// Milliseconds after `started_at` when recording stopped.
    pub t_ms: u64,
    /// Samples written.
    pub samples: u64,
    /// Why it stopped.
    pub stopped_by: StoppedBy,
}

/// A whole recording, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// The file it came from.
    pub path: PathBuf,
    /// The header (line 1).
    pub header: Header,
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The end record, if the file has one.
    pub end: Option<End>,
    /// Things a reader should know (e.g. a recording cut short).
    pub warnings: Vec<String>,
}

/// One line of a recording: `{"record": KIND, ...}`.
fn line<T: Serialize>(kind: &str, body: &T) -> String {
    let mut map = serde_json::Map::new();
    map.insert("record".into(), serde_json::Value::String(kind.into()));
    match serde_json::to_value(body).expect("invariant: recording records serialize") {
        serde_json::Value::Object(fields) => map.extend(fields),
        _ => panic!("invariant: recording records are objects"),
    }
    let mut s = serde_json::to_string(&serde_json::Value::Object(map))
        .expect("invariant: JSON values serialize");
    s.push('\n');
    s
}

/// Writes records one line at a time.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// A writer on `out`.
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    /// The header line.
    pub fn header(&mut self, h: &Header) -> std::io::Result<()> {
        self.out.write_all(line("header", h).as_bytes())
    }

    /// A sample line.
    pub fn sample(&mut self, s: &Sample) -> std::io::Result<()> {
        self.out.write_all(line("sample", s).as_bytes())
    }

    /// The end line, and flush.
    pub fn end(&mut self, e: &End) -> std::io::Result<()> {
        self.out.write_all(line("end", e).as_bytes())?;
        self.out.flush()
    }

    /// Flush what was written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A record parsed from `value` (a line of the file), errors naming the field's key path.
fn parse_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

impl Recording {
    /// Read and check a recording file.
    pub fn load(path: &Path) -> Result<Recording, InputError> {
        let file = std::fs::File::open(path).map_err(|e| InputError::read(path, e))?;
        Recording::read(std::io::BufReader::new(file), path)
    }

    /// Read and check a recording from `reader`; `origin` names it in errors.
    pub fn read<R: BufRead>(reader: R, origin: &Path) -> Result<Recording, InputError> {
        let err = |line: usize, what: String| InputError::Parse {
            path: origin.to_path_buf(),
            message: format!("line {line}: {what}"),
        };
        let mut header: Option<Header> = None;
        let mut samples: Vec<Sample> = Vec::new();
        let mut end: Option<End> = None;
        let mut last_line = 0;
        for (i, text) in reader.lines().enumerate() {
            let n = i + 1;
            let text = text.map_err(|e| InputError::read(origin, e))?;
            if text.trim().is_empty() {
                continue;
            }
            last_line = n;
            if end.is_some() {
                return Err(err(n, "a record after the end record".into()));
            }
            let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                let cut = e.is_eof();
                err(
                    n,
                    if cut {
                        format!(
                            "the record is cut short ({e}): the recording was not finished; \
                             delete this line to use the samples before it"
                        )
                    } else {
                        format!("not a JSON record: {e}")
                    },
                )
            })?;
            let kind = match value.as_object_mut().and_then(|m| m.remove("record")) {
                Some(serde_json::Value::String(k)) => k,
                _ => {
                    return Err(err(
                        n,
                        "no `record` field: expected \"header\", \"sample\" or \"end\"".into(),
                    ));
                }
            };
            match (kind.as_str(), &header) {
                ("header", None) => {
                    let h: Header = parse_body(value).map_err(|m| err(n, m))?;
                    check_header(&h).map_err(|m| err(n, m))?;
                    header = Some(h);
                }
                ("header", Some(_)) => return Err(err(n, "a second header record".into())),
                (_, None) => {
                    return Err(err(
                        n,
                        format!(
                            "a `{kind}` record before the header: a recording starts with \
                             {{\"record\":\"header\",\"format\":\"{FORMAT}\",...}}"
                        ),
                    ));
                }
                ("sample", Some(h)) => {
                    let s: Sample = parse_body(value).map_err(|m| err(n, m))?;
                    check_sample(h, samples.last(), &s).map_err(|m| err(n, m))?;
                    samples.push(s);
                }
                ("end", Some(_)) => {
                    let e: End = parse_body(value).map_err(|m| err(n, m))?;
                    if e.samples != samples.len() as u64 {
                        return Err(err(
                            n,
                            format!(
                                "the end record counts {} samples, the file has {}",
                                e.samples,
                                samples.len()
                            ),
                        ));
                    }
                    end = Some(e);
                }
                (other, Some(_)) => {
                    return Err(err(
                        n,
                        format!(
                            "unknown record `{other}`: expected \"header\", \"sample\" or \"end\""
                        ),
                    ));
                }
            }
        }
        let Some(header) = header else {
            return Err(InputError::Parse {
                path: origin.to_path_buf(),
                message: "the recording is empty: expected a header record on line 1".into(),
            });
        };
        let mut warnings = Vec::new();
        if end.is_none() {
            warnings.push(format!(
                "{}: no end record after line {last_line}: the recording stopped without \
                 finishing; using its {} samples",
                origin.display(),
                samples.len()
            ));
        }
        Ok(Recording {
            path: origin.to_path_buf(),
            header,
            samples,
            end,
            warnings,
        })
    }

    /// The header's GPU with NVML index `index`.
    pub fn gpu(&self, index: u32) -> Option<&GpuInfo> {
        self.header.node.gpus.iter().find(|g| g.index == index)
    }

    /// Start time as Unix nanoseconds (parsed from `started_at`).
    pub fn started_unix_ns(&self) -> Option<i128> {
        chrono::DateTime::parse_from_rfc3339(&self.header.started_at)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .map(i128::from)
    }
}

fn check_header(h: &Header) -> Result<(), String> {
    if h.format != FORMAT {
        return Err(format!(
            "field `format` = \"{}\": expected \"{FORMAT}\"",
            h.format
        ));
    }
    if h.version != VERSION {
        return Err(format!(
            "field `version` = {}: this build reads version {VERSION}",
            h.version
        ));
    }
    if h.interval_ms == 0 {
        return Err("field `interval_ms` = 0: expected an interval >= 1 ms".into());
    }
    if chrono::DateTime::parse_from_rfc3339(&h.started_at).is_err() {
        return Err(format!(
            "field `started_at` = \"{}\": expected an RFC 3339 time, e.g. 2026-05-04T09:00:00Z",
            h.started_at
        ));
    }
    for (i, g) in h.node.gpus.iter().enumerate() {
        if h.node.gpus[..i].iter().any(|o| o.index == g.index) {
            return Err(format!(
                "field `node.gpus[{i}].index` = {}: GPU indices must be distinct",
                g.index
            ));
        }
    }
    Ok(())
}

fn check_sample(h: &Header, prev: Option<&Sample>, s: &Sample) -> Result<(), String> {
    if let Some(p) = prev
        && s.t_ms < p.t_ms
    {
        return Err(format!(
            "field `t_ms` = {}: before the previous sample's {}; samples must be in time order",
            s.t_ms, p.t_ms
        ));
    }
    let want: Vec<u32> = h.node.gpus.iter().map(|g| g.index).collect();
    let got: Vec<u32> = s.gpus.iter().map(|g| g.index).collect();
    if want != got {
        return Err(format!(
            "field `gpus`: GPU indices {got:?}, expected the header's {want:?}"
        ));
    }
    for (gi, (g, info)) in s.gpus.iter().zip(&h.node.gpus).enumerate() {
        let want: Vec<u32> = info.mig_devices.iter().map(|m| m.index).collect();
        let got: Vec<u32> = g.mig_devices.iter().map(|m| m.index).collect();
        if want != got {
            return Err(format!(
                "field `gpus[{gi}].mig_devices`: MIG device indices {got:?}, expected the \
                 header's {want:?}"
            ));
        }
    }
    Ok(())
}
