//! The live NVML path without a GPU: the tests build the stand-in NVML library
//! (`nvml-standin/`, a C shared library serving a scripted node) and run `gpushare inventory`
//! and `gpushare calibrate record` against it through `GPUSHARE_NVML_LIB`, exactly as against
//! a driver. Every run also proves the commands read-only: the stand-in writes any setter call
//! to a violations file, and the runs assert that file never appears.
//!
//! The stand-in's values follow each GPU's timeline from `nvmlInit`, a little before the
//! recorder's clock starts: a sample due at `t_ms` sees the step in effect at `t_ms` or a later
//! one (scheduling delays), never an earlier one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gpushare::nvml::recording::{GpuSample, Recording, StoppedBy};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::root;

/// The stand-in library, built once per test run with the profile of this test binary, into
/// its own target folder (the outer cargo may still hold the lock on the main one).
fn standin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        // <target>/<profile dir>/deps/it-HASH
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps");
        let target = profile_dir.parent().expect("a target folder");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let own_target = target.join("nvml-standin");
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "--quiet",
                "-p",
                "nvml-standin",
                "--profile",
            ])
            .arg(profile)
            .arg("--manifest-path")
            .arg(root().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &own_target)
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the stand-in NVML library failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = own_target.join(profile_dir.file_name().expect("a profile folder"));
        let lib = dir.join(format!(
            "{}nvml_standin{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
}

/// The scripted node of the fixtures (the same node as tests/fixtures/calibration).
fn script() -> Value {
    let path = root().join("tests/fixtures/nvml-standin/node.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A folder for one test: the script written as `node.json`.
struct Node {
    dir: TempDir,
}

impl Node {
    fn new(script: &Value) -> Node {
        let dir = TempDir::new().unwrap();
        std::fs::write(
            dir.path().join("node.json"),
            serde_json::to_string_pretty(script).unwrap(),
        )
        .unwrap();
        Node { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gpushare ARGS` against the stand-in, in the node's folder.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpushare"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env(gpushare::nvml::LIB_ENV, standin())
            .env("GPUSHARE_NVML_STANDIN_SCRIPT", self.path("node.json"))
            .env("GPUSHARE_NVML_STANDIN_VIOLATIONS", self.path("violations"));
        cmd
    }

    /// Run `gpushare ARGS` to the end; checks that nothing was set on the GPUs.
    fn run(&self, args: &[&str]) -> Outcome {
        let out = self.command(args).output().expect("gpushare starts");
        self.assert_read_only();
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn assert_read_only(&self) {
        let v = self.path("violations");
        assert!(
            !v.exists(),
            "gpushare called NVML functions that change state: {}",
            std::fs::read_to_string(&v).unwrap_or_default()
        );
    }

    /// `calibrate record` for `duration_s` at `interval_ms`, loaded back.
    fn record(&self, interval_ms: u64, duration_s: f64) -> Recording {
        let o = self.run(&[
            "calibrate",
            "record",
            "--interval-ms",
            &interval_ms.to_string(),
            "--duration-s",
            &duration_s.to_string(),
            "--out",
            "rec.jsonl",
        ]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert!(o.stdout.contains("stopped by the duration"), "{}", o.stdout);
        let rec = Recording::load(&self.path("rec.jsonl")).unwrap();
        assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
        rec
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The index of the step of `timeline` in effect at `t_ms`.
fn step_at(timeline: &[Value], t_ms: u64) -> usize {
    timeline
        .iter()
        .rposition(|s| s["t_ms"].as_u64().unwrap() <= t_ms)
        .unwrap()
}

/// The step of `timeline` whose values `g` holds, checked against what the sample may see.
fn step_seen(timeline: &[Value], t_ms: u64, matches: impl Fn(&Value) -> bool) -> usize {
    let earliest = step_at(timeline, t_ms);
    let seen = (earliest..timeline.len()).find(|&k| matches(&timeline[k]));
    seen.unwrap_or_else(|| {
        panic!("the sample at {t_ms} ms matches no step from {earliest} on of {timeline:?}")
    })
}

fn h100_matches(g: &GpuSample) -> impl Fn(&Value) -> bool + '_ {
    move |s: &Value| {
        g.utilization_gpu_pct.value == s["utilization"]["gpu"].as_u64().map(|v| v as u32)
            && g.utilization_memory_pct.value
                == s["utilization"]["memory"].as_u64().map(|v| v as u32)
            && g.power_mw.value == s["power_mw"].as_u64().map(|v| v as u32)
            && g.sm_clock_mhz.value == s["sm_clock_mhz"].as_u64().map(|v| v as u32)
            && g.memory_used_bytes.value == s["memory_used_bytes"].as_u64()
            && g.throttle_reasons.value.as_ref().unwrap() == &names(&s["throttle_reasons"])
            && g.processes
                .value
                .as_ref()
                .unwrap()
                .iter()
                .map(|p| p.pid)
                .collect::<Vec<_>>()
                == pids(&s["processes"])
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn pids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["pid"].as_u64().unwrap() as u32)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_inventory_is_the_scripted_node_and_imports_as_a_cluster() {
    let node = Node::new(&script());
    let o = node.run(&["inventory", "--out", "node.toml"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    for want in [
        "driver 550.54.15, CUDA 12.4, 2 GPUs",
        "NVIDIA A100-SXM4-80GB",
        "a100-80gb (by PCI device id)",
        "MIG 0 3g.40gb    slices 0..4     42 SMs  39.25 GiB  GI 1 CI 0",
        "MIG 1 3g.40gb    slices 4..8     42 SMs  39.25 GiB  GI 2 CI 0",
        "pid 4101     tritonserver",
        "NVIDIA H100 80GB HBM3",
        "h100-80gb (by PCI device id)",
        // NVML answers SM counts for MIG devices only; the catalogue fills in whole GPUs.
        "NVML gives SM counts for MIG devices only",
    ] {
        assert!(o.stdout.contains(want), "no `{want}` in\n{}", o.stdout);
    }
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let cluster = std::fs::read_to_string(node.path("node.toml")).unwrap();
    assert!(cluster.contains("(live NVML, "), "{cluster}");
    assert!(
        cluster.contains("sharing = { mode = \"mig\", instances = [\"3g.40gb\", \"3g.40gb\"] }"),
        "{cluster}"
    );
    assert!(
        cluster.contains("sharing = { mode = \"dedicated\" }"),
        "{cluster}"
    );

    // The cluster file is a fragment an experiment extends, as it is.
    super::experiment_on_inventory(&node.path(""), "from-live-inventory", 5.0);
}

#[test]
fn a_recording_holds_the_scripted_node_and_its_values_over_time() {
    let s = script();
    let node = Node::new(&s);
    let rec = node.record(250, 2.5);
    assert_eq!(rec.samples.len(), 10);
    let end = rec.end.as_ref().unwrap();
    assert_eq!((end.samples, end.stopped_by), (10, StoppedBy::Duration));

    // The header is the inventory: identity, memory, MIG layout, processes as scripted.
    let n = &rec.header.node;
    assert_eq!(n.driver_version.value.as_deref(), Some("550.54.15"));
    assert_eq!(n.cuda_version.value.as_deref(), Some("12.4"));
    assert_eq!(n.gpus.len(), 2);
    for (g, sg) in n.gpus.iter().zip(s["gpus"].as_array().unwrap()) {
        assert_eq!(g.name, sg["name"].as_str().unwrap());
        assert_eq!(g.uuid, sg["uuid"].as_str().unwrap());
        assert_eq!(
            g.pci_device_id.value.as_deref(),
            sg["pci"]["device_id"].as_str()
        );
        assert_eq!(
            g.memory_total_bytes.value,
            sg["memory_total_bytes"].as_u64()
        );
        assert_eq!(
            g.sms.unsupported.as_deref(),
            Some("NotSupported"),
            "NVML gives no SM count for a whole GPU"
        );
        let mode = g.mig_mode.value.unwrap();
        assert_eq!(mode.current, sg["mig_mode"]["current"].as_bool().unwrap());
        let devs = sg["mig_devices"].as_array().cloned().unwrap_or_default();
        assert_eq!(g.mig_devices.len(), devs.len());
        for (m, sm) in g.mig_devices.iter().zip(&devs) {
            assert_eq!(m.name, sm["name"].as_str().unwrap());
            assert_eq!(m.uuid, sm["uuid"].as_str().unwrap());
            assert_eq!(m.profile.as_deref(), Some("3g.40gb"));
            let gi = m.gpu_instance.value.unwrap();
            assert_eq!(u64::from(gi.id), sm["gpu_instance_id"].as_u64().unwrap());
            assert_eq!(u64::from(gi.profile_id), sm["profile_id"].as_u64().unwrap());
            assert_eq!(
                [gi.placement_start, gi.placement_size]
                    .map(u64::from)
                    .to_vec(),
                sm["placement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect::<Vec<_>>()
            );
            assert_eq!(m.sms.value, sm["sms"].as_u64().map(|v| v as u32));
            assert_eq!(
                m.memory_total_bytes.value,
                sm["memory_total_bytes"].as_u64()
            );
        }
    }
    let mig0 = &n.gpus[0].mig_devices[0];
    let p = &mig0.processes.value.as_ref().unwrap()[0];
    assert_eq!((p.pid, p.name.as_deref()), (4101, Some("tritonserver")));
    assert_eq!(p.used_memory_bytes.value, Some(9_599_713_280));

    // Samples: each holds a step of the timeline, in order.
    let a100 = s["gpus"][0]["timeline"].as_array().unwrap();
    let h100 = s["gpus"][1]["timeline"].as_array().unwrap();
    let (mut last_a, mut last_h) = (0, 0);
    for sample in &rec.samples {
        let [a, h] = &sample.gpus[..] else {
            panic!("two GPUs")
        };
        // The MIG-enabled A100: no utilization at all, and NVML's reason for it.
        for m in [
            a.utilization_gpu_pct.unsupported.as_deref(),
            a.utilization_memory_pct.unsupported.as_deref(),
            a.process_utilization.unsupported.as_deref(),
        ] {
            let m = m.expect("no utilization on a MIG-enabled GPU");
            assert!(m.starts_with("NotSupported on MIG-enabled GPUs"), "{m}");
        }
        let ka = step_seen(a100, sample.t_ms, |st| {
            a.power_mw.value == st["power_mw"].as_u64().map(|v| v as u32)
                && a.mig_devices.iter().all(|m| {
                    let sm = st["mig"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|x| x["index"].as_u64() == Some(u64::from(m.index)))
                        .unwrap();
                    m.memory_used_bytes.value == sm["memory_used_bytes"].as_u64()
                        && m.processes
                            .value
                            .as_ref()
                            .unwrap()
                            .iter()
                            .map(|p| (p.pid, p.used_memory_bytes.value))
                            .collect::<Vec<_>>()
                            == sm["processes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|p| {
                                    (
                                        p["pid"].as_u64().unwrap() as u32,
                                        p["used_memory_bytes"].as_u64(),
                                    )
                                })
                                .collect::<Vec<_>>()
                })
        });
        // The whole GPU's memory is the sum over its MIG devices (the caller is privileged
        // in this script), read a moment before them.
        let sums: Vec<u64> = a100
            .iter()
            .map(|st| {
                st["mig"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["memory_used_bytes"].as_u64().unwrap())
                    .sum()
            })
            .collect();
        assert!(sums.contains(&a.memory_used_bytes.value.unwrap()));
        let kh = step_seen(h100, sample.t_ms, h100_matches(h));
        assert!(ka >= last_a && kh >= last_h, "steps never go back");
        (last_a, last_h) = (ka, kh);
    }
    assert_eq!(
        (last_a, last_h),
        (1, 2),
        "the last samples see the last steps"
    );

    // Per-process utilization: every sample NVML took after the recording started, once.
    let seen: Vec<(u32, u32, u32)> = rec
        .samples
        .iter()
        .flat_map(|s| s.gpus[1].process_utilization.value.clone().unwrap())
        .map(|p| (p.pid, p.sm_pct, p.memory_pct))
        .collect();
    assert_eq!(seen, [(4103, 88, 37), (4103, 44, 19)]);
}

#[test]
fn mig_mode_pending_is_reported_and_the_current_mode_rules() {
    let mut s = script();
    // The A100 is to leave MIG mode at the next reset, the H100 to enter it: both keep
    // behaving as they are now.
    s["gpus"][0]["mig_mode"] = json!({"current": true, "pending": false});
    s["gpus"][1]["mig_mode"] = json!({"current": false, "pending": true});
    let node = Node::new(&s);
    let o = node.run(&["inventory", "--out", "node.toml"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("on->off"), "{}", o.stdout);
    assert!(o.stdout.contains("off->on"), "{}", o.stdout);
    for gpu in [
        "GPU 0: MIG mode is on now and off",
        "GPU 1: MIG mode is off now and on",
    ] {
        assert!(o.stderr.contains(gpu), "{}", o.stderr);
    }
    let cluster = std::fs::read_to_string(node.path("node.toml")).unwrap();
    assert!(
        cluster.contains("instances = [\"3g.40gb\", \"3g.40gb\"]"),
        "{cluster}"
    );
    assert!(
        cluster.contains("sharing = { mode = \"dedicated\" }"),
        "{cluster}"
    );

    let rec = node.record(250, 0.5);
    let h = &rec.samples[0].gpus[1];
    assert!(
        h.utilization_gpu_pct.value.is_some(),
        "MIG is not on yet: {:?}",
        h.utilization_gpu_pct
    );
    assert!(rec.samples[0].gpus[0].utilization_gpu_pct.value.is_none());
}

#[test]
fn without_privileges_aggregates_and_placements_are_absent_with_the_reason() {
    let mut s = script();
    s["privileged"] = json!(false);
    let node = Node::new(&s);
    let o = node.run(&["inventory", "--out", "node.toml"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("placement ?"), "{}", o.stdout);
    assert!(
        o.stderr
            .contains("NVML gave no placement for some MIG instances"),
        "{}",
        o.stderr
    );
    let rec = node.record(250, 0.5);
    let a = &rec.header.node.gpus[0];
    assert_eq!(
        a.memory_total_bytes.unsupported.as_deref(),
        Some("NoPermission")
    );
    assert_eq!(a.processes.unsupported.as_deref(), Some("NoPermission"));
    let gi = &a.mig_devices[0].gpu_instance;
    assert_eq!(gi.unsupported.as_deref(), Some("NoPermission"));
    // Per MIG device, NVML still answers.
    assert_eq!(
        a.mig_devices[0].memory_total_bytes.value,
        Some(42_144_366_592)
    );
    let sample = &rec.samples[0].gpus[0];
    assert_eq!(
        sample.memory_used_bytes.unsupported.as_deref(),
        Some("NoPermission")
    );
    assert!(sample.mig_devices[0].processes.value.is_some());
}

/// Regression: a process list that grew between NVML's count and the fetch failed with
/// `InsufficientSize` and the sample lost its processes; the list is now asked for again.
#[test]
fn a_process_list_that_grows_while_it_is_read_is_asked_for_again() {
    let mut s = script();
    s["gpus"][1]["process_churn"] = json!({"extra": 6, "fetches": 2});
    let node = Node::new(&s);
    let rec = node.record(250, 1.5);
    let mut fetched = 0;
    for sample in &rec.samples {
        let p = &sample.gpus[1].processes;
        assert!(
            p.unsupported.is_none(),
            "at {} ms: {:?}",
            sample.t_ms,
            p.unsupported
        );
        if !p.value.as_ref().unwrap().is_empty() {
            fetched += 1;
            assert_eq!(
                p.value
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|p| p.pid)
                    .collect::<Vec<_>>(),
                [4103],
                "the short-lived processes are gone by the retry"
            );
        }
    }
    assert!(
        fetched >= 1,
        "the H100's process list was read with processes on it"
    );
}

/// Regression: a lost GPU was written down as `Error: device fell off the bus or has
/// otherwise become inacessible`; it is now `GpuLost (NVML_ERROR_GPU_IS_LOST)...`, and the
/// recording goes on with the other GPUs and ends cleanly.
#[test]
fn a_gpu_lost_during_a_recording_is_written_down_and_the_recording_ends_cleanly() {
    let mut s = script();
    s["gpus"][1]["lost_after_ms"] = json!(1200);
    let node = Node::new(&s);
    let rec = node.record(250, 2.5);
    assert_eq!(rec.samples.len(), 10);
    let first = &rec.samples[0].gpus[1];
    assert!(first.power_mw.value.is_some(), "there at the start");
    let mut lost_since = None;
    for sample in &rec.samples {
        let h = &sample.gpus[1];
        let reason = h.power_mw.unsupported.as_deref();
        if sample.t_ms >= 1200 {
            // The stand-in's clock is ahead of the recorder's: lost for sure by then.
            assert!(reason.is_some(), "at {} ms", sample.t_ms);
        }
        match reason {
            Some(r) => {
                lost_since.get_or_insert(sample.t_ms);
                assert!(r.starts_with("GpuLost (NVML_ERROR_GPU_IS_LOST)"), "{r}");
                for m in [
                    h.utilization_gpu_pct.unsupported.as_deref(),
                    h.memory_used_bytes.unsupported.as_deref(),
                    h.processes.unsupported.as_deref(),
                    h.process_utilization.unsupported.as_deref(),
                ] {
                    assert_eq!(m, Some(r));
                }
            }
            None => assert!(lost_since.is_none(), "a lost GPU does not come back"),
        }
        // The A100 is unaffected.
        assert!(sample.gpus[0].power_mw.value.is_some());
    }
    assert_eq!(rec.end.as_ref().unwrap().stopped_by, StoppedBy::Duration);

    // Lost before the inventory: the command fails, names the GPU and why, writes nothing.
    s["gpus"][1]["lost_after_ms"] = json!(0);
    let node = Node::new(&s);
    let o = node.run(&["inventory", "--out", "node.toml"]);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stderr.contains("GPU 1"), "{}", o.stderr);
    assert!(
        o.stderr.contains("GpuLost (NVML_ERROR_GPU_IS_LOST)"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(!node.path("node.toml").exists());
}

#[test]
fn a_process_whose_memory_nvml_cannot_give_is_written_down_as_not_available() {
    let mut s = script();
    // NVML_VALUE_NOT_AVAILABLE in usedGpuMemory (all bits set).
    s["gpus"][0]["timeline"][0]["mig"][0]["processes"][0]["used_memory_bytes"] = Value::Null;
    let node = Node::new(&s);
    let o = node.run(&["inventory"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout
            .contains("tritonserver         memory not available"),
        "{}",
        o.stdout
    );
    let rec = node.record(250, 0.5);
    let p = &rec.header.node.gpus[0].mig_devices[0]
        .processes
        .value
        .as_ref()
        .unwrap()[0];
    assert_eq!(p.pid, 4101);
    assert_eq!(p.used_memory_bytes.value, None);
    assert_eq!(
        p.used_memory_bytes.unsupported.as_deref(),
        Some(gpushare::nvml::inventory::MEMORY_NOT_AVAILABLE)
    );
}

#[test]
fn ctrl_c_during_a_recording_leaves_a_complete_file() {
    let node = Node::new(&script());
    let mut child = node
        .command(&[
            "calibrate",
            "record",
            "--interval-ms",
            "100",
            "--out",
            "rec.jsonl",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpushare starts");
    // Wait for the header and two samples in the temporary file.
    let tmp = node.path(&format!(".rec.jsonl.tmp{}", child.id()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = std::fs::read_to_string(&tmp).map_or(0, |t| t.lines().count());
        if lines >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no samples after 30 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the recorder stopped by itself"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !node.path("rec.jsonl").exists(),
        "written in place of a finished file"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signals our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    node.assert_read_only();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(stopped by Ctrl-C)"), "{stdout}");
    let rec = Recording::load(&node.path("rec.jsonl")).unwrap();
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let end = rec.end.unwrap();
    assert_eq!(end.stopped_by, StoppedBy::Interrupt);
    assert_eq!(end.samples as usize, rec.samples.len());
    assert!(rec.samples.len() >= 2);
    assert!(!tmp.exists(), "the temporary file is gone");
}

#[test]
fn a_driver_that_is_not_running_or_refuses_says_what_to_do() {
    for (init, want) in [
        ("driver_not_loaded", "the NVIDIA driver is not running"),
        (
            "no_permission",
            "NVML has no permission to talk to the NVIDIA driver",
        ),
    ] {
        let mut s = script();
        s["init"] = json!(init);
        let node = Node::new(&s);
        for args in [
            &["inventory", "--out", "node.toml"][..],
            &[
                "calibrate",
                "record",
                "--duration-s",
                "1",
                "--out",
                "rec.jsonl",
            ],
        ] {
            let o = node.run(args);
            assert_eq!(o.code, Some(1), "{args:?}");
            assert!(o.stderr.contains(want), "{}", o.stderr);
            assert!(o.stderr.contains("inventory --from"), "{}", o.stderr);
            assert!(!node.path("node.toml").exists() && !node.path("rec.jsonl").exists());
        }
    }
}

#[test]
fn a_bad_script_is_refused_with_the_file_and_field() {
    let mut s = script();
    s["gpus"][1]["timeline"][1]["utilization"]["gpu"] = json!(120);
    let node = Node::new(&s);
    let o = node.run(&["inventory"]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains(
            "node.json: field `gpus[1].timeline[1].utilization.gpu`: 120: a percentage is 0 to 100"
        ),
        "{}",
        o.stderr
    );
}

/// The setters the stand-in exports, checked against nvml-wrapper-sys's names at compile time
/// (each is a field of its `NvmlLib`) and against the stand-in's own list.
macro_rules! setters {
    ($($name:ident),* $(,)?) => {
        /// Whether each setter is exported by the library `lib` loaded.
        fn exported(lib: &nvml_wrapper_sys::bindings::NvmlLib) -> Vec<(&'static str, bool)> {
            vec![$((stringify!($name), lib.$name.is_ok())),*]
        }
        const SETTERS: &[&str] = &[$(stringify!($name)),*];
    };
}

setters!(
    nvmlComputeInstanceDestroy,
    nvmlDeviceClearAccountingPids,
    nvmlDeviceClearCpuAffinity,
    nvmlDeviceClearEccErrorCounts,
    nvmlDeviceClearFieldValues,
    nvmlDeviceCreateGpuInstance,
    nvmlDeviceCreateGpuInstanceWithPlacement,
    nvmlDeviceDiscoverGpus,
    nvmlDeviceModifyDrainState,
    nvmlDevicePowerSmoothingActivatePresetProfile,
    nvmlDevicePowerSmoothingSetState,
    nvmlDevicePowerSmoothingUpdatePresetProfileParam,
    nvmlDeviceReadWritePRM_v1,
    nvmlDeviceRemoveGpu_v2,
    nvmlDeviceResetApplicationsClocks,
    nvmlDeviceResetGpuLockedClocks,
    nvmlDeviceResetMemoryLockedClocks,
    nvmlDeviceResetNvLinkErrorCounters,
    nvmlDeviceResetNvLinkUtilizationCounter,
    nvmlDeviceSetAPIRestriction,
    nvmlDeviceSetAccountingMode,
    nvmlDeviceSetApplicationsClocks,
    nvmlDeviceSetAutoBoostedClocksEnabled,
    nvmlDeviceSetClockOffsets,
    nvmlDeviceSetComputeMode,
    nvmlDeviceSetConfComputeUnprotectedMemSize,
    nvmlDeviceSetCpuAffinity,
    nvmlDeviceSetDefaultAutoBoostedClocksEnabled,
    nvmlDeviceSetDefaultFanSpeed_v2,
    nvmlDeviceSetDramEncryptionMode,
    nvmlDeviceSetDriverModel,
    nvmlDeviceSetEccMode,
    nvmlDeviceSetFanControlPolicy,
    nvmlDeviceSetFanSpeed_v2,
    nvmlDeviceSetGpcClkVfOffset,
    nvmlDeviceSetGpuLockedClocks,
    nvmlDeviceSetGpuOperationMode,
    nvmlDeviceSetMemClkVfOffset,
    nvmlDeviceSetMemoryLockedClocks,
    nvmlDeviceSetMigMode,
    nvmlDeviceSetNvLinkDeviceLowPowerThreshold,
    nvmlDeviceSetNvLinkUtilizationControl,
    nvmlDeviceSetNvlinkBwMode,
    nvmlDeviceSetPersistenceMode,
    nvmlDeviceSetPowerManagementLimit,
    nvmlDeviceSetPowerManagementLimit_v2,
    nvmlDeviceSetPowerMizerMode_v1,
    nvmlDeviceSetTemperatureThreshold,
    nvmlDeviceSetVgpuCapabilities,
    nvmlDeviceSetVgpuHeterogeneousMode,
    nvmlDeviceSetVgpuSchedulerState,
    nvmlDeviceSetVirtualizationMode,
    nvmlDeviceWorkloadPowerProfileClearRequestedProfiles,
    nvmlDeviceWorkloadPowerProfileSetRequestedProfiles,
    nvmlGpmSetStreamingEnabled,
    nvmlGpuInstanceCreateComputeInstance,
    nvmlGpuInstanceCreateComputeInstanceWithPlacement,
    nvmlGpuInstanceDestroy,
    nvmlGpuInstanceSetVgpuHeterogeneousMode,
    nvmlGpuInstanceSetVgpuSchedulerState,
    nvmlSetVgpuVersion,
    nvmlSystemSetConfComputeGpusReadyState,
    nvmlSystemSetConfComputeKeyRotationThresholdInfo,
    nvmlSystemSetNvlinkBwMode,
    nvmlUnitSetLedState,
    nvmlVgpuInstanceClearAccountingPids,
    nvmlVgpuInstanceSetEncoderCapacity,
);

#[test]
fn every_setter_is_exported_so_that_a_call_would_be_caught() {
    // SAFETY: loading the stand-in runs no initialiser of its own (a Rust cdylib).
    let lib = unsafe { nvml_wrapper_sys::bindings::NvmlLib::new(standin()) }.unwrap();
    let missing: Vec<&str> = exported(&lib)
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n)
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    assert!(lib.nvmlInit_v2.is_ok() && lib.nvmlShutdown.is_ok());

    // The same list as the stand-in's `setters!`.
    let src = std::fs::read_to_string(root().join("nvml-standin/src/lib.rs")).unwrap();
    let block = src
        .split_once("\nsetters!(")
        .and_then(|(_, rest)| rest.split_once(");"))
        .map(|(list, _)| list)
        .expect("the stand-in's setters! list");
    let theirs: Vec<&str> = block
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(theirs, SETTERS);
}

/// Run in a child process by the next test (ignored on its own): calls setters through
/// nvml-wrapper on the stand-in, as a program that is not read-only would.
#[test]
#[ignore = "a child process of calling_a_setter_is_refused_and_written_down"]
fn setter_probe() {
    if std::env::var_os("GPUSHARE_NVML_STANDIN_SCRIPT").is_none() {
        return;
    }
    let lib = std::env::var_os(gpushare::nvml::LIB_ENV).unwrap();
    let nvml = nvml_wrapper::Nvml::builder().lib_path(&lib).init().unwrap();
    let mut gpu = nvml.device_by_index(1).unwrap();
    use nvml_wrapper::enum_wrappers::device::ComputeMode;
    use nvml_wrapper::error::NvmlError;
    assert!(matches!(
        gpu.set_mig_mode(true),
        Err(NvmlError::NoPermission)
    ));
    assert!(matches!(
        gpu.set_applications_clocks(1593, 1980),
        Err(NvmlError::NoPermission)
    ));
    assert!(matches!(
        gpu.set_compute_mode(ComputeMode::ExclusiveProcess),
        Err(NvmlError::NoPermission)
    ));
    assert!(matches!(
        gpu.set_persistent(true),
        Err(NvmlError::NoPermission)
    ));
    assert!(matches!(
        gpu.reset_applications_clocks(),
        Err(NvmlError::NoPermission)
    ));
}

#[test]
fn calling_a_setter_is_refused_and_written_down() {
    let node = Node::new(&script());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "nvml::setter_probe",
            "--ignored",
            "--test-threads=1",
        ])
        .env(gpushare::nvml::LIB_ENV, standin())
        .env("GPUSHARE_NVML_STANDIN_SCRIPT", node.path("node.json"))
        .env("GPUSHARE_NVML_STANDIN_VIOLATIONS", node.path("violations"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    let written = std::fs::read_to_string(node.path("violations")).unwrap();
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        [
            "nvmlDeviceSetMigMode",
            "nvmlDeviceSetApplicationsClocks",
            "nvmlDeviceSetComputeMode",
            "nvmlDeviceSetPersistenceMode",
            "nvmlDeviceResetApplicationsClocks"
        ]
    );
}
