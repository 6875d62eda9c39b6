//! The NVIDIA device plugin's config (`version: v1`, `flags`, `sharing`): how a node's GPUs
//! are advertised to Kubernetes (docs/sources.md §1.8, §2.1, \[S14\], \[S17\]).
//!
//! Semantics modelled, as the device plugin implements them:
//! - `sharing.timeSlicing.resources[*]` advertises each matching device `replicas` times and
//!   hands the references out; `sharing.mps` does the same through an MPS server that gives each
//!   client `100 / replicas` % of the threads and `1 / replicas` of the memory. The two are
//!   mutually exclusive; `replicas` must be at least 2.
//! - `renameByDefault: true` advertises `<name>.shared` instead of `<name>`. The plugin resets
//!   any other `rename`, and any `devices` other than `all`, with a warning (its
//!   `DisableResourceNamingInConfig`): gpushare does the same and reports a note.
//! - `failRequestsGreaterThanOne: true` (always on under MPS) refuses a container that asks for
//!   more than one shared reference.
//! - `flags.migStrategy`: `none` (MIG devices not exposed), `single` (every GPU of the node
//!   MIG-enabled with one profile; instances advertised as `nvidia.com/gpu`) or `mixed`
//!   (`nvidia.com/mig-<profile>` per profile, `+` written as `.`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::yaml::{self, At, Source};
use crate::error::InputError;

/// The resource a whole GPU is advertised as.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// How MIG devices are advertised.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MigStrategy {
    /// Not exposed.
    None,
    /// As `nvidia.com/gpu`; every GPU of the node must have MIG on with one profile.
    Single,
    /// As `nvidia.com/mig-<profile>`.
    Mixed,
}

/// A device-plugin config, checked for form.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// Where it came from (messages).
    pub origin: PathBuf,
    /// `data.<key>` when read from a `ConfigMap`, else empty.
    pub within: String,
    /// `flags.migStrategy`, if set.
    pub mig_strategy: Option<MigStrategy>,
    /// The sharing set up.
    pub sharing: Sharing,
}

/// `sharing`: nothing, time-slicing or MPS.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Sharing {
    /// Every device advertised once.
    #[default]
    None,
    /// `sharing.timeSlicing`.
    TimeSlicing(Replicated),
    /// `sharing.mps`.
    Mps(Replicated),
}

/// The resources a sharing mode replicates.
#[derive(Clone, Debug, PartialEq)]
pub struct Replicated {
    /// `renameByDefault`.
    pub rename_by_default: bool,
    /// `failRequestsGreaterThanOne` (forced on under MPS).
    pub fail_requests_greater_than_one: bool,
    /// `resources`.
    pub resources: Vec<ReplicatedResource>,
}

/// One replicated resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicatedResource {
    /// Resource name with its `nvidia.com/` prefix.
    pub name: String,
    /// References per device.
    pub replicas: u32,
    /// Where the entry is.
    pub at: At,
}

impl Replicated {
    /// The name under which a replicated `name` is advertised.
    pub fn advertised(&self, name: &str) -> String {
        if self.rename_by_default {
            format!("{name}.shared")
        } else {
            name.to_string()
        }
    }

    /// The replication of resource `name`, if any.
    pub fn find(&self, name: &str) -> Option<&ReplicatedResource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    version: Option<Spanned<String>>,
    #[serde(default)]
    flags: Option<RawFlags>,
    #[serde(default)]
    sharing: Option<RawSharing>,
    #[serde(default)]
    resources: Option<Spanned<IgnoredAny>>,
}

