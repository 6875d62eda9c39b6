//! Request logs of a real service: a CSV of stage calls, or the per-request JSON Lines export
//! of NVIDIA AIPerf (`profile_export.jsonl`), read into one list of [`Call`]s.
//!
//! **CSV** (one row per call of a stage for a request; a request has several rows when it
//! passes through several stages, or a stage several times, e.g. one TTS call per sentence).
//! Rows are in the order calls reached their server (`queued_s` never decreases). Times are
//! seconds as decimals on one clock (any origin; Unix seconds let `fit` line the log up
//! with a recording), read exactly to the nanosecond.
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `request_id` | yes | groups the calls of one request |
//! | `stage` | yes | `asr`, `llm` or `tts` |
//! | `queued_s` | no (= `start_s`) | the call reached the server |
//! | `start_s` | yes | its execution (the batch it ran in) started on the GPU |
//! | `end_s` | yes | its result was ready |
//! | `first_token_s` | no | LLM: first token streamed |
//! | `batch_size` | no (= 1) | calls executed together in that batch |
//! | `input_size` | no | ASR: audio seconds of the call; LLM: prompt tokens; TTS: text tokens |
//! | `output_tokens` | no | LLM: tokens generated |
//!
//! **AIPerf** (`profile_export.jsonl`, one JSON object per request). Fields read:
//! `metadata.request_start_ns` and `metadata.request_end_ns` (Unix ns), `metadata.x_request_id`
//! (else `session_num`), `metadata.benchmark_phase` (only `profiling` records are used),
//! `metadata.was_cancelled`, `error` (records with an error are counted as failed, not fitted),
//! and under `metrics` (each `{"value": v, "unit": u}`, times in `ns`, `us`, `ms` or `s`):
//! `time_to_first_token`, `input_sequence_length`, `output_sequence_length` (else
//! `output_token_count`) and `inter_token_latency` (kept for comparison: the fit uses
//! `(request_end - first token) / (output tokens - 1)`, the simulator's TPOT). Every record is
//! one LLM call that starts when AIPerf sent it. Other fields are ignored. AIPerf writes
//! records as requests finish, so they are sorted by start time here.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::error::InputError;
use crate::trace::parse_seconds_ns;

/// A pipeline stage a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Speech recognition.
    Asr,
    /// The LLM.
    Llm,
    /// Speech synthesis.
    Tts,
}

impl Stage {
    /// As written in logs and profiles (`asr`, `llm`, `tts`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Asr => "asr",
            Stage::Llm => "llm",
            Stage::Tts => "tts",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        match s.trim().to_ascii_lowercase().as_str() {
            "asr" => Some(Stage::Asr),
            "llm" => Some(Stage::Llm),
            "tts" => Some(Stage::Tts),
            _ => None,
        }
    }
}

/// One call of a stage for a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Line of the log it came from.
    pub line: u64,
    /// Request it belongs to.
    pub request: String,
    /// Stage.
    pub stage: Stage,
    /// Reached the server, ns on the log's clock.
    pub queued_ns: i128,
    /// Execution started, ns.
    pub start_ns: i128,
    /// Result ready, ns.
    pub end_ns: i128,
    /// LLM: first token, ns.
    pub first_token_ns: Option<i128>,
    /// Calls executed together.
    pub batch: u32,
    /// ASR: audio seconds; LLM: prompt tokens; TTS: text tokens.
    pub input: Option<f64>,
    /// LLM: tokens generated.
    pub output_tokens: Option<u32>,
    /// The mean inter-token latency the log reports, ms (AIPerf), for comparison.
    pub reported_itl_ms: Option<f64>,
}

/// How a log was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// The CSV of stage calls.
    Csv,
    /// AIPerf's `profile_export.jsonl`.
    Aiperf,
}

/// A request log, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestLog {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: LogFormat,
    /// Calls in arrival order.
    pub calls: Vec<Call>,
    /// Requests the log says failed (AIPerf records with an error or cancelled).
    pub failed: u64,
    /// Records not used (AIPerf warm-up records).
    pub skipped: u64,
}

/// CSV columns: name, whether required.
pub const CSV_COLUMNS: [(&str, bool); 9] = [
    ("request_id", true),
    ("stage", true),
    ("queued_s", false),
    ("start_s", true),
    ("end_s", true),
    ("first_token_s", false),
    ("batch_size", false),
    ("input_size", false),
    ("output_tokens", false),
];

