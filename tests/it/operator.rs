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

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The example cluster (the seed's MIG configuration as GPU Operator files) imports to an
/// experiment that simulates exactly as the seed's own MIG experiment.
#[test]
fn the_example_imports_to_the_seed_mig_configuration() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("sub/mig.toml");
    let (code, stdout, stderr) = gpushare(&[
        "operator",
        "import",
        &s(&root().join("experiments/operator/cluster.yaml")),
        "--base",
        &s(&root().join("experiments/seed/mig-heavy.toml")),
        "--out",
        &s(&out),
    ]);
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
    let (code, _, stderr) = gpushare(&[
        "operator",
        "import",
        &s(&files.join("cluster.yaml")),
        "--base",
        &s(&seed),
        "--out",
        &s(&back),
    ]);
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
    let (code, stdout, stderr) = gpushare(&[
        "operator",
        "import",
        &s(&dir.path().join("cluster.yaml")),
        "--base",
        &s(&root().join("experiments/seed/mig-heavy.toml")),
    ]);
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
    let (code, _, stderr) = gpushare(&[
        "operator",
        "import",
        &s(&dir.path().join("cluster.yaml")),
        "--base",
        &s(&root().join("experiments/seed/mig-heavy.toml")),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("workloads.yaml: line"), "{stderr}");
    assert!(
        stderr.contains("finds no free nvidia.com/mig-3g.40gb"),
        "{stderr}"
    );
}
