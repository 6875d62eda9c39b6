//! Request traces: CSV, JSONL and the Azure LLM inference format, read exactly to the
//! nanosecond and checked row by row; and the replay plan (window, rate scale, loop).
//!
//! A loaded [`Trace`] holds its arrivals in file order, with times relative to the first row.
//! It is never empty, and its times never go backwards (both are load errors).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::InputError;
use crate::workload::{
    Arrival, MAX_EXPECTED_REQUESTS, MAX_SECONDS, OnError, TraceFormat, TraceSpec,
};

/// Columns of the `csv` format (and fields of `jsonl`): the time, then optional attributes.
pub const CSV_COLUMNS: [&str; 5] = [
    "arrival_s",
    "audio_s",
    "prompt_tokens",
    "output_tokens",
    "sentences",
];

/// Columns of the Azure LLM inference trace, all required.
pub const AZURE_COLUMNS: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

/// How to read a trace file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceOptions {
    /// File format (`Auto`: recognised from the extension and first line).
    pub format: TraceFormat,
    /// Stop at the first unreadable row, or skip and count such rows.
    pub on_error: OnError,
}

/// Arrivals read from a trace file.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    path: PathBuf,
    format: TraceFormat,
    arrivals: Vec<Arrival>,
    skipped: usize,
    first_skipped: Option<String>,
}

impl Trace {
    /// Read a trace file. Errors name the file and, for a bad row, its line and column.
    pub fn load(path: &Path, opts: &TraceOptions) -> Result<Trace, InputError> {
        let file = File::open(path).map_err(|e| InputError::read(path, e))?;
        Trace::read(BufReader::new(file), path, opts)
    }

