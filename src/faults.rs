//! Faults: what can go wrong on a GPU, how often, what it takes down, and how long recovery
//! takes. The blast radius follows the sharing mode (docs/sources.md §2.4):
//!
//! | kind | Xid | scope | MIG, dedicated | time-slicing | recovery |
//! |---|---|---|---|---|---|
//! | `app-crash` | 13, 31, 43 | replica | the replica | every replica on the GPU | pod restart |
//! | `ecc-contained` | 94 | replica | the replica | the replica | pod restart |
//! | `oom` | - | replica | the replica | the replica | process restart |
//! | `ecc-uncontained` | 95 | GPU | every replica on the GPU | same | GPU reset + pod restart |
//! | `fell-off-bus` | 79 | GPU | every replica on the node | same | node drain |
//!
//! Time-slicing: the device plugin documents that time-sliced workloads share one fault domain,
//! "if one workload crashes, they all do"; a contained ECC error (Xid 94) still hits only the
//! application that read the bad memory. MIG adds hardware error isolation between instances.
//! A GPU reset takes every instance and context on the card; a GPU that falls off the bus is
//! lost until its node is drained and repaired, which takes every pod on the node.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{non_negative, positive};
use crate::error::InputError;

/// A kind of fault.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Application crash, e.g. an illegal memory access (Xid 13, 31, 43).
    AppCrash,
    /// Contained ECC error (Xid 94): the application that hit it dies.
    EccContained,
    /// Out of memory: the process's allocation failed and it exits.
    Oom,
    /// Uncontained ECC error (Xid 95): the GPU needs a reset.
    EccUncontained,
    /// GPU fallen off the bus (Xid 79): lost until the node is drained.
    FellOffBus,
}

impl FaultKind {
    /// Whether the fault hits one replica (else a whole GPU).
    pub fn per_replica(self) -> bool {
        matches!(
            self,
            FaultKind::AppCrash | FaultKind::EccContained | FaultKind::Oom
        )
    }

    /// Name as written in experiments.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::AppCrash => "app-crash",
            FaultKind::EccContained => "ecc-contained",
            FaultKind::Oom => "oom",
            FaultKind::EccUncontained => "ecc-uncontained",
            FaultKind::FellOffBus => "fell-off-bus",
        }
    }
}

/// Recovery times, seconds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The process restarts in its container (model reloaded from the page cache).
    #[serde(default = "default_process_restart")]
    pub process_restart_s: f64,
    /// The pod is recreated and the model loaded.
    #[serde(default = "default_pod_restart")]
    pub pod_restart_s: f64,
    /// Resetting the GPU (before its pods restart).
    #[serde(default = "default_gpu_reset")]
    pub gpu_reset_s: f64,
    /// Draining, repairing and returning a node.
    #[serde(default = "default_node_drain")]
    pub node_drain_s: f64,
}

// assumption: typical orders of magnitude for an inference pod with a multi-GB model.
fn default_process_restart() -> f64 {
    30.0
}
fn default_pod_restart() -> f64 {
    90.0
}
fn default_gpu_reset() -> f64 {
    60.0
}
fn default_node_drain() -> f64 {
    1800.0
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            process_restart_s: default_process_restart(),
            pod_restart_s: default_pod_restart(),
            gpu_reset_s: default_gpu_reset(),
            node_drain_s: default_node_drain(),
        }
    }
}

impl Recovery {
    /// How long the replicas a fault of `kind` takes down stay down, seconds.
    pub fn downtime_s(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::AppCrash | FaultKind::EccContained => self.pod_restart_s,
            FaultKind::Oom => self.process_restart_s,
            FaultKind::EccUncontained => self.gpu_reset_s + self.pod_restart_s,
            FaultKind::FellOffBus => self.node_drain_s,
        }
    }
}

/// Faults that strike at random: a Poisson process per target (each replica of the named
/// models for replica faults, each named GPU for GPU faults).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// Kind.
    pub kind: FaultKind,
    /// Mean time between faults per target, hours.
    pub mtbf_h: f64,
    /// Only replicas of these models (replica faults; default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Only these GPUs (GPU faults; default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// One fault at a set time: the same fault can be injected into every configuration of a study.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InjectedFault {
    /// When, seconds from the start.
    pub at_s: f64,
    /// Kind.
    pub kind: FaultKind,
    /// Replica faults: the model whose replica is hit.
    pub model: Option<String>,
    /// Replica faults: which of the model's replicas (default 0).
    #[serde(default)]
    pub replica: usize,
    /// GPU faults: the GPU id.
    pub gpu: Option<String>,
}

