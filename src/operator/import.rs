//! From GPU Operator files to a simulated cluster: each node's MIG state (mig-parted), the
//! resources its device plugin advertises, and where each pod lands.
//!
//! Placement of pods, in the workloads file's order (Kubernetes gives no order; this one is
//! fixed so that imports are deterministic):
//! - a pod goes to the first node, in `cluster.yaml` order, that matches its `nodeSelector` and
//!   has a free unit of the resource it asks for (nodes carry their labels and
//!   `kubernetes.io/hostname`; the scheduler's scoring is not modelled);
//! - on that node, a MIG device or a whole GPU is the first free one (GPU index, then instance
//!   in creation order); a shared (time-sliced or MPS) reference comes from the GPU with the
//!   fewest references handed out, lowest index first: the device plugin's default
//!   `distributed` allocation policy;
//! - a pod that asks for more than one unit is refused: with `failRequestsGreaterThanOne` the
//!   device plugin refuses it (`UnexpectedAdmissionError`), and otherwise the simulator cannot
//!   spread one replica over several devices.

use std::collections::BTreeMap;
use std::path::Path;

use super::cluster::{Bundle, MIG_CONFIG_LABEL, NodeSpec, PLUGIN_CONFIG_LABEL};
use super::migparted::MigState;
use super::plugin::{GPU_RESOURCE, MigStrategy, PluginConfig, Sharing, mig_resource};
use super::workloads::HOSTNAME_LABEL;
use super::yaml::{self, At};
use crate::error::InputError;
use crate::experiment::{
    DEFAULT_SWITCH_COST_US, DEFAULT_TIME_SLICE_US, GpuEntry, MpsMemoryLimit, ReplicaPlacement,
    SharingSpec,
};
use crate::hardware::Catalogue;

/// The cluster a bundle describes: its GPUs and, per model in order of first appearance, where
/// its replicas run.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    /// GPUs, numbered `gpu0`, `gpu1`, ... across the nodes in order.
    pub gpus: Vec<GpuEntry>,
    /// Model -> replica placements.
    pub deployments: Vec<(String, Vec<ReplicaPlacement>)>,
}

/// One advertised device: a whole GPU, a MIG instance, or a shared GPU.
#[derive(Clone, Debug)]
struct Device {
    gpu: usize,
    instance: Option<usize>,
    resource: String,
    capacity: u32,
    used: u32,
    shared: Option<bool>,
}

/// A node after its configs are applied.
struct NodeState<'a> {
    spec: &'a NodeSpec,
    labels: BTreeMap<String, String>,
    devices: Vec<Device>,
    describe: String,
}

fn err(path: &Path, at: At, field: &str, msg: impl std::fmt::Display) -> InputError {
    yaml::located(path, at, field, msg)
}

