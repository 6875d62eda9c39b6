//! The cluster description (`cluster.yaml`): the nodes (name, GPU model and count, the labels
//! that select their MIG and device-plugin configs) and the files that go with them. Together
//! they are a [`Bundle`], everything needed to rebuild the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::migparted::MigParted;
use super::plugin::{MigStrategy, PluginConfigs};
use super::workloads::Workloads;
use super::yaml::{self, At, Source};
use crate::error::InputError;

/// Node label selecting a mig-parted config (read by the MIG Manager).
pub const MIG_CONFIG_LABEL: &str = "nvidia.com/mig.config";
/// Node label selecting a device-plugin config (a key of its `ConfigMap`).
pub const PLUGIN_CONFIG_LABEL: &str = "nvidia.com/device-plugin.config";

/// The cluster description file.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterFile {
    /// Where it came from.
    pub origin: PathBuf,
    /// mig-parted config file, relative to this file.
    pub mig_parted: Option<String>,
    /// Device-plugin config file, relative to this file.
    pub device_plugin: Option<String>,
    /// Device-plugin config for nodes without the label (the ClusterPolicy's
    /// `devicePlugin.config.default`).
    pub device_plugin_default: Option<String>,
    /// The operator's `mig.strategy`; a device-plugin config's `flags.migStrategy` wins.
    pub mig_strategy: Option<MigStrategy>,
    /// Workloads file, relative to this file.
    pub workloads: String,
    /// Nodes, in order (GPU ids are numbered across them in this order).
    pub nodes: Vec<NodeSpec>,
}

/// One node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    /// Node name (its `kubernetes.io/hostname`).
    pub name: String,
    /// GPU model: a catalogue key (`a100-80gb`) or product name (`A100-SXM4-80GB`).
    pub gpu: String,
    /// GPUs in the node.
    pub count: u32,
    /// Node labels (the two config selectors, and any others `nodeSelector`s may match).
    pub labels: BTreeMap<String, String>,
    /// Simulation parameter, not a Kubernetes setting: the driver's time slice, microseconds.
    pub time_slice_us: Option<f64>,
    /// Simulation parameter: context-switch cost under time-slicing, microseconds.
    pub switch_cost_us: Option<f64>,
    /// Simulation naming, not a Kubernetes setting: the experiment's ids for these GPUs
    /// (default `gpu<N>`, numbered across the nodes in order).
    pub gpu_ids: Option<Vec<String>>,
    /// Simulation grouping: the experiment node these GPUs belong to (what a GPU falling off
    /// the bus takes down, and the reports' `node`), when it is not this node's name. Export
    /// writes it when the device plugin needs one experiment node split into several nodes.
    pub sim_node: Option<String>,
    /// Where the node is.
    pub at: At,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mig_parted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_plugin_default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mig_strategy: Option<MigStrategy>,
    workloads: String,
    nodes: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNode {
    name: String,
    gpu: String,
    count: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_slice_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    switch_cost_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gpu_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sim_node: Option<String>,
}

/// True if `s` is a Kubernetes object name (DNS-1123 subdomain): lower-case letters, digits,
/// `-` and `.`, starting and ending alphanumeric, at most 253 characters.
pub fn is_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl ClusterFile {
    /// Parse a cluster file's text.
    pub fn from_text(path: &Path, text: &str) -> Result<ClusterFile, InputError> {
        let src = Source::file(path, text);
        let raw: RawFile = src.parse()?;
        if raw.version != "v1" {
            return Err(src.error(
                At { line: 1, column: 1 },
                "version",
                format!("`{}`: expected v1", raw.version),
            ));
        }
        if raw.nodes.is_empty() {
            return Err(src.error(At::default(), "nodes", "empty: at least one node"));
        }
        let mut nodes: Vec<NodeSpec> = Vec::new();
        for (i, n) in raw.nodes.into_iter().enumerate() {
            let at = At::of(&n);
            let n = n.value;
            let f = format!("nodes[{i}]");
            if !is_k8s_name(&n.name) {
                return Err(src.error(at, &format!("{f}.name"), format!("`{}`: expected a Kubernetes node name (lower-case letters, digits, `-` and `.`)", n.name)));
            }
            if nodes.iter().any(|m| m.name == n.name) {
                return Err(src.error(
                    at,
                    &format!("{f}.name"),
                    format!("`{}` names another node too: node names are unique", n.name),
                ));
            }
            if !(1..=64).contains(&n.count) {
                return Err(src.error(
                    at,
                    &format!("{f}.count"),
                    format!("{}: expected 1 to 64 GPUs", n.count),
                ));
            }
            for (k, v) in [
                ("timeSliceUs", n.time_slice_us),
                ("switchCostUs", n.switch_cost_us),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && (0.0..=1e6).contains(&v))
                {
                    return Err(src.error(
                        at,
                        &format!("{f}.{k}"),
                        format!("{v}: expected microseconds in [0, 1e6]"),
                    ));
                }
            }
            if let Some(ids) = &n.gpu_ids {
                if ids.len() != n.count as usize {
                    return Err(src.error(
                        at,
                        &format!("{f}.gpuIds"),
                        format!(
                            "{} ids for {} GPUs: expected one id per GPU (or no gpuIds: gpu0, gpu1, ...)",
                            ids.len(),
                            n.count
                        ),
                    ));
                }
                let earlier = nodes.iter().flat_map(|m| m.gpu_ids.iter().flatten());
                if let Some(dup) = ids.iter().enumerate().find(|(k, id)| {
                    id.is_empty() || ids[..*k].contains(id) || earlier.clone().any(|e| e == *id)
                }) {
                    return Err(src.error(
                        at,
                        &format!("{f}.gpuIds"),
                        format!("`{}`: expected unique, non-empty GPU ids", dup.1),
                    ));
                }
            }
            nodes.push(NodeSpec {
                name: n.name,
                gpu: n.gpu,
                count: n.count,
                labels: n.labels,
                time_slice_us: n.time_slice_us,
                switch_cost_us: n.switch_cost_us,
                gpu_ids: n.gpu_ids,
                sim_node: n.sim_node,
                at,
            });
        }
        Ok(ClusterFile {
            origin: path.to_path_buf(),
            mig_parted: raw.mig_parted,
            device_plugin: raw.device_plugin,
            device_plugin_default: raw.device_plugin_default,
            mig_strategy: raw.mig_strategy,
            workloads: raw.workloads,
            nodes,
        })
    }

    /// The file's text.
    pub fn write(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            version: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            mig_parted: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            device_plugin: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            device_plugin_default: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            mig_strategy: &'a Option<MigStrategy>,
            workloads: &'a str,
            nodes: Vec<RawNode>,
        }
        yaml::to_string(&Out {
            version: "v1",
            mig_parted: &self.mig_parted,
            device_plugin: &self.device_plugin,
            device_plugin_default: &self.device_plugin_default,
            mig_strategy: &self.mig_strategy,
            workloads: &self.workloads,
            nodes: self
                .nodes
                .iter()
                .map(|n| RawNode {
                    name: n.name.clone(),
                    gpu: n.gpu.clone(),
                    count: n.count,
                    labels: n.labels.clone(),
                    time_slice_us: n.time_slice_us,
                    switch_cost_us: n.switch_cost_us,
                    gpu_ids: n.gpu_ids.clone(),
                    sim_node: n.sim_node.clone(),
                })
                .collect(),
        })
    }
}

