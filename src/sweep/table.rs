//! `runs.csv` and `points.csv`: a sweep's records flattened into columns.
//!
//! Columns are generic: each run's summary (JSON) is flattened, nested keys joined with `.`
//! and array entries written `[i]` (`latency_ms.request.p95`, `partitions[1].busy_fraction`),
//! so a metric added to `RunSummary` appears without changes here. The column order follows
//! the summary's field order; the set is the union over the sweep's successful runs (arrays
//! as long as the longest), merged in run order, so it is the same on every machine.

use super::record::{RunRecord, Status, SweepRecord};
use super::stats::{MeanCi, mean_ci95};

/// The shape shared by all summaries: an ordered tree of keys.
#[derive(Debug, Default)]
enum Shape {
    #[default]
    Leaf,
    Object(Vec<(String, Shape)>),
    Array(Vec<Shape>),
}

impl Shape {
    fn absorb(&mut self, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if !matches!(self, Shape::Object(_)) {
                    *self = Shape::Object(Vec::new());
                }
                let Shape::Object(children) = self else {
                    unreachable!()
                };
                for (k, x) in m {
                    match children.iter_mut().find(|(n, _)| n == k) {
                        Some((_, s)) => s.absorb(x),
                        None => {
                            let mut s = Shape::Leaf;
                            s.absorb(x);
                            children.push((k.clone(), s));
                        }
                    }
                }
            }
            serde_json::Value::Array(a) => {
                if !matches!(self, Shape::Array(_)) {
                    *self = Shape::Array(Vec::new());
                }
                let Shape::Array(items) = self else {
                    unreachable!()
                };
                for (i, x) in a.iter().enumerate() {
                    if i == items.len() {
                        items.push(Shape::Leaf);
                    }
                    items[i].absorb(x);
                }
            }
            // A null says nothing about the shape (it may be an object elsewhere).
            _ => {}
        }
    }

    fn columns(&self, prefix: &str, out: &mut Vec<String>) {
        match self {
            Shape::Leaf => out.push(prefix.to_string()),
            Shape::Object(children) => {
                for (k, s) in children {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    s.columns(&p, out);
                }
            }
            Shape::Array(items) => {
                for (i, s) in items.iter().enumerate() {
                    s.columns(&format!("{prefix}[{i}]"), out);
                }
            }
        }
    }
}

/// Every leaf of `v`, as (column, value).
fn leaves<'a>(
    v: &'a serde_json::Value,
    prefix: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{prefix}[{i}]"), out);
            }
        }
        _ => out.push((prefix, v)),
    }
}

/// A value as a CSV cell: strings bare, numbers as JSON writes them, null empty, arrays and
/// tables as compact JSON.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The parameter columns: each axis, then `seed`.
pub fn param_columns(rec: &SweepRecord) -> Vec<String> {
    let mut cols: Vec<String> = rec.sweep.axes.iter().map(|a| a.name.clone()).collect();
    cols.push("seed".into());
    cols
}

/// The metric columns: flattened summary keys of successful runs, less any that is also a
/// parameter column (`seed`, or a swept top-level field such as `config`).
pub fn metric_columns(rec: &SweepRecord) -> Vec<String> {
    let mut shape = Shape::Leaf;
    for r in &rec.runs {
        if let Some(s) = &r.summary {
            shape.absorb(s);
        }
    }
    let mut cols = Vec::new();
    if matches!(shape, Shape::Object(_)) {
        shape.columns("", &mut cols);
    }
    let params = param_columns(rec);
    cols.retain(|c| !params.contains(c));
    cols
}

/// A run's metric values by column.
fn metric_cells(r: &RunRecord) -> std::collections::HashMap<String, &serde_json::Value> {
    let mut out = Vec::new();
    if let Some(s) = &r.summary {
        leaves(s, String::new(), &mut out);
    }
    out.into_iter().collect()
}

fn write_csv(rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.write_record(&row).expect("invariant: in-memory write");
    }
    String::from_utf8(w.into_inner().expect("invariant: in-memory flush")).expect("invariant: utf8")
}

