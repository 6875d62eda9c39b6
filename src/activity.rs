//! What the GPUs did, as a timeline trace in the Chrome trace event format (JSON), which
//! Perfetto (ui.perfetto.dev) and chrome://tracing open.
//!
//! Recorded only when asked ([`crate::pipeline::Simulation::with_activity`]); nothing here
//! changes the run, and a run that does not ask pays one `Option` check at a few places:
//!
//! - every job a replica hands its partition (an ASR or TTS batch, an LLM iteration), from
//!   submission to completion, on the replica's track, named by its model and the requests
//!   it served ([`ActivityLog`]);
//! - under time-slicing, which context held the GPU when, and each context switch, on the
//!   partition's own track. The time-slicer advances in bulk; its turns are derived from its
//!   state over each stretch it advances ([`SliceLog`], filled by
//!   [`crate::sharing::Traced`]), not simulated as events;
//! - every request from its start to its end (completed, failed, cancelled or still in
//!   flight when the run ends), with its ASR and LLM stages inside.
//!
//! Bounded: only events that overlap a time window are kept, and at most a set number of
//! them. Recording stops at the cap, so the trace is complete up to about the simulated time
//! where it stopped, which the file and the terminal state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::SimTime;
use crate::experiment::Experiment;

/// Events a trace holds unless told otherwise: about 30 MB of JSON, which Perfetto and
/// chrome://tracing still open quickly.
pub const DEFAULT_MAX_EVENTS: u64 = 250_000;

/// What to record: a window of simulated time and a cap on events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceOptions {
    /// Keep the events that overlap `[from, to)`.
    pub from: SimTime,
    /// See `from` (`SimTime(u64::MAX)`: to the end of the run).
    pub to: SimTime,
    /// Most events kept (slices, jobs, requests and their stages; track names not counted).
    pub max_events: u64,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            from: SimTime::ZERO,
            to: SimTime(u64::MAX),
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

impl TraceOptions {
    /// Options from the command line's `START..END` window (seconds; either side may be
    /// left out) and event cap.
    pub fn parse(window: Option<&str>, max_events: Option<u64>) -> Result<Self, String> {
        let mut o = TraceOptions::default();
        if let Some(w) = window {
            (o.from, o.to) = parse_window(w)?;
        }
        if let Some(n) = max_events {
            if n == 0 {
                return Err("--trace-max-events: expected a number of events >= 1, got 0".into());
            }
            o.max_events = n;
        }
        Ok(o)
    }
}

/// `START..END` in seconds of simulated time, e.g. `100..110`, `100..` or `..60`.
fn parse_window(w: &str) -> Result<(SimTime, SimTime), String> {
    let bad = |why: &str| {
        format!(
            "--trace-window: {why}, got '{w}'; expected START..END in seconds of simulated \
             time, e.g. 100..110 (either side may be left out: 100.. or ..60)"
        )
    };
    let (a, b) = w.split_once("..").ok_or_else(|| bad("no '..'"))?;
    let secs = |s: &str, default: SimTime| -> Result<SimTime, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(default);
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(SimTime::from_secs_f64(x)),
            _ => Err(bad(&format!("'{s}' is not a number of seconds >= 0"))),
        }
    };
    let from = secs(a, SimTime::ZERO)?;
    let to = secs(b, SimTime(u64::MAX))?;
    if to <= from {
        return Err(bad("the end must come after the start"));
    }
    Ok((from, to))
}

/// The window and the events left, shared by the recorders of one run (the pipeline's and
/// each time-sliced partition's), so that the cap holds for the run as a whole.
#[derive(Clone, Debug)]
pub struct Budget {
    from: u64,
    to: u64,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Events still to be kept.
    left: AtomicU64,
    /// Simulated time (ns) at which the first event was refused; `u64::MAX` if none was.
    full_at: AtomicU64,
}

