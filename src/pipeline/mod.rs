//! The serving pipeline simulated end to end: streaming ASR -> token-streaming LLM -> TTS per
//! sentence (ASR and TTS optional), on replicas placed on partitions, driven by the workload.
//!
//! Flow of one request: a router picks a replica per stage as the request reaches it. The
//! user streams audio chunks (see `streams`: one [`Event::Chunk`] each only while the replica is idle); each chunk joins the ASR replica's
//! dynamic batcher, which runs batches on the replica's partition; when the last chunk is
//! transcribed the prompt goes to an LLM replica, whose engine runs iterations (chunked
//! prefill, then one token per sequence per iteration) within its KV cache; whenever a
//! sentence's last token appears, and the previous sentence's audio is ready, the sentence
//! joins the TTS replica's batcher. The request ends when the last sentence's audio is ready
//! (end of turn), or fails at its timeout, or when its KV allocation runs out of memory.

use rand_chacha::ChaCha8Rng;

use crate::activity::{Activity, ActivityLog, Budget, JobEnd, Outcome, RequestSpan, TraceOptions};
use crate::arrivals::ArrivalSource;
use crate::engine::{Engine, EventClass, Popped, SimTime, Streams};
use crate::experiment::Experiment;
use crate::experiment::FaultTarget;
use crate::faults::FaultKind;
use crate::hardware::Partition;
use crate::metrics::{Counts, StageSamples};
use crate::profile::Demand;
use crate::profile::{Breakdown, Efficiency, LlmProfile, ModelKind, TtsProfile, exec_time};
use crate::serving::batcher::Decision;
use crate::serving::llm::{KvUsage, StepPlan};
use crate::serving::{Batcher, KvPolicy, LlmEngine, Router};
use crate::sharing::{Device, MpsShare, SoleDevice, TimeSlicer};
use crate::timeline::BusyTimeline;

mod cycles;
mod recovery;
mod solo;
mod streams;
use crate::workload::{Answer, Arrival, WorkloadSpec, chunks_for, poisson_gap_s, user_window};

/// Events of the pipeline model. Classes order same-instant events (see [`EventClass`]).
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A partition's next job completion (the engine's timer of the partition).
    DeviceDone {
        /// Partition index.
        part: u32,
    },
    /// An LLM replica's host-side step preparation is over: plan and submit the iteration.
    LlmStep {
        /// Replica index.
        replica: u32,
        /// The replica's life this was scheduled in (stale after a crash).
        epoch: u32,
    },
    /// A batching replica's oldest request has waited its maximum queue delay.
    BatchTimer {
        /// Replica index.
        replica: u32,
        /// The replica's life this was scheduled in (stale after a crash).
        epoch: u32,
    },
    /// Fault source `source` strikes.
    Fault {
        /// Index into `Experiment::fault_sources`.
        source: u32,
    },
    /// A crashed replica is back (stale if it crashed again meanwhile).
    Recover {
        /// Replica index.
        replica: u32,
        /// The life that ends with this recovery.
        epoch: u32,
    },
    /// The next audio chunk of stream `stream` reaches idle ASR replica `replica` (stale
    /// unless it is the replica's armed chunk; see `streams`).
    Chunk {
        /// Replica index.
        replica: u32,
        /// The stream's number.
        stream: u64,
    },
    /// A closed-loop user joins.
    UserJoin {
        /// User index.
        user: u32,
    },
    /// A closed-loop user finished thinking and starts the next request.
    ThinkOver {
        /// User index.
        user: u32,
    },
    /// An open-loop request arrives.
    Arrival,
    /// A closed-loop user leaves; its in-flight request is cancelled.
    UserLeave {
        /// User index.
        user: u32,
    },
    /// The oldest request still in flight may have reached its timeout (one event at a time
    /// stands for all pending timeouts: they expire in the order requests started).
    Timeout,
}

impl EventClass for Event {
    fn class(&self) -> u8 {
        match self {
            // Work that finishes at an instant is visible to everything else at that instant.
            Event::DeviceDone { .. } => 0,
            Event::LlmStep { .. }
            | Event::BatchTimer { .. }
            | Event::Fault { .. }
            | Event::Recover { .. } => 1,
            Event::Chunk { .. } => 2,
            // A user leaving at the instant it would start a request starts none.
            Event::UserLeave { .. } => 3,
            Event::UserJoin { .. } | Event::ThinkOver { .. } | Event::Arrival => 4,
            // A timeout at the same instant as the completion lets the request complete.
            Event::Timeout => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Active,
    Done,
    Failed,
    Cancelled,
}

/// A request's handle: its slot in the low 32 bits, the slot's generation above. Slots are
/// reused once a request is over, so memory follows the requests in flight, not the total;
/// a stale handle (left in a queue, an event or an engine) no longer matches its slot.
pub type ReqId = u64;

/// The slot a handle points at.
fn slot(id: ReqId) -> usize {
    id as u32 as usize
}

/// A batcher item: the request, and for TTS the text tokens of its sentence, kept with the
/// item so a batch's work never depends on a request that is over; for an ASR chunk, 1 if it
/// is the last of its stream, else 0 (only the last one's completion reads the request).
type Item = (ReqId, u32);

/// Pipeline stages, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Asr = 0,
    Llm = 1,
    Tts = 2,
}

/// Laid out by hand: the fields read at every audio chunk and every token come first, in
/// 32 bytes that, with the alignment, never straddle a cache line.
#[repr(C, align(32))]
struct Request {
    /// Generation of this slot: a handle whose generation differs names a request that is over.
    generation: u32,
    status: Status,
    tts_busy: bool,
    chunks: u32,
    /// Tokens the client has received (a retried generation resumes after these).
    delivered: u32,
    sentences_ready: u32,
    last_token_at: SimTime,
    answer: Answer,
    tts_next: u32,
    /// Retries used.
    retries: u32,
    /// Gaps between its tokens, ns (recorded once it completes).
    itl_ns: Vec<u64>,
    user: Option<u32>,
    /// Replica serving each stage, once routed; `None` again once released.
    routed: [Option<u32>; 3],
    /// Start order among all requests of the run.
    number: u64,
    start: SimTime,
    transcript_at: SimTime,
    admitted_at: Option<SimTime>,
    first_token_at: SimTime,
    handed_at: SimTime,
    first_audio_at: Option<SimTime>,
    tts_ms: Vec<f64>,
}

// The hot fields fill the first 32 bytes exactly.
const _: () = assert!(std::mem::offset_of!(Request, answer) == 32);

struct User {
    active: bool,
    request: Option<ReqId>,
    clips_sent: u32,
}

/// A replica's serving state.
// `repr(C)` keeps the declared order, and the alignment starts each replica on a cache line:
// the fields every ASR or TTS batch touches come first and fill four lines, the LLM's next,
// the cold ones last (the default layout spread the batch fields over more lines).
#[repr(C, align(64))]
struct Replica {
    /// Requests in the batch running on the GPU.
    in_flight: Vec<Item>,
    batcher: Option<Batcher<Item>>,
    /// Audio streams open to this (ASR) replica, in the order their next chunks arrive (ties:
    /// the stream opened first), and the event pending while it is idle.
    streams: Vec<streams::Stream>,
    wake: Option<streams::Wake>,
    /// Batch runtime by size (ASR: the same work every chunk), filled on first use.
    batch_ns: Vec<u64>,
    partition: usize,
    /// Its context on the partition, and its model: 32 bits keep the group in four lines.
    ctx: u32,
    model: u32,
    /// Serving (else crashed and restarting); `epoch` counts its crashes.
    epoch: u32,
    up: bool,
    /// Its partition is shared under MPS (its jobs carry their phases' demands).
    mps: bool,
    stage: Stage,
    batches: u64,
    batch_items: u64,
    /// Boxed: only LLM replicas have one, and it would push the batch fields apart.
    llm: Option<Box<LlmEngine>>,
    /// When the LLM's next iteration is prepared on the host (its `Event::LlmStep`).
    step_at: Option<SimTime>,
    solo: Option<solo::Solo>,
    /// Host-side preparation of each iteration, ns (LLMs).
    step_overhead_ns: u64,
    /// Bytes of one KV block (LLMs).
    kv_block_bytes: u64,
    /// KV blocks held the last time the partition's dynamic memory was updated.
    kv_blocks_seen: u64,
    /// Position among its deployment's replicas (the router's index).
    local: usize,
    routed: u64,
    /// Down intervals `[from, to)` in ns; the last is open (`to` = `u64::MAX`) while down.
    down: Vec<(u64, u64)>,
    /// The fault that took it down, until it is back.
    fault: Option<usize>,
}

// The batch fields fill the replica's first four cache lines and no more.
const _: () = assert!(std::mem::offset_of!(Replica, batch_items) + 8 <= 256);

/// What one replica did, as the run saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaResult {
    /// Requests routed here.
    pub routed: u64,
    /// Batches or LLM iterations run.
    pub batches: u64,
    /// Items (chunks, sentences, sequences) over all batches.
    pub batch_items: u64,
    /// KV cache use (LLMs).
    pub kv: Option<KvUsage>,
    /// Intervals spent down (crashed, restarting), `[from, to)` ns, within the run.
    pub down: Vec<(u64, u64)>,
}

