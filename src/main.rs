//! Command-line front end: parse arguments, call the library, turn errors into exit codes.

/// A run allocates and frees small buffers at every few events; mimalloc serves them in a
/// fraction of the system allocator's instructions and keeps them closer together in memory
/// (the 1,000-GPU hour: 7% faster; BENCHMARKS.md, fourteenth round).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gpushare::activity::{Activity, TraceOptions};
use gpushare::calibrate;
use gpushare::cli;
use gpushare::config::write_atomic_all;
use gpushare::error::InputError;
use gpushare::experiment::Experiment;
use gpushare::hardware::{Catalogue, format_layout, maximal_placements, validate_layout};
use gpushare::plot;
use gpushare::progress::Progress;
use gpushare::report::{self, RunSummary};
use gpushare::results::{self, RunDetail};
use gpushare::study::Study;
use gpushare::sweep;

/// Simulate GPU clusters shared by MIG, time-slicing or dedicated placement.
#[derive(Parser)]
#[command(name = "gpushare", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Folder of model profiles that add to or override the built-in ones; it wins over an
    /// experiment's models_dir (see `gpushare models`).
    #[arg(long, global = true, value_name = "DIR")]
    models: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one experiment and print its summary table.
    Run {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Also write summary.json and runs.csv into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use this seed instead of the experiment's.
        #[arg(long)]
        seed: Option<u64>,
        /// No progress display (it is shown on a terminal only anyway).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        plot: PlotArgs,
        #[command(flatten)]
        trace: TraceArgs,
    },
    /// Run several experiments side by side (e.g. experiments/seed-study.toml).
    Study {
        /// Study file (TOML) listing experiment files.
        study: PathBuf,
        /// Also write summary.json and runs.csv into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use this seed for every experiment instead of their own.
        #[arg(long)]
        seed: Option<u64>,
        /// No progress bar (it is shown on a terminal only anyway).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        plot: PlotArgs,
    },
    /// List the model profiles an experiment can deploy: the built-in ones, and those a
    /// --models folder adds or overrides, each with what it is and where it comes from.
    Models {
        /// Print this profile's file instead, with the source, assumption or fit of each number.
        #[arg(long, value_name = "NAME")]
        show: Option<String>,
    },
    /// Run a sweep: a base experiment under a grid of overrides, in parallel.
    Sweep {
        /// Sweep file (TOML).
        sweep: PathBuf,
        /// Output folder (default: results/<name>, or results/<name>/shard-I-of-N).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the runs already completed in the output folder; run only the others.
        #[arg(long)]
        resume: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Run only shard I of N (1-based), e.g. --shard 2/4.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Number of shards when the index comes from JOB_COMPLETION_INDEX or a Slurm array.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        #[command(flatten)]
        plot: PlotArgs,
    },
    /// Merge shard outputs of one sweep into what a single machine would have written.
    Merge {
        /// Shard output folders (each with a sweep.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Folder for the merged outputs.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        plot: PlotArgs,
    },
    /// Draw the charts of a results folder (from run, study, sweep or merge) as PNG and SVG.
    Plot {
        /// Results folder (with summary.json or sweep.json).
        results: PathBuf,
        /// Folder for the charts (default: RESULTS/plots).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Image size in pixels.
        #[arg(long, value_name = "WxH", default_value = "1200x800")]
        size: String,
    },
    /// List and check MIG layouts.
    Mig {
        #[command(subcommand)]
        command: MigCommand,
    },
    /// List this node's GPUs through NVML (or a recording) and write them as a cluster file.
    Inventory(calibrate::commands::InventoryArgs),
    /// Record NVML samples, fit model profiles to measurements, validate them (read-only).
    Calibrate {
        #[command(subcommand)]
        command: calibrate::commands::CalibrateCommand,
    },
    /// Find the configurations that meet a load's targets with the fewest GPUs (or lowest
    /// cost), across dedicated GPUs, MIG layouts, time-slicing and MPS.
    Plan {
        /// Plan file (TOML).
        plan: PathBuf,
        /// Output folder (default: results/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        plot: PlotArgs,
        /// Rows of the ranked table to print.
        #[arg(long, default_value_t = 15)]
        top: usize,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Read and write the GPU Operator's own files (mig-parted config, device-plugin config,
    /// Deployments).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Build an experiment from a cluster.yaml and the files it names, with the load, pipeline
    /// and serving settings of a base experiment.
    Import {
        /// Cluster description (YAML) naming the mig-parted, device-plugin and workloads files.
        cluster: PathBuf,
        /// Experiment file giving the rest (workload, audio, answers, routing, batching).
        #[arg(long)]
        base: PathBuf,
        /// Write the experiment here (TOML) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write an experiment's cluster as GPU Operator files: cluster.yaml, the mig-parted and
    /// device-plugin ConfigMaps, and the Deployments.
    Export {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Folder for the files.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Charts after a command that writes results.
#[derive(clap::Args)]
struct PlotArgs {
    /// Also draw the charts (PNG and SVG) into OUT/plots.
    #[arg(long)]
    plot: bool,
    /// Draw the charts into this folder instead (implies --plot).
    #[arg(long, value_name = "DIR")]
    plot_dir: Option<PathBuf>,
}

impl PlotArgs {
    /// Where to draw, if asked to; drawing reads the written results, so `out` is required.
    fn target(&self, out: Option<&Path>) -> Result<Option<PathBuf>, String> {
        if !self.plot && self.plot_dir.is_none() {
            return Ok(None);
        }
        let Some(out) = out else {
            return Err(
                "--plot and --plot-dir draw from the written results: give --out DIR too".into(),
            );
        };
        Ok(Some(
            self.plot_dir.clone().unwrap_or_else(|| out.join("plots")),
        ))
    }
}

/// A timeline trace of what the GPUs did.
#[derive(clap::Args)]
struct TraceArgs {
    /// Also write what the GPUs did (jobs, time-slicing turns and switches, MPS clients,
    /// requests) to FILE as Chrome trace event JSON, for ui.perfetto.dev or chrome://tracing.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Keep only the trace events that overlap this window of simulated seconds, e.g.
    /// 100..110 (either side may be left out).
    #[arg(long, value_name = "START..END")]
    trace_window: Option<String>,
    /// Most events the trace keeps (default 250000); recording stops there, and the file and
    /// the terminal say when.
    #[arg(long, value_name = "N")]
    trace_max_events: Option<u64>,
}

impl TraceArgs {
    /// The file and what to record, if a trace is asked for.
    fn options(&self) -> Result<Option<(PathBuf, TraceOptions)>, String> {
        let Some(file) = &self.trace else {
            if self.trace_window.is_some() || self.trace_max_events.is_some() {
                return Err(
                    "--trace-window and --trace-max-events shape a trace: give --trace FILE too"
                        .into(),
                );
            }
            return Ok(None);
        };
        let opts = TraceOptions::parse(self.trace_window.as_deref(), self.trace_max_events)?;
        Ok(Some((file.clone(), opts)))
    }
}

/// Write `activity` to `file` (atomically) and say what it holds.
fn write_trace(
    file: &Path,
    exp: &Experiment,
    activity: &Activity,
    opts: &TraceOptions,
) -> Result<(), String> {
    let json = activity.chrome_json(exp, opts.max_events);
    write_atomic_all(&[(file.to_path_buf(), json.into_bytes())]).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} events; open it in ui.perfetto.dev or chrome://tracing)",
        file.display(),
        activity.events()
    );
    if let Some(t) = activity.full_at {
        println!(
            "note: the trace reached its cap of {} events at {:.3} s of simulated time: what \
             the GPUs did after that is left out; narrow --trace-window or raise \
             --trace-max-events",
            opts.max_events,
            t as f64 / 1e9
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum MigCommand {
    /// List the valid maximal MIG layouts of a GPU (no instance can be added).
    Layouts {
        /// GPU: catalogue key (e.g. h200), NVML name ("NVIDIA H100 80GB HBM3"), node label value
        /// (NVIDIA-A100-SXM4-80GB) or PCI device id (0x20B2).
        #[arg(long)]
        gpu: String,
        /// Include the +me and double-memory 1g profiles.
        #[arg(long)]
        all_profiles: bool,
    },
    /// Check whether a set of MIG instances fits one GPU, and where each is placed.
    Check {
        /// GPU: catalogue key (e.g. h200), NVML name ("NVIDIA H100 80GB HBM3"), node label value
        /// (NVIDIA-A100-SXM4-80GB) or PCI device id (0x20B2).
        #[arg(long)]
        gpu: String,
        /// Instance profiles, e.g. 3g.40gb 3g.40gb.
        #[arg(required = true)]
        profiles: Vec<String>,
    },
}

fn main() -> ExitCode {
    // A closed pipe (`gpushare ... | head`) ends the program quietly instead of panicking.
    reset_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let catalogue = Catalogue::builtin().with_models_dir(cli.models.clone());
    if let Command::Run { out: Some(d), .. } | Command::Study { out: Some(d), .. } = &cli.command {
        report::prepare_out_dir(d).map_err(|e| e.to_string())?;
    }
    match cli.command {
        Command::Run {
            experiment,
            out,
            seed,
            quiet,
            plot,
            trace,
        } => {
            let charts = plot.target(out.as_deref())?;
            let trace = trace.options()?;
            let mut exp = Experiment::load(&experiment, &catalogue).map_err(|e| e.to_string())?;
            if let Some(s) = seed {
                exp.raw.seed = s;
            }
            warn_provenance(std::slice::from_ref(&exp));
            let (summary, detail, activity) =
                results::run_traced(&exp, quiet, out.is_some(), trace.as_ref().map(|t| &t.1));
            finish(vec![(summary, detail)], None, out, charts)?;
            match (trace, activity) {
                (Some((file, opts)), Some(a)) => write_trace(&file, &exp, &a, &opts),
                _ => Ok(()),
            }
        }
        Command::Study {
            study,
            out,
            seed,
            quiet,
            plot,
        } => {
            let charts = plot.target(out.as_deref())?;
            let mut s = Study::load(&study, &catalogue).map_err(|e| e.to_string())?;
            warn_provenance(&s.experiments);
            if let Some(seed) = seed {
                s.experiments.iter_mut().for_each(|e| e.raw.seed = seed);
            }
            let bar = Progress::new(s.experiments.len(), &s.file.name, quiet);
            let runs = results::run_all(&s.experiments, out.is_some(), &|| bar.inc());
            bar.finish();
            let per_dollar = s.prices.as_ref().map(|p| per_dollar_table(&runs, p));
            finish(runs, s.prices.as_ref(), out, charts)?;
            print!("{}", per_dollar.unwrap_or_default());
            Ok(())
        }
        Command::Models { show } => models(&catalogue, show.as_deref()),
        Command::Mig { command } => mig(&catalogue, command),
        Command::Inventory(args) => calibrate::commands::inventory_command(&args, &catalogue),
        Command::Calibrate { command } => {
            // Only a recording stops on Ctrl-C by itself; other commands keep the default.
            static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            let stop = if command.records() {
                interrupt_flag()
            } else {
                &NEVER
            };
            calibrate::commands::calibrate_command(&command, stop, &catalogue)
        }
        Command::Plan {
            plan,
            out,
            plot,
            top,
            quiet,
        } => cli::plan(
            &catalogue,
            &plan,
            out,
            &|o| plot.target(Some(o)),
            top,
            quiet,
        ),
        Command::Operator { command } => match command {
            OperatorCommand::Import { cluster, base, out } => {
                cli::operator_import(&catalogue, &cluster, &base, out.as_deref())
            }
            OperatorCommand::Export { experiment, out } => {
                cli::operator_export(&catalogue, &experiment, &out)
            }
        },
        Command::Sweep {
            sweep,
            out,
            resume,
            quiet,
            shard,
            shards,
            plot,
        } => {
            let shard = sweep::Shard::select(shard.as_deref(), shards, &|k| std::env::var(k).ok())?;
            let opts = cli::SweepOpts {
                out,
                resume,
                quiet,
                shard,
            };
            cli::sweep(&catalogue, &sweep, opts, &|o| plot.target(Some(o)))
        }
        Command::Merge { dirs, out, plot } => {
            let charts = plot.target(Some(&out))?;
            cli::merge(&dirs, &out, charts.as_deref())
        }
        Command::Plot { results, out, size } => {
            let opts = plot::Options::parse_size(&size)?;
            let dir = out.unwrap_or_else(|| results.join("plots"));
            cli::draw(&results, &dir, opts)
        }
    }
}

fn finish(
    runs: Vec<(RunSummary, RunDetail)>,
    prices: Option<&gpushare::study::RunPrices>,
    out: Option<PathBuf>,
    charts: Option<PathBuf>,
) -> Result<(), String> {
    let summaries: Vec<RunSummary> = runs.iter().map(|(s, _)| s.clone()).collect();
    print!("{}", report::table(&summaries));
    if let Some(dir) = out {
        let files =
            results::write_outputs(&dir, &runs, prices).map_err(|e: InputError| e.to_string())?;
        println!("\nwrote {}", list_files(&dir, &files));
        if let Some(c) = charts {
            cli::draw(&dir, &c, plot::Options::default())?;
        }
    }
    Ok(())
}

/// Requests per second per GPU and per dollar of each priced run, with the prices' source.
fn per_dollar_table(
    runs: &[(RunSummary, RunDetail)],
    prices: &gpushare::study::RunPrices,
) -> String {
    let mut out = format!(
        "\nPer dollar (prices: {}):\n{:<28} {:>12} {:>12} {:>14}\n",
        prices.source, "run", "req/s/GPU", "$/GPU-hour", "requests/$"
    );
    for (s, _) in runs {
        let Some(usd) = prices.usd_per_gpu_hour.get(&s.name) else {
            continue;
        };
        let per_dollar = prices
            .requests_per_dollar(&s.name, s.throughput_per_gpu_rps)
            .unwrap_or(f64::NAN);
        out.push_str(&format!(
            "{:<28} {:>12.3} {:>12.2} {:>14.0}\n",
            s.name, s.throughput_per_gpu_rps, usd, per_dollar
        ));
    }
    out
}

/// `DIR/a, DIR/b and DIR/c`: the files written into a folder, for the "wrote" line.
fn list_files(dir: &Path, files: &[PathBuf]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{}/{name}", dir.display())
        })
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// `models`: every profile an experiment can name, with its kind, memory, what it is (the
/// profile's first comment line) and where it is read from.
fn models(catalogue: &Catalogue, show: Option<&str>) -> Result<(), String> {
    let sources = gpushare::models::Sources::new([catalogue.models_dir()]);
    if let Some(name) = show {
        let found = sources
            .find(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "--show {name}: no such profile; allowed: {}",
                    sources.describe()
                )
            })?;
        print!("{}", found.text);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (name, _) in sources.list() {
        let found = sources
            .find(&name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("model profile {name} vanished while listing"))?;
        let p = gpushare::profile::ModelProfile::from_toml_str(&found.text, &found.origin)
            .map_err(|e| e.to_string())?;
        rows.push((
            name,
            gpushare::experiment::kind_name(&p.kind),
            p.memory_gb,
            gpushare::models::summary_line(&found.text).to_string(),
            found.origin.display().to_string(),
        ));
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(5);
    println!("{:<w$}  kind  {:>7}  source", "model", "memory");
    for (name, kind, mem, what, from) in rows {
        println!("{name:<w$}  {kind:<4}  {mem:>4.1} GB  {from}");
        if !what.is_empty() {
            println!("{:<w$}  {what}", "");
        }
    }
    println!(
        "\nAn experiment's models_dir adds profiles and overrides built-in ones of the same name; \
         --models DIR overrides both.\n`gpushare models --show NAME` prints a profile with the \
         source, assumption or fit behind each number."
    );
    Ok(())
}

fn mig(catalogue: &Catalogue, cmd: MigCommand) -> Result<(), String> {
    match cmd {
        MigCommand::Layouts { gpu, all_profiles } => {
            let spec = catalogue.gpu(&gpu).map_err(|e| e.to_string())?;
            if !spec.has_mig() {
                return Err(spec.no_mig().to_string());
            }
            // One line per distinct layout (multiset of profiles), with its first full placement.
            let mut seen = std::collections::BTreeSet::new();
            let layouts: Vec<_> = maximal_placements(spec, all_profiles)
                .into_iter()
                .filter(|l| {
                    let names: Vec<&str> = l.iter().map(|p| p.profile.as_str()).collect();
                    seen.insert(format_layout(&names))
                })
                .collect();
            println!(
                "{} maximal MIG layouts on {} (no instance can be added; one placement shown):",
                layouts.len(),
                spec.name
            );
            for l in layouts {
                let names: Vec<&str> = l.iter().map(|p| p.profile.as_str()).collect();
                let starts: Vec<String> = l
                    .iter()
                    .map(|p| format!("{}@{}", p.profile, p.start))
                    .collect();
                println!("  {:<40} {}", format_layout(&names), starts.join(" "));
            }
            Ok(())
        }
        MigCommand::Check { gpu, profiles } => {
            let spec = catalogue.gpu(&gpu).map_err(|e| e.to_string())?;
            let placed = validate_layout(spec, &profiles).map_err(|e| e.to_string())?;
            println!("valid on {}: {}", spec.name, format_layout(&profiles));
            for p in placed {
                println!(
                    "  {} at memory slices {}..{}",
                    p.profile,
                    p.start,
                    p.start + p.size
                );
            }
            Ok(())
        }
    }
}

/// Warn about fitted profiles run on another GPU or partition than they were measured on.
fn warn_provenance(exps: &[Experiment]) {
    for e in exps {
        for w in calibrate::validate::provenance_warnings(e, None) {
            eprintln!("warning: {}: {w}", e.raw.name);
        }
    }
}

/// A flag raised by Ctrl-C (or SIGTERM), so that a recording ends cleanly.
fn interrupt_flag() -> &'static std::sync::atomic::AtomicBool {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // Without a handler Ctrl-C still ends the program, as it always did.
    let _ = ctrlc::set_handler(|| STOP.store(true, std::sync::atomic::Ordering::SeqCst));
    &STOP
}

#[cfg(unix)]
fn reset_sigpipe() {
    // SAFETY: restoring the default SIGPIPE disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}
