//! Reading a results folder into what the charts draw: run summaries, latency quantiles and
//! busy timelines (from `run`/`study`), or a sweep's points (from `sweep`/`merge`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::PlotError;
use crate::error::InputError;
use crate::metrics::STAGES;
use crate::sweep::SweepRecord;
use crate::sweep::table::{PointRow, cell, points};

/// Percentiles of one stage, ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageStats {
    /// Samples.
    pub count: u64,
    /// 50th percentile.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One run of a study, as its charts need it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// Run name.
    pub name: String,
    /// Configuration label (falls back to the name).
    pub config: String,
    /// Load label (falls back to `-`).
    pub load: String,
    /// Requests per second per GPU.
    pub throughput_per_gpu_rps: f64,
    /// Per stage, when it has samples.
    pub stages: Vec<(&'static str, Option<StageStats>)>,
    /// Partitions as legends name them: `gpu0 3g.40gb: model` (`gpu1: model` when whole).
    pub partitions: Vec<String>,
    /// Faults: `(kind, at s, recovered at s)` (`None`: still down at the end).
    pub faults: Vec<(String, f64, Option<f64>)>,
}

/// One partition's busy series: `(t start s, t end s, busy, switching)` fractions.
pub type Series = Vec<(f64, f64, f64, f64)>;

/// Stage -> `(probability, latency ms)` of one run.
pub type Quantiles = BTreeMap<String, Vec<(f64, f64)>>;

/// A run or study results folder.
#[derive(Clone, Debug, Default)]
pub struct StudyData {
    /// Runs, in file order.
    pub runs: Vec<RunInfo>,
    /// Run -> stage -> `(probability, latency ms)`, when `latency_quantiles.csv` is there.
    pub quantiles: Option<BTreeMap<String, Quantiles>>,
    /// Run -> partitions `(label, series)` in order, when `timeline.csv` is there.
    pub timelines: Option<BTreeMap<String, Vec<(String, Series)>>>,
    /// Run -> US dollars per GPU-hour and the prices' source, when `prices.json` is there
    /// (a study with `[prices]`).
    pub prices: Option<Prices>,
}

/// Run -> US dollars per GPU-hour, and where the prices come from.
pub type Prices = (BTreeMap<String, f64>, String);

fn parse_err(path: &Path, message: impl ToString) -> PlotError {
    PlotError::Input(InputError::Parse {
        path: path.to_path_buf(),
        message: message.to_string(),
    })
}

/// Read `summary.json` and, when present, `latency_quantiles.csv` and `timeline.csv`.
/// Read `prices.json` of a study folder, if there is one.
fn load_prices(dir: &Path) -> Result<Option<Prices>, PlotError> {
    let path = dir.join(crate::results::PRICES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = crate::config::read(&path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| parse_err(&path, format!("not JSON: {e}")))?;
    let source = json
        .get("source")
        .and_then(|v| v.as_str())
        .ok_or_else(|| parse_err(&path, "field `source` missing"))?
        .to_string();
    let runs = json
        .get("usd_per_gpu_hour")
        .and_then(|v| v.as_object())
        .ok_or_else(|| parse_err(&path, "field `usd_per_gpu_hour` missing"))?;
    let mut out = BTreeMap::new();
    for (run, v) in runs {
        let usd = v
            .as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| {
                parse_err(
                    &path,
                    format!("`usd_per_gpu_hour.{run}` must be a positive number"),
                )
            })?;
        out.insert(run.clone(), usd);
    }
    Ok(Some((out, source)))
}