/// One fault as it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultEvent {
    /// When, ns.
    pub at_ns: u64,
    /// Kind.
    pub kind: FaultKind,
    /// What it struck.
    pub target: FaultTarget,
    /// Replicas it took down.
    pub replicas: Vec<usize>,
    /// When the last of them was back, ns (`None` if still down at the end).
    pub recovered_ns: Option<u64>,
    /// Requests it failed, and requests the gateway retried elsewhere.
    pub failed: u64,
    /// See `failed`.
    pub retried: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Request accounting.
    pub counts: Counts,
    /// Latency samples of successful requests.
    pub samples: StageSamples,
    /// Simulated wall time used for throughput, seconds.
    pub duration_s: f64,
    /// Kernel-busy ns per partition.
    pub busy_ns: Vec<u64>,
    /// Context-switch ns per partition.
    pub switching_ns: Vec<u64>,
    /// Most memory held per partition (start-up footprints plus on-demand KV), bytes.
    pub peak_memory_bytes: Vec<u64>,
    /// Per replica, in the experiment's order.
    pub replicas: Vec<ReplicaResult>,
    /// Tokens generated for completed requests.
    pub output_tokens: u64,
    /// Completed requests within the SLO's request latency (0 without an SLO).
    pub good: u64,
    /// Faults, in order.
    pub faults: Vec<FaultEvent>,
    /// Busy and switching time per time bucket, per partition (none without timelines,
    /// see [`Simulation::with_timelines`]).
    pub timelines: Vec<BusyTimeline>,
    /// What the GPUs did, for a trace (only with [`Simulation::with_activity`]).
    pub activity: Option<Activity>,
    /// Events processed.
    pub events: u64,
}

/// One simulation run of an experiment.
pub struct Simulation<'a> {
    exp: &'a Experiment,
    engine: Engine<Event>,
    slicers: Vec<Device>,
    /// Time of each partition's next completion, if any (its timer, unless a solo LLM replica
    /// runs ahead on it).
    armed: Vec<Option<SimTime>>,
    replicas: Vec<Replica>,
    /// Router of each stage's deployment (none for a stage not deployed).
    routers: [Option<Router>; 3],
    /// Global replica indices of each stage's deployment.
    stage_replicas: [Vec<usize>; 3],
    /// Memory per partition: held from start-up, and grown by on-demand KV caches.
    static_bytes: Vec<u64>,
    dynamic_bytes: Vec<u64>,
    peak_bytes: Vec<u64>,
    requests: Vec<Request>,
    /// Slots of requests that are over, to reuse.
    free_slots: Vec<u32>,
    users: Vec<User>,
    answers_rng: ChaCha8Rng,
    arrivals_rng: ChaCha8Rng,
    routing_rng: ChaCha8Rng,
    counts: Counts,
    samples: StageSamples,
    output_tokens: u64,
    end: SimTime,
    timeout_ns: u64,
    /// Timeout deadlines of started requests, in start order, and whether an
    /// `Event::Timeout` is pending.
    deadlines: std::collections::VecDeque<(SimTime, ReqId)>,
    timeout_armed: bool,
    /// When the last request completed or failed (an open loop's run ends there).
    last_outcome: SimTime,
    faults_rng: ChaCha8Rng,
    faults: Vec<FaultEvent>,
    good: u64,
    /// Open-loop arrivals, and the next one (scheduled as `Event::Arrival`).
    source: Option<ArrivalSource>,
    next_arrival: Option<Arrival>,
    /// Audio streams opened so far, and the time between a stream's chunks.
    streams_opened: u64,
    chunk_interval_ns: u64,
    /// Class of the event being handled (orders it against chunks not yet queued).
    current_class: u8,
    /// Tokens of the LLM iteration being retired (a buffer reused by every iteration).
    tokens: Vec<(ReqId, u32)>,
    /// The LLM iteration being planned (a buffer reused by every plan).
    plan: StepPlan,
    /// Order of the event being handled among its class's same-instant events (its
    /// partition, for a completion).
    current_order: u64,
    /// A solo LLM replica or a jumping ASR replica is catching up with the clock: its
    /// iterations and batches schedule nothing.
    committing: bool,
    /// A completion is being handled: its partition's timer is set once, after the finished
    /// job is retired, not also for the next batch handed over before that.
    holding_timer: bool,
    /// Each solo replica's look-ahead, by replica (see `solo`).
    ahead: Vec<solo::Ahead>,
    /// The plan a look-ahead's iteration is planned into (a buffer reused by every one).
    ahead_plan: StepPlan,
    /// The LLM replica alone on each partition, if it may run ahead.
    solo_of: Vec<Option<u32>>,
    /// Most iterations one look-ahead covers (see [`Simulation::with_look_ahead`]).
    look_ahead: usize,
    /// Idle ASR replicas wait for their next dispatch, not for each chunk (see `streams`).
    lazy_chunks: bool,
    /// Busy timelines are recorded (see [`Simulation::with_timelines`]).
    timelines: bool,
    /// ASR replicas alone on their partition jump over repeating batches (see `cycles`).
    cycles: bool,
    /// Each replica's noted dispatch states and jump, by replica.
    watch: Vec<cycles::Watch>,
    /// The replica jumping on each partition, if any.
    cycling_on: Vec<Option<u32>>,
    /// A state being compared (a buffer reused by every dispatch).
    cycle_scratch: Vec<u64>,
    /// The ASR replica that dispatched a batch during the event being handled.
    dispatched: Option<u32>,
    /// Jobs and requests recorded for a trace (see [`Simulation::with_activity`]).
    activity: Option<Box<ActivityLog>>,
}