fn parse_error(path: &Path, message: String) -> InputError {
    InputError::Parse {
        path: path.to_path_buf(),
        message,
    }
}

impl RequestLog {
    /// Read a log; the format is AIPerf for `.jsonl`/`.ndjson` files or a first line starting
    /// with `{`, CSV otherwise.
    pub fn load(path: &Path) -> Result<RequestLog, InputError> {
        let text = crate::config::read(path)?;
        RequestLog::parse(&text, path)
    }

    /// Read a log from its text; `origin` names it in errors and picks the format.
    pub fn parse(text: &str, origin: &Path) -> Result<RequestLog, InputError> {
        let ext = origin.extension().and_then(|e| e.to_str()).unwrap_or("");
        let first = text.trim_start_matches('\u{feff}').trim_start();
        let jsonl = ext.eq_ignore_ascii_case("jsonl")
            || ext.eq_ignore_ascii_case("ndjson")
            || first.starts_with('{');
        let log = if jsonl {
            read_aiperf(text.as_bytes(), origin)?
        } else {
            read_csv(text.as_bytes(), origin)?
        };
        if log.calls.is_empty() {
            return Err(parse_error(
                origin,
                "the log has no usable calls (a header and no rows, or only failed or warm-up \
                 records)"
                    .into(),
            ));
        }
        Ok(log)
    }

    /// Calls of `stage`.
    pub fn stage(&self, stage: Stage) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(move |c| c.stage == stage)
    }

    /// Requests in order of arrival (their first call), each with its calls.
    pub fn requests(&self) -> Vec<(&str, Vec<&Call>)> {
        let mut by_id: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
        for c in &self.calls {
            by_id.entry(c.request.as_str()).or_default().push(c);
        }
        let mut list: Vec<(&str, Vec<&Call>)> = by_id.into_iter().collect();
        list.sort_by_key(|(_, calls)| {
            (
                calls.iter().map(|c| c.queued_ns).min().unwrap_or(0),
                calls.first().map_or(0, |c| c.line),
            )
        });
        list
    }

    /// First arrival and last end, ns on the log's clock.
    pub fn span_ns(&self) -> (i128, i128) {
        let first = self.calls.iter().map(|c| c.queued_ns).min().unwrap_or(0);
        let last = self.calls.iter().map(|c| c.end_ns).max().unwrap_or(0);
        (first, last)
    }
}

fn read_csv<R: std::io::Read>(input: R, path: &Path) -> Result<RequestLog, InputError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    let mut cols: Option<Vec<usize>> = None;
    let mut calls: Vec<Call> = Vec::new();
    let err = |line: u64, what: String| parse_error(path, format!("line {line}: {what}"));
    let expected = || {
        let req: Vec<&str> = CSV_COLUMNS.iter().filter(|c| c.1).map(|c| c.0).collect();
        let opt: Vec<&str> = CSV_COLUMNS.iter().filter(|c| !c.1).map(|c| c.0).collect();
        format!(
            "columns {} (required) and {} (optional)",
            req.join(", "),
            opt.join(", ")
        )
    };
    loop {
        let more = rdr
            .read_record(&mut record)
            .map_err(|e| parse_error(path, format!("cannot read: {e}")))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let Some(map) = &cols else {
            // The header: column k of the file is CSV_COLUMNS[map[k]].
            let mut map = Vec::new();
            for name in record.iter() {
                let name = name.trim_start_matches('\u{feff}').trim();
                let Some(k) = CSV_COLUMNS.iter().position(|c| c.0 == name) else {
                    return Err(err(
                        line,
                        format!("unknown column `{name}`: expected {}", expected()),
                    ));
                };
                if map.contains(&k) {
                    return Err(err(line, format!("column `{name}` appears twice")));
                }
                map.push(k);
            }
            if let Some((name, _)) = CSV_COLUMNS
                .iter()
                .enumerate()
                .find(|(k, c)| c.1 && !map.contains(k))
                .map(|(_, c)| *c)
            {
                return Err(err(
                    line,
                    format!("no `{name}` column: expected {}", expected()),
                ));
            }
            cols = Some(map);
            continue;
        };
        if record.len() != map.len() {
            return Err(err(
                line,
                format!(
                    "{} fields, expected {} as in the header",
                    record.len(),
                    map.len()
                ),
            ));
        }
        let mut get: [Option<&str>; 9] = [None; 9];
        for (field, &k) in record.iter().zip(map.iter()) {
            if !field.is_empty() {
                get[k] = Some(field);
            }
        }
        let call = csv_call(line, &get).map_err(|why| err(line, why))?;
        if let Some(prev) = calls.last()
            && call.queued_ns < prev.queued_ns
        {
            return Err(err(
                line,
                format!(
                    "queued at {} s, before line {}'s {} s: rows must be in the order calls \
                     arrived (queued_s, or start_s without it, never decreasing)",
                    show_s(call.queued_ns),
                    prev.line,
                    show_s(prev.queued_ns)
                ),
            ));
        }
        calls.push(call);
    }
    if cols.is_none() {
        return Err(parse_error(
            path,
            format!("the log is empty: expected a header with {}", expected()),
        ));
    }
    Ok(RequestLog {
        path: path.to_path_buf(),
        format: LogFormat::Csv,
        calls,
        failed: 0,
        skipped: 0,
    })
}

