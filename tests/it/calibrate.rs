//! Calibration without a GPU: recordings parse; the inventory and the recorder, run against a
//! node replayed from a recording (the fake NVML), give back that recording; the cluster file
//! loads as an experiment; fits recover the profile that generated a log; validation reports
//! an error per metric; bad files name the file and line.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gpushare::calibrate::fit::{FitInput, Fitted, fit};
use gpushare::calibrate::requests::RequestLog;
use gpushare::calibrate::synth::{self, START_UNIX_NS};
use gpushare::calibrate::validate::{ValidateInput, validate};
use gpushare::calibrate::{CalibrateError, cluster};
use gpushare::hardware::Catalogue;
use gpushare::nvml::recording::{Metric, MigModeRec, Recording, StoppedBy};
use gpushare::nvml::sampler::{self, Clock};
use gpushare::nvml::{RecordedNvml, inventory};
use gpushare::profile::ModelProfile;
use gpushare::serving::BatchConfig;
use tempfile::TempDir;

use super::root;

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/calibration")
}

fn load_rec(name: &str) -> Recording {
    Recording::load(&fixtures().join(name)).expect("fixture recordings load")
}

fn profile(name: &str) -> (ModelProfile, PathBuf) {
    let path = root().join("models").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    (ModelProfile::from_toml_str(&text, &path).unwrap(), path)
}

/// A clock that jumps instead of sleeping; it can raise a stop flag at a set time.
struct FakeClock<'a> {
    now: Cell<u64>,
    stop_at: Option<(u64, &'a AtomicBool)>,
}

impl Clock for FakeClock<'_> {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn sleep_ms(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
        if let Some((t, flag)) = self.stop_at
            && self.now.get() >= t
        {
            flag.store(true, Ordering::SeqCst);
        }
    }
    fn started_unix_ns(&self) -> i128 {
        START_UNIX_NS
    }
}

#[test]
fn recorded_samples_parse_and_unsupported_metrics_say_why() {
    let rec = load_rec("recording.jsonl");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(rec.header.interval_ms, 2000);
    assert_eq!(rec.samples.len(), 61);
    assert_eq!(rec.end.as_ref().unwrap().stopped_by, StoppedBy::Duration);
    assert!(rec.header.note.as_deref().unwrap().starts_with("SYNTHETIC"));
    let gpus = &rec.header.node.gpus;
    assert_eq!(gpus[0].mig_devices.len(), 2);
    assert_eq!(
        gpus[0].mig_mode.get(),
        Some(&MigModeRec {
            current: true,
            pending: true
        })
    );
    for s in &rec.samples {
        // MIG: utilization absent with NVML's reason, never a zero.
        let a100 = &s.gpus[0];
        assert_eq!(a100.utilization_gpu_pct.value, None);
        let why = a100.utilization_gpu_pct.unsupported.as_deref().unwrap();
        assert!(why.starts_with("NotSupported on MIG-enabled GPUs"), "{why}");
        assert_eq!(a100.process_utilization.value, None);
        assert_eq!(a100.mig_devices.len(), 2);
        assert!(a100.mig_devices[0].memory_used_bytes.get().is_some());
        // No MIG: a value.
        assert!(s.gpus[1].utilization_gpu_pct.get().is_some());
    }
    let busiest = rec
        .samples
        .iter()
        .filter_map(|s| s.gpus[1].utilization_gpu_pct.get().copied())
        .max()
        .unwrap();
    assert!((50..=100).contains(&busiest), "{busiest}");
}

