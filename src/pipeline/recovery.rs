//! Faults in the running pipeline: a fault takes down the replicas in its blast radius, their
//! GPU work and queues are lost, the requests they held fail or are retried elsewhere by the
//! gateway, and the replicas come back after their recovery time.

use super::{Event, ReqId, Simulation, Stage};
use crate::engine::SimTime;
use crate::experiment::FaultTarget;
use crate::faults::FaultKind;
use crate::pipeline::FaultEvent;
use crate::serving::{Batcher, LlmEngine};
use crate::workload::poisson_gap_s;

impl Simulation<'_> {
    /// Fault source `source` strikes at `now`.
    pub(super) fn fault(&mut self, now: SimTime, source: usize) {
        let exp = self.exp;
        let src = &exp.fault_sources[source];
        if let Some(rate) = src.rate_per_s {
            let gap = SimTime::from_secs_f64(poisson_gap_s(rate, &mut self.faults_rng));
            let at = now.plus(gap.0.max(1));
            if at < self.end {
                self.engine.schedule(
                    at,
                    Event::Fault {
                        source: source as u32,
                    },
                );
            }
        }
        self.strike(now, src.kind, src.target);
    }

    /// A fault of `kind` strikes `target` at `now`.
    pub(super) fn strike(&mut self, now: SimTime, kind: FaultKind, target: FaultTarget) {
        let exp = self.exp;
        let recovery = &exp
            .raw
            .faults
            .as_ref()
            .expect("invariant: faults come from [faults]")
            .recovery;
        let downtime = SimTime::from_secs_f64(recovery.downtime_s(kind)).0;
        let victims = exp.blast_radius(kind, target);
        let idx = self.faults.len();
        self.faults.push(FaultEvent {
            at_ns: now.0,
            kind,
            target,
            replicas: victims.clone(),
            recovered_ns: None,
            failed: 0,
            retried: 0,
        });
        // Take every victim down first, so that retries route around all of them.
        for &r in &victims {
            self.crash(now, r, downtime, idx);
        }
        // In the order the requests started (slots are reused, so not slot order).
        let mut held: Vec<(u64, ReqId)> = (0..self.requests.len())
            .map(|s| {
                let r = &self.requests[s];
                (r.number, (u64::from(r.generation) << 32) | s as u64)
            })
            .filter(|&(_, q)| self.is_active(q))
            .collect();
        held.sort_unstable();
        for (_, q) in held {
            self.rescue(now, q, &victims, idx);
        }
    }

    /// Replica `r` dies at `now` and restarts `downtime` ns later.
    fn crash(&mut self, now: SimTime, r: usize, downtime: u64, fault: usize) {
        self.cycle_touch(r);
        let spec = &self.exp.replicas[r];
        let rep = &mut self.replicas[r];
        if rep.up {
            rep.up = false;
            rep.down.push((now.0, u64::MAX));
        }
        rep.epoch += 1;
        rep.fault = Some(fault);
        rep.step_at = None;
        rep.in_flight.clear();
        if rep.batcher.is_some() {
            rep.batcher = Some(Batcher::new(spec.batching.clone()));
        }
        if let Some(cfg) = spec.llm {
            rep.llm = Some(Box::new(LlmEngine::new(cfg)));
        }
        let (partition, ctx, local, stage, epoch) =
            (rep.partition, rep.ctx, rep.local, rep.stage, rep.epoch);
        if spec.llm.is_some() {
            self.track_kv(r); // its KV cache is gone with it
        }
        self.drop_streams(r);
        self.routers[stage as usize]
            .as_mut()
            .expect("invariant: a replica's stage is routed")
            .set_up(local, false);
        if self.slicers[partition].clear(now, ctx as usize) > 0 {
            self.reschedule(partition);
            let none = std::iter::empty();
            self.trace_job(None, now, r, none, crate::activity::JobEnd::Dropped);
        }
        self.engine.schedule(
            now.plus(downtime),
            Event::Recover {
                replica: r as u32,
                epoch,
            },
        );
    }

    /// Replica `r` is back, unless it crashed again since (`epoch` is then stale).
    pub(super) fn recover(&mut self, now: SimTime, r: usize, epoch: u32) {
        let rep = &mut self.replicas[r];
        if rep.epoch != epoch {
            return;
        }
        rep.up = true;
        rep.down
            .last_mut()
            .expect("invariant: a down replica has an open interval")
            .1 = now.0;
        let (stage, local, fault) = (rep.stage, rep.local, rep.fault.take());
        self.routers[stage as usize]
            .as_mut()
            .expect("invariant: a replica's stage is routed")
            .set_up(local, true);
        if let Some(f) = fault
            && self.faults[f].replicas.iter().all(|&x| self.replicas[x].up)
        {
            self.faults[f].recovered_ns = Some(now.0);
        }
    }

    /// Request `q` held a stage on a replica that just went down: retry that stage on another
    /// replica if the gateway has a retry left, else fail the request.
    fn rescue(&mut self, now: SimTime, q: ReqId, victims: &[usize], fault: usize) {
        for stage in [Stage::Asr, Stage::Llm, Stage::Tts] {
            let routed = self.requests[super::slot(q)].routed[stage as usize];
            if !routed.is_some_and(|g| victims.contains(&(g as usize))) {
                continue;
            }
            self.release(q, stage);
            let r = &self.requests[super::slot(q)];
            // A TTS session waiting for its next sentence has nothing in flight there: its
            // next sentence simply goes to another replica.
            if stage == Stage::Tts && !r.tts_busy {
                continue;
            }
            let retries = self.exp.raw.faults.as_ref().map_or(0, |f| f.retries);
            let any_up = self.routers[stage as usize].as_ref().is_some_and(|rt| {
                (0..self.stage_replicas[stage as usize].len()).any(|i| rt.is_up(i))
            });
            if r.retries >= retries || !any_up {
                self.counts.lost_to_faults += 1;
                self.faults[fault].failed += 1;
                self.fail(now, q);
                return;
            }
            self.requests[super::slot(q)].retries += 1;
            self.counts.retried += 1;
            self.faults[fault].retried += 1;
            match stage {
                Stage::Asr => self.asr_enter(now, q),
                Stage::Llm => self.llm_enter(now, q),
                Stage::Tts => {
                    // The sentence is sent again; its latency keeps counting from the first send.
                    let r = &mut self.requests[super::slot(q)];
                    r.tts_busy = false;
                    let handed = r.handed_at;
                    self.tts_handover(now, q);
                    self.requests[super::slot(q)].handed_at = handed;
                }
            }
            if !self.is_active(q) {
                return;
            }
        }
    }
}