/// Seconds as a decimal string, for messages.
fn show_s(ns: i128) -> String {
    format!("{:.6}", ns as f64 / 1e9)
}

fn csv_call(line: u64, get: &[Option<&str>; 9]) -> Result<Call, String> {
    let need = |k: usize| get[k].ok_or_else(|| format!("column `{}` is empty", CSV_COLUMNS[k].0));
    let secs = |k: usize, text: &str| {
        parse_seconds_ns(text).map_err(|why| {
            format!(
                "column `{}` = `{text}`: {why} (expected seconds as a decimal)",
                CSV_COLUMNS[k].0
            )
        })
    };
    let request = need(0)?.to_string();
    let stage_text = need(1)?;
    let stage = Stage::parse(stage_text)
        .ok_or_else(|| format!("column `stage` = `{stage_text}`: expected asr, llm or tts"))?;
    let start_ns = secs(3, need(3)?)?;
    let end_ns = secs(4, need(4)?)?;
    let queued_ns = match get[2] {
        Some(t) => secs(2, t)?,
        None => start_ns,
    };
    let first_token_ns = get[5].map(|t| secs(5, t)).transpose()?;
    if !(queued_ns <= start_ns && start_ns <= end_ns) {
        return Err(format!(
            "times out of order: queued_s {} <= start_s {} <= end_s {} must hold",
            show_s(queued_ns),
            show_s(start_ns),
            show_s(end_ns)
        ));
    }
    if let Some(f) = first_token_ns
        && !(start_ns <= f && f <= end_ns)
    {
        return Err(format!(
            "column `first_token_s` = {}: expected a time between start_s and end_s",
            show_s(f)
        ));
    }
    let batch = match get[6] {
        None => 1,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "column `batch_size` = `{t}`: expected a whole number >= 1"
                ));
            }
        },
    };
    let input = match get[7] {
        None => None,
        Some(t) => match t.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Some(x),
            _ => {
                return Err(format!(
                    "column `input_size` = `{t}`: expected a number > 0"
                ));
            }
        },
    };
    let output_tokens = match get[8] {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(format!(
                    "column `output_tokens` = `{t}`: expected a whole number >= 1"
                ));
            }
        },
    };
    Ok(Call {
        line,
        request,
        stage,
        queued_ns,
        start_ns,
        end_ns,
        first_token_ns,
        batch,
        input,
        output_tokens,
        reported_itl_ms: None,
    })
}

/// One AIPerf metric: `{"value": v, "unit": u}`.
#[derive(serde::Deserialize)]
struct AiperfMetric {
    value: serde_json::Value,
    #[serde(default)]
    unit: Option<String>,
}

#[derive(serde::Deserialize)]
struct AiperfMetadata {
    #[serde(default)]
    session_num: Option<u64>,
    #[serde(default)]
    x_request_id: Option<String>,
    request_start_ns: Option<i128>,
    #[serde(default)]
    request_end_ns: Option<i128>,
    #[serde(default)]
    benchmark_phase: Option<String>,
    #[serde(default)]
    was_cancelled: Option<bool>,
}

