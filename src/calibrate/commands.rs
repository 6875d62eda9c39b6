//! The `inventory` and `calibrate` commands: arguments (parsed by the binary) and what each
//! command does. Results go to stdout, warnings to stderr; errors come back as messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::fit::{self, FitInput};
use super::requests::RequestLog;
use super::{CalibrateError, cluster, validate};
use crate::config::write_atomic_all;
use crate::hardware::Catalogue;
use crate::nvml::recording::Recording;
use crate::nvml::sampler::{self, Clock, SystemClock};
use crate::nvml::{LiveNvml, Nvml, RecordedNvml, inventory};
use crate::profile::ModelProfile;

/// The program as recordings and fitted profiles name it.
pub fn tool() -> String {
    format!("gpushare {}", env!("CARGO_PKG_VERSION"))
}

/// `gpushare inventory`: what the node has.
#[derive(clap::Args, Debug)]
pub struct InventoryArgs {
    /// Also write the GPUs as a cluster file (`[[gpus]]` entries an experiment can extend).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read the node from a recording's header instead of the live driver.
    #[arg(long, value_name = "RECORDING")]
    pub from: Option<PathBuf>,
    /// Node name written into the cluster file.
    #[arg(long, default_value = "node0")]
    pub node: String,
}

/// `gpushare calibrate ...`.
#[derive(clap::Subcommand, Debug)]
pub enum CalibrateCommand {
    /// Sample NVML at an interval into a JSON Lines recording (read-only; Ctrl-C ends it
    /// cleanly).
    Record(RecordArgs),
    /// Fit a model profile to a request log and a recording made while it was taken.
    Fit(FitArgs),
    /// Replay a request log's arrivals through the simulator with a fitted profile and compare
    /// latencies and throughput with the log.
    Validate(ValidateArgs),
}

/// `gpushare calibrate fit`.
#[derive(clap::Args, Debug)]
pub struct FitArgs {
    /// The recording made while the request log was taken (`calibrate record`).
    #[arg(long)]
    pub recording: PathBuf,
    /// The request log: a CSV of stage calls, or AIPerf's profile_export.jsonl.
    #[arg(long)]
    pub requests: PathBuf,
    /// The profile to start from: a profile file, or a model name in ./models.
    #[arg(long)]
    pub model: String,
    /// GPU type the log was measured on (catalogue key, e.g. a100-80gb).
    #[arg(long)]
    pub gpu: String,
    /// MIG profile of the instance the model ran on, when the GPU is in MIG mode.
    #[arg(long)]
    pub mig: Option<String>,
    /// The recording's device the model ran on: GPU index, or GPU:MIG device index.
    #[arg(long, value_name = "N[:M]")]
    pub device: Option<String>,
    /// Process id of the model server (its memory only; default: all processes on the device).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Name of the fitted profile (default: the base name with -fitted).
    #[arg(long)]
    pub name: Option<String>,
    /// LLM engine token budget per iteration (vLLM max_num_batched_tokens).
    #[arg(long, default_value_t = 8192)]
    pub max_batched_tokens: u32,
    /// The fitted profile to write (TOML).
    #[arg(long)]
    pub out: PathBuf,
    /// Write the profile even when the fit misses the measurements by more than 30% on
    /// average (mean absolute percentage error; it is refused otherwise).
    #[arg(long)]
    pub accept_poor_fit: bool,
}

/// A fit whose mean absolute percentage error on any fitted quantity passes this is refused
/// (unless `--accept-poor-fit`, whose help states the figure): a profile that far off the
/// measurements predicts nothing.
pub const POOR_FIT_MAPE_PCT: f64 = 30.0;

/// `gpushare calibrate validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The measured request log (CSV or AIPerf JSONL).
    #[arg(long)]
    pub requests: PathBuf,
    /// The fitted profile (`calibrate fit --out`).
    #[arg(long)]
    pub profile: PathBuf,
    /// An experiment with the cluster the log was measured on, deploying the profile's base
    /// model (its workload is replaced by the log's arrivals).
    #[arg(long)]
    pub experiment: PathBuf,
    /// The recording made with the log (to check the driver against the profile's).
    #[arg(long)]
    pub recording: Option<PathBuf>,
    /// Also write the comparison as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl CalibrateCommand {
    /// Whether the command records (and so should stop cleanly on Ctrl-C).
    pub fn records(&self) -> bool {
        matches!(self, CalibrateCommand::Record(_))
    }
}