impl Budget {
    /// A budget for `opts`.
    pub fn new(opts: &TraceOptions) -> Self {
        Budget {
            from: opts.from.0,
            to: opts.to.0,
            shared: Arc::new(Shared {
                left: AtomicU64::new(opts.max_events),
                full_at: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Whether `[a, b]` overlaps the window.
    pub fn in_window(&self, a: u64, b: u64) -> bool {
        a < self.to && (b > self.from || (a == b && a >= self.from))
    }

    /// Whether the cap has been reached.
    pub fn full(&self) -> bool {
        self.shared.left.load(Ordering::Relaxed) == 0
    }

    /// Take `n` events' places, if that many are left; otherwise the trace is full from now
    /// (simulated ns) on, and nothing more is kept.
    fn take(&self, n: u64, now: u64) -> bool {
        let left = self.shared.left.load(Ordering::Relaxed);
        if left >= n && left > 0 {
            self.shared.left.store(left - n, Ordering::Relaxed);
            return true;
        }
        self.shared.left.store(0, Ordering::Relaxed);
        self.shared.full_at.fetch_min(now, Ordering::Relaxed);
        false
    }

    /// When the cap stopped the recording, ns of simulated time.
    fn full_at(&self) -> Option<u64> {
        Some(self.shared.full_at.load(Ordering::Relaxed)).filter(|&t| t != u64::MAX)
    }
}

/// A stretch of a time-sliced partition: context `ctx` running, or being switched in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start, ns.
    pub from: u64,
    /// End, ns.
    pub to: u64,
    /// The context (its index on the partition).
    pub ctx: u32,
    /// A context switch into `ctx` (else `ctx` runs).
    pub switch: bool,
}

/// The turns and switches of one time-sliced partition. A turn that an update splits (a job
/// submitted by another context in the middle of it) is joined back into one.
#[derive(Debug)]
pub struct SliceLog {
    budget: Budget,
    segments: Vec<Segment>,
    /// The segment that the next one may extend.
    open: Option<Segment>,
}

impl SliceLog {
    /// An empty log under `budget`.
    pub fn new(budget: Budget) -> Self {
        SliceLog {
            budget,
            segments: Vec::new(),
            open: None,
        }
    }

    /// Whether anything over `[from, to]` would be kept (in the window, cap not reached).
    pub fn wants(&self, from: SimTime, to: SimTime) -> bool {
        !self.budget.full() && self.budget.in_window(from.0, to.0)
    }

    /// Whether the cap has been reached.
    pub fn full(&self) -> bool {
        self.budget.full()
    }

    /// Add the next segment (in time order).
    pub fn push(&mut self, s: Segment) {
        if let Some(o) = &mut self.open
            && o.ctx == s.ctx
            && o.switch == s.switch
            && o.to == s.from
        {
            o.to = s.to;
            return;
        }
        self.flush();
        self.open = Some(s);
    }

    fn flush(&mut self) {
        if let Some(s) = self.open.take()
            && self.budget.in_window(s.from, s.to)
            && self.budget.take(1, s.to)
        {
            self.segments.push(s);
        }
    }

    /// Everything recorded, in time order.
    pub fn finish(&mut self) -> Vec<Segment> {
        self.flush();
        std::mem::take(&mut self.segments)
    }
}

/// One job on a partition: an ASR or TTS batch, or an LLM iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The replica that ran it.
    pub replica: u32,
    /// Submitted, ns.
    pub from: u64,
    /// Completed (or dropped, or the run's end), ns.
    pub to: u64,
    /// Chunks, sentences or sequences in it.
    pub items: u32,
    /// The numbers (start order) of the requests it served that were still in flight.
    pub requests: Vec<u64>,
    /// How it ended.
    pub end: JobEnd,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// It ran to completion.
    Done,
    /// A fault took its process down.
    Dropped,
    /// The run ended first.
    Unfinished,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its last sentence's audio (or, without TTS, its last token) was ready.
    Completed,
    /// Timed out, out of memory, refused, lost to a fault or with no replica up.
    Failed,
    /// Its user left.
    Cancelled,
    /// Still in flight when the run ended.
    InFlight,
}

/// One request, from its start to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSpan {
    /// Start order among the run's requests.
    pub number: u64,
    /// The closed-loop user that sent it.
    pub user: Option<u32>,
    /// Start, ns.
    pub from: u64,
    /// Its transcript was ready (with ASR), ns.
    pub transcript: Option<u64>,
    /// Its LLM stage, from the transcript (or start) to its last token so far, ns.
    pub llm: Option<(u64, u64)>,
    /// End, ns.
    pub to: u64,
    /// Tokens it received.
    pub tokens: u32,
    /// How it ended.
    pub outcome: Outcome,
}

impl RequestSpan {
    /// The LLM stage's end, when the TTS still had audio to make after it.
    fn tts_tail(&self) -> Option<(u64, u64)> {
        let (_, b) = self.llm?;
        (self.outcome == Outcome::Completed && b < self.to).then_some((b, self.to))
    }