/// Read a `run`/`study` results folder: `summary.json`, and `latency_quantiles.csv`,
/// `timeline.csv` and `prices.json` when there.
pub fn load_study(dir: &Path) -> Result<StudyData, PlotError> {
    let path = dir.join("summary.json");
    let text = crate::config::read(&path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| parse_err(&path, format!("not JSON: {e}")))?;
    let runs = json
        .get("runs")
        .and_then(|r| r.as_array())
        .ok_or_else(|| parse_err(&path, "no `runs` array (not a gpushare summary.json)"))?;
    let mut out = StudyData {
        prices: load_prices(dir)?,
        ..StudyData::default()
    };
    for (i, r) in runs.iter().enumerate() {
        let field = |k: &str| format!("runs[{i}].{k}");
        let name = r
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| parse_err(&path, format!("field `{}` missing", field("name"))))?;
        let text_or = |k: &str, default: &str| {
            r.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        let thr = r
            .get("throughput_per_gpu_rps")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| {
                parse_err(
                    &path,
                    format!("field `{}` missing", field("throughput_per_gpu_rps")),
                )
            })?;
        let stages = STAGES
            .iter()
            .map(|s| {
                let l = r.get("latency_ms").and_then(|l| l.get(s));
                let num = |k: &str| l.and_then(|l| l.get(k)).and_then(|v| v.as_f64());
                let count = num("count").unwrap_or(0.0) as u64;
                let stats = match (num("p50"), num("p95"), num("p99")) {
                    (Some(p50), Some(p95), Some(p99)) if count > 0 => Some(StageStats {
                        count,
                        p50,
                        p95,
                        p99,
                    }),
                    _ => None,
                };
                (*s, stats)
            })
            .collect();
        let partitions = r
            .get("partitions")
            .and_then(|p| p.as_array())
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let get = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
                        let slice = get("partition")
                            .split_once("MIG ")
                            .map(|(_, s)| format!(" {s}"))
                            .unwrap_or_default();
                        let models: Vec<&str> = p
                            .get("models")
                            .and_then(|m| m.as_array())
                            .map(|m| m.iter().filter_map(|x| x.as_str()).collect())
                            .unwrap_or_default();
                        format!("{}{slice}: {}", get("gpu"), models.join(" + "))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let faults = r
            .get("faults")
            .and_then(|f| f.get("events"))
            .and_then(|e| e.as_array())
            .map(|es| {
                es.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("kind")?.as_str()?.to_string(),
                            e.get("at_s")?.as_f64()?,
                            e.get("recovered_at_s").and_then(|v| v.as_f64()),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.runs.push(RunInfo {
            partitions,
            faults,
            name: name.to_string(),
            config: text_or("config", name),
            load: text_or("load", "-"),
            throughput_per_gpu_rps: thr,
            stages,
        });
    }
    let qpath = dir.join("latency_quantiles.csv");
    if qpath.is_file() {
        let mut q: BTreeMap<String, Quantiles> = BTreeMap::new();
        for row in read_csv(&qpath, &["run", "stage", "quantile", "latency_ms"])? {
            let p = num_cell(&qpath, &row[2])?;
            let ms = num_cell(&qpath, &row[3])?;
            q.entry(row[0].clone())
                .or_default()
                .entry(row[1].clone())
                .or_default()
                .push((p, ms));
        }
        out.quantiles = Some(q);
    }
    let tpath = dir.join("timeline.csv");
    if tpath.is_file() {
        let cols = [
            "run",
            "partition",
            "gpu",
            "label",
            "t_start_s",
            "t_end_s",
            "busy_fraction",
            "switching_fraction",
        ];
        let mut t: BTreeMap<String, Vec<(String, Series)>> = BTreeMap::new();
        for row in read_csv(&tpath, &cols)? {
            let idx: usize = row[1].parse().map_err(|_| {
                parse_err(&tpath, format!("partition `{}` is not an index", row[1]))
            })?;
            let parts = t.entry(row[0].clone()).or_default();
            while parts.len() <= idx {
                parts.push((String::new(), Vec::new()));
            }
            parts[idx].0 = format!("{} {}", row[2], row[3]);
            parts[idx].1.push((
                num_cell(&tpath, &row[4])?,
                num_cell(&tpath, &row[5])?,
                num_cell(&tpath, &row[6])?,
                num_cell(&tpath, &row[7])?,
            ));
        }
        out.timelines = Some(t);
    }
    Ok(out)
}

fn num_cell(path: &Path, s: &str) -> Result<f64, PlotError> {
    s.parse()
        .map_err(|_| parse_err(path, format!("`{s}` is not a number")))
}

fn read_csv(path: &Path, want: &[&str]) -> Result<Vec<Vec<String>>, PlotError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| parse_err(path, e))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| parse_err(path, e))?
        .iter()
        .map(String::from)
        .collect();
    if header != want {
        return Err(parse_err(
            path,
            format!("columns {header:?}, expected {want:?}"),
        ));
    }
    r.records()
        .map(|x| {
            x.map(|rec| rec.iter().map(String::from).collect())
                .map_err(|e| parse_err(path, e))
        })
        .collect()
}

