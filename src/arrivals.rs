//! Open-loop arrivals, pulled one at a time: Poisson, Gamma renewal, on-off, trace replay.
//!
//! Generated processes never hold more than their current state, whatever their length.
//! **Invariant:** arrival times never decrease, and all are before the workload's end.

use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma as GammaDist};

use crate::engine::SimTime;
use crate::trace::{Plan, Trace};
use crate::workload::{Arrival, OnOff, Periods, WorkloadSpec, poisson_gap_s};

/// The arrivals of an open-loop workload, in time order.
#[derive(Clone, Debug)]
pub struct ArrivalSource {
    process: Process,
    /// No arrival at or after this time, ns.
    end_ns: u64,
    prev_ns: Option<u64>,
    done: bool,
}

#[derive(Clone, Debug)]
enum Process {
    Poisson { rate_rps: f64 },
    Gamma(GammaDist<f64>),
    OnOff(OnOffState),
    Trace(Replay),
}

impl ArrivalSource {
    /// The source for an open-loop workload (`None` for closed-loop users). A trace workload
    /// needs its trace, loaded and checked by `Trace::from_spec`; a window that selects
    /// nothing gives a source with no arrivals.
    ///
    /// # Panics
    /// If a trace workload comes without its trace (a bug in the caller).
    pub fn new(spec: &WorkloadSpec, trace: Option<Arc<Trace>>) -> Option<ArrivalSource> {
        let ns = |s: f64| SimTime::from_secs_f64(s).0;
        let (process, end_ns) = match spec {
            WorkloadSpec::ClosedLoop(_) => return None,
            WorkloadSpec::Poisson(p) => (
                Process::Poisson {
                    rate_rps: p.rate_rps,
                },
                ns(p.duration_s),
            ),
            // cv = 1 is the exponential: use the Poisson mode's draws exactly.
            WorkloadSpec::Gamma(g) if g.cv == 1.0 => (
                Process::Poisson {
                    rate_rps: g.rate_rps,
                },
                ns(g.duration_s),
            ),
            WorkloadSpec::Gamma(g) => {
                let cv2 = g.cv * g.cv;
                let dist = GammaDist::new(1.0 / cv2, cv2 / g.rate_rps)
                    .expect("invariant: checked rate > 0 and cv in range");
                (Process::Gamma(dist), ns(g.duration_s))
            }
            WorkloadSpec::OnOff(o) => (Process::OnOff(OnOffState::new(o)), ns(o.duration_s)),
            WorkloadSpec::Trace(t) => {
                let trace = trace.expect("invariant: a trace workload is given its loaded trace");
                match Plan::new(t, &trace) {
                    Ok(plan) => {
                        let end = plan.end_ns.unwrap_or(u64::MAX);
                        let row = plan.rows.start;
                        (
                            Process::Trace(Replay {
                                trace,
                                plan,
                                copy: 0,
                                row,
                            }),
                            end,
                        )
                    }
                    // Nothing to replay: a source that is over from the start.
                    Err(_) => (Process::Poisson { rate_rps: 1.0 }, 0),
                }
            }
        };
        Some(ArrivalSource {
            process,
            end_ns,
            prev_ns: None,
            done: end_ns == 0,
        })
    }

    /// The next arrival, at or after the previous one; `None` once the workload is over (and
    /// from then on, without drawing from `rng`). `rng` is the arrivals stream; a trace
    /// replay does not use it.
    pub fn next(&mut self, rng: &mut ChaCha8Rng) -> Option<Arrival> {
        if self.done {
            return None;
        }
        let arrival = match &mut self.process {
            Process::Poisson { rate_rps } => {
                Some(renewal(self.prev_ns, poisson_gap_s(*rate_rps, rng)))
            }
            Process::Gamma(dist) => Some(renewal(self.prev_ns, dist.sample(rng))),
            Process::OnOff(state) => state.next(self.end_ns, rng).map(|at_ns| Arrival {
                at_ns,
                ..Arrival::default()
            }),
            Process::Trace(replay) => replay.next(),
        };
        match arrival {
            Some(a) if a.at_ns < self.end_ns => {
                assert!(
                    self.prev_ns.is_none_or(|p| p <= a.at_ns),
                    "invariant: arrival times never decrease"
                );
                self.prev_ns = Some(a.at_ns);
                Some(a)
            }
            _ => {
                self.done = true;
                None
            }
        }
    }
}