/// A cluster description with the files it names, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// `cluster.yaml`.
    pub cluster: ClusterFile,
    /// The mig-parted config, if named.
    pub mig_parted: Option<MigParted>,
    /// The device-plugin configs, if named.
    pub device_plugin: Option<PluginConfigs>,
    /// The workloads.
    pub workloads: Workloads,
}

impl Bundle {
    /// Read `cluster.yaml` and the files it names (relative to it); `notes` collects what the
    /// device plugin would ignore with a warning.
    pub fn load(path: &Path, notes: &mut Vec<String>) -> Result<Bundle, InputError> {
        Self::load_with(path, notes, &|p| crate::config::read(p))
    }

    /// [`Self::load`] with a file reader (tests read from memory).
    pub fn load_with(
        path: &Path,
        notes: &mut Vec<String>,
        read: &dyn Fn(&Path) -> Result<String, InputError>,
    ) -> Result<Bundle, InputError> {
        let cluster = ClusterFile::from_text(path, &read(path)?)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mig_parted = match &cluster.mig_parted {
            Some(f) => {
                let p = dir.join(f);
                Some(MigParted::from_text(&p, &read(&p)?)?)
            }
            None => None,
        };
        let device_plugin = match &cluster.device_plugin {
            Some(f) => {
                let p = dir.join(f);
                Some(PluginConfigs::from_text(&p, &read(&p)?, notes)?)
            }
            None => None,
        };
        let wp = dir.join(&cluster.workloads);
        let workloads = Workloads::from_text(&wp, &read(&wp)?, notes)?;
        Ok(Bundle {
            cluster,
            mig_parted,
            device_plugin,
            workloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_round_trip_and_errors() {
        let text = "version: v1\nmigParted: mig.yaml\nmigStrategy: mixed\nworkloads: w.yaml\nnodes:\n- name: node0\n  gpu: A100-SXM4-80GB\n  count: 2\n  labels:\n    nvidia.com/mig.config: all-balanced\n";
        let c = ClusterFile::from_text(Path::new("c.yaml"), text).unwrap();
        assert_eq!(c.nodes[0].labels[MIG_CONFIG_LABEL], "all-balanced");
        assert_eq!(c.mig_strategy, Some(MigStrategy::Mixed));
        let back = ClusterFile::from_text(Path::new("c.yaml"), &c.write()).unwrap();
        let strip = |mut c: ClusterFile| {
            c.nodes.iter_mut().for_each(|n| n.at = At::default());
            c
        };
        assert_eq!(strip(back), strip(c));
        let e = ClusterFile::from_text(Path::new("c.yaml"), &text.replace("count: 2", "count: 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 6") && e.contains("nodes[0].count"), "{e}");
        let e = ClusterFile::from_text(
            Path::new("c.yaml"),
            &text.replace("  count: 2", "  gpus: 2"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 8") && e.contains("unknown field `gpus`"),
            "{e}"
        );
        let e = ClusterFile::from_text(Path::new("c.yaml"), &text.replace("node0", "Node_0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Kubernetes node name"), "{e}");
    }

    #[test]
    fn k8s_names() {
        assert!(is_k8s_name("parakeet-1.1b-node0"));
        assert!(!is_k8s_name("Node0"));
        assert!(!is_k8s_name("-a"));
        assert!(!is_k8s_name(""));
    }
}
