//! From a simulated cluster to GPU Operator files: a [`Layout`] (nodes, each GPU's MIG state,
//! each node's sharing, and the pods per node and resource) becomes a [`Bundle`] and its files.
//!
//! What the files cannot say is an error, not a silent change: a node whose whole GPUs are
//! shared in different ways (the device plugin's sharing applies to every GPU of a node), a
//! node with two GPU models, MPS next to MIG on one node, time-slicing or MPS with fewer than 2
//! replicas, or MPS thread and memory shares other than the device plugin's equal split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cluster::{
    Bundle, ClusterFile, MIG_CONFIG_LABEL, NodeSpec, PLUGIN_CONFIG_LABEL, is_k8s_name,
};
use super::migparted::{Devices, MigEntry, MigParted, MigState, counts, sort_creation_order};
use super::plugin::{
    GPU_RESOURCE, MigStrategy, PluginConfig, PluginConfigs, Replicated, ReplicatedResource,
    Sharing, mig_resource,
};
use super::workloads::{self, HOSTNAME_LABEL, Workload, Workloads};
use super::yaml::{self, At, ConfigMap, Metadata};
use crate::error::InputError;
use crate::experiment::{
    DEFAULT_SWITCH_COST_US, DEFAULT_TIME_SLICE_US, Deployment, GpuEntry, MpsMemoryLimit,
    SharingSpec,
};
use crate::hardware::Catalogue;

/// File names of an exported bundle.
pub const CLUSTER_FILE: &str = "cluster.yaml";
/// The mig-parted config, as a `ConfigMap`.
pub const MIG_FILE: &str = "mig-parted-config.yaml";
/// The device-plugin configs, as a `ConfigMap`.
pub const PLUGIN_FILE: &str = "device-plugin-config.yaml";
/// The Deployments.
pub const WORKLOADS_FILE: &str = "workloads.yaml";
/// Namespace of the GPU Operator's `ConfigMap`s.
pub const OPERATOR_NAMESPACE: &str = "gpu-operator";
/// Name of the mig-parted `ConfigMap` (`migManager.config.name`).
pub const MIG_CONFIG_MAP: &str = "custom-mig-parted-config";
/// Name of the device-plugin `ConfigMap` (`devicePlugin.config.name`).
pub const PLUGIN_CONFIG_MAP: &str = "device-plugin-config";

/// How a node's whole (non-MIG) GPUs are shared.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeSharing {
    /// One pod per GPU.
    None,
    /// Time-slicing, `replicas` references per GPU.
    TimeSlicing {
        /// References per GPU.
        replicas: u32,
        /// Time slice, microseconds.
        time_slice_us: f64,
        /// Switch cost, microseconds.
        switch_cost_us: f64,
    },
    /// MPS, `replicas` clients per GPU.
    Mps {
        /// Clients per GPU.
        replicas: u32,
    },
}

/// One node of a layout.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLayout {
    /// Node name.
    pub name: String,
    /// The experiment's node, when this node is one of several it was split into.
    pub sim_node: Option<String>,
    /// The experiment's ids of its GPUs (empty: `gpu<N>`, numbered across the nodes).
    pub ids: Vec<String>,
    /// Catalogue key of its GPUs.
    pub gpu: String,
    /// Each GPU's MIG state (instances in creation order).
    pub gpus: Vec<MigState>,
    /// Sharing of its whole GPUs.
    pub sharing: NodeSharing,
}

/// Pods of one model on one node asking for one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct PodGroup {
    /// Model.
    pub model: String,
    /// Node.
    pub node: String,
    /// Resource.
    pub resource: String,
    /// Pods.
    pub replicas: u32,
}

/// A cluster as GPU Operator objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Nodes in order.
    pub nodes: Vec<NodeLayout>,
    /// Pods, in the order they are placed.
    pub pods: Vec<PodGroup>,
}

fn bad(origin: &Path, field: &str, value: impl ToString, allowed: &str) -> InputError {
    InputError::invalid(origin, field, value, allowed)
}