impl<'a> Simulation<'a> {
    /// Prepare a run of `exp` with its seed.
    pub fn new(exp: &'a Experiment) -> Self {
        let streams = Streams::new(exp.raw.seed);
        let mut tenants = vec![0usize; exp.partitions.len()];
        for r in &exp.replicas {
            tenants[r.partition] += 1;
        }
        let mut slicers: Vec<Device> = exp
            .partitions
            .iter()
            .zip(&tenants)
            .map(|(p, &n)| {
                if p.mps {
                    Device::Mps(Box::new(MpsShare::new(
                        p.resources.sms,
                        p.resources.mem_bw_bytes_per_s,
                    )))
                } else if n == 1 {
                    Device::Sole(SoleDevice::new())
                } else {
                    Device::Sliced(Box::new(TimeSlicer::new(p.time_slice_ns, p.switch_ns)))
                }
            })
            .collect();
        let mut static_bytes = vec![0u64; exp.partitions.len()];
        let mut replicas = Vec::new();
        let mut stage_replicas: [Vec<usize>; 3] = Default::default();
        let mut routers: [Option<Router>; 3] = Default::default();
        for (mi, d) in exp.deployments.iter().enumerate() {
            let stage = match exp.models[mi].kind {
                ModelKind::Asr(_) => Stage::Asr,
                ModelKind::Llm(_) => Stage::Llm,
                ModelKind::Tts(_) => Stage::Tts,
            };
            stage_replicas[stage as usize] = d.replicas.clone();
            routers[stage as usize] = Some(Router::new(d.routing, d.replicas.len()));
        }
        for (i, r) in exp.replicas.iter().enumerate() {
            let ctx = slicers[r.partition].add_context(r.active_thread_pct);
            static_bytes[r.partition] += r.footprint_bytes;
            let stage = match exp.models[r.model].kind {
                ModelKind::Asr(_) => Stage::Asr,
                ModelKind::Llm(_) => Stage::Llm,
                ModelKind::Tts(_) => Stage::Tts,
            };
            let local = exp.deployments[r.model]
                .replicas
                .iter()
                .position(|&g| g == i)
                .expect("invariant: a replica belongs to its deployment");
            replicas.push(Replica {
                partition: r.partition,
                ctx: u32::try_from(ctx).expect("invariant: contexts fit in 32 bits"),
                model: u32::try_from(r.model).expect("invariant: models fit in 32 bits"),
                stage,
                local,
                batcher: r.llm.is_none().then(|| Batcher::new(r.batching.clone())),
                in_flight: Vec::new(),
                streams: Vec::new(),
                wake: None,
                llm: r.llm.map(|cfg| Box::new(LlmEngine::new(cfg))),
                batch_ns: Vec::new(),
                batches: 0,
                batch_items: 0,
                routed: 0,
                step_overhead_ns: match &exp.models[r.model].kind {
                    ModelKind::Llm(l) => SimTime::from_micros_f64(l.step_overhead_us).0,
                    _ => 0,
                },
                kv_block_bytes: r.kv_block_bytes,
                kv_blocks_seen: 0,
                up: true,
                mps: false, // set below, once every context is on its partition
                epoch: 0,
                down: Vec::new(),
                fault: None,
                step_at: None,
                solo: None,
            });
        }
        for r in &mut replicas {
            r.mps = slicers[r.partition].needs_phases();
        }
        let mut solo_of = vec![None; slicers.len()];
        for (i, r) in replicas.iter().enumerate() {
            if r.llm.is_some() && matches!(&slicers[r.partition], Device::Sole(_)) {
                solo_of[r.partition] = Some(i as u32);
            }
        }
        let ahead = (0..replicas.len())
            .map(|_| solo::Ahead::default())
            .collect();
        let watch = (0..replicas.len())
            .map(|_| cycles::Watch::default())
            .collect();
        let n_partitions = slicers.len();
        let mut engine = Engine::new();
        engine.use_timers(slicers.len(), Event::DeviceDone { part: 0 }.class());
        Simulation {
            exp,
            engine,
            armed: vec![None; slicers.len()],
            slicers,
            replicas,
            routers,
            stage_replicas,
            peak_bytes: static_bytes.clone(),
            dynamic_bytes: vec![0; static_bytes.len()],
            static_bytes,
            requests: Vec::new(),
            free_slots: Vec::new(),
            users: Vec::new(),
            answers_rng: streams.stream("answers"),
            arrivals_rng: streams.stream("arrivals"),
            routing_rng: streams.stream("routing"),
            faults_rng: streams.stream("faults"),
            faults: Vec::new(),
            good: 0,
            counts: Counts::default(),
            samples: StageSamples::new(
                exp.raw
                    .metrics
                    .as_ref()
                    .is_some_and(|m| m.percentiles == crate::experiment::Percentiles::Streaming),
            ),
            output_tokens: 0,
            end: SimTime::from_secs_f64(exp.duration_s),
            timeout_ns: SimTime::from_secs_f64(exp.raw.workload.timeout_s()).0,
            last_outcome: SimTime::ZERO,
            deadlines: std::collections::VecDeque::new(),
            timeout_armed: false,
            source: ArrivalSource::new(&exp.raw.workload, exp.trace.clone()),
            next_arrival: None,
            streams_opened: 0,
            chunk_interval_ns: exp
                .raw
                .audio
                .as_ref()
                .map_or(0, |a| SimTime::from_millis_f64(a.chunk_interval_ms).0),
            current_class: 0,
            tokens: Vec::new(),
            plan: StepPlan::default(),
            current_order: 0,
            committing: false,
            holding_timer: false,
            ahead,
            ahead_plan: StepPlan::default(),
            solo_of,
            look_ahead: solo::MAX_AHEAD,
            lazy_chunks: true,
            timelines: true,
            cycles: true,
            watch,
            cycling_on: vec![None; n_partitions],
            cycle_scratch: Vec::new(),
            dispatched: None,
            activity: None,
        }
    }

    /// The same run with every LLM step and completion as its own event (no replica runs
    /// ahead of the queue, see `solo`), every chunk that reaches an idle ASR replica as its
    /// own event (see `streams`) and every ASR batch as its own (no jump over repeating ones,
    /// see `cycles`). Results are identical, only slower; this exists so that tests can
    /// check that.
    pub fn without_run_ahead(mut self) -> Self {
        self.solo_of.iter_mut().for_each(|s| *s = None);
        self.lazy_chunks = false;
        self.cycles = false;
        self
    }

    /// Most iterations one look-ahead of a solo LLM replica covers (from 1 to 256, the
    /// default). Results do not depend on it, only the work a look-ahead may waste; this
    /// exists so that tests can make look-aheads stop at the limit often.
    pub fn with_look_ahead(mut self, iterations: usize) -> Self {
        self.look_ahead = iterations.clamp(1, solo::MAX_AHEAD);
        self
    }

    /// Whether to record busy timelines (the default). Without them `RunResult::timelines`
    /// is empty, for callers that only summarise (sweeps, plans), and ASR replicas alone on
    /// their partition may jump over repeating batches (see `cycles`): fewer events, nothing
    /// else changes.
    pub fn with_timelines(mut self, record: bool) -> Self {
        self.timelines = record;
        self
    }

    /// Also record what the GPUs did, for a trace (see [`crate::activity`]): every job on
    /// every partition, the turns and switches of time-sliced ones, every request, within
    /// `opts`' window and cap. Results are the same; ASR replicas do not jump over repeating
    /// batches (as while busy timelines are recorded, see `cycles`), so that every batch
    /// is seen, which only adds events.
    pub fn with_activity(mut self, opts: &TraceOptions) -> Self {
        let budget = Budget::new(opts);
        for s in &mut self.slicers {
            s.record_slices(&budget);
        }
        self.activity = Some(Box::new(ActivityLog::new(budget, self.replicas.len())));
        self.cycles = false;
        self
    }

    /// Run to the end and return the results.
    pub fn run(self) -> RunResult {
        self.run_observed(|_, _| {})
    }