/// The `[faults]` table of an experiment.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultsSpec {
    /// How often the gateway retries a request that failed because its replica went down
    /// (on another replica, from the start of the failed stage).
    #[serde(default)]
    pub retries: u32,
    /// Whether an LLM whose on-demand KV allocation fails exits (an `oom` fault of that
    /// replica) instead of failing just the request that asked for memory.
    #[serde(default)]
    pub oom_crashes: bool,
    /// Recovery times.
    #[serde(default)]
    pub recovery: Recovery,
    /// Random fault processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub random: Vec<RandomFaults>,
    /// Faults at set times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inject: Vec<InjectedFault>,
}

impl FaultsSpec {
    /// Check numbers; names of models and GPUs are checked against the experiment by its loader.
    pub fn check(&self, origin: &Path) -> Result<(), InputError> {
        let r = &self.recovery;
        for (name, v) in [
            ("process_restart_s", r.process_restart_s),
            ("pod_restart_s", r.pod_restart_s),
            ("gpu_reset_s", r.gpu_reset_s),
            ("node_drain_s", r.node_drain_s),
        ] {
            // A restart always takes time: zero would bring a crashed replica back at once.
            positive(origin, &format!("faults.recovery.{name}"), v)?;
            if v > crate::workload::MAX_SECONDS {
                return Err(InputError::invalid(
                    origin,
                    &format!("faults.recovery.{name}"),
                    crate::config::num(v),
                    "at most 1e8 s",
                ));
            }
        }
        if self.retries > 10 {
            return Err(InputError::invalid(
                origin,
                "faults.retries",
                self.retries,
                "at most 10 retries",
            ));
        }
        for (i, f) in self.random.iter().enumerate() {
            let field = format!("faults.random[{i}]");
            positive(origin, &format!("{field}.mtbf_h"), f.mtbf_h)?;
            if f.kind.per_replica() && !f.gpus.is_empty() {
                return Err(InputError::invalid(
                    origin,
                    &format!("{field}.gpus"),
                    format!("{:?}", f.gpus),
                    &format!(
                        "no gpus for a {} fault, which hits replicas: name `models` instead",
                        f.kind.name()
                    ),
                ));
            }
            if !f.kind.per_replica() && !f.models.is_empty() {
                return Err(InputError::invalid(
                    origin,
                    &format!("{field}.models"),
                    format!("{:?}", f.models),
                    &format!(
                        "no models for a {} fault, which hits a GPU: name `gpus` instead",
                        f.kind.name()
                    ),
                ));
            }
        }
        for (i, f) in self.inject.iter().enumerate() {
            let field = format!("faults.inject[{i}]");
            non_negative(origin, &format!("{field}.at_s"), f.at_s)?;
            match (f.kind.per_replica(), &f.model, &f.gpu) {
                (true, Some(_), None) | (false, None, Some(_)) => {}
                (true, _, _) => {
                    return Err(InputError::invalid(
                        origin,
                        &field,
                        f.kind.name(),
                        "a replica fault names `model` (and `replica`, default 0), not `gpu`",
                    ));
                }
                (false, _, _) => {
                    return Err(InputError::invalid(
                        origin,
                        &field,
                        f.kind.name(),
                        "a GPU fault names `gpu`, not `model`",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtime_follows_the_recovery_the_kind_needs() {
        let r = Recovery::default();
        assert_eq!(r.downtime_s(FaultKind::Oom), r.process_restart_s);
        assert_eq!(r.downtime_s(FaultKind::AppCrash), r.pod_restart_s);
        assert_eq!(
            r.downtime_s(FaultKind::EccUncontained),
            r.gpu_reset_s + r.pod_restart_s
        );
        assert_eq!(r.downtime_s(FaultKind::FellOffBus), r.node_drain_s);
    }

    #[test]
    fn bad_numbers_are_refused_with_the_field() {
        let origin = Path::new("x.toml");
        let mut f = FaultsSpec::default();
        f.recovery.pod_restart_s = 0.0;
        let e = f.check(origin).unwrap_err().to_string();
        assert!(e.contains("faults.recovery.pod_restart_s"), "{e}");
        let mut f = FaultsSpec::default();
        f.random.push(RandomFaults {
            kind: FaultKind::AppCrash,
            mtbf_h: -1.0,
            models: vec![],
            gpus: vec![],
        });
        let e = f.check(origin).unwrap_err().to_string();
        assert!(e.contains("faults.random[0].mtbf_h"), "{e}");
        let mut f = FaultsSpec::default();
        f.inject.push(InjectedFault {
            at_s: 1.0,
            kind: FaultKind::FellOffBus,
            model: Some("m".into()),
            replica: 0,
            gpu: None,
        });
        let e = f.check(origin).unwrap_err().to_string();
        assert!(e.contains("names `gpu`"), "{e}");
    }
}
