//! From a node's inventory to what the simulator reads: each GPU matched to the catalogue (by
//! PCI device id, else by name), its MIG instances in placement order, a table for people and
//! a cluster file (`[[gpus]]` entries) that an experiment can `extends` as it is.
//!
//! **Invariant:** every `[[gpus]]` entry written passes the simulator's own layout check
//! (`hardware::validate_layout`); a GPU that cannot be simulated is left out with a comment
//! and a warning, never written wrong.

use std::fmt::Write as _;

use crate::hardware::{Catalogue, GpuSpec, format_layout, validate_layout};
use crate::nvml::recording::{GpuInfo, MigDeviceInfo, Node, ProcessRec};

/// How a GPU was matched to the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// Its PCI device id equals the catalogue entry's.
    PciDeviceId,
    /// Its name is one of the catalogue entry's names (NVML name, product name, key...).
    Name,
}

impl MatchedBy {
    fn words(self) -> &'static str {
        match self {
            MatchedBy::PciDeviceId => "PCI device id",
            MatchedBy::Name => "name",
        }
    }
}

/// The catalogue entry of GPU `g`, and how it was found: through the catalogue's one resolver
/// ([`Catalogue::device`]), by PCI device id first, else by any of its names (NVML name, key...).
pub fn match_gpu<'a>(cat: &'a Catalogue, g: &GpuInfo) -> Option<(&'a GpuSpec, MatchedBy)> {
    cat.device(g.pci_device_id.get().map(String::as_str), &g.name)
        .map(|(spec, by_pci)| {
            let by = if by_pci {
                MatchedBy::PciDeviceId
            } else {
                MatchedBy::Name
            };
            (spec, by)
        })
}

/// One MIG (GPU) instance as the simulator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Catalogue profile name, e.g. `3g.40gb`.
    pub profile: String,
    /// First memory slice, when NVML gave the placement.
    pub start: Option<u32>,
    /// MIG device UUIDs (more than one when the GPU instance has several compute instances).
    pub uuids: Vec<String>,
}

/// How one GPU of the node is simulated.
#[derive(Clone, Debug, PartialEq)]
pub enum Sharing {
    /// The whole GPU (MIG off).
    Dedicated,
    /// MIG instances, in placement order.
    Mig(Vec<Instance>),
}

/// A GPU of the node resolved against the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedGpu {
    /// NVML index.
    pub index: u32,
    /// Catalogue key.
    pub key: String,
    /// How it was matched.
    pub matched_by: MatchedBy,
    /// How it is shared.
    pub sharing: Sharing,
}

/// What the node gives the simulator: the GPUs it can simulate, and why others were left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// GPUs written to the cluster file.
    pub gpus: Vec<ResolvedGpu>,
    /// GPUs left out, by index, with the reason.
    pub left_out: Vec<(u32, String)>,
    /// Notes for the user (pending MIG changes, compute instances, odd placements).
    pub warnings: Vec<String>,
}

