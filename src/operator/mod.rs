//! The GPU Operator's own files, in and out: a cluster described by a mig-parted config, the
//! NVIDIA device plugin's sharing config, a node description and the pods' resource requests
//! becomes a gpushare experiment, and any simulated cluster becomes those files again.
//!
//! - [`yaml`]: YAML parsing whose errors name file, key path and line; `ConfigMap`s.
//! - [`migparted`]: the mig-parted config and the MIG state it leaves on a GPU.
//! - [`plugin`]: the device plugin's config and what it advertises.
//! - [`cluster`]: `cluster.yaml` (nodes, labels, file names) and the [`Bundle`] of all files.
//! - [`workloads`]: the Deployments (which pod asks for which resource).
//! - [`import`]: applying the configs to the nodes and placing the pods.
//! - [`export`]: a cluster's [`export::Layout`] and its files.
//!
//! Round trip: for a cluster the files can express, importing its export gives it back
//! exactly (GPU ids `gpu0..` across the nodes in order, MIG instances in creation order,
//! replicas where the device plugin's allocation puts them); tested.

pub mod cluster;
pub mod export;
pub mod import;
pub mod migparted;
pub mod plugin;
pub mod workloads;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use cluster::Bundle;
pub use import::{Placed, place};

use crate::config;
use crate::error::InputError;
use crate::experiment::{self, RawExperiment, ReplicaPlacement};
use crate::hardware::Catalogue;

/// An imported experiment.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The experiment as a TOML value: the base with `gpus` and `deployments` replaced.
    pub value: toml::Value,
    /// The cluster the files describe.
    pub placed: Placed,
    /// What the device plugin would ignore with a warning, and base deployments dropped.
    pub notes: Vec<String>,
}

/// Set `gpus` and `deployments` of an experiment value to `placed`. A deployment keeps the
/// serving settings (routing, batching, engine) of the base's deployment of the same model,
/// and its place in the base's order.
pub fn apply(
    value: &mut toml::Value,
    placed: &Placed,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let table = value
        .as_table_mut()
        .ok_or("the base experiment is not a TOML table")?;
    let gpus = toml::Value::try_from(&placed.gpus).map_err(|e| e.to_string())?;
    table.insert("gpus".into(), gpus);
    let base: Vec<toml::Value> = match table.get("deployments") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    // Deployments in the base's order (the order the simulation numbers replicas in), then
    // models the base does not deploy, in the order their pods appear.
    let base_rank = |m: &str| {
        base.iter()
            .position(|d| d.get("model").and_then(|v| v.as_str()) == Some(m))
            .unwrap_or(usize::MAX)
    };
    let mut ordered: Vec<&(String, Vec<ReplicaPlacement>)> = placed.deployments.iter().collect();
    ordered.sort_by_key(|(m, _)| base_rank(m));
    for (model, replicas) in ordered {
        let mut d = base
            .iter()
            .find(|d| d.get("model").and_then(|m| m.as_str()) == Some(model))
            .cloned()
            .unwrap_or_else(|| {
                let mut t = toml::Table::new();
                t.insert("model".into(), toml::Value::String(model.clone()));
                toml::Value::Table(t)
            });
        let r = toml::Value::try_from(replicas).map_err(|e| e.to_string())?;
        d.as_table_mut()
            .ok_or("a base deployment is not a table")?
            .insert("replicas".into(), r);
        out.push(d);
    }
    for d in &base {
        if let Some(m) = d.get("model").and_then(|m| m.as_str())
            && !placed.deployments.iter().any(|(p, _)| p == m)
        {
            notes.push(format!(
                "the base deploys {m}, which no workload runs: dropped"
            ));
        }
    }
    table.insert("deployments".into(), toml::Value::Array(out));
    Ok(())
}

