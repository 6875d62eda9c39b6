//! The recorder: samples every GPU through [`Nvml`] at a fixed interval, for a set duration
//! or until a stop flag is raised (Ctrl-C), and writes a recording line by line. The last
//! record says why it stopped, so a reader knows the file is whole.
//!
//! Time comes from a [`Clock`], so that tests replay a recorded node instantly and get the
//! same bytes every time. Nothing is ever changed on a GPU.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::inventory::{self, processes};
use super::recording::{
    End, FORMAT, GpuSample, Header, Metric, MigSample, Node, ProcessUtilizationRec, Sample,
    StoppedBy, VERSION, Writer,
};
use super::{Dev, Nvml, NvmlError};

/// Longest the recorder sleeps before looking at the stop flag again, milliseconds.
const STOP_POLL_MS: u64 = 50;

/// Where the recorder's time comes from.
pub trait Clock {
    /// Milliseconds since the clock was started (monotonic).
    fn now_ms(&self) -> u64;
    /// Sleep about `ms` milliseconds.
    fn sleep_ms(&self, ms: u64);
    /// Wall-clock time at which the clock was started, Unix nanoseconds.
    fn started_unix_ns(&self) -> i128;
}

/// The machine's clocks.
pub struct SystemClock {
    start: std::time::Instant,
    wall: i128,
}

impl SystemClock {
    /// A clock started now.
    pub fn start() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        SystemClock {
            start: std::time::Instant::now(),
            wall,
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    fn started_unix_ns(&self) -> i128 {
        self.wall
    }
}

/// What to record.
#[derive(Clone, Debug)]
pub struct Options {
    /// Sampling interval, milliseconds (>= 1).
    pub interval_ms: u64,
    /// Stop after this many milliseconds (`None`: only the stop flag stops it).
    pub duration_ms: Option<u64>,
    /// The program writing it, for the header (e.g. `gpushare 0.1.0`).
    pub tool: String,
    /// Free text for the header.
    pub note: Option<String>,
}

/// What a recording run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The node recorded.
    pub node: Node,
    /// Samples written.
    pub samples: u64,
    /// Why it stopped.
    pub stopped_by: StoppedBy,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// NVML could not be read.
    #[error(transparent)]
    Nvml(#[from] NvmlError),
    /// The output could not be written.
    #[error("cannot write the recording: {0}")]
    Io(#[from] std::io::Error),
}

/// An RFC 3339 UTC time (milliseconds) from Unix nanoseconds.
pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Record `nvml` into `out` until `opts.duration_ms` has passed or `stop` is raised.
pub fn record<W: Write>(
    nvml: &mut dyn Nvml,
    opts: &Options,
    clock: &dyn Clock,
    stop: &AtomicBool,
    out: W,
) -> Result<Summary, RecordError> {
    let interval = opts.interval_ms.max(1);
    let node = inventory::collect(nvml)?;
    let mut w = Writer::new(out);
    w.header(&Header {
        format: FORMAT.into(),
        version: VERSION,
        tool: opts.tool.clone(),
        started_at: rfc3339(clock.started_unix_ns()),
        interval_ms: interval,
        note: opts.note.clone(),
        node: node.clone(),
    })?;
    let start_us = (clock.started_unix_ns() / 1000).max(0) as u64;
    let mut since_us: Vec<u64> = vec![start_us; node.gpus.len()];
    let mut samples = 0u64;
    let stopped_by = loop {
        let due = samples * interval;
        if opts.duration_ms.is_some_and(|d| due >= d) {
            break StoppedBy::Duration;
        }
        if !wait_until(clock, due, stop) {
            break StoppedBy::Interrupt;
        }
        nvml.refresh();
        let s = sample(nvml, &node, due, &mut since_us);
        w.sample(&s)?;
        w.flush()?;
        samples += 1;
    };
    let t_ms = match (stopped_by, opts.duration_ms) {
        (StoppedBy::Duration, Some(d)) => d,
        _ => clock.now_ms(),
    };
    w.end(&End {
        t_ms,
        samples,
        stopped_by,
    })?;
    Ok(Summary {
        node,
        samples,
        stopped_by,
    })
}

/// Sleep until `due` ms; false if `stop` was raised first.
fn wait_until(clock: &dyn Clock, due: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = clock.now_ms();
        if now >= due {
            return true;
        }
        clock.sleep_ms((due - now).min(STOP_POLL_MS));
    }
}

/// One sample of every GPU of `node`; `since_us` keeps, per GPU, the newest per-process
/// utilization timestamp seen, so each sample holds only the new ones.
pub fn sample(nvml: &dyn Nvml, node: &Node, t_ms: u64, since_us: &mut [u64]) -> Sample {
    let gpus = node
        .gpus
        .iter()
        .zip(since_us.iter_mut())
        .map(|(g, since)| {
            let i = g.index;
            let util = nvml.utilization(i);
            let per_process = nvml.process_utilization(i, *since).map(|list| {
                let mut recs: Vec<ProcessUtilizationRec> = list
                    .into_iter()
                    .map(|p| ProcessUtilizationRec {
                        pid: p.pid,
                        timestamp_us: p.timestamp_us,
                        sm_pct: p.sm_pct,
                        memory_pct: p.memory_pct,
                    })
                    .collect();
                recs.sort_by_key(|r| (r.timestamp_us, r.pid));
                if let Some(last) = recs.last() {
                    *since = (*since).max(last.timestamp_us);
                }
                recs
            });
            GpuSample {
                index: i,
                utilization_gpu_pct: Metric::from_call(util.clone().map(|u| u.gpu_pct)),
                utilization_memory_pct: Metric::from_call(util.map(|u| u.memory_pct)),
                memory_used_bytes: Metric::from_call(nvml.memory(Dev::Gpu(i)).map(|m| m.used)),
                sm_clock_mhz: Metric::from_call(nvml.sm_clock_mhz(i)),
                power_mw: Metric::from_call(nvml.power_mw(i)),
                throttle_reasons: Metric::from_call(nvml.throttle_reasons(i)),
                processes: Metric::from_call(processes(nvml, Dev::Gpu(i))),
                process_utilization: Metric::from_call(per_process),
                mig_devices: g
                    .mig_devices
                    .iter()
                    .map(|m| {
                        let d = Dev::Mig {
                            gpu: i,
                            index: m.index,
                        };
                        MigSample {
                            index: m.index,
                            memory_used_bytes: Metric::from_call(nvml.memory(d).map(|x| x.used)),
                            processes: Metric::from_call(processes(nvml, d)),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Sample { t_ms, gpus }
}
