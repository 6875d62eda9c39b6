//! Sweep tests: the built binary on a small sweep in a scratch folder: one CSV row per point
//! x seed with the documented columns, thread-count independence, shards merged byte for
//! byte, failed runs recorded, resume, and clear errors for bad sweep files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `gpushare` with `args` and extra environment `envs` (`None` removes a variable).
fn bin(args: &[&str], envs: &[(&str, Option<&str>)]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpushare"));
    c.args(args);
    for var in [
        "RAYON_NUM_THREADS",
        "JOB_COMPLETION_INDEX",
        "GPUSHARE_SHARDS",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
    ] {
        c.env_remove(var);
    }
    for (k, v) in envs {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c.output().expect("the gpushare binary starts");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(o: &Out) {
    assert_eq!(
        o.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
}

fn seed_file(stem: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/seed")
        .join(format!("{stem}.toml"));
    format!("{:?}", p.display().to_string())
}

/// A small sweep: 3 modes (one with a MIG layout that does not fit) x 2 user counts, two
/// seeds, on a shortened light load. 12 runs, 4 of them failed.
fn small_sweep() -> String {
    format!(
        r#"name = "small"
base = {base}
seeds = 2

[[modes]]
label = "mig"
"workload.hold_s" = 8.0

[[modes]]
label = "time-slicing"
config = "time-slicing"
"workload.hold_s" = 8.0
"gpus[0].sharing" = {{ mode = "time-slicing", replicas = 2 }}
"deployments[0].replicas" = [{{ gpu = "gpu0" }}]
"deployments[1].replicas" = [{{ gpu = "gpu0" }}]

[[modes]]
label = "too-big"
"gpus[0].sharing" = {{ mode = "mig", instances = ["7g.80gb", "3g.40gb"] }}

[grid]
"workload.users" = [1, 3]
"#,
        base = seed_file("mig-light")
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn read_dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn sweep_into(tmp: &TempDir, name: &str, extra: &[&str], envs: &[(&str, Option<&str>)]) -> PathBuf {
    let file = write(tmp.path(), "small.toml", &small_sweep());
    let out = tmp.path().join(name);
    let mut args = vec![
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&bin(&args, envs));
    out
}

#[test]
fn runs_csv_has_one_row_per_point_and_seed_with_the_documented_columns() {
    let tmp = TempDir::new().unwrap();
    let out = sweep_into(&tmp, "out", &[], &[]);
    assert_eq!(
        read_dir_bytes(&out).keys().cloned().collect::<Vec<_>>(),
        ["points.csv", "runs.csv", "sweep.json"],
        "the store is removed once the outputs are written"
    );
    let (header, rows) = csv_rows(&out.join("runs.csv"));
    assert_eq!(rows.len(), 3 * 2 * 2, "modes x users x seeds");
    // docs/sweeps.md: run, point, status, error, the axes, seed, then the flattened summary.
    assert_eq!(
        header[..7],
        [
            "run",
            "point",
            "status",
            "error",
            "mode",
            "workload.users",
            "seed"
        ]
    );
    for col in [
        "name",
        "throughput_per_gpu_rps",
        "success_rate",
        "latency_ms.request.p95",
        "latency_ms.asr.count",
        "partitions[0].busy_fraction",
        "partitions[0].models[0]",
        "events",
    ] {
        assert!(header.iter().any(|h| h == col), "missing column {col}");
    }
    assert!(!header.iter().any(|h| h.starts_with("experiment")));
    assert_eq!(header.iter().filter(|h| *h == "seed").count(), 1);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[col("run")], i.to_string());
        assert_eq!(row[col("point")], (i / 2).to_string());
        assert_eq!(row[col("seed")], ["1", "2"][i % 2]);
        let mode = &row[col("mode")];
        assert_eq!(mode, ["mig", "time-slicing", "too-big"][i / 4]);
        assert_eq!(row[col("workload.users")], ["1", "3"][(i / 2) % 2]);
        if mode == "too-big" {
            assert_eq!(row[col("status")], "failed");
            assert!(
                row[col("error")].contains("gpus[0].sharing.instances"),
                "{row:?}"
            );
            assert_eq!(row[col("throughput_rps")], "");
        } else {
            assert_eq!(row[col("status")], "ok", "{row:?}");
            assert_eq!(row[col("error")], "");
            let thr: f64 = row[col("throughput_rps")].parse().unwrap();
            assert!(thr > 0.0);
            let want_config = if mode == "mig" { "mig" } else { "time-slicing" };
            assert_eq!(row[col("config")], want_config);
        }
    }
    // Different seeds give different runs; different users give different loads.
    assert_ne!(rows[0][col("events")], rows[1][col("events")]);
    assert_ne!(rows[0][col("completed")], rows[2][col("completed")]);

    let (ph, prow) = csv_rows(&out.join("points.csv"));
    assert_eq!(prow.len(), 6);
    assert_eq!(
        ph[..6],
        ["point", "mode", "workload.users", "runs", "ok", "failed"]
    );
    let pc = |name: &str| ph.iter().position(|h| h == name).unwrap();
    // The mean over the two seeds of the run rows, and a t interval (t(0.975, 1) = 12.706).
    let t0: f64 = rows[0][col("throughput_rps")].parse().unwrap();
    let t1: f64 = rows[1][col("throughput_rps")].parse().unwrap();
    let mean: f64 = prow[0][pc("mean(throughput_rps)")].parse().unwrap();
    let ci: f64 = prow[0][pc("ci95(throughput_rps)")].parse().unwrap();
    assert!((mean - (t0 + t1) / 2.0).abs() < 1e-12);
    let half = 12.706_204_736 * (t0 - t1).abs() / 2f64.sqrt() / 2f64.sqrt();
    assert!((ci - half).abs() < 1e-6 * half.max(1.0), "{ci} vs {half}");
    assert_eq!(prow[4][pc("ok")], "0");
    assert_eq!(prow[4][pc("failed")], "2");
    assert_eq!(prow[4][pc("mean(throughput_rps)")], "");
}

#[test]
fn output_bytes_do_not_depend_on_the_thread_count() {
    let tmp = TempDir::new().unwrap();
    let one = sweep_into(&tmp, "one", &[], &[("RAYON_NUM_THREADS", Some("1"))]);
    let many = sweep_into(&tmp, "many", &[], &[("RAYON_NUM_THREADS", None)]);
    let four = sweep_into(&tmp, "four", &[], &[("RAYON_NUM_THREADS", Some("4"))]);
    assert_eq!(read_dir_bytes(&one), read_dir_bytes(&many));
    assert_eq!(read_dir_bytes(&one), read_dir_bytes(&four));
}

#[test]
fn shards_run_as_separate_processes_merge_into_the_single_run_byte_for_byte() {
    let tmp = TempDir::new().unwrap();
    let single = sweep_into(&tmp, "single", &[], &[]);
    // Three ways of naming a shard: the flag, a Kubernetes Indexed Job, a Slurm array.
    let s1 = sweep_into(&tmp, "s1", &["--shard", "1/3"], &[]);
    let s2 = sweep_into(
        &tmp,
        "s2",
        &["--shards", "3"],
        &[("JOB_COMPLETION_INDEX", Some("1"))],
    );
    let s3 = sweep_into(
        &tmp,
        "s3",
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", Some("3")),
            ("SLURM_ARRAY_TASK_MIN", Some("1")),
            ("SLURM_ARRAY_TASK_COUNT", Some("3")),
        ],
    );
    let shard_rows: usize = [&s1, &s2, &s3]
        .iter()
        .map(|d| csv_rows(&d.join("runs.csv")).1.len())
        .sum();
    assert_eq!(shard_rows, 12);
    let merged = tmp.path().join("merged");
    // Shards given in any order.
    let o = bin(
        &[
            "merge",
            s3.to_str().unwrap(),
            s1.to_str().unwrap(),
            s2.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
        ],
        &[],
    );
    ok(&o);
    assert_eq!(read_dir_bytes(&single), read_dir_bytes(&merged));

    // A missing shard, or one given twice, is an error that names it; nothing is written.
    let bad = tmp.path().join("bad");
    let o = bin(
        &[
            "merge",
            s1.to_str().unwrap(),
            s2.to_str().unwrap(),
            "--out",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("missing: 3/3"), "{}", o.stderr);
    let o = bin(
        &[
            "merge",
            s1.to_str().unwrap(),
            s1.to_str().unwrap(),
            s2.to_str().unwrap(),
            s3.to_str().unwrap(),
            "--out",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("not given twice"), "{}", o.stderr);
    assert!(!bad.exists());
}

#[test]
fn resume_reuses_stored_runs_and_skips_a_torn_last_line() {
    let tmp = TempDir::new().unwrap();
    let full = sweep_into(&tmp, "full", &[], &[]);
    let text = std::fs::read_to_string(full.join("sweep.json")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = rec["runs"].as_array().unwrap();
    // An interrupted sweep: the first five runs stored (one tampered with, to see that it is
    // reused rather than recomputed), then a torn line.
    let part = tmp.path().join("part");
    std::fs::create_dir_all(&part).unwrap();
    let mut lines = String::new();
    for (i, r) in runs.iter().take(5).enumerate() {
        let mut r = r.clone();
        if i == 0 {
            r["summary"]["events"] = serde_json::json!(42);
        }
        lines.push_str(&serde_json::to_string(&r).unwrap());
        lines.push('\n');
    }
    lines.push_str("{\"run\": 7, \"po");
    std::fs::write(part.join("runs.jsonl"), lines).unwrap();
    let file = tmp.path().join("small.toml");
    let o = bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            part.to_str().unwrap(),
            "--resume",
        ],
        &[],
    );
    ok(&o);
    assert!(o.stdout.contains("5 runs reused"), "{}", o.stdout);
    let (h, rows) = csv_rows(&part.join("runs.csv"));
    let ev = h.iter().position(|c| c == "events").unwrap();
    assert_eq!(rows[0][ev], "42", "run 0 came from the store");
    let (_, full_rows) = csv_rows(&full.join("runs.csv"));
    assert_eq!(rows[1..], full_rows[1..]);

    // Resuming a finished sweep recomputes nothing; without --resume everything is rerun.
    let o = bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            full.to_str().unwrap(),
            "--resume",
        ],
        &[],
    );
    ok(&o);
    assert!(o.stdout.contains("12 runs reused"), "{}", o.stdout);
    let o = bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            part.to_str().unwrap(),
        ],
        &[],
    );
    ok(&o);
    assert_eq!(read_dir_bytes(&part), read_dir_bytes(&full));
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let tmp = TempDir::new().unwrap();
    let file = write(tmp.path(), "small.toml", &small_sweep());
    let out = tmp.path().join("o");
    let o = bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    ok(&o);
    assert_eq!(o.stderr, "");
    assert!(
        o.stdout
            .contains("12 runs (4 failed) of 6 points x 2 seeds"),
        "{}",
        o.stdout
    );
}

