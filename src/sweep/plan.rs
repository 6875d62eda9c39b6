//! Sweep files and the plan they expand to: axes (named override sets and grid keys) crossed
//! into points, each point run once per seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keypath::{KeyPath, Segment};
use crate::config;
use crate::error::InputError;
use crate::experiment::{load_merged_value, resolve_value};
use crate::hardware::Catalogue;

/// Keys a sweep may not override: they are consumed while the base file is merged.
const RESERVED: [&str; 2] = ["extends", "models_dir"];

/// Most runs one sweep may expand to (a typo such as `seeds = 1e9` stops early).
pub const MAX_RUNS: usize = 10_000_000;

/// Chart settings stored with a sweep (all optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// Axis on the x of sweep curves (default: the first grid key whose values are numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Metric columns drawn as sweep curves (default: throughput per GPU, p95 request
    /// latency, success rate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
}

/// A sweep file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Sweep name (default output folder `results/<name>`).
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Base experiment file, relative to the sweep file.
    pub base: String,
    /// `seeds = N` (seeds 1..=N) or `seeds = [1, 5, 9]`.
    #[serde(default)]
    pub seeds: Option<toml::Value>,
    /// Grid: key path -> list of values; every combination is a point.
    #[serde(default)]
    pub grid: toml::Table,
    /// Named override sets (`label` plus key paths), one axis called `mode`.
    #[serde(default)]
    pub modes: Vec<toml::Table>,
    /// Chart settings.
    #[serde(default)]
    pub plot: PlotSpec,
}

/// One value of an axis: its label in the outputs and the overrides it applies.
#[derive(Clone, Debug)]
pub struct AxisValue {
    /// How the value appears in `params` and the CSV (a mode's label, or the grid value).
    pub label: serde_json::Value,
    /// Key path -> value, applied in order.
    pub sets: Vec<(KeyPath, toml::Value)>,
}

/// One dimension of the grid.
#[derive(Clone, Debug)]
pub struct Axis {
    /// Column name: `mode`, or the grid key as written.
    pub name: String,
    /// Its values, in file order.
    pub values: Vec<AxisValue>,
}

/// A sweep expanded: `points` = the product of the axes' lengths (modes first, then grid keys
/// in file order, the last varying fastest); each point runs once per seed (seed fastest).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The sweep file.
    pub file: SweepFile,
    /// Folder of the sweep file (relative paths start there; messages are made relative to it).
    pub dir: PathBuf,
    /// The base experiment's path.
    pub base_path: PathBuf,
    /// The base experiment, merged (see [`load_merged_value`]).
    pub base_value: toml::Value,
    /// Axes, outermost first.
    pub axes: Vec<Axis>,
    /// Seeds of every point.
    pub seeds: Vec<u64>,
}

/// One run of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Run index (0-based), `point * seeds + seed index`.
    pub run: usize,
    /// Point index (0-based).
    pub point: usize,
    /// Seed.
    pub seed: u64,
}

/// What a run simulates: the experiment value after overrides, and profile patches.
#[derive(Clone, Debug)]
pub struct RunInputs {
    /// The experiment as a TOML value.
    pub value: toml::Value,
    /// Model name -> table merged over its profile.
    pub patches: BTreeMap<String, toml::Value>,
}

fn bad(path: &Path, field: &str, value: impl ToString, allowed: &str) -> InputError {
    InputError::invalid(path, field, value, allowed)
}

fn grid_field(key: &str) -> String {
    format!("grid.\"{key}\"")
}