/// A sweep results folder, reduced to curves.
#[derive(Clone, Debug)]
pub struct SweepData {
    /// The record.
    pub record: SweepRecord,
    /// Points with at least one successful run.
    pub points: Vec<PointRow>,
    /// The axis drawn on x, when one has numeric values.
    pub x: Option<String>,
    /// Metric columns to draw.
    pub metrics: Vec<String>,
}

/// Default sweep-curve metrics.
pub const DEFAULT_METRICS: [&str; 3] = [
    "throughput_per_gpu_rps",
    "latency_ms.request.p95",
    "success_rate",
];

/// Read `sweep.json`.
pub fn load_sweep(dir: &Path) -> Result<SweepData, PlotError> {
    let record = SweepRecord::read(dir)?;
    let spec = &record.sweep.plot;
    let x = match &spec.x {
        Some(x) => {
            let axis = record.sweep.axes.iter().find(|a| &a.name == x);
            match axis {
                Some(a) if a.values.iter().all(|v| v.is_number()) => Some(x.clone()),
                _ => {
                    let numeric: Vec<&str> = record
                        .sweep
                        .axes
                        .iter()
                        .filter(|a| a.values.iter().all(|v| v.is_number()))
                        .map(|a| a.name.as_str())
                        .collect();
                    return Err(PlotError::Input(InputError::invalid(
                        &dir.join("sweep.json"),
                        "sweep.plot.x",
                        format!("\"{x}\""),
                        &format!(
                            "a swept key with numeric values: {}",
                            if numeric.is_empty() {
                                "(none)".to_string()
                            } else {
                                numeric.join(", ")
                            }
                        ),
                    )));
                }
            }
        }
        None => record
            .sweep
            .axes
            .iter()
            .find(|a| a.values.iter().all(|v| v.is_number()) && a.values.len() > 1)
            .map(|a| a.name.clone()),
    };
    let metrics = if spec.metrics.is_empty() {
        DEFAULT_METRICS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.metrics.clone()
    };
    let points = points(&record).into_iter().filter(|p| p.ok > 0).collect();
    Ok(SweepData {
        record,
        points,
        x,
        metrics,
    })
}

impl SweepData {
    /// The label of the series a point belongs to: the values of every axis but x.
    pub fn group_of(&self, p: &PointRow) -> String {
        let parts: Vec<String> = p
            .params
            .iter()
            .filter(|(k, _)| Some(*k) != self.x.as_ref())
            .map(|(k, v)| {
                if k == "mode" {
                    cell(v)
                } else {
                    format!("{k}={}", cell(v))
                }
            })
            .collect();
        if parts.is_empty() {
            self.record.sweep.name.clone()
        } else {
            parts.join(", ")
        }
    }

    /// The first failed run's error, for messages.
    pub fn first_error(&self) -> Option<String> {
        self.record.runs.iter().find_map(|r| r.error.clone())
    }
}

/// What kind of results folder `dir` is.
pub enum Kind {
    /// `sweep.json`.
    Sweep,
    /// `summary.json`.
    Study,
}

/// Detect the kind of results in `dir`.
pub fn kind(dir: &Path) -> Result<Kind, PlotError> {
    if dir.join("sweep.json").is_file() {
        Ok(Kind::Sweep)
    } else if dir.join("summary.json").is_file() {
        Ok(Kind::Study)
    } else {
        Err(PlotError::NoData {
            dir: PathBuf::from(dir),
            chart: "results".into(),
            reason:
                "no summary.json (from run or study --out) or sweep.json (from sweep or merge) here"
                    .into(),
        })
    }
}