/// `gpushare calibrate record`.
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Sampling interval, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// The recording to write (JSON Lines).
    #[arg(long)]
    pub out: PathBuf,
    /// Free text stored in the header (how the load was made, what ran where).
    #[arg(long)]
    pub note: Option<String>,
}

/// Run `gpushare inventory`.
pub fn inventory_command(args: &InventoryArgs, catalogue: &Catalogue) -> Result<(), String> {
    let (node, source) = match &args.from {
        Some(path) => {
            let rec = Recording::load(path).map_err(|e| e.to_string())?;
            warn_all(&rec.warnings);
            let source = cluster::Source {
                from: format!("recording {}", file_name(path)),
                at: rec.header.started_at.clone(),
            };
            let node = inventory::collect(&RecordedNvml::new(rec)).map_err(|e| e.to_string())?;
            (node, source)
        }
        None => {
            let nvml = LiveNvml::open().map_err(|e| e.to_string())?;
            let clock = SystemClock::start();
            let node = inventory::collect(&nvml).map_err(|e| e.to_string())?;
            let at = sampler::rfc3339(clock.started_unix_ns());
            let source = cluster::Source {
                from: "live NVML".into(),
                at,
            };
            (node, source)
        }
    };
    let resolved = cluster::resolve(&node, catalogue);
    print!("{}", cluster::table(&node, &resolved, catalogue));
    warn_all(&resolved.warnings);
    if let Some(out) = &args.out {
        let Some(text) = cluster::cluster_toml(&node, &resolved, &args.node, &source) else {
            return Err(format!(
                "no GPU of the node can be simulated, so {} was not written: {}",
                out.display(),
                resolved
                    .left_out
                    .iter()
                    .map(|(i, why)| format!("GPU {i}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        };
        write_atomic_all(&[(out.clone(), text.into_bytes())]).map_err(|e| e.to_string())?;
        println!("\nwrote {}", out.display());
    }
    Ok(())
}

/// Run `gpushare calibrate ...`; `stop` is raised by Ctrl-C.
pub fn calibrate_command(
    cmd: &CalibrateCommand,
    stop: &AtomicBool,
    catalogue: &Catalogue,
) -> Result<(), String> {
    match cmd {
        CalibrateCommand::Record(args) => record_command(args, stop),
        CalibrateCommand::Fit(args) => fit_command(args, catalogue).map_err(|e| e.to_string()),
        CalibrateCommand::Validate(args) => {
            validate_command(args, catalogue).map_err(|e| e.to_string())
        }
    }
}

/// `N` or `N:M`.
fn parse_device(s: &str) -> Result<(u32, Option<u32>), CalibrateError> {
    let bad = || {
        CalibrateError::Usage(format!(
            "--device {s}: expected a GPU index (0) or GPU:MIG device indices (0:1)"
        ))
    };
    match s.split_once(':') {
        Some((g, m)) => Ok((
            g.trim().parse().map_err(|_| bad())?,
            Some(m.trim().parse().map_err(|_| bad())?),
        )),
        None => Ok((s.trim().parse().map_err(|_| bad())?, None)),
    }
}

/// A profile file, or `models/NAME.toml`.
fn profile_path(model: &str) -> Result<PathBuf, CalibrateError> {
    let direct = PathBuf::from(model);
    if direct.is_file() {
        return Ok(direct);
    }
    let named = Path::new("models").join(format!("{model}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    let known = crate::experiment::profile_names(std::path::Path::new("models"));
    Err(CalibrateError::Usage(format!(
        "--model {model}: no such profile file, and no models/{model}.toml here (models/ has: {})",
        if known.is_empty() {
            "nothing".to_string()
        } else {
            known.join(", ")
        }
    )))
}

fn fit_command(args: &FitArgs, catalogue: &Catalogue) -> Result<(), CalibrateError> {
    let base_path = profile_path(&args.model)?;
    let base = ModelProfile::from_toml_str(&crate::config::read(&base_path)?, &base_path)?;
    let gpu = catalogue
        .gpu(&args.gpu)
        .map_err(|e| CalibrateError::Usage(format!("--gpu {}: {e}", args.gpu)))?;
    let device = args.device.as_deref().map(parse_device).transpose()?;
    let recording = Recording::load(&args.recording)?;
    warn_all(&recording.warnings);
    let log = RequestLog::load(&args.requests)?;
    let fitted = fit::fit(&FitInput {
        base: &base,
        base_path: &base_path,
        catalogue,
        gpu,
        recording: &recording,
        log: &log,
        mig: args.mig.as_deref(),
        device,
        pid: args.pid,
        name: args.name.as_deref(),
        max_batched_tokens: args.max_batched_tokens,
    })?;
    print!("{}", fitted.report);
    warn_all(&fitted.warnings);
    let poor: Vec<String> = fitted
        .quality
        .iter()
        .filter(|(_, q)| !(q.mape_pct.is_finite() && q.mape_pct <= POOR_FIT_MAPE_PCT))
        .map(|(what, q)| {
            format!(
                "{what} (MAPE {}%, R² {})",
                short_num(q.mape_pct),
                short_num(q.r2)
            )
        })
        .collect();
    if !poor.is_empty() {
        let msg = format!(
            "the fit misses the measurements: {} (MAPE at most {POOR_FIT_MAPE_PCT}% allowed)",
            poor.join(", ")
        );
        if !args.accept_poor_fit {
            return Err(CalibrateError::Data(format!(
                "{msg}; nothing written to {} (--accept-poor-fit writes it anyway)",
                args.out.display()
            )));
        }
        eprintln!("warning: {msg}; written as asked (--accept-poor-fit)");
    }
    let inputs = [base_path.as_path(), &args.recording, &args.requests];
    crate::config::not_an_input(&args.out, "--out", &inputs)?;
    write_atomic_all(&[(args.out.clone(), fitted.toml.into_bytes())])?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn validate_command(args: &ValidateArgs, catalogue: &Catalogue) -> Result<(), CalibrateError> {
    let log = RequestLog::load(&args.requests)?;
    let recording = args.recording.as_deref().map(Recording::load).transpose()?;
    if let Some(r) = &recording {
        warn_all(&r.warnings);
    }
    let v = validate::validate(&validate::ValidateInput {
        log: &log,
        profile_path: &args.profile,
        experiment_path: &args.experiment,
        catalogue,
        recording: recording.as_ref(),
    })?;
    warn_all(&v.warnings);
    print!("{}", validate::table(&v));
    if let Some(out) = &args.out {
        write_atomic_all(&[(out.clone(), validate::json(&v).into_bytes())])?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn record_command(args: &RecordArgs, stop: &AtomicBool) -> Result<(), String> {
    if args.interval_ms == 0 {
        return Err("--interval-ms 0: expected an interval >= 1 ms".into());
    }
    let duration_ms = match args.duration_s {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s <= 1e7 => Some((s * 1000.0).round() as u64),
        Some(s) => {
            return Err(format!(
                "--duration-s {s}: expected a number of seconds in (0, 1e7]"
            ));
        }
    };
    // Fail before touching any file when there is no driver.
    let mut nvml = LiveNvml::open().map_err(|e| e.to_string())?;
    let opts = sampler::Options {
        interval_ms: args.interval_ms,
        duration_ms,
        tool: tool(),
        note: args.note.clone(),
    };
    if duration_ms.is_none() {
        eprintln!("recording every {} ms until Ctrl-C", args.interval_ms);
    }
    let summary = record_to_file(&mut nvml, &opts, &SystemClock::start(), stop, &args.out)?;
    println!(
        "recorded {} samples of {} GPUs to {} (stopped by {})",
        summary.samples,
        summary.node.gpus.len(),
        args.out.display(),
        match summary.stopped_by {
            crate::nvml::recording::StoppedBy::Duration => "the duration",
            crate::nvml::recording::StoppedBy::Interrupt => "Ctrl-C",
        }
    );
    Ok(())
}

/// Record into `path` through a temporary sibling renamed at the end, so the file either is
/// a finished recording or does not change.
pub fn record_to_file(
    nvml: &mut dyn Nvml,
    opts: &sampler::Options,
    clock: &dyn Clock,
    stop: &AtomicBool,
    path: &Path,
) -> Result<sampler::Summary, String> {
    let tmp = temp_sibling(path);
    let file =
        std::fs::File::create(&tmp).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let result = sampler::record(nvml, opts, clock, stop, &mut w);
    let result = result.map_err(|e| e.to_string()).and_then(|s| {
        w.flush()
            .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
        Ok(s)
    });
    drop(w);
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("{}: cannot write: {e}", path.display())
            })?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `.NAME.tmpPID` next to `path`.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    dir.unwrap_or(Path::new(".")).join(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ))
}

/// The file name of `p` (for provenance: no machine paths).
pub fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    )
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// A fit statistic as messages show it: two decimals, exponent form when extreme.
fn short_num(x: f64) -> String {
    if x.is_finite() && x.abs() < 1e6 {
        format!("{x:.2}")
    } else {
        format!("{x:.3e}")
    }
}