/// The layout of an experiment's cluster (`gpus` and `deployments`); `origin` names the
/// experiment in errors.
pub fn layout_of(
    gpus: &[GpuEntry],
    deployments: &[Deployment],
    origin: &Path,
    catalogue: &Catalogue,
) -> Result<Layout, InputError> {
    let mut nodes: Vec<NodeLayout> = Vec::new();
    let mut gpu_at: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (gi, g) in gpus.iter().enumerate() {
        let f = format!("gpus[{gi}]");
        let spec = catalogue
            .gpu(&g.gpu_type)
            .map_err(|e| InputError::hardware(origin, &format!("{f}.type"), e))?;
        if !is_k8s_name(&g.node) {
            return Err(bad(
                origin,
                &format!("{f}.node"),
                format!("\"{}\"", g.node),
                "a Kubernetes node name (lower-case letters, digits, `-` and `.`)",
            ));
        }
        // The device plugin's config applies to a whole node, and a node has one GPU model:
        // a GPU that its experiment node's latest Kubernetes node cannot hold starts another
        // (`<node>-2`, ...), which keeps the experiment's node as `simNode`. Only the latest
        // is tried, so that the GPUs keep their order through an import.
        let whole = whole_sharing(&g.sharing);
        let fits = |n: &NodeLayout| {
            let has_mig = n.gpus.iter().any(|m| matches!(m, MigState::Enabled(_)));
            let has_whole = n.gpus.contains(&MigState::Disabled);
            n.gpu == spec.key
                && match &whole {
                    None => !matches!(n.sharing, NodeSharing::Mps { .. }),
                    Some(s) => {
                        (!has_whole || n.sharing == *s)
                            && !(has_mig && matches!(s, NodeSharing::Mps { .. }))
                    }
                }
        };
        let mine: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].name == g.node || nodes[i].sim_node.as_deref() == Some(&g.node))
            .collect();
        let ni = match mine.last() {
            Some(&i) if fits(&nodes[i]) => i,
            last => {
                let k = mine.len() + 1;
                let (name, sim_node) = match last {
                    None => (g.node.clone(), None),
                    Some(_) => (format!("{}-{k}", g.node), Some(g.node.clone())),
                };
                if last.is_some() && nodes.iter().any(|n| n.name == name) {
                    return Err(bad(
                        origin,
                        &format!("{f}.node"),
                        &g.node,
                        &format!(
                            "a node name such that {name} is free: node {} needs another Kubernetes node for this GPU (its sharing or model differs from the node's) and {name} is taken",
                            g.node
                        ),
                    ));
                }
                nodes.push(NodeLayout {
                    name,
                    sim_node,
                    ids: Vec::new(),
                    gpu: spec.key.clone(),
                    gpus: Vec::new(),
                    sharing: NodeSharing::None,
                });
                nodes.len() - 1
            }
        };
        let node = &mut nodes[ni];
        node.ids.push(g.id.clone());
        let sharing = match &g.sharing {
            SharingSpec::Mig { instances } => {
                let mut names = Vec::new();
                for n in instances {
                    names.push(
                        spec.mig_profile(n)
                            .map_err(|e| {
                                InputError::hardware(origin, &format!("{f}.sharing.instances"), e)
                            })?
                            .name
                            .clone(),
                    );
                }
                sort_creation_order(&mut names, spec);
                node.gpus.push(MigState::Enabled(names));
                None
            }
            SharingSpec::Dedicated => {
                node.gpus.push(MigState::Disabled);
                Some(NodeSharing::None)
            }
            SharingSpec::TimeSlicing {
                replicas,
                time_slice_us,
                switch_cost_us,
            } => {
                if *replicas < 2 {
                    return Err(bad(
                        origin,
                        &format!("{f}.sharing.replicas"),
                        replicas,
                        "at least 2: the device plugin needs replicas >= 2 to time-slice (use mode = \"dedicated\" for one pod per GPU)",
                    ));
                }
                node.gpus.push(MigState::Disabled);
                Some(NodeSharing::TimeSlicing {
                    replicas: *replicas,
                    time_slice_us: *time_slice_us,
                    switch_cost_us: *switch_cost_us,
                })
            }
            SharingSpec::Mps {
                replicas,
                active_thread_pct,
                memory_limit,
            } => {
                if *replicas < 2 {
                    return Err(bad(
                        origin,
                        &format!("{f}.sharing.replicas"),
                        replicas,
                        "at least 2: the device plugin needs replicas >= 2 for MPS (use mode = \"dedicated\" for one pod per GPU)",
                    ));
                }
                let equal = 100.0 / f64::from(*replicas);
                if active_thread_pct.iter().any(|p| (p - equal).abs() > 1e-9) {
                    return Err(bad(
                        origin,
                        &format!("{f}.sharing.active_thread_pct"),
                        format!("{active_thread_pct:?}"),
                        &format!(
                            "none, or {equal} each: the device plugin gives every MPS client 100 / replicas % of the threads"
                        ),
                    ));
                }
                if *memory_limit != MpsMemoryLimit::Equal {
                    return Err(bad(
                        origin,
                        &format!("{f}.sharing.memory_limit"),
                        "\"none\"",
                        "\"equal\": the device plugin limits every MPS client to 1 / replicas of the memory",
                    ));
                }
                node.gpus.push(MigState::Disabled);
                Some(NodeSharing::Mps {
                    replicas: *replicas,
                })
            }
        };
        if let Some(s) = sharing {
            node.sharing = s;
        }
        gpu_at.insert(g.id.as_str(), (ni, node.gpus.len() - 1));
    }
    for n in &nodes {
        let mig = n.gpus.iter().any(|m| matches!(m, MigState::Enabled(_)));
        if mig && matches!(n.sharing, NodeSharing::Mps { .. }) {
            let gi = gpus.iter().position(|g| g.node == n.name).unwrap_or(0);
            return Err(bad(
                origin,
                &format!("gpus[{gi}].node"),
                &n.name,
                "a node without MIG GPUs for MPS: the device plugin does not run MPS on a node with MIG devices; put the MPS GPUs on another node",
            ));
        }
    }
    // Where each replica must land: (node, GPU in node, MIG instance, resource).
    let mut wanted: Vec<Vec<Target>> = Vec::new();
    for (di, d) in deployments.iter().enumerate() {
        let mut targets = Vec::new();
        for (ri, r) in d.replicas.iter().enumerate() {
            let rf = format!("deployments[{di}].replicas[{ri}]");
            let Some(&(ni, k)) = gpu_at.get(r.gpu.as_str()) else {
                return Err(bad(
                    origin,
                    &format!("{rf}.gpu"),
                    &r.gpu,
                    "one of the GPU ids",
                ));
            };
            let node = &nodes[ni];
            let resource = match (&node.gpus[k], r.instance) {
                (MigState::Enabled(_), Some(i)) => {
                    let g = gpus
                        .iter()
                        .find(|g| g.id == r.gpu)
                        .expect("invariant: id found above");
                    let SharingSpec::Mig { instances } = &g.sharing else {
                        unreachable!("invariant: MIG state from a MIG GPU")
                    };
                    let Some(p) = instances.get(i) else {
                        return Err(bad(
                            origin,
                            &format!("{rf}.instance"),
                            i,
                            &format!("an instance index of {}", r.gpu),
                        ));
                    };
                    let name = catalogue
                        .gpu(&g.gpu_type)
                        .and_then(|s| s.mig_profile(p).map(|x| x.name.clone()))
                        .map_err(|e| InputError::hardware(origin, &format!("{rf}.instance"), e))?;
                    mig_resource(&name)
                }
                (MigState::Disabled, None) => GPU_RESOURCE.to_string(),
                _ => {
                    return Err(bad(
                        origin,
                        &format!("{rf}.instance"),
                        format!("{:?}", r.instance),
                        "an instance exactly when the GPU is in MIG mode",
                    ));
                }
            };
            targets.push(Target {
                node: ni,
                gpu: k,
                instance: r.instance,
                resource,
            });
        }
        wanted.push(targets);
    }
    let order = pod_order(&nodes, &wanted).unwrap_or_else(|| {
        // No order makes the allocation give every pod its device back: model by model.
        (0..wanted.len())
            .flat_map(|d| (0..wanted[d].len()).map(move |_| d))
            .collect()
    });
    // Consecutive pods of one model, node and resource make one Deployment.
    let mut next = vec![0usize; wanted.len()];
    let mut pods: Vec<PodGroup> = Vec::new();
    for d in order {
        let t = &wanted[d][next[d]];
        next[d] += 1;
        let node = &nodes[t.node].name;
        match pods.last_mut() {
            Some(g)
                if g.model == deployments[d].model
                    && &g.node == node
                    && g.resource == t.resource =>
            {
                g.replicas += 1
            }
            _ => pods.push(PodGroup {
                model: deployments[d].model.clone(),
                node: node.clone(),
                resource: t.resource.clone(),
                replicas: 1,
            }),
        }
    }
    Ok(Layout { nodes, pods })
}

