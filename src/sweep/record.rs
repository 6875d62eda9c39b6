//! What a sweep wrote: per-run records and the sweep's description, as `sweep.json`; the
//! per-run store that `--resume` reads; and merging shards back into one record.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::{Plan, PlotSpec};
use super::shard::Shard;
use crate::error::InputError;

/// Version of the `sweep.json` layout; bump on incompatible changes.
pub const SWEEP_SCHEMA_VERSION: u32 = 1;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Simulated; `summary` holds its results.
    Ok,
    /// Not simulated (its experiment is invalid, e.g. a MIG layout that does not fit);
    /// `error` says why.
    Failed,
}

/// One run of a sweep and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run index.
    pub run: usize,
    /// Point index.
    pub point: usize,
    /// Seed.
    pub seed: u64,
    /// Axis name -> value at this run's point, in axis order.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Stable hash of the run's resolved inputs (the key `--resume` looks runs up by).
    pub key: String,
    /// Outcome.
    pub status: Status,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's `RunSummary` as JSON, without its `experiment` echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

/// One axis as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisMeta {
    /// Column name.
    pub name: String,
    /// Value labels, in order.
    pub values: Vec<serde_json::Value>,
}

/// The sweep's description: enough to check that shards belong together and to plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepMeta {
    /// Sweep name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Base experiment, as written in the sweep file.
    pub base: String,
    /// Hash of the version, the merged base experiment, the axes and the seeds.
    pub fingerprint: String,
    /// Axes, outermost first.
    pub axes: Vec<AxisMeta>,
    /// Seeds of every point.
    pub seeds: Vec<u64>,
    /// Number of points.
    pub points: usize,
    /// Number of runs (points x seeds) in the whole sweep.
    pub runs: usize,
    /// Chart settings.
    #[serde(default)]
    pub plot: PlotSpec,
}

/// Which share of the runs a shard output holds (0-based index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// Layout version ([`SWEEP_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// `gpushare`.
    pub tool: String,
    /// Version of the tool that ran the sweep.
    pub version: String,
    /// The sweep.
    pub sweep: SweepMeta,
    /// Present in a shard's output only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardMeta>,
    /// Runs, by run index.
    pub runs: Vec<RunRecord>,
}

