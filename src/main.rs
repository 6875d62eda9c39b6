//! Command-line front end: parse arguments, call the library, turn errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gpushare::error::InputError;
use gpushare::experiment::Experiment;
use gpushare::hardware::{Catalogue, format_layout, maximal_placements, validate_layout};
use gpushare::report::{self, RunSummary};
use gpushare::study::Study;

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
    }
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