    /// Read a trace from any reader; `origin` names it in errors and picks the format by
    /// extension when `opts.format` is `Auto`.
    pub fn read<R: BufRead>(
        mut reader: R,
        origin: &Path,
        opts: &TraceOptions,
    ) -> Result<Trace, InputError> {
        // Keep the lines read to recognise the format, and replay them to the parser.
        let mut head = Vec::new();
        let mut first = String::new();
        while first.is_empty() {
            let mut line = Vec::new();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| InputError::read(origin, e))?;
            if n == 0 {
                break;
            }
            first = String::from_utf8_lossy(&line)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string();
            head.extend_from_slice(&line);
        }
        if first.is_empty() {
            return Err(parse_error(origin, "the trace is empty".into()));
        }
        let format = match opts.format {
            TraceFormat::Auto => detect(origin, &first),
            f => f,
        };
        let input = Cursor::new(head).chain(reader);
        let mut rows = Rows::new(origin, opts.on_error);
        let read = match format {
            TraceFormat::Jsonl => read_jsonl(BufReader::new(input), &mut rows),
            TraceFormat::Csv | TraceFormat::Azure | TraceFormat::Auto => {
                read_csv(input, format, &mut rows)
            }
        };
        // A format written by hand that the file's first line contradicts: say which fits.
        let hint = |e: InputError| match (e, sniff(&first)) {
            (InputError::Parse { path, message }, Some(fits))
                if opts.format != TraceFormat::Auto && fits != format =>
            {
                InputError::Parse {
                    path,
                    message: format!(
                        "{message} (read as format = \"{}\"; the file's first line is {}: set format = \"{}\" or \"auto\")",
                        format_name(format),
                        describe_format(fits),
                        format_name(fits)
                    ),
                }
            }
            (e, _) => e,
        };
        read.map_err(hint)?;
        if rows.arrivals.is_empty() {
            let why = match &rows.first_skipped {
                Some(first) => format!(
                    "no readable rows ({} skipped; the first: {first})",
                    rows.skipped
                ),
                None => "the trace is empty: a header and no rows".into(),
            };
            return Err(hint(parse_error(origin, why)));
        }
        Ok(Trace {
            path: origin.to_path_buf(),
            format,
            arrivals: rows.arrivals,
            skipped: rows.skipped,
            first_skipped: rows.first_skipped,
        })
    }

    /// Load the trace a workload names and check that its window, loop and rate scale give a
    /// replay (at least one arrival, a loop period > 0, at most `MAX_SECONDS` long). Errors
    /// about the file name the trace; errors about the options name `origin`, the experiment.
    pub fn from_spec(spec: &TraceSpec, origin: &Path) -> Result<Trace, InputError> {
        let opts = TraceOptions {
            format: spec.format,
            on_error: spec.on_error,
        };
        let trace = Trace::load(&spec.path, &opts)?;
        let plan = Plan::new(spec, &trace).map_err(|(field, value, allowed)| {
            InputError::invalid(origin, field, value, &allowed)
        })?;
        let span_s = plan.duration_ns(&trace) as f64 / 1e9;
        if span_s > MAX_SECONDS {
            return Err(InputError::invalid(
                origin,
                "workload.rate_scale",
                crate::config::num(spec.rate_scale),
                &format!(
                    "a rate_scale (or a window, start_s and end_s) that replays the trace in at \
                     most {MAX_SECONDS:e} s (it would take {} s)",
                    crate::config::num(span_s)
                ),
            ));
        }
        let expected = plan.expected_arrivals(&trace);
        if expected > MAX_EXPECTED_REQUESTS {
            return Err(InputError::invalid(
                origin,
                "workload.duration_s",
                crate::config::num(span_s),
                &format!(
                    "a replay of at most {MAX_EXPECTED_REQUESTS:e} requests (looping this \
                     window for {} s replays about {}): a shorter duration_s",
                    crate::config::num(span_s),
                    crate::config::num(expected.round())
                ),
            ));
        }
        Ok(trace)
    }

    /// The file the trace was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format it was read as (never `Auto`).
    pub fn format(&self) -> TraceFormat {
        self.format
    }

    /// The arrivals, in file order; times in ns after the first row.
    pub fn arrivals(&self) -> &[Arrival] {
        &self.arrivals
    }

    /// Number of arrivals (at least 1).
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// Always false: an empty trace is a load error.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// Time of the last arrival after the first, ns.
    pub fn span_ns(&self) -> u64 {
        self.arrivals.last().map_or(0, |a| a.at_ns)
    }

    /// Rows skipped as unreadable (`on_error = "skip"`).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Why the first skipped row was skipped (`line N: ...`), if any was.
    pub fn first_skipped(&self) -> Option<&str> {
        self.first_skipped.as_deref()
    }
}

/// The format a first line shows by its content alone, if any: a JSON object, the Azure
/// header, or a CSV header naming `arrival_s`.
fn sniff(first_line: &str) -> Option<TraceFormat> {
    if first_line.starts_with('{') {
        return Some(TraceFormat::Jsonl);
    }
    let header: Vec<&str> = first_line.split(',').map(str::trim).collect();
    if header == AZURE_COLUMNS {
        Some(TraceFormat::Azure)
    } else if header.contains(&CSV_COLUMNS[0]) {
        Some(TraceFormat::Csv)
    } else {
        None
    }
}

/// The name a format has in an experiment file.
fn format_name(f: TraceFormat) -> &'static str {
    match f {
        TraceFormat::Auto => "auto",
        TraceFormat::Csv => "csv",
        TraceFormat::Jsonl => "jsonl",
        TraceFormat::Azure => "azure",
    }
}

fn describe_format(f: TraceFormat) -> &'static str {
    match f {
        TraceFormat::Jsonl => "a JSON object (one request per line)",
        TraceFormat::Azure => "the Azure LLM inference trace's header",
        _ => "a CSV header with arrival_s",
    }
}

/// `Auto`: `.jsonl`/`.ndjson` or a first line starting with `{` is JSONL; the Azure header
/// is Azure; anything else is CSV.
fn detect(origin: &Path, first_line: &str) -> TraceFormat {
    let ext = origin.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("jsonl") || ext.eq_ignore_ascii_case("ndjson") {
        return TraceFormat::Jsonl;
    }
    if first_line.starts_with('{') {
        return TraceFormat::Jsonl;
    }
    let header: Vec<&str> = first_line.split(',').map(str::trim).collect();
    if header == AZURE_COLUMNS {
        TraceFormat::Azure
    } else {
        TraceFormat::Csv
    }
}

