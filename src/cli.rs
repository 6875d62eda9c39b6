//! Commands of the command-line front end that take more than one library call (sweep,
//! merge, plot): the binary parses arguments and calls these. Output goes to stdout (results)
//! and stderr (progress, notes); errors come back as messages.

use std::path::{Path, PathBuf};

use crate::hardware::Catalogue;
use crate::plot;
use crate::progress::Progress;
use crate::report;
use crate::sweep::{self, Shard};

/// How to run a sweep from the command line.
pub struct SweepOpts {
    /// Output folder (default `results/<name>`, or `results/<name>/shard-I-of-N`).
    pub out: Option<PathBuf>,
    /// Reuse completed runs.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// This machine's shard and where it came from.
    pub shard: Option<(Shard, &'static str)>,
}

/// Run the sweep at `path`; `charts` maps the output folder to where charts go, if anywhere.
pub fn sweep(
    catalogue: &Catalogue,
    path: &Path,
    opts: SweepOpts,
    charts: &dyn Fn(&Path) -> Result<Option<PathBuf>, String>,
) -> Result<(), String> {
    let plan = sweep::Plan::load(path, catalogue).map_err(|e| e.to_string())?;
    let out = opts.out.unwrap_or_else(|| {
        let dir = PathBuf::from("results").join(&plan.file.name);
        match opts.shard {
            Some((s, _)) => dir.join(format!("shard-{}-of-{}", s.index + 1, s.count)),
            None => dir,
        }
    });
    let charts = charts(&out)?;
    report::prepare_out_dir(&out).map_err(|e| e.to_string())?;
    if let Some((s, from)) = opts.shard {
        eprintln!("shard {s} (from {from})");
    }
    let shard = opts.shard.map(|(s, _)| s);
    let total = sweep::runner::share(&plan, shard).len();
    let bar = Progress::new(total, &plan.file.name, opts.quiet);
    let run_opts = sweep::Options {
        resume: opts.resume,
        shard,
    };
    let result = sweep::run(&plan, &out, run_opts, catalogue, &|| bar.inc());
    bar.finish();
    let (rec, reused) = result.map_err(|e| e.to_string())?;
    print!("{}", sweep::table::overview(&rec));
    if opts.resume {
        println!(
            "{reused} runs reused from the earlier sweep in {}",
            out.display()
        );
    }
    println!(
        "\nwrote {0}/sweep.json, {0}/runs.csv and {0}/points.csv",
        out.display()
    );
    match charts {
        Some(dir) => draw(&out, &dir, plot::Options::default()),
        None => Ok(()),
    }
}

/// Merge shard folders `dirs` into `out`; then draw into `charts` if given.
pub fn merge(dirs: &[PathBuf], out: &Path, charts: Option<&Path>) -> Result<(), String> {
    let rec = sweep::SweepRecord::merge(dirs).map_err(|e| e.to_string())?;
    sweep::write_outputs(out, &rec).map_err(|e| e.to_string())?;
    print!("{}", sweep::table::overview(&rec));
    println!(
        "\nwrote {0}/sweep.json, {0}/runs.csv and {0}/points.csv",
        out.display()
    );
    match charts {
        Some(dir) => draw(out, dir, plot::Options::default()),
        None => Ok(()),
    }
}

/// Draw the charts of `results` into `dir` and list them.
pub fn draw(results: &Path, dir: &Path, opts: plot::Options) -> Result<(), String> {
    let done = plot::plot_results(results, dir, opts).map_err(|e| e.to_string())?;
    println!("\ncharts in {}:", dir.display());
    for f in done
        .files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
    {
        let stem = f.file_stem().unwrap_or_default().to_string_lossy();
        println!("  {stem}.png, {stem}.svg");
    }
    for s in done.skipped {
        println!("  skipped {s}");
    }
    Ok(())
}

/// `operator import`: the experiment of the GPU Operator files named by `cluster`, with the
/// load and pipeline of `base`, written to `out` (or printed as TOML).
pub fn operator_import(
    catalogue: &Catalogue,
    cluster: &Path,
    base: &Path,
    out: Option<&Path>,
) -> Result<(), String> {
    if let Some(out) = out {
        crate::config::not_an_input(out, "--out", &[cluster, base]).map_err(|e| e.to_string())?;
    }
    let imported =
        crate::operator::import_experiment(cluster, base, catalogue).map_err(|e| e.to_string())?;
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    let dir = match out {
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("."),
    };
    let text =
        crate::operator::experiment_text(imported.value, base, &dir).map_err(|e| e.to_string())?;
    let p = &imported.placed;
    let nodes: std::collections::BTreeSet<&str> = p.gpus.iter().map(|g| g.node.as_str()).collect();
    let pods: Vec<String> = p
        .deployments
        .iter()
        .map(|(m, r)| format!("{m} x{}", r.len()))
        .collect();
    let summary = format!(
        "imported {} GPUs on {} nodes; replicas: {}",
        p.gpus.len(),
        nodes.len(),
        pods.join(", ")
    );
    match out {
        Some(path) => {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            crate::config::write_atomic_all(&[(path.to_path_buf(), text.into_bytes())])
                .map_err(|e| e.to_string())?;
            println!("{summary}\nwrote {}", path.display());
        }
        None => {
            eprintln!("{summary}");
            print!("{text}");
        }
    }
    Ok(())
}

/// `operator export`: the GPU Operator files of `experiment`'s cluster, written into `out`.
pub fn operator_export(catalogue: &Catalogue, experiment: &Path, out: &Path) -> Result<(), String> {
    let exp =
        crate::experiment::Experiment::load(experiment, catalogue).map_err(|e| e.to_string())?;
    let files =
        crate::operator::export_raw(&exp.raw, experiment, catalogue).map_err(|e| e.to_string())?;
    let written = crate::operator::write_files(out, &files).map_err(|e| e.to_string())?;
    println!("wrote the GPU Operator files of {}:", experiment.display());
    for w in written {
        println!("  {}", w.display());
    }
    println!("apply them as {} says", out.join("cluster.yaml").display());
    Ok(())
}

/// `plan`: search, print the ranked table, write the results folder; `charts` maps the output
/// folder to where the chart goes, if anywhere.
pub fn plan(
    catalogue: &Catalogue,
    path: &Path,
    out: Option<PathBuf>,
    charts: &dyn Fn(&Path) -> Result<Option<PathBuf>, String>,
    top: usize,
    quiet: bool,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let progress = |g: u32, n: usize| {
        if !quiet {
            eprintln!("  {g} GPUs: {n} configurations");
        }
    };
    if !quiet {
        eprintln!("calibrating and bounding each model, then searching by GPU count:");
    }
    let (report, plan) = crate::plan::run(path, catalogue, &progress).map_err(|e| e.to_string())?;
    let out = out.unwrap_or_else(|| PathBuf::from("results").join(&report.name));
    let chart_dir = charts(&out)?;
    print!("{}", crate::plan::output::table(&report, top));
    let drawn = chart_dir.is_some() && report.candidates.iter().any(|c| c.measured.is_some());
    crate::plan::write(
        &plan,
        catalogue,
        &report,
        &out,
        chart_dir
            .clone()
            .filter(|_| drawn)
            .map(|d| (d, plot::Options::default())),
    )?;
    println!(
        "\nwrote {0}/plan.json and {0}/candidates.csv",
        out.display()
    );
    if report.recommended.is_some() {
        println!(
            "the recommended configuration: {0}/recommended/experiment.toml and its GPU Operator files (see {0}/recommended/cluster.yaml)",
            out.display()
        );
    }
    match (&chart_dir, drawn) {
        (Some(d), true) => println!("chart: {}/plan_candidates.png, .svg", d.display()),
        (Some(_), false) => println!("chart skipped: no configuration was simulated"),
        _ => {}
    }
    if !quiet {
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}
