//! How contexts share a partition: time-slicing, MPS (concurrent kernels of several clients
//! in one context), or not at all (one tenant: [`SoleDevice`], what time-slicing with one
//! context comes to). [`Device`] puts them behind one interface for the pipeline.
pub mod mps;
pub mod sole;
pub mod timeslice;
pub use mps::MpsShare;
pub use sole::SoleDevice;
pub use timeslice::{CtxId, TimeSlicer};

use crate::activity::{Budget, Segment, SliceLog};
use crate::engine::SimTime;
use crate::profile::Demand;
use crate::timeline::BusyTimeline;

/// The scheduler of one partition.
#[derive(Debug)]
pub enum Device {
    /// One context has the partition to itself (a dedicated GPU or a MIG instance).
    Sole(SoleDevice),
    /// Contexts take turns. Boxed, as is `Mps`: most partitions are sole, and a device
    /// the size of the largest variant would spread the hot ones over more cache lines.
    Sliced(Box<TimeSlicer>),
    /// MPS clients run concurrently, each capped by its active-thread percentage.
    Mps(Box<MpsShare>),
    /// Contexts take turns, and a trace logs the turns and switches (see
    /// [`Device::record_slices`]).
    Traced(Box<Traced>),
}

/// A time-slicer whose turns and switches are logged for a trace. Before each update, the
/// stretch the update will advance over is walked on a copy of the slicer's schedule
/// ([`TimeSlicer::log_until`]): the slicer itself, and every run without a trace, are
/// untouched (its own variant, not a check in the slicer's hot path).
#[derive(Debug)]
pub struct Traced {
    slicer: TimeSlicer,
    log: SliceLog,
}

impl Traced {
    /// The slicer, once the stretch up to `t` is logged.
    fn at(&mut self, t: SimTime) -> &mut TimeSlicer {
        self.slicer.log_until(t, &mut self.log);
        &mut self.slicer
    }
}

impl Device {
    /// Register a context (`active_thread_pct` matters under MPS only).
    pub fn add_context(&mut self, active_thread_pct: f64) -> CtxId {
        match self {
            Device::Sole(s) => s.add_context(),
            Device::Sliced(s) => s.add_context(),
            Device::Traced(s) => s.slicer.add_context(),
            Device::Mps(m) => m.add_client(active_thread_pct),
        }
    }

    /// Also record busy time per bucket of `bucket_ns`.
    pub fn record_timeline(&mut self, bucket_ns: u64) {
        match self {
            Device::Sole(s) => s.record_timeline(bucket_ns),
            Device::Sliced(s) => s.record_timeline(bucket_ns),
            Device::Traced(s) => s.slicer.record_timeline(bucket_ns),
            Device::Mps(m) => m.record_timeline(bucket_ns),
        }
    }

    /// Under time-slicing, also log each context's turns and each switch, for a trace
    /// (the other modes' jobs are their turns).
    pub fn record_slices(&mut self, budget: &Budget) {
        if let Device::Sliced(_) = self {
            let Device::Sliced(slicer) = std::mem::replace(self, Device::Sole(SoleDevice::new()))
            else {
                unreachable!("checked above");
            };
            *self = Device::Traced(Box::new(Traced {
                slicer: *slicer,
                log: SliceLog::new(budget.clone()),
            }));
        }
    }

    /// The turns and switches logged so far (context ids, in time order; time-slicing with
    /// [`Device::record_slices`] only, else empty); the log is left empty.
    pub fn take_slices(&mut self) -> Vec<Segment> {
        match self {
            Device::Traced(s) => s.log.finish(),
            _ => Vec::new(),
        }
    }

    /// The recorded timeline, if any.
    pub fn timeline(&self) -> Option<BusyTimeline> {
        match self {
            Device::Sole(s) => s.timeline(),
            Device::Sliced(s) => s.timeline(),
            Device::Traced(s) => s.slicer.timeline(),
            Device::Mps(m) => m.timeline(),
        }
    }

    /// Whether jobs need their phases (MPS) rather than just their runtime alone.
    pub fn needs_phases(&self) -> bool {
        matches!(self, Device::Mps(_))
    }

    /// Queue a job on `ctx` at `t`: `work_ns` is its runtime alone on the partition,
    /// `phases` what it demands (used under MPS, where its runtime depends on the others).
    pub fn submit(
        &mut self,
        t: SimTime,
        ctx: CtxId,
        token: u64,
        work_ns: u64,
        phases: Vec<Demand>,
    ) {
        match self {
            Device::Sole(s) => s.submit(t, token, work_ns),
            Device::Sliced(s) => s.submit(t, ctx, token, work_ns),
            Device::Traced(s) => s.at(t).submit(t, ctx, token, work_ns),
            Device::Mps(m) => m.submit(t, ctx, token, phases),
        }
    }

    /// See [`TimeSlicer::next_completion`].
    pub fn next_completion(&mut self) -> Option<SimTime> {
        match self {
            Device::Sole(s) => s.next_completion(),
            Device::Sliced(s) => s.next_completion(),
            Device::Traced(s) => s.slicer.next_completion(),
            Device::Mps(m) => m.next_completion(),
        }
    }

    /// See [`TimeSlicer::finishing`].
    pub fn finishing(&mut self, t: SimTime) -> (CtxId, u64) {
        match self {
            Device::Sole(s) => s.finishing(t),
            Device::Sliced(s) => s.finishing(t),
            Device::Traced(s) => s.at(t).finishing(t),
            Device::Mps(m) => m.finishing(t),
        }
    }

    /// See [`TimeSlicer::complete`].
    pub fn complete(&mut self, t: SimTime) -> (CtxId, u64) {
        match self {
            Device::Sole(s) => s.complete(t),
            Device::Sliced(s) => s.complete(t),
            Device::Traced(s) => s.at(t).complete(t),
            Device::Mps(m) => m.complete(t),
        }
    }

    /// See [`TimeSlicer::advance`].
    pub fn advance(&mut self, t: SimTime) {
        match self {
            Device::Sole(s) => s.advance(t),
            Device::Sliced(s) => s.advance(t),
            Device::Traced(s) => s.at(t).advance(t),
            Device::Mps(m) => m.advance(t),
        }
    }

    /// See [`TimeSlicer::clear`].
    pub fn clear(&mut self, t: SimTime, ctx: CtxId) -> usize {
        match self {
            Device::Sole(s) => s.clear(t),
            Device::Sliced(s) => s.clear(t, ctx),
            Device::Traced(s) => s.at(t).clear(t, ctx),
            Device::Mps(m) => m.clear(t, ctx),
        }
    }

    /// Time with kernels running, ns.
    pub fn busy_ns(&self) -> u64 {
        match self {
            Device::Sole(s) => s.busy_ns(),
            Device::Sliced(s) => s.busy_ns(),
            Device::Traced(s) => s.slicer.busy_ns(),
            Device::Mps(m) => m.busy_ns(),
        }
    }

    /// Time lost to context switches, ns (none under MPS).
    pub fn switching_ns(&self) -> u64 {
        match self {
            Device::Sole(_) => 0,
            Device::Sliced(s) => s.switching_ns(),
            Device::Traced(s) => s.slicer.switching_ns(),
            Device::Mps(m) => m.switching_ns(),
        }
    }
}