/// Import `cluster` (a `cluster.yaml`) with the rest of the experiment (workload, answers,
/// audio, serving settings) from `base`, and check that the result simulates.
pub fn import_experiment(
    cluster: &Path,
    base: &Path,
    catalogue: &Catalogue,
) -> Result<Imported, InputError> {
    let mut notes = Vec::new();
    let mut bundle = Bundle::load(cluster, &mut notes)?;
    let mut value = experiment::load_merged_value(base)?;
    // The profiles the base experiment can name decide which of a pod's hints is its model.
    let models_dir = value
        .get("models_dir")
        .and_then(|m| m.as_str())
        .map(PathBuf::from);
    let sources = crate::models::Sources::new([catalogue.models_dir(), models_dir.as_deref()]);
    let known: Vec<String> = sources.list().into_iter().map(|(n, _)| n).collect();
    bundle
        .workloads
        .pick_models(&|n| known.iter().any(|k| k == n), &sources.describe())?;
    let placed = place(&bundle, catalogue)?;
    apply(&mut value, &placed, &mut notes).map_err(|m| InputError::invalid(base, "", "", &m))?;
    experiment::resolve_value(value.clone(), base, catalogue, &Default::default()).map_err(
        |e| InputError::Parse {
            path: cluster.to_path_buf(),
            message: format!(
                "the imported cluster does not simulate with {}: {}",
                base.display(),
                // The operator's files cannot lift the device plugin's MPS memory limit.
                e.to_string().replace(
                    experiment::MPS_MEMORY_HINT,
                    "the device plugin sets it for every MPS client and its config cannot lift it: \
                     lower sharing.mps.resources[].replicas in the device-plugin config, or run \
                     this model's pods on a node without MPS"
                )
            ),
        },
    )?;
    Ok(Imported {
        value,
        placed,
        notes,
    })
}

/// The GPU Operator files of an experiment's cluster: (file name, text).
pub fn export_raw(
    raw: &RawExperiment,
    origin: &Path,
    catalogue: &Catalogue,
) -> Result<Vec<(String, String)>, InputError> {
    let layout = export::layout_of(&raw.gpus, &raw.deployments, origin, catalogue)?;
    let bundle = export::bundle_of(&layout, catalogue)?;
    Ok(export::files_of(&bundle))
}

/// Write `files` into `dir` (created), all or none.
pub fn write_files(dir: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>, InputError> {
    std::fs::create_dir_all(dir).map_err(|e| InputError::write(dir, e))?;
    let out: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|(n, t)| (dir.join(n), t.clone().into_bytes()))
        .collect();
    config::write_atomic_all(&out)?;
    Ok(out.into_iter().map(|(p, _)| p).collect())
}

/// `target` relative to the folder `from` (both made absolute first), for paths written into
/// a file in `from`.
pub fn relative_path(from: &Path, target: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let (from, target) = (abs(from), abs(target));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The experiment value as TOML text for a file in folder `dir`: a `models_dir` (absolute or
/// relative to the working folder, as merged values hold it) and a trace's `path` made
/// relative to `dir`. Without `models_dir` the built-in profiles serve, wherever the file goes.
pub fn experiment_text(
    mut value: toml::Value,
    origin: &Path,
    dir: &Path,
) -> Result<String, InputError> {
    if let Some(t) = value.as_table_mut() {
        if let Some(m) = t
            .get("models_dir")
            .and_then(|m| m.as_str())
            .map(PathBuf::from)
        {
            t.insert(
                "models_dir".into(),
                toml::Value::String(relative_path(dir, &m).to_string_lossy().replace('\\', "/")),
            );
        }
        if let Some(toml::Value::Table(w)) = t.get_mut("workload")
            && let Some(toml::Value::String(p)) = w.get("path").cloned()
        {
            w.insert(
                "path".into(),
                toml::Value::String(
                    relative_path(dir, Path::new(&p))
                        .to_string_lossy()
                        .replace('\\', "/"),
                ),
            );
        }
    }
    toml::to_string(&value).map_err(|e| InputError::Parse {
        path: origin.to_path_buf(),
        message: format!("cannot write the experiment as TOML: {e}"),
    })
}

#[cfg(test)]
mod tests;
