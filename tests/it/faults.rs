//! Faults end to end: the blast radius follows the sharing mode, retries, availability.

use gpushare::experiment::Experiment;
use gpushare::hardware::Catalogue;
use gpushare::report::{RunSummary, run_experiment, summary_json};

use crate::root;

/// A seed configuration under heavy load with `faults` (a TOML fragment) added.
fn with_faults(config: &str, faults: &str) -> RunSummary {
    let dir = tempfile::tempdir().unwrap();
    let seed = root().join("experiments/seed");
    let text = format!(
        "extends = [{:?}, {:?}, {:?}]\nname = \"{config}-faults\"\nseed = 1\n{faults}",
        seed.join("voice-pipeline.toml").display().to_string(),
        seed.join(format!("{config}.toml")).display().to_string(),
        seed.join("heavy.toml").display().to_string(),
    );
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, text).unwrap();
    run_experiment(&Experiment::load(&path, &Catalogue::builtin()).unwrap())
}

const TTS_CRASH: &str = r#"
[faults]
[[faults.inject]]
at_s = 150.0
kind = "app-crash"
model = "magpie-tts-multilingual"
"#;

const GPU0_RESET: &str = r#"
[faults]
[[faults.inject]]
at_s = 150.0
kind = "ecc-uncontained"
gpu = "gpu0"
"#;

fn down(r: &RunSummary) -> Vec<String> {
    r.faults.as_ref().unwrap().events[0].replicas_down.clone()
}

#[test]
fn a_crash_under_mig_stays_in_its_instance_but_takes_the_time_sliced_neighbour_along() {
    let mig = with_faults("mig", TTS_CRASH);
    let ts = with_faults("time-slicing", TTS_CRASH);
    assert_eq!(down(&mig), vec!["magpie-tts-multilingual@gpu0"]);
    assert_eq!(
        down(&ts),
        vec!["parakeet-1.1b@gpu0", "magpie-tts-multilingual@gpu0"]
    );
    // Under MIG the ASR never stops; time-sliced, it is down as long as the TTS.
    let avail = |r: &RunSummary, m: &str| {
        r.faults
            .as_ref()
            .unwrap()
            .availability
            .iter()
            .find(|a| a.model == m)
            .unwrap()
            .any_replica_up
    };
    assert_eq!(avail(&mig, "parakeet-1.1b"), 1.0);
    assert!(avail(&ts, "parakeet-1.1b") < 1.0);
    assert_eq!(
        avail(&ts, "parakeet-1.1b"),
        avail(&ts, "magpie-tts-multilingual")
    );
    // The time-sliced crash fails the neighbour's in-flight requests too: more are lost.
    let lost = |r: &RunSummary| r.faults.as_ref().unwrap().lost_to_faults;
    assert!(lost(&mig) > 0);
    assert!(lost(&ts) > lost(&mig), "{} vs {}", lost(&ts), lost(&mig));
}

#[test]
fn a_gpu_reset_takes_everything_on_the_card_in_every_mode() {
    for (config, expect) in [
        ("baseline", vec!["parakeet-1.1b@gpu0"]),
        (
            "time-slicing",
            vec!["parakeet-1.1b@gpu0", "magpie-tts-multilingual@gpu0"],
        ),
        (
            "mig",
            vec!["parakeet-1.1b@gpu0", "magpie-tts-multilingual@gpu0"],
        ),
    ] {
        let r = with_faults(config, GPU0_RESET);
        assert_eq!(down(&r), expect, "{config}");
        // The LLM on gpu1 never stops.
        let f = r.faults.as_ref().unwrap();
        let llm = f
            .availability
            .iter()
            .find(|a| a.model == "nemotron-nano-vl-8b")
            .unwrap();
        assert_eq!(llm.any_replica_up, 1.0);
        // Recovery: GPU reset (60 s) + pod restart (90 s), both defaults.
        let e = &f.events[0];
        assert_eq!(e.recovered_at_s, Some(e.at_s + 150.0));
    }
}

#[test]
fn without_faults_results_are_byte_identical() {
    // An empty [faults] table injects nothing: every result is the same as without it.
    let plain = run_experiment(&crate::seed_experiment("time-slicing-heavy"));
    let mut empty = with_faults("time-slicing", "[faults]\n");
    assert!(empty.faults.as_ref().unwrap().events.is_empty());
    empty.faults = None;
    empty.name = plain.name.clone();
    empty.experiment = plain.experiment.clone();
    assert_eq!(summary_json(&[empty]), summary_json(&[plain]));
}

#[test]
fn gateway_retries_move_in_flight_requests_to_a_replica_that_is_up() {
    // Two nodes, two replicas per stage: a TTS crash on node 0.
    let run = |retries: u32| {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "extends = [{:?}]\n[faults]\nretries = {retries}\n[[faults.inject]]\nat_s = 150.0\nkind = \"app-crash\"\nmodel = \"magpie-tts-multilingual\"\n",
            root()
                .join("experiments/scale-out.toml")
                .display()
                .to_string()
        );
        let path = dir.path().join("exp.toml");
        std::fs::write(&path, text).unwrap();
        run_experiment(&Experiment::load(&path, &Catalogue::builtin()).unwrap())
    };
    let none = run(0);
    let once = run(1);
    let (f0, f1) = (none.faults.unwrap(), once.faults.unwrap());
    assert!(f0.lost_to_faults > 0 && f0.retried == 0);
    assert_eq!(f1.lost_to_faults, 0);
    assert!(f1.retried > 0);
    // The other replica stays up, so nothing is refused and the model stays available.
    assert_eq!(f1.unavailable, 0);
    let tts = f1
        .availability
        .iter()
        .find(|a| a.model == "magpie-tts-multilingual")
        .unwrap();
    assert_eq!(tts.any_replica_up, 1.0);
    assert!(tts.replicas_up < 1.0);
}

#[test]
fn under_mps_even_a_contained_error_reaches_every_client() {
    let ecc = TTS_CRASH.replace("app-crash", "ecc-contained");
    let mps = with_faults("mps", &ecc);
    let ts = with_faults("time-slicing", &ecc);
    let mig = with_faults("mig", &ecc);
    assert_eq!(
        down(&mps),
        vec!["parakeet-1.1b@gpu0", "magpie-tts-multilingual@gpu0"]
    );
    // Separate contexts contain Xid 94 to the application that hit it.
    assert_eq!(down(&ts), vec!["magpie-tts-multilingual@gpu0"]);
    assert_eq!(down(&mig), vec!["magpie-tts-multilingual@gpu0"]);
    // An application crash under MPS, as under time-slicing, takes both.
    assert_eq!(down(&with_faults("mps", TTS_CRASH)).len(), 2);
}
