//! The voice pipeline simulated end to end: streaming ASR -> token-streaming LLM -> TTS per
//! sentence, on replicas placed on partitions, driven by the workload.
//!
//! Flow of one request: the user streams audio chunks (one [`Event::Chunk`] each); every chunk
//! becomes an ASR job on the ASR replica's partition; when the last chunk's job finishes the
//! transcript goes to the LLM engine, which runs iterations (prefill, then one token per
//! sequence per iteration); whenever a sentence's last token appears, and the previous
//! sentence's audio is ready, the sentence becomes a TTS job. The request ends when the last
//! sentence's audio is ready (end of turn), or fails at its timeout.

use rand_chacha::ChaCha8Rng;

use crate::engine::{Engine, EventClass, SimTime, Streams};
use crate::experiment::Experiment;
use crate::hardware::Partition;
use crate::metrics::{Counts, StageSamples};
use crate::profile::{Breakdown, Efficiency, LlmProfile, ModelKind, TtsProfile, exec_time};
use crate::serving::{LlmEngine, StepPlan};
use crate::sharing::TimeSlicer;
use crate::timeline::BusyTimeline;
use crate::workload::{Answer, WorkloadSpec, chunks_for, poisson_gap_s, user_window};

/// Events of the pipeline model. Classes order same-instant events (see [`EventClass`]).
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A partition's next job completion (stale if `version` is not the partition's current).
    DeviceDone {
        /// Partition index.
        part: u32,
        /// Version of the partition's schedule this event was computed for.
        version: u64,
    },
    /// An LLM replica's host-side step preparation is over: submit the iteration to the GPU.
    LlmStep {
        /// Replica index.
        replica: u32,
    },
    /// The user streaming request `req` sends audio chunk `idx`.
    Chunk {
        /// Request index.
        req: u32,
        /// Chunk index.
        idx: u32,
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
    /// Request `req` reaches its timeout.
    Timeout {
        /// Request index.
        req: u32,
    },
}