#[derive(serde::Deserialize)]
struct AiperfRecord {
    metadata: AiperfMetadata,
    #[serde(default)]
    metrics: Option<BTreeMap<String, AiperfMetric>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// A time metric in milliseconds.
fn ms_of(name: &str, m: &AiperfMetric) -> Result<f64, String> {
    let v = m
        .value
        .as_f64()
        .ok_or_else(|| format!("metrics.{name}.value = {}: expected a number", m.value))?;
    let scale = match m.unit.as_deref().unwrap_or("ms") {
        "ns" => 1e-6,
        "us" => 1e-3,
        "ms" => 1.0,
        "s" | "sec" => 1e3,
        other => {
            return Err(format!(
                "metrics.{name}.unit = \"{other}\": expected ns, us, ms or s"
            ));
        }
    };
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("metrics.{name}.value = {v}: expected a time >= 0"));
    }
    Ok(v * scale)
}

/// A token count metric.
fn tokens_of(name: &str, m: &AiperfMetric) -> Result<u32, String> {
    match m.value.as_f64() {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => Ok(v as u32),
        _ => Err(format!(
            "metrics.{name}.value = {}: expected a whole number of tokens",
            m.value
        )),
    }
}

fn read_aiperf(input: &[u8], path: &Path) -> Result<RequestLog, InputError> {
    let err = |line: u64, what: String| parse_error(path, format!("line {line}: {what}"));
    let mut calls = Vec::new();
    let (mut failed, mut skipped) = (0, 0);
    for (i, text) in input.lines().enumerate() {
        let line = i as u64 + 1;
        let text = text.map_err(|e| InputError::read(path, e))?;
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let r: AiperfRecord = serde_json::from_str(text).map_err(|e| {
            if e.is_eof() {
                err(
                    line,
                    format!("the record is cut short ({e}): the export was not finished"),
                )
            } else {
                err(
                    line,
                    format!("not an AIPerf per-request record (profile_export.jsonl): {e}"),
                )
            }
        })?;
        let m = &r.metadata;
        if m.benchmark_phase
            .as_deref()
            .is_some_and(|p| p != "profiling")
        {
            skipped += 1;
            continue;
        }
        if r.error.as_ref().is_some_and(|e| !e.is_null()) || m.was_cancelled == Some(true) {
            failed += 1;
            continue;
        }
        let start = m
            .request_start_ns
            .ok_or_else(|| err(line, "no `metadata.request_start_ns`".into()))?;
        let end = m
            .request_end_ns
            .ok_or_else(|| err(line, "no `metadata.request_end_ns`".into()))?;
        if end < start {
            return Err(err(
                line,
                format!("request_end_ns {end} is before request_start_ns {start}"),
            ));
        }
        let metrics = r.metrics.unwrap_or_default();
        let metric = |names: &[&'static str]| -> Option<(&'static str, &AiperfMetric)> {
            names.iter().find_map(|n| metrics.get(*n).map(|m| (*n, m)))
        };
        let ttft = metric(&["time_to_first_token"])
            .map(|(n, m)| ms_of(n, m))
            .transpose()
            .map_err(|why| err(line, why))?;
        let first_token_ns = ttft.map(|ms| start + (ms * 1e6).round() as i128);
        if let Some(f) = first_token_ns
            && f > end
        {
            return Err(err(
                line,
                "time_to_first_token is longer than the request (request_end_ns - \
                 request_start_ns)"
                    .into(),
            ));
        }
        let isl = metric(&["input_sequence_length"])
            .map(|(n, m)| tokens_of(n, m))
            .transpose()
            .map_err(|why| err(line, why))?;
        let osl = metric(&["output_sequence_length", "output_token_count"])
            .map(|(n, m)| tokens_of(n, m))
            .transpose()
            .map_err(|why| err(line, why))?;
        let itl = metric(&["inter_token_latency"])
            .map(|(n, m)| ms_of(n, m))
            .transpose()
            .map_err(|why| err(line, why))?;
        let request = m
            .x_request_id
            .clone()
            .or_else(|| m.session_num.map(|n| n.to_string()))
            .unwrap_or_else(|| format!("line-{line}"));
        calls.push(Call {
            line,
            request,
            stage: Stage::Llm,
            queued_ns: start,
            start_ns: start,
            end_ns: end,
            first_token_ns,
            batch: 1,
            input: isl.filter(|&n| n > 0).map(f64::from),
            output_tokens: osl.filter(|&n| n > 0),
            reported_itl_ms: itl,
        });
    }
    calls.sort_by_key(|c| (c.queued_ns, c.line));
    Ok(RequestLog {
        path: path.to_path_buf(),
        format: LogFormat::Aiperf,
        calls,
        failed,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<RequestLog, String> {
        RequestLog::parse(text, Path::new("log.csv")).map_err(|e| e.to_string())
    }

    #[test]
    fn csv_rows_become_calls() {
        let log = csv(
            "request_id,stage,queued_s,start_s,end_s,batch_size,input_size\n\
             r1,asr,10.0,10.001,10.006,2,0.128\n\
             r2,asr,10.0005,10.001,10.006,2,0.128\n\
             r1,tts,10.5,10.5,10.62,,12\n",
        )
        .unwrap();
        assert_eq!(log.calls.len(), 3);
        let c = &log.calls[0];
        assert_eq!((c.stage, c.batch), (Stage::Asr, 2));
        assert_eq!(
            (c.queued_ns, c.start_ns, c.end_ns),
            (10_000_000_000, 10_001_000_000, 10_006_000_000)
        );
        assert_eq!(log.calls[2].batch, 1);
        assert_eq!(log.calls[2].input, Some(12.0));
        let reqs = log.requests();
        assert_eq!(reqs[0].0, "r1");
        assert_eq!(reqs[0].1.len(), 2);
    }

    #[test]
    fn missing_columns_and_unordered_rows_name_the_line() {
        let e = csv("request_id,stage,start_s\nr1,asr,1\n").unwrap_err();
        assert!(e.contains("log.csv: line 1: no `end_s` column"), "{e}");
        let e = csv("request_id,stage,start,end_s\n").unwrap_err();
        assert!(e.contains("unknown column `start`"), "{e}");
        let e = csv("request_id,stage,start_s,end_s\nr1,llm,2,3\nr2,llm,1,4\n").unwrap_err();
        assert!(
            e.contains("log.csv: line 3: queued at 1.000000 s, before line 2's"),
            "{e}"
        );
        let e = csv("request_id,stage,start_s,end_s\nr1,llm,2,1\n").unwrap_err();
        assert!(e.contains("line 2: times out of order"), "{e}");
        let e = csv("request_id,stage,start_s,end_s\nr1,gpu,2,3\n").unwrap_err();
        assert!(e.contains("line 2: column `stage` = `gpu`"), "{e}");
        let e = csv("request_id,stage,start_s,end_s\nr1,llm,2\n").unwrap_err();
        assert!(e.contains("line 2: 3 fields, expected 4"), "{e}");
    }

    #[test]
    fn aiperf_records_are_read_and_sorted_by_start() {
        let rec = |id: &str, start: i64, end: i64, ttft: f64| {
            format!(
                r#"{{"metadata":{{"session_num":0,"x_request_id":"{id}","request_start_ns":{start},"request_end_ns":{end},"benchmark_phase":"profiling","was_cancelled":false}},"metrics":{{"input_sequence_length":{{"value":550,"unit":"tokens"}},"time_to_first_token":{{"value":{ttft},"unit":"ms"}},"output_sequence_length":{{"value":9,"unit":"tokens"}},"inter_token_latency":{{"value":5.2,"unit":"ms"}}}},"error":null}}"#
            )
        };
        let failed = r#"{"metadata":{"session_num":3,"request_start_ns":5,"request_end_ns":6},"metrics":{"error_isl":{"value":550,"unit":"tokens"}},"error":{"code":499,"type":"RequestCancellationError","message":"cancelled"}}"#;
        let text = format!(
            "{}\n{}\n{failed}\n",
            rec("b", 2_000_000_000, 2_300_000_000, 25.5),
            rec("a", 1_000_000_000, 1_300_000_000, 20.0)
        );
        let log = RequestLog::parse(&text, Path::new("profile_export.jsonl")).unwrap();
        assert_eq!(log.format, LogFormat::Aiperf);
        assert_eq!(log.failed, 1);
        let ids: Vec<&str> = log.calls.iter().map(|c| c.request.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let a = &log.calls[0];
        assert_eq!(a.first_token_ns, Some(1_020_000_000));
        assert_eq!((a.input, a.output_tokens), (Some(550.0), Some(9)));
        let cut = &text[..text.len() / 3];
        let e = RequestLog::parse(cut, Path::new("p.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.jsonl: line 1: the record is cut short"),
            "{e}"
        );
    }
}