fn parse_error(path: &Path, message: String) -> InputError {
    InputError::Parse {
        path: path.to_path_buf(),
        message,
    }
}

/// Why a row was refused: `Bad` rows may be skipped, `Fatal` ones always stop.
enum RowError {
    Bad(String),
    Fatal(String),
}

/// A row read, before its time is made relative.
struct Row {
    /// Absolute time, ns (seconds as written, or since the Unix epoch for Azure).
    abs_ns: i128,
    /// The time as written, for messages.
    text: String,
    attrs: Arrival,
}

/// Accumulates rows: checks order, makes times relative, applies `on_error`.
struct Rows<'a> {
    path: &'a Path,
    on_error: OnError,
    arrivals: Vec<Arrival>,
    first_abs: Option<i128>,
    prev: Option<(i128, String, u64)>,
    skipped: usize,
    first_skipped: Option<String>,
}

impl<'a> Rows<'a> {
    fn new(path: &'a Path, on_error: OnError) -> Self {
        Rows {
            path,
            on_error,
            arrivals: Vec::new(),
            first_abs: None,
            prev: None,
            skipped: 0,
            first_skipped: None,
        }
    }

    fn error(&self, line: u64, what: &str) -> InputError {
        parse_error(self.path, format!("line {line}: {what}"))
    }

    fn take(&mut self, line: u64, row: Result<Row, RowError>) -> Result<(), InputError> {
        let row = match row {
            Ok(r) => r,
            Err(RowError::Bad(why)) if self.on_error == OnError::Skip => {
                self.skipped += 1;
                self.first_skipped
                    .get_or_insert_with(|| format!("line {line}: {why}"));
                return Ok(());
            }
            Err(RowError::Bad(why) | RowError::Fatal(why)) => return Err(self.error(line, &why)),
        };
        if let Some((prev, text, prev_line)) = &self.prev
            && row.abs_ns < *prev
        {
            return Err(self.error(
                line,
                &format!(
                    "time {} is before line {prev_line}'s {text}: rows must be in time order",
                    row.text
                ),
            ));
        }
        let first = *self.first_abs.get_or_insert(row.abs_ns);
        let at_ns = u64::try_from(row.abs_ns - first)
            .map_err(|_| self.error(line, "more than 584 years after the first row"))?;
        self.arrivals.push(Arrival { at_ns, ..row.attrs });
        self.prev = Some((row.abs_ns, row.text, line));
        Ok(())
    }
}

/// What a column holds.
#[derive(Clone, Copy, PartialEq)]
enum Col {
    Seconds,
    DateTime,
    Audio,
    Prompt,
    Output,
    Sentences,
}