/// The device a replica must get back on import.
struct Target {
    node: usize,
    gpu: usize,
    instance: Option<usize>,
    resource: String,
}

/// An order of the pods (deployment index per pod, each deployment's pods in their own order)
/// in which the device plugin's allocation, as the import replays it (exclusive devices:
/// first free; shared ones: fewest handed out, lowest index), gives every pod its device;
/// searched depth first, earliest deployment first. `None` if it finds none.
fn pod_order(nodes: &[NodeLayout], wanted: &[Vec<Target>]) -> Option<Vec<usize>> {
    // Per node, its devices in the import's order: GPU, then instance in creation order.
    let mut devices: Vec<Vec<Dev>> = nodes
        .iter()
        .map(|n| {
            let mut v = Vec::new();
            for (k, state) in n.gpus.iter().enumerate() {
                match state {
                    MigState::Enabled(profiles) => {
                        for (i, p) in profiles.iter().enumerate() {
                            v.push(Dev {
                                gpu: k,
                                instance: Some(i),
                                resource: mig_resource(p),
                                capacity: 1,
                                shared: false,
                                used: 0,
                            });
                        }
                    }
                    MigState::Disabled => {
                        let (capacity, shared) = match n.sharing {
                            NodeSharing::None => (1, false),
                            NodeSharing::TimeSlicing { replicas, .. }
                            | NodeSharing::Mps { replicas } => (replicas, true),
                        };
                        v.push(Dev {
                            gpu: k,
                            instance: None,
                            resource: GPU_RESOURCE.to_string(),
                            capacity,
                            shared,
                            used: 0,
                        });
                    }
                }
            }
            v
        })
        .collect();
    let total: usize = wanted.iter().map(Vec::len).sum();
    let mut next = vec![0usize; wanted.len()];
    let mut order = Vec::with_capacity(total);
    let mut budget = SEARCH_STEPS;
    place_next(
        &mut devices,
        wanted,
        &mut next,
        &mut order,
        total,
        &mut budget,
    )
    .then_some(order)
}