#[test]
fn a_metric_is_a_value_or_a_reason_never_both_nor_neither() {
    let ok: Metric<u32> = serde_json::from_str(r#"{"value": 5}"#).unwrap();
    assert_eq!(ok.get(), Some(&5));
    let absent: Metric<u32> =
        serde_json::from_str(r#"{"value": null, "unsupported": "NotSupported"}"#).unwrap();
    assert_eq!(absent.value, None);
    assert_eq!(
        serde_json::to_string(&absent).unwrap(),
        r#"{"value":null,"unsupported":"NotSupported"}"#
    );
    for bad in [
        r#"{"value": null}"#,
        r#"{"value": 0, "unsupported": "x"}"#,
        r#"{"value": null, "unsupported": " "}"#,
    ] {
        assert!(serde_json::from_str::<Metric<u32>>(bad).is_err(), "{bad}");
    }
}

#[test]
fn fixtures_are_what_the_generator_writes() {
    let files = synth::fixture_files(&fixtures(), &Catalogue::builtin()).unwrap();
    assert_eq!(files.len(), 4);
    for (name, text) in files {
        let on_disk = std::fs::read_to_string(fixtures().join(&name)).unwrap();
        assert!(
            on_disk == text,
            "{name} differs from what `cargo run --example make_calibration_data` writes"
        );
    }
}

#[test]
fn inventory_of_a_replayed_node_is_its_header() {
    let rec = load_rec("node.jsonl");
    let node = inventory::collect(&RecordedNvml::new(rec.clone())).unwrap();
    assert_eq!(node, rec.header.node);
}

#[test]
fn recording_a_replayed_node_writes_the_recording_again() {
    let path = fixtures().join("node.jsonl");
    let rec = load_rec("node.jsonl");
    let mut nvml = RecordedNvml::new(rec.clone());
    let clock = FakeClock {
        now: Cell::new(0),
        stop_at: None,
    };
    let opts = sampler::Options {
        interval_ms: rec.header.interval_ms,
        duration_ms: Some(rec.samples.len() as u64 * rec.header.interval_ms),
        tool: rec.header.tool.clone(),
        note: rec.header.note.clone(),
    };
    let mut out = Vec::new();
    let summary =
        sampler::record(&mut nvml, &opts, &clock, &AtomicBool::new(false), &mut out).unwrap();
    assert_eq!(summary.samples, 5);
    assert_eq!(summary.stopped_by, StoppedBy::Duration);
    let written = String::from_utf8(out).unwrap();
    assert!(written == std::fs::read_to_string(&path).unwrap());
}

#[test]
fn an_interrupted_recording_is_finished_cleanly_and_written_atomically() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("rec.jsonl");
    let stop = AtomicBool::new(false);
    let clock = FakeClock {
        now: Cell::new(0),
        stop_at: Some((2500, &stop)),
    };
    let mut nvml = RecordedNvml::new(load_rec("recording.jsonl"));
    let opts = sampler::Options {
        interval_ms: 1000,
        duration_ms: None,
        tool: "test".into(),
        note: None,
    };
    let s = gpushare::calibrate::commands::record_to_file(&mut nvml, &opts, &clock, &stop, &out)
        .unwrap();
    assert_eq!((s.samples, s.stopped_by), (3, StoppedBy::Interrupt));
    let rec = Recording::load(&out).unwrap();
    assert!(rec.warnings.is_empty());
    assert_eq!(rec.samples.len(), 3);
    let end = rec.end.unwrap();
    assert_eq!(
        (end.samples, end.stopped_by, end.t_ms),
        (3, StoppedBy::Interrupt, 2500)
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["rec.jsonl"], "no temporary file is left");
}

#[test]
fn a_truncated_recording_names_the_file_and_line() {
    let text = std::fs::read_to_string(fixtures().join("node.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Cut the third line in half (a recorder killed mid-write).
    let cut = format!(
        "{}\n{}\n{}",
        lines[0],
        lines[1],
        &lines[2][..lines[2].len() / 2]
    );
    let e = Recording::read(cut.as_bytes(), Path::new("rec.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("rec.jsonl: line 3: the record is cut short"),
        "{e}"
    );
    // Whole lines but no end record: usable, with a warning.
    let no_end = lines[..3].join("\n");
    let rec = Recording::read(no_end.as_bytes(), Path::new("rec.jsonl")).unwrap();
    assert_eq!(rec.samples.len(), 2);
    assert!(
        rec.warnings[0].contains("no end record"),
        "{:?}",
        rec.warnings
    );
    // A sample with a GPU the header does not have.
    let bad = format!(
        "{}\n{}",
        lines[0],
        lines[1].replacen(
            "{\"index\":1,\"utilization_gpu_pct\"",
            "{\"index\":7,\"utilization_gpu_pct\"",
            1,
        )
    );
    let e = Recording::read(bad.as_bytes(), Path::new("rec.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rec.jsonl: line 2: field `gpus`"), "{e}");
    let e = Recording::read(lines[1].as_bytes(), Path::new("rec.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 1: a `sample` record before the header"),
        "{e}"
    );
}

/// The cluster file of the fixture node, extended by an experiment that deploys the voice
/// pipeline on it, loads as it is.
#[test]
fn the_cluster_file_loads_as_an_experiment() {
    let rec = load_rec("node.jsonl");
    let cat = Catalogue::builtin();
    let resolved = cluster::resolve(&rec.header.node, &cat);
    assert!(resolved.left_out.is_empty() && resolved.warnings.is_empty());
    let source = cluster::Source {
        from: "recording node.jsonl".into(),
        at: rec.header.started_at.clone(),
    };
    let text = cluster::cluster_toml(&rec.header.node, &resolved, "node0", &source).unwrap();
    assert!(
        text.contains("instances = [\"3g.40gb\", \"3g.40gb\"]"),
        "{text}"
    );
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("node.toml"), &text).unwrap();
    let e = super::experiment_on_inventory(dir.path(), "from-inventory", 10.0);
    let s = gpushare::report::run_experiment(&e);
    assert!(s.completed > 0);
}

#[test]
fn a_gpu_outside_the_catalogue_is_left_out_with_a_reason() {
    let mut node = load_rec("node.jsonl").header.node;
    // L4 is in the catalogue now (by PCI id or NVML name); T4 is not.
    let mut l4_gpu = node.gpus[1].clone();
    l4_gpu.name = "NVIDIA L4".into();
    l4_gpu.pci_device_id = Metric::of("0x27B810DE".into());
    let cat = Catalogue::builtin();
    let l4 = cluster::match_gpu(&cat, &l4_gpu);
    assert_eq!(
        l4.map(|(s, by)| (s.key.as_str(), by)),
        Some(("l4", cluster::MatchedBy::PciDeviceId))
    );
    node.gpus[1].name = "Tesla T4".into();
    node.gpus[1].pci_device_id = Metric::of("0x1EB810DE".into());
    node.gpus[0].mig_mode = Metric::of(MigModeRec {
        current: true,
        pending: false,
    });
    let r = cluster::resolve(&node, &Catalogue::builtin());
    assert_eq!(r.gpus.len(), 1);
    assert_eq!(r.left_out[0].0, 1);
    assert!(
        r.left_out[0].1.contains("hardware/gpus.toml"),
        "{:?}",
        r.left_out
    );
    assert!(
        r.warnings[0].contains("after the next GPU reset"),
        "{:?}",
        r.warnings
    );
    let source = cluster::Source {
        from: "test".into(),
        at: "now".into(),
    };
    let text = cluster::cluster_toml(&node, &r, "n", &source).unwrap();
    assert!(text.contains("# GPU 1 left out: Tesla T4"), "{text}");
}

fn fit_with(
    base: &str,
    gpu: &str,
    mig: Option<&str>,
    rec: &Recording,
    log: &RequestLog,
) -> Result<Fitted, CalibrateError> {
    let cat = Catalogue::builtin();
    let (m, path) = profile(base);
    fit(&FitInput {
        base: &m,
        base_path: &path,
        catalogue: &cat,
        gpu: cat.gpu(gpu).unwrap(),
        recording: rec,
        log,
        mig,
        device: None,
        pid: None,
        name: None,
        max_batched_tokens: 8192,
    })
}

fn param(f: &Fitted, key: &str) -> f64 {
    f.params
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no fitted {key}: {:?}", f.params))
        .fitted
}

/// Relative error of `got` against `want`.
fn rel(got: f64, want: f64) -> f64 {
    ((got - want) / want).abs()
}

/// The LLM log was generated by full simulation runs of a known profile (`llm_truth`): the fit
/// finds its step overhead and efficiencies again (measured: to the 6 digits written).
#[test]
fn fit_recovers_the_llm_profile_that_generated_the_log() {
    let rec = load_rec("recording.jsonl");
    let log = RequestLog::load(&fixtures().join("llm-aiperf.jsonl")).unwrap();
    let f = fit_with("nemotron-nano-vl-8b", "h100-80gb", None, &rec, &log).unwrap();
    assert!(
        rel(param(&f, "step_overhead_us"), 650.0) < 1e-3,
        "{:?}",
        f.params
    );
    assert!(
        rel(param(&f, "efficiency.compute"), 0.42) < 1e-3,
        "{:?}",
        f.params
    );
    assert!(
        rel(param(&f, "efficiency.memory"), 0.74) < 1e-3,
        "{:?}",
        f.params
    );
    for (what, q) in &f.quality {
        assert!(q.r2 > 0.9999 && q.mape_pct < 0.1, "{what}: {q:?}");
    }
    let cal = f.profile.calibration.as_ref().unwrap();
    assert_eq!(
        (
            cal.gpu.as_str(),
            cal.partition.as_str(),
            cal.driver_version.as_deref()
        ),
        ("h100-80gb", "whole GPU", Some("550.54.15"))
    );
    assert_eq!(cal.requests, "llm-aiperf.jsonl");
    assert_eq!(f.profile.name, "nemotron-nano-vl-8b-fitted");
}

/// A whole A100 in place of the fixture's MIG one, with `busy` as its utilization.
fn a100_recording(dir: &Path, busy: &synth::Busy) -> Recording {
    let mut node = synth::node();
    node.gpus[0].mig_mode = Metric::of(MigModeRec {
        current: false,
        pending: false,
    });
    node.gpus[0].mig_devices.clear();
    let interval = 1000;
    let samples = synth::samples(&node, interval, 200, &|g, t| {
        if g != 0 || t == 0 {
            return 0.0;
        }
        let to = START_UNIX_NS + i128::from(t) * 1_000_000;
        synth::busy_fraction(busy, to - 1_000_000_000, to)
    });
    let path = dir.join("a100.jsonl");
    std::fs::write(&path, synth::recording(&node, interval, &samples)).unwrap();
    Recording::load(&path).unwrap()
}

fn asr_variant(patch: toml::Value) -> (ModelProfile, PathBuf, toml::Value) {
    let (_, path) = profile("parakeet-1.1b");
    let mut v: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, x) in patch.as_table().unwrap() {
        let t = v.as_table_mut().unwrap();
        match (t.get_mut(k), x) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => {
                a.extend(b.clone());
            }
            _ => {
                t.insert(k.clone(), x.clone());
            }
        }
    }
    (ModelProfile::from_value(v.clone(), &path).unwrap(), path, v)
}

fn asr_log(dir: &Path, m: &ModelProfile, jitter: f64, max_batch: u32) -> (RequestLog, synth::Busy) {
    let part = Catalogue::builtin()
        .gpu("a100-80gb")
        .unwrap()
        .full_partition();
    let load = synth::AsrLoad {
        requests: 40,
        rate_rps: 4.0,
        chunks: 30,
        chunk_interval_ns: 4_000_000,
        batching: BatchConfig {
            max_batch_size: max_batch,
            max_queue_delay_ns: 1_000_000,
            preferred_batch_sizes: Vec::new(),
        },
        jitter,
        seed: 3,
    };
    let (csv, busy) = synth::asr_csv_log(m, &part, &load);
    let path = dir.join("asr.csv");
    std::fs::write(&path, csv).unwrap();
    (RequestLog::load(&path).unwrap(), busy)
}

fn fit_asr(dir: &Path, base: &toml::Value, rec: &Recording, log: &RequestLog) -> Fitted {
    let cat = Catalogue::builtin();
    let base_path = dir.join("base.toml");
    std::fs::write(&base_path, toml::to_string(base).unwrap()).unwrap();
    let m = ModelProfile::from_value(base.clone(), &base_path).unwrap();
    fit(&FitInput {
        base: &m,
        base_path: &base_path,
        catalogue: &cat,
        gpu: cat.gpu("a100-80gb").unwrap(),
        recording: rec,
        log,
        mig: None,
        device: None,
        pid: None,
        name: None,
        max_batched_tokens: 8192,
    })
    .unwrap()
}

/// Compute-heavy ASR steps (20 times Parakeet's FLOPs) get slower with batch size, so batch
/// sizes separate launch overhead from work: the fit finds the generating profile's kernel
/// count and work (exact data: within 0.01%; with ±5% jitter on every service time: within
/// 2%, measured 0.6%).
#[test]
fn fit_recovers_asr_launches_and_work_from_batch_sizes() {
    let dir = TempDir::new().unwrap();
    let (_, _, base) = asr_variant(toml::toml! { [chunk] flops = 8.8e10 }.into());
    let (truth, _, _) =
        asr_variant(toml::toml! { [chunk] flops = 1.1e11 bytes = 2.75e9 kernels = 630.0 }.into());
    for (jitter, tol) in [(0.0, 1e-4), (0.05, 0.02)] {
        let (log, busy) = asr_log(dir.path(), &truth, jitter, 16);
        let rec = a100_recording(dir.path(), &busy);
        let f = fit_asr(dir.path(), &base, &rec, &log);
        assert!(f.method.contains("batch sizes"), "{}", f.method);
        for (key, want) in [
            ("chunk.kernels", 630.0),
            ("chunk.flops", 1.1e11),
            ("chunk.bytes", 2.75e9),
        ] {
            let got = param(&f, key);
            assert!(
                rel(got, want) < tol,
                "jitter {jitter}: {key} {got} vs {want}"
            );
        }
    }
}

/// Parakeet's streaming step is memory- and launch-bound: the same time at every batch size,
/// so batch sizes cannot separate launches from work. The recording's busy fraction (NVML
/// utilization, whole percent per sample) does: within 2% (measured 0.5%).
#[test]
fn fit_separates_launches_from_work_by_the_busy_fraction() {
    let dir = TempDir::new().unwrap();
    let (_, _, base) = asr_variant(toml::toml! { [chunk] kernels = 840.0 }.into());
    let (truth, _, _) =
        asr_variant(toml::toml! { [chunk] flops = 5.28e9 bytes = 2.64e9 kernels = 700.0 }.into());
    let (log, busy) = asr_log(dir.path(), &truth, 0.0, 8);
    let rec = a100_recording(dir.path(), &busy);
    let f = fit_asr(dir.path(), &base, &rec, &log);
    assert!(f.method.contains("busy fraction"), "{}", f.method);
    for (key, want) in [("chunk.kernels", 700.0), ("chunk.bytes", 2.64e9)] {
        let got = param(&f, key);
        assert!(rel(got, want) < 0.02, "{key} {got} vs {want}");
    }
}

#[test]
fn a_recording_from_another_gpu_is_an_error_naming_the_file_and_line() {
    let rec = load_rec("recording.jsonl");
    let log = RequestLog::load(&fixtures().join("llm-aiperf.jsonl")).unwrap();
    let e = fit_with("nemotron-nano-vl-8b", "a100-40gb", None, &rec, &log)
        .unwrap_err()
        .to_string();
    assert!(e.contains("recording.jsonl: line 1:"), "{e}");
    assert!(e.contains("none is of type a100-40gb"), "{e}");
    let e = fit_with("parakeet-1.1b", "a100-80gb", None, &rec, &log)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in MIG mode: say which instance"), "{e}");
    let e = fit_with("parakeet-1.1b", "a100-80gb", Some("3g.40gb"), &rec, &log)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no asr calls"), "{e}");
}

#[test]
fn validate_reports_the_error_of_every_metric() {
    let dir = TempDir::new().unwrap();
    let cat = Catalogue::builtin();
    let rec = load_rec("recording.jsonl");
    let log = RequestLog::load(&fixtures().join("llm-aiperf.jsonl")).unwrap();
    let f = fit_with("nemotron-nano-vl-8b", "h100-80gb", None, &rec, &log).unwrap();
    let fitted = dir.path().join("fitted.toml");
    std::fs::write(&fitted, &f.toml).unwrap();
    let run = |profile: &Path, exp: &Path| {
        validate(&ValidateInput {
            log: &log,
            profile_path: profile,
            experiment_path: exp,
            catalogue: &cat,
            recording: Some(&rec),
        })
        .unwrap()
    };
    let exp = fixtures().join("llm-h100.toml");
    let v = run(&fitted, &exp);
    let metrics: std::collections::BTreeSet<&str> =
        v.rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        metrics.into_iter().collect::<Vec<_>>(),
        ["llm_total", "llm_tpot", "llm_ttft", "request", "throughput"]
    );
    assert_eq!((v.requests, v.simulated_completed), (40, 40));
    assert!(v.mape_pct < 0.1, "{}", v.mape_pct);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    // The base profile (not fitted) misses by more.
    let base = run(&root().join("models/nemotron-nano-vl-8b.toml"), &exp);
    assert!(base.mape_pct > 5.0, "{}", base.mape_pct);
    let ttft = base
        .rows
        .iter()
        .find(|r| r.metric == "llm_ttft" && r.stat == "mean")
        .unwrap();
    assert!(ttft.error_pct < -5.0, "{ttft:?}");
    // Simulated on another GPU than it was fitted on: a warning.
    let other = dir.path().join("a100.toml");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("h100-80gb", "a100-80gb")
        .replace(
            "../../../models",
            &root().join("models").display().to_string(),
        );
    std::fs::write(&other, text).unwrap();
    let v = run(&fitted, &other);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("fitted on a h100-80gb")),
        "{:?}",
        v.warnings
    );
}