/// A column of a CSV format: what it holds, its header name, whether every row has it.
type Column = (Col, &'static str, bool);

const CSV_FORMAT: [Column; 5] = [
    (Col::Seconds, CSV_COLUMNS[0], true),
    (Col::Audio, CSV_COLUMNS[1], false),
    (Col::Prompt, CSV_COLUMNS[2], false),
    (Col::Output, CSV_COLUMNS[3], false),
    (Col::Sentences, CSV_COLUMNS[4], false),
];

const AZURE_FORMAT: [Column; 3] = [
    (Col::DateTime, AZURE_COLUMNS[0], true),
    (Col::Prompt, AZURE_COLUMNS[1], true),
    (Col::Output, AZURE_COLUMNS[2], true),
];

fn read_csv<R: Read>(input: R, format: TraceFormat, rows: &mut Rows) -> Result<(), InputError> {
    let known: &[Column] = match format {
        TraceFormat::Azure => &AZURE_FORMAT,
        _ => &CSV_FORMAT,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut header: Option<Vec<Column>> = None;
    loop {
        let more = rdr
            .read_byte_record(&mut record)
            .map_err(|e| parse_error(rows.path, format!("cannot read: {e}")))?;
        if !more {
            return Ok(());
        }
        let line = record.position().map_or(0, |p| p.line());
        match &header {
            None => {
                let cols =
                    csv_header(&record, known, format).map_err(|why| rows.error(line, &why))?;
                header = Some(cols);
            }
            Some(cols) => rows.take(line, csv_row(&record, cols))?,
        }
    }
}

/// Map header names to columns; every name must be known, the required ones present.
fn csv_header(
    record: &csv::ByteRecord,
    known: &[Column],
    format: TraceFormat,
) -> Result<Vec<Column>, String> {
    let expected = match format {
        TraceFormat::Azure => format!("the Azure header {}", AZURE_COLUMNS.join(",")),
        _ => format!(
            "a header naming the columns: {} (required), {}",
            CSV_COLUMNS[0],
            CSV_COLUMNS[1..].join(", ")
        ),
    };
    let mut cols: Vec<Column> = Vec::new();
    for field in record.iter() {
        let name = String::from_utf8_lossy(field);
        let name = name.trim_start_matches('\u{feff}').trim();
        let Some(col) = known.iter().find(|c| c.1 == name) else {
            return Err(format!("unknown column `{name}`: expected {expected}"));
        };
        if cols.iter().any(|c| c.1 == name) {
            return Err(format!("column `{name}` appears twice"));
        }
        cols.push(*col);
    }
    if let Some(missing) = known.iter().find(|c| c.2 && !cols.contains(c)) {
        return Err(format!("no `{}` column: expected {expected}", missing.1));
    }
    Ok(cols)
}

fn csv_row(record: &csv::ByteRecord, cols: &[Column]) -> Result<Row, RowError> {
    if record.len() != cols.len() {
        return Err(RowError::Bad(format!(
            "{} field{}, expected {} ({})",
            record.len(),
            if record.len() == 1 { "" } else { "s" },
            cols.len(),
            cols.iter().map(|c| c.1).collect::<Vec<_>>().join(",")
        )));
    }
    let mut time = None;
    let mut attrs = Arrival::default();
    for (field, &(kind, name, required)) in record.iter().zip(cols) {
        let text = std::str::from_utf8(field)
            .map_err(|_| RowError::Bad(format!("column `{name}` is not valid UTF-8")))?;
        if text.is_empty() {
            if required {
                return Err(RowError::Bad(format!("column `{name}` is empty")));
            }
            continue;
        }
        match kind {
            Col::Seconds => time = Some(seconds(&format!("column `{name}`"), text)?),
            Col::DateTime => time = Some(datetime(name, text)?),
            Col::Audio => attrs.audio_s = Some(audio(name, text)?),
            Col::Prompt => attrs.prompt_tokens = Some(count(name, text)?),
            Col::Output => attrs.output_tokens = Some(count(name, text)?),
            Col::Sentences => attrs.sentences = Some(count(name, text)?),
        }
    }
    let (abs_ns, text) = time.expect("invariant: the header has a time column, required");
    Ok(Row {
        abs_ns,
        text,
        attrs,
    })
}

/// A time in seconds as a decimal; negative is fatal. `what` names the column or field.
fn seconds(what: &str, text: &str) -> Result<(i128, String), RowError> {
    let ns = parse_seconds_ns(text).map_err(|why| {
        RowError::Bad(format!(
            "{what} = `{text}`: {why} (expected seconds as a decimal, e.g. 12.5)"
        ))
    })?;
    if ns < 0 {
        return Err(RowError::Fatal(format!(
            "{what} = {text}: times must be >= 0"
        )));
    }
    Ok((ns, text.to_string()))
}

/// An Azure timestamp, `2023-11-16 18:15:46.6805900`, optionally with a UTC offset; treated
/// as UTC when it has none. Digits below the nanosecond are dropped.
fn datetime(name: &str, text: &str) -> Result<(i128, String), RowError> {
    use chrono::{DateTime, NaiveDateTime};
    let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").map(|t| t.to_utc()))
        .map_err(|e| {
            RowError::Bad(format!(
                "column `{name}` = `{text}`: {e} (expected a date and time such as \
                 2023-11-16 18:15:46.6805900)"
            ))
        })?;
    let ns = t.timestamp_nanos_opt().ok_or_else(|| {
        RowError::Bad(format!(
            "column `{name}` = `{text}`: outside the years 1677 to 2262"
        ))
    })?;
    Ok((i128::from(ns), text.to_string()))
}

fn count(name: &str, text: &str) -> Result<u32, RowError> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(RowError::Bad(format!(
            "column `{name}` = `{text}`: expected a whole number from 1 to {}",
            u32::MAX
        ))),
    }
}