    /// [`Self::run`], calling `progress(simulated time, events so far)` every 65,536 events
    /// (for a progress display; it cannot change the run).
    pub fn run_observed(mut self, mut progress: impl FnMut(SimTime, u64)) -> RunResult {
        if self.timelines {
            let bucket_ns = BusyTimeline::width_for(self.end);
            self.slicers
                .iter_mut()
                .for_each(|s| s.record_timeline(bucket_ns));
        }
        match &self.exp.raw.workload {
            WorkloadSpec::ClosedLoop(c) => {
                for u in 0..c.users {
                    let (start, stop) =
                        user_window(u, c.users, c.ramp_up_s, c.hold_s, c.ramp_down_s);
                    self.users.push(User {
                        active: false,
                        request: None,
                        clips_sent: 0,
                    });
                    self.engine
                        .schedule(SimTime::from_secs_f64(start), Event::UserJoin { user: u });
                    self.engine
                        .schedule(SimTime::from_secs_f64(stop), Event::UserLeave { user: u });
                }
            }
            _ => self.schedule_next_arrival(),
        }
        for (i, f) in self.exp.fault_sources.iter().enumerate() {
            let at = match f.rate_per_s {
                Some(rate) => SimTime::from_secs_f64(poisson_gap_s(rate, &mut self.faults_rng)),
                None => SimTime::from_secs_f64(f.at_s),
            };
            if at < self.end {
                self.engine.schedule(at, Event::Fault { source: i as u32 });
            }
        }
        let closed = matches!(self.exp.raw.workload, WorkloadSpec::ClosedLoop(_));
        while let Some((now, next)) = self.engine.pop_any() {
            let ev = match next {
                Popped::Event(ev) => ev,
                Popped::Timer(part) => Event::DeviceDone { part: part as u32 },
            };
            if closed && now > self.end {
                break;
            }
            self.handle(now, ev);
            if self.engine.processed() & 0xFFFF == 0 {
                progress(now, self.engine.processed());
            }
            // An open loop is over once no request is in flight and none is to come (the
            // pending timeouts of finished requests do not extend it).
            if !closed && self.next_arrival.is_none() && self.in_flight() == 0 {
                break;
            }
        }
        // Solo LLM replicas and jumping ASR replicas catch up with where the run stopped: the
        // closed loop's window, or the last event handled.
        let bound = if closed {
            (self.end, u8::MAX, u64::MAX)
        } else {
            (self.engine.now(), self.current_class, self.current_order)
        };
        self.solo_settle_to(bound);
        self.cycle_settle_all(bound);
        // Bring every partition's accounting to the end of the measured window: the closed
        // loop's fixed window, or (open loop, which drains) the last outcome.
        let end = if closed {
            self.end
        } else {
            self.end.max(self.last_outcome)
        };
        let mut busy = Vec::new();
        let mut switching = Vec::new();
        for s in &mut self.slicers {
            if s.next_completion().is_none_or(|c| c >= end) {
                s.advance(end);
            }
            busy.push(s.busy_ns());
            switching.push(s.switching_ns());
        }
        let activity = self.activity_finish(end);
        let replicas = self
            .replicas
            .iter_mut()
            .map(|r| ReplicaResult {
                routed: r.routed,
                batches: r.batches,
                batch_items: r.batch_items,
                kv: r.llm.as_mut().map(|e| e.usage(end.0)),
                down: r
                    .down
                    .iter()
                    .map(|&(a, b)| (a.min(end.0), b.min(end.0)))
                    .filter(|(a, b)| a < b)
                    .collect(),
            })
            .collect();
        RunResult {
            counts: self.counts,
            samples: self.samples,
            duration_s: end.as_secs_f64(),
            busy_ns: busy,
            switching_ns: switching,
            peak_memory_bytes: self.peak_bytes,
            replicas,
            output_tokens: self.output_tokens,
            good: self.good,
            faults: self.faults,
            events: self.engine.processed(),
            timelines: self.slicers.iter().filter_map(Device::timeline).collect(),
            activity,
        }
    }

    fn handle(&mut self, now: SimTime, ev: Event) {
        self.current_class = ev.class();
        self.current_order = match ev {
            Event::DeviceDone { part } => u64::from(part),
            Event::Chunk { stream, .. } => stream,
            _ => 0,
        };
        match ev {
            Event::DeviceDone { part } => {
                let p = part as usize;
                if let Some(r) = self.solo_owner(p) {
                    self.solo_arrive(r, false); // a completion is always handled
                }
                if let Some(r) = self.cycling_owner(p) {
                    self.cycle_settle(r, self.current_key());
                    if self.armed[p] != Some(now) {
                        return; // the horizon of a replica running ahead, not a completion
                    }
                }
                self.device_done(now, p);
            }
            Event::LlmStep { replica, epoch } => {
                let r = replica as usize;
                if self.replicas[r].epoch != epoch {
                    return;
                }
                if !self.solo_arrive(r, true) {
                    return;
                }
                if self.replicas[r].step_at == Some(now) {
                    self.replicas[r].step_at = None;
                    self.llm_submit(now, r);
                }
            }
            Event::BatchTimer { replica, epoch } => {
                let r = replica as usize;
                if self.replicas[r].epoch == epoch {
                    self.batch_timer(now, r);
                }
            }
            Event::Chunk { replica, stream } => {
                self.chunk_arrives(now, replica as usize, stream);
            }
            Event::Fault { source } => {
                self.solo_settle_all(); // a fault may take any replica down
                self.fault(now, source as usize);
            }
            Event::Recover { replica, epoch } => self.recover(now, replica as usize, epoch),
            Event::UserJoin { user } => {
                self.users[user as usize].active = true;
                self.start_request(now, Some(user), None);
            }
            Event::ThinkOver { user } => {
                if self.users[user as usize].active {
                    self.start_request(now, Some(user), None);
                }
            }
            Event::Arrival => {
                let a = self.next_arrival.take();
                self.start_request(now, None, a.as_ref());
                self.schedule_next_arrival();
            }
            Event::UserLeave { user } => {
                let u = &mut self.users[user as usize];
                u.active = false;
                if let Some(r) = u.request.take()
                    && self.is_active(r)
                {
                    self.solo_interrupt_for(r);
                    self.requests[slot(r)].status = Status::Cancelled;
                    self.counts.cancelled += 1;
                    self.release_all(r);
                    if self.activity.is_some() {
                        self.trace_request(now, r, Outcome::Cancelled);
                    }
                    self.retire(r);
                }
            }
            Event::Timeout => self.expire(now),
        }
        if let Some(r) = self.dispatched.take() {
            self.cycle_watch(r as usize);
        }
    }

    /// The job on partition `p` finishes at `now` (its `Event::DeviceDone`, or a jumping
    /// ASR replica catching up).
    fn device_done(&mut self, now: SimTime, p: usize) {
        self.armed[p] = None;
        let (_, token) = self.slicers[p].finishing(now);
        let replica = token as usize;
        // A batching replica hands the GPU its next batch before the finished one is
        // retired, so that it keeps its turn (see `TimeSlicer::finishing`).
        let finished = std::mem::take(&mut self.replicas[replica].in_flight);
        if self.activity.is_some() && self.replicas[replica].stage != Stage::Llm {
            // Before the next batch starts; an LLM iteration ends with its tokens.
            let reqs = finished.iter().map(|&(q, _)| q);
            self.trace_job(None, now, replica, reqs, JobEnd::Done);
        }
        if self.replicas[replica].batcher.is_some() {
            self.holding_timer = true;
            // Chunks that arrived during the batch join the queue before it decides.
            self.catch_up(replica, now, 0);
            let d = self.replicas[replica]
                .batcher
                .as_mut()
                .expect("invariant: checked above")
                .finish(now.0);
            self.apply(now, replica, d);
            self.arm_chunk(replica);
            self.holding_timer = false;
        }
        self.slicers[p].complete(now);
        self.reschedule(p);
        match self.replicas[replica].stage {
            Stage::Asr => {
                for &(req, last) in &finished {
                    self.asr_chunk_done(now, req, last == 1);
                }
            }
            Stage::Tts => {
                for &(req, _) in &finished {
                    self.tts_sentence_done(now, req);
                }
            }
            Stage::Llm => self.llm_iteration_done(now, replica),
        }
        if let Some(b) = self.replicas[replica].batcher.as_mut() {
            b.recycle(finished);
        }
    }

    /// The batch timer of replica `r` fires at `now`.
    fn batch_timer(&mut self, now: SimTime, r: usize) {
        if !self.take_batch_timer(r, now) {
            return;
        }
        let d = self.replicas[r]
            .batcher
            .as_mut()
            .expect("invariant: timer of a batching replica")
            .timer(now.0);
        self.apply(now, r, d);
    }