/// Resolve every GPU of `node` against `cat`.
pub fn resolve(node: &Node, cat: &Catalogue) -> Resolved {
    let mut out = Resolved {
        gpus: Vec::new(),
        left_out: Vec::new(),
        warnings: Vec::new(),
    };
    for g in &node.gpus {
        let Some((spec, matched_by)) = match_gpu(cat, g) else {
            let known: Vec<String> = cat
                .gpus()
                .iter()
                .map(|s| format!("{} ({}, {})", s.key, s.name, s.pci_device_id))
                .collect();
            out.left_out.push((
                g.index,
                format!(
                    "{} (PCI device id {}) is not in the GPU catalogue ({}); add a [[gpu]] \
                     entry to hardware/gpus.toml to simulate it",
                    g.name,
                    g.pci_device_id.get().map_or("unknown", String::as_str),
                    known.join("; ")
                ),
            ));
            continue;
        };
        let mode = g.mig_mode.get().copied();
        if let Some(m) = mode
            && m.current != m.pending
        {
            out.warnings.push(format!(
                "GPU {}: MIG mode is {} now and {} after the next GPU reset; the cluster file \
                 describes it as it is now",
                g.index,
                on_off(m.current),
                on_off(m.pending)
            ));
        }
        let sharing = if mode.is_some_and(|m| m.current) {
            match mig_instances(g, spec, &mut out.warnings) {
                Ok(list) if list.is_empty() => {
                    out.left_out.push((
                        g.index,
                        format!(
                            "{} is in MIG mode with no MIG instances: it offers no CUDA device",
                            g.name
                        ),
                    ));
                    continue;
                }
                Ok(list) => Sharing::Mig(list),
                Err(why) => {
                    out.left_out.push((g.index, why));
                    continue;
                }
            }
        } else {
            Sharing::Dedicated
        };
        out.gpus.push(ResolvedGpu {
            index: g.index,
            key: spec.key.clone(),
            matched_by,
            sharing,
        });
    }
    out
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The GPU instances of `g` in placement order, profiles named as the catalogue names them.
fn mig_instances(
    g: &GpuInfo,
    spec: &GpuSpec,
    warnings: &mut Vec<String>,
) -> Result<Vec<Instance>, String> {
    // One simulated instance per GPU instance: MIG devices sharing a GPU instance id are its
    // compute instances.
    let mut list: Vec<(Option<u32>, Instance)> = Vec::new();
    for m in &g.mig_devices {
        let profile = profile_of(m, spec)?;
        let gi = m.gpu_instance.get();
        if let Some(gi) = gi
            && let Some((_, inst)) = list.iter_mut().find(|(id, _)| *id == Some(gi.id))
        {
            inst.uuids.push(m.uuid.clone());
            warnings.push(format!(
                "GPU {}: GPU instance {} ({}) has several compute instances; it is simulated \
                 as one {} instance (compute instances are not modelled)",
                g.index, gi.id, inst.profile, inst.profile
            ));
            continue;
        }
        list.push((
            gi.map(|x| x.id),
            Instance {
                profile,
                start: gi.map(|x| x.placement_start),
                uuids: vec![m.uuid.clone()],
            },
        ));
    }
    let mut instances: Vec<Instance> = list.into_iter().map(|(_, i)| i).collect();
    if instances.iter().all(|i| i.start.is_some()) {
        instances.sort_by_key(|i| i.start);
    } else if !instances.is_empty() {
        warnings.push(format!(
            "GPU {}: NVML gave no placement for some MIG instances; they are listed in MIG \
             device order and the simulator places them lowest slice first",
            g.index
        ));
    }
    let names: Vec<&str> = instances.iter().map(|i| i.profile.as_str()).collect();
    let placed = validate_layout(spec, &names).map_err(|e| {
        format!(
            "GPU {}: its MIG instances {} do not form a layout the simulator accepts: {e}",
            g.index,
            format_layout(&names)
        )
    })?;
    let actual: Vec<Option<u32>> = instances.iter().map(|i| i.start).collect();
    let simulated: Vec<Option<u32>> = placed.iter().map(|p| Some(p.start)).collect();
    if actual.iter().all(Option::is_some) && actual != simulated {
        warnings.push(format!(
            "GPU {}: the simulator places {} at slices {:?}, the GPU has them at {:?}; \
             instances do not interfere, so only the placement differs",
            g.index,
            format_layout(&names),
            simulated.iter().flatten().collect::<Vec<_>>(),
            actual.iter().flatten().collect::<Vec<_>>()
        ));
    }
    Ok(instances)
}

/// The catalogue profile of MIG device `m`: by the driver's profile id, else by the name NVML
/// gives the device.
pub fn profile_of(m: &MigDeviceInfo, spec: &GpuSpec) -> Result<String, String> {
    if let Some(gi) = m.gpu_instance.get()
        && let Some(p) = spec.mig_profiles.iter().find(|p| p.id == gi.profile_id)
    {
        return Ok(p.name.clone());
    }
    match &m.profile {
        Some(name) => spec
            .mig_profile(name)
            .map(|p| p.name.clone())
            .map_err(|e| format!("MIG device {} ({}): {e}", m.index, m.name)),
        None => Err(format!(
            "MIG device {} ({}): no profile in its name and no GPU instance profile id",
            m.index, m.name
        )),
    }
}

/// What a cluster file says about where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// `live NVML` or `recording FILE`.
    pub from: String,
    /// When the node was read (RFC 3339).
    pub at: String,
}

/// The cluster file: `[[gpus]]` entries for the GPUs that can be simulated, with comments
/// saying where each came from, on node `node_name`. `None` when no GPU can be simulated.
pub fn cluster_toml(
    node: &Node,
    resolved: &Resolved,
    node_name: &str,
    source: &Source,
) -> Option<String> {
    if resolved.gpus.is_empty() {
        return None;
    }
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# The GPUs of node {} as NVML described them ({}, {}): driver {}, CUDA {}.",
        q(node_name),
        source.from,
        source.at,
        node.driver_version.get().map_or("unknown", String::as_str),
        node.cuda_version.get().map_or("unknown", String::as_str),
    );
    t.push_str(
        "# Written by `gpushare inventory`. A fragment of an experiment: add deployments, a\n\
         # workload and answers in a file that says `extends = [\"<this file>\"]`.\n",
    );
    for r in &resolved.gpus {
        let g = node
            .gpus
            .iter()
            .find(|g| g.index == r.index)
            .expect("invariant: a resolved GPU is one of the node's");
        t.push('\n');
        let _ = writeln!(
            t,
            "# GPU {}: {} {}, PCI device id {} (catalogue `{}`, matched by {})",
            g.index,
            g.name,
            g.uuid,
            g.pci_device_id.get().map_or("unknown", String::as_str),
            r.key,
            r.matched_by.words()
        );
        let sharing = match &r.sharing {
            Sharing::Dedicated => {
                t.push_str("# MIG off: the whole GPU\n");
                "{ mode = \"dedicated\" }".to_string()
            }
            Sharing::Mig(list) => {
                let _ = writeln!(t, "# MIG on; instances in placement order:");
                for i in list {
                    let at = i.start.map_or("placement unknown".to_string(), |s| {
                        format!("memory slice {s}")
                    });
                    let _ = writeln!(t, "#   {} at {} ({})", i.profile, at, i.uuids.join(", "));
                }
                let names: Vec<String> = list.iter().map(|i| q(&i.profile)).collect();
                format!("{{ mode = \"mig\", instances = [{}] }}", names.join(", "))
            }
        };
        let _ = writeln!(t, "[[gpus]]");
        let _ = writeln!(t, "id = {}", q(&format!("gpu{}", g.index)));
        let _ = writeln!(t, "type = {}", q(&r.key));
        let _ = writeln!(t, "node = {}", q(node_name));
        let _ = writeln!(t, "sharing = {sharing}");
    }
    for (i, why) in &resolved.left_out {
        let _ = writeln!(t, "\n# GPU {i} left out: {why}");
    }
    Some(t)
}

