//! Values far outside any real set-up are refused at load time with their range, before the
//! engine sees them: each case here once panicked, aborted on an allocation, ran for minutes
//! or printed NaN.

use std::ffi::OsStr;

use tempfile::TempDir;

use super::cli::{
    assert_input_error, edit, gpushare, repo, run_bad, toml_str, valid_experiment, write,
};

/// Run the valid experiment against a copy of the shipped profiles in which `model`'s file
/// has `from` replaced by `to`; it must fail naming that profile and `needles`.
fn run_with_profile_edit(model: &str, from: &str, to: &str, needles: &[&str]) {
    let dir = TempDir::new().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, models.join(path.file_name().unwrap())).unwrap();
    }
    let profile = models.join(format!("{model}.toml"));
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, edit(&text, from, to)).unwrap();
    let experiment = valid_experiment().replace(
        &toml_str(&repo().join("models").display().to_string()),
        &toml_str(&models.display().to_string()),
    );
    let path = write(&dir, "exp.toml", &experiment);
    let o = gpushare(&[OsStr::new("run"), path.as_os_str()]);
    assert_input_error(&o, &profile, needles);
}

#[test]
fn huge_flops_in_a_kernel_group_are_refused_with_the_range() {
    // Once: "invariant: timer set in the past or at the end of time".
    run_with_profile_edit(
        "parakeet-1.1b",
        "flops = 4.4e9",
        "flops = 1e300",
        &["chunk.flops", "1e300", "[0, 1e15]"],
    );
}

#[test]
fn huge_kernel_count_is_refused_with_the_range() {
    run_with_profile_edit(
        "parakeet-1.1b",
        "kernels = 840.0",
        "kernels = 1e300",
        &["chunk.kernels", "1e300", "[0, 100000]"],
    );
}

#[test]
fn vanishing_memory_efficiency_is_refused_with_the_range() {
    run_with_profile_edit(
        "parakeet-1.1b",
        "memory = 0.8 ",
        "memory = 1e-300 ",
        &["efficiency.memory", "1e-300", "[0.001, 1]"],
    );
}

#[test]
fn a_hold_shorter_than_a_millisecond_is_refused() {
    // Once: zero ramps and hold_s = 1e-300 printed NaN req/s and wrote NaN into runs.csv.
    let text = edit(&valid_experiment(), "hold_s = 4.0", "hold_s = 1e-300");
    let text = edit(&text, "ramp_up_s = 1.0", "ramp_up_s = 0.0");
    let text = edit(&text, "ramp_down_s = 1.0", "ramp_down_s = 0.0");
    run_bad(&text, &["workload.hold_s", "1e-300", "at least 0.001 s"]);
}

#[test]
fn four_billion_users_are_refused() {
    // Once: 3.8 GB of memory in 25 s.
    let text = edit(&valid_experiment(), "users = 2", "users = 4294967295");
    run_bad(&text, &["workload.users", "4294967295", "[1, 1000000]"]);
}

/// The valid experiment with a Poisson workload of `rate` req/s for `duration` s.
fn poisson(rate: &str, duration: &str) -> String {
    let closed = "mode = \"closed-loop\"\nusers = 2\nramp_up_s = 1.0\nhold_s = 4.0\n\
                  ramp_down_s = 1.0\nthink_time_s = 1.0\n";
    let open = format!("mode = \"poisson\"\nrate_rps = {rate}\nduration_s = {duration}\n");
    edit(&valid_experiment(), closed, &open)
}

#[test]
fn an_astronomical_rate_is_refused() {
    run_bad(
        &poisson("1e300", "10.0"),
        &["workload.rate_rps", "1e300", "req/s"],
    );
}

