//! Chart tests: every chart type is a non-empty PNG of the requested size and a parseable
//! SVG; charts from failed or empty runs are clear errors with nothing written. Also the
//! detail behind the charts: timelines add up to the busy totals, quantiles agree with the
//! summary's percentiles.

use std::path::{Path, PathBuf};
use std::process::Command;

use gpushare::engine::SimTime;
use gpushare::pipeline::Simulation;
use gpushare::report::summarise;
use gpushare::results::{detail, quantile_levels};
use tempfile::TempDir;

fn bin(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gpushare"))
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .expect("the binary starts");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn seed(stem: &str) -> String {
    format!(
        "{:?}",
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/seed")
            .join(format!("{stem}.toml"))
            .display()
            .to_string()
    )
}

/// A two-run study (time-slicing and MIG, light load, shortened) with `timeout_s`.
fn study(dir: &Path, timeout_s: f64) -> PathBuf {
    for (name, base) in [("ts", "time-slicing-light"), ("mig", "mig-light")] {
        let text = format!(
            "extends = [{}]\nname = \"{name}\"\n[workload]\nhold_s = 10.0\ntimeout_s = {timeout_s}\n",
            seed(base)
        );
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
    let p = dir.join("study.toml");
    std::fs::write(
        &p,
        "name = \"two\"\nexperiments = [\"ts.toml\", \"mig.toml\"]\n",
    )
    .unwrap();
    p
}

fn check_png_and_svg(dir: &Path, stem: &str, w: u32, h: u32) {
    let png = dir.join(format!("{stem}.png"));
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!((img.width(), img.height()), (w, h), "{stem}.png size");
    let rgb = img.to_rgb8();
    let non_white = rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        non_white > (w * h / 50) as usize,
        "{stem}.png is nearly blank ({non_white} drawn pixels)"
    );
    let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{stem}.svg: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(
        doc.root_element().attribute("width"),
        Some(w.to_string().as_str())
    );
    assert!(doc.descendants().filter(|n| n.has_tag_name("text")).count() > 5);
}

#[test]
fn every_study_chart_is_a_png_of_the_requested_size_and_a_parseable_svg() {
    let tmp = TempDir::new().unwrap();
    let study = study(tmp.path(), 60.0);
    let out = tmp.path().join("res");
    let (code, stdout, stderr) = bin(&[
        "study",
        study.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plot",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for stem in [
        "throughput_per_gpu",
        "latency_by_stage",
        "latency_cdf",
        "busy_timeline",
    ] {
        check_png_and_svg(&out.join("plots"), stem, 1200, 800);
    }
    let charts = tmp.path().join("small");
    let (code, _, stderr) = bin(&[
        "plot",
        out.to_str().unwrap(),
        "--out",
        charts.to_str().unwrap(),
        "--size",
        "640x400",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    for stem in [
        "throughput_per_gpu",
        "latency_by_stage",
        "latency_cdf",
        "busy_timeline",
    ] {
        check_png_and_svg(&charts, stem, 640, 400);
    }
    let (code, _, stderr) = bin(&["plot", out.to_str().unwrap(), "--size", "10x10"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--size 10x10"), "{stderr}");
    // Charts are drawn from written results: --plot needs --out.
    let (code, _, stderr) = bin(&["study", study.to_str().unwrap(), "--plot"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("give --out DIR"), "{stderr}");
}

#[test]
fn sweep_charts_are_drawn_with_curves_per_metric() {
    let tmp = TempDir::new().unwrap();
    let file = tmp.path().join("s.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "s"
base = {}
seeds = 2
[[modes]]
label = "mig"
[[modes]]
label = "time-slicing"
"gpus[0].sharing" = {{ mode = "time-slicing", replicas = 2 }}
"deployments[0].replicas" = [{{ gpu = "gpu0" }}]
"deployments[1].replicas" = [{{ gpu = "gpu0" }}]
[grid]
"workload.hold_s" = [8.0]
"workload.users" = [1, 2, 4]
"#,
            seed("mig-light")
        ),
    )
    .unwrap();
    let out = tmp.path().join("o");
    let (code, stdout, stderr) = bin(&[
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plot",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for stem in [
        "sweep_throughput_per_gpu_rps",
        "sweep_latency_ms_request_p95",
        "sweep_success_rate",
        "throughput_per_gpu",
    ] {
        check_png_and_svg(&out.join("plots"), stem, 1200, 800);
    }
}

#[test]
fn charts_of_failed_or_empty_runs_are_errors_and_write_nothing() {
    // Every request times out: no latency to draw.
    let tmp = TempDir::new().unwrap();
    let study = study(tmp.path(), 0.05);
    let out = tmp.path().join("res");
    let (code, _, stderr) = bin(&[
        "study",
        study.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let charts = tmp.path().join("charts");
    let (code, _, stderr) = bin(&[
        "plot",
        out.to_str().unwrap(),
        "--out",
        charts.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("latency_by_stage") && stderr.contains("no run has a successful request"),
        "{stderr}"
    );
    assert!(!charts.exists() || std::fs::read_dir(&charts).unwrap().next().is_none());

    // A sweep whose every run failed names the first error.
    let file = tmp.path().join("s.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"f\"\nbase = {}\n[grid]\n\"gpus[0].sharing.instances\" = [[\"7g.80gb\", \"7g.80gb\"]]\n",
            seed("mig-light")
        ),
    )
    .unwrap();
    let sw = tmp.path().join("sw");
    let (code, _, stderr) = bin(&[
        "sweep",
        file.to_str().unwrap(),
        "--out",
        sw.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = bin(&["plot", sw.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("every run of the sweep failed") && stderr.contains("7g.80gb"),
        "{stderr}"
    );
    assert!(!sw.join("plots").exists());

    // A folder with no results.
    let (code, _, stderr) = bin(&["plot", tmp.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no summary.json"), "{stderr}");
}

#[test]
fn timelines_add_up_to_busy_totals_and_quantiles_match_the_summary() {
    for stem in ["time-slicing-heavy", "mig-light"] {
        let mut exp = crate::seed_experiment(stem);
        crate::shorten(&mut exp, 0.2);
        let r = Simulation::new(&exp).run();
        let summary = summarise(&exp, &r);
        for (i, tl) in r.timelines.iter().enumerate() {
            assert_eq!(
                tl.busy_ns.iter().sum::<u64>(),
                r.busy_ns[i],
                "{stem} partition {i}"
            );
            assert_eq!(tl.switching_ns.iter().sum::<u64>(), r.switching_ns[i]);
            let end = SimTime::from_secs_f64(r.duration_s);
            assert!(tl.busy_ns.len() as u64 <= end.0.div_ceil(tl.bucket_ns));
            for (_, b, s) in tl.fractions(end) {
                // Rounding moves at most 2 ns per stretch between neighbouring buckets.
                assert!((0.0..=1.0 + 1e-6).contains(&(b + s)), "{stem}: {b} + {s}");
            }
        }
        let d = detail(&exp, &r);
        let ps = quantile_levels();
        let i50 = ps.iter().position(|p| (p - 0.5).abs() < 1e-12).unwrap();
        for (stage, qs) in &d.quantiles_ms {
            let l = summary.latency_ms.get(stage);
            assert_eq!(qs.len(), ps.len());
            assert_eq!(qs[i50], l.p50, "{stem} {stage}");
            assert!(
                qs.windows(2).all(|w| w[0] <= w[1]),
                "quantiles are monotone"
            );
        }
    }
}

#[test]
fn the_busy_timeline_marks_each_fault_until_its_recovery() {
    let dir = TempDir::new().unwrap();
    let with = |name: &str, faults: &str| {
        let text = format!(
            "extends = [{}]\nname = \"{name}\"\n[workload]\nhold_s = 30.0\n{faults}",
            seed("mig-light")
        );
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let plain = with("plain", "");
    let faulty = with(
        "faulty",
        "[faults]\n[[faults.inject]]\nat_s = 12.0\nkind = \"app-crash\"\nmodel = \"parakeet-1.1b\"\n",
    );
    let svg = |exp: &Path, out: &str| {
        let out = dir.path().join(out);
        let (code, _, err) = bin(&[
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--plot",
        ]);
        assert_eq!(code, Some(0), "{err}");
        std::fs::read_to_string(out.join("plots/busy_timeline.svg")).unwrap()
    };
    assert!(svg(&faulty, "f").contains("fault, shaded until recovered"));
    assert!(!svg(&plain, "p").contains("fault, shaded until recovered"));
}