fn sweep_error(text: &str, needles: &[&str]) {
    let tmp = TempDir::new().unwrap();
    let file = write(tmp.path(), "bad.toml", text);
    let out = tmp.path().join("o");
    let o = bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        o.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(
        o.stderr.contains(file.to_str().unwrap()),
        "names the file: {}",
        o.stderr
    );
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "stderr should contain `{n}`:\n{}",
            o.stderr
        );
    }
    assert!(!out.join("sweep.json").exists());
}

#[test]
fn unknown_grid_key_names_it_and_lists_the_valid_ones() {
    let base = seed_file("mig-light");
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\n[grid]\n\"workload.usrs\" = [1, 2]\n"),
        &[
            "grid.\"workload.usrs\"",
            "unknown field `usrs`",
            "users",
            "think_time_s",
        ],
    );
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\n[grid]\n\"gpus[0].sharing.slice\" = [1, 2]\n"),
        &[
            "grid.\"gpus[0].sharing.slice\"",
            "unknown field `slice`",
            "instances",
        ],
    );
    sweep_error(
        &format!(
            "name = \"x\"\nbase = {base}\n[grid]\n\"profiles.\\\"nemotron-nano-vl-8b\\\".max_batchh\" = [1, 2]\n"
        ),
        &["max_batchh", "max_batch"],
    );
}

