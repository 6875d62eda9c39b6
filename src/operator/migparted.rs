//! The mig-parted config (`version: v1`, `mig-configs`), which the GPU Operator's MIG Manager
//! applies to a node according to its `nvidia.com/mig.config` label (docs/sources.md §1.8, \[S4\],
//! \[S12\]): reading it (bare, or inside a `ConfigMap`), resolving one GPU's MIG state, and
//! writing it.
//!
//! Semantics, as mig-parted implements them: the selected config is a list of entries; each
//! entry applies to the GPUs whose PCI device ID is in its `device-filter` (absent: any GPU)
//! and whose index is in `devices` (`all` or a list). Entries are applied in order, so when
//! several match a GPU the last one wins. A GPU that no entry matches keeps whatever state it
//! had; gpushare takes that to be MIG disabled. `mig-enabled: false` must come without
//! `mig-devices`; `mig-enabled: true` needs `mig-devices` (`{}` enables MIG with no instance).
//!
//! **Creation order.** mig-parted flattens `mig-devices` into a list sorted by GPU-instance
//! slices, then compute slices, then profile attributes (`+me`), all descending, and tries
//! orderings of that list until the driver accepts one. gpushare creates the instances in that
//! sorted order (ties, such as `1g.20gb` and `1g.10gb`, by memory, larger first) and places each
//! with [`crate::hardware::validate_layout`]: the lowest start that still lets the rest fit. So a
//! set of instances is accepted exactly when some non-overlapping placement exists, which is
//! when one of mig-parted's orderings succeeds.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::yaml::{self, At, Source};
use crate::error::InputError;
use crate::hardware::{GpuSpec, validate_layout};

/// A mig-parted config file, parsed and checked for form (not yet against a GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct MigParted {
    /// Where it came from (messages).
    pub origin: PathBuf,
    /// `data.<key>` when it was read from a `ConfigMap`, else empty.
    pub within: String,
    /// Config name -> its entries, in file order.
    pub configs: BTreeMap<String, Vec<MigEntry>>,
}

/// One entry of a config.
#[derive(Clone, Debug, PartialEq)]
pub struct MigEntry {
    /// PCI device IDs it applies to (`0x20B210DE`, upper-case hex); empty: any GPU.
    pub device_filter: Vec<String>,
    /// The GPU indices it applies to.
    pub devices: Devices,
    /// MIG mode.
    pub mig_enabled: bool,
    /// Profile -> count, as written (counts of 0 included).
    pub mig_devices: Vec<(String, u32)>,
    /// Where the entry starts.
    pub at: At,
    /// Where `mig-devices` is (the entry when absent).
    pub devices_at: At,
}

/// `devices`: every GPU, or some indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devices {
    /// `all`.
    All,
    /// Indices of the node's GPUs.
    List(Vec<u32>),
}