impl Plan {
    /// Read a sweep file, its base experiment, and check every key it overrides.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Plan, InputError> {
        let file: SweepFile = config::parse_toml(&config::read(path)?, path)?;
        config::folder_name(path, "name", &file.name)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_path = dir.join(&file.base);
        if !base_path.is_file() {
            return Err(bad(
                path,
                "base",
                format!("\"{}\"", file.base),
                &format!(
                    "the path of an experiment file relative to the sweep file ({} does not exist)",
                    base_path.display()
                ),
            ));
        }
        let base_value = load_merged_value(&base_path)?;
        let mut axes = Vec::new();
        let mut seeds = None;
        if !file.modes.is_empty() {
            let mut values = Vec::new();
            for (i, m) in file.modes.iter().enumerate() {
                let field = format!("modes[{i}]");
                let label = match m.get("label") {
                    Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
                    other => {
                        return Err(bad(
                            path,
                            &format!("{field}.label"),
                            other.map_or("missing".to_string(), |v| v.to_string()),
                            "a non-empty string naming the mode, e.g. label = \"mig\"",
                        ));
                    }
                };
                if values
                    .iter()
                    .any(|v: &AxisValue| v.label.as_str() == Some(&label))
                {
                    return Err(bad(
                        path,
                        &format!("{field}.label"),
                        format!("\"{label}\""),
                        "a label not used by another mode",
                    ));
                }
                let mut sets = Vec::new();
                for (k, v) in m.iter().filter(|(k, _)| *k != "label") {
                    let kp = parse_key(path, &format!("{field}.\"{k}\""), k, v)?;
                    sets.push((kp, v.clone()));
                }
                values.push(AxisValue {
                    label: serde_json::Value::String(label),
                    sets,
                });
            }
            axes.push(Axis {
                name: "mode".into(),
                values,
            });
        }
        for (k, v) in &file.grid {
            let field = grid_field(k);
            let toml::Value::Array(list) = v else {
                let hint = if v.is_table() {
                    format!(
                        " (a bare dotted key such as {k}.x = [...] makes a table: quote the whole key path, \"{k}.x\" = [...])"
                    )
                } else {
                    String::new()
                };
                return Err(bad(
                    path,
                    &field,
                    v,
                    &format!("a list of values to sweep{hint}"),
                ));
            };
            if list.is_empty() {
                return Err(bad(
                    path,
                    &field,
                    "[]",
                    "at least one value (a grid with zero points has nothing to run)",
                ));
            }
            if k == "seed" {
                seeds = Some(seed_list(path, &field, list)?);
                continue;
            }
            let kp = parse_key(path, &field, k, v)?;
            axes.push(Axis {
                name: k.clone(),
                values: list
                    .iter()
                    .map(|x| AxisValue {
                        label: to_json(x),
                        sets: vec![(kp.clone(), x.clone())],
                    })
                    .collect(),
            });
        }
        if let Some(s) = &file.seeds {
            if seeds.is_some() {
                return Err(bad(
                    path,
                    "seeds",
                    s,
                    "either `seeds` or a grid key \"seed\", not both",
                ));
            }
            seeds = Some(match s {
                toml::Value::Integer(n) if (1..=1_000_000).contains(n) => (1..=*n as u64).collect(),
                toml::Value::Array(list) if !list.is_empty() => seed_list(path, "seeds", list)?,
                other => {
                    return Err(bad(
                        path,
                        "seeds",
                        other,
                        "a count N in 1..=1000000 (seeds 1..=N) or a non-empty list of seeds",
                    ));
                }
            });
        }
        if axes.is_empty() && seeds.is_none() {
            return Err(bad(
                path,
                "grid",
                "nothing to sweep",
                "at least one of [grid] keys, [[modes]] or seeds",
            ));
        }
        let seeds = match seeds {
            Some(s) => s,
            None => vec![
                base_value
                    .get("seed")
                    .and_then(toml::Value::as_integer)
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            ],
        };
        let plan = Plan {
            file,
            dir,
            base_path,
            base_value,
            axes,
            seeds,
        };
        let runs = plan
            .points()
            .checked_mul(plan.seeds.len())
            .filter(|&r| r <= MAX_RUNS);
        if runs.is_none() {
            return Err(bad(
                path,
                "grid",
                "too many combinations",
                &format!("at most {MAX_RUNS} runs in one sweep"),
            ));
        }
        plan.check_keys(path, catalogue)?;
        Ok(plan)
    }

    /// Number of points (seeds not counted).
    pub fn points(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Number of runs: points x seeds.
    pub fn runs(&self) -> usize {
        self.points() * self.seeds.len()
    }

    /// Run `r`.
    pub fn run(&self, r: usize) -> RunSpec {
        let n = self.seeds.len();
        RunSpec {
            run: r,
            point: r / n,
            seed: self.seeds[r % n],
        }
    }

    /// The value index on each axis of `point`.
    pub fn choice(&self, point: usize) -> Vec<usize> {
        let mut rest = point;
        let mut out = vec![0; self.axes.len()];
        for (i, a) in self.axes.iter().enumerate().rev() {
            out[i] = rest % a.values.len();
            rest /= a.values.len();
        }
        out
    }

    /// Axis name -> value label of `point`, in axis order.
    pub fn params(&self, point: usize) -> Vec<(String, serde_json::Value)> {
        self.axes
            .iter()
            .zip(self.choice(point))
            .map(|(a, c)| (a.name.clone(), a.values[c].label.clone()))
            .collect()
    }

    /// The inputs of run `spec`: the base with every axis's overrides (in axis order), then
    /// the seed.
    pub fn inputs(&self, spec: &RunSpec) -> Result<RunInputs, String> {
        let sets: Vec<&(KeyPath, toml::Value)> = self
            .axes
            .iter()
            .zip(self.choice(spec.point))
            .flat_map(|(a, c)| a.values[c].sets.iter())
            .collect();
        let mut inputs = apply(&self.base_value, &sets).map_err(|(_, e)| e)?;
        inputs.value.as_table_mut().map(|t| {
            t.insert(
                "seed".into(),
                toml::Value::Integer(i64::try_from(spec.seed).unwrap_or(i64::MAX)),
            )
        });
        Ok(inputs)
    }

    /// Every override key must name a field of the experiment (or of a deployed model's
    /// profile) under at least one mode; otherwise the error names the key and lists the
    /// fields allowed there.
    fn check_keys(&self, path: &Path, catalogue: &Catalogue) -> Result<(), InputError> {
        let modes: Vec<Vec<&(KeyPath, toml::Value)>> = match self.axes.first() {
            Some(a) if a.name == "mode" && self.file.modes.len() == a.values.len() => {
                a.values.iter().map(|v| v.sets.iter().collect()).collect()
            }
            _ => vec![Vec::new()],
        };
        let mode_label = |i: usize| {
            self.axes[0].values[i]
                .label
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        // A mode's own keys, applied together on the base.
        if modes.len() > 1 || !modes[0].is_empty() {
            for (i, sets) in modes.iter().enumerate() {
                if let Some((kp, msg)) = self.unknown_in(sets, catalogue) {
                    return Err(bad(
                        path,
                        &format!("modes[{i}].\"{kp}\""),
                        format!("(mode \"{}\")", mode_label(i)),
                        &format!("a key path to an experiment field: {msg}"),
                    ));
                }
            }
        }
        // Grid keys, on the base under each mode: valid if they fit under at least one.
        for a in self.axes.iter().filter(|a| a.name != "mode") {
            let (kp, v) = &a.values[0].sets[0];
            let mut first_msg = None;
            let mut ok = false;
            for sets in &modes {
                match self.unknown_key(kp, sets, (kp, v), catalogue) {
                    None => {
                        ok = true;
                        break;
                    }
                    Some(m) => {
                        first_msg.get_or_insert(m);
                    }
                }
            }
            if !ok {
                return Err(bad(
                    path,
                    &grid_field(&a.name),
                    "(unknown parameter)",
                    &format!(
                        "a key path to an experiment field: {}",
                        first_msg.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// With `mode` and `(kp, v)` applied to the base: the parser's "unknown field" message if
    /// one of `kp`'s keys is not a field where it points.
    fn unknown_key(
        &self,
        kp: &KeyPath,
        mode: &[&(KeyPath, toml::Value)],
        set: (&KeyPath, &toml::Value),
        catalogue: &Catalogue,
    ) -> Option<String> {
        let owned = (set.0.clone(), set.1.clone());
        let mut sets: Vec<&(KeyPath, toml::Value)> = mode.to_vec();
        sets.push(&owned);
        self.unknown_in(&sets, catalogue)
            .filter(|(k, _)| *k == kp)
            .map(|(_, m)| m)
    }

    /// Apply `sets` to the base and resolve: the first key of `sets` that the parser rejects
    /// as an unknown field (or reserved, or not applicable), with the message.
    fn unknown_in<'s>(
        &self,
        sets: &[&'s (KeyPath, toml::Value)],
        catalogue: &Catalogue,
    ) -> Option<(&'s KeyPath, String)> {
        for (kp, _) in sets {
            if RESERVED.contains(&kp.head()) {
                return Some((
                    kp,
                    format!(
                        "`{}` is read while the base file is merged and cannot be swept",
                        kp.head()
                    ),
                ));
            }
        }
        let inputs = match apply(&self.base_value, sets) {
            Ok(i) => i,
            Err((i, e)) => return Some((&sets[i].0, e)),
        };
        let err = resolve_value(inputs.value, &self.base_path, catalogue, &inputs.patches).err()?;
        let msg = err.to_string();
        let file = self.base_path.display().to_string();
        // Keep the parser's own words (they list the allowed fields), without the file.
        let short = msg
            .strip_prefix(&format!("{file}: "))
            .unwrap_or(&msg)
            .to_string();
        sets.iter().rev().find_map(|(kp, _)| {
            let unknown = kp.0.iter().any(|s| match s {
                Segment::Key(k) => msg.contains(&format!("unknown field `{k}`")),
                Segment::Index(_) => false,
            }) || (kp.head() == "profiles" && msg.contains("field `profiles."));
            unknown.then(|| (kp, short.clone()))
        })
    }
}

/// Apply `sets` (in order) to a copy of `base`; `profiles.<model>.<path>` keys go to patches.
/// A failure names the index of the set that could not be applied.
fn apply(
    base: &toml::Value,
    sets: &[&(KeyPath, toml::Value)],
) -> Result<RunInputs, (usize, String)> {
    let mut value = base.clone();
    let mut patches: BTreeMap<String, toml::Value> = BTreeMap::new();
    for (i, (kp, v)) in sets.iter().enumerate() {
        if kp.head() == "profiles" {
            let (Some(Segment::Key(model)), true) = (kp.0.get(1), kp.0.len() > 2) else {
                return Err((
                    i,
                    format!("`{kp}`: profile keys are written profiles.\"<model>\".<field>"),
                ));
            };
            let rest = KeyPath(kp.0[2..].to_vec());
            if rest.0.iter().any(|s| matches!(s, Segment::Index(_))) {
                return Err((i, format!("`{kp}`: profile keys cannot index arrays")));
            }
            let patch = patches
                .entry(model.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            rest.set(patch, v.clone())
                .map_err(|e| (i, format!("{kp}: {e}")))?;
        } else {
            kp.set(&mut value, v.clone())
                .map_err(|e| (i, format!("{kp}: {e}")))?;
        }
    }
    Ok(RunInputs { value, patches })
}

fn parse_key(path: &Path, field: &str, key: &str, v: &toml::Value) -> Result<KeyPath, InputError> {
    let kp = KeyPath::parse(key).map_err(|e| {
        bad(
            path,
            field,
            v,
            &format!("a key path such as \"workload.users\" or \"gpus[0].sharing\" ({e})"),
        )
    })?;
    if kp.head() == "seed" {
        return Err(bad(
            path,
            field,
            v,
            "seeds given as `seeds = N`, `seeds = [..]` or a grid key \"seed\"",
        ));
    }
    Ok(kp)
}

fn seed_list(path: &Path, field: &str, list: &[toml::Value]) -> Result<Vec<u64>, InputError> {
    let mut out: Vec<u64> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        match v.as_integer().and_then(|s| u64::try_from(s).ok()) {
            Some(s) if !out.contains(&s) => out.push(s),
            _ => {
                return Err(bad(
                    path,
                    &format!("{field}[{i}]"),
                    v,
                    "distinct whole numbers >= 0",
                ));
            }
        }
    }
    Ok(out)
}

/// The JSON text of an experiment value for hashing: without `models_dir`, a path that
/// depends on the working folder (the models themselves are hashed where they matter).
pub fn hash_text(v: &toml::Value) -> String {
    let mut j = to_json(v);
    if let Some(m) = j.as_object_mut() {
        m.shift_remove("models_dir");
    }
    serde_json::to_string(&j).unwrap_or_default()
}

/// A TOML value as JSON (for `params` and CSV cells).
pub fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
