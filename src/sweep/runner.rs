//! Running a sweep: one run per rayon task, results stored as they finish, outputs written
//! once in run order (so the bytes do not depend on the thread count).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use super::plan::{Plan, RunSpec, hash_text};
use super::record::{RunRecord, Status, Store, SweepMeta, SweepRecord, completed, hash};
use super::shard::Shard;
use super::table::{points_csv, runs_csv};
use crate::config::write_atomic_all;
use crate::error::InputError;
use crate::experiment::resolve_value;
use crate::hardware::Catalogue;
use crate::report;

/// How to run a sweep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Reuse runs already completed in the output folder (looked up by input hash).
    pub resume: bool,
    /// Run only this shard's share.
    pub shard: Option<Shard>,
}

/// The runs of `plan` that `shard` owns (all runs without a shard), in run order.
pub fn share(plan: &Plan, shard: Option<Shard>) -> Vec<RunSpec> {
    (0..plan.runs())
        .filter(|&r| shard.is_none_or(|s| s.owns(r)))
        .map(|r| plan.run(r))
        .collect()
}

/// Run `plan` (or one shard of it) into `out`: `sweep.json`, `runs.csv` and `points.csv`,
/// written together at the end. While it runs, finished runs are appended to
/// `out/runs.jsonl`, which `resume` reads back. `on_done` is called after each run (from
/// worker threads). A run whose experiment is invalid is recorded as failed; the sweep goes
/// on. Returns the record and how many runs were reused from an earlier, interrupted sweep.
pub fn run(
    plan: &Plan,
    out: &Path,
    opts: Options,
    catalogue: &Catalogue,
    on_done: &(dyn Fn() + Sync),
) -> Result<(SweepRecord, usize), InputError> {
    std::fs::create_dir_all(out).map_err(|e| InputError::write(out, e))?;
    let cache = if opts.resume {
        completed(out)
    } else {
        BTreeMap::new()
    };
    let store = Mutex::new(Store::open(out, opts.resume)?);
    let store_error: Mutex<Option<InputError>> = Mutex::new(None);
    let specs = share(plan, opts.shard);
    let results: Vec<(RunRecord, bool)> = specs
        .par_iter()
        .map(|spec| {
            let (rec, fresh) = execute(plan, spec, catalogue, &cache);
            if fresh {
                let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = s.append(&rec) {
                    store_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
            on_done();
            (rec, fresh)
        })
        .collect();
    let reused = results.iter().filter(|(_, fresh)| !fresh).count();
    let records: Vec<RunRecord> = results.into_iter().map(|(r, _)| r).collect();
    let mut store = store.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = store_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    store.sync()?;
    let rec = SweepRecord::new(SweepMeta::of(plan), opts.shard, records);
    write_outputs(out, &rec)?;
    store.remove()?;
    Ok((rec, reused))
}

/// Write `sweep.json`, `runs.csv` and `points.csv` of `rec` into `dir`, all or none.
pub fn write_outputs(dir: &Path, rec: &SweepRecord) -> Result<(), InputError> {
    std::fs::create_dir_all(dir).map_err(|e| InputError::write(dir, e))?;
    write_atomic_all(&[
        (dir.join("sweep.json"), rec.to_json().into_bytes()),
        (dir.join("runs.csv"), runs_csv(rec).into_bytes()),
        (dir.join("points.csv"), points_csv(rec).into_bytes()),
    ])
}

/// Resolve and simulate one run; `true` if it was computed now (not found in `cache`).
fn execute(
    plan: &Plan,
    spec: &RunSpec,
    catalogue: &Catalogue,
    cache: &BTreeMap<String, RunRecord>,
) -> (RunRecord, bool) {
    let params: serde_json::Map<String, serde_json::Value> =
        plan.params(spec.point).into_iter().collect();
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let mut rec = RunRecord {
        run: spec.run,
        point: spec.point,
        seed: spec.seed,
        params,
        key: String::new(),
        status: Status::Failed,
        error: None,
        summary: None,
    };
    let inputs = match plan.inputs(spec) {
        Ok(i) => i,
        Err(e) => {
            rec.key = hash(&[version, b"unappliable", e.as_bytes()]);
            rec.error = Some(e);
            return (rec, true);
        }
    };
    let value_json = hash_text(&inputs.value);
    let patches_json = serde_json::to_string(&inputs.patches).unwrap_or_default();
    let exp = match resolve_value(inputs.value, &plan.base_path, catalogue, &inputs.patches) {
        Ok(exp) => exp,
        Err(e) => {
            rec.key = hash(&[version, value_json.as_bytes(), patches_json.as_bytes()]);
            rec.error = Some(relativize(plan, &e.to_string()));
            let fresh = !cache.contains_key(&rec.key);
            return (rec, fresh);
        }
    };
    rec.key = hash(&[
        version,
        value_json.as_bytes(),
        patches_json.as_bytes(),
        format!("{:?}", exp.models).as_bytes(),
    ]);
    if let Some(done) = cache.get(&rec.key) {
        rec.status = done.status;
        rec.error = done.error.clone();
        rec.summary = done.summary.clone();
        return (rec, false);
    }
    match std::panic::catch_unwind(|| report::run_experiment(&exp)) {
        Ok(summary) => {
            let mut v = serde_json::to_value(&summary).expect("invariant: summaries serialise");
            if let Some(m) = v.as_object_mut() {
                m.shift_remove("experiment");
            }
            rec.status = Status::Ok;
            rec.summary = Some(v);
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            rec.error = Some(format!("internal error (a bug, please report it): {msg}"));
        }
    }
    (rec, true)
}

/// Paths in a message made relative to the sweep file's folder, so records do not depend on
/// where the sweep was started from.
fn relativize(plan: &Plan, msg: &str) -> String {
    let mut out = msg.to_string();
    let mut prefixes = Vec::new();
    if let Ok(c) = std::fs::canonicalize(&plan.dir) {
        prefixes.push(format!("{}/", c.display()));
    }
    if !plan.dir.as_os_str().is_empty() {
        prefixes.push(format!("{}/", plan.dir.display()));
    }
    for p in prefixes {
        out = out.replace(&p, "");
    }
    out
}