/// Bytes as GiB with two decimals.
fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn process_lines(
    t: &mut String,
    indent: &str,
    list: &crate::nvml::recording::Metric<Vec<ProcessRec>>,
) {
    match (list.get(), &list.unsupported) {
        (Some(ps), _) if ps.is_empty() => {
            let _ = writeln!(t, "{indent}no processes");
        }
        (Some(ps), _) => {
            for p in ps {
                let mem = p
                    .used_memory_bytes
                    .get()
                    .map_or("memory not available".to_string(), |b| gib(*b));
                let _ = writeln!(
                    t,
                    "{indent}pid {:<8} {:<20} {mem}",
                    p.pid,
                    p.name.as_deref().unwrap_or("?")
                );
            }
        }
        (None, reason) => {
            let _ = writeln!(
                t,
                "{indent}processes: not available ({})",
                reason.as_deref().unwrap_or("")
            );
        }
    }
}

/// The inventory as a table for people. SM counts NVML does not give (it gives them for MIG
/// devices only) come from the catalogue, marked `*`.
pub fn table(node: &Node, resolved: &Resolved, cat: &Catalogue) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "driver {}, CUDA {}, {} GPU{}",
        node.driver_version
            .get()
            .map_or("unknown".to_string(), Clone::clone),
        node.cuda_version
            .get()
            .map_or("unknown".to_string(), Clone::clone),
        node.gpus.len(),
        if node.gpus.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        t,
        "{:<4} {:<24} {:<12} {:<11} {:>10} {:>4}  {:<9} catalogue",
        "gpu", "name", "uuid", "pci id", "memory", "SMs", "MIG"
    );
    let mut from_catalogue = false;
    for g in &node.gpus {
        let mig = g.mig_mode.get().map_or("n/a".to_string(), |m| {
            if m.current == m.pending {
                on_off(m.current).to_string()
            } else {
                format!("{}->{}", on_off(m.current), on_off(m.pending))
            }
        });
        let matched = match resolved.gpus.iter().find(|r| r.index == g.index) {
            Some(r) => format!("{} (by {})", r.key, r.matched_by.words()),
            None => "not simulated".to_string(),
        };
        let short_uuid: String = g.uuid.chars().take(12).collect();
        let sms = match (g.sms.get(), match_gpu(cat, g)) {
            (Some(n), _) => n.to_string(),
            (None, Some((spec, _))) => {
                from_catalogue = true;
                format!("{}*", spec.sms)
            }
            (None, None) => "?".to_string(),
        };
        let _ = writeln!(
            t,
            "{:<4} {:<24} {:<12} {:<11} {:>10} {:>4}  {:<9} {}",
            g.index,
            g.name,
            short_uuid,
            g.pci_device_id.get().map_or("?", String::as_str),
            g.memory_total_bytes
                .get()
                .map_or("?".to_string(), |b| gib(*b)),
            sms,
            mig,
            matched
        );
        for m in &g.mig_devices {
            let gi = m.gpu_instance.get();
            let place = gi.map_or("placement ?".to_string(), |x| {
                format!(
                    "slices {}..{}",
                    x.placement_start,
                    x.placement_start + x.placement_size
                )
            });
            let ids = gi.map_or(String::new(), |x| {
                format!("GI {} CI {}", x.id, x.compute_instance_id)
            });
            let _ = writeln!(
                t,
                "     MIG {} {:<10} {:<13} {:>4} SMs {:>10}  {ids}  {}",
                m.index,
                m.profile.as_deref().unwrap_or("?"),
                place,
                m.sms.get().map_or("?".to_string(), u32::to_string),
                m.memory_total_bytes
                    .get()
                    .map_or("?".to_string(), |b| gib(*b)),
                m.uuid
            );
            process_lines(&mut t, "         ", &m.processes);
        }
        process_lines(&mut t, "     ", &g.processes);
    }
    if from_catalogue {
        let _ = writeln!(
            t,
            "* SMs from the GPU catalogue: NVML gives SM counts for MIG devices only"
        );
    }
    for (i, why) in &resolved.left_out {
        let _ = writeln!(t, "GPU {i} not simulated: {why}");
    }
    t
}