    /// Fail every request whose deadline has come, then wait for the oldest one still in
    /// flight (requests already over are dropped from the queue without an event each).
    fn expire(&mut self, now: SimTime) {
        self.timeout_armed = false;
        while let Some(&(at, req)) = self.deadlines.front() {
            let active = self.is_active(req);
            if active && at > now {
                self.timeout_armed = true;
                self.engine.schedule(at, Event::Timeout);
                return;
            }
            self.deadlines.pop_front();
            if active {
                self.fail(now, req);
            }
        }
    }

    /// Pull the next open-loop arrival and schedule it.
    fn schedule_next_arrival(&mut self) {
        let Some(src) = self.source.as_mut() else {
            return;
        };
        self.next_arrival = src.next(&mut self.arrivals_rng);
        if let Some(a) = &self.next_arrival {
            self.engine.schedule(SimTime(a.at_ns), Event::Arrival);
        }
    }

    /// Whether `req` names a request that is still in flight (not a stale handle).
    fn is_active(&self, req: ReqId) -> bool {
        let r = &self.requests[slot(req)];
        r.generation == (req >> 32) as u32 && r.status == Status::Active
    }

    /// Requests started and not yet over.
    fn in_flight(&self) -> u64 {
        let c = &self.counts;
        c.started - c.completed - c.failed - c.cancelled
    }

    /// Route `req` into `stage`: pick a replica and count it outstanding there.
    /// `None` when every replica of the stage is down (the gateway answers 503).
    fn route(&mut self, req: ReqId, stage: Stage) -> Option<usize> {
        let s = stage as usize;
        let router = self.routers[s]
            .as_mut()
            .expect("invariant: routing into a deployed stage");
        let local = router.pick(&mut self.routing_rng)?;
        let global = self.stage_replicas[s][local];
        self.replicas[global].routed += 1;
        self.requests[slot(req)].routed[s] = Some(global as u32);
        Some(global)
    }

    /// `req` is done with `stage`: no longer outstanding on its replica.
    fn release(&mut self, req: ReqId, stage: Stage) {
        let s = stage as usize;
        if let (Stage::Asr, Some(g)) = (stage, self.requests[slot(req)].routed[s]) {
            self.close_stream(req, g as usize);
        }
        if let Some(g) = self.requests[slot(req)].routed[s].take() {
            let local = self.replicas[g as usize].local;
            self.routers[s]
                .as_mut()
                .expect("invariant: routed stage")
                .done(local);
        }
    }

    fn release_all(&mut self, req: ReqId) {
        for stage in [Stage::Asr, Stage::Llm, Stage::Tts] {
            self.release(req, stage);
        }
    }

    /// Start a request: a closed-loop user's, or an open-loop arrival with the attributes its
    /// trace row gave (the others are drawn).
    fn start_request(&mut self, now: SimTime, user: Option<u32>, given: Option<&Arrival>) {
        let given_audio = given.and_then(|a| a.audio_s);
        let chunks = self.exp.raw.audio.as_ref().map_or(0, |a| {
            let clip = match (user, given_audio) {
                (_, Some(s)) => s,
                (Some(u), None) => {
                    let us = &mut self.users[u as usize];
                    let c = a.clips_s[us.clips_sent as usize % a.clips_s.len()];
                    us.clips_sent += 1;
                    c
                }
                (None, None) => a.clips_s[self.counts.started as usize % a.clips_s.len()],
            };
            chunks_for(clip, a.chunk_ms)
        });
        let answer = Answer::draw_with(
            &self.exp.raw.answers,
            &mut self.answers_rng,
            given.and_then(|a| a.prompt_tokens),
            given.and_then(|a| a.output_tokens),
            given.and_then(|a| a.sentences),
        );
        let request = Request {
            user,
            generation: 0,
            number: self.counts.started,
            status: Status::Active,
            start: now,
            chunks,
            routed: [None; 3],
            answer,
            transcript_at: now,
            admitted_at: None,
            first_token_at: now,
            last_token_at: now,
            sentences_ready: 0,
            tts_next: 0,
            tts_busy: false,
            handed_at: now,
            first_audio_at: None,
            tts_ms: Vec::new(),
            itl_ns: Vec::new(),
            delivered: 0,
            retries: 0,
        };
        // Reuse the slot of a request that is over, under its next generation.
        let id = match self.free_slots.pop() {
            Some(s) => {
                // The slot's sample buffers are kept (emptied): no allocation per request.
                let old = &mut self.requests[s as usize];
                let (generation, tts_ms, itl_ns) = (
                    old.generation,
                    std::mem::take(&mut old.tts_ms),
                    std::mem::take(&mut old.itl_ns),
                );
                self.requests[s as usize] = Request {
                    generation,
                    tts_ms,
                    itl_ns,
                    ..request
                };
                (u64::from(generation) << 32) | u64::from(s)
            }
            None => {
                self.requests.push(request);
                (self.requests.len() - 1) as u64
            }
        };
        if let Some(u) = user {
            self.users[u as usize].request = Some(id);
        }
        self.counts.started += 1;
        // Deadlines come in start order, so a queue holds them; one event waits on its head.
        self.deadlines.push_back((now.plus(self.timeout_ns), id));
        if !self.timeout_armed {
            self.timeout_armed = true;
            self.engine
                .schedule(now.plus(self.timeout_ns), Event::Timeout);
        }
        if self.routers[Stage::Asr as usize].is_some() {
            self.asr_enter(now, id);
        } else {
            self.llm_enter(now, id);
        }
    }

    /// Open the audio stream on an ASR replica (again, after a retry).
    fn asr_enter(&mut self, now: SimTime, req: ReqId) {
        let Some(replica) = self.route(req, Stage::Asr) else {
            self.counts.unavailable += 1;
            self.fail(now, req);
            return;
        };
        let chunks = self.requests[slot(req)].chunks;
        self.open_stream(now, req, replica, chunks);
    }

    /// Carry out a batcher's decision.
    fn apply(&mut self, now: SimTime, replica: usize, d: Decision<Item>) {
        match d {
            Decision::Wait => {}
            // An idle ASR replica's timer is part of its next dispatch (see `streams`).
            Decision::Arm(_) if self.waits_for_dispatch(replica) => {}
            Decision::Arm(at) => self.engine.schedule(
                SimTime(at),
                Event::BatchTimer {
                    replica: replica as u32,
                    epoch: self.replicas[replica].epoch,
                },
            ),
            Decision::Dispatch(items) => {
                if self.replicas[replica].stage == Stage::Asr {
                    self.dispatched = Some(replica as u32);
                }
                let (ns, phases) = self.batch_time(replica, &items);
                let r = &mut self.replicas[replica];
                r.batches += 1;
                r.batch_items += items.len() as u64;
                let n = items.len() as u32;
                r.in_flight = items;
                self.submit(now, replica, n, ns, phases);
            }
        }
    }

    /// Runtime of a batch alone on the replica's partition, from the kernel profile at that
    /// size, and (under MPS only) its phases' demands.
    fn batch_time(&mut self, replica: usize, items: &[Item]) -> (u64, Vec<Demand>) {
        let exp = self.exp;
        let r = &mut self.replicas[replica];
        let mps = r.mps;
        let m = &exp.models[r.model as usize];
        let part = &exp.partitions[r.partition].resources;
        let mut phases = Vec::new();
        match &m.kind {
            ModelKind::Asr(a) => {
                let n = items.len();
                if r.batch_ns.len() <= n {
                    r.batch_ns.resize(n + 1, 0);
                }
                // The work only for a size not timed yet, or for its phases under MPS.
                if r.batch_ns[n] == 0 || mps {
                    let work = a.chunk.work(n as u32);
                    if r.batch_ns[n] == 0 {
                        r.batch_ns[n] = exec_time(&work, part, &m.efficiency).ns();
                    }
                    if mps {
                        phases.push(Demand::of(&work, part, &m.efficiency));
                    }
                }
                (r.batch_ns[n], phases)
            }
            ModelKind::Tts(t) => {
                let tokens: Vec<u32> = items.iter().map(|&(_, tokens)| tokens).collect();
                let sink = if mps { Some(&mut phases) } else { None };
                let ns = tts_batch(t, &m.efficiency, part, &tokens, sink).ns();
                (ns, phases)
            }
            ModelKind::Llm(_) => unreachable!("invariant: llm replicas do not batch requests"),
        }
    }