#[test]
fn grid_with_zero_points_or_nothing_to_sweep_is_an_error() {
    let base = seed_file("mig-light");
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\n[grid]\n\"workload.users\" = []\n"),
        &["grid.\"workload.users\"", "zero points"],
    );
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\n"),
        &["nothing to sweep"],
    );
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\n[grid]\nworkload.users = [1]\n"),
        &["grid.\"workload\"", "quote the whole key path"],
    );
    sweep_error(
        &format!(
            "name = \"x\"\nbase = {base}\n[[modes]]\nlabel = \"a\"\n[[modes]]\nlabel = \"a\"\n"
        ),
        &["modes[1].label", "not used by another mode"],
    );
    sweep_error(
        "name = \"x\"\nbase = \"nope.toml\"\nseeds = 2\n",
        &["field `base`", "does not exist"],
    );
    sweep_error(
        &format!("name = \"x\"\nbase = {base}\nseeds = 0\n"),
        &["field `seeds`"],
    );
}

#[test]
fn a_profile_parameter_can_be_swept() {
    let tmp = TempDir::new().unwrap();
    let base = seed_file("mig-light");
    let file = write(
        tmp.path(),
        "p.toml",
        &format!(
            "name = \"p\"\nbase = {base}\n[grid]\n\"workload.hold_s\" = [8.0]\n\"profiles.\\\"nemotron-nano-vl-8b\\\".step_overhead_us\" = [500.0, 5000.0]\n"
        ),
    );
    let out = tmp.path().join("o");
    ok(&bin(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    ));
    let (h, rows) = csv_rows(&out.join("runs.csv"));
    let c = h
        .iter()
        .position(|x| x == "latency_ms.llm_total.mean")
        .unwrap();
    let slow: f64 = rows[1][c].parse().unwrap();
    let fast: f64 = rows[0][c].parse().unwrap();
    assert!(
        slow > fast + 100.0,
        "a 10x host step overhead shows: {fast} -> {slow}"
    );
}