/// Apply the bundle's configs to its nodes and place its pods (see the module doc).
pub fn place(bundle: &Bundle, catalogue: &Catalogue) -> Result<Placed, InputError> {
    let cf = &bundle.cluster;
    let cpath = cf.origin.clone();
    let mut gpus: Vec<GpuEntry> = Vec::new();
    let mut nodes: Vec<NodeState> = Vec::new();
    for (ni, node) in cf.nodes.iter().enumerate() {
        let nf = format!("nodes[{ni}]");
        let spec = catalogue
            .gpu(&node.gpu)
            .map_err(|e| err(&cpath, node.at, &format!("{nf}.gpu"), e))?
            .clone();
        // MIG state of each GPU.
        let states: Vec<MigState> = match node.labels.get(MIG_CONFIG_LABEL) {
            None => vec![MigState::Disabled; node.count as usize],
            Some(name) => {
                let Some(mp) = &bundle.mig_parted else {
                    return Err(err(
                        &cpath,
                        node.at,
                        &format!("{nf}.labels.\"{MIG_CONFIG_LABEL}\""),
                        format!(
                            "selects mig config `{name}` but the cluster file names no migParted file"
                        ),
                    ));
                };
                (0..node.count)
                    .map(|i| mp.state(name, i, &spec))
                    .collect::<Result<_, _>>()?
            }
        };
        let plugin = plugin_config(bundle, node, ni)?;
        let strategy = plugin
            .and_then(|p| p.mig_strategy)
            .or(cf.mig_strategy)
            .unwrap_or(MigStrategy::None);
        let sharing = plugin.map(|p| p.sharing.clone()).unwrap_or_default();
        let first = gpus.len();
        let mut devices = Vec::new();
        let any_mig = states.iter().any(|s| matches!(s, MigState::Enabled(_)));
        if any_mig && strategy == MigStrategy::None {
            return Err(err(
                &cpath,
                node.at,
                &nf,
                format!(
                    "node {} has MIG-enabled GPUs but the MIG strategy is none (MIG devices would not be advertised): set migStrategy: mixed (or single) in the cluster file or flags.migStrategy in its device-plugin config",
                    node.name
                ),
            ));
        }
        if strategy == MigStrategy::Single {
            check_single(&states, &node.name).map_err(|m| err(&cpath, node.at, &nf, m))?;
        }
        let where_plugin = |p: Option<&PluginConfig>, what: &str| -> InputError {
            match p {
                Some(p) => err(&p.origin, At::default(), &p.field("sharing"), what),
                None => err(&cpath, node.at, &nf, what),
            }
        };
        for (i, state) in states.iter().enumerate() {
            let g = first + i;
            let id = match &node.gpu_ids {
                Some(ids) => ids[i].clone(),
                None => format!("gpu{g}"),
            };
            let sharing_spec = match state {
                MigState::Enabled(instances) => {
                    if instances.is_empty() {
                        return Err(err(
                            &cpath,
                            node.at,
                            &format!("{nf}.labels.\"{MIG_CONFIG_LABEL}\""),
                            format!(
                                "GPU {i} of node {} has MIG enabled with no instance (as `all-enabled` leaves it): it advertises nothing, and the simulator needs at least one instance per MIG GPU; choose a config with mig-devices",
                                node.name
                            ),
                        ));
                    }
                    for (k, profile) in instances.iter().enumerate() {
                        let resource = match strategy {
                            MigStrategy::Mixed => mig_resource(profile),
                            _ => GPU_RESOURCE.to_string(),
                        };
                        match &sharing {
                            Sharing::TimeSlicing(t) if t.find(&resource).is_some() => {
                                return Err(where_plugin(
                                    plugin,
                                    &format!(
                                        "time-slices {resource}, a MIG device on node {}: time-slicing within a MIG instance is not simulated (one replica per instance)",
                                        node.name
                                    ),
                                ));
                            }
                            Sharing::Mps(_) => {
                                return Err(where_plugin(
                                    plugin,
                                    &format!(
                                        "MPS on node {}, whose GPU {i} is in MIG mode: the device plugin does not support MPS on MIG devices",
                                        node.name
                                    ),
                                ));
                            }
                            _ => {}
                        }
                        devices.push(Device {
                            gpu: g,
                            instance: Some(k),
                            resource,
                            capacity: 1,
                            used: 0,
                            shared: None,
                        });
                    }
                    SharingSpec::Mig {
                        instances: instances.clone(),
                    }
                }
                MigState::Disabled => {
                    let (resource, capacity, shared, spec_) = match &sharing {
                        Sharing::TimeSlicing(t) if t.find(GPU_RESOURCE).is_some() => {
                            let r = t.find(GPU_RESOURCE).map_or(2, |r| r.replicas);
                            (
                                t.advertised(GPU_RESOURCE),
                                r,
                                Some(t.fail_requests_greater_than_one),
                                SharingSpec::TimeSlicing {
                                    replicas: r,
                                    time_slice_us: node
                                        .time_slice_us
                                        .unwrap_or(DEFAULT_TIME_SLICE_US),
                                    switch_cost_us: node
                                        .switch_cost_us
                                        .unwrap_or(DEFAULT_SWITCH_COST_US),
                                },
                            )
                        }
                        Sharing::Mps(m) if m.find(GPU_RESOURCE).is_some() => {
                            let r = m.find(GPU_RESOURCE).map_or(2, |r| r.replicas);
                            (
                                m.advertised(GPU_RESOURCE),
                                r,
                                Some(true),
                                SharingSpec::Mps {
                                    replicas: r,
                                    active_thread_pct: Vec::new(),
                                    memory_limit: MpsMemoryLimit::Equal,
                                },
                            )
                        }
                        _ => (GPU_RESOURCE.to_string(), 1, None, SharingSpec::Dedicated),
                    };
                    devices.push(Device {
                        gpu: g,
                        instance: None,
                        resource,
                        capacity,
                        used: 0,
                        shared,
                    });
                    spec_
                }
            };
            gpus.push(GpuEntry {
                id,
                gpu_type: spec.key.clone(),
                node: node.sim_node.clone().unwrap_or_else(|| node.name.clone()),
                sharing: sharing_spec,
            });
        }
        let mut labels = node.labels.clone();
        labels.insert(HOSTNAME_LABEL.to_string(), node.name.clone());
        nodes.push(NodeState {
            spec: node,
            labels,
            describe: advertised(&devices),
            devices,
        });
    }

    let wl = &bundle.workloads;
    let mut deployments: Vec<(String, Vec<ReplicaPlacement>)> = Vec::new();
    for (wi, w) in wl.items.iter().enumerate() {
        let wf = format!(
            "{}{}",
            if wl.items.len() > 1 {
                format!("document {}.", wi + 1)
            } else {
                String::new()
            },
            "spec"
        );
        let matching: Vec<usize> = (0..nodes.len())
            .filter(|&n| {
                w.node_selector
                    .iter()
                    .all(|(k, v)| nodes[n].labels.get(k) == Some(v))
            })
            .collect();
        if matching.is_empty() {
            let sel: Vec<String> = w
                .node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let names: Vec<&str> = nodes.iter().map(|n| n.spec.name.as_str()).collect();
            return Err(err(
                &wl.origin,
                w.at,
                &format!("{wf}.nodeSelector"),
                format!(
                    "{}: no node matches it (nodes: {}; each has the labels of cluster.yaml and kubernetes.io/hostname)",
                    sel.join(", "),
                    names.join(", ")
                ),
            ));
        }
        let shared = nodes
            .iter()
            .flat_map(|n| &n.devices)
            .find(|d| d.resource == w.resource)
            .and_then(|d| d.shared);
        if w.count > 1 {
            let why = match shared {
                Some(true) => format!(
                    "{} units of the shared resource {}: the device plugin refuses it (failRequestsGreaterThanOne; the pod fails with UnexpectedAdmissionError: maximum request size for shared resources is 1)",
                    w.count, w.resource
                ),
                _ => format!(
                    "{} units of {}: a replica runs on one GPU or MIG device in the simulation; ask for 1 and raise replicas",
                    w.count, w.resource
                ),
            };
            return Err(err(
                &wl.origin,
                w.at,
                &format!("{wf}.template.spec.containers.resources.limits"),
                why,
            ));
        }
        let entry = match deployments.iter().position(|(m, _)| *m == w.model) {
            Some(i) => i,
            None => {
                deployments.push((w.model.clone(), Vec::new()));
                deployments.len() - 1
            }
        };
        for pod in 0..w.replicas {
            let mut placed = None;
            for &n in &matching {
                if let Some(d) = pick(&nodes[n].devices, &w.resource) {
                    placed = Some((n, d));
                    break;
                }
            }
            let Some((n, d)) = placed else {
                let offered: Vec<String> = matching
                    .iter()
                    .map(|&n| format!("{}: {}", nodes[n].spec.name, nodes[n].describe))
                    .collect();
                let total: u32 = matching
                    .iter()
                    .flat_map(|&n| &nodes[n].devices)
                    .filter(|d| d.resource == w.resource)
                    .map(|d| d.capacity)
                    .sum();
                let msg = if total == 0 {
                    format!(
                        "{} asks for {}, which no matching node advertises ({})",
                        w.name,
                        w.resource,
                        offered.join("; ")
                    )
                } else {
                    format!(
                        "pod {} of {} ({}) finds no free {}: the matching nodes advertise {total} in all, and earlier pods hold them ({})",
                        pod + 1,
                        w.replicas,
                        w.name,
                        w.resource,
                        offered.join("; ")
                    )
                };
                return Err(err(&wl.origin, w.at, &format!("{wf}.replicas"), msg));
            };
            let dev = &mut nodes[n].devices[d];
            dev.used += 1;
            deployments[entry].1.push(ReplicaPlacement {
                gpu: gpus[dev.gpu].id.clone(),
                instance: dev.instance,
            });
        }
    }
    if deployments.is_empty() {
        return Err(err(
            &wl.origin,
            At::default(),
            "",
            "no pods: nothing to simulate",
        ));
    }
    Ok(Placed { gpus, deployments })
}