    /// Hand the partition a job of replica `replica` with `items` items (for a trace).
    /// Inline, as it was before the trace's check: two callers, both hot.
    #[inline]
    fn submit(
        &mut self,
        now: SimTime,
        replica: usize,
        items: u32,
        work_ns: u64,
        phases: Vec<Demand>,
    ) {
        let Replica { partition, ctx, .. } = self.replicas[replica];
        self.slicers[partition].submit(now, ctx as usize, replica as u64, work_ns, phases);
        if let Some(a) = self.activity.as_deref_mut() {
            a.start(replica, now, items);
        }
        if !self.holding_timer {
            self.reschedule(partition);
        }
    }

    /// Keep the partition's timer at its next completion.
    fn reschedule(&mut self, part: usize) {
        let next = self.slicers[part].next_completion();
        if self.committing {
            // A solo replica catching up: its completions are already in the past.
            self.armed[part] = next;
            return;
        }
        if next == self.armed[part] {
            return; // the timer is still right
        }
        self.armed[part] = next;
        // Same-instant completions run in partition order (the timers' order), whenever they
        // were set, so that how the queue got there cannot change the order.
        self.engine.set_timer(part, next);
    }

    /// An ASR chunk of `req` is done: the transcript is ready if it was the stream's `last`.
    /// The chunks of a stream queue and run in order on one replica (a crash drops them all,
    /// and a retry streams the clip again), so when the last is done, all are.
    fn asr_chunk_done(&mut self, now: SimTime, req: ReqId, last: bool) {
        if !last || !self.is_active(req) {
            return; // a chunk before the last, or of a request that is over
        }
        self.requests[slot(req)].transcript_at = now;
        self.release(req, Stage::Asr);
        self.llm_enter(now, req);
    }

    /// The prompt is ready: queue it at an LLM replica.
    fn llm_enter(&mut self, now: SimTime, req: ReqId) {
        let Some(replica) = self.route(req, Stage::Llm) else {
            self.counts.unavailable += 1;
            self.fail(now, req);
            return;
        };
        let r = &self.requests[slot(req)];
        let (prompt, out) = (r.answer.prompt_tokens, r.answer.output_tokens());
        let engine = self.replicas[replica]
            .llm
            .as_mut()
            .expect("invariant: llm replica");
        if !engine.fits(prompt, out) {
            self.counts.rejected += 1;
            self.fail(now, req);
            return;
        }
        self.solo_interrupt(replica);
        let engine = self.replicas[replica]
            .llm
            .as_mut()
            .expect("invariant: llm replica");
        if engine.enqueue(now.0, req, prompt, out) {
            self.llm_wake(now, replica);
        }
    }

    /// The engine's loop wakes up: prepare the next iteration on the host first.
    fn llm_wake(&mut self, now: SimTime, replica: usize) {
        let at = now.plus(self.replicas[replica].step_overhead_ns);
        self.replicas[replica].step_at = Some(at);
        if self.committing {
            return; // a solo replica's next step stays local (see `solo`)
        }
        self.engine.schedule(
            at,
            Event::LlmStep {
                replica: replica as u32,
                epoch: self.replicas[replica].epoch,
            },
        );
    }

    /// Blocks the replica's on-demand cache could still take from its partition, were its
    /// own cache `seen` blocks (as last tracked: `kv_blocks_seen`, unless looking ahead).
    fn free_kv_blocks(&self, replica: usize, seen: u64) -> u64 {
        let r = &self.replicas[replica];
        if r.llm
            .as_ref()
            .is_some_and(|e| e.config().kv != KvPolicy::OnDemand)
        {
            return 0; // a preallocated cache never asks (its partition's state is not read)
        }
        let p = r.partition;
        let total = self.exp.partitions[p].resources.memory_bytes;
        let dynamic =
            self.dynamic_bytes[p] + seen * r.kv_block_bytes - r.kv_blocks_seen * r.kv_block_bytes;
        let mut free = total.saturating_sub(self.static_bytes[p] + dynamic);
        let spec = &self.exp.replicas[replica];
        if let Some(limit) = spec.memory_limit_bytes {
            // An MPS client cannot pin more than its limit, whatever the card has free.
            let own = spec.footprint_bytes + seen * r.kv_block_bytes;
            free = free.min(limit.saturating_sub(own));
        }
        free / r.kv_block_bytes.max(1)
    }

    /// Bring the partition's dynamic memory up to date with an on-demand engine's blocks.
    fn track_kv(&mut self, replica: usize) {
        let engine = self.replicas[replica]
            .llm
            .as_ref()
            .expect("invariant: llm replica");
        self.track_kv_blocks(replica, engine.used_blocks());
    }

    /// [`Self::track_kv`] for an engine that holds `now_blocks` blocks.
    fn track_kv_blocks(&mut self, replica: usize, now_blocks: u64) {
        let r = &mut self.replicas[replica];
        let engine = r.llm.as_ref().expect("invariant: llm replica");
        if engine.config().kv != KvPolicy::OnDemand {
            return;
        }
        let p = r.partition;
        self.dynamic_bytes[p] = self.dynamic_bytes[p] + now_blocks * r.kv_block_bytes
            - r.kv_blocks_seen * r.kv_block_bytes;
        r.kv_blocks_seen = now_blocks;
        self.peak_bytes[p] = self.peak_bytes[p].max(self.static_bytes[p] + self.dynamic_bytes[p]);
    }

    fn llm_submit(&mut self, now: SimTime, replica: usize) {
        // The plan's lists are reused; a nested submission (a failure that makes another
        // replica catch up) starts from an empty one.
        let mut plan = std::mem::take(&mut self.plan);
        self.llm_submit_with(now, replica, &mut plan);
        self.plan = plan;
    }

    /// Plan LLM replica `replica`'s next iteration at `now` on its engine, with the requests
    /// still live and the blocks its partition has free; false if it sleeps.
    fn llm_plan(&mut self, now: SimTime, replica: usize, plan: &mut StepPlan) -> bool {
        let free = self.free_kv_blocks(replica, self.replicas[replica].kv_blocks_seen);
        let requests = &self.requests;
        let engine = self.replicas[replica]
            .llm
            .as_mut()
            .expect("invariant: llm replica");
        engine.plan_into(
            now.0,
            |req| {
                let r = &requests[slot(req)];
                r.generation == (req >> 32) as u32 && r.status == Status::Active
            },
            free,
            plan,
        )
    }

    fn llm_submit_with(&mut self, now: SimTime, replica: usize, plan: &mut StepPlan) {
        let planned = self.llm_plan(now, replica, plan);
        self.track_kv(replica);
        if !planned {
            return; // everything was cancelled; the loop sleeps until the next request
        }
        for &(req, _) in &plan.admitted {
            self.requests[slot(req)].admitted_at = Some(now);
        }
        for &req in &plan.out_of_memory {
            self.counts.out_of_memory += 1;
            self.fail(now, req);
        }
        if !plan.out_of_memory.is_empty()
            && self.exp.raw.faults.as_ref().is_some_and(|f| f.oom_crashes)
        {
            // The framework does not survive the failed allocation: the process exits.
            self.strike(now, FaultKind::Oom, FaultTarget::Replica(replica));
            return;
        }
        if plan.seqs == 0 {
            if self.replicas[replica]
                .llm
                .as_ref()
                .is_some_and(|e| e.has_work())
            {
                self.llm_wake(now, replica);
            }
            return;
        }
        debug_assert!(
            !self.committing || plan.out_of_memory.is_empty(),
            "invariant: a solo replica's look-ahead stops before a failure"
        );
        let (ns, demand) = self.llm_step_time(replica, plan);
        self.llm_run(now, replica, plan.seqs, ns, demand);
    }

