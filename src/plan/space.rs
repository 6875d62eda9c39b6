//! The configurations the planner searches, and how one becomes a cluster.
//!
//! A configuration gives every model one placement, the same for all its replicas:
//! - **dedicated**: a whole GPU per replica;
//! - **MIG** with one profile: the instances of all MIG models packed on the fewest GPUs
//!   ([`super::packing`]);
//! - **time-slicing**: a pool of identical GPUs, each running the same tenants (a *unit*, e.g.
//!   one ASR and one TTS), the device plugin's `replicas` being the unit's size (2 or more);
//! - **MPS**: the same with MPS clients (each gets 100 / replicas % of the threads and
//!   1 / replicas of the memory).
//!
//! An LLM on a time-sliced GPU preallocates `memory_fraction / replicas` of the card (the
//! deployment's fraction, default 0.9), so that its co-tenants fit: time-slicing does not
//! isolate memory, and an operator sizes `gpu_memory_utilization` that way.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::packing::Packer;
use crate::experiment::DEFAULT_SWITCH_COST_US;
use crate::experiment::DEFAULT_TIME_SLICE_US;
use crate::hardware::GpuSpec;
use crate::operator::export::{Layout, NodeLayout, NodeSharing, PodGroup};
use crate::operator::migparted::{MigState, sort_creation_order};
use crate::operator::plugin::{GPU_RESOURCE, mig_resource};

/// Where a model's replicas run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode", content = "profile")]
pub enum Placement {
    /// A whole GPU each.
    Dedicated,
    /// A MIG instance of this profile each.
    Mig(String),
    /// Tenants of the time-slicing pool.
    TimeSlicing,
    /// Clients of the MPS pool.
    Mps,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Placement::Dedicated => write!(f, "dedicated"),
            Placement::Mig(p) => write!(f, "mig {p}"),
            Placement::TimeSlicing => write!(f, "time-slicing"),
            Placement::Mps => write!(f, "mps"),
        }
    }
}

/// The partition a replica has when alone on its GPU: what per-model bounds are measured on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "slot", content = "of")]
pub enum Slot {
    /// A whole GPU (dedicated, or a time-sliced GPU's tenant while the others are idle).
    Whole,
    /// A MIG instance.
    Mig(String),
    /// An MPS client capped at 100 / k % of the threads and 1 / k of the memory.
    MpsClient(u32),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Slot::Whole => write!(f, "whole GPU"),
            Slot::Mig(p) => write!(f, "MIG {p}"),
            Slot::MpsClient(k) => write!(f, "MPS 1/{k}"),
        }
    }
}

/// A shared pool: `gpus` identical GPUs each running `unit[m]` replicas of model m.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pool {
    /// GPUs.
    pub gpus: u32,
    /// Tenants of each model per GPU (0 for models elsewhere).
    pub unit: Vec<u32>,
}

impl Pool {
    /// The device plugin's `replicas`: tenants per GPU.
    pub fn replicas(&self) -> u32 {
        self.unit.iter().sum()
    }
}

/// One configuration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Candidate {
    /// Placement per model.
    pub placements: Vec<Placement>,
    /// Replicas per model.
    pub replicas: Vec<u32>,
    /// The time-slicing pool, if a model uses it.
    pub time_slicing: Option<Pool>,
    /// The MPS pool, if a model uses it.
    pub mps: Option<Pool>,
}

/// A configuration with its MIG packing and GPU count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Packed {
    /// The configuration.
    pub candidate: Candidate,
    /// Instances per MIG GPU (creation order).
    pub mig_gpus: Vec<Vec<String>>,
    /// False when the MIG packing is not proven minimal (very large needs).
    pub packing_exact: bool,
    /// GPUs in all.
    pub gpus: u32,
}

impl Candidate {
    /// A configuration whose pooled models get `unit` x the pool's GPUs replicas each; the
    /// others keep theirs from `replicas`.
    pub fn with_pools(
        placements: Vec<Placement>,
        mut replicas: Vec<u32>,
        time_slicing: Option<Pool>,
        mps: Option<Pool>,
    ) -> Candidate {
        for pool in [&time_slicing, &mps].into_iter().flatten() {
            for (m, &u) in pool.unit.iter().enumerate() {
                if u > 0 {
                    replicas[m] = u * pool.gpus;
                }
            }
        }
        Candidate {
            placements,
            replicas,
            time_slicing,
            mps,
        }
    }