/// What one run of the binary gave back.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn gpushare(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Outcome {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gpushare"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove(gpushare::nvml::LIB_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the gpushare binary starts");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Without a driver every NVML command stops at once with what to do instead, exit code 1,
/// and writes nothing.
#[test]
fn without_a_driver_nvml_commands_fail_fast_and_point_to_recordings() {
    let dir = TempDir::new().unwrap();
    let nowhere = dir.path().join("no-libraries-here");
    std::fs::create_dir(&nowhere).unwrap();
    let nowhere = nowhere.display().to_string();
    let missing = dir.path().join("missing/libnvidia-ml.so.1");
    let missing = missing.display().to_string();
    let commands: [&[&str]; 3] = [
        &["inventory"],
        &["inventory", "--out", "node.toml"],
        &[
            "calibrate",
            "record",
            "--duration-s",
            "2",
            "--out",
            "rec.jsonl",
        ],
    ];
    for args in commands {
        for env in [
            vec![("LD_LIBRARY_PATH", nowhere.as_str())],
            vec![(gpushare::nvml::LIB_ENV, missing.as_str())],
        ] {
            let o = gpushare(args, &env, dir.path());
            if o.code == Some(0) && env[0].0 == "LD_LIBRARY_PATH" {
                // A machine with a driver installed system-wide finds it anyway.
                continue;
            }
            assert_eq!(o.code, Some(1), "{args:?} {env:?}: {}", o.stderr);
            assert!(o.stderr.contains("libnvidia-ml.so.1"), "{}", o.stderr);
            assert!(o.stderr.contains("inventory --from"), "{}", o.stderr);
            assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
            assert!(!dir.path().join("node.toml").exists());
            assert!(!dir.path().join("rec.jsonl").exists());
        }
    }
}