/// Most placements `pod_order` tries before giving up (its search backtracks).
const SEARCH_STEPS: u32 = 200_000;

/// Depth-first: append to `order` a deployment whose next pod the allocation would give its
/// own device, for every pod left; undo and try the next deployment where that dead-ends
/// (earliest deployment first, so the common case takes no backtracking).
fn place_next(
    devices: &mut [Vec<Dev>],
    wanted: &[Vec<Target>],
    next: &mut [usize],
    order: &mut Vec<usize>,
    total: usize,
    budget: &mut u32,
) -> bool {
    if order.len() == total {
        return true;
    }
    for d in 0..wanted.len() {
        let Some(t) = wanted[d].get(next[d]) else {
            continue;
        };
        let Some(j) = allocate(&devices[t.node], &t.resource) else {
            continue;
        };
        let dev = &devices[t.node][j];
        if dev.gpu != t.gpu || dev.instance != t.instance || *budget == 0 {
            continue;
        }
        *budget -= 1;
        devices[t.node][j].used += 1;
        next[d] += 1;
        order.push(d);
        if place_next(devices, wanted, next, order, total, budget) {
            return true;
        }
        order.pop();
        next[d] -= 1;
        devices[t.node][j].used -= 1;
    }
    false
}

/// The device the plugin hands a pod asking for `resource` on a node: exclusive devices first
/// free; shared ones fewest handed out, lowest index.
fn allocate(devs: &[Dev], resource: &str) -> Option<usize> {
    devs.iter()
        .enumerate()
        .filter(|(_, x)| x.resource == resource && x.used < x.capacity)
        .min_by_key(|(j, x)| if x.shared { (x.used, *j) } else { (0, *j) })
        .map(|(j, _)| j)
}

/// One device of a node as the allocation sees it: GPU, instance, resource name, how many pods
/// it takes and how many it has.
struct Dev {
    gpu: usize,
    instance: Option<usize>,
    resource: String,
    capacity: u32,
    shared: bool,
    used: u32,
}