/// What mig-parted leaves on one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigState {
    /// MIG mode off: the whole GPU.
    Disabled,
    /// MIG mode on, with these GPU instances in creation order (possibly none).
    Enabled(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    version: Spanned<String>,
    #[serde(default)]
    mig_configs: Option<BTreeMap<String, Spanned<Vec<Spanned<RawEntry>>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEntry {
    #[serde(default)]
    device_filter: Option<Spanned<Filter>>,
    devices: Spanned<Devices>,
    mig_enabled: bool,
    #[serde(default)]
    mig_devices: Option<Spanned<BTreeMap<String, u32>>>,
}

/// `device-filter`: one ID or a list.
struct Filter(Vec<String>);

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Filter;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a PCI device ID such as \"0x20B210DE\" or a list of them (quoted)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Filter, E> {
                Ok(Filter(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Filter, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = s.next_element::<String>()? {
                    out.push(x);
                }
                Ok(Filter(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Devices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`all` or a list of GPU indices such as [0, 1]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Devices, E> {
                if v == "all" {
                    Ok(Devices::All)
                } else {
                    Err(E::custom(format!(
                        "`{v}`: expected `all` or a list of GPU indices such as [0, 1]"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Devices, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = s.next_element::<u32>()? {
                    out.push(x);
                }
                Ok(Devices::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Devices {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Devices::All => s.serialize_str("all"),
            Devices::List(l) => l.serialize(s),
        }
    }
}

/// `0x20b210de` -> `0x20B210DE`; `None` unless it is `0x` and 8 hex digits.
fn normalize_pci_id(s: &str) -> Option<String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_uppercase()))
}

impl MigParted {
    /// Read a mig-parted config file: a bare config, or a `ConfigMap` holding one (the GPU
    /// Operator's `default-mig-parted-config` keeps it under `config.yaml`).
    pub fn load(path: &Path) -> Result<MigParted, InputError> {
        let text = crate::config::read(path)?;
        Self::from_text(path, &text)
    }

    /// Parse the text of [`Self::load`].
    pub fn from_text(path: &Path, text: &str) -> Result<MigParted, InputError> {
        if !yaml::is_config_map(text) {
            return Self::parse(Source::file(path, text));
        }
        let entries = yaml::config_map_entries(path, text)?;
        let mut parsed = Vec::new();
        for (key, body, offset) in &entries {
            if !body.contains("mig-configs") {
                continue;
            }
            parsed.push(Self::parse(Source {
                path,
                text: body,
                line_offset: *offset,
                within: format!("data.{key}"),
            })?);
        }
        match parsed.len() {
            1 => Ok(parsed.remove(0)),
            n => {
                let keys: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
                Err(yaml::located(
                    path,
                    At::default(),
                    "data",
                    format!(
                        "{n} entries hold a mig-parted config (with `mig-configs`): expected exactly one; keys: {}",
                        keys.join(", ")
                    ),
                ))
            }
        }
    }

    fn parse(src: Source) -> Result<MigParted, InputError> {
        let raw: RawFile = src.parse()?;
        if raw.version.value != "v1" {
            return Err(src.error(
                At::of(&raw.version),
                "version",
                format!("`{}`: expected v1", raw.version.value),
            ));
        }
        let Some(configs_raw) = raw.mig_configs else {
            return Err(src.error(
                At::default(),
                "mig-configs",
                "missing: at least one named config is required",
            ));
        };
        if configs_raw.is_empty() {
            return Err(src.error(
                At::default(),
                "mig-configs",
                "empty: at least one named config is required",
            ));
        }
        let mut configs = BTreeMap::new();
        for (name, list) in configs_raw {
            let field = format!("mig-configs.{name}");
            if list.value.is_empty() {
                return Err(src.error(At::of(&list), &field, "at least one entry is required"));
            }
            let mut entries = Vec::new();
            for (i, e) in list.value.into_iter().enumerate() {
                let ef = format!("{field}[{i}]");
                let at = At::of(&e).offset(src.line_offset);
                let e = e.value;
                let mut filter = Vec::new();
                if let Some(f) = &e.device_filter {
                    for id in &f.value.0 {
                        let Some(n) = normalize_pci_id(id) else {
                            return Err(src.error(
                                At::of(f),
                                &format!("{ef}.device-filter"),
                                format!(
                                    "`{id}`: expected a PCI device ID, `0x` and 8 hex digits such as \"0x20B210DE\""
                                ),
                            ));
                        };
                        filter.push(n);
                    }
                }
                let devices_at = e
                    .mig_devices
                    .as_ref()
                    .map_or(at, |m| At::of(m).offset(src.line_offset));
                match (e.mig_enabled, &e.mig_devices) {
                    (true, None) => {
                        return Err(src.error(
                            At::of(&e.devices),
                            &format!("{ef}.mig-devices"),
                            "missing: required when mig-enabled is true (`{}` enables MIG with no instance)",
                        ));
                    }
                    (false, Some(m)) if m.value.values().any(|&c| c > 0) => {
                        return Err(src.error(
                            At::of(m),
                            &format!("{ef}.mig-devices"),
                            "MIG devices listed while mig-enabled is false: drop mig-devices or set mig-enabled: true",
                        ));
                    }
                    _ => {}
                }
                entries.push(MigEntry {
                    device_filter: filter,
                    devices: e.devices.value,
                    mig_enabled: e.mig_enabled,
                    mig_devices: e
                        .mig_devices
                        .map(|m| m.value.into_iter().collect())
                        .unwrap_or_default(),
                    at,
                    devices_at,
                });
            }
            configs.insert(name, entries);
        }
        Ok(MigParted {
            origin: src.path.to_path_buf(),
            within: src.within.clone(),
            configs,
        })
    }

    fn field(&self, f: &str) -> String {
        if self.within.is_empty() {
            f.to_string()
        } else {
            format!("{}.{f}", self.within)
        }
    }

    /// The entries of config `name`, or an error listing the configs there are.
    pub fn select(&self, name: &str) -> Result<&[MigEntry], String> {
        self.configs.get(name).map(Vec::as_slice).ok_or_else(|| {
            let names: Vec<&str> = self.configs.keys().map(String::as_str).collect();
            let hint = crate::hardware::error::closest(name, names.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            format!(
                "mig config `{name}` is not in {}: it has {}{hint}",
                self.origin.display(),
                names.join(", ")
            )
        })
    }

    /// The MIG state config `name` leaves on GPU `index` (of model `gpu`) of a node.
    pub fn state(&self, name: &str, index: u32, gpu: &GpuSpec) -> Result<MigState, InputError> {
        let entries = self.select(name).map_err(|m| {
            yaml::located(&self.origin, At::default(), &self.field("mig-configs"), m)
        })?;
        let mut state = MigState::Disabled;
        for (i, e) in entries.iter().enumerate() {
            let matches_filter =
                e.device_filter.is_empty() || e.device_filter.contains(&gpu.pci_device_id);
            let matches_index = match &e.devices {
                Devices::All => true,
                Devices::List(l) => l.contains(&index),
            };
            if !(matches_filter && matches_index) {
                continue;
            }
            let field = self.field(&format!("mig-configs.{name}[{i}].mig-devices"));
            state = if e.mig_enabled {
                MigState::Enabled(
                    instances(&e.mig_devices, gpu)
                        .map_err(|why| yaml::located(&self.origin, e.devices_at, &field, why))?,
                )
            } else {
                MigState::Disabled
            };
        }
        Ok(state)
    }
}

/// The instances of a `mig-devices` map on `gpu`, in creation order, checked against its
/// profiles and placement rules; `Err` says why not, in words.
pub fn instances(mig_devices: &[(String, u32)], gpu: &GpuSpec) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (profile, count) in mig_devices {
        let name = gi_profile(profile).map_err(|e| format!("`{profile}`: {e}"))?;
        let p = gpu.mig_profile(&name).map_err(|e| e.to_string())?;
        // Checked before expanding: a count of a billion once aborted on a 24 GB allocation.
        if *count > p.max_count {
            return Err(format!(
                "`{profile}`: {count} devices asked, at most {} × {} fit on {}",
                p.max_count, p.name, gpu.name
            ));
        }
        names.extend(std::iter::repeat_n(p.name.clone(), *count as usize));
    }
    sort_creation_order(&mut names, gpu);
    if !names.is_empty() {
        validate_layout(gpu, &names).map_err(|e| e.to_string())?;
    }
    Ok(names)
}

/// A GPU-instance profile name from a mig-parted profile: `3g.40gb` as is; `3c.3g.40gb` (one
/// compute instance over the whole GPU instance) is the same; `1c.3g.40gb` (several compute
/// instances in one GPU instance) is not simulated.
fn gi_profile(p: &str) -> Result<String, String> {
    let Some((c, rest)) = p.split_once("c.") else {
        return Ok(p.to_string());
    };
    let g = rest.split_once("g.").map(|x| x.0);
    match (c.parse::<u32>(), g.and_then(|g| g.parse::<u32>().ok())) {
        (Ok(c), Some(g)) if c == g => Ok(rest.to_string()),
        (Ok(_), Some(_)) => Err(format!(
            "compute-instance profiles that split a GPU instance are not simulated; use the GPU-instance profile `{rest}` (one compute instance over all of its slices)"
        )),
        _ => Ok(p.to_string()),
    }
}

/// Sort instances into mig-parted's creation order (see the module doc).
pub fn sort_creation_order(names: &mut [String], gpu: &GpuSpec) {
    names.sort_by_cached_key(|n| {
        let p = gpu
            .mig_profile(n)
            .expect("invariant: names were checked against the GPU");
        let attrs = n
            .split_once('+')
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        (
            Reverse(p.sm_slices),
            Reverse(p.sm_slices),
            Reverse(attrs),
            Reverse(p.memory_slices),
            n.clone(),
        )
    });
}

/// One entry as written.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OutEntry {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    device_filter: Vec<String>,
    devices: Devices,
    mig_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mig_devices: Option<BTreeMap<String, u32>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OutFile<'a> {
    version: &'static str,
    mig_configs: BTreeMap<&'a str, Vec<OutEntry>>,
}

impl MigParted {
    /// The config's text (the bare mig-parted format).
    pub fn write(&self) -> String {
        let mig_configs = self
            .configs
            .iter()
            .map(|(name, entries)| {
                let out = entries
                    .iter()
                    .map(|e| OutEntry {
                        device_filter: e.device_filter.clone(),
                        devices: e.devices.clone(),
                        mig_enabled: e.mig_enabled,
                        mig_devices: e
                            .mig_enabled
                            .then(|| e.mig_devices.iter().cloned().collect()),
                    })
                    .collect();
                (name.as_str(), out)
            })
            .collect();
        yaml::to_string(&OutFile {
            version: "v1",
            mig_configs,
        })
    }
}

/// `mig-devices` of a list of instances: profile -> count.
pub fn counts(instances: &[String]) -> Vec<(String, u32)> {
    let mut m: BTreeMap<String, u32> = BTreeMap::new();
    for n in instances {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Catalogue;

    fn a100_80() -> GpuSpec {
        Catalogue::builtin().gpu("a100-80gb").unwrap().clone()
    }

    #[test]
    fn creation_order_follows_mig_parted() {
        let gpu = a100_80();
        let mut names: Vec<String> = ["1g.10gb", "3g.40gb", "1g.20gb", "2g.20gb", "1g.10gb+me"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_creation_order(&mut names, &gpu);
        assert_eq!(
            names,
            ["3g.40gb", "2g.20gb", "1g.10gb+me", "1g.20gb", "1g.10gb"]
        );
    }

    #[test]
    fn compute_instance_profiles() {
        assert_eq!(gi_profile("3g.40gb").unwrap(), "3g.40gb");
        assert_eq!(gi_profile("3c.3g.40gb").unwrap(), "3g.40gb");
        let e = gi_profile("1c.3g.40gb").unwrap_err();
        assert!(e.contains("not simulated"), "{e}");
    }

    #[test]
    fn a_billion_devices_are_refused_before_any_is_made() {
        // Once: `{"1g.10gb": 1000000000}` aborted allocating 24 GB.
        let gpu = a100_80();
        let e = instances(&[("1g.10gb".into(), 1_000_000_000)], &gpu).unwrap_err();
        assert!(
            e.contains("1000000000 devices asked, at most 7 × 1g.10gb"),
            "{e}"
        );
        assert_eq!(instances(&[("1g.10gb".into(), 7)], &gpu).unwrap().len(), 7);
    }

    #[test]
    fn pci_ids() {
        assert_eq!(
            normalize_pci_id("0x20b210de").as_deref(),
            Some("0x20B210DE")
        );
        assert_eq!(normalize_pci_id("20B210DE"), None);
        assert_eq!(normalize_pci_id("0x20B2"), None);
    }

    #[test]
    fn last_matching_entry_wins_and_unmatched_gpus_are_disabled() {
        let text = "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"3g.40gb\": 2}\n    - devices: [1]\n      mig-enabled: false\n    - device-filter: \"0x20B010DE\"\n      devices: [2]\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n";
        let m = MigParted::from_text(Path::new("m.yaml"), text).unwrap();
        let gpu = a100_80();
        let two = MigState::Enabled(vec!["3g.40gb".into(), "3g.40gb".into()]);
        assert_eq!(m.state("c", 0, &gpu).unwrap(), two);
        assert_eq!(m.state("c", 1, &gpu).unwrap(), MigState::Disabled);
        // The third entry filters for A100-40GB only.
        assert_eq!(m.state("c", 2, &gpu).unwrap(), two);
        let e = m.state("d", 0, &gpu).unwrap_err().to_string();
        assert!(
            e.contains("mig config `d` is not in m.yaml: it has c"),
            "{e}"
        );
    }

    #[test]
    fn form_errors_name_key_and_line() {
        let p = Path::new("m.yaml");
        let e = MigParted::from_text(
            p,
            "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 4") && e.contains("mig-configs.c[0].mig-devices"),
            "{e}"
        );
        let e = MigParted::from_text(
            p,
            "version: v1\nmig-configs:\n  c:\n    - devices: some\n      mig-enabled: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 4") && e.contains("expected `all` or a list"),
            "{e}"
        );
        let e = MigParted::from_text(
            p,
            "version: v2\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 1, column 10: field `version`: `v2`: expected v1"),
            "{e}"
        );
        let e = MigParted::from_text(p, "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: false\n      mig-device: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 6") && e.contains("unknown field `mig-device`"),
            "{e}"
        );
    }

    #[test]
    fn invalid_mig_devices_are_rejected_with_the_reason_and_line() {
        let text = "version: v1\nmig-configs:\n  too-many:\n    - devices: all\n      mig-enabled: true\n      mig-devices:\n        \"3g.40gb\": 3\n";
        let m = MigParted::from_text(Path::new("m.yaml"), text).unwrap();
        let e = m.state("too-many", 0, &a100_80()).unwrap_err().to_string();
        assert!(e.contains("m.yaml: line 7"), "{e}");
        assert!(e.contains("mig-configs.too-many[0].mig-devices"), "{e}");
        assert!(
            e.contains("at most 2 × 3g.40gb fit on A100-SXM4-80GB"),
            "{e}"
        );
    }
}