fn audio(name: &str, text: &str) -> Result<f64, RowError> {
    match text.parse::<f64>() {
        Ok(x) => check_audio(&format!("column `{name}`"), x),
        Err(_) => Err(RowError::Bad(format!(
            "column `{name}` = `{text}`: expected seconds > 0"
        ))),
    }
}

/// Audio seconds must be > 0 and at most `MAX_SECONDS`. `what` names the column or field.
fn check_audio(what: &str, x: f64) -> Result<f64, RowError> {
    if x.is_finite() && x > 0.0 && x <= MAX_SECONDS {
        Ok(x)
    } else {
        Err(RowError::Bad(format!(
            "{what} = {x}: expected seconds > 0 and at most {MAX_SECONDS:e}"
        )))
    }
}

/// One JSONL object; the time is kept as written so that it is read exactly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow<'a> {
    #[serde(borrow)]
    arrival_s: &'a RawValue,
    #[serde(default)]
    audio_s: Option<f64>,
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    sentences: Option<u32>,
}

fn read_jsonl<R: BufRead>(mut input: R, rows: &mut Rows) -> Result<(), InputError> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| InputError::read(rows.path, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let row = match std::str::from_utf8(&buf) {
            Ok(text) => {
                let text = text.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    continue;
                }
                json_row(text)
            }
            Err(_) => Err(RowError::Bad("not valid UTF-8".into())),
        };
        rows.take(line, row)?;
    }
}

fn json_row(text: &str) -> Result<Row, RowError> {
    let r: JsonRow = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        RowError::Bad(format!("column {}: {msg}", e.column()))
    })?;
    let (abs_ns, text) = seconds("arrival_s", r.arrival_s.get())?;
    let audio_s = r.audio_s.map(|x| check_audio("audio_s", x)).transpose()?;
    for (name, v) in [
        ("prompt_tokens", r.prompt_tokens),
        ("output_tokens", r.output_tokens),
        ("sentences", r.sentences),
    ] {
        if v == Some(0) {
            return Err(RowError::Bad(format!(
                "field `{name}` = 0: expected a whole number >= 1"
            )));
        }
    }
    Ok(Row {
        abs_ns,
        text,
        attrs: Arrival {
            at_ns: 0,
            audio_s,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            sentences: r.sentences,
        },
    })
}

/// Parse a decimal number of seconds (`12`, `0.25`, `+1.5e3`, `-2`) to nanoseconds exactly,
/// rounding half up below the nanosecond. The result's magnitude is at most `u64::MAX`.
pub fn parse_seconds_ns(text: &str) -> Result<i128, &'static str> {
    const NOT_A_NUMBER: &str = "not a decimal number";
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..].parse::<i64>().map_err(|_| NOT_A_NUMBER)?,
        ),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(NOT_A_NUMBER);
    }
    if !(-400..=400).contains(&exp) {
        return Err("exponent out of range");
    }
    // The value is 0.DIGITS × 10^(len(int) + exp) s; in ns the point is 9 digits further.
    let point = int.len() as i64 + exp + 9;
    let mut ns: u128 = 0;
    let mut i = 0i64;
    let mut round_up = false;
    for d in int.bytes().chain(frac.bytes()).map(|b| b - b'0') {
        if i == point {
            round_up = d >= 5;
        }
        if i >= point {
            break;
        }
        ns = times_ten_plus(ns, d)?;
        i += 1;
    }
    while i < point {
        ns = times_ten_plus(ns, 0)?;
        i += 1;
    }
    if round_up {
        ns += 1;
        if ns > u128::from(u64::MAX) {
            return Err(TOO_LARGE);
        }
    }
    let ns = ns as i128;
    Ok(if negative { -ns } else { ns })
}