    /// Hand the GPU an iteration of `seqs` sequences that runs `ns` alone (`demand` under
    /// MPS), and count it.
    fn llm_run(
        &mut self,
        now: SimTime,
        replica: usize,
        seqs: u64,
        ns: u64,
        demand: Option<Demand>,
    ) {
        let r = &mut self.replicas[replica];
        r.batches += 1;
        r.batch_items += seqs;
        let phases = demand.map_or_else(Vec::new, |d| vec![d]);
        let items = u32::try_from(seqs).unwrap_or(u32::MAX);
        self.submit(now, replica, items, ns, phases);
    }

    /// Runtime of a planned iteration alone on the replica's partition, and (under MPS
    /// only) its demand.
    fn llm_step_time(&self, replica: usize, plan: &StepPlan) -> (u64, Option<Demand>) {
        self.step_cost(replica).time(plan)
    }

    /// What LLM replica `replica`'s iteration runtimes depend on (a look-ahead asks once for
    /// all its iterations).
    fn step_cost(&self, replica: usize) -> StepCost<'a> {
        let r = &self.replicas[replica];
        let m = &self.exp.models[r.model as usize];
        let ModelKind::Llm(profile) = &m.kind else {
            panic!("invariant: llm replica runs an llm model");
        };
        StepCost {
            profile,
            part: &self.exp.partitions[r.partition].resources,
            eff: &m.efficiency,
            phases: r.mps,
        }
    }

    fn llm_iteration_done(&mut self, now: SimTime, replica: usize) {
        let engine = self.replicas[replica]
            .llm
            .as_mut()
            .expect("invariant: llm replica");
        let mut emitted = std::mem::take(&mut self.tokens);
        engine.finish_step_into(now.0, &mut emitted);
        let more = engine.has_work();
        if self.activity.is_some() {
            let reqs = emitted.iter().map(|&(q, _)| q);
            self.trace_job(None, now, replica, reqs, JobEnd::Done);
        }
        self.track_kv(replica);
        for &(req, generated) in &emitted {
            self.on_token(now, req, generated);
        }
        emitted.clear();
        self.tokens = emitted;
        if more {
            let part = self.replicas[replica].partition;
            if self.solo_of[part] == Some(replica as u32) && !self.committing {
                self.solo_start(now, replica);
            } else {
                self.llm_wake(now, replica);
            }
        }
    }

    fn on_token(&mut self, now: SimTime, req: ReqId, generated: u32) {
        let has_tts = self.routers[Stage::Tts as usize].is_some();
        if !self.is_active(req) {
            return;
        }
        debug_assert!(
            !self.committing || !solo::seen_by_others(&self.requests[slot(req)], generated),
            "invariant: a solo replica's look-ahead stops at a token others see"
        );
        let r = &mut self.requests[slot(req)];
        if generated <= r.delivered {
            return; // a retried generation catching up with what the client already has
        }
        r.delivered = generated;
        if generated == 1 {
            r.first_token_at = now;
        } else {
            r.itl_ns.push(now.since(r.last_token_at));
        }
        r.last_token_at = now;
        if generated == r.answer.output_tokens() {
            self.release(req, Stage::Llm);
            if !has_tts {
                self.complete(now, req);
                return;
            }
        }
        let r = &mut self.requests[slot(req)];
        let next_end = r.answer.sentence_ends.get(r.sentences_ready as usize);
        if next_end == Some(&generated) {
            r.sentences_ready += 1;
            if !r.tts_busy {
                self.tts_handover(now, req);
            }
        }
    }

    /// Hand the next ready sentence of `req` to its TTS replica, if there is one.
    fn tts_handover(&mut self, now: SimTime, req: ReqId) {
        let r = &self.requests[slot(req)];
        if r.tts_busy || r.tts_next >= r.sentences_ready {
            return;
        }
        // The session keeps one TTS replica (one voice) for all its sentences.
        let replica = match r.routed[Stage::Tts as usize] {
            Some(g) => g as usize,
            None => match self.route(req, Stage::Tts) {
                Some(g) => g,
                None => {
                    self.counts.unavailable += 1;
                    self.fail(now, req);
                    return;
                }
            },
        };
        let r = &mut self.requests[slot(req)];
        r.tts_busy = true;
        r.handed_at = now;
        let tokens = sentence_tokens(&r.answer, r.tts_next as usize);
        let d = self.replicas[replica]
            .batcher
            .as_mut()
            .expect("invariant: tts replicas batch")
            .push(now.0, (req, tokens));
        self.apply(now, replica, d);
    }

    fn tts_sentence_done(&mut self, now: SimTime, req: ReqId) {
        if !self.is_active(req) {
            return;
        }
        let r = &mut self.requests[slot(req)];
        r.tts_busy = false;
        r.tts_ms.push(now.since(r.handed_at) as f64 / 1e6);
        r.first_audio_at.get_or_insert(now);
        r.tts_next += 1;
        if r.tts_next as usize == r.answer.sentence_ends.len() {
            self.complete(now, req);
        } else {
            self.tts_handover(now, req);
        }
    }

    fn complete(&mut self, now: SimTime, req: ReqId) {
        self.requests[slot(req)].status = Status::Done;
        self.counts.completed += 1;
        self.last_outcome = now;
        self.output_tokens += u64::from(self.requests[slot(req)].answer.output_tokens());
        if let Some(slo) = &self.exp.raw.slo
            && now.since(self.requests[slot(req)].start) as f64 <= slo.request_ms * 1e6
        {
            self.good += 1;
        }
        self.release_all(req);
        self.record(now, req);
        self.request_over(now, req);
        if self.activity.is_some() {
            self.trace_request(now, req, Outcome::Completed);
        }
        self.retire(req);
    }

    /// `req` fails now (at its timeout, or for a reason the caller has counted).
    fn fail(&mut self, now: SimTime, req: ReqId) {
        if !self.is_active(req) {
            return;
        }
        self.solo_interrupt_for(req);
        self.requests[slot(req)].status = Status::Failed;
        self.counts.failed += 1;
        self.last_outcome = now;
        self.release_all(req);
        self.request_over(now, req);
        if self.activity.is_some() {
            self.trace_request(now, req, Outcome::Failed);
        }
        self.retire(req);
    }

    /// `req` is over: its slot is free for the next request, under a new generation, and
    /// every handle to it still around goes stale.
    fn retire(&mut self, req: ReqId) {
        let r = &mut self.requests[slot(req)];
        r.generation = r.generation.wrapping_add(1);
        r.tts_ms.clear();
        r.itl_ns.clear();
        self.free_slots.push(slot(req) as u32);
    }

    fn record(&mut self, now: SimTime, req: ReqId) {
        let r = &self.requests[slot(req)];
        let ms = |a: SimTime, b: SimTime| b.since(a) as f64 / 1e6;
        let s = &mut self.samples;
        if r.chunks > 0 {
            s.asr.push(ms(r.start, r.transcript_at));
        }
        if let Some(a) = r.admitted_at {
            s.llm_queue.push(ms(r.transcript_at, a));
        }
        s.llm_ttft.push(ms(r.transcript_at, r.first_token_at));
        let n = r.answer.output_tokens();
        if n >= 2 {
            s.llm_tpot
                .push(ms(r.first_token_at, r.last_token_at) / f64::from(n - 1));
        }
        s.llm_itl.extend_ns(&r.itl_ns);
        s.llm_total.push(ms(r.transcript_at, r.last_token_at));
        for t in &r.tts_ms {
            s.tts.push(*t);
        }
        if let Some(first_audio) = r.first_audio_at {
            s.e2e.push(ms(r.transcript_at, first_audio));
        }
        s.request.push(ms(r.start, now));
    }

    /// A request finished or failed: its user thinks, then starts the next one.
    fn request_over(&mut self, now: SimTime, req: ReqId) {
        let r = &mut self.requests[slot(req)];
        r.tts_ms.clear();
        r.itl_ns.clear();
        let Some(u) = r.user else { return };
        let user = &mut self.users[u as usize];
        if user.request == Some(req) {
            user.request = None;
        }
        if let (true, WorkloadSpec::ClosedLoop(c)) = (user.active, &self.exp.raw.workload) {
            let think = SimTime::from_secs_f64(c.think_time_s);
            self.engine
                .schedule(now.plus(think.0), Event::ThinkOver { user: u });
        }
    }
}