impl EventClass for Event {
    fn class(&self) -> u8 {
        match self {
            // Work that finishes at an instant is visible to everything else at that instant.
            Event::DeviceDone { .. } => 0,
            Event::LlmStep { .. } => 1,
            Event::Chunk { .. } => 2,
            // A user leaving at the instant it would start a request starts none.
            Event::UserLeave { .. } => 3,
            Event::UserJoin { .. } | Event::ThinkOver { .. } | Event::Arrival => 4,
            // A timeout at the same instant as the completion lets the request complete.
            Event::Timeout { .. } => 5,
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

/// What a job token on a partition stands for.
#[derive(Clone, Copy, Debug)]
enum Job {
    AsrChunk { req: u32 },
    LlmIteration { replica: u32 },
    TtsSentence { req: u32 },
}

struct Request {
    user: Option<u32>,
    status: Status,
    start: SimTime,
    chunks: u32,
    chunks_done: u32,
    asr: usize,
    llm: usize,
    tts: usize,
    answer: Answer,
    transcript_at: SimTime,
    first_token_at: SimTime,
    last_token_at: SimTime,
    sentences_ready: u32,
    tts_next: u32,
    tts_busy: bool,
    handed_at: SimTime,
    first_audio_at: Option<SimTime>,
    tts_ms: Vec<f64>,
}

struct User {
    active: bool,
    request: Option<u32>,
    clips_sent: u32,
}

struct Replica {
    partition: usize,
    ctx: usize,
    model: usize,
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
    /// LLM iterations run and the sequences they carried (for the mean batch).
    pub llm_iterations: u64,
    /// Sum of sequences over LLM iterations.
    pub llm_batched_seqs: u64,
    /// Events processed.
    pub events: u64,
    /// Busy and switching time per time bucket, per partition.
    pub timelines: Vec<BusyTimeline>,
}

/// One simulation run of an experiment.
pub struct Simulation<'a> {
    exp: &'a Experiment,
    engine: Engine<Event>,
    slicers: Vec<TimeSlicer>,
    versions: Vec<u64>,
    replicas: Vec<Replica>,
    llm_engines: Vec<Option<LlmEngine>>,
    /// Replica indices per pipeline stage, and the round-robin cursor of each.
    asr_replicas: Vec<usize>,
    llm_replicas: Vec<usize>,
    tts_replicas: Vec<usize>,
    rr: [usize; 3],
    /// Precomputed ASR chunk runtime per replica (same work every chunk).
    asr_chunk_ns: Vec<u64>,
    jobs: Vec<Job>,
    free_jobs: Vec<u64>,
    requests: Vec<Request>,
    users: Vec<User>,
    answers_rng: ChaCha8Rng,
    arrivals_rng: ChaCha8Rng,
    counts: Counts,
    samples: StageSamples,
    end: SimTime,
    timeout_ns: u64,
    llm_iterations: u64,
    llm_batched_seqs: u64,
}

impl<'a> Simulation<'a> {
    /// Prepare a run of `exp` with its seed.
    pub fn new(exp: &'a Experiment) -> Self {
        let streams = Streams::new(exp.raw.seed);
        let mut slicers: Vec<TimeSlicer> = exp
            .partitions
            .iter()
            .map(|p| TimeSlicer::new(p.time_slice_ns, p.switch_ns))
            .collect();
        let mut replicas = Vec::new();
        let mut llm_engines = Vec::new();
        let mut asr_chunk_ns = Vec::new();
        let (mut asr_r, mut llm_r, mut tts_r) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in exp.replicas.iter().enumerate() {
            let ctx = slicers[r.partition].add_context();
            replicas.push(Replica {
                partition: r.partition,
                ctx,
                model: r.model,
            });
            let m = &exp.models[r.model];
            let part = &exp.partitions[r.partition].resources;
            let (engine, chunk_ns) = match &m.kind {
                ModelKind::Asr(a) => {
                    asr_r.push(i);
                    (None, exec_time(&a.chunk.work(1), part, &m.efficiency).ns())
                }
                ModelKind::Llm(l) => {
                    llm_r.push(i);
                    (Some(LlmEngine::new(l.max_batch)), 0)
                }
                ModelKind::Tts(_) => {
                    tts_r.push(i);
                    (None, 0)
                }
            };
            llm_engines.push(engine);
            asr_chunk_ns.push(chunk_ns);
        }
        let duration = SimTime::from_secs_f64(exp.raw.workload.duration_s());
        let bucket_ns = BusyTimeline::width_for(duration);
        slicers
            .iter_mut()
            .for_each(|s| s.record_timeline(bucket_ns));
        Simulation {
            exp,
            engine: Engine::new(),
            versions: vec![0; slicers.len()],
            slicers,
            replicas,
            llm_engines,
            asr_replicas: asr_r,
            llm_replicas: llm_r,
            tts_replicas: tts_r,
            rr: [0; 3],
            asr_chunk_ns,
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            requests: Vec::new(),
            users: Vec::new(),
            answers_rng: streams.stream("answers"),
            arrivals_rng: streams.stream("arrivals"),
            counts: Counts::default(),
            samples: StageSamples::default(),
            end: duration,
            timeout_ns: SimTime::from_secs_f64(exp.raw.workload.timeout_s()).0,
            llm_iterations: 0,
            llm_batched_seqs: 0,
        }
    }

    /// Run to the end and return the results.
    pub fn run(mut self) -> RunResult {
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
            WorkloadSpec::Poisson(p) => {
                let gap = poisson_gap_s(p.rate_rps, &mut self.arrivals_rng);
                let at = SimTime::from_secs_f64(gap);
                if at < self.end {
                    self.engine.schedule(at, Event::Arrival);
                }
            }
        }
        let closed = matches!(self.exp.raw.workload, WorkloadSpec::ClosedLoop(_));
        while let Some((now, ev)) = self.engine.pop() {
            if closed && now > self.end {
                break;
            }
            self.handle(now, ev);
        }
        // Bring every partition's accounting to the end of the measured window: the closed
        // loop's fixed window, or (open loop, which drains) the last event.
        let end = if closed {
            self.end
        } else {
            self.end.max(self.engine.now())
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
        RunResult {
            counts: self.counts,
            samples: self.samples,
            duration_s: end.as_secs_f64(),
            busy_ns: busy,
            switching_ns: switching,
            llm_iterations: self.llm_iterations,
            llm_batched_seqs: self.llm_batched_seqs,
            events: self.engine.processed(),
            timelines: self
                .slicers
                .iter()
                .map(|s| s.timeline().cloned().unwrap_or_default())
                .collect(),
        }
    }

    fn handle(&mut self, now: SimTime, ev: Event) {
        match ev {
            Event::DeviceDone { part, version } => {
                let p = part as usize;
                if self.versions[p] != version {
                    return; // superseded by a later submission
                }
                let (_, token) = self.slicers[p].complete(now);
                let job = self.jobs[token as usize];
                self.free_jobs.push(token);
                self.reschedule(p);
                self.job_done(now, job);
            }
            Event::LlmStep { replica } => self.llm_submit(now, replica as usize),
            Event::Chunk { req, idx } => self.chunk(now, req, idx),
            Event::UserJoin { user } => {
                self.users[user as usize].active = true;
                self.start_request(now, Some(user));
            }
            Event::ThinkOver { user } => {
                if self.users[user as usize].active {
                    self.start_request(now, Some(user));
                }
            }
            Event::Arrival => {
                self.start_request(now, None);
                if let WorkloadSpec::Poisson(p) = &self.exp.raw.workload {
                    let gap = poisson_gap_s(p.rate_rps, &mut self.arrivals_rng);
                    let at = now.plus(SimTime::from_secs_f64(gap).0.max(1));
                    if at < self.end {
                        self.engine.schedule(at, Event::Arrival);
                    }
                }
            }
            Event::UserLeave { user } => {
                let u = &mut self.users[user as usize];
                u.active = false;
                if let Some(r) = u.request.take() {
                    let req = &mut self.requests[r as usize];
                    if req.status == Status::Active {
                        req.status = Status::Cancelled;
                        self.counts.cancelled += 1;
                    }
                }
            }
            Event::Timeout { req } => {
                let r = &mut self.requests[req as usize];
                if r.status == Status::Active {
                    r.status = Status::Failed;
                    self.counts.failed += 1;
                    self.request_over(now, req);
                }
            }
        }
    }

    fn pick(&mut self, stage: usize) -> usize {
        let list = match stage {
            0 => &self.asr_replicas,
            1 => &self.llm_replicas,
            _ => &self.tts_replicas,
        };
        let r = list[self.rr[stage] % list.len()];
        self.rr[stage] += 1;
        r
    }

    fn start_request(&mut self, now: SimTime, user: Option<u32>) {
        let streaming = &self.exp.raw.audio;
        let clip = match user {
            Some(u) => {
                let us = &mut self.users[u as usize];
                let c = streaming.clips_s[us.clips_sent as usize % streaming.clips_s.len()];
                us.clips_sent += 1;
                c
            }
            None => streaming.clips_s[self.counts.started as usize % streaming.clips_s.len()],
        };
        let id = self.requests.len() as u32;
        let (asr, llm, tts) = (self.pick(0), self.pick(1), self.pick(2));
        let answer = Answer::draw(&self.exp.raw.answers, &mut self.answers_rng);
        self.requests.push(Request {
            user,
            status: Status::Active,
            start: now,
            chunks: chunks_for(clip, streaming.chunk_ms),
            chunks_done: 0,
            asr,
            llm,
            tts,
            answer,
            transcript_at: now,
            first_token_at: now,
            last_token_at: now,
            sentences_ready: 0,
            tts_next: 0,
            tts_busy: false,
            handed_at: now,
            first_audio_at: None,
            tts_ms: Vec::new(),
        });
        if let Some(u) = user {
            self.users[u as usize].request = Some(id);
        }
        self.counts.started += 1;
        self.engine.schedule(now, Event::Chunk { req: id, idx: 0 });
        self.engine
            .schedule(now.plus(self.timeout_ns), Event::Timeout { req: id });
    }

    fn chunk(&mut self, now: SimTime, req: u32, idx: u32) {
        let r = &self.requests[req as usize];
        if r.status != Status::Active {
            return; // the client stopped streaming
        }
        let replica = r.asr;
        let chunks = r.chunks;
        let work = self.asr_chunk_ns[replica];
        self.submit(now, replica, Job::AsrChunk { req }, work);
        if idx + 1 < chunks {
            let interval = SimTime::from_millis_f64(self.exp.raw.audio.chunk_interval_ms);
            self.engine
                .schedule(now.plus(interval.0), Event::Chunk { req, idx: idx + 1 });
        }
    }

    fn submit(&mut self, now: SimTime, replica: usize, job: Job, work_ns: u64) {
        let token = match self.free_jobs.pop() {
            Some(t) => {
                self.jobs[t as usize] = job;
                t
            }
            None => {
                self.jobs.push(job);
                (self.jobs.len() - 1) as u64
            }
        };
        let Replica { partition, ctx, .. } = self.replicas[replica];
        self.slicers[partition].submit(now, ctx, token, work_ns);
        self.reschedule(partition);
    }

    /// Keep exactly one live completion event per partition.
    fn reschedule(&mut self, part: usize) {
        self.versions[part] += 1;
        if let Some(t) = self.slicers[part].next_completion() {
            self.engine.schedule(
                t,
                Event::DeviceDone {
                    part: part as u32,
                    version: self.versions[part],
                },
            );
        }
    }

    fn job_done(&mut self, now: SimTime, job: Job) {
        match job {
            Job::AsrChunk { req } => {
                let r = &mut self.requests[req as usize];
                r.chunks_done += 1;
                if r.status == Status::Active && r.chunks_done == r.chunks {
                    r.transcript_at = now;
                    let llm = r.llm;
                    let engine = self.llm_engines[llm]
                        .as_mut()
                        .expect("invariant: llm replica");
                    let prompt = r.answer.prompt_tokens;
                    let out = r.answer.output_tokens();
                    if engine.enqueue(req, prompt, out) {
                        self.llm_wake(now, llm);
                    }
                }
            }
            Job::LlmIteration { replica } => self.llm_iteration_done(now, replica as usize),
            Job::TtsSentence { req } => {
                let r = &mut self.requests[req as usize];
                r.tts_busy = false;
                if r.status != Status::Active {
                    return;
                }
                r.tts_ms.push(now.since(r.handed_at) as f64 / 1e6);
                r.first_audio_at.get_or_insert(now);
                r.tts_next += 1;
                if r.tts_next as usize == r.answer.sentence_ends.len() {
                    r.status = Status::Done;
                    self.counts.completed += 1;
                    self.record(now, req);
                    self.request_over(now, req);
                } else {
                    self.tts_handover(now, req);
                }
            }
        }
    }

    fn llm_profile(&self, replica: usize) -> (&LlmProfile, &Efficiency, &Partition) {
        let rep = &self.replicas[replica];
        let m = &self.exp.models[rep.model];
        let ModelKind::Llm(l) = &m.kind else {
            panic!("invariant: llm replica runs an llm model");
        };
        (
            l,
            &m.efficiency,
            &self.exp.partitions[rep.partition].resources,
        )
    }

    /// The engine's loop wakes up: prepare the next iteration on the host first.
    fn llm_wake(&mut self, now: SimTime, replica: usize) {
        let overhead = SimTime::from_micros_f64(self.llm_profile(replica).0.step_overhead_us);
        self.engine.schedule(
            now.plus(overhead.0),
            Event::LlmStep {
                replica: replica as u32,
            },
        );
    }

    fn llm_submit(&mut self, now: SimTime, replica: usize) {
        let requests = &self.requests;
        let engine = self.llm_engines[replica]
            .as_mut()
            .expect("invariant: llm replica");
        let plan: Option<StepPlan> =
            engine.plan(|req| requests[req as usize].status == Status::Active);
        let Some(plan) = plan else {
            return; // everything was cancelled; the loop sleeps until the next request
        };
        self.llm_iterations += 1;
        self.llm_batched_seqs += plan.seqs;
        let (l, eff, part) = self.llm_profile(replica);
        let work = l.step_work(plan.prefill_tokens, plan.decode_seqs, plan.context_tokens);
        let ns = exec_time(&work, part, eff).ns();
        self.submit(
            now,
            replica,
            Job::LlmIteration {
                replica: replica as u32,
            },
            ns,
        );
    }

    fn llm_iteration_done(&mut self, now: SimTime, replica: usize) {
        let engine = self.llm_engines[replica]
            .as_mut()
            .expect("invariant: llm replica");
        let emitted = engine.finish_step();
        let more = engine.has_work();
        for (req, generated) in emitted {
            self.on_token(now, req, generated);
        }
        if more {
            self.llm_wake(now, replica);
        }
    }

    fn on_token(&mut self, now: SimTime, req: u32, generated: u32) {
        let r = &mut self.requests[req as usize];
        if r.status != Status::Active {
            return;
        }
        if generated == 1 {
            r.first_token_at = now;
        }
        if generated == r.answer.output_tokens() {
            r.last_token_at = now;
        }
        let next_end = r.answer.sentence_ends.get(r.sentences_ready as usize);
        if next_end == Some(&generated) {
            r.sentences_ready += 1;
            if !r.tts_busy {
                self.tts_handover(now, req);
            }
        }
    }

    /// Hand the next ready sentence of `req` to its TTS replica, if there is one.
    fn tts_handover(&mut self, now: SimTime, req: u32) {
        let r = &mut self.requests[req as usize];
        if r.tts_busy || r.tts_next >= r.sentences_ready {
            return;
        }
        let k = r.tts_next as usize;
        let tokens = r.answer.sentence_ends[k]
            - if k == 0 {
                0
            } else {
                r.answer.sentence_ends[k - 1]
            };
        r.tts_busy = true;
        r.handed_at = now;
        let replica = r.tts;
        let rep = &self.replicas[replica];
        let m = &self.exp.models[rep.model];
        let ModelKind::Tts(t) = &m.kind else {
            panic!("invariant: tts replica runs a tts model");
        };
        let part = &self.exp.partitions[rep.partition].resources;
        let ns = tts_sentence_time(t, &m.efficiency, part, tokens).ns();
        self.submit(now, replica, Job::TtsSentence { req }, ns);
    }

    fn record(&mut self, now: SimTime, req: u32) {
        let r = &self.requests[req as usize];
        let ms = |a: SimTime, b: SimTime| b.since(a) as f64 / 1e6;
        let s = &mut self.samples;
        s.asr.push(ms(r.start, r.transcript_at));
        s.llm_ttft.push(ms(r.transcript_at, r.first_token_at));
        s.llm_total.push(ms(r.transcript_at, r.last_token_at));
        for t in &r.tts_ms {
            s.tts.push(*t);
        }
        let first_audio = r
            .first_audio_at
            .expect("invariant: a done request has audio");
        s.e2e.push(ms(r.transcript_at, first_audio));
        s.request.push(ms(r.start, now));
    }

    /// A request finished or failed: its user thinks, then starts the next one.
    fn request_over(&mut self, now: SimTime, req: u32) {
        let r = &mut self.requests[req as usize];
        r.tts_ms = Vec::new();
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

/// Runtime of synthesising one sentence of `tokens` text tokens on `part`, alone.
pub fn tts_sentence_time(
    t: &TtsProfile,
    eff: &Efficiency,
    part: &Partition,
    tokens: u32,
) -> Breakdown {
    let frames = (f64::from(tokens) * t.speech_s_per_token * t.frames_per_speech_s)
        .ceil()
        .max(1.0);
    let encoder = exec_time(&t.encoder.work(tokens), part, eff);
    let step = exec_time(&t.decoder_step.work(1), part, eff);
    let decoder = Breakdown {
        compute_ns: step.compute_ns * frames,
        memory_ns: step.memory_ns * frames,
        launch_ns: step.launch_ns * frames,
        total_ns: step.total_ns * frames,
    };
    let codec = exec_time(&t.codec.work(frames as u32), part, eff);
    encoder.then(decoder).then(codec)
}