    /// MIG instances needed: profile -> count.
    pub fn mig_need(&self) -> BTreeMap<String, u32> {
        let mut need = BTreeMap::new();
        for (p, r) in self.placements.iter().zip(&self.replicas) {
            if let Placement::Mig(prof) = p {
                *need.entry(prof.clone()).or_insert(0) += r;
            }
        }
        need
    }

    /// Dedicated GPUs.
    pub fn dedicated_gpus(&self) -> u32 {
        self.placements
            .iter()
            .zip(&self.replicas)
            .filter(|(p, _)| **p == Placement::Dedicated)
            .map(|(_, r)| r)
            .sum()
    }

    /// Pack the MIG instances; `None` if a profile does not fit the GPU.
    pub fn packed(self, gpu: &GpuSpec, packer: &Packer) -> Option<Packed> {
        let (mig, mut packing, exact) = packer.pack(&self.mig_need())?;
        for g in &mut packing {
            sort_creation_order(g, gpu);
        }
        let gpus = self.dedicated_gpus()
            + mig
            + self.time_slicing.as_ref().map_or(0, |p| p.gpus)
            + self.mps.as_ref().map_or(0, |p| p.gpus);
        Some(Packed {
            candidate: self,
            mig_gpus: packing,
            packing_exact: exact,
            gpus,
        })
    }

    /// One line: `parakeet-1.1b: mig 3g.40gb x2; ...; time-slicing 2 GPUs x (1+1)`.
    pub fn describe(&self, models: &[String]) -> String {
        let mut parts = Vec::new();
        for (i, m) in models.iter().enumerate() {
            parts.push(format!("{m} {} x{}", self.placements[i], self.replicas[i]));
        }
        for (name, pool) in [("time-slicing", &self.time_slicing), ("mps", &self.mps)] {
            if let Some(p) = pool {
                parts.push(format!("{name} {} GPUs, {} per GPU", p.gpus, p.replicas()));
            }
        }
        parts.join("; ")
    }

    /// A short label for charts and tables: the modes used, in a fixed order, e.g.
    /// `dedicated+mig`.
    pub fn modes(&self) -> String {
        let order = ["dedicated", "mig", "time-slicing", "mps"];
        let used: Vec<&str> = order
            .iter()
            .copied()
            .filter(|o| {
                self.placements.iter().any(|p| {
                    *o == match p {
                        Placement::Dedicated => "dedicated",
                        Placement::Mig(_) => "mig",
                        Placement::TimeSlicing => "time-slicing",
                        Placement::Mps => "mps",
                    }
                })
            })
            .collect();
        used.join("+")
    }
}