/// How a whole GPU's sharing configures its node's device plugin; `None` for a MIG GPU.
fn whole_sharing(s: &SharingSpec) -> Option<NodeSharing> {
    match s {
        SharingSpec::Mig { .. } => None,
        SharingSpec::Dedicated => Some(NodeSharing::None),
        SharingSpec::TimeSlicing {
            replicas,
            time_slice_us,
            switch_cost_us,
        } => Some(NodeSharing::TimeSlicing {
            replicas: *replicas,
            time_slice_us: *time_slice_us,
            switch_cost_us: *switch_cost_us,
        }),
        SharingSpec::Mps { replicas, .. } => Some(NodeSharing::Mps {
            replicas: *replicas,
        }),
    }
}

/// Name of a mig-parted config for a node whose GPUs are all in `state`:
/// `mig-3g.40gb-2x2g.20gb`; `None` if too long for a label value.
fn mig_config_name(state: &MigState) -> Option<String> {
    let MigState::Enabled(names) = state else {
        return Some("all-disabled".into());
    };
    let mut groups: Vec<(String, usize)> = Vec::new();
    for n in names {
        match groups.iter_mut().find(|g| g.0 == *n) {
            Some(g) => g.1 += 1,
            None => groups.push((n.clone(), 1)),
        }
    }
    let slug: Vec<String> = groups
        .iter()
        .map(|(n, c)| {
            let n = n.replace('+', ".");
            if *c == 1 { n } else { format!("{c}x{n}") }
        })
        .collect();
    let name = format!("mig-{}", slug.join("-"));
    (name.len() <= 63).then_some(name)
}

fn plugin_config_name(s: &NodeSharing) -> String {
    match s {
        NodeSharing::None => "dedicated".into(),
        NodeSharing::TimeSlicing { replicas, .. } => format!("time-slicing-{replicas}"),
        NodeSharing::Mps { replicas } => format!("mps-{replicas}"),
    }
}

