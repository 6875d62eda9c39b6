//! CLI tests: run the built `gpushare` binary on small files in a scratch folder and check exit
//! codes, error messages (file, field, what is allowed; never a panic) and written outputs.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// What one run of the binary gave back.
pub(super) struct Outcome {
    pub(super) code: Option<i32>,
    stdout: String,
    pub(super) stderr: String,
}

impl Outcome {
    pub(super) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Run `gpushare` with `args`.
pub(super) fn gpushare<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_gpushare"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the gpushare binary starts");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(super) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `s` as a TOML basic string.
pub(super) fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn models_dir() -> String {
    toml_str(&repo().join("models").display().to_string())
}

fn seed_part(stem: &str) -> String {
    toml_str(
        &repo()
            .join("experiments/seed")
            .join(format!("{stem}.toml"))
            .display()
            .to_string(),
    )
}

/// A valid, short experiment written out in full: the seed study's MIG configuration (ASR and
/// TTS on two 3g.40gb instances of gpu0, the LLM on a dedicated gpu1) under a tiny load.
pub(super) fn valid_experiment() -> String {
    format!(
        r#"name = "cli-test"
seed = 1
models_dir = {models}

[workload]
mode = "closed-loop"
users = 2
ramp_up_s = 1.0
hold_s = 4.0
ramp_down_s = 1.0
think_time_s = 1.0
timeout_s = 60.0

[audio]
clips_s = [4.771]
chunk_ms = 128.0
chunk_interval_ms = 10.0

[answers]
prompt_tokens = {{ dist = "fixed", value = 200 }}
output_tokens = {{ dist = "fixed", value = 40 }}
sentences = {{ dist = "fixed", value = 2 }}

[[gpus]]
id = "gpu0"
type = "a100-80gb"
sharing = {{ mode = "mig", instances = ["3g.40gb", "3g.40gb"] }}

[[gpus]]
id = "gpu1"
type = "a100-80gb"
sharing = {{ mode = "dedicated" }}

[[deployments]]
model = "parakeet-1.1b"
replicas = [{{ gpu = "gpu0", instance = 0 }}]

[[deployments]]
model = "magpie-tts-multilingual"
replicas = [{{ gpu = "gpu0", instance = 1 }}]

[[deployments]]
model = "nemotron-nano-vl-8b"
replicas = [{{ gpu = "gpu1" }}]
"#,
        models = models_dir()
    )
}

