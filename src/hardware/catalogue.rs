//! The GPU catalogue: whole-GPU specs and MIG profiles read from TOML and checked on load.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::error::{HardwareError, closest};

/// The built-in catalogue, compiled in so the simulator needs no data file at run time.
const BUILTIN_TOML: &str = include_str!("../../hardware/gpus.toml");

/// One MIG GPU-instance profile, as `nvidia-smi mig -lgip` / `-lgipp` describe it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigProfile {
    /// Profile name, e.g. `3g.40gb`.
    pub name: String,
    /// NVIDIA profile ID as nvidia-smi prints it (19, 20, 15, 14, 9, 5, 0 on A100/H100).
    pub id: u32,
    /// SMs of one instance (from lgip; not always proportional to `sm_slices` on H100).
    pub sms: u32,
    /// Compute (SM) slices the instance uses.
    pub sm_slices: u32,
    /// Memory slices the instance owns; its share of memory bandwidth is this over the GPU's.
    pub memory_slices: u32,
    /// Memory of one instance in bytes (lgip figure).
    pub memory_bytes: u64,
    /// Most instances of this profile one GPU can hold.
    pub max_count: u32,
    /// Memory-slice indices an instance may start at.
    pub placement_starts: Vec<u32>,
    /// Memory slices an instance spans from its start.
    pub placement_size: u32,
    /// True for profiles outside the classic 1g/2g/3g/4g/7g set (`+me`, double-memory 1g).
    #[serde(default)]
    pub extra: bool,
}

/// One GPU model: whole-GPU roofline inputs and its MIG geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Short lowercase key, e.g. `a100-80gb`.
    pub key: String,
    /// Product name as nvidia-smi prints it, e.g. `A100-SXM4-80GB`.
    pub name: String,
    /// PCI device ID as mig-parted device filters write it, e.g. `0x20B210DE`.
    pub pci_device_id: String,
    /// SMs of the whole GPU outside MIG mode.
    pub sms: u32,
    /// Memory a CUDA context on the whole GPU can use, in bytes.
    pub memory_bytes: u64,
    /// DRAM bandwidth of the whole GPU, bytes/s.
    pub mem_bw_bytes_per_s: f64,
    /// Dense FP16 tensor-core peak of the whole GPU, FLOP/s.
    pub fp16_flops_per_s: f64,
    /// Memory slices in MIG mode (8 on A100/H100).
    pub memory_slices: u32,
    /// SM slices in MIG mode (7 on A100/H100).
    pub sm_slices: u32,
    /// MIG GPU-instance profiles, empty for a GPU without MIG.
    #[serde(rename = "mig_profile", default)]
    pub mig_profiles: Vec<MigProfile>,
}

/// The compute resources one CUDA context sees: a whole GPU or one MIG instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// SMs the context can run on.
    pub sms: u32,
    /// DRAM bandwidth available to the context, bytes/s.
    pub mem_bw_bytes_per_s: f64,
    /// Memory available to the context, bytes.
    pub memory_bytes: u64,
    /// Dense FP16 tensor peak per SM, FLOP/s (the same inside and outside MIG).
    pub flops_per_sm_per_s: f64,
    /// Human-readable name, e.g. `A100-SXM4-80GB MIG 3g.40gb`.
    pub label: String,
}

impl Partition {
    /// Dense FP16 tensor peak of the whole partition, FLOP/s.
    pub fn peak_flops_per_s(&self) -> f64 {
        f64::from(self.sms) * self.flops_per_sm_per_s
    }
}

impl GpuSpec {
    /// The MIG profile called `name` (case-insensitive), or an error listing the allowed ones.
    pub fn mig_profile(&self, name: &str) -> Result<&MigProfile, HardwareError> {
        let names = || self.mig_profiles.iter().map(|p| p.name.as_str());
        self.mig_profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| HardwareError::UnknownProfile {
                gpu: self.name.clone(),
                name: name.to_string(),
                allowed: list_or_none(names()),
                suggestion: closest(name, names()),
            })
    }

    /// The whole GPU outside MIG mode: all SMs, full bandwidth and memory.
    pub fn full_partition(&self) -> Partition {
        Partition {
            sms: self.sms,
            mem_bw_bytes_per_s: self.mem_bw_bytes_per_s,
            memory_bytes: self.memory_bytes,
            flops_per_sm_per_s: self.flops_per_sm_per_s(),
            label: self.name.clone(),
        }
    }

    /// One MIG instance: its own SMs and memory, and bandwidth in proportion to its memory slices
    /// (a memory slice carries 1/8 of capacity *and* bandwidth, docs/sources.md §1.1).
    pub fn mig_partition(&self, p: &MigProfile) -> Partition {
        let share = f64::from(p.memory_slices) / f64::from(self.memory_slices);
        Partition {
            sms: p.sms,
            mem_bw_bytes_per_s: self.mem_bw_bytes_per_s * share,
            memory_bytes: p.memory_bytes,
            flops_per_sm_per_s: self.flops_per_sm_per_s(),
            label: format!("{} MIG {}", self.name, p.name),
        }
    }

    /// Whole-GPU FP16 peak spread evenly over its SMs; MIG keeps the same per-SM rate.
    fn flops_per_sm_per_s(&self) -> f64 {
        self.fp16_flops_per_s / f64::from(self.sms)
    }
}

