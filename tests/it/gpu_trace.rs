//! The timeline trace of what the GPUs did (`run --trace`): Chrome trace event JSON with the
//! format's required fields, switch slices under time-slicing, MPS clients overlapping, MIG
//! instances on their own tracks, bounded by a window and a cap, and a run whose results do
//! not change when it is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use gpushare::activity::{JobEnd, TraceOptions};
use gpushare::pipeline::Simulation;
use serde_json::Value;
use tempfile::TempDir;

use crate::{seed_experiment, shorten};

/// Run `gpushare` with `args` in the repository root; (success, stdout, stderr).
fn gpushare(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gpushare"))
        .args(args)
        .current_dir(crate::root())
        .output()
        .expect("the gpushare binary starts");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A written trace: its events, checked against the format's required fields.
struct Trace {
    events: Vec<Value>,
    other: Value,
}

impl Trace {
    fn read(path: &Path) -> Trace {
        let text = std::fs::read_to_string(path).expect("the trace was written");
        let doc: Value = serde_json::from_str(&text).expect("the trace is JSON");
        let events = doc["traceEvents"]
            .as_array()
            .expect("a traceEvents array")
            .clone();
        assert!(!events.is_empty());
        for e in &events {
            for k in ["name", "ph"] {
                assert!(e[k].is_string(), "{k} missing in {e}");
            }
            for k in ["ts", "pid", "tid"] {
                assert!(e[k].is_number(), "{k} missing in {e}");
            }
            match e["ph"].as_str().unwrap() {
                "X" => assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0), "{e}"),
                "M" => assert!(
                    e["args"]["name"].is_string() || e["args"]["sort_index"].is_number(),
                    "{e}"
                ),
                "i" => {}
                ph => panic!("unexpected phase {ph} in {e}"),
            }
        }
        Trace {
            events,
            other: doc["otherData"].clone(),
        }
    }

    /// Complete events of category `cat`.
    fn slices(&self, cat: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .collect()
    }

    /// Thread names by (pid, tid).
    fn threads(&self) -> BTreeMap<(u64, u64), String> {
        self.events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| {
                (
                    (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()),
                    e["args"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn span(e: &Value) -> (f64, f64) {
    let ts = e["ts"].as_f64().unwrap();
    (ts, ts + e["dur"].as_f64().unwrap())
}

fn track(e: &Value) -> (u64, u64) {
    (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())
}

/// The command of the issue: the heavy time-slicing run's trace parses, names every track,
/// and shows the two contexts taking turns with switches between them.
#[test]
fn time_slicing_trace_has_turns_and_switches() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("t.json");
    let (ok, stdout, stderr) = gpushare(&[
        "run",
        "experiments/seed/time-slicing-heavy.toml",
        "--quiet",
        "--trace",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("wrote ") && stdout.contains("ui.perfetto.dev"),
        "{stdout}"
    );
    let t = Trace::read(&file);
    let names: BTreeSet<String> = t
        .events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("gpu0") && n.contains("time-slicing")),
        "{names:?}"
    );
    assert!(names.contains("requests"), "{names:?}");
    let threads = t.threads();
    let turns_track = threads
        .iter()
        .find(|(_, n)| n.contains("on the GPU"))
        .map(|(k, _)| *k)
        .expect("a track of turns on the time-sliced GPU");
    let switches = t.slices("switch");
    assert!(switches.len() > 100, "{}", switches.len());
    assert!(switches.iter().all(|e| track(e) == turns_track));
    // 230 us each.
    assert!(
        switches
            .iter()
            .any(|e| (e["dur"].as_f64().unwrap() - 230.0).abs() < 1e-9)
    );
    let turns: Vec<&Value> = t.slices("turn");
    let models: BTreeSet<&str> = turns.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(models.len(), 2, "{models:?}");
    // On the one track, turns and switches never overlap.
    let mut on_gpu: Vec<(f64, f64)> = turns.iter().chain(&switches).map(|e| span(e)).collect();
    on_gpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(on_gpu.windows(2).all(|w| w[0].1 <= w[1].0 + 1e-6));
    // Jobs are named by model and request; requests have their own tracks.
    let jobs = t.slices("job");
    assert!(
        jobs.iter()
            .any(|e| e["name"].as_str().unwrap().contains(" #"))
    );
    assert!(!t.slices("request").is_empty());
    assert!(t.slices("stage").iter().any(|e| e["name"] == "asr"));
    // The run is long enough for the default cap to stop the recording, and that is said.
    assert_eq!(t.other["truncated"], true, "{}", t.other);
    assert!(
        stdout.contains("reached its cap of 250000 events"),
        "{stdout}"
    );
    assert!(t.events.iter().any(|e| e["ph"] == "i"));
}

/// MPS clients run at once: their jobs overlap on their own tracks. MIG instances each have
/// their own track, and within a window the busier one shows less idle time.
#[test]
fn mps_clients_overlap_and_mig_instances_have_their_own_tracks() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("mps.json");
    let (ok, stdout, stderr) = gpushare(&[
        "run",
        "experiments/seed/mps-heavy.toml",
        "--quiet",
        "--trace",
        file.to_str().unwrap(),
        "--trace-window",
        "100..110",
    ]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("reached its cap"), "{stdout}");
    let t = Trace::read(&file);
    let threads = t.threads();
    let clients: Vec<(u64, u64)> = threads
        .iter()
        .filter(|(_, n)| n.contains("MPS client"))
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(clients.len(), 2, "{threads:?}");
    let jobs = t.slices("job");
    let on = |k: (u64, u64)| -> Vec<(f64, f64)> {
        jobs.iter()
            .filter(|e| track(e) == k)
            .map(|e| span(e))
            .collect()
    };
    let (a, b) = (on(clients[0]), on(clients[1]));
    assert!(!a.is_empty() && !b.is_empty());
    let overlapping = a
        .iter()
        .filter(|x| b.iter().any(|y| x.0 < y.1 && y.0 < x.1))
        .count();
    assert!(overlapping > 10, "{overlapping}");
    // Everything kept overlaps the window (100 s to 110 s, in microseconds); a request
    // that does is kept whole, with its stages.
    for e in t
        .events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] != "stage")
    {
        let (s, f) = span(e);
        assert!(s < 110e6 && f >= 100e6, "{e}");
    }
    assert_eq!(t.other["window_s"][0], 100.0);

    let file = dir.path().join("mig.json");
    let (ok, _, stderr) = gpushare(&[
        "run",
        "experiments/seed/mig-heavy.toml",
        "--quiet",
        "--trace",
        file.to_str().unwrap(),
        "--trace-window",
        "100..110",
    ]);
    assert!(ok, "{stderr}");
    let t = Trace::read(&file);
    let threads = t.threads();
    let mig: Vec<(u64, u64)> = threads
        .iter()
        .filter(|(_, n)| n.starts_with("MIG 3g.40gb"))
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(mig.len(), 2, "{threads:?}");
    assert!(t.slices("switch").is_empty());
    let busy: Vec<f64> = mig
        .iter()
        .map(|&k| {
            t.slices("job")
                .iter()
                .filter(|e| track(e) == k)
                .map(|e| e["dur"].as_f64().unwrap())
                .sum::<f64>()
        })
        .collect();
    // ASR about half busy, TTS about 80% (of 10 s, in microseconds): both visible, unequal.
    assert!(busy.iter().all(|&b| b > 1e6), "{busy:?}");
    assert!((busy[0] - busy[1]).abs() > 1e6, "{busy:?}");
}