/// The documented flags; only `migStrategy` matters here, the others are accepted and ignored.
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFlags {
    #[serde(default)]
    mig_strategy: Option<MigStrategy>,
    #[serde(default)]
    fail_on_init_error: Option<IgnoredAny>,
    #[serde(default)]
    nvidia_driver_root: Option<IgnoredAny>,
    #[serde(default)]
    nvidia_dev_root: Option<IgnoredAny>,
    #[serde(default)]
    gds_enabled: Option<IgnoredAny>,
    #[serde(default)]
    mofed_enabled: Option<IgnoredAny>,
    #[serde(default)]
    mps_root: Option<IgnoredAny>,
    #[serde(default)]
    use_node_feature_api: Option<IgnoredAny>,
    #[serde(default)]
    device_discovery_strategy: Option<IgnoredAny>,
    #[serde(default)]
    plugin: Option<IgnoredAny>,
    #[serde(default)]
    gfd: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSharing {
    #[serde(default)]
    time_slicing: Option<Spanned<RawReplicated>>,
    #[serde(default)]
    mps: Option<Spanned<RawReplicated>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawReplicated {
    #[serde(default)]
    rename_by_default: bool,
    #[serde(default)]
    fail_requests_greater_than_one: Option<bool>,
    #[serde(default)]
    resources: Vec<Spanned<RawResource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: Spanned<String>,
    #[serde(default)]
    rename: Option<Spanned<String>>,
    #[serde(default)]
    devices: Option<Spanned<RawDevices>>,
    replicas: Spanned<u32>,
}

/// `devices`: `all`, a count, or a list of indices / UUIDs (only `all` matters).
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(untagged)]
enum RawDevices {
    Count(u32),
    Word(String),
    List(Vec<IgnoredAny>),
}

/// A resource name with the `nvidia.com/` prefix the plugin adds when it is missing.
pub fn qualify(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("nvidia.com/{name}")
    }
}

/// The mixed-strategy resource of a MIG profile: `nvidia.com/mig-1g.10gb`, `+me` as `.me`.
pub fn mig_resource(profile: &str) -> String {
    format!("nvidia.com/mig-{}", profile.replace('+', "."))
}

impl PluginConfig {
    /// Parse one config; `notes` collects what the device plugin would ignore with a warning.
    pub fn parse(src: Source, notes: &mut Vec<String>) -> Result<PluginConfig, InputError> {
        let raw: RawConfig = src.parse()?;
        if let Some(v) = &raw.version
            && v.value != "v1"
        {
            return Err(src.error(At::of(v), "version", format!("`{}`: expected v1", v.value)));
        }
        if let Some(r) = &raw.resources {
            notes.push(format!(
                "{}: line {}: `{}` is ignored by the device plugin (\"Customizing the 'resources' field is not yet supported\")",
                src.path.display(),
                At::of(r).offset(src.line_offset).line,
                src.field("resources")
            ));
        }
        let mig_strategy = raw.flags.and_then(|f| f.mig_strategy);
        let sharing = match raw.sharing {
            None => Sharing::None,
            Some(s) => {
                let ts = s
                    .time_slicing
                    .map(|t| replicated(&src, "sharing.timeSlicing", t, false, notes))
                    .transpose()?
                    .flatten();
                let mps = s
                    .mps
                    .map(|t| replicated(&src, "sharing.mps", t, true, notes))
                    .transpose()?
                    .flatten();
                match (ts, mps) {
                    (Some((_, at)), Some(_)) => {
                        return Err(src.error(
                            at,
                            "sharing",
                            "both timeSlicing and mps replicate resources: the device plugin allows one sharing strategy per node",
                        ));
                    }
                    (Some((t, _)), None) => Sharing::TimeSlicing(t),
                    (None, Some((m, _))) => Sharing::Mps(m),
                    (None, None) => Sharing::None,
                }
            }
        };
        Ok(PluginConfig {
            origin: src.path.to_path_buf(),
            within: src.within.clone(),
            mig_strategy,
            sharing,
        })
    }

    /// The location-free field name of `f` within this config, for messages.
    pub fn field(&self, f: &str) -> String {
        if self.within.is_empty() {
            f.to_string()
        } else {
            format!("{}.{f}", self.within)
        }
    }
}

