//! MIG layouts: checking a set of GPU instances against the placement rules, and enumerating
//! the layouts that fill a GPU.
//!
//! The rule (docs/sources.md §1.3, §1.6): an instance of a profile starts at one of the profile's
//! listed memory-slice indices and occupies `start..start + placement_size`; instances may not
//! overlap; each profile appears at most `max_count` times; and the SM slices used may not exceed
//! the GPU's (implied by the placements on A100/H100, checked anyway for a clearer message).
//!
//! Functions here expect a [`GpuSpec`] from a checked [`super::Catalogue`].

use std::cmp::Reverse;
use std::collections::BTreeSet;

use super::catalogue::{GpuSpec, MigProfile};
use super::error::HardwareError;

/// One GPU instance of a layout and the memory slices it occupies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlacedInstance {
    /// Profile name, e.g. `3g.40gb`.
    pub profile: String,
    /// First memory slice occupied.
    pub start: u32,
    /// Memory slices occupied from `start`.
    pub size: u32,
}

impl PlacedInstance {
    /// The memory slices the instance occupies, `start..start + size`.
    pub fn slices(&self) -> std::ops::Range<u32> {
        self.start..self.start + self.size
    }
}

/// Checks that the instances `names` (profile names, case-insensitive) can coexist on `gpu`, and
/// returns them in the given order, each with a placement. The search is deterministic: each
/// instance, in the given order, takes the lowest start that still lets the rest fit.
pub fn validate_layout<S: AsRef<str>>(
    gpu: &GpuSpec,
    names: &[S],
) -> Result<Vec<PlacedInstance>, HardwareError> {
    let profiles = names
        .iter()
        .map(|n| gpu.mig_profile(n.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let invalid = |reason| HardwareError::InvalidLayout {
        layout: format_layout(&profiles.iter().map(|p| &p.name).collect::<Vec<_>>()),
        reason,
    };
    if let Some(reason) = limit_violation(gpu, &profiles) {
        return Err(invalid(reason));
    }
    let mut starts = vec![0; profiles.len()];
    if !place(&profiles, 0, 0, &mut starts) {
        return Err(invalid(no_placement(gpu, &profiles)));
    }
    Ok(profiles
        .iter()
        .zip(starts)
        .map(|(p, start)| PlacedInstance {
            profile: p.name.clone(),
            start,
            size: p.placement_size,
        })
        .collect())
}

/// Every valid layout (a multiset of profiles) to which no further instance of the considered
/// profiles can be added. `include_extra_profiles = false` considers only the classic
/// 1g/2g/3g/4g/7g profiles. Each layout lists larger instances first (memory slices, then SM
/// slices, then name); layouts are sorted the same way.
///
/// A multiset is maximal only if *no* placement of it leaves room: `3g + 3× 1g` is not
/// maximal, because with the 3g at slice 4 a fourth 1g fits. So A100 and H100 give 12 classic
/// layouts (44 with the extra profiles). docs/sources.md §1.6 lists 14: the distinct multisets of
/// [`maximal_placements`], which also counts layouts that are full only at one placement.
pub fn maximal_layouts(gpu: &GpuSpec, include_extra_profiles: bool) -> Vec<Vec<String>> {
    maximal_multisets(gpu, &considered(gpu, include_extra_profiles))
}

/// Every set of placed instances to which no further instance of the considered profiles can be
/// added *at a free placement*, without moving the others. Sorted like [`maximal_layouts`], with
/// the start as the last key.
pub fn maximal_placements(gpu: &GpuSpec, include_extra_profiles: bool) -> Vec<Vec<PlacedInstance>> {
    let profiles = considered(gpu, include_extra_profiles);
    let mut out = Vec::new();
    for_each_fill(gpu, &profiles, &mut |fill| {
        if fill.is_full(gpu, &profiles) {
            let mut set = fill.chosen.clone();
            set.sort_by_key(|&(k, s)| (size_key(profiles[k]), s));
            out.push(set);
        }
    });
    out.sort_by_cached_key(|set| {
        set.iter()
            .map(|&(k, s)| (size_key(profiles[k]), s))
            .collect::<Vec<_>>()
    });
    out.into_iter()
        .map(|set| {
            set.into_iter()
                .map(|(k, start)| PlacedInstance {
                    profile: profiles[k].name.clone(),
                    start,
                    size: profiles[k].placement_size,
                })
                .collect()
        })
        .collect()
}

/// Writes a layout with repeated profiles grouped in first-seen order: `3g.40gb + 2× 2g.20gb`.
pub fn format_layout<S: AsRef<str>>(names: &[S]) -> String {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for n in names {
        match groups.iter_mut().find(|(g, _)| *g == n.as_ref()) {
            Some(group) => group.1 += 1,
            None => groups.push((n.as_ref(), 1)),
        }
    }
    if groups.is_empty() {
        return "no MIG instances".to_string();
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|&(n, c)| {
            if c == 1 {
                n.to_string()
            } else {
                format!("{c}× {n}")
            }
        })
        .collect();
    parts.join(" + ")
}

/// Memory slices `start..start + size` as bits.
fn mask(start: u32, size: u32) -> u64 {
    (((1u128 << size) - 1) << start) as u64
}

/// Sort key putting larger instances first.
fn size_key(p: &MigProfile) -> (Reverse<u32>, Reverse<u32>, &str) {
    (
        Reverse(p.memory_slices),
        Reverse(p.sm_slices),
        p.name.as_str(),
    )
}

fn considered(gpu: &GpuSpec, include_extra: bool) -> Vec<&MigProfile> {
    gpu.mig_profiles
        .iter()
        .filter(|p| include_extra || !p.extra)
        .collect()
}

/// The first per-profile count, memory-slice or SM-slice limit the layout breaks.
fn limit_violation(gpu: &GpuSpec, profiles: &[&MigProfile]) -> Option<String> {
    for (i, p) in profiles.iter().enumerate() {
        let count = profiles.iter().filter(|q| q.name == p.name).count();
        let first = profiles.iter().position(|q| q.name == p.name) == Some(i);
        if first && count > p.max_count as usize {
            let why = match (p.placement_starts.as_slice(), p.max_count as usize) {
                ([s], _) => format!("only placement: memory slice {s}"),
                (starts, max) if max == starts.len() => {
                    format!("placements: memory slices {}", join(starts, ", "))
                }
                _ => "a per-GPU limit, not a lack of placements".to_string(),
            };
            let verb = if p.max_count == 1 { "fits" } else { "fit" };
            return Some(format!(
                "at most {} × {} {verb} on {} ({why})",
                p.max_count, p.name, gpu.name
            ));
        }
    }
    for (what, have, need) in [
        (
            "memory",
            gpu.memory_slices,
            profiles.iter().map(|p| p.memory_slices).collect::<Vec<_>>(),
        ),
        (
            "SM",
            gpu.sm_slices,
            profiles.iter().map(|p| p.sm_slices).collect(),
        ),
    ] {
        let total: u32 = need.iter().sum();
        if total > have {
            let sum = join(&need, " + ");
            return Some(format!(
                "it needs {total} {what} slices ({sum}) but the {} has {have}",
                gpu.name
            ));
        }
    }
    None
}

/// Backtracking placement in the given order, lowest start first. Instances of one profile take
/// increasing starts: this prunes their permutations and keeps the lowest-first answer.
fn place(profiles: &[&MigProfile], i: usize, used: u64, starts: &mut [u32]) -> bool {
    let Some(p) = profiles.get(i) else {
        return true;
    };
    let min_start = profiles[..i]
        .iter()
        .rposition(|q| q.name == p.name)
        .map_or(0, |j| starts[j] + 1);
    for &s in p.placement_starts.iter().filter(|&&s| s >= min_start) {
        let m = mask(s, p.placement_size);
        if used & m == 0 {
            starts[i] = s;
            if place(profiles, i + 1, used | m, starts) {
                return true;
            }
        }
    }
    false
}

fn no_placement(gpu: &GpuSpec, profiles: &[&MigProfile]) -> String {
    let mut seen = BTreeSet::new();
    let parts: Vec<String> = profiles
        .iter()
        .filter(|p| seen.insert(p.name.as_str()))
        .enumerate()
        .map(|(i, p)| {
            let lead = if i == 0 {
                "can start only at memory slice "
            } else {
                "only at "
            };
            let s = if p.placement_size == 1 { "" } else { "s" };
            let starts = p
                .placement_starts
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>();
            let list = match starts.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => starts.join(""),
            };
            format!("{} ({} slice{s}) {lead}{list}", p.name, p.placement_size)
        })
        .collect();
    format!(
        "no non-overlapping placement exists on {}: {}",
        gpu.name,
        parts.join("; ")
    )
}

fn join(values: &[u32], sep: &str) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// A partial layout during enumeration: chosen `(profile index, start)` pairs and their totals.
struct Fill {
    chosen: Vec<(usize, u32)>,
    used: u64,
    sm_slices: u32,
    counts: Vec<u32>,
}

impl Fill {
    fn fits(&self, gpu: &GpuSpec, k: usize, p: &MigProfile, start: u32) -> bool {
        self.used & mask(start, p.placement_size) == 0
            && self.counts[k] < p.max_count
            && self.sm_slices + p.sm_slices <= gpu.sm_slices
    }

    /// True when no considered instance fits at any free placement.
    fn is_full(&self, gpu: &GpuSpec, profiles: &[&MigProfile]) -> bool {
        profiles
            .iter()
            .enumerate()
            .all(|(k, p)| p.placement_starts.iter().all(|&s| !self.fits(gpu, k, p, s)))
    }
}

/// Calls `visit` once for every set of placements that obeys the rules (including the empty one).
fn for_each_fill(gpu: &GpuSpec, profiles: &[&MigProfile], visit: &mut dyn FnMut(&Fill)) {
    fn walk(
        gpu: &GpuSpec,
        profiles: &[&MigProfile],
        cands: &[(usize, u32)],
        fill: &mut Fill,
        visit: &mut dyn FnMut(&Fill),
    ) {
        let Some((&(k, s), rest)) = cands.split_first() else {
            return visit(fill);
        };
        walk(gpu, profiles, rest, fill, visit);
        let p = profiles[k];
        if fill.fits(gpu, k, p, s) {
            fill.chosen.push((k, s));
            fill.used |= mask(s, p.placement_size);
            fill.sm_slices += p.sm_slices;
            fill.counts[k] += 1;
            walk(gpu, profiles, rest, fill, visit);
            fill.counts[k] -= 1;
            fill.sm_slices -= p.sm_slices;
            fill.used &= !mask(s, p.placement_size);
            fill.chosen.pop();
        }
    }
    let cands: Vec<(usize, u32)> = profiles
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.placement_starts.iter().map(move |&s| (k, s)))
        .collect();
    let mut fill = Fill {
        chosen: Vec::new(),
        used: 0,
        sm_slices: 0,
        counts: vec![0; profiles.len()],
    };
    walk(gpu, profiles, &cands, &mut fill, visit);
}