    /// Events in the file: the request and its stages.
    fn events(&self) -> usize {
        1 + usize::from(self.transcript.is_some())
            + usize::from(self.llm.is_some())
            + usize::from(self.tts_tail().is_some())
    }
}

/// The pipeline's recorder: jobs and requests.
#[derive(Debug)]
pub struct ActivityLog {
    budget: Budget,
    /// Per replica, when the job it has on its partition was submitted, and its items.
    open: Vec<Option<(u64, u32)>>,
    jobs: Vec<Job>,
    requests: Vec<RequestSpan>,
}

impl ActivityLog {
    /// A recorder for `replicas` replicas under `budget`.
    pub fn new(budget: Budget, replicas: usize) -> Self {
        ActivityLog {
            budget,
            open: vec![None; replicas],
            jobs: Vec::new(),
            requests: Vec::new(),
        }
    }

    /// The budget, for the partitions' logs.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Replica `replica` hands its partition a job of `items` items at `t`.
    pub fn start(&mut self, replica: usize, t: SimTime, items: u32) {
        self.open[replica] = Some((t.0, items));
    }

    /// Whether the job of `replica` (if any) would be kept were it to end at `t`, so that
    /// the caller can skip naming its requests.
    pub fn wants_end(&self, replica: usize, t: SimTime) -> bool {
        self.open[replica]
            .is_some_and(|(a, _)| !self.budget.full() && self.budget.in_window(a, t.0))
    }

    /// The job of `replica` ends at `t`, having served `requests`.
    pub fn end(&mut self, replica: usize, t: SimTime, requests: Vec<u64>, end: JobEnd) {
        let Some((from, items)) = self.open[replica].take() else {
            return;
        };
        self.whole(replica, SimTime(from), t, items, requests, end);
    }

    /// A job of `replica` that ran over `[from, to]`, submitted and completed in one step.
    pub fn whole(
        &mut self,
        replica: usize,
        from: SimTime,
        to: SimTime,
        items: u32,
        requests: Vec<u64>,
        end: JobEnd,
    ) {
        if self.budget.in_window(from.0, to.0) && self.budget.take(1, to.0) {
            self.jobs.push(Job {
                replica: replica as u32,
                from: from.0,
                to: to.0,
                items,
                requests,
                end,
            });
        }
    }

    /// A request is over (or the run is).
    pub fn request(&mut self, r: RequestSpan) {
        if self.budget.in_window(r.from, r.to) && self.budget.take(r.events() as u64, r.to) {
            self.requests.push(r);
        }
    }

    /// The jobs still on their partitions end with the run, at `end`.
    pub fn close(&mut self, end: SimTime) {
        for r in 0..self.open.len() {
            if let Some((from, _)) = self.open[r] {
                let to = SimTime(end.0.max(from));
                self.end(r, to, Vec::new(), JobEnd::Unfinished);
            }
        }
    }

    /// What was recorded, with the partitions' turns and switches (`slices`, per partition,
    /// contexts already named by replica).
    pub fn finish(self, slices: Vec<(usize, Vec<(Segment, u32)>)>) -> Activity {
        Activity {
            window: (self.budget.from, self.budget.to),
            full_at: self.budget.full_at(),
            jobs: self.jobs,
            requests: self.requests,
            slices,
        }
    }
}

/// What one run's trace holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// The window, ns.
    pub window: (u64, u64),
    /// When the cap stopped the recording, ns of simulated time.
    pub full_at: Option<u64>,
    /// Jobs, in the order they ended.
    pub jobs: Vec<Job>,
    /// Requests, in the order they ended.
    pub requests: Vec<RequestSpan>,
    /// Per time-sliced partition (its index): its turns and switches, each with the replica
    /// whose context it is.
    pub slices: Vec<(usize, Vec<(Segment, u32)>)>,
}