const TOO_LARGE: &str = "too large";

fn times_ten_plus(ns: u128, digit: u8) -> Result<u128, &'static str> {
    let ns = ns * 10 + u128::from(digit);
    if ns > u128::from(u64::MAX) {
        Err(TOO_LARGE)
    } else {
        Ok(ns)
    }
}

/// How a workload replays its trace: which rows, shifted by how much, repeated how often,
/// scaled by what, cut where. Built (and checked) by [`Trace::from_spec`]; used by the
/// arrival source.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Rows inside the window.
    pub rows: Range<usize>,
    /// Window start in trace time, ns: subtracted from every row.
    pub shift_ns: u64,
    /// Loop period in trace time (before scaling), ns; `None` without `loop`.
    pub period_ns: Option<u64>,
    /// Times are divided by this.
    pub rate_scale: f64,
    /// No arrival at or after this simulated time, ns (`duration_s`).
    pub end_ns: Option<u64>,
}

impl Plan {
    /// Work out the replay; an error is `(field, value, what is allowed)`.
    pub fn new(spec: &TraceSpec, trace: &Trace) -> Result<Plan, (&'static str, String, String)> {
        let ns = |s: f64| crate::engine::SimTime::from_secs_f64(s).0;
        let start_ns = spec.start_s.map_or(0, ns);
        let a = trace.arrivals();
        let lo = a.partition_point(|r| r.at_ns < start_ns);
        let hi = match spec.end_s {
            Some(e) => a.partition_point(|r| r.at_ns < ns(e)),
            None => a.len(),
        };
        let rows = lo..hi.max(lo);
        let span = crate::config::num(trace.span_ns() as f64 / 1e9);
        if rows.is_empty() {
            let window = format!(
                "[{}, {})",
                crate::config::num(spec.start_s.unwrap_or(0.0)),
                spec.end_s.map_or("end".into(), crate::config::num)
            );
            let field = if spec.start_s.is_some() {
                "workload.start_s"
            } else {
                "workload.end_s"
            };
            return Err((
                field,
                window,
                format!(
                    "a window holding at least one arrival (the trace's {} arrivals run from 0 \
                     to {span} s)",
                    a.len()
                ),
            ));
        }
        let period_ns = if !spec.repeat {
            None
        } else if let Some(e) = spec.end_s {
            Some(ns(e).saturating_sub(start_ns))
        } else {
            let n = (rows.end - rows.start) as u64;
            let first = a[rows.start].at_ns - start_ns;
            let last = a[rows.end - 1].at_ns - start_ns;
            if n < 2 || last == first {
                return Err((
                    "workload.loop",
                    "true".into(),
                    "a window with at least two distinct arrival times, or end_s to set the \
                     loop's period"
                        .into(),
                ));
            }
            Some(last + (last - first) / (n - 1))
        };
        if period_ns == Some(0) {
            return Err((
                "workload.end_s",
                crate::config::num(spec.end_s.unwrap_or(0.0)),
                "a window at least 1 ns long to loop".into(),
            ));
        }
        Ok(Plan {
            rows,
            shift_ns: start_ns,
            period_ns,
            rate_scale: spec.rate_scale,
            end_ns: spec.duration_s.map(ns),
        })
    }

    /// Simulated time of `row` in copy `copy` of the window, ns (`None` past representable
    /// time).
    pub fn time_ns(&self, trace: &Trace, copy: u64, row: usize) -> Option<u64> {
        let t = trace.arrivals()[row].at_ns - self.shift_ns;
        let t = match self.period_ns {
            Some(p) => copy.checked_mul(p)?.checked_add(t)?,
            None => t,
        };
        Some(scale(t, self.rate_scale))
    }