/// Hex SHA-256 of `parts`, each length-prefixed.
pub fn hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl SweepMeta {
    /// Describe `plan`.
    pub fn of(plan: &Plan) -> SweepMeta {
        let axes: Vec<AxisMeta> = plan
            .axes
            .iter()
            .map(|a| AxisMeta {
                name: a.name.clone(),
                values: a.values.iter().map(|v| v.label.clone()).collect(),
            })
            .collect();
        let sets: Vec<Vec<Vec<(String, serde_json::Value)>>> = plan
            .axes
            .iter()
            .map(|a| {
                a.values
                    .iter()
                    .map(|v| {
                        v.sets
                            .iter()
                            .map(|(k, x)| (k.to_string(), super::plan::to_json(x)))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let fingerprint = hash(&[
            env!("CARGO_PKG_VERSION").as_bytes(),
            super::plan::hash_text(&plan.base_value).as_bytes(),
            serde_json::to_string(&(&axes, &sets, &plan.seeds))
                .unwrap_or_default()
                .as_bytes(),
        ]);
        SweepMeta {
            name: plan.file.name.clone(),
            description: plan.file.description.clone(),
            base: plan.file.base.clone(),
            fingerprint,
            axes,
            seeds: plan.seeds.clone(),
            points: plan.points(),
            runs: plan.runs(),
            plot: plan.file.plot.clone(),
        }
    }
}

impl SweepRecord {
    /// A record of `runs` (sorted by run index) of the sweep `meta`.
    pub fn new(meta: SweepMeta, shard: Option<Shard>, mut runs: Vec<RunRecord>) -> SweepRecord {
        runs.sort_by_key(|r| r.run);
        SweepRecord {
            schema_version: SWEEP_SCHEMA_VERSION,
            tool: "gpushare".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sweep: meta,
            shard: shard.map(|s| ShardMeta {
                index: s.index,
                count: s.count,
            }),
            runs,
        }
    }

    /// `sweep.json` bytes.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("invariant: records serialise");
        s.push('\n');
        s
    }

    /// Read `DIR/sweep.json`.
    pub fn read(dir: &Path) -> Result<SweepRecord, InputError> {
        let path = dir.join("sweep.json");
        let text = crate::config::read(&path)?;
        let rec: SweepRecord = serde_json::from_str(&text).map_err(|e| InputError::Parse {
            path: path.clone(),
            message: format!("not a gpushare sweep.json: {e}"),
        })?;
        if rec.schema_version != SWEEP_SCHEMA_VERSION {
            return Err(InputError::invalid(
                &path,
                "schema_version",
                rec.schema_version,
                &format!("{SWEEP_SCHEMA_VERSION} (written by another version of gpushare)"),
            ));
        }
        Ok(rec)
    }

    /// Combine shard outputs into the record one machine would have written: every shard of
    /// the same sweep (same fingerprint and shard count) exactly once, covering every run.
    pub fn merge(dirs: &[PathBuf]) -> Result<SweepRecord, InputError> {
        let Some(first_dir) = dirs.first() else {
            return Err(InputError::invalid(
                Path::new("merge"),
                "DIR",
                "none",
                "at least one shard output folder",
            ));
        };
        let first = Self::read(first_dir)?;
        let mut seen: BTreeMap<usize, PathBuf> = BTreeMap::new();
        let mut runs = Vec::new();
        let count = first.shard.map_or(1, |s| s.count);
        for d in dirs {
            let rec = Self::read(d)?;
            let path = d.join("sweep.json");
            if rec.sweep != first.sweep || rec.version != first.version {
                return Err(InputError::invalid(
                    &path,
                    "sweep",
                    format!("\"{}\" ({})", rec.sweep.name, short(&rec.sweep.fingerprint)),
                    &format!(
                        "a shard of the same sweep as {} (\"{}\", {}): same sweep file, base experiment and gpushare version",
                        first_dir.join("sweep.json").display(),
                        first.sweep.name,
                        short(&first.sweep.fingerprint)
                    ),
                ));
            }
            let (index, c) = rec.shard.map_or((0, 1), |s| (s.index, s.count));
            if c != count {
                return Err(InputError::invalid(
                    &path,
                    "shard.count",
                    c,
                    &format!("{count}, as in {}", first_dir.display()),
                ));
            }
            if let Some(other) = seen.insert(index, d.clone()) {
                return Err(InputError::invalid(
                    &path,
                    "shard.index",
                    format!("{} (1-based)", index + 1),
                    &format!("a shard not given twice (also {})", other.display()),
                ));
            }
            runs.extend(rec.runs);
        }
        if seen.len() != count {
            let missing: Vec<String> = (0..count)
                .filter(|i| !seen.contains_key(i))
                .map(|i| format!("{}/{count}", i + 1))
                .collect();
            return Err(InputError::invalid(
                &first_dir.join("sweep.json"),
                "shard",
                format!("{} of {count} shards given", seen.len()),
                &format!("every shard; missing: {}", missing.join(", ")),
            ));
        }
        runs.sort_by_key(|r| r.run);
        let complete =
            runs.len() == first.sweep.runs && runs.iter().enumerate().all(|(i, r)| r.run == i);
        if !complete {
            return Err(InputError::invalid(
                &first_dir.join("sweep.json"),
                "runs",
                format!("{} runs", runs.len()),
                &format!(
                    "all {} runs of the sweep, each once (was a shard interrupted? finish it with --resume)",
                    first.sweep.runs
                ),
            ));
        }
        Ok(SweepRecord::new(first.sweep, None, runs))
    }
}

/// The per-run store of an unfinished sweep (`runs.jsonl`): one JSON record per line,
/// appended as runs finish, synced to disk every few runs. Removed once the sweep's outputs
/// are written.
pub struct Store {
    path: PathBuf,
    file: std::fs::File,
    unsynced: usize,
}

/// Lines appended between syncs to disk.
const SYNC_EVERY: usize = 16;

impl Store {
    /// File name of the store in an output folder.
    pub const FILE: &'static str = "runs.jsonl";

    /// Open the store in `dir`: truncated, or kept for appending with `resume`.
    pub fn open(dir: &Path, resume: bool) -> Result<Store, InputError> {
        let path = dir.join(Self::FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| InputError::write(&path, e))?;
        if !resume {
            file.set_len(0).map_err(|e| InputError::write(&path, e))?;
        }
        Ok(Store {
            path,
            file,
            unsynced: 0,
        })
    }

    /// Append one record (one `write` call, so an interrupted run leaves at most one partial
    /// line, which [`completed`] skips).
    pub fn append(&mut self, r: &RunRecord) -> Result<(), InputError> {
        let mut line = serde_json::to_string(r).expect("invariant: records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| InputError::write(&self.path, e))?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flush appended records to disk.
    pub fn sync(&mut self) -> Result<(), InputError> {
        self.unsynced = 0;
        self.file
            .sync_data()
            .map_err(|e| InputError::write(&self.path, e))
    }

    /// Remove the store (its records are in `sweep.json` now).
    pub fn remove(self) -> Result<(), InputError> {
        drop(self.file);
        std::fs::remove_file(&self.path).map_err(|e| InputError::write(&self.path, e))
    }
}

/// Runs already completed in `dir` (from its `sweep.json` and its store), by key; unreadable
/// lines (an interrupted write) are skipped.
pub fn completed(dir: &Path) -> BTreeMap<String, RunRecord> {
    let mut out = BTreeMap::new();
    if let Ok(rec) = SweepRecord::read(dir) {
        for r in rec.runs {
            out.insert(r.key.clone(), r);
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(Store::FILE)) {
        for line in text.lines() {
            if let Ok(r) = serde_json::from_str::<RunRecord>(line) {
                out.insert(r.key.clone(), r);
            }
        }
    }
    out
}

/// The first 12 characters of a fingerprint, as messages show it (all of it when shorter: a
/// shard's record may have been edited or cut).
fn short(fingerprint: &str) -> &str {
    fingerprint
        .char_indices()
        .nth(12)
        .map_or(fingerprint, |(i, _)| &fingerprint[..i])
}