/// The bundle of a layout: mixed MIG strategy, one mig-parted config per distinct node
/// layout, one device-plugin config per distinct node sharing, and one Deployment per model,
/// node and resource, pinned to its node.
pub fn bundle_of(layout: &Layout, catalogue: &Catalogue) -> Result<Bundle, InputError> {
    let dir = PathBuf::new();
    let mig_origin = dir.join(MIG_FILE);
    let plugin_origin = dir.join(PLUGIN_FILE);
    let mut mig_configs: BTreeMap<String, Vec<MigEntry>> = BTreeMap::new();
    let mut plugin_configs: BTreeMap<String, PluginConfig> = BTreeMap::new();
    let mut nodes = Vec::new();
    let mut first_gpu = 0usize;
    for n in &layout.nodes {
        let spec = catalogue
            .gpu(&n.gpu)
            .map_err(|e| InputError::hardware(Path::new(CLUSTER_FILE), "nodes", e))?;
        let uniform = n.gpus.windows(2).all(|w| w[0] == w[1]);
        let mig_name = if uniform {
            mig_config_name(&n.gpus[0])
        } else {
            None
        }
        .unwrap_or_else(|| format!("mig-{}", n.name));
        let mut entries: Vec<MigEntry> = Vec::new();
        if uniform {
            entries.push(entry(&spec.pci_device_id, Devices::All, &n.gpus[0]));
        } else {
            let mut states: Vec<&MigState> = Vec::new();
            for s in &n.gpus {
                if !states.contains(&s) {
                    states.push(s);
                }
            }
            for s in states {
                let idx: Vec<u32> = (0..n.gpus.len() as u32)
                    .filter(|&i| &n.gpus[i as usize] == s)
                    .collect();
                entries.push(entry(&spec.pci_device_id, Devices::List(idx), s));
            }
        }
        // A config named after its layout serves every node with that layout, one entry per
        // GPU model (as mig-parted's presets do); disabling MIG needs no device filter.
        if uniform && n.gpus[0] == MigState::Disabled {
            entries[0].device_filter.clear();
        }
        let config = mig_configs.entry(mig_name.clone()).or_default();
        if !uniform {
            // Named after the node: its own config.
            *config = std::mem::take(&mut entries);
        }
        for e in entries {
            match config.iter().find(|x| x.device_filter == e.device_filter) {
                Some(x) if *x == e => {}
                Some(_) => {
                    return Err(InputError::invalid(
                        Path::new(CLUSTER_FILE),
                        "nodes",
                        &mig_name,
                        "distinct mig config names (two node layouts share a name)",
                    ));
                }
                None => config.push(e),
            }
        }
        let plugin_name = plugin_config_name(&n.sharing);
        let sharing = match &n.sharing {
            NodeSharing::None => Sharing::None,
            NodeSharing::TimeSlicing { replicas, .. } => {
                Sharing::TimeSlicing(replicated(*replicas, &plugin_name))
            }
            NodeSharing::Mps { replicas } => Sharing::Mps(replicated(*replicas, &plugin_name)),
        };
        plugin_configs.insert(
            plugin_name.clone(),
            PluginConfig {
                origin: plugin_origin.clone(),
                within: format!("data.{plugin_name}"),
                mig_strategy: Some(MigStrategy::Mixed),
                sharing,
            },
        );
        let (ts, sw) = match &n.sharing {
            NodeSharing::TimeSlicing {
                time_slice_us,
                switch_cost_us,
                ..
            } => (
                (*time_slice_us != DEFAULT_TIME_SLICE_US).then_some(*time_slice_us),
                (*switch_cost_us != DEFAULT_SWITCH_COST_US).then_some(*switch_cost_us),
            ),
            _ => (None, None),
        };
        nodes.push(NodeSpec {
            name: n.name.clone(),
            gpu: spec.name.clone(),
            count: n.gpus.len() as u32,
            labels: [
                (MIG_CONFIG_LABEL.to_string(), mig_name),
                (PLUGIN_CONFIG_LABEL.to_string(), plugin_name),
            ]
            .into_iter()
            .collect(),
            time_slice_us: ts,
            switch_cost_us: sw,
            // Ids only where they differ from the numbering an import gives.
            gpu_ids: (n
                .ids
                .iter()
                .enumerate()
                .any(|(k, id)| *id != format!("gpu{}", first_gpu + k)))
            .then(|| n.ids.clone()),
            sim_node: n.sim_node.clone(),
            at: At::default(),
        });
        first_gpu += n.gpus.len();
    }
    let mut items: Vec<Workload> = Vec::new();
    for p in &layout.pods {
        let several = layout
            .pods
            .iter()
            .filter(|q| q.model == p.model && q.node == p.node)
            .count()
            > 1;
        let name = if several {
            format!(
                "{}-{}-{}",
                p.model,
                p.node,
                p.resource.trim_start_matches("nvidia.com/")
            )
        } else {
            format!("{}-{}", p.model, p.node)
        };
        // One model, node and resource split into several Deployments: number them.
        let taken = items
            .iter()
            .filter(|w| w.name == name || w.name.starts_with(&format!("{name}-part")))
            .count();
        let name = if taken > 0 {
            format!("{name}-part{}", taken + 1)
        } else {
            name
        };
        if !is_k8s_name(&name) || name.len() > 63 {
            return Err(InputError::invalid(
                Path::new(WORKLOADS_FILE),
                "metadata.name",
                &name,
                "a Kubernetes object name of at most 63 characters (lower-case model and node names)",
            ));
        }
        items.push(Workload {
            name,
            model: p.model.clone(),
            model_candidates: Vec::new(),
            kind: "Deployment".into(),
            replicas: p.replicas,
            node_selector: [(HOSTNAME_LABEL.to_string(), p.node.clone())]
                .into_iter()
                .collect(),
            resource: p.resource.clone(),
            count: 1,
            at: At::default(),
        });
    }
    Ok(Bundle {
        cluster: ClusterFile {
            origin: dir.join(CLUSTER_FILE),
            mig_parted: Some(MIG_FILE.into()),
            device_plugin: Some(PLUGIN_FILE.into()),
            device_plugin_default: None,
            mig_strategy: Some(MigStrategy::Mixed),
            workloads: WORKLOADS_FILE.into(),
            nodes,
        },
        mig_parted: Some(MigParted {
            origin: mig_origin,
            within: "data.config.yaml".into(),
            configs: mig_configs,
        }),
        device_plugin: Some(PluginConfigs {
            origin: plugin_origin,
            configs: plugin_configs,
            bare: false,
        }),
        workloads: Workloads {
            origin: dir.join(WORKLOADS_FILE),
            items,
        },
    })
}

