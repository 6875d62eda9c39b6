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

/// A data type the tensor math of a model runs in; each has its own peak on a GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// FP32 on the CUDA cores (no tensor cores).
    Fp32,
    /// TF32 on the tensor cores.
    Tf32,
    /// FP16 or BF16 on the tensor cores (the same peak on every GPU in the catalogue).
    #[default]
    #[serde(alias = "bf16")]
    Fp16,
    /// FP8 on the tensor cores (Ada, Hopper, Blackwell). On a GPU without FP8 tensor cores the
    /// weights are dequantized and the math runs at the FP16 peak.
    Fp8,
    /// INT8 on the tensor cores (peak in OP/s).
    Int8,
}

impl Dtype {
    /// The name as written in files, e.g. `fp8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Tf32 => "tf32",
            Dtype::Fp16 => "fp16",
            Dtype::Fp8 => "fp8",
            Dtype::Int8 => "int8",
        }
    }
}

/// Dense peak throughput per data type (no structured sparsity), FLOP/s (OP/s for INT8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peaks {
    /// FP32 on the CUDA cores.
    pub fp32: f64,
    /// TF32 tensor.
    pub tf32: f64,
    /// FP16/BF16 tensor.
    pub fp16: f64,
    /// FP8 tensor; absent on a GPU without FP8 tensor cores (Ampere).
    #[serde(default)]
    pub fp8: Option<f64>,
    /// INT8 tensor, OP/s.
    pub int8: f64,
}

impl Peaks {
    /// The peak `dtype` runs at, and the data type that actually runs: FP8 without FP8 tensor
    /// cores is dequantized to FP16 and runs at the FP16 peak.
    pub fn of(&self, dtype: Dtype) -> (f64, Dtype) {
        match dtype {
            Dtype::Fp32 => (self.fp32, Dtype::Fp32),
            Dtype::Tf32 => (self.tf32, Dtype::Tf32),
            Dtype::Fp16 => (self.fp16, Dtype::Fp16),
            Dtype::Fp8 => match self.fp8 {
                Some(v) => (v, Dtype::Fp8),
                None => (self.fp16, Dtype::Fp16),
            },
            Dtype::Int8 => (self.int8, Dtype::Int8),
        }
    }

    /// Every peak divided by `n` (a whole-GPU peak spread over its SMs).
    fn per(&self, n: f64) -> Peaks {
        Peaks {
            fp32: self.fp32 / n,
            tf32: self.tf32 / n,
            fp16: self.fp16 / n,
            fp8: self.fp8.map(|v| v / n),
            int8: self.int8 / n,
        }
    }
}

/// One GPU model: whole-GPU roofline inputs and its MIG geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Short lowercase key, e.g. `a100-80gb`.
    pub key: String,
    /// Product name as nvidia-smi prints it, e.g. `A100-SXM4-80GB`.
    pub name: String,
    /// The names NVML's `nvmlDeviceGetName` returns for it, e.g. `NVIDIA A100-SXM4-80GB`. The
    /// GPU-feature-discovery label `nvidia.com/gpu.product` is each with spaces as `-`.
    #[serde(default)]
    pub nvml_names: Vec<String>,
    /// PCI device ID as mig-parted device filters write it, e.g. `0x20B210DE`.
    pub pci_device_id: String,
    /// SMs of the whole GPU outside MIG mode.
    pub sms: u32,
    /// Memory a CUDA context on the whole GPU can use, in bytes.
    pub memory_bytes: u64,
    /// DRAM bandwidth of the whole GPU, bytes/s.
    pub mem_bw_bytes_per_s: f64,
    /// Dense peaks of the whole GPU per data type.
    pub peak_flops_per_s: Peaks,
    /// Memory slices in MIG mode (8 on A100/H100); 0 on a GPU without MIG.
    #[serde(default)]
    pub memory_slices: u32,
    /// SM slices in MIG mode (7 on A100/H100); 0 on a GPU without MIG.
    #[serde(default)]
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
    /// Dense peaks per SM for each data type (the same inside and outside MIG).
    pub peaks_per_sm: Peaks,
    /// Human-readable name, e.g. `A100-SXM4-80GB MIG 3g.40gb`.
    pub label: String,
}

impl Partition {
    /// Peak per SM for `dtype`, and the data type that runs (FP8 without FP8 tensor cores runs
    /// as dequantized FP16, see [`Peaks::of`]).
    pub fn flops_per_sm_per_s(&self, dtype: Dtype) -> (f64, Dtype) {
        self.peaks_per_sm.of(dtype)
    }

    /// Dense peak of the whole partition for `dtype`, FLOP/s.
    pub fn peak_flops_per_s(&self, dtype: Dtype) -> f64 {
        f64::from(self.sms) * self.flops_per_sm_per_s(dtype).0
    }
}