/// One event of the file, before it is written.
struct Ev {
    ts: u64,
    dur: u64,
    pid: u32,
    tid: u32,
    name: String,
    cat: &'static str,
    /// Already JSON (an object), or empty.
    args: String,
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Microseconds (the format's unit) with nanosecond digits.
fn us(out: &mut String, ns: u64) {
    let _ = write!(out, "{}.{:03}", ns / 1000, ns % 1000);
}

/// The short name of a partition within its GPU: `MIG 3g.40gb`, else `whole GPU`.
fn part_name(label: &str) -> String {
    match label.split_once(" MIG ") {
        Some((_, profile)) => format!("MIG {profile}"),
        None => "whole GPU".into(),
    }
}

/// Requests named in a job: up to three numbers, then how many more.
fn request_names(requests: &[u64]) -> String {
    let mut s = String::new();
    for n in requests.iter().take(3) {
        let _ = write!(s, " #{n}");
    }
    if requests.len() > 3 {
        let _ = write!(s, " +{}", requests.len() - 3);
    }
    s
}

impl Activity {
    /// Events in the file other than track names.
    pub fn events(&self) -> usize {
        self.jobs.len()
            + self.slices.iter().map(|(_, s)| s.len()).sum::<usize>()
            + self.requests.iter().map(RequestSpan::events).sum::<usize>()
    }

    /// The trace as Chrome trace event JSON: one process per GPU (a thread per replica, and
    /// one per time-sliced partition for its turns and switches), one for the requests (a
    /// thread per lane of requests that do not overlap), times in microseconds.
    pub fn chrome_json(&self, exp: &Experiment, max_events: u64) -> String {
        let gpus = exp.raw.gpus.len() as u32;
        let requests_pid = gpus + 1;
        let mut meta: Vec<String> = Vec::new();
        let mut m = |name: &str, pid: u32, tid: u32, args: String| {
            meta.push(format!(
                "{{\"name\":\"{name}\",\"ph\":\"M\",\"ts\":0,\"pid\":{pid},\"tid\":{tid},\"args\":{args}}}"
            ));
        };
        // Tracks: per GPU, each time-sliced partition's turns first, then each replica.
        let mut replica_tid = vec![0u32; exp.replicas.len()];
        let mut turns_tid = vec![0u32; exp.partitions.len()];
        let mut next_tid = vec![1u32; exp.raw.gpus.len()];
        for (g, gpu) in exp.raw.gpus.iter().enumerate() {
            let parts: Vec<usize> = (0..exp.partitions.len())
                .filter(|&p| exp.partitions[p].gpu == g)
                .collect();
            let mode = match parts.first().map(|&p| &exp.partitions[p]) {
                Some(p) if p.mps => "MPS",
                Some(p) if p.resources.label.contains(" MIG ") => "MIG",
                _ if parts
                    .iter()
                    .any(|&p| exp.replicas.iter().filter(|r| r.partition == p).count() > 1) =>
                {
                    "time-slicing"
                }
                _ => "dedicated",
            };
            let gpu_label = exp.partitions[parts[0]]
                .resources
                .label
                .split(" MIG ")
                .next()
                .unwrap_or_default()
                .to_string();
            let pid = g as u32 + 1;
            m(
                "process_name",
                pid,
                0,
                format!(
                    "{{\"name\":{}}}",
                    quote(&format!("{} · {gpu_label} · {mode}", gpu.id))
                ),
            );
            m(
                "process_sort_index",
                pid,
                0,
                format!("{{\"sort_index\":{pid}}}"),
            );
            for (k, &p) in parts.iter().enumerate() {
                let pname = part_name(&exp.partitions[p].resources.label);
                let pname = if parts.len() > 1 {
                    format!("{pname} ({k})")
                } else {
                    pname
                };
                let on: Vec<usize> = (0..exp.replicas.len())
                    .filter(|&r| exp.replicas[r].partition == p)
                    .collect();
                let sliced = on.len() > 1 && !exp.partitions[p].mps;
                if sliced {
                    let tid = next_tid[g];
                    next_tid[g] += 1;
                    turns_tid[p] = tid;
                    m(
                        "thread_name",
                        pid,
                        tid,
                        format!(
                            "{{\"name\":{}}}",
                            quote(&format!("{pname} · on the GPU (turns, switches)"))
                        ),
                    );
                    m(
                        "thread_sort_index",
                        pid,
                        tid,
                        format!("{{\"sort_index\":{tid}}}"),
                    );
                }
                for (c, &r) in on.iter().enumerate() {
                    let tid = next_tid[g];
                    next_tid[g] += 1;
                    replica_tid[r] = tid;
                    let spec = &exp.replicas[r];
                    let model = &exp.models[spec.model].name;
                    let how = if exp.partitions[p].mps {
                        format!(" · MPS client {c}, {}% of threads", spec.active_thread_pct)
                    } else if sliced {
                        format!(" · context {c}")
                    } else {
                        String::new()
                    };
                    m(
                        "thread_name",
                        pid,
                        tid,
                        format!("{{\"name\":{}}}", quote(&format!("{pname} · {model}{how}"))),
                    );
                    m(
                        "thread_sort_index",
                        pid,
                        tid,
                        format!("{{\"sort_index\":{tid}}}"),
                    );
                }
            }
        }
        let model_of = |r: u32| &exp.models[exp.replicas[r as usize].model].name;
        let pid_of = |r: u32| exp.partitions[exp.replicas[r as usize].partition].gpu as u32 + 1;
        let mut evs: Vec<Ev> = Vec::with_capacity(self.events());
        for (p, segs) in &self.slices {
            let pid = exp.partitions[*p].gpu as u32 + 1;
            for (s, r) in segs {
                evs.push(Ev {
                    ts: s.from,
                    dur: s.to - s.from,
                    pid,
                    tid: turns_tid[*p],
                    name: if s.switch {
                        format!("switch to {}", model_of(*r))
                    } else {
                        model_of(*r).clone()
                    },
                    cat: if s.switch { "switch" } else { "turn" },
                    args: String::new(),
                });
            }
        }
        for j in &self.jobs {
            let mut args = format!("{{\"items\":{},\"requests\":[", j.items);
            for (i, n) in j.requests.iter().enumerate() {
                let _ = write!(args, "{}{n}", if i > 0 { "," } else { "" });
            }
            args.push(']');
            match j.end {
                JobEnd::Done => {}
                JobEnd::Dropped => args.push_str(",\"ended\":\"dropped by a fault\""),
                JobEnd::Unfinished => {
                    args.push_str(",\"ended\":\"unfinished at the end of the run\"")
                }
            }
            args.push('}');
            evs.push(Ev {
                ts: j.from,
                dur: j.to - j.from,
                pid: pid_of(j.replica),
                tid: replica_tid[j.replica as usize],
                name: format!("{}{}", model_of(j.replica), request_names(&j.requests)),
                cat: "job",
                args,
            });
        }
        // Requests in lanes: each goes to the lane that has been free longest.
        let mut order: Vec<&RequestSpan> = self.requests.iter().collect();
        order.sort_by_key(|r| (r.from, r.number));
        // Lanes by the end of their last request, earliest first.
        let mut free: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
        let mut lanes = 0u32;
        for r in order {
            let lane = match free.peek() {
                Some(&Reverse((end, lane))) if end <= r.from => {
                    free.pop();
                    lane
                }
                _ => {
                    lanes += 1;
                    lanes
                }
            };
            free.push(Reverse((r.to, lane)));
            let tid = lane;
            let outcome = match r.outcome {
                Outcome::Completed => "completed",
                Outcome::Failed => "failed",
                Outcome::Cancelled => "cancelled",
                Outcome::InFlight => "in flight at the end of the run",
            };
            let mut args = format!("{{\"outcome\":\"{outcome}\",\"tokens\":{}", r.tokens);
            if let Some(u) = r.user {
                let _ = write!(args, ",\"user\":{u}");
            }
            args.push('}');
            evs.push(Ev {
                ts: r.from,
                dur: r.to - r.from,
                pid: requests_pid,
                tid,
                name: match r.outcome {
                    Outcome::Completed => format!("request #{}", r.number),
                    _ => format!("request #{} ({outcome})", r.number),
                },
                cat: "request",
                args,
            });
            let mut stage = |name: &str, a: u64, b: u64| {
                evs.push(Ev {
                    ts: a,
                    dur: b.saturating_sub(a),
                    pid: requests_pid,
                    tid,
                    name: name.into(),
                    cat: "stage",
                    args: String::new(),
                });
            };
            if let Some(t) = r.transcript {
                stage("asr", r.from, t);
            }
            if let Some((a, b)) = r.llm {
                stage("llm", a, b);
            }
            if let Some((a, b)) = r.tts_tail() {
                stage("tts (after the last token)", a, b);
            }
        }
        m(
            "process_name",
            requests_pid,
            0,
            "{\"name\":\"requests\"}".into(),
        );
        m(
            "process_sort_index",
            requests_pid,
            0,
            format!("{{\"sort_index\":{requests_pid}}}"),
        );
        for lane in 1..=lanes {
            m(
                "thread_name",
                requests_pid,
                lane,
                format!("{{\"name\":\"lane {lane}\"}}"),
            );
        }
        // Parents before the slices they hold.
        evs.sort_by(|a, b| a.ts.cmp(&b.ts).then(b.dur.cmp(&a.dur)));
        let mut out = String::with_capacity(120 * (evs.len() + meta.len()) + 512);
        out.push_str("{\"traceEvents\":[\n");
        let mut first = true;
        for line in &meta {
            if !first {
                out.push_str(",\n");
            }
            first = false;
            out.push_str(line);
        }
        for e in &evs {
            out.push_str(",\n{\"name\":");
            out.push_str(&quote(&e.name));
            let _ = write!(out, ",\"cat\":\"{}\",\"ph\":\"X\",\"ts\":", e.cat);
            us(&mut out, e.ts);
            out.push_str(",\"dur\":");
            us(&mut out, e.dur);
            let _ = write!(out, ",\"pid\":{},\"tid\":{}", e.pid, e.tid);
            if !e.args.is_empty() {
                out.push_str(",\"args\":");
                out.push_str(&e.args);
            }
            out.push('}');
        }
        if let Some(t) = self.full_at {
            out.push_str(",\n{\"name\":\"trace truncated: event cap reached\",\"ph\":\"i\",\"s\":\"g\",\"ts\":");
            us(&mut out, t);
            out.push_str(",\"pid\":0,\"tid\":0}");
        }
        out.push_str("\n],\"displayTimeUnit\":\"ms\",\"otherData\":{");
        let _ = write!(
            out,
            "\"run\":{},\"seed\":{},\"events\":{},\"max_events\":{max_events},\"window_s\":[{},{}]",
            quote(&exp.raw.name),
            exp.raw.seed,
            evs.len(),
            self.window.0 as f64 / 1e9,
            if self.window.1 == u64::MAX {
                "null".to_string()
            } else {
                (self.window.1 as f64 / 1e9).to_string()
            }
        );
        match self.full_at {
            Some(t) => {
                let _ = write!(
                    out,
                    ",\"truncated\":true,\"truncated_at_s\":{}",
                    t as f64 / 1e9
                );
            }
            None => out.push_str(",\"truncated\":false"),
        }
        out.push_str("}}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_either_side_open_and_bad_ones_say_why() {
        let o = TraceOptions::parse(Some("100..110.5"), Some(7)).unwrap();
        assert_eq!(
            (o.from.0, o.to.0, o.max_events),
            (100_000_000_000, 110_500_000_000, 7)
        );
        let o = TraceOptions::parse(Some("..60"), None).unwrap();
        assert_eq!((o.from, o.to.0), (SimTime::ZERO, 60_000_000_000));
        let o = TraceOptions::parse(Some("5.."), None).unwrap();
        assert_eq!(o.to, SimTime(u64::MAX));
        for (w, why) in [
            ("100", "no '..'"),
            ("a..3", "'a' is not a number"),
            ("10..5", "the end must come after the start"),
            ("-1..5", "'-1' is not a number"),
        ] {
            let e = TraceOptions::parse(Some(w), None).unwrap_err();
            assert!(e.contains(why) && e.contains("START..END"), "{w}: {e}");
        }
        assert!(
            TraceOptions::parse(None, Some(0))
                .unwrap_err()
                .contains(">= 1")
        );
    }

    #[test]
    fn a_log_joins_split_turns_and_stops_at_the_cap() {
        let b = Budget::new(&TraceOptions {
            max_events: 2,
            ..TraceOptions::default()
        });
        let mut log = SliceLog::new(b.clone());
        let seg = |from, to, ctx, switch| Segment {
            from,
            to,
            ctx,
            switch,
        };
        log.push(seg(0, 5, 0, false));
        log.push(seg(5, 9, 0, false)); // the same turn, split by an update
        log.push(seg(9, 10, 1, true));
        log.push(seg(10, 20, 1, false));
        log.push(seg(20, 21, 0, true));
        assert_eq!(log.finish(), vec![seg(0, 9, 0, false), seg(9, 10, 1, true)]);
        assert!(b.full());
        assert_eq!(b.full_at(), Some(20));
    }

    #[test]
    fn only_events_overlapping_the_window_are_kept() {
        let b = Budget::new(&TraceOptions {
            from: SimTime(10),
            to: SimTime(20),
            max_events: 100,
        });
        assert!(!b.in_window(0, 10));
        assert!(b.in_window(0, 11));
        assert!(b.in_window(19, 30));
        assert!(!b.in_window(20, 30));
        assert!(b.in_window(10, 10));
    }
}