fn entry(pci: &str, devices: Devices, state: &MigState) -> MigEntry {
    let (enabled, devs) = match state {
        MigState::Disabled => (false, Vec::new()),
        MigState::Enabled(names) => (true, counts(names)),
    };
    MigEntry {
        device_filter: vec![pci.to_string()],
        devices,
        mig_enabled: enabled,
        mig_devices: devs,
        at: At::default(),
        devices_at: At::default(),
    }
}

fn replicated(replicas: u32, _name: &str) -> Replicated {
    Replicated {
        rename_by_default: false,
        fail_requests_greater_than_one: true,
        resources: vec![ReplicatedResource {
            name: GPU_RESOURCE.into(),
            replicas,
            at: At::default(),
        }],
    }
}

fn config_map(name: &str, data: BTreeMap<String, String>) -> String {
    yaml::to_string(&ConfigMap {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        metadata: Metadata {
            name: name.into(),
            namespace: Some(OPERATOR_NAMESPACE.into()),
            ..Metadata::default()
        },
        data,
    })
}

/// The files of a bundle: (file name, text), each with a header saying how to apply it.
pub fn files_of(bundle: &Bundle) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let labels: Vec<String> = bundle
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let l: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "#   kubectl label node {} --overwrite {}",
                n.name,
                l.join(" ")
            )
        })
        .collect();
    let head = format!(
        "# gpushare cluster: the nodes and the GPU Operator files that configure them.\n# Apply with:\n#   kubectl apply -f {MIG_FILE} -f {PLUGIN_FILE}\n#   helm upgrade gpu-operator nvidia/gpu-operator -n {OPERATOR_NAMESPACE} --reuse-values \\\n#     --set mig.strategy=mixed --set migManager.config.name={MIG_CONFIG_MAP} \\\n#     --set devicePlugin.config.name={PLUGIN_CONFIG_MAP}\n{}\n#   kubectl apply -f {WORKLOADS_FILE}   # after setting each container's image\n",
        labels.join("\n")
    );
    out.push((
        CLUSTER_FILE.to_string(),
        format!("{head}{}", bundle.cluster.write()),
    ));
    if let Some(m) = &bundle.mig_parted {
        let data = [("config.yaml".to_string(), m.write())]
            .into_iter()
            .collect();
        out.push((
            MIG_FILE.to_string(),
            format!("# mig-parted config for the GPU Operator's MIG Manager (migManager.config.name={MIG_CONFIG_MAP});\n# a node takes the config its nvidia.com/mig.config label names.\n{}", config_map(MIG_CONFIG_MAP, data)),
        ));
    }
    if let Some(p) = &bundle.device_plugin {
        let data = p
            .configs
            .iter()
            .map(|(k, c)| (k.clone(), c.write()))
            .collect();
        out.push((
            PLUGIN_FILE.to_string(),
            format!("# NVIDIA device-plugin configs (devicePlugin.config.name={PLUGIN_CONFIG_MAP});\n# a node takes the config its nvidia.com/device-plugin.config label names.\n{}", config_map(PLUGIN_CONFIG_MAP, data)),
        ));
    }
    out.push((
        WORKLOADS_FILE.to_string(),
        format!(
            "# One Deployment per model, node and GPU resource, pinned to its node.\n# Set each container's image (placeholder {}) before applying.\n{}",
            workloads::IMAGE_PLACEHOLDER,
            workloads::write(&bundle.workloads.items, "default")
        ),
    ));
    out
}

/// Read the files of [`files_of`] back (from memory), as [`Bundle::load`] reads them from disk.
pub fn bundle_from_files(
    dir: &Path,
    files: &[(String, String)],
    notes: &mut Vec<String>,
) -> Result<Bundle, InputError> {
    let read = |p: &Path| -> Result<String, InputError> {
        files
            .iter()
            .find(|(n, _)| dir.join(n) == p)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| InputError::read(p, std::io::Error::from(std::io::ErrorKind::NotFound)))
    };
    Bundle::load_with(&dir.join(CLUSTER_FILE), notes, &read)
}