#[test]
fn cli_inventory_fit_and_validate_from_recorded_files() {
    let dir = TempDir::new().unwrap();
    let f = fixtures();
    let p = |name: &str| f.join(name).display().to_string();
    let o = gpushare(
        &[
            "inventory",
            "--from",
            &p("node.jsonl"),
            "--out",
            "node.toml",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("NVIDIA A100-SXM4-80GB"), "{}", o.stdout);
    assert!(o.stdout.contains("3g.40gb"), "{}", o.stdout);
    let toml = std::fs::read_to_string(dir.path().join("node.toml")).unwrap();
    assert!(toml.contains("type = \"h100-80gb\""), "{toml}");
    let model = root().join("models/nemotron-nano-vl-8b.toml");
    let o = gpushare(
        &[
            "calibrate",
            "fit",
            "--recording",
            &p("recording.jsonl"),
            "--requests",
            &p("llm-aiperf.jsonl"),
            "--model",
            &model.display().to_string(),
            "--gpu",
            "h100-80gb",
            "--out",
            "fitted.toml",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("step_overhead_us"), "{}", o.stdout);
    let o = gpushare(
        &[
            "calibrate",
            "validate",
            "--requests",
            &p("llm-aiperf.jsonl"),
            "--profile",
            "fitted.toml",
            "--experiment",
            &p("llm-h100.toml"),
            "--out",
            "validation.json",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("MAPE"), "{}", o.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("validation.json")).unwrap())
            .unwrap();
    assert!(v["rows"].as_array().unwrap().len() > 10);
}

#[test]
fn cli_bad_inputs_name_the_file_and_line() {
    let dir = TempDir::new().unwrap();
    let text = std::fs::read_to_string(fixtures().join("node.jsonl")).unwrap();
    std::fs::write(dir.path().join("cut.jsonl"), &text[..text.len() - 40]).unwrap();
    let o = gpushare(&["inventory", "--from", "cut.jsonl"], &[], dir.path());
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr
            .contains("cut.jsonl: line 7: the record is cut short"),
        "{}",
        o.stderr
    );
    std::fs::write(
        dir.path().join("log.csv"),
        "request_id,stage,start_s\nr1,llm,1.0\n",
    )
    .unwrap();
    let rec = fixtures().join("recording.jsonl").display().to_string();
    let o = gpushare(
        &[
            "calibrate",
            "fit",
            "--recording",
            &rec,
            "--requests",
            "log.csv",
            "--model",
            &root()
                .join("models/nemotron-nano-vl-8b.toml")
                .display()
                .to_string(),
            "--gpu",
            "h100-80gb",
            "--out",
            "f.toml",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("log.csv: line 1: no `end_s` column"),
        "{}",
        o.stderr
    );
    assert!(!dir.path().join("f.toml").exists());
    std::fs::write(
        dir.path().join("log.csv"),
        "request_id,stage,start_s,end_s\nr1,llm,2.0,3.0\nr2,llm,1.0,1.5\n",
    )
    .unwrap();
    let o = gpushare(
        &[
            "calibrate",
            "fit",
            "--recording",
            &rec,
            "--requests",
            "log.csv",
            "--model",
            &root()
                .join("models/nemotron-nano-vl-8b.toml")
                .display()
                .to_string(),
            "--gpu",
            "h100-80gb",
            "--out",
            "f.toml",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("log.csv: line 3: queued at"),
        "{}",
        o.stderr
    );
}

/// A TTS log timed by the profile itself fits back to that profile (scales 1, within 2%: the
/// decoder steps dominate both launches and work, so the busy fraction separates them, and
/// NVML gives it in whole percent; measured 1.2%).
#[test]
fn a_tts_log_from_its_own_profile_fits_back_to_it() {
    use gpushare::calibrate::predict::tts_batch;
    use gpushare::profile::ModelKind;
    let dir = TempDir::new().unwrap();
    let (m, path) = profile("magpie-tts-multilingual");
    let ModelKind::Tts(t) = &m.kind else { panic!() };
    let part = Catalogue::builtin()
        .gpu("a100-80gb")
        .unwrap()
        .full_partition();
    let mut csv = String::from("request_id,stage,start_s,end_s,input_size\n");
    let mut busy = Vec::new();
    let mut now = START_UNIX_NS;
    for i in 0..400u32 {
        let tokens = 4 + (i * 7) % 37;
        let b = tts_batch(t, &m, &part, &[tokens]);
        let end = now + b.ns() as i128;
        let s = |ns: i128| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        csv.push_str(&format!("r{i},tts,{},{},{tokens}\n", s(now), s(end)));
        busy.push((now, end, b.total_ns - b.launch_ns));
        now = end + 20_000_000;
    }
    let log_path = dir.path().join("tts.csv");
    std::fs::write(&log_path, csv).unwrap();
    let log = RequestLog::load(&log_path).unwrap();
    let rec = a100_recording(dir.path(), &busy);
    let text = std::fs::read_to_string(&path).unwrap();
    let f = fit_asr(dir.path(), &toml::from_str(&text).unwrap(), &rec, &log);
    for p in &f.params {
        if p.key != "memory_gb" {
            assert!(rel(p.fitted, p.base) < 0.02, "{p:?} ({})", f.method);
        }
    }
    assert!(f.quality[0].1.r2 > 0.999, "{:?}", f.quality);
}

/// A fitted profile placed in a models folder loads with its provenance, and `run` warns
/// when it simulates it on another GPU than it was measured on.
#[test]
fn running_a_fitted_profile_on_another_gpu_warns() {
    let dir = TempDir::new().unwrap();
    let rec = load_rec("recording.jsonl");
    let log = RequestLog::load(&fixtures().join("llm-aiperf.jsonl")).unwrap();
    let f = fit_with("nemotron-nano-vl-8b", "h100-80gb", None, &rec, &log).unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(
        models.join("nemotron-nano-vl-8b.toml"),
        f.toml.replace(
            "name = \"nemotron-nano-vl-8b-fitted\"",
            "name = \"nemotron-nano-vl-8b\"",
        ),
    )
    .unwrap();
    let exp = std::fs::read_to_string(fixtures().join("llm-h100.toml"))
        .unwrap()
        .replace(
            "models_dir = \"../../../models\"",
            "models_dir = \"models\"",
        )
        .replace("h100-80gb", "a100-80gb")
        .replace("duration_s = 60.0", "duration_s = 5.0");
    std::fs::write(dir.path().join("exp.toml"), exp).unwrap();
    let o = gpushare(&["run", "exp.toml"], &[], dir.path());
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("warning: llm-h100: profile nemotron-nano-vl-8b was fitted on a h100-80gb (whole GPU) but runs on a a100-80gb"),
        "{}",
        o.stderr
    );
}
