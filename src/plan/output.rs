//! What a plan writes: the ranked table, `plan.json`, `candidates.csv`, the recommended
//! configuration as an experiment and as GPU Operator files.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::evaluate::Ctx;
use super::file::{PlanFile, SearchSpec, Targets};
use super::search::{Bound, Calibration, Evaluated, Outcome, placed_of};
use crate::error::InputError;
use crate::operator;

/// Version of the `plan.json` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole result, as `plan.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// Layout version.
    pub schema_version: u32,
    /// gpushare version.
    pub version: String,
    /// Plan name.
    pub name: String,
    /// Description.
    pub description: String,
    /// GPU (catalogue key).
    pub gpu: String,
    /// Price per GPU-hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_gpu_hour: Option<f64>,
    /// Models.
    pub models: Vec<String>,
    /// Seeds of every configuration.
    pub seeds: Vec<u64>,
    /// Targets.
    pub targets: Targets,
    /// Search settings.
    pub search: SearchSpec,
    /// Calibration.
    pub calibration: Calibration,
    /// Per-model bounds.
    pub bounds: Vec<Bound>,
    /// Shared-pool bounds computed.
    pub pool_bounds: Vec<super::search::PoolBound>,
    /// Fewest GPUs meeting the targets.
    pub min_gpus: Option<u32>,
    /// Whether fewer GPUs were ruled out.
    pub proven: bool,
    /// Why the search stopped.
    pub stopped: String,
    /// Simulations run.
    pub runs: usize,
    /// Index into `candidates` of the recommended configuration.
    pub recommended: Option<usize>,
    /// Every configuration evaluated, ranked (passing first, fewest GPUs, most headroom).
    pub candidates: Vec<Evaluated>,
}

impl PlanReport {
    /// The report of an outcome (candidates ranked).
    pub fn new(file: &PlanFile, ctx: &Ctx, outcome: Outcome) -> PlanReport {
        let mut candidates = outcome.evaluated;
        candidates.sort_by(super::search::rank);
        let recommended = candidates.first().filter(|c| c.pass).map(|_| 0);
        PlanReport {
            schema_version: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            name: file.name.clone(),
            description: file.description.clone(),
            gpu: ctx.plan.gpu.key.clone(),
            price_per_gpu_hour: file.price_per_gpu_hour,
            models: ctx.plan.models.clone(),
            seeds: ctx.plan.seeds.clone(),
            targets: file.targets.clone(),
            search: file.search.clone(),
            calibration: outcome.calibration,
            bounds: outcome.bounds,
            pool_bounds: outcome.pool_bounds,
            min_gpus: outcome.min_gpus,
            proven: outcome.proven,
            stopped: outcome.stopped,
            runs: outcome.runs,
            recommended,
            candidates,
        }
    }

    /// Cost per hour of `gpus` GPUs, if priced.
    pub fn cost(&self, gpus: u32) -> Option<f64> {
        self.price_per_gpu_hour.map(|p| p * f64::from(gpus))
    }
}

fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{:+.0}%", v * 100.0),
        Some(_) => "-".into(),
        None => String::new(),
    }
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "-".into()
    }
}