/// Recording for a trace (see [`Simulation::with_activity`]); each returns at once without.
impl Simulation<'_> {
    /// The job of `replica` ends at `now`, having served the requests `reqs`. It was
    /// submitted when `submit` noted it, or (`whole`) at that time with that many items.
    /// Out of line, as are the others: the hot paths keep only the check of `activity`.
    #[cold]
    #[inline(never)]
    fn trace_job(
        &mut self,
        whole: Option<(SimTime, u32)>,
        now: SimTime,
        replica: usize,
        reqs: impl Iterator<Item = ReqId>,
        end: JobEnd,
    ) {
        let Some(a) = self.activity.as_deref_mut() else {
            return;
        };
        if let Some((from, items)) = whole {
            a.start(replica, from, items);
        }
        let mut numbers = Vec::new();
        if a.wants_end(replica, now) {
            for q in reqs {
                let r = &self.requests[slot(q)];
                // A request already over is not named (its slot may serve another by now).
                if r.generation == (q >> 32) as u32 && !numbers.contains(&r.number) {
                    numbers.push(r.number);
                }
            }
        }
        a.end(replica, now, numbers, end);
    }

    /// `req` is over at `now` (or still in flight when the run ends).
    #[cold]
    #[inline(never)]
    fn trace_request(&mut self, now: SimTime, req: ReqId, outcome: Outcome) {
        let Some(a) = self.activity.as_deref_mut() else {
            return;
        };
        a.request(request_span(&self.requests[slot(req)], now, outcome));
    }

    /// Close the recording at the run's `end`: jobs still running and requests still in
    /// flight end there, and the time-sliced partitions hand over their turns.
    fn activity_finish(&mut self, end: SimTime) -> Option<Activity> {
        let mut a = self.activity.take()?;
        a.close(end);
        for r in self.requests.iter().filter(|r| r.status == Status::Active) {
            a.request(request_span(r, end.max(r.start), Outcome::InFlight));
        }
        let mut slices = Vec::new();
        for (p, device) in self.slicers.iter_mut().enumerate() {
            let segs = device.take_slices();
            if segs.is_empty() {
                continue;
            }
            // Contexts were added in replica order (see `new`).
            let on: Vec<u32> = (0..self.replicas.len() as u32)
                .filter(|&r| self.replicas[r as usize].partition == p)
                .collect();
            slices.push((
                p,
                segs.into_iter().map(|s| (s, on[s.ctx as usize])).collect(),
            ));
        }
        Some(a.finish(slices))
    }
}

/// What a trace shows of request `r`, over at `to`.
fn request_span(r: &Request, to: SimTime, outcome: Outcome) -> RequestSpan {
    RequestSpan {
        number: r.number,
        user: r.user,
        from: r.start.0,
        // Its transcript time is its start until the ASR is done with it.
        transcript: (r.chunks > 0 && r.transcript_at > r.start).then_some(r.transcript_at.0),
        llm: (r.delivered > 0).then_some((r.transcript_at.0, r.last_token_at.0)),
        to: to.0,
        tokens: r.delivered,
        outcome,
    }
}

/// Text tokens of sentence `k` of an answer.
fn sentence_tokens(a: &Answer, k: usize) -> u32 {
    a.sentence_ends[k] - if k == 0 { 0 } else { a.sentence_ends[k - 1] }
}

/// Runtime of synthesising one sentence of `tokens` text tokens on `part`, alone.
pub fn tts_sentence_time(
    t: &TtsProfile,
    eff: &Efficiency,
    part: &Partition,
    tokens: u32,
) -> Breakdown {
    tts_batch_time(t, eff, part, &[tokens])
}

/// Runtime of synthesising a batch of sentences (`tokens` text tokens each) together: one
/// encoder pass over all their tokens, decoder steps at the batch width while sentences are
/// still producing frames (a sentence leaves the batch when its frames are done), and one
/// codec pass over all frames.
pub fn tts_batch_time(
    t: &TtsProfile,
    eff: &Efficiency,
    part: &Partition,
    tokens: &[u32],
) -> Breakdown {
    tts_batch(t, eff, part, tokens, None)
}

/// An LLM replica's model and partition, as its iteration runtimes need them.
#[derive(Clone, Copy)]
struct StepCost<'a> {
    profile: &'a LlmProfile,
    part: &'a Partition,
    eff: &'a Efficiency,
    /// Whether the partition runs MPS, which needs each iteration's demand too.
    phases: bool,
}

impl StepCost<'_> {
    /// Runtime of a planned iteration alone on the partition, and (under MPS only) its
    /// demand.
    fn time(&self, plan: &StepPlan) -> (u64, Option<Demand>) {
        let work =
            self.profile
                .step_work(plan.prefill_tokens, plan.decode_seqs, plan.context_tokens);
        let ns = exec_time(&work, self.part, self.eff).ns();
        (
            ns,
            self.phases.then(|| Demand::of(&work, self.part, self.eff)),
        )
    }
}

/// [`tts_batch_time`], also pushing each phase's demand into `phases` when given.
fn tts_batch(
    t: &TtsProfile,
    eff: &Efficiency,
    part: &Partition,
    tokens: &[u32],
    mut phases: Option<&mut Vec<Demand>>,
) -> Breakdown {
    let mut frames: Vec<f64> = tokens
        .iter()
        .map(|&k| {
            (f64::from(k) * t.speech_s_per_token * t.frames_per_speech_s)
                .ceil()
                .max(1.0)
        })
        .collect();
    frames.sort_by(f64::total_cmp);
    let total_tokens: u32 = tokens.iter().sum();
    let encoder_work = t.encoder.work(total_tokens);
    let encoder = exec_time(&encoder_work, part, eff);
    if let Some(p) = phases.as_deref_mut() {
        p.push(Demand::of(&encoder_work, part, eff));
    }
    let mut decoder = Breakdown::default();
    let mut done = 0.0;
    for (i, &f) in frames.iter().enumerate() {
        let steps = f - done;
        if steps > 0.0 {
            let width = (frames.len() - i) as u32;
            let step_work = t.decoder_step.work(width);
            let step = exec_time(&step_work, part, eff);
            if let Some(p) = phases.as_deref_mut() {
                p.push(Demand::of(&step_work, part, eff).repeated(steps));
            }
            decoder = decoder.then(Breakdown {
                compute_ns: step.compute_ns * steps,
                memory_ns: step.memory_ns * steps,
                launch_ns: step.launch_ns * steps,
                total_ns: step.total_ns * steps,
                dtype: step.dtype,
            });
        }
        done = f;
    }
    let codec_work = t.codec.work(frames.iter().sum::<f64>() as u32);
    let codec = exec_time(&codec_work, part, eff);
    if let Some(p) = phases {
        p.push(Demand::of(&codec_work, part, eff));
    }
    encoder.then(decoder).then(codec)
}