impl GpuSpec {
    /// The MIG profile called `name` (case-insensitive), or an error listing the allowed ones.
    /// A GPU without MIG gives [`HardwareError::NoMig`].
    pub fn mig_profile(&self, name: &str) -> Result<&MigProfile, HardwareError> {
        if !self.has_mig() {
            return Err(self.no_mig());
        }
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

    /// Whether the GPU can be split with MIG.
    pub fn has_mig(&self) -> bool {
        !self.mig_profiles.is_empty()
    }

    /// The error for asking MIG of a GPU that has none.
    pub fn no_mig(&self) -> HardwareError {
        HardwareError::NoMig {
            gpu: self.name.clone(),
        }
    }

    /// The whole GPU outside MIG mode: all SMs, full bandwidth and memory.
    pub fn full_partition(&self) -> Partition {
        Partition {
            sms: self.sms,
            mem_bw_bytes_per_s: self.mem_bw_bytes_per_s,
            memory_bytes: self.memory_bytes,
            peaks_per_sm: self.peaks_per_sm(),
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
            peaks_per_sm: self.peaks_per_sm(),
            label: format!("{} MIG {}", self.name, p.name),
        }
    }

    /// Whole-GPU peaks spread evenly over its SMs; MIG keeps the same per-SM rate.
    fn peaks_per_sm(&self) -> Peaks {
        self.peak_flops_per_s.per(f64::from(self.sms))
    }

    /// Every name that resolves to this GPU: key, product name, NVML names, their
    /// GPU-feature-discovery label form, and the PCI device id (`0x20B210DE` and `0x20B2`).
    pub fn aliases(&self) -> Vec<String> {
        let mut out = vec![self.key.clone(), self.name.clone()];
        for n in &self.nvml_names {
            out.push(n.clone());
            out.push(gfd_product_label(n));
        }
        out.push(self.pci_device_id.clone());
        if let Some(short) = short_pci_id(&self.pci_device_id) {
            out.push(short);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(a.to_lowercase()));
        out
    }
}

/// The GPU-feature-discovery value of `nvidia.com/gpu.product` for an NVML name: spaces
/// become `-` (`NVIDIA A100-SXM4-80GB` -> `NVIDIA-A100-SXM4-80GB`).
pub fn gfd_product_label(nvml_name: &str) -> String {
    nvml_name.trim().replace(' ', "-")
}

/// `0x20B2` from `0x20B210DE`: the device half of a PCI id with NVIDIA's vendor id `10DE`.
fn short_pci_id(id: &str) -> Option<String> {
    let hex = id.strip_prefix("0x")?;
    (hex.len() == 8 && hex[4..].eq_ignore_ascii_case("10DE")).then(|| format!("0x{}", &hex[..4]))
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

    /// The GPU any of whose names is `name` (case-insensitive, surrounding spaces ignored): the
    /// key (`h200`), the product name, an NVML name (`NVIDIA H100 80GB HBM3`), a
    /// GPU-feature-discovery `nvidia.com/gpu.product` value (`NVIDIA-A100-SXM4-80GB`), or the
    /// PCI device id (`0x20B210DE`, `0x20B2`). Every place a user names a GPU resolves through
    /// here. An unknown name gets the known keys and the closest name of all of these.
    pub fn gpu(&self, name: &str) -> Result<&GpuSpec, HardwareError> {
        let want = name.trim();
        if let Some(g) = self
            .gpus
            .iter()
            .find(|g| g.aliases().iter().any(|a| a.eq_ignore_ascii_case(want)))
        {
            return Ok(g);
        }
        let keys = || self.gpus.iter().map(|g| g.key.as_str());
        let all: Vec<(String, &str)> = self
            .gpus
            .iter()
            .flat_map(|g| g.aliases().into_iter().map(move |a| (a, g.key.as_str())))
            .collect();
        let suggestion = closest(want, all.iter().map(|(a, _)| a.as_str())).map(|a| {
            let key = all.iter().find(|(x, _)| *x == a).map_or("", |(_, k)| k);
            if a.eq_ignore_ascii_case(key) {
                a
            } else {
                // Shown as "did you mean `NAME`, catalogue key `KEY`?".
                format!("{a}`, catalogue key `{key}")
            }
        });
        Err(HardwareError::UnknownGpu {
            name: name.to_string(),
            known: list_or_none(keys()),
            suggestion,
        })
    }

    /// The GPU a device reports: by PCI device id when there is one and it is known, else by
    /// name (see [`Catalogue::gpu`]). Returns the spec and whether the PCI id matched.
    pub fn device(&self, pci_device_id: Option<&str>, name: &str) -> Option<(&GpuSpec, bool)> {
        if let Some(id) = pci_device_id
            && let Some(g) = self
                .gpus
                .iter()
                .find(|g| g.pci_device_id.eq_ignore_ascii_case(id.trim()))
        {
            return Some((g, true));
        }
        self.gpu(name).ok().map(|g| (g, false))
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
        assert_eq!(
            keys,
            [
                "a100-40gb",
                "a100-80gb",
                "h100-80gb",
                "a100-pcie-40gb",
                "a100-pcie-80gb",
                "h100-pcie",
                "h100-nvl",
                "h200",
                "b200",
                "l40s",
                "l4",
                "a10g"
            ]
        );
        for g in cat.gpus() {
            let want = if ["l40s", "l4", "a10g"].contains(&g.key.as_str()) {
                0
            } else {
                7
            };
            assert_eq!(g.mig_profiles.len(), want, "{}", g.key);
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
    fn every_alias_resolves_to_its_gpu() {
        let cat = Catalogue::builtin();
        let cases = [
            ("a100-40gb", "NVIDIA A100-SXM4-40GB", "0x20B0"),
            ("a100-80gb", "NVIDIA A100-SXM4-80GB", "0x20B2"),
            ("h100-80gb", "NVIDIA H100 80GB HBM3", "0x2330"),
            ("a100-pcie-40gb", "NVIDIA A100-PCIE-40GB", "0x20F1"),
            ("a100-pcie-80gb", "NVIDIA A100 80GB PCIe", "0x20B5"),
            ("h100-pcie", "NVIDIA H100 PCIe", "0x2331"),
            ("h100-nvl", "NVIDIA H100 NVL", "0x2321"),
            ("h200", "NVIDIA H200", "0x2335"),
            ("b200", "NVIDIA B200", "0x2901"),
            ("l40s", "NVIDIA L40S", "0x26B9"),
            ("l4", "NVIDIA L4", "0x27B8"),
            ("a10g", "NVIDIA A10G", "0x2237"),
        ];
        assert_eq!(cases.len(), cat.gpus().len());
        for (key, nvml, pci) in cases {
            let g = cat.gpu(key).unwrap();
            assert_eq!(g.key, key);
            assert_eq!(g.nvml_names, [nvml], "{key}");
            let label = nvml.replace(' ', "-");
            let full = format!("{pci}10DE");
            let lower = pci.to_lowercase();
            for alias in [
                key,
                g.name.as_str(),
                nvml,
                label.as_str(),
                full.as_str(),
                pci,
                lower.as_str(),
                &format!("  {nvml} "),
                &key.to_uppercase(),
            ] {
                assert_eq!(cat.gpu(alias).map(|g| g.key.as_str()), Ok(key), "{alias}");
            }
            // The device resolver prefers the PCI id, then any name.
            assert_eq!(
                cat.device(Some(&full), "x")
                    .map(|(g, by_pci)| (g.key.as_str(), by_pci)),
                Some((key, true))
            );
            assert_eq!(
                cat.device(None, nvml)
                    .map(|(g, by_pci)| (g.key.as_str(), by_pci)),
                Some((key, false))
            );
        }
        assert!(cat.device(Some("0x000010DE"), "nobody").is_none());
    }

    #[test]
    fn suggestions_come_from_every_kind_of_name() {
        let cat = Catalogue::builtin();
        // The NVML name of the 80 GB card with a typo suggests that card, not the 40 GB one.
        let err = cat.gpu("NVIDIA A100-SXM4-80G").unwrap_err().to_string();
        assert!(
            err.contains("did you mean `NVIDIA A100-SXM4-80GB`, catalogue key `a100-80gb`?"),
            "{err}"
        );
        let err = cat.gpu("NVIDIA-H100-80GB-HBM").unwrap_err().to_string();
        assert!(err.contains("catalogue key `h100-80gb`"), "{err}");
        let err = cat.gpu("h2000").unwrap_err().to_string();
        assert!(err.contains("did you mean `h200`?"), "{err}");
        assert!(err.contains("NVML name"), "{err}");
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
        assert!((full.peak_flops_per_s(Dtype::Fp16) - 312e12).abs() < 1e3);
        assert!((full.peak_flops_per_s(Dtype::Int8) - 624e12).abs() < 1e3);
        // No FP8 tensor cores on A100: FP8 runs at the FP16 peak.
        assert_eq!(
            full.flops_per_sm_per_s(Dtype::Fp8),
            full.flops_per_sm_per_s(Dtype::Fp16)
        );
        let p = gpu.mig_partition(gpu.mig_profile("3g.40gb").unwrap());
        assert_eq!(p.sms, 42);
        assert!(
            (p.mem_bw_bytes_per_s - 1019.5e9).abs() < 1e6,
            "{}",
            p.mem_bw_bytes_per_s
        );
        assert_eq!(p.memory_bytes, 40192 << 20);
        assert_eq!(p.peaks_per_sm, full.peaks_per_sm);
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