/// The ranked table (first `top` rows), the bounds, and the verdict, as text.
pub fn table(r: &PlanReport, top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan {}: {} on {}, demand up to {:.1} req/s (unloaded request {:.0} ms)",
        r.name,
        r.models.join(" -> "),
        r.gpu,
        r.calibration.demand_rps,
        r.calibration.unloaded_request_ms
    );
    let _ = writeln!(
        s,
        "\nfewest replicas per model with the other stages ample (per-model bounds):"
    );
    let mut models: Vec<&str> = Vec::new();
    for b in &r.bounds {
        if !models.contains(&b.model.as_str()) {
            models.push(&b.model);
        }
    }
    for m in models {
        let parts: Vec<String> = r
            .bounds
            .iter()
            .filter(|b| b.model == m)
            .map(|b| {
                format!(
                    "{} {}",
                    b.slot,
                    b.replicas.map_or("-".to_string(), |x| x.to_string())
                )
            })
            .collect();
        let _ = writeln!(s, "  {m:<26} {}", parts.join(", "));
    }
    let t = &r.targets;
    let mut head = format!(
        "\n{:>4} {:>5} {:>9} {:>4}",
        "rank", "gpus", "cost/h", "pass"
    );
    if t.request_p95_ms.is_some() {
        let _ = write!(
            head,
            " {:>16}",
            format!("req p95 ms <={}", ms(t.request_p95_ms.unwrap_or(0.0)))
        );
    }
    if t.ttft_p99_ms.is_some() {
        let _ = write!(
            head,
            " {:>17}",
            format!("ttft p99 ms <={}", ms(t.ttft_p99_ms.unwrap_or(0.0)))
        );
    }
    if let Some(sr) = t.success_rate {
        let _ = write!(head, " {:>16}", format!("success >={:.1}%", sr * 100.0));
    }
    let _ = write!(head, " {:>5}  configuration", "util");
    let _ = writeln!(s, "{head}");
    for (i, c) in r.candidates.iter().take(top).enumerate() {
        let cost = r
            .cost(c.gpus)
            .map_or("-".to_string(), |x| format!("{x:.2}"));
        let pass = match (c.pass, c.survives_gpu_failure, &c.error) {
            (_, _, Some(_)) => "err",
            (true, _, _) => "yes",
            (false, Some(false), _) => "n-1",
            _ => "no",
        };
        let mut line = format!("{:>4} {:>5} {:>9} {:>4}", i + 1, c.gpus, cost, pass);
        let m = c.measured.clone().unwrap_or_default();
        if t.request_p95_ms.is_some() {
            let _ = write!(
                line,
                " {:>16}",
                format!("{} ({})", ms(m.request_p95_ms), pct(c.headroom.request_p95))
            );
        }
        if t.ttft_p99_ms.is_some() {
            let _ = write!(
                line,
                " {:>17}",
                format!("{} ({})", ms(m.ttft_p99_ms), pct(c.headroom.ttft_p99))
            );
        }
        if t.success_rate.is_some() {
            let _ = write!(
                line,
                " {:>16}",
                format!(
                    "{:.1}% ({})",
                    m.success_rate * 100.0,
                    pct(c.headroom.success_rate)
                )
            );
        }
        let _ = write!(
            line,
            " {:>4.0}%  {}",
            m.utilization * 100.0,
            c.config.candidate.describe(&r.models)
        );
        if let Some(e) = &c.error {
            let _ = write!(line, " [{e}]");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    if r.candidates.len() > top {
        let _ = writeln!(
            s,
            "  ... {} more in candidates.csv",
            r.candidates.len() - top
        );
    }
    let _ = writeln!(
        s,
        "\n{} ({} simulations, {} configurations){}",
        r.stopped,
        r.runs,
        r.candidates.len(),
        if r.proven { "" } else { "; not proven minimal" }
    );
    if let Some(i) = r.recommended {
        let c = &r.candidates[i];
        let cost = r
            .cost(c.gpus)
            .map_or(String::new(), |x| format!(", {x:.2}/h"));
        let _ = writeln!(
            s,
            "recommended: {} GPUs{cost}: {}",
            c.gpus,
            c.config.candidate.describe(&r.models)
        );
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// `candidates.csv`: one row per configuration, ranked.
pub fn candidates_csv(r: &PlanReport) -> String {
    let mut s = String::from(
        "rank,gpus,cost_per_hour,pass,modes,request_p95_ms,ttft_p99_ms,success_rate,headroom_request_p95,headroom_ttft_p99,headroom_success_rate,utilization,throughput_rps,survives_gpu_failure,packing_exact,configuration,error\n",
    );
    for (i, c) in r.candidates.iter().enumerate() {
        let m = c.measured.as_ref();
        let row = [
            (i + 1).to_string(),
            c.gpus.to_string(),
            num(r.cost(c.gpus)),
            c.pass.to_string(),
            c.config.candidate.modes(),
            num(m.map(|m| m.request_p95_ms)),
            num(m.map(|m| m.ttft_p99_ms)),
            num(m.map(|m| m.success_rate)),
            num(c.headroom.request_p95),
            num(c.headroom.ttft_p99),
            num(c.headroom.success_rate),
            num(m.map(|m| m.utilization)),
            num(m.map(|m| m.throughput_rps)),
            c.survives_gpu_failure
                .map_or(String::new(), |b| b.to_string()),
            c.config.packing_exact.to_string(),
            csv_field(&c.config.candidate.describe(&r.models)),
            csv_field(c.error.as_deref().unwrap_or("")),
        ];
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// The files of a plan's results folder: `plan.json`, `candidates.csv`, and, when a
/// configuration meets the targets, `recommended/experiment.toml` with its GPU Operator files.
pub fn files(ctx: &Ctx, r: &PlanReport, out: &Path) -> Result<Vec<(String, Vec<u8>)>, InputError> {
    let json = serde_json::to_string_pretty(r).map_err(|e| InputError::Parse {
        path: out.join("plan.json"),
        message: e.to_string(),
    })?;
    let mut files = vec![
        ("plan.json".to_string(), json.into_bytes()),
        ("candidates.csv".to_string(), candidates_csv(r).into_bytes()),
    ];
    if let Some(i) = r.recommended {
        let c = &r.candidates[i];
        let placed = placed_of(ctx, &c.config)
            .map_err(|m| InputError::invalid(&ctx.plan.path, "", "", &m))?;
        let tweaks = super::search::tweaks_for(ctx, &c.config.candidate);
        let mut value = super::evaluate::value_of(ctx, &placed, &tweaks);
        if let Some(t) = value.as_table_mut() {
            t.insert(
                "config".into(),
                toml::Value::String(c.config.candidate.modes()),
            );
            t.insert(
                "seed".into(),
                toml::Value::Integer(ctx.plan.seeds[0] as i64),
            );
        }
        let dir = out.join("recommended");
        let value_for_export = value.clone();
        let text = operator::experiment_text(value, &ctx.plan.path, &dir)?;
        let head = format!(
            "# The configuration plan {} recommends: {} GPUs.\n# {}\n",
            r.name,
            c.gpus,
            c.config.candidate.describe(&r.models)
        );
        files.push((
            "recommended/experiment.toml".into(),
            format!("{head}{text}").into_bytes(),
        ));
        let raw: crate::experiment::RawExperiment =
            crate::config::from_value(value_for_export, &ctx.plan.path)?;
        for (name, text) in operator::export_raw(&raw, &ctx.plan.path, ctx.catalogue)? {
            files.push((format!("recommended/{name}"), text.into_bytes()));
        }
    }
    Ok(files)
}
