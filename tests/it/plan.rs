//! The capacity planner: its answer against brute force on a small case, determinism, the
//! written results, and bad plan files.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use gpushare::hardware::Catalogue;
use gpushare::plan::evaluate::Ctx;
use gpushare::plan::{Plan, search};

use crate::root;

/// A small plan: an LLM feeding a TTS, 8 closed-loop users, a 1.5 s p95 target; MIG limited
/// to two profiles and the shared pools to two tenants, so that brute force stays small.
fn small_plan(dir: &Path, bounds: &str) -> PathBuf {
    let text = format!(
        r#"name = "small"
models = ["nemotron-nano-vl-8b", "magpie-tts-multilingual"]
models_dir = "{models}"
gpu = "a100-80gb"
price_per_gpu_hour = 2.5
seed = 3

[answers]
prompt_tokens = {{ dist = "fixed", value = 200 }}
output_tokens = {{ dist = "normal", mean = 40, sd = 12, min = 12, max = 96 }}
sentences = {{ dist = "uniform", min = 2, max = 3 }}

[workload]
mode = "closed-loop"
users = 8
ramp_up_s = 0.0
hold_s = 30.0
ramp_down_s = 0.0
think_time_s = 0.5
timeout_s = 30.0

[targets]
request_p95_ms = 1500.0
success_rate = 0.99

[search]
mig_profiles = ["3g.40gb", "7g.80gb"]
time_slicing_replicas = [2]
mps_replicas = [2]
bounds = "{bounds}"
"#,
        models = root()
            .join("models")
            .display()
            .to_string()
            .replace('\\', "/")
    );
    let path = dir.join(format!("small-{bounds}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// On a small case the planner's answer (fewest GPUs, and the configuration it recommends)
/// equals brute force over every configuration with at most that many GPUs, with either
/// kind of bound, while simulating far fewer configurations.
#[test]
fn the_planner_equals_brute_force_on_a_small_case() {
    let dir = TempDir::new().unwrap();
    let cat = Catalogue::builtin();
    let mut answers = Vec::new();
    for bounds in ["least-load", "at-load"] {
        let plan = Plan::load(&small_plan(dir.path(), bounds), &cat).unwrap();
        let ctx = Ctx::new(&plan, &cat);
        let out = search::run(&ctx, &|_, _| {}).unwrap();
        let min = out.min_gpus.expect("some configuration meets the targets");
        assert!(out.proven);
        let mut planned = out.evaluated.clone();
        planned.sort_by(search::rank);
        let best = planned.first().unwrap();
        assert!(best.pass && best.gpus == min);
        answers.push((min, best.config.candidate.clone(), out.evaluated.len()));
    }
    let plan = Plan::load(&small_plan(dir.path(), "least-load"), &cat).unwrap();
    let ctx = Ctx::new(&plan, &cat);
    let max = answers[0].0;
    let brute = search::exhaustive(&ctx, max, 2 * max);
    let passing: Vec<_> = brute.iter().filter(|e| e.pass).collect();
    let brute_min = passing
        .iter()
        .map(|e| e.gpus)
        .min()
        .expect("brute force finds one");
    assert_eq!(brute_min, max, "fewest GPUs");
    assert_eq!(
        brute[0].config.candidate, answers[0].1,
        "recommended configuration"
    );
    assert_eq!(answers[1].0, max);
    assert_eq!(answers[1].1, answers[0].1);
    // Brute force tried every configuration of up to `max` GPUs; the planner a fraction.
    assert!(
        brute.len() > 5 * answers[0].2,
        "brute force {} vs planner {}",
        brute.len(),
        answers[0].2
    );
    assert!(brute.iter().all(|e| e.gpus <= max));
}

fn gpushare(args: &[&str], threads: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gpushare"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .expect("the gpushare binary starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gpushare plan` writes the ranked results, the recommended experiment and GPU Operator
/// files, and the chart; the bytes do not depend on the thread count; the recommended
/// experiment runs.
#[test]
fn plan_command_writes_deterministic_results() {
    let dir = TempDir::new().unwrap();
    let plan = small_plan(dir.path(), "at-load");
    let p = plan.display().to_string();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (code, stdout, stderr) = gpushare(
        &[
            "plan",
            &p,
            "--out",
            &a.display().to_string(),
            "--plot",
            "--quiet",
        ],
        "2",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("recommended: 3 GPUs, 7.50/h"), "{stdout}");
    assert!(stdout.contains("rank  gpus"), "{stdout}");
    let (code, _, stderr) = gpushare(
        &["plan", &p, "--out", &b.display().to_string(), "--quiet"],
        "1",
    );
    assert_eq!(code, 0, "{stderr}");
    for f in [
        "plan.json",
        "candidates.csv",
        "recommended/experiment.toml",
        "recommended/cluster.yaml",
        "recommended/workloads.yaml",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(x == y, "{f} differs between thread counts");
    }
    for f in [
        "plots/plan_candidates.png",
        "plots/plan_candidates.svg",
        "recommended/mig-parted-config.yaml",
        "recommended/device-plugin-config.yaml",
    ] {
        assert!(a.join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("plan.json")).unwrap()).unwrap();
    assert_eq!(json["min_gpus"], 3);
    assert_eq!(json["recommended"], 0);
    assert_eq!(json["candidates"][0]["pass"], true);
    let (code, stdout, stderr) = gpushare(
        &[
            "run",
            &a.join("recommended/experiment.toml").display().to_string(),
        ],
        "1",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("100.0%"), "{stdout}");
}

/// A bad plan is an error naming the file, the field and what is allowed; nothing is written.
#[test]
fn bad_plans_name_the_field() {
    let dir = TempDir::new().unwrap();
    let good = std::fs::read_to_string(small_plan(dir.path(), "at-load")).unwrap();
    for (from, to, needles) in [
        (
            "request_p95_ms = 1500.0",
            "request_p95_ms = -1.0",
            vec!["targets.request_p95_ms", "a finite number > 0"],
        ),
        (
            "mps_replicas = [2]",
            "mps_replicas = [1]",
            vec!["search.mps_replicas[0]", "replicas >= 2"],
        ),
        (
            "gpu = \"a100-80gb\"",
            "gpu = \"a100-80\"",
            vec!["field `gpu`", "did you mean `a100-80gb`?"],
        ),
        (
            "users = 8",
            "usrs = 8",
            vec!["workload", "unknown field `usrs`"],
        ),
        (
            "[targets]",
            "[targets]\ngpu_failures = 2",
            vec!["targets.gpu_failures", "0 or 1"],
        ),
        (
            "seed = 3",
            "seed = 3\ncolour = 1",
            vec!["unknown field `colour`"],
        ),
    ] {
        let path = dir.path().join("bad.toml");
        assert_eq!(good.matches(from).count(), 1, "{from}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let out = dir.path().join("out");
        let (code, stdout, stderr) = gpushare(
            &[
                "plan",
                &path.display().to_string(),
                "--out",
                &out.display().to_string(),
                "--quiet",
            ],
            "1",
        );
        assert_eq!(code, 1, "{from}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "`{n}` in:\n{stderr}");
        }
        assert!(!out.exists());
    }
}

/// The example plan files load.
#[test]
fn example_plans_load() {
    let cat = Catalogue::builtin();
    for f in std::fs::read_dir(root().join("experiments/plans")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            Plan::load(&p, &cat).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}

/// With a failure budget of one GPU, the answer needs more GPUs, and what it recommends still
/// meets the targets with each kind of GPU taken out.
#[test]
fn a_failure_budget_of_one_gpu_costs_gpus() {
    let dir = TempDir::new().unwrap();
    let cat = Catalogue::builtin();
    let path = small_plan(dir.path(), "at-load");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "success_rate = 0.99",
        "success_rate = 0.99\ngpu_failures = 1",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let plan = Plan::load(&path, &cat).unwrap();
    let ctx = Ctx::new(&plan, &cat);
    let out = search::run(&ctx, &|_, _| {}).unwrap();
    let min = out.min_gpus.expect("a configuration survives one GPU down");
    assert!(min > 3, "without the budget 3 GPUs suffice; with it {min}");
    let mut ranked = out.evaluated.clone();
    ranked.sort_by(search::rank);
    assert_eq!(ranked[0].survives_gpu_failure, Some(true));
    // Configurations that meet the targets but not with a GPU down are marked as such.
    assert!(
        out.evaluated
            .iter()
            .all(|e| e.pass == (e.headroom.worst() >= 0.0 && e.survives_gpu_failure == Some(true)))
    );
}