/// `runs.csv`: one row per run: `run`, `point`, `status`, `error`, the parameter columns,
/// then the metric columns.
pub fn runs_csv(rec: &SweepRecord) -> String {
    let params = param_columns(rec);
    let metrics = metric_columns(rec);
    let mut header: Vec<String> = ["run", "point", "status", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(params.iter().cloned());
    header.extend(metrics.iter().cloned());
    let mut rows = vec![header];
    for r in &rec.runs {
        let mut row = vec![
            r.run.to_string(),
            r.point.to_string(),
            match r.status {
                Status::Ok => "ok".into(),
                Status::Failed => "failed".into(),
            },
            r.error.clone().unwrap_or_default(),
        ];
        for p in &params {
            if p == "seed" {
                row.push(r.seed.to_string());
            } else {
                row.push(r.params.get(p).map(cell).unwrap_or_default());
            }
        }
        let cells = metric_cells(r);
        for m in &metrics {
            row.push(cells.get(m).map(|v| cell(v)).unwrap_or_default());
        }
        rows.push(row);
    }
    write_csv(rows)
}

/// Aggregates of one point: its parameters, run counts, and per numeric metric the mean and
/// 95% confidence half-width over the seeds where the metric has a value.
#[derive(Clone, Debug, PartialEq)]
pub struct PointRow {
    /// Point index.
    pub point: usize,
    /// Axis name -> value.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Runs of the point (one per seed).
    pub runs: usize,
    /// Runs that ended `ok`.
    pub ok: usize,
    /// (metric column, mean, half-width) for the numeric metrics.
    pub stats: Vec<(String, Option<MeanCi>)>,
}

/// The numeric metric columns (a number in at least one successful run).
pub fn numeric_columns(rec: &SweepRecord) -> Vec<String> {
    let metrics = metric_columns(rec);
    let cells: Vec<_> = rec.runs.iter().map(metric_cells).collect();
    metrics
        .into_iter()
        .filter(|m| {
            cells
                .iter()
                .any(|c| c.get(m).is_some_and(|v| v.is_number()))
        })
        .collect()
}

/// One [`PointRow`] per point present in `rec`, in point order.
pub fn points(rec: &SweepRecord) -> Vec<PointRow> {
    let numeric = numeric_columns(rec);
    let mut out: Vec<PointRow> = Vec::new();
    let mut i = 0;
    while i < rec.runs.len() {
        let point = rec.runs[i].point;
        let group: Vec<&RunRecord> = rec.runs[i..]
            .iter()
            .take_while(|r| r.point == point)
            .collect();
        i += group.len();
        let cells: Vec<_> = group.iter().map(|r| metric_cells(r)).collect();
        let stats = numeric
            .iter()
            .map(|m| {
                let xs: Vec<f64> = cells
                    .iter()
                    .filter_map(|c| c.get(m).and_then(|v| v.as_f64()))
                    .collect();
                (m.clone(), mean_ci95(&xs))
            })
            .collect();
        out.push(PointRow {
            point,
            params: group[0].params.clone(),
            runs: group.len(),
            ok: group.iter().filter(|r| r.status == Status::Ok).count(),
            stats,
        });
    }
    out
}

/// `points.csv`: one row per point: `point`, the axis columns, `runs`, `ok`, `failed`, then
/// `mean(<metric>)` and `ci95(<metric>)` (the half-width; empty with fewer than two values)
/// for every numeric metric column.
pub fn points_csv(rec: &SweepRecord) -> String {
    let axes: Vec<String> = rec.sweep.axes.iter().map(|a| a.name.clone()).collect();
    let numeric = numeric_columns(rec);
    let mut header = vec!["point".to_string()];
    header.extend(axes.iter().cloned());
    header.extend(["runs", "ok", "failed"].iter().map(|s| s.to_string()));
    for m in &numeric {
        header.push(format!("mean({m})"));
        header.push(format!("ci95({m})"));
    }
    let mut rows = vec![header];
    for p in points(rec) {
        let mut row = vec![p.point.to_string()];
        for a in &axes {
            row.push(p.params.get(a).map(cell).unwrap_or_default());
        }
        row.push(p.runs.to_string());
        row.push(p.ok.to_string());
        row.push((p.runs - p.ok).to_string());
        for (_, s) in &p.stats {
            match s {
                Some((m, h)) => {
                    row.push(m.to_string());
                    row.push(h.map(|h| h.to_string()).unwrap_or_default());
                }
                None => {
                    row.push(String::new());
                    row.push(String::new());
                }
            }
        }
        rows.push(row);
    }
    write_csv(rows)
}

/// A short text overview for the terminal: one line per point with its parameters, runs
/// done, and throughput per GPU (mean ± 95% CI half-width) where measured.
pub fn overview(rec: &SweepRecord) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let failed = rec
        .runs
        .iter()
        .filter(|r| r.status == Status::Failed)
        .count();
    let _ = writeln!(
        s,
        "sweep {}: {} runs ({} failed) of {} points x {} seeds{}",
        rec.sweep.name,
        rec.runs.len(),
        failed,
        rec.sweep.points,
        rec.sweep.seeds.len(),
        rec.shard.map_or(String::new(), |sh| format!(
            ", shard {}/{}",
            sh.index + 1,
            sh.count
        ))
    );
    let rows = points(rec);
    let stat = |p: &PointRow, m: &str| {
        p.stats
            .iter()
            .find(|(c, _)| c == m)
            .and_then(|(_, s)| *s)
            .map_or("-".to_string(), |(mean, h)| match h {
                Some(h) => format!("{mean:.3} ± {h:.3}"),
                None => format!("{mean:.3}"),
            })
    };
    let _ = writeln!(
        s,
        "{:>5}  {:>7}  {:>17}  {:>15}  params",
        "point", "ok/runs", "req/s/gpu", "success"
    );
    for p in rows.iter().take(40) {
        let params: Vec<String> = p
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect();
        let _ = writeln!(
            s,
            "{:>5}  {:>7}  {:>17}  {:>15}  {}",
            p.point,
            format!("{}/{}", p.ok, p.runs),
            stat(p, "throughput_per_gpu_rps"),
            stat(p, "success_rate"),
            params.join(" ")
        );
    }
    if rows.len() > 40 {
        let _ = writeln!(s, "... {} more points in points.csv", rows.len() - 40);
    }
    for r in rec
        .runs
        .iter()
        .filter(|r| r.status == Status::Failed)
        .take(3)
    {
        let _ = writeln!(
            s,
            "run {} failed: {}",
            r.run,
            r.error.as_deref().unwrap_or_default()
        );
    }
    s
}