/// A `timeSlicing` or `mps` block, checked; `None` when it replicates nothing.
fn replicated(
    src: &Source,
    field: &str,
    raw: Spanned<RawReplicated>,
    mps: bool,
    notes: &mut Vec<String>,
) -> Result<Option<(Replicated, At)>, InputError> {
    let at = At::of(&raw).offset(src.line_offset);
    let raw = raw.value;
    if raw.resources.is_empty() {
        return Ok(None);
    }
    let mut resources: Vec<ReplicatedResource> = Vec::new();
    for (i, r) in raw.resources.into_iter().enumerate() {
        let f = format!("{field}.resources[{i}]");
        let r_at = At::of(&r).offset(src.line_offset);
        let r = r.value;
        let name = qualify(&r.name.value);
        if r.replicas.value < 2 {
            return Err(src.error(
                At::of(&r.replicas),
                &format!("{f}.replicas"),
                format!(
                    "{}: the device plugin requires replicas >= 2 (to stop sharing, drop the resource)",
                    r.replicas.value
                ),
            ));
        }
        if resources.iter().any(|x| x.name == name) {
            return Err(src.error(
                At::of(&r.name),
                &format!("{f}.name"),
                format!("`{name}` is replicated twice: one entry per resource"),
            ));
        }
        let default_rename = if raw.rename_by_default {
            format!("{name}.shared")
        } else {
            name.clone()
        };
        if let Some(rn) = &r.rename
            && qualify(&rn.value) != default_rename
        {
            notes.push(format!(
                "{}: line {}: `{}.rename` = {} is reset by the device plugin (it advertises {default_rename}; only renameByDefault is honoured)",
                src.path.display(),
                At::of(rn).offset(src.line_offset).line,
                src.field(&f),
                rn.value
            ));
        }
        if let Some(d) = &r.devices {
            let all = matches!(&d.value, RawDevices::Word(w) if w == "all");
            if let RawDevices::Word(w) = &d.value
                && w != "all"
            {
                return Err(src.error(
                    At::of(d),
                    &format!("{f}.devices"),
                    format!("`{w}`: expected `all`, a count, or a list of GPU indices or UUIDs"),
                ));
            }
            if !all {
                notes.push(format!(
                    "{}: line {}: `{}.devices` is reset to `all` by the device plugin (device selection is not supported; every device is replicated)",
                    src.path.display(),
                    At::of(d).offset(src.line_offset).line,
                    src.field(&f)
                ));
            }
        }
        resources.push(ReplicatedResource {
            name,
            replicas: r.replicas.value,
            at: r_at,
        });
    }
    Ok(Some((
        Replicated {
            rename_by_default: raw.rename_by_default,
            // The plugin forces this on under MPS.
            fail_requests_greater_than_one: mps
                || raw.fail_requests_greater_than_one.unwrap_or(false),
            resources,
        },
        at,
    )))
}

/// Device-plugin configs by name: a bare config file (name `""`, for every node) or a
/// `ConfigMap` with one config per key, chosen per node by `nvidia.com/device-plugin.config`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfigs {
    /// The file.
    pub origin: PathBuf,
    /// Name -> config.
    pub configs: BTreeMap<String, PluginConfig>,
    /// True for a bare config file.
    pub bare: bool,
}

impl PluginConfigs {
    /// Read a device-plugin config file (bare or `ConfigMap`).
    pub fn load(path: &Path, notes: &mut Vec<String>) -> Result<PluginConfigs, InputError> {
        let text = crate::config::read(path)?;
        Self::from_text(path, &text, notes)
    }

    /// Parse the text of [`Self::load`].
    pub fn from_text(
        path: &Path,
        text: &str,
        notes: &mut Vec<String>,
    ) -> Result<PluginConfigs, InputError> {
        let mut configs = BTreeMap::new();
        if !yaml::is_config_map(text) {
            configs.insert(
                String::new(),
                PluginConfig::parse(Source::file(path, text), notes)?,
            );
            return Ok(PluginConfigs {
                origin: path.to_path_buf(),
                configs,
                bare: true,
            });
        }
        for (key, body, offset) in yaml::config_map_entries(path, text)? {
            let src = Source {
                path,
                text: &body,
                line_offset: offset,
                within: format!("data.{key}"),
            };
            let c = PluginConfig::parse(src, notes)?;
            configs.insert(key, c);
        }
        Ok(PluginConfigs {
            origin: path.to_path_buf(),
            configs,
            bare: false,
        })
    }
}