    /// About how many arrivals the replay issues: the window's rows once per loop period
    /// (after scaling) that the replay's duration holds.
    pub fn expected_arrivals(&self, trace: &Trace) -> f64 {
        let rows = (self.rows.end - self.rows.start) as f64;
        match self.period_ns {
            Some(p) => {
                let period = p as f64 / self.rate_scale;
                rows * (self.duration_ns(trace) as f64 / period).ceil().max(1.0)
            }
            None => rows,
        }
    }

    /// How long the replay lasts, ns: `duration_s` if set, else the last arrival's time.
    pub fn duration_ns(&self, trace: &Trace) -> u64 {
        self.end_ns.unwrap_or_else(|| {
            self.time_ns(trace, 0, self.rows.end - 1)
                .unwrap_or(u64::MAX)
        })
    }
}

/// `t_ns / rate_scale`, rounded to the ns; exact when `rate_scale` is 1.
fn scale(t_ns: u64, rate_scale: f64) -> u64 {
    if rate_scale == 1.0 {
        t_ns
    } else {
        (t_ns as f64 / rate_scale).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_to_the_nanosecond() {
        let cases: [(&str, i128); 14] = [
            ("0", 0),
            ("12", 12_000_000_000),
            ("0.000000001", 1),
            ("1.5", 1_500_000_000),
            (".5", 500_000_000),
            ("5.", 5_000_000_000),
            ("+2.25", 2_250_000_000),
            ("-0.5", -500_000_000),
            ("1.5e3", 1_500_000_000_000),
            ("25E-10", 3),
            ("0.30000000000000004", 300_000_000),
            ("0.0000000004999", 0),
            ("1700158546.680590012", 1_700_158_546_680_590_012),
            ("18446744073.709551615", u64::MAX as i128),
        ];
        for (text, ns) in cases {
            assert_eq!(parse_seconds_ns(text), Ok(ns), "{text}");
        }
        for bad in [
            "", ".", "-", "1.2.3", "1e", "abc", "inf", "NaN", "0x10", "1_000", " 1", "1e999",
        ] {
            assert!(parse_seconds_ns(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_seconds_ns("18446744073.7095516155"), Err("too large"));
        assert_eq!(parse_seconds_ns("1e11"), Err("too large"));
    }

    #[test]
    fn formats_are_recognised() {
        let p = Path::new("t.csv");
        assert_eq!(detect(p, "arrival_s,audio_s"), TraceFormat::Csv);
        assert_eq!(
            detect(p, "TIMESTAMP, ContextTokens ,GeneratedTokens"),
            TraceFormat::Azure
        );
        assert_eq!(detect(p, "{\"arrival_s\": 1}"), TraceFormat::Jsonl);
        assert_eq!(
            detect(Path::new("t.JSONL"), "arrival_s"),
            TraceFormat::Jsonl
        );
    }

    /// A format set by hand that the first line contradicts names the one that fits.
    #[test]
    fn a_wrong_format_suggests_the_one_the_header_matches() {
        let read = |text: &str, format: TraceFormat| {
            let opts = TraceOptions {
                format,
                on_error: OnError::Stop,
            };
            Trace::read(
                Cursor::new(text.as_bytes().to_vec()),
                Path::new("t.csv"),
                &opts,
            )
            .unwrap_err()
            .to_string()
        };
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n";
        let e = read(azure, TraceFormat::Csv);
        assert!(e.contains("set format = \"azure\""), "{e}");
        let csv = "arrival_s,prompt_tokens\n0.5,100\n";
        let e = read(csv, TraceFormat::Azure);
        assert!(e.contains("set format = \"csv\""), "{e}");
        let e = read(csv, TraceFormat::Jsonl);
        assert!(e.contains("set format = \"csv\""), "{e}");
        let e = read("{\"arrival_s\": 1}\n", TraceFormat::Csv);
        assert!(e.contains("set format = \"jsonl\""), "{e}");
    }
}
