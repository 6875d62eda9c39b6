//! The `inventory` and `calibrate` commands: arguments (parsed by the binary) and what each
//! command does. Results go to stdout, warnings to stderr; errors come back as messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::cluster;
use crate::config::write_atomic_all;
use crate::hardware::Catalogue;
use crate::nvml::recording::Recording;
use crate::nvml::sampler::{self, Clock, SystemClock};
use crate::nvml::{LiveNvml, Nvml, RecordedNvml, inventory};

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
    print!("{}", cluster::table(&node, &resolved));
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
    _catalogue: &Catalogue,
) -> Result<(), String> {
    match cmd {
        CalibrateCommand::Record(args) => record_command(args, stop),
    }
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