#[test]
fn a_workload_expected_to_issue_billions_of_requests_is_refused() {
    let text = poisson("100000.0", "1e6");
    run_bad(&text, &["workload", "expected requests", "5e7"]);
    // The same rate for a short span runs.
    let dir = TempDir::new().unwrap();
    let short = write(&dir, "short.toml", &poisson("2.0", "5.0"));
    assert!(gpushare(&[OsStr::new("run"), short.as_os_str(), OsStr::new("--quiet")]).success());
}

#[test]
fn a_looped_trace_replayed_for_years_is_refused() {
    // Once: a looped trace with duration_s = 1e8 ran until killed.
    let trace = toml_str(
        &repo()
            .join("experiments/traces/azure-style.csv")
            .display()
            .to_string(),
    );
    let closed = "mode = \"closed-loop\"\nusers = 2\nramp_up_s = 1.0\nhold_s = 4.0\n\
                  ramp_down_s = 1.0\nthink_time_s = 1.0\n";
    let looped = format!("mode = \"trace\"\npath = {trace}\nloop = true\nduration_s = 1e8\n");
    let text = edit(&valid_experiment(), closed, &looped);
    run_bad(&text, &["workload.duration_s", "requests"]);
}

/// `calibrate fit` of the shipped LLM profile on the shipped recording and `requests`, into
/// `out`, with `extra` flags.
fn fit(requests: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> super::cli::Outcome {
    let fixtures = repo().join("tests/fixtures/calibration");
    let mut args: Vec<std::ffi::OsString> = vec!["calibrate".into(), "fit".into()];
    args.extend([
        "--recording".into(),
        fixtures.join("recording.jsonl").into(),
    ]);
    args.extend(["--requests".into(), requests.as_os_str().to_owned()]);
    let model = repo().join("models/nemotron-nano-vl-8b.toml");
    args.extend(["--model".into(), model.into_os_string()]);
    args.extend([
        "--gpu".into(),
        "h100-80gb".into(),
        "--out".into(),
        out.into(),
    ]);
    args.extend(extra.iter().map(|e| e.into()));
    gpushare(&args)
}

#[test]
fn a_fit_that_fits_nothing_fails_and_writes_nothing() {
    // Once: AIPerf records with time_to_first_token = 1e300 gave R² = -5.6e30 and MAPE 100%,
    // and `calibrate fit` exited 0 with a profile marked fitted.
    let dir = TempDir::new().unwrap();
    let good = repo().join("tests/fixtures/calibration/llm-aiperf.jsonl");
    let text = std::fs::read_to_string(&good).unwrap();
    let key = "\"time_to_first_token\":{\"value\":";
    let bad: String = text
        .lines()
        .map(|l| {
            let (head, tail) = l.split_once(key).expect("an AIPerf record with TTFT");
            let rest = &tail[tail.find(',').unwrap()..];
            format!("{head}{key}1e300{rest}\n")
        })
        .collect();
    let requests = write(&dir, "bad.jsonl", &bad);
    let out = dir.path().join("fitted.toml");
    let o = fit(&requests, &out, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("the fit misses the measurements: ttft_ms"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--accept-poor-fit"), "{}", o.stderr);
    assert!(!out.exists());
    let o = fit(&requests, &out, &["--accept-poor-fit"]);
    assert!(o.success(), "{}", o.stderr);
    assert!(out.exists());
    // The shipped log fits, and is written without the flag.
    let o = fit(&good, &dir.path().join("good.toml"), &[]);
    assert!(o.success(), "{}", o.stderr);
}

#[test]
fn a_fit_never_writes_over_its_own_inputs() {
    // Once: `calibrate fit --out` could overwrite the shipped profile it started from.
    let dir = TempDir::new().unwrap();
    let requests = dir.path().join("log.jsonl");
    let good = repo().join("tests/fixtures/calibration/llm-aiperf.jsonl");
    std::fs::copy(&good, &requests).unwrap();
    let before = std::fs::read(&requests).unwrap();
    let o = fit(&requests, &requests, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("outputs never overwrite inputs"),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read(&requests).unwrap(), before);
}