/// The device a pod asking for `resource` gets on a node, if one is free.
fn pick(devices: &[Device], resource: &str) -> Option<usize> {
    let free = devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.resource == resource && d.used < d.capacity);
    // Exclusive devices: first free. Shared: fewest handed out, lowest index (distributed).
    free.min_by_key(|(i, d)| {
        if d.shared.is_some() {
            (d.used, *i)
        } else {
            (0, *i)
        }
    })
    .map(|(i, _)| i)
}

/// `nvidia.com/gpu: 2, nvidia.com/mig-3g.40gb: 2`: what a node advertises.
fn advertised(devices: &[Device]) -> String {
    let mut m: BTreeMap<&str, u32> = BTreeMap::new();
    for d in devices {
        *m.entry(&d.resource).or_default() += d.capacity;
    }
    if m.is_empty() {
        return "nothing".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Single strategy: every GPU of the node in MIG mode, all instances of one profile.
fn check_single(states: &[MigState], node: &str) -> Result<(), String> {
    let mut profile: Option<&str> = None;
    for (i, s) in states.iter().enumerate() {
        let MigState::Enabled(inst) = s else {
            return Err(format!(
                "migStrategy single needs every GPU of node {node} in MIG mode, but GPU {i} is not: use mixed"
            ));
        };
        for p in inst {
            match profile {
                None => profile = Some(p),
                Some(q) if q == p => {}
                Some(q) => {
                    return Err(format!(
                        "migStrategy single needs one MIG profile on node {node}, but it has {q} and {p}: use mixed"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The device-plugin config of `node`: its label's key, else the cluster default, else a bare
/// config file; `None` when there is none (the plugin's defaults: no sharing).
fn plugin_config<'a>(
    bundle: &'a Bundle,
    node: &NodeSpec,
    ni: usize,
) -> Result<Option<&'a PluginConfig>, InputError> {
    let cf = &bundle.cluster;
    let label = node.labels.get(PLUGIN_CONFIG_LABEL);
    let Some(dp) = &bundle.device_plugin else {
        if let Some(l) = label {
            return Err(err(
                &cf.origin,
                node.at,
                &format!("nodes[{ni}].labels.\"{PLUGIN_CONFIG_LABEL}\""),
                format!(
                    "selects device-plugin config `{l}` but the cluster file names no devicePlugin file"
                ),
            ));
        }
        return Ok(None);
    };
    if dp.bare {
        if let Some(l) = label {
            return Err(err(
                &cf.origin,
                node.at,
                &format!("nodes[{ni}].labels.\"{PLUGIN_CONFIG_LABEL}\""),
                format!(
                    "selects `{l}`, but {} is one bare config (for every node): a label selects among the keys of a ConfigMap",
                    dp.origin.display()
                ),
            ));
        }
        return Ok(dp.configs.get(""));
    }
    let (name, field) = match (label, &cf.device_plugin_default) {
        (Some(l), _) => (l, format!("nodes[{ni}].labels.\"{PLUGIN_CONFIG_LABEL}\"")),
        (None, Some(d)) => (d, "devicePluginDefault".to_string()),
        (None, None) => return Ok(None),
    };
    match dp.configs.get(name) {
        Some(c) => Ok(Some(c)),
        None => {
            let keys: Vec<&str> = dp.configs.keys().map(String::as_str).collect();
            Err(err(
                &cf.origin,
                node.at,
                &field,
                format!(
                    "device-plugin config `{name}` is not a key of {}: it has {}",
                    dp.origin.display(),
                    keys.join(", ")
                ),
            ))
        }
    }
}