/// A small cap stops the recording and is said in the file and on the terminal; bad
/// options are errors that say what is allowed.
#[test]
fn the_cap_and_bad_options() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("capped.json");
    let (ok, stdout, stderr) = gpushare(&[
        "run",
        "experiments/seed/time-slicing-light.toml",
        "--quiet",
        "--trace",
        file.to_str().unwrap(),
        "--trace-max-events",
        "1000",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("reached its cap of 1000 events"),
        "{stdout}"
    );
    let t = Trace::read(&file);
    assert!(t.events.iter().filter(|e| e["ph"] == "X").count() <= 1000);
    assert_eq!(t.other["truncated"], true);
    assert!(t.other["truncated_at_s"].as_f64().unwrap() > 0.0);

    for (args, needle) in [
        (
            vec!["--trace", "x.json", "--trace-window", "10..5"],
            "the end must come after the start",
        ),
        (
            vec!["--trace", "x.json", "--trace-window", "ten"],
            "START..END",
        ),
        (vec!["--trace", "x.json", "--trace-max-events", "0"], ">= 1"),
        (vec!["--trace-window", "1..2"], "give --trace FILE too"),
    ] {
        let mut all = vec!["run", "experiments/seed/time-slicing-light.toml", "--quiet"];
        all.extend(args);
        let (ok, stdout, stderr) = gpushare(&all);
        assert!(
            !ok && stderr.starts_with("error: ") && stderr.contains(needle),
            "{all:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
        assert!(!crate::root().join("x.json").exists());
    }
}

/// Recording changes nothing in the results, with or without busy timelines; the trace
/// sees every job (solo LLM replicas' replayed iterations included), and the turns and
/// switches it derives from the time-slicer add up to the partition's busy and switching
/// time exactly.
#[test]
fn recording_changes_nothing_and_sees_every_job() {
    for stem in [
        "time-slicing-heavy",
        "mps-heavy",
        "mig-heavy",
        "baseline-light",
    ] {
        let mut e = seed_experiment(stem);
        shorten(&mut e, 0.2);
        let opts = TraceOptions::default();
        for timelines in [true, false] {
            let plain = Simulation::new(&e).with_timelines(timelines).run();
            let mut traced = Simulation::new(&e)
                .with_timelines(timelines)
                .with_activity(&opts)
                .run();
            let a = traced.activity.take().expect("recorded");
            assert!(a.full_at.is_none(), "{stem}: the cap was reached");
            let mut plain = plain;
            if timelines {
                // ASR replicas never jump while timelines are recorded: the same events.
                assert_eq!(plain.events, traced.events, "{stem}");
            }
            plain.events = 0;
            traced.events = 0;
            assert_eq!(format!("{plain:?}"), format!("{traced:?}"), "{stem}");
            // One job per batch or iteration, per replica (none dropped: no faults here).
            assert!(a.jobs.iter().all(|j| j.end != JobEnd::Dropped));
            for (r, res) in plain.replicas.iter().enumerate() {
                let jobs = a.jobs.iter().filter(|j| j.replica as usize == r).count() as u64;
                assert_eq!(jobs, res.batches, "{stem} replica {r}");
            }
            for (p, segs) in &a.slices {
                let sum = |switch: bool| -> u64 {
                    segs.iter()
                        .filter(|(s, _)| s.switch == switch)
                        .map(|(s, _)| s.to - s.from)
                        .sum()
                };
                assert_eq!(sum(false), plain.busy_ns[*p], "{stem} partition {p}");
                assert_eq!(sum(true), plain.switching_ns[*p], "{stem} partition {p}");
            }
            assert_eq!(
                !a.slices.is_empty(),
                stem.starts_with("time-slicing"),
                "{stem}"
            );
        }
    }
}

/// `run --out` writes the same summary with and without a trace.
#[test]
fn a_traced_run_writes_the_same_summary() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let file = dir.path().join("t.json");
    let exp = "experiments/seed/time-slicing-light.toml";
    let (ok, plain_out, stderr) = gpushare(&["run", exp, "--quiet", "--out", a.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let (ok, traced_out, stderr) = gpushare(&[
        "run",
        exp,
        "--quiet",
        "--out",
        b.to_str().unwrap(),
        "--trace",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    for f in [
        "summary.json",
        "runs.csv",
        "timeline.csv",
        "latency_quantiles.csv",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // The same table; the traced run adds its own line.
    let table = |s: &str| s.split("\nwrote").next().unwrap().to_string();
    assert_eq!(table(&plain_out), table(&traced_out));
    assert!(!t_has_tmp(dir.path()));
}

/// No temporary file is left beside the trace.
fn t_has_tmp(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp"))
}