/// `text` with the one occurrence of `from` replaced by `to` (fails if `from` is not there
/// exactly once, so a test can never silently run the unedited file).
pub(super) fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` should occur exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// Write `text` as `name` in `dir`, returning its path.
pub(super) fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write scratch file");
    path
}

/// The entries of `dir`, by name.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read scratch folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Assert that stderr holds every one of `needles`.
fn assert_stderr_has(o: &Outcome, needles: &[&str]) {
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "stderr should contain `{n}`:\n{}",
            o.stderr
        );
    }
}

pub(super) fn assert_no_panic(o: &Outcome) {
    assert!(
        !o.stderr.contains("panicked") && o.code != Some(101),
        "the binary panicked (exit {:?}):\n{}",
        o.code,
        o.stderr
    );
}

/// A clean input error: exit 1, no panic, nothing on stdout, one `error:` message naming
/// `file` and containing every one of `needles`.
pub(super) fn assert_input_error(o: &Outcome, file: &Path, needles: &[&str]) {
    assert_no_panic(o);
    assert_eq!(
        o.code,
        Some(1),
        "expected exit 1, got {:?}; stderr:\n{}",
        o.code,
        o.stderr
    );
    assert!(
        o.stdout.is_empty(),
        "nothing should be printed on stdout for bad input, got:\n{}",
        o.stdout
    );
    assert!(
        o.stderr.starts_with("error: "),
        "stderr should start with `error: `:\n{}",
        o.stderr
    );
    let file = file.display().to_string();
    assert!(
        o.stderr.contains(&file),
        "stderr should name the file {file}:\n{}",
        o.stderr
    );
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "stderr should contain `{n}`:\n{}",
            o.stderr
        );
    }
}

/// Write `text` as an experiment, run it, and check it fails as an input error with `needles`.
pub(super) fn run_bad(text: &str, needles: &[&str]) {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "bad.toml", text);
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_input_error(&o, &path, needles);
}

#[test]
fn the_valid_base_experiment_runs() {
    // Guards the bad-input tests below: each differs from this file by one edit.
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "ok.toml", &valid_experiment());
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    assert!(o.stdout.contains("cli-test"), "{}", o.stdout);
}

/// An experiment saved in an empty folder, with no `models_dir`, runs on the built-in
/// profiles; the "wrote" line names every file written.
#[test]
fn an_experiment_anywhere_runs_on_the_built_in_profiles() {
    let dir = TempDir::new().unwrap();
    let text = edit(
        &valid_experiment(),
        &format!("models_dir = {}\n", models_dir()),
        "",
    );
    let path = write(&dir, "anywhere.toml", &text);
    let out = dir.path().join("out");
    let o = gpushare(&[
        OsStr::new("run"),
        path.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
        OsStr::new("--quiet"),
    ]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    let written = entries(&out);
    assert_eq!(written.len(), 4, "{written:?}");
    for f in &written {
        assert!(
            o.stdout.contains(&format!("/{f}")),
            "{f} not in:\n{}",
            o.stdout
        );
    }
}

/// `--models DIR` overrides a built-in profile of the same name and adds new ones; `models`
/// lists them with where each comes from.
#[test]
fn a_models_folder_overrides_and_adds_profiles() {
    let dir = TempDir::new().unwrap();
    let models = dir.path().join("mine");
    std::fs::create_dir(&models).unwrap();
    let tts = std::fs::read_to_string(repo().join("models/magpie-tts-multilingual.toml")).unwrap();
    // A TTS whose footprint no 3g.40gb instance holds: the override must be the one read.
    let big = tts.replace("memory_gb = 13.4", "memory_gb = 60.0");
    assert_ne!(big, tts);
    std::fs::write(models.join("magpie-tts-multilingual.toml"), &big).unwrap();
    std::fs::write(
        models.join("my-tts.toml"),
        tts.replace("name = \"magpie-tts-multilingual\"", "name = \"my-tts\""),
    )
    .unwrap();
    let text = edit(
        &valid_experiment(),
        &format!("models_dir = {}\n", models_dir()),
        "",
    );
    let path = write(&dir, "exp.toml", &text);
    let o = gpushare(&[
        OsStr::new("run"),
        path.as_os_str(),
        OsStr::new("--models"),
        models.as_os_str(),
    ]);
    assert!(!o.success(), "{}", o.stdout);
    assert_stderr_has(&o, &["magpie-tts-multilingual", "60"]);
    let mine = edit(&text, "\"magpie-tts-multilingual\"", "\"my-tts\"");
    let path = write(&dir, "mine.toml", &mine);
    let o = gpushare(&[
        OsStr::new("run"),
        path.as_os_str(),
        OsStr::new("--models"),
        models.as_os_str(),
    ]);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    let o = gpushare(&[
        OsStr::new("models"),
        OsStr::new("--models"),
        models.as_os_str(),
    ]);
    assert!(o.success(), "{}", o.stderr);
    assert!(
        o.stdout.contains("built-in models/parakeet-1.1b.toml"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("my-tts"), "{}", o.stdout);
    assert!(
        o.stdout.contains(
            &models
                .join("magpie-tts-multilingual.toml")
                .display()
                .to_string()
        ),
        "{}",
        o.stdout
    );
    let o = gpushare(&["models", "--show", "parakeet-1.1b"]);
    assert!(
        o.success() && o.stdout.contains("name = \"parakeet-1.1b\""),
        "{}",
        o.stdout
    );
}

#[test]
fn unknown_model_lists_the_available_models() {
    let text = edit(
        &valid_experiment(),
        "model = \"magpie-tts-multilingual\"",
        "model = \"magpie-tts\"",
    );
    run_bad(
        &text,
        &[
            "deployments[1].model",
            "\"magpie-tts\"",
            "magpie-tts-multilingual",
            "nemotron-nano-vl-8b",
            "parakeet-1.1b",
        ],
    );
}

#[test]
fn unknown_gpu_type_lists_known_keys_and_suggests_the_closest() {
    let text = edit(
        &valid_experiment(),
        "id = \"gpu0\"\ntype = \"a100-80gb\"",
        "id = \"gpu0\"\ntype = \"a100-80g\"",
    );
    run_bad(
        &text,
        &[
            "gpus[0].type",
            "`a100-80g`",
            "a100-40gb",
            "h100-80gb",
            "did you mean `a100-80gb`",
        ],
    );
}

#[test]
fn impossible_mig_layout_says_why() {
    let text = edit(
        &valid_experiment(),
        "[\"3g.40gb\", \"3g.40gb\"]",
        "[\"4g.40gb\", \"4g.40gb\"]",
    );
    run_bad(
        &text,
        &[
            "gpus[0].sharing.instances",
            "invalid MIG layout",
            "4g.40gb",
            "at most 1",
            "memory slice 0",
        ],
    );
}

#[test]
fn model_larger_than_its_mig_instance_gives_gb_needed_and_available() {
    // The 13.4 GB TTS on a 1g.10gb instance (10.2 GB).
    let text = edit(
        &valid_experiment(),
        "instances = [\"3g.40gb\", \"3g.40gb\"]",
        "instances = [\"3g.40gb\", \"1g.10gb\"]",
    );
    run_bad(
        &text,
        &[
            "deployments[1].replicas[0]",
            "magpie-tts-multilingual",
            "1g.10gb",
            "13.4 GB",
            "fits its MIG instance",
            "10.2 GB available",
        ],
    );
}

#[test]
fn llm_whose_weights_exceed_its_memory_fraction_is_refused() {
    // 0.3 x 42.1 GB = 12.6 GB cannot hold 16 GB of weights plus 2 GB of runtime.
    let text = edit(
        &valid_experiment(),
        "model = \"nemotron-nano-vl-8b\"\nreplicas = [{ gpu = \"gpu1\" }]",
        "model = \"nemotron-nano-vl-8b\"\nreplicas = [{ gpu = \"gpu0\", instance = 1 }]\nengine = { memory_fraction = 0.3 }",
    );
    let text = edit(
        &text,
        "replicas = [{ gpu = \"gpu0\", instance = 1 }]\n\n",
        "replicas = [{ gpu = \"gpu1\" }]\n\n",
    );
    run_bad(
        &text,
        &[
            "deployments[2].engine.memory_fraction",
            "= 0.3",
            "18.0 GB",
            "room for a KV cache",
        ],
    );
}

#[test]
fn over_committed_time_sliced_card_is_refused_at_load_time() {
    // The LLM takes 90% of the card by default; the ASR's 9.6 GB no longer fits beside it.
    let text = edit(
        &valid_experiment(),
        "sharing = { mode = \"dedicated\" }",
        "sharing = { mode = \"time-slicing\", replicas = 2 }",
    );
    let text = edit(
        &text,
        "model = \"parakeet-1.1b\"\nreplicas = [{ gpu = \"gpu0\", instance = 0 }]",
        "model = \"parakeet-1.1b\"\nreplicas = [{ gpu = \"gpu1\" }]",
    );
    run_bad(
        &text,
        &[
            "deployments[2].replicas[0]",
            "parakeet-1.1b 9.6 GB + nemotron-nano-vl-8b 76.3 GB",
            "share it with no isolation",
            "memory_fraction",
            "84.8 GB available",
        ],
    );
}

#[test]
fn zero_hold_is_rejected() {
    let text = edit(&valid_experiment(), "hold_s = 4.0", "hold_s = 0");
    run_bad(&text, &["workload.hold_s", "= 0", "> 0"]);
}

#[test]
fn negative_think_time_is_rejected() {
    let text = edit(
        &valid_experiment(),
        "think_time_s = 1.0",
        "think_time_s = -1",
    );
    run_bad(&text, &["workload.think_time_s", "= -1", ">= 0"]);
}

#[test]
fn zero_timeout_is_rejected() {
    let text = edit(&valid_experiment(), "timeout_s = 60.0", "timeout_s = 0");
    run_bad(&text, &["workload.timeout_s", "= 0", "> 0"]);
}

#[test]
fn huge_timeout_is_rejected_without_panic() {
    let text = edit(&valid_experiment(), "timeout_s = 60.0", "timeout_s = 1e300");
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "huge.toml", &text);
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_no_panic(&o);
    if !o.success() {
        assert_input_error(&o, &path, &["workload.timeout_s"]);
    }
}

#[test]
fn malformed_toml_gives_the_line() {
    let text = edit(&valid_experiment(), "users = 2", "users = ");
    let line = text
        .lines()
        .position(|l| l == "users = ")
        .expect("edited line")
        + 1;
    run_bad(&text, &[&format!("line {line}"), "users"]);
}

#[test]
fn unknown_workload_field_is_named() {
    let text = edit(&valid_experiment(), "users = 2\n", "users = 2\nuserz = 5\n");
    run_bad(&text, &["unknown field `userz`", "workload"]);
}

#[test]
fn unknown_workload_field_lists_the_allowed_fields() {
    let text = edit(&valid_experiment(), "users = 2\n", "users = 2\nuserz = 5\n");
    run_bad(&text, &["userz", "users", "hold_s", "think_time_s"]);
}

#[test]
fn unknown_top_level_field_lists_the_allowed_fields() {
    let text = edit(&valid_experiment(), "seed = 1\n", "seed = 1\nseeds = 2\n");
    run_bad(&text, &["unknown field `seeds`", "seed", "workload"]);
}

#[test]
fn negative_user_count_names_the_field() {
    let text = edit(&valid_experiment(), "users = 2", "users = -1");
    run_bad(&text, &["workload.users", "-1"]);
}

#[test]
fn missing_experiment_file_is_named() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("does-not-exist.toml");
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_input_error(&o, &path, &["cannot read"]);
}

#[test]
fn missing_extended_file_is_named() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "extends = [\"parts/missing.toml\"]\nname = \"x\"\nmodels_dir = {}\n",
        models_dir()
    );
    let path = write(&dir, "exp.toml", &text);
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_no_panic(&o);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(o.stderr.contains("missing.toml"), "{}", o.stderr);
    assert!(o.stderr.contains("cannot read"), "{}", o.stderr);
}

#[test]
fn two_replicas_on_a_dedicated_gpu_are_rejected() {
    let text = edit(
        &valid_experiment(),
        "replicas = [{ gpu = \"gpu1\" }]",
        "replicas = [{ gpu = \"gpu1\" }, { gpu = \"gpu1\" }]",
    );
    run_bad(
        &text,
        &[
            "deployments[2].replicas[1].gpu",
            "at most one replica on dedicated GPU gpu1",
            "time-slicing",
        ],
    );
}

#[test]
fn mig_instance_index_out_of_range_is_rejected() {
    let text = edit(
        &valid_experiment(),
        "replicas = [{ gpu = \"gpu0\", instance = 1 }]",
        "replicas = [{ gpu = \"gpu0\", instance = 2 }]",
    );
    run_bad(
        &text,
        &["deployments[1].replicas[0].instance", "= 2", "0..1", "gpu0"],
    );
}

#[test]
fn out_under_a_regular_file_fails_without_writing() {
    let dir = TempDir::new().unwrap();
    let exp = write(&dir, "exp.toml", &valid_experiment());
    let blocker = write(&dir, "blocker", "");
    let out = blocker.join("results");
    let o = gpushare(&[
        OsStr::new("run"),
        exp.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert_no_panic(&o);
    assert_eq!(o.code, Some(1), "stderr:\n{}", o.stderr);
    assert!(
        o.stderr.contains(&out.display().to_string()) && o.stderr.contains("cannot write"),
        "stderr should name {} and say it cannot be written:\n{}",
        out.display(),
        o.stderr
    );
    assert!(!o.stdout.contains("wrote"), "{}", o.stdout);
    assert!(!out.join("summary.json").exists());
    assert_eq!(std::fs::read(&blocker).unwrap(), b"");
    let want: BTreeSet<String> = ["blocker", "exp.toml"].map(String::from).into();
    assert_eq!(entries(dir.path()), want, "stray files left behind");
}

#[test]
fn unwritable_summary_leaves_no_temporary_files() {
    // summary.json is a folder, so the atomic rename fails; the temporary file must go.
    let dir = TempDir::new().unwrap();
    let exp = write(&dir, "exp.toml", &valid_experiment());
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("summary.json/inner")).unwrap();
    let o = gpushare(&[
        OsStr::new("run"),
        exp.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert_no_panic(&o);
    assert_eq!(o.code, Some(1), "stderr:\n{}", o.stderr);
    assert!(o.stderr.contains("summary.json"), "{}", o.stderr);
    assert!(o.stderr.contains("cannot write"), "{}", o.stderr);
    let want: BTreeSet<String> = ["summary.json".to_string()].into();
    assert_eq!(entries(&out), want, "stray files left behind");
}

/// The 14 maximal classic layouts of docs/sources.md §1.6, with A100-80GB profile names.
const A100_80GB_LAYOUTS: [&str; 14] = [
    "7g.80gb",
    "4g.40gb + 3g.40gb",
    "4g.40gb + 2g.20gb + 1g.10gb",
    "4g.40gb + 3× 1g.10gb",
    "2× 3g.40gb",
    "3g.40gb + 2g.20gb + 1g.10gb",
    "3g.40gb + 3× 1g.10gb",
    "3g.40gb + 2× 2g.20gb",
    "3g.40gb + 2g.20gb + 2× 1g.10gb",
    "3g.40gb + 4× 1g.10gb",
    "3× 2g.20gb + 1g.10gb",
    "2× 2g.20gb + 3× 1g.10gb",
    "2g.20gb + 5× 1g.10gb",
    "7× 1g.10gb",
];

/// The header and, per row, the layout (the words before the first `profile@start`).
fn layout_rows(stdout: &str) -> (String, Vec<String>) {
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .take_while(|w| !w.contains('@'))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (header, rows)
}

#[test]
fn mig_layouts_lists_the_14_a100_80gb_layouts() {
    let o = gpushare(&["mig", "layouts", "--gpu", "a100-80gb"]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    let (header, rows) = layout_rows(&o.stdout);
    assert!(header.contains("A100-SXM4-80GB"), "{header}");
    let got: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = A100_80GB_LAYOUTS.into();
    assert_eq!(got, want, "stdout:\n{}", o.stdout);
    assert!(got.contains("2× 3g.40gb") && got.contains("7g.80gb"));
}

#[test]
fn mig_layouts_lists_each_layout_once_and_counts_them() {
    let o = gpushare(&["mig", "layouts", "--gpu", "a100-80gb"]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    let (header, rows) = layout_rows(&o.stdout);
    let distinct: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(
        rows.len(),
        distinct.len(),
        "a layout is listed twice:\n{}",
        o.stdout
    );
    assert!(
        header.starts_with("14 maximal MIG layouts"),
        "header should count the 14 layouts: {header}"
    );
}

#[test]
fn mig_check_accepts_two_3g_instances_and_places_them() {
    let o = gpushare(&["mig", "check", "--gpu", "a100-80gb", "3g.40gb", "3g.40gb"]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    assert!(o.stdout.contains("valid on A100-SXM4-80GB"), "{}", o.stdout);
    assert!(
        o.stdout.contains("3g.40gb at memory slices 0..4")
            && o.stdout.contains("3g.40gb at memory slices 4..8"),
        "{}",
        o.stdout
    );
}

#[test]
fn mig_check_rejects_two_4g_instances_with_a_reason() {
    let o = gpushare(&["mig", "check", "--gpu", "a100-80gb", "4g.40gb", "4g.40gb"]);
    assert_no_panic(&o);
    assert_eq!(o.code, Some(1), "stderr:\n{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert_stderr_has(
        &o,
        &[
            "invalid MIG layout",
            "4g.40gb",
            "at most 1",
            "memory slice 0",
        ],
    );
}

#[test]
fn mig_check_rejects_an_unknown_profile_suggesting_the_closest() {
    let o = gpushare(&["mig", "check", "--gpu", "a100-80gb", "3g.20gb"]);
    assert_no_panic(&o);
    assert_eq!(o.code, Some(1), "stderr:\n{}", o.stderr);
    assert_stderr_has(
        &o,
        &["`3g.20gb`", "4g.40gb", "7g.80gb", "did you mean `3g.40gb`"],
    );
}

#[test]
fn mig_unknown_gpu_suggests_the_closest_key() {
    for args in [
        &["mig", "layouts", "--gpu", "a100-81gb"][..],
        &["mig", "check", "--gpu", "a100-81gb", "3g.40gb"][..],
    ] {
        let o = gpushare(args);
        assert_no_panic(&o);
        assert_eq!(o.code, Some(1), "{args:?}: stderr:\n{}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}: {}", o.stdout);
        for n in [
            "`a100-81gb`",
            "a100-40gb, a100-80gb, h100-80gb",
            "did you mean `a100-80gb`",
        ] {
            assert!(
                o.stderr.contains(n),
                "{args:?}: stderr should contain `{n}`:\n{}",
                o.stderr
            );
        }
    }
}

#[test]
fn run_writes_summary_json_and_runs_csv() {
    // The seed study's mig-light experiment, from its parts, with shortened durations.
    let dir = TempDir::new().unwrap();
    let text = format!(
        r#"extends = [{vp}, {mig}, {light}]
name = "mig-light-short"
seed = 1
models_dir = {models}

[workload]
ramp_up_s = 2.0
hold_s = 10.0
ramp_down_s = 1.0
"#,
        vp = seed_part("voice-pipeline"),
        mig = seed_part("mig"),
        light = seed_part("light"),
        models = models_dir()
    );
    let exp = write(&dir, "mig-light-short.toml", &text);
    let out = dir.path().join("results");
    let o = gpushare(&[
        OsStr::new("run"),
        exp.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert_no_panic(&o);
    assert!(o.success(), "exit {:?}; stderr:\n{}", o.code, o.stderr);
    assert!(o.stdout.contains("mig-light-short"), "{}", o.stdout);
    assert!(o.stdout.contains("summary.json"), "{}", o.stdout);

    let want: BTreeSet<String> = [
        "latency_quantiles.csv",
        "runs.csv",
        "summary.json",
        "timeline.csv",
    ]
    .map(String::from)
    .into();
    assert_eq!(entries(&out), want, "only the outputs, no temporary files");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
            .expect("summary.json is JSON");
    assert_eq!(json["tool"], "gpushare");
    assert_eq!(json["schema_version"], 1);
    let runs = json["runs"].as_array().expect("runs is an array");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["name"], "mig-light-short");
    assert_eq!(r["config"], "mig");
    assert_eq!(r["load"], "light");
    assert_eq!(r["gpus"], 2);
    let num = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("runs[0].{k} is a number: {r}"))
    };
    assert_eq!(num("duration_s"), 13.0, "the shortened durations were used");
    let completed = r["completed"].as_u64().expect("completed is an integer");
    let failed = r["failed"].as_u64().expect("failed is an integer");
    assert!(completed > 0, "{r}");
    let tput = num("throughput_rps");
    assert!(tput.is_finite() && tput > 0.0, "{tput}");
    assert!((tput - (completed + failed) as f64 / 13.0).abs() < 1e-9);
    assert!((num("throughput_per_gpu_rps") - tput / 2.0).abs() < 1e-12);
    let success = num("success_rate");
    assert!((0.0..=1.0).contains(&success), "{success}");
    for stage in ["asr", "llm_ttft", "llm_total", "tts", "e2e", "request"] {
        let p95 = r["latency_ms"][stage]["p95"]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{stage}.p95 is a number: {r}"));
        assert!(p95.is_finite() && p95 > 0.0, "{stage} p95 = {p95}");
    }

    let mut csv = csv::Reader::from_path(out.join("runs.csv")).expect("runs.csv opens");
    let header = csv.headers().unwrap().clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("runs.csv has a `{name}` column: {header:?}"))
    };
    let records: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "one data row");
    let row = &records[0];
    assert_eq!(row.len(), header.len());
    assert_eq!(&row[col("name")], "mig-light-short");
    let per_gpu: f64 = row[col("throughput_per_gpu_rps")].parse().unwrap();
    assert_eq!(per_gpu, num("throughput_per_gpu_rps"));
    let p95: f64 = row[col("asr_p95_ms")].parse().unwrap();
    assert_eq!(p95, r["latency_ms"]["asr"]["p95"].as_f64().unwrap());
}

#[test]
fn every_subcommand_answers_help() {
    for (args, mention) in [
        (&["--help"][..], "run"),
        (&["run", "--help"][..], "--out"),
        (&["study", "--help"][..], "--out"),
        (&["mig", "--help"][..], "layouts"),
        (&["mig", "layouts", "--help"][..], "--gpu"),
        (&["mig", "check", "--help"][..], "--gpu"),
        (&["sweep", "--help"][..], "--shard"),
        (&["merge", "--help"][..], "--out"),
        (&["plot", "--help"][..], "--size"),
    ] {
        let o = gpushare(args);
        assert_no_panic(&o);
        assert!(
            o.success(),
            "{args:?}: exit {:?}; stderr:\n{}",
            o.code,
            o.stderr
        );
        assert!(o.stdout.contains("Usage:"), "{args:?}:\n{}", o.stdout);
        assert!(o.stdout.contains(mention), "{args:?}:\n{}", o.stdout);
    }
}

#[test]
fn faults_with_bad_numbers_or_names_are_refused_with_the_field() {
    let base = valid_experiment();
    run_bad(
        &format!("{base}\n[faults.recovery]\npod_restart_s = 0\n"),
        &["faults.recovery.pod_restart_s", "> 0"],
    );
    run_bad(
        &format!("{base}\n[[faults.random]]\nkind = \"app-crash\"\nmtbf_h = -5\n"),
        &["faults.random[0].mtbf_h"],
    );
    run_bad(
        &format!("{base}\n[[faults.inject]]\nat_s = 1.0\nkind = \"app-crash\"\nmodel = \"nope\"\n"),
        &["faults.inject[0].model", "\"nope\"", "parakeet-1.1b"],
    );
    run_bad(
        &format!("{base}\n[[faults.inject]]\nat_s = 1.0\nkind = \"meteor\"\ngpu = \"gpu0\"\n"),
        &["kind", "meteor", "app-crash"],
    );
}

#[test]
fn mps_settings_out_of_range_are_refused() {
    let base = valid_experiment();
    let mps = |sharing: &str| {
        edit(
            &edit(
                &base,
                "sharing = { mode = \"mig\", instances = [\"3g.40gb\", \"3g.40gb\"] }",
                sharing,
            ),
            "replicas = [{ gpu = \"gpu0\", instance = 1 }]",
            "replicas = [{ gpu = \"gpu0\" }]",
        )
        .replace(
            "replicas = [{ gpu = \"gpu0\", instance = 0 }]",
            "replicas = [{ gpu = \"gpu0\" }]",
        )
    };
    run_bad(
        &mps("sharing = { mode = \"mps\", replicas = 2, active_thread_pct = [150, 50] }"),
        &["gpus[0].sharing.active_thread_pct[0]", "150", "(0, 100]"],
    );
    run_bad(
        &mps("sharing = { mode = \"mps\", replicas = 2, active_thread_pct = [50] }"),
        &["gpus[0].sharing.active_thread_pct", "2 values"],
    );
    run_bad(
        &mps("sharing = { mode = \"mps\", replicas = 64 }"),
        &["gpus[0].sharing.replicas", "64", "[1, 48]"],
    );
}