impl Packed {
    /// The cluster as GPU Operator objects: one node group per pool (`dedicated-0`, `mig-0`,
    /// `time-slicing-0`, `mps-0`, ... of at most `gpus_per_node` GPUs each) and the pods of
    /// each model spread over its pool's GPUs in order.
    pub fn layout(&self, models: &[String], gpu: &GpuSpec, gpus_per_node: u32) -> Layout {
        let c = &self.candidate;
        let mut nodes: Vec<NodeLayout> = Vec::new();
        let mut pods: Vec<PodGroup> = Vec::new();
        let per = gpus_per_node.max(1) as usize;
        // (model, gpu index in pool, resource) per replica, per pool, then grouped by node.
        let mut add_pool = |name: &str,
                            states: Vec<MigState>,
                            sharing: NodeSharing,
                            per_gpu: Vec<Vec<(usize, String)>>| {
            let first = nodes.len();
            for (k, chunk) in states.chunks(per).enumerate() {
                nodes.push(NodeLayout {
                    name: format!("{name}-{k}"),
                    sim_node: None,
                    ids: Vec::new(),
                    gpu: gpu.key.clone(),
                    gpus: chunk.to_vec(),
                    sharing: sharing.clone(),
                });
            }
            for (m, model) in models.iter().enumerate() {
                let mut groups: Vec<PodGroup> = Vec::new();
                for (g, tenants) in per_gpu.iter().enumerate() {
                    for (tm, res) in tenants {
                        if *tm != m {
                            continue;
                        }
                        let node = nodes[first + g / per].name.clone();
                        match groups
                            .iter_mut()
                            .find(|x| x.node == node && &x.resource == res)
                        {
                            Some(x) => x.replicas += 1,
                            None => groups.push(PodGroup {
                                model: model.clone(),
                                node,
                                resource: res.clone(),
                                replicas: 1,
                            }),
                        }
                    }
                }
                pods.extend(groups);
            }
        };
        // Dedicated: one GPU per replica, models in order.
        let mut ded: Vec<Vec<(usize, String)>> = Vec::new();
        for (m, (p, r)) in c.placements.iter().zip(&c.replicas).enumerate() {
            if *p == Placement::Dedicated {
                for _ in 0..*r {
                    ded.push(vec![(m, GPU_RESOURCE.to_string())]);
                }
            }
        }
        if !ded.is_empty() {
            add_pool(
                "dedicated",
                vec![MigState::Disabled; ded.len()],
                NodeSharing::None,
                ded,
            );
        }
        // MIG: each profile's instances handed to its models in model order.
        if !self.mig_gpus.is_empty() {
            let mut left: Vec<u32> = c.replicas.clone();
            let mut per_gpu = Vec::new();
            for g in &self.mig_gpus {
                let mut tenants = Vec::new();
                for inst in g {
                    let m = (0..models.len())
                        .find(|&m| c.placements[m] == Placement::Mig(inst.clone()) && left[m] > 0)
                        .expect("invariant: the packing holds exactly the instances needed");
                    left[m] -= 1;
                    tenants.push((m, mig_resource(inst)));
                }
                per_gpu.push(tenants);
            }
            let states = self
                .mig_gpus
                .iter()
                .map(|g| MigState::Enabled(g.clone()))
                .collect();
            add_pool("mig", states, NodeSharing::None, per_gpu);
        }
        for (name, pool) in [("time-slicing", &c.time_slicing), ("mps", &c.mps)] {
            let Some(p) = pool else { continue };
            let mut unit = Vec::new();
            for (m, &u) in p.unit.iter().enumerate() {
                for _ in 0..u {
                    unit.push((m, GPU_RESOURCE.to_string()));
                }
            }
            let sharing = if name == "mps" {
                NodeSharing::Mps {
                    replicas: p.replicas(),
                }
            } else {
                NodeSharing::TimeSlicing {
                    replicas: p.replicas(),
                    time_slice_us: DEFAULT_TIME_SLICE_US,
                    switch_cost_us: DEFAULT_SWITCH_COST_US,
                }
            };
            // Pods of one model are placed together, so list each model's tenants per GPU.
            add_pool(
                name,
                vec![MigState::Disabled; p.gpus as usize],
                sharing,
                vec![unit; p.gpus as usize],
            );
        }
        Layout { nodes, pods }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::SharingSpec;
    use crate::hardware::Catalogue;
    use crate::operator::export::bundle_of;
    use crate::operator::place;

    fn models() -> Vec<String> {
        ["asr", "tts", "llm"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn a_candidate_becomes_the_cluster_it_describes() {
        let cat = Catalogue::builtin();
        let gpu = cat.gpu("a100-80gb").unwrap().clone();
        let packer = Packer::new(&gpu);
        let c = Candidate {
            placements: vec![
                Placement::Mig("3g.40gb".into()),
                Placement::TimeSlicing,
                Placement::Dedicated,
            ],
            replicas: vec![3, 4, 2],
            time_slicing: Some(Pool {
                gpus: 2,
                unit: vec![0, 2, 0],
            }),
            mps: None,
        };
        let s = c.packed(&gpu, &packer).unwrap();
        assert_eq!(s.gpus, 2 + 2 + 2);
        let layout = s.layout(&models(), &gpu, 8);
        let names: Vec<&str> = layout.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dedicated-0", "mig-0", "time-slicing-0"]);
        let placed = place(&bundle_of(&layout, &cat).unwrap(), &cat).unwrap();
        assert_eq!(placed.gpus.len(), 6);
        let count = |m: &str| {
            placed
                .deployments
                .iter()
                .find(|(x, _)| x == m)
                .unwrap()
                .1
                .len()
        };
        assert_eq!((count("asr"), count("tts"), count("llm")), (3, 4, 2));
        let ts: Vec<&SharingSpec> = placed.gpus.iter().map(|g| &g.sharing).collect();
        assert!(matches!(
            ts[4],
            SharingSpec::TimeSlicing { replicas: 2, .. }
        ));
        // Node groups split at gpus_per_node.
        let layout = s.layout(&models(), &gpu, 1);
        assert_eq!(layout.nodes.len(), 6);
        let placed2 = place(&bundle_of(&layout, &cat).unwrap(), &cat).unwrap();
        assert_eq!(placed2.gpus.len(), 6);
    }
}