/// A checked set of GPU specs. It also carries the command line's `--models DIR` (model
/// profiles that add to or override the built-in ones, ahead of an experiment's `models_dir`):
/// every command that resolves experiments receives the catalogue already.
#[derive(Clone, Debug, PartialEq)]
pub struct Catalogue {
    gpus: Vec<GpuSpec>,
    models_dir: Option<std::path::PathBuf>,
}

/// The file layout: `[[gpu]]` tables, each with `[[gpu.mig_profile]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    gpu: Vec<GpuSpec>,
}

impl Catalogue {
    /// The catalogue shipped in `hardware/gpus.toml`, parsed and checked once per process.
    pub fn builtin() -> Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Catalogue::from_toml_str(BUILTIN_TOML, "built-in hardware/gpus.toml")
                    .unwrap_or_else(|e| panic!("the built-in GPU catalogue is broken: {e}"))
            })
            .clone()
    }

    /// This catalogue with `dir` as the command line's folder of model profiles (`--models`).
    pub fn with_models_dir(mut self, dir: Option<std::path::PathBuf>) -> Catalogue {
        self.models_dir = dir;
        self
    }

    /// The command line's folder of model profiles, if one was given (`--models`).
    pub fn models_dir(&self) -> Option<&std::path::Path> {
        self.models_dir.as_deref()
    }

    /// Parses and checks catalogue TOML; `origin` (e.g. a file path) is named in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Catalogue, HardwareError> {
        let bad = |reason: String| HardwareError::BadCatalogue {
            origin: origin.to_string(),
            reason,
        };
        let file: CatalogueFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let problems = super::check::catalogue_problems(&file.gpu);
        if problems.is_empty() {
            Ok(Catalogue {
                gpus: file.gpu,
                models_dir: None,
            })
        } else {
            Err(bad(problems.join("; ")))
        }
    }

    /// The GPU whose key or product name is `name` (case-insensitive), or an error listing the
    /// known keys and the closest one.
    pub fn gpu(&self, name: &str) -> Result<&GpuSpec, HardwareError> {
        let keys = || self.gpus.iter().map(|g| g.key.as_str());
        self.gpus
            .iter()
            .find(|g| g.key.eq_ignore_ascii_case(name) || g.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| HardwareError::UnknownGpu {
                name: name.to_string(),
                known: list_or_none(keys()),
                suggestion: closest(name, keys()),
            })
    }

    /// All GPUs, in file order.
    pub fn gpus(&self) -> &[GpuSpec] {
        &self.gpus
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list = names.collect::<Vec<_>>().join(", ");
    if list.is_empty() {
        "none".to_string()
    } else {
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_loads() {
        let cat = Catalogue::builtin();
        let keys: Vec<&str> = cat.gpus().iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["a100-40gb", "a100-80gb", "h100-80gb"]);
        for g in cat.gpus() {
            assert_eq!(g.mig_profiles.len(), 7, "{}", g.key);
        }
    }

    #[test]
    fn gpu_lookup_by_key_or_product_name() {
        let cat = Catalogue::builtin();
        assert_eq!(cat.gpu("A100-80GB").unwrap().name, "A100-SXM4-80GB");
        assert_eq!(cat.gpu("a100-sxm4-40gb").unwrap().key, "a100-40gb");
        let err = cat.gpu("a100-80").unwrap_err().to_string();
        assert!(err.contains("a100-40gb, a100-80gb, h100-80gb"), "{err}");
        assert!(err.contains("did you mean `a100-80gb`?"), "{err}");
    }

    #[test]
    fn profile_lookup_suggests_closest() {
        let gpu = Catalogue::builtin().gpu("a100-80gb").unwrap().clone();
        assert_eq!(gpu.mig_profile("3G.40GB").unwrap().id, 9);
        let err = gpu.mig_profile("3g.20gb").unwrap_err().to_string();
        assert!(err.contains("for A100-SXM4-80GB"), "{err}");
        assert!(err.contains("1g.10gb, 1g.10gb+me, 1g.20gb"), "{err}");
        assert!(err.contains("did you mean `3g.40gb`?"), "{err}");
    }

    #[test]
    fn partitions() {
        let gpu = Catalogue::builtin().gpu("a100-80gb").unwrap().clone();
        let full = gpu.full_partition();
        assert_eq!((full.sms, full.memory_bytes), (108, 84_825_604_096));
        assert!((full.peak_flops_per_s() - 312e12).abs() < 1e3);
        let p = gpu.mig_partition(gpu.mig_profile("3g.40gb").unwrap());
        assert_eq!(p.sms, 42);
        assert!(
            (p.mem_bw_bytes_per_s - 1019.5e9).abs() < 1e6,
            "{}",
            p.mem_bw_bytes_per_s
        );
        assert_eq!(p.memory_bytes, 40192 << 20);
        assert_eq!(p.flops_per_sm_per_s, full.flops_per_sm_per_s);
        assert_eq!(p.label, "A100-SXM4-80GB MIG 3g.40gb");
        let one = gpu.mig_partition(gpu.mig_profile("1g.20gb").unwrap());
        assert!((one.mem_bw_bytes_per_s - 2039e9 / 4.0).abs() < 1e6);
    }

    #[test]
    fn bad_toml_is_an_error_naming_the_origin() {
        let err = Catalogue::from_toml_str("[[gpu]]\nkey = 1\n", "x.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad GPU catalogue data in x.toml"),
            "{err}"
        );
        let unknown = BUILTIN_TOML.replacen("sm_slices = 7", "sm_slices = 7\ncolour = 1", 1);
        let err = Catalogue::from_toml_str(&unknown, "y.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