/// Maximal multisets of `profiles`, as sorted name lists.
fn maximal_multisets(gpu: &GpuSpec, profiles: &[&MigProfile]) -> Vec<Vec<String>> {
    let mut valid = BTreeSet::new();
    for_each_fill(gpu, profiles, &mut |fill| {
        valid.insert(fill.counts.clone());
    });
    let grows = |c: &Vec<u32>, k: usize| {
        let mut more = c.clone();
        more[k] += 1;
        valid.contains(&more)
    };
    let mut layouts: Vec<Vec<&MigProfile>> = valid
        .iter()
        .filter(|c| (0..profiles.len()).all(|k| !grows(c, k)))
        .map(|c| {
            let mut ps: Vec<&MigProfile> = c
                .iter()
                .enumerate()
                .flat_map(|(k, &n)| std::iter::repeat_n(profiles[k], n as usize))
                .collect();
            ps.sort_by_key(|p| size_key(p));
            ps
        })
        .collect();
    layouts.sort_by_cached_key(|ps| ps.iter().map(|p| size_key(p)).collect::<Vec<_>>());
    layouts
        .into_iter()
        .map(|ps| ps.into_iter().map(|p| p.name.clone()).collect())
        .collect()
}

#[cfg(test)]
#[path = "mig_tests.rs"]
mod tests;