/// One config as written.
#[derive(Serialize)]
struct OutConfig {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<OutFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sharing: Option<OutSharing>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFlags {
    mig_strategy: MigStrategy,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutSharing {
    #[serde(skip_serializing_if = "Option::is_none")]
    time_slicing: Option<OutReplicated>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mps: Option<OutReplicated>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutReplicated {
    rename_by_default: bool,
    fail_requests_greater_than_one: bool,
    resources: Vec<OutResource>,
}

#[derive(Serialize)]
struct OutResource {
    name: String,
    replicas: u32,
}

impl PluginConfig {
    /// The config's text (YAML, as stored under a `ConfigMap` key).
    pub fn write(&self) -> String {
        let rep = |r: &Replicated| OutReplicated {
            rename_by_default: r.rename_by_default,
            fail_requests_greater_than_one: r.fail_requests_greater_than_one,
            resources: r
                .resources
                .iter()
                .map(|x| OutResource {
                    name: x.name.clone(),
                    replicas: x.replicas,
                })
                .collect(),
        };
        let sharing = match &self.sharing {
            Sharing::None => None,
            Sharing::TimeSlicing(t) => Some(OutSharing {
                time_slicing: Some(rep(t)),
                mps: None,
            }),
            Sharing::Mps(m) => Some(OutSharing {
                time_slicing: None,
                mps: Some(rep(m)),
            }),
        };
        yaml::to_string(&OutConfig {
            version: "v1",
            flags: self
                .mig_strategy
                .map(|mig_strategy| OutFlags { mig_strategy }),
            sharing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Result<PluginConfigs, InputError>, Vec<String>) {
        let mut notes = Vec::new();
        let r = PluginConfigs::from_text(Path::new("dp.yaml"), text, &mut notes);
        (r, notes)
    }

    #[test]
    fn time_slicing_with_rename_by_default() {
        let (r, notes) = parse(
            "version: v1\nflags:\n  migStrategy: none\n  failOnInitError: true\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    failRequestsGreaterThanOne: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
        );
        let c = &r.unwrap().configs[""];
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(c.mig_strategy, Some(MigStrategy::None));
        let Sharing::TimeSlicing(t) = &c.sharing else {
            panic!("{:?}", c.sharing)
        };
        assert_eq!(t.advertised("nvidia.com/gpu"), "nvidia.com/gpu.shared");
        assert_eq!(t.find("nvidia.com/gpu").unwrap().replicas, 4);
        assert!(t.fail_requests_greater_than_one);
    }

    #[test]
    fn mps_forces_fail_requests_greater_than_one_and_rename_devices_are_reset() {
        let (r, notes) = parse(
            "version: v1\nsharing:\n  mps:\n    resources:\n    - name: gpu\n      rename: my-gpu\n      devices: [0]\n      replicas: 2\n",
        );
        let c = &r.unwrap().configs[""];
        let Sharing::Mps(m) = &c.sharing else {
            panic!("{:?}", c.sharing)
        };
        assert!(m.fail_requests_greater_than_one);
        assert_eq!(m.resources[0].name, "nvidia.com/gpu");
        assert_eq!(m.advertised("nvidia.com/gpu"), "nvidia.com/gpu");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("line 6") && notes[0].contains("reset"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("line 7") && notes[1].contains("devices"),
            "{notes:?}"
        );
    }

    #[test]
    fn bad_input_names_key_and_line() {
        let (r, _) = parse(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 1\n",
        );
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("line 6, column 17: field `sharing.timeSlicing.resources[0].replicas`"),
            "{e}"
        );
        assert!(e.contains("replicas >= 2"), "{e}");
        let (r, _) = parse("version: v1\nsharing:\n  timeslicing:\n    resources: []\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("unknown field `timeslicing`"),
            "{e}"
        );
        let (r, _) = parse("version: v1\nflags:\n  migStrategy: both\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("flags.migStrategy"),
            "{e}"
        );
        let (r, _) = parse(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2\n",
        );
        let e = r.unwrap_err().to_string();
        assert!(e.contains("one sharing strategy per node"), "{e}");
    }

    #[test]
    fn config_maps_hold_named_configs() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dp\n  namespace: gpu-operator\ndata:\n  any: |-\n    version: v1\n  ts-2: |-\n    version: v1\n    sharing:\n      timeSlicing:\n        resources:\n        - name: nvidia.com/gpu\n          replicas: 2\n";
        let (r, _) = parse(text);
        let c = r.unwrap();
        assert!(!c.bare);
        assert_eq!(c.configs.keys().collect::<Vec<_>>(), ["any", "ts-2"]);
        assert_eq!(c.configs["any"].sharing, Sharing::None);
        let mut cfg = c.configs["ts-2"].clone();
        cfg.mig_strategy = Some(MigStrategy::Mixed);
        if let Sharing::TimeSlicing(t) = &mut cfg.sharing {
            t.resources[0].replicas = 3;
        }
        let (r, notes) = parse(&cfg.write());
        assert!(notes.is_empty());
        let c = &r.unwrap().configs[""];
        assert_eq!(c.mig_strategy, Some(MigStrategy::Mixed));
        let Sharing::TimeSlicing(t) = &c.sharing else {
            panic!()
        };
        assert_eq!(t.resources[0].replicas, 3);
    }
}