#[test]
fn a_shard_record_with_a_cut_fingerprint_is_refused_not_a_panic() {
    // Once: "end byte index 12 is out of bounds" when a shard's sweep.json had a short
    // fingerprint.
    let tmp = TempDir::new().unwrap();
    let s1 = sweep_into(&tmp, "s1", &["--shard", "1/2"], &[]);
    let s2 = sweep_into(&tmp, "s2", &["--shard", "2/2"], &[]);
    let record = s2.join("sweep.json");
    let text = std::fs::read_to_string(&record).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fingerprint = v["sweep"]["fingerprint"].as_str().unwrap().to_string();
    std::fs::write(&record, text.replace(&fingerprint, "abc")).unwrap();
    let out = tmp.path().join("merged");
    let args = ["merge", s1.to_str().unwrap(), s2.to_str().unwrap()];
    let o = bin(
        &[&args[..], &["--out", out.to_str().unwrap()]].concat(),
        &[],
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(o.stderr.contains("(abc)"), "{}", o.stderr);
    assert!(!out.exists());
}

#[test]
fn a_sweep_name_that_is_not_one_folder_is_refused() {
    // Once: `name = "../../../x"` or an absolute name wrote there; `""` wrote into results/.
    let tmp = TempDir::new().unwrap();
    for name in ["../../escape", "/tmp/escape", "", "..", "a/b"] {
        let text = small_sweep().replace(
            "name = \"small\"",
            &format!("name = {}", serde_json::to_string(name).unwrap()),
        );
        let file = write(tmp.path(), "named.toml", &text);
        let o = bin(&["sweep", file.to_str().unwrap(), "--quiet"], &[]);
        assert_eq!(o.code, Some(1), "{name:?}: {}", o.stderr);
        assert!(o.stderr.contains("field `name`"), "{name:?}: {}", o.stderr);
        assert!(o.stderr.contains("one plain folder name"), "{}", o.stderr);
    }
}