/// The Poisson mode's rule, kept exactly: the first arrival after one gap, each next at least
/// 1 ns after the previous.
fn renewal(prev_ns: Option<u64>, gap_s: f64) -> Arrival {
    let gap_ns = SimTime::from_secs_f64(gap_s).0;
    let at_ns = match prev_ns {
        None => gap_ns,
        Some(p) => p.saturating_add(gap_ns.max(1)),
    };
    Arrival {
        at_ns,
        ..Arrival::default()
    }
}

/// Total simulated span of a workload's arrivals, seconds: the workload's own
/// `duration_s()`, except a trace without `duration_s`, which lasts until its last replayed
/// arrival (needs the loaded trace; 0 without it).
pub fn duration_s(spec: &WorkloadSpec, trace: Option<&Trace>) -> f64 {
    match (spec, trace) {
        (WorkloadSpec::Trace(t), Some(trace)) if t.duration_s.is_none() => {
            Plan::new(t, trace).map_or(0.0, |plan| plan.duration_ns(trace) as f64 / 1e9)
        }
        _ => spec.duration_s(),
    }
}

/// Poisson arrivals inside ON periods. Past the end of an ON period the pending gap is
/// dropped and drawing restarts at the next ON period: exact, as exponential gaps are
/// memoryless.
#[derive(Clone, Debug)]
struct OnOffState {
    rate_rps: f64,
    on_s: f64,
    off_s: f64,
    periods: Periods,
    /// End of the current ON period, ns (`None` before the first is drawn).
    on_end_ns: Option<u64>,
    /// Where the next gap starts: the last arrival, or the start of an ON period.
    cursor_ns: u64,
    cursor_is_arrival: bool,
}

impl OnOffState {
    fn new(o: &OnOff) -> Self {
        OnOffState {
            rate_rps: o.on_rate_rps,
            on_s: o.on_s,
            off_s: o.off_s,
            periods: o.periods,
            on_end_ns: None,
            cursor_ns: 0,
            cursor_is_arrival: false,
        }
    }

    fn length_ns(&self, mean_s: f64, rng: &mut ChaCha8Rng) -> u64 {
        let s = match self.periods {
            Periods::Fixed => mean_s,
            Periods::Exponential if mean_s == 0.0 => 0.0,
            Periods::Exponential => poisson_gap_s(1.0 / mean_s, rng),
        };
        SimTime::from_secs_f64(s).0
    }

    /// The next arrival time before `end_ns`, or `None`.
    fn next(&mut self, end_ns: u64, rng: &mut ChaCha8Rng) -> Option<u64> {
        let mut on_end = match self.on_end_ns {
            Some(e) => e,
            None => self.length_ns(self.on_s, rng).max(1),
        };
        loop {
            if self.cursor_ns >= end_ns {
                return None;
            }
            let gap = SimTime::from_secs_f64(poisson_gap_s(self.rate_rps, rng)).0;
            let gap = if self.cursor_is_arrival {
                gap.max(1)
            } else {
                gap
            };
            let at = self.cursor_ns.saturating_add(gap);
            if at < on_end {
                self.on_end_ns = Some(on_end);
                self.cursor_ns = at;
                self.cursor_is_arrival = true;
                return Some(at);
            }
            // Every ON period lasts at least 1 ns, so this loop always moves forward.
            let on_start = on_end.saturating_add(self.length_ns(self.off_s, rng));
            on_end = on_start.saturating_add(self.length_ns(self.on_s, rng).max(1));
            self.on_end_ns = Some(on_end);
            self.cursor_ns = on_start;
            self.cursor_is_arrival = false;
        }
    }
}

/// Where a trace replay stands.
#[derive(Clone, Debug)]
struct Replay {
    trace: Arc<Trace>,
    plan: Plan,
    copy: u64,
    row: usize,
}

impl Replay {
    fn next(&mut self) -> Option<Arrival> {
        if self.row == self.plan.rows.end {
            self.plan.period_ns?;
            self.copy += 1;
            self.row = self.plan.rows.start;
        }
        let at_ns = self.plan.time_ns(&self.trace, self.copy, self.row)?;
        let a = &self.trace.arrivals()[self.row];
        self.row += 1;
        Some(Arrival { at_ns, ..a.clone() })
    }
}
