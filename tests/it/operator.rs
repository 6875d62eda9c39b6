//! The GPU Operator files through the binary: import of the example, export and import back,
//! and bad input naming the file, the key and the line.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use gpushare::experiment::Experiment;
use gpushare::hardware::Catalogue;
use gpushare::report::run_experiment;

use crate::root;

fn gpushare(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gpushare"))
        .args(args)
        .output()
        .expect("the gpushare binary starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gpushare operator import CLUSTER --base BASE [--out OUT]`.
fn import(cluster: &Path, base: &Path, out: Option<&Path>) -> (i32, String, String) {
    let mut args = vec![
        "operator".to_string(),
        "import".into(),
        s(cluster),
        "--base".into(),
        s(base),
    ];
    if let Some(out) = out {
        args.extend(["--out".into(), s(out)]);
    }
    gpushare(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The example cluster (the seed's MIG configuration as GPU Operator files) imports to an
/// experiment that simulates exactly as the seed's own MIG experiment.
#[test]
fn the_example_imports_to_the_seed_mig_configuration() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("sub/mig.toml");
    let (code, stdout, stderr) = import(
        &root().join("experiments/operator/cluster.yaml"),
        &root().join("experiments/seed/mig-heavy.toml"),
        Some(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("imported 2 GPUs on 2 nodes"), "{stdout}");
    let cat = Catalogue::builtin();
    let mut imported = Experiment::load(&out, &cat).unwrap();
    let mut seed = crate::seed_experiment("mig-heavy");
    crate::shorten(&mut imported, 0.2);
    crate::shorten(&mut seed, 0.2);
    // Same cluster but the node names: same simulation.
    for (a, b) in imported.raw.gpus.iter().zip(&seed.raw.gpus) {
        assert_eq!(
            (&a.id, &a.gpu_type, &a.sharing),
            (&b.id, &b.gpu_type, &b.sharing)
        );
    }
    let (a, b) = (run_experiment(&imported), run_experiment(&seed));
    assert_eq!(a.completed, b.completed);
    assert_eq!(a.latency_ms.request.p95, b.latency_ms.request.p95);
}

/// Export then import through the binary gives back the cluster it started from.
#[test]
fn export_then_import_round_trips_through_the_binary() {
    let dir = TempDir::new().unwrap();
    let files = dir.path().join("k8s");
    let seed = root().join("experiments/seed/mig-heavy.toml");
    let (code, stdout, stderr) = gpushare(&["operator", "export", &s(&seed), "--out", &s(&files)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cluster.yaml"), "{stdout}");
    let mut names: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cluster.yaml",
            "device-plugin-config.yaml",
            "mig-parted-config.yaml",
            "workloads.yaml"
        ]
    );
    let back = dir.path().join("back.toml");
    let (code, _, stderr) = import(&files.join("cluster.yaml"), &seed, Some(&back));
    assert_eq!(code, 0, "{stderr}");
    let cat = Catalogue::builtin();
    let a = Experiment::load(&back, &cat).unwrap().raw;
    let b = Experiment::load(&seed, &cat).unwrap().raw;
    assert_eq!(a.gpus, b.gpus);
    assert_eq!(a.deployments, b.deployments);
}

/// A typo in a file is an error naming the file, the key path and the line; no panic.
#[test]
fn bad_operator_files_name_file_key_and_line() {
    let dir = TempDir::new().unwrap();
    let ex = root().join("experiments/operator");
    for f in ["cluster.yaml", "mig-parted-presets.yaml", "workloads.yaml"] {
        std::fs::copy(ex.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("device-plugin-config.yaml"),
        "version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replica: 2\n",
    )
    .unwrap();
    let (code, stdout, stderr) = import(
        &dir.path().join("cluster.yaml"),
        &root().join("experiments/seed/mig-heavy.toml"),
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in [
        "device-plugin-config.yaml: line 8, column 7",
        "sharing.timeSlicing.resources[0].replica",
        "unknown field `replica`",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in:\n{stderr}");
    }
    // More pods than the node advertises: the error names the resource.
    let w = std::fs::read_to_string(ex.join("workloads.yaml"))
        .unwrap()
        .replacen("replicas: 1", "replicas: 3", 1);
    std::fs::write(dir.path().join("workloads.yaml"), w).unwrap();
    std::fs::copy(
        ex.join("device-plugin-config.yaml"),
        dir.path().join("device-plugin-config.yaml"),
    )
    .unwrap();
    let (code, _, stderr) = import(
        &dir.path().join("cluster.yaml"),
        &root().join("experiments/seed/mig-heavy.toml"),
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("workloads.yaml: line"), "{stderr}");
    assert!(
        stderr.contains("finds no free nvidia.com/mig-3g.40gb"),
        "{stderr}"
    );
}

/// Every experiment file under `experiments/` (those that load on their own; parts that others
/// extend do not).
fn shipped_experiments() -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "toml") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(&root().join("experiments"), &mut all);
    let cat = Catalogue::builtin();
    all.into_iter()
        .filter(|p| Experiment::load(p, &cat).is_ok())
        .collect()
}

/// Every shipped experiment exports to GPU Operator files and imports back to exactly the
/// same experiment: GPU ids, nodes, sharing, replicas and everything else.
#[test]
fn every_shipped_experiment_round_trips_through_the_operator_files() {
    let cat = Catalogue::builtin();
    let exps = shipped_experiments();
    assert!(exps.len() >= 20, "{} experiments found", exps.len());
    let mut inexpressible = Vec::new();
    for path in exps {
        let raw = Experiment::load(&path, &cat).unwrap().raw;
        let dir = TempDir::new().unwrap();
        // MPS clients without the device plugin's equal memory split (the whole pipeline on
        // one GPU) have no device-plugin form: export must say so, and nothing else may fail.
        let unlimited_mps = raw.gpus.iter().any(|g| {
            matches!(
                &g.sharing,
                gpushare::experiment::SharingSpec::Mps {
                    memory_limit: gpushare::experiment::MpsMemoryLimit::None,
                    ..
                }
            )
        });
        let files = match gpushare::operator::export_raw(&raw, &path, &cat) {
            Err(e) if unlimited_mps => {
                let e = e.to_string();
                assert!(
                    e.contains("memory_limit") && e.contains("1 / replicas"),
                    "{e}"
                );
                inexpressible.push(path.file_name().unwrap().to_string_lossy().to_string());
                continue;
            }
            files => files.unwrap_or_else(|e| panic!("{}: export: {e}", path.display())),
        };
        gpushare::operator::write_files(dir.path(), &files).unwrap();
        let imported =
            gpushare::operator::import_experiment(&dir.path().join("cluster.yaml"), &path, &cat)
                .unwrap_or_else(|e| panic!("{}: import: {e}", path.display()));
        let text = gpushare::operator::experiment_text(imported.value, &path, dir.path()).unwrap();
        let back = dir.path().join("back.toml");
        std::fs::write(&back, text).unwrap();
        let again = Experiment::load(&back, &cat).unwrap().raw;
        // A trace's path is written relative to the new file: the same file by another path.
        let same_file = |mut r: gpushare::experiment::RawExperiment| {
            if let gpushare::workload::WorkloadSpec::Trace(t) = &mut r.workload {
                t.path = std::fs::canonicalize(&t.path).unwrap();
            }
            r
        };
        assert_eq!(same_file(again), same_file(raw), "{}", path.display());
    }
    // Only the hardware study's one-GPU MPS runs.
    inexpressible.sort();
    let mps_runs = ["a100-mps", "b200-mps", "h100-mps", "h200-mps", "l40s-mps"];
    assert_eq!(inexpressible, mps_runs.map(|n| format!("{n}.toml")));
}

/// A file as a team keeps it (Deployments with their Services, a ConfigMap, a Secret, a
/// volume claim, a CPU-only gateway and its autoscaler) imports its GPU pods, names each
/// model from a label, the vLLM command line or the annotation, and says what it skipped.
#[test]
fn a_real_world_manifest_imports_its_gpu_pods_and_names_what_it_skipped() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("voice.toml");
    let (code, stdout, stderr) = import(
        &root().join("tests/fixtures/operator/cluster.yaml"),
        &root().join("experiments/seed/baseline-heavy.toml"),
        Some(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("imported 3 GPUs on 1 nodes"), "{stdout}");
    for skipped in [
        "skipped 7 objects",
        "PersistentVolumeClaim model-cache",
        "Secret hf-token",
        "ConfigMap gateway-config",
        "Service llm",
        "Service asr",
        "Deployment gateway (no nvidia.com/ resource)",
        "HorizontalPodAutoscaler gateway",
    ] {
        assert!(stderr.contains(skipped), "`{skipped}` in:\n{stderr}");
    }
    let exp = Experiment::load(&out, &Catalogue::builtin()).unwrap().raw;
    let models: Vec<(&str, &str)> = exp
        .deployments
        .iter()
        .map(|d| (d.model.as_str(), d.replicas[0].gpu.as_str()))
        .collect();
    assert_eq!(
        models,
        // The base's order; the GPUs in the file's order.
        [
            ("parakeet-1.1b", "gpu1"),
            ("magpie-tts-multilingual", "gpu2"),
            ("nemotron-nano-vl-8b", "gpu0")
        ]
    );
    // No hint names a profile: the error lists what was tried and the annotation to set.
    let stack = std::fs::read_to_string(root().join("tests/fixtures/operator/voice-stack.yaml"))
        .unwrap()
        .replace("--served-model-name nemotron-nano-vl-8b ", "");
    std::fs::write(dir.path().join("voice-stack.yaml"), stack).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/operator/cluster.yaml"),
        dir.path().join("cluster.yaml"),
    )
    .unwrap();
    let (code, _, stderr) = import(
        &dir.path().join("cluster.yaml"),
        &root().join("experiments/seed/baseline-heavy.toml"),
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    for needle in [
        "voice-stack.yaml: line",
        "Deployment llm",
        "`nvidia/Llama-3.1-Nemotron-Nano-VL-8B-V1`",
        "gpushare/model",
        "nemotron-nano-vl-8b",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in:\n{stderr}");
    }
}

/// An MPS client too big for the device plugin's per-client memory limit (the TTS's 13.4 GB
/// against 1/8 of the card): the hint speaks of
/// the device-plugin config, not of an experiment setting the files cannot express.
#[test]
fn the_mps_memory_error_gives_a_fix_the_operator_files_can_make() {
    let dir = TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("cluster.yaml"),
        "version: v1\ndevicePlugin: plugin.yaml\nworkloads: w.yaml\nnodes:\n- name: n0\n  gpu: a100-80gb\n  count: 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plugin.yaml"),
        "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 8\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("w.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: magpie-tts-multilingual\nspec:\n  containers:\n  - name: tts\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n",
    )
    .unwrap();
    let (code, _, stderr) = import(
        &dir.path().join("cluster.yaml"),
        &root().join("experiments/seed/baseline-heavy.toml"),
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("MPS pinned-memory limit"), "{stderr}");
    assert!(
        stderr.contains("sharing.mps.resources[].replicas"),
        "{stderr}"
    );
    assert!(!stderr.contains("memory_limit = \"none\""), "{stderr}");
}
