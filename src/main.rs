//! Command-line front end: parse arguments, call the library, turn errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gpushare::error::InputError;
use gpushare::experiment::Experiment;
use gpushare::hardware::{Catalogue, format_layout, maximal_placements, validate_layout};
use gpushare::progress::Progress;
use gpushare::report::{self, RunSummary};
use gpushare::study::Study;
use gpushare::sweep;

/// Simulate GPU clusters shared by MIG, time-slicing or dedicated placement.
#[derive(Parser)]
#[command(name = "gpushare", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Merge shard outputs of one sweep into what a single machine would have written.
    Merge {
        /// Shard output folders (each with a sweep.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Folder for the merged outputs.
        #[arg(long)]
        out: PathBuf,
    },
    /// List and check MIG layouts.
    Mig {
        #[command(subcommand)]
        command: MigCommand,
    },
}

#[derive(Subcommand)]
enum MigCommand {
    /// List the valid maximal MIG layouts of a GPU (no instance can be added).
    Layouts {
        /// GPU catalogue key, e.g. a100-80gb.
        #[arg(long)]
        gpu: String,
        /// Include the +me and double-memory 1g profiles.
        #[arg(long)]
        all_profiles: bool,
    },
    /// Check whether a set of MIG instances fits one GPU, and where each is placed.
    Check {
        /// GPU catalogue key, e.g. a100-80gb.
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
    let catalogue = Catalogue::builtin();
    if let Command::Run { out: Some(d), .. } | Command::Study { out: Some(d), .. } = &cli.command {
        report::prepare_out_dir(d).map_err(|e| e.to_string())?;
    }
    match cli.command {
        Command::Run {
            experiment,
            out,
            seed,
        } => {
            let mut exp = Experiment::load(&experiment, &catalogue).map_err(|e| e.to_string())?;
            if let Some(s) = seed {
                exp.raw.seed = s;
            }
            finish(vec![report::run_experiment(&exp)], out)
        }
        Command::Study { study, out, seed } => {
            let mut s = Study::load(&study, &catalogue).map_err(|e| e.to_string())?;
            if let Some(seed) = seed {
                s.experiments.iter_mut().for_each(|e| e.raw.seed = seed);
            }
            finish(s.run(), out)
        }
        Command::Mig { command } => mig(&catalogue, command),
        Command::Sweep {
            sweep,
            out,
            resume,
            quiet,
            shard,
            shards,
        } => sweep_cmd(&catalogue, &sweep, out, resume, quiet, shard, shards),
        Command::Merge { dirs, out } => {
            let rec = sweep::SweepRecord::merge(&dirs).map_err(|e| e.to_string())?;
            sweep::write_outputs(&out, &rec).map_err(|e| e.to_string())?;
            print!("{}", sweep::table::overview(&rec));
            println!(
                "\nwrote {0}/sweep.json, {0}/runs.csv and {0}/points.csv",
                out.display()
            );
            Ok(())
        }
    }
}

fn sweep_cmd(
    catalogue: &Catalogue,
    path: &std::path::Path,
    out: Option<PathBuf>,
    resume: bool,
    quiet: bool,
    shard: Option<String>,
    shards: Option<usize>,
) -> Result<(), String> {
    let shard = sweep::Shard::select(shard.as_deref(), shards, &|k| std::env::var(k).ok())?;
    let plan = sweep::Plan::load(path, catalogue).map_err(|e| e.to_string())?;
    let out = out.unwrap_or_else(|| {
        let dir = PathBuf::from("results").join(&plan.file.name);
        match shard {
            Some((s, _)) => dir.join(format!("shard-{}-of-{}", s.index + 1, s.count)),
            None => dir,
        }
    });
    report::prepare_out_dir(&out).map_err(|e| e.to_string())?;
    if let Some((s, from)) = shard {
        eprintln!("shard {s} (from {from})");
    }
    let shard = shard.map(|(s, _)| s);
    let total = sweep::runner::share(&plan, shard).len();
    let bar = Progress::new(total, &plan.file.name, quiet);
    let opts = sweep::Options { resume, shard };
    let rec = sweep::run(&plan, &out, opts, catalogue, &|| bar.inc()).map_err(|e| e.to_string());
    bar.finish();
    let (rec, reused) = rec?;
    print!("{}", sweep::table::overview(&rec));
    if resume {
        println!(
            "{reused} runs reused from the earlier sweep in {}",
            out.display()
        );
    }
    println!(
        "\nwrote {0}/sweep.json, {0}/runs.csv and {0}/points.csv",
        out.display()
    );
    Ok(())
}

fn finish(runs: Vec<RunSummary>, out: Option<PathBuf>) -> Result<(), String> {
    print!("{}", report::table(&runs));
    if let Some(dir) = out {
        report::write_outputs(&dir, &runs).map_err(|e: InputError| e.to_string())?;
        println!("\nwrote {0}/summary.json and {0}/runs.csv", dir.display());
    }
    Ok(())
}

fn mig(catalogue: &Catalogue, cmd: MigCommand) -> Result<(), String> {
    match cmd {
        MigCommand::Layouts { gpu, all_profiles } => {
            let spec = catalogue.gpu(&gpu).map_err(|e| e.to_string())?;
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

#[cfg(unix)]
fn reset_sigpipe() {
    // SAFETY: restoring the default SIGPIPE disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}
