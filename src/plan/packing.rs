//! MIG bin packing: the fewest GPUs whose layouts hold a given number of instances of each
//! profile, and one such set of layouts.
//!
//! Exact by dynamic programming over the vector of instances still to place:
//! `gpus(need) = 1 + min over layouts L of gpus((need - L)+)`, where the layouts are the
//! catalogue's maximal valid layouts projected onto the profiles needed (every valid layout
//! is a sub-multiset of one of them, and unused instances are simply not created). The table
//! covers needs up to a box of at most [`MAX_STATES`] vectors per set of profiles (one profile:
//! no limit; two: 2,000 instances each; three: 157 each); a larger need is first cut down by
//! whole GPUs of the layout that covers the most of it, and the packing is then reported as
//! not proven minimal.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::hardware::{GpuSpec, maximal_layouts};

/// Largest DP table (vectors) built per set of profiles.
pub const MAX_STATES: usize = 4_000_000;

/// A packing: the instances of each GPU (profile names, unsorted).
pub type Packing = Vec<Vec<String>>;

/// The DP table of one set of profiles.
#[derive(Debug)]
struct Table {
    /// Maximal layouts projected on the profiles.
    layouts: Vec<Vec<u32>>,
    /// Box size per profile (largest need + 1).
    dims: Vec<usize>,
    /// Fewest GPUs per need vector (mixed-radix index).
    best: Vec<u32>,
    /// Layout chosen first for that need.
    choice: Vec<u16>,
}

impl Table {
    fn index(&self, v: &[u32]) -> usize {
        let mut i = 0usize;
        for (k, &x) in v.iter().enumerate() {
            i = i * self.dims[k] + x as usize;
        }
        i
    }

    fn fits(&self, v: &[u32]) -> bool {
        v.iter().zip(&self.dims).all(|(&x, &d)| (x as usize) < d)
    }

    fn build(layouts: Vec<Vec<u32>>, dims: Vec<usize>) -> Table {
        let states: usize = dims.iter().product();
        let mut t = Table {
            layouts,
            dims,
            best: vec![u32::MAX; states],
            choice: vec![u16::MAX; states],
        };
        t.best[0] = 0;
        let n = t.dims.len();
        let mut v = vec![0u32; n];
        let mut rest = vec![0u32; n];
        for i in 1..states {
            let mut k = n;
            while k > 0 {
                k -= 1;
                if (v[k] as usize) + 1 < t.dims[k] {
                    v[k] += 1;
                    break;
                }
                v[k] = 0;
            }
            // (v - L)+ has a smaller index than v for any non-zero L.
            for li in 0..t.layouts.len() {
                for k in 0..n {
                    rest[k] = v[k].saturating_sub(t.layouts[li][k]);
                }
                let r = t.best[t.index(&rest)];
                if r != u32::MAX && r + 1 < t.best[i] {
                    t.best[i] = r + 1;
                    t.choice[i] = li as u16;
                }
            }
        }
        t
    }
}

/// Packs instance counts into GPUs of one model.
#[derive(Debug)]
pub struct Packer {
    /// Per maximal layout: profile -> count.
    layouts: Vec<BTreeMap<String, u32>>,
    /// Profile -> (memory slices, SM slices); and the GPU's (memory slices, SM slices).
    slices: BTreeMap<String, (u32, u32)>,
    gpu_slices: (u32, u32),
    /// DP tables by set of profiles.
    tables: Mutex<BTreeMap<Vec<String>, std::sync::Arc<Table>>>,
}

impl Packer {
    /// A packer for `gpu`, over all its profiles.
    pub fn new(gpu: &GpuSpec) -> Packer {
        let layouts = maximal_layouts(gpu, true)
            .into_iter()
            .map(|l| {
                let mut m = BTreeMap::new();
                for p in l {
                    *m.entry(p).or_insert(0) += 1;
                }
                m
            })
            .collect();
        Packer {
            layouts,
            slices: gpu
                .mig_profiles
                .iter()
                .map(|p| (p.name.clone(), (p.memory_slices, p.sm_slices)))
                .collect(),
            gpu_slices: (gpu.memory_slices.max(1), gpu.sm_slices.max(1)),
            tables: Mutex::new(BTreeMap::new()),
        }
    }

    /// The maximal count vectors over `profiles` (projections of the maximal layouts).
    fn projected(&self, profiles: &[String]) -> Vec<Vec<u32>> {
        let mut vs: Vec<Vec<u32>> = self
            .layouts
            .iter()
            .map(|l| {
                profiles
                    .iter()
                    .map(|p| l.get(p).copied().unwrap_or(0))
                    .collect()
            })
            .filter(|v: &Vec<u32>| v.iter().any(|&c| c > 0))
            .collect();
        vs.sort();
        vs.dedup();
        let dominated = |a: &Vec<u32>, all: &[Vec<u32>]| {
            all.iter()
                .any(|b| b != a && b.iter().zip(a).all(|(x, y)| x >= y))
        };
        vs.iter().filter(|a| !dominated(a, &vs)).cloned().collect()
    }

    /// Most instances of `profile` one GPU holds.
    pub fn per_gpu(&self, profile: &str) -> u32 {
        self.layouts
            .iter()
            .map(|l| l.get(profile).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// The table for `profiles`, covering needs up to `need` where the size limit allows
    /// (grown on demand: small plans build small tables).
    fn table(&self, profiles: &[String], need: &[u32]) -> std::sync::Arc<Table> {
        let hard = match profiles.len() {
            1 => 1 << 16,
            2 => 2000,
            n => ((MAX_STATES as f64).powf(1.0 / n as f64).floor() as usize).max(2),
        };
        let want: Vec<usize> = need.iter().map(|&n| (n as usize + 1).min(hard)).collect();
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tables.get(profiles)
            && t.dims.iter().zip(&want).all(|(d, w)| d >= w)
        {
            return t.clone();
        }
        let old = tables.get(profiles).map(|t| t.dims.clone());
        let dims: Vec<usize> = want
            .iter()
            .enumerate()
            .map(|(k, &w)| {
                let grown = (w * 2).max(16).max(old.as_ref().map_or(0, |o| o[k]));
                grown.min(hard)
            })
            .collect();
        let t = std::sync::Arc::new(Table::build(self.projected(profiles), dims));
        tables.insert(profiles.to_vec(), t.clone());
        t
    }

    /// The fewest GPUs for `need` (profile -> instances), one packing, and whether the count is
    /// proven minimal; `None` when some profile fits no layout of this GPU.
    pub fn pack(&self, need: &BTreeMap<String, u32>) -> Option<(u32, Packing, bool)> {
        let profiles: Vec<String> = need
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, _)| p.clone())
            .collect();
        if profiles.is_empty() {
            return Some((0, Vec::new(), true));
        }
        let cur: Vec<u32> = profiles.iter().map(|p| need[p]).collect();
        let t = self.table(&profiles, &cur);
        for k in 0..profiles.len() {
            if t.layouts.iter().all(|l| l[k] == 0) {
                return None;
            }
        }
        let mut cur = cur;
        let mut layouts_used: Vec<usize> = Vec::new();
        let mut exact = true;
        // Too large for the table: take whole GPUs of the layout covering the most of the need,
        // weighting each profile by how scarce it is per GPU.
        while !t.fits(&cur) {
            exact = false;
            let weight: Vec<f64> = (0..profiles.len())
                .map(|k| 1.0 / f64::from(t.layouts.iter().map(|l| l[k]).max().unwrap_or(1).max(1)))
                .collect();
            let li = (0..t.layouts.len())
                .max_by(|&a, &b| {
                    let score = |l: &Vec<u32>| -> f64 {
                        l.iter()
                            .zip(&cur)
                            .zip(&weight)
                            .map(|((&x, &c), w)| f64::from(x.min(c)) * w)
                            .sum()
                    };
                    score(&t.layouts[a])
                        .total_cmp(&score(&t.layouts[b]))
                        .then(b.cmp(&a))
                })
                .expect("invariant: a profile fits some layout");
            for (c, l) in cur.iter_mut().zip(&t.layouts[li]) {
                *c = c.saturating_sub(*l);
            }
            layouts_used.push(li);
        }
        while cur.iter().any(|&x| x > 0) {
            let li = t.choice[t.index(&cur)] as usize;
            for (c, l) in cur.iter_mut().zip(&t.layouts[li]) {
                *c = c.saturating_sub(*l);
            }
            layouts_used.push(li);
        }
        // Hand out the instances layout by layout.
        let mut left: Vec<u32> = profiles.iter().map(|p| need[p]).collect();
        let mut packing = Vec::new();
        for li in layouts_used {
            let mut gpu = Vec::new();
            for k in 0..profiles.len() {
                let used = t.layouts[li][k].min(left[k]);
                gpu.extend(std::iter::repeat_n(profiles[k].clone(), used as usize));
                left[k] -= used;
            }
            packing.push(gpu);
        }
        Some((packing.len() as u32, packing, exact))
    }

    /// A quick lower bound on [`Self::bins`]: memory slices, SM slices, and each profile's
    /// instances per GPU (no table needed).
    pub fn quick_bound(&self, need: &BTreeMap<String, u32>) -> u32 {
        let (mut mem, mut sm, mut most) = (0u64, 0u64, 0u32);
        for (p, &n) in need {
            let (m, s) = self.slices.get(p).copied().unwrap_or((1, 1));
            mem += u64::from(m) * u64::from(n);
            sm += u64::from(s) * u64::from(n);
            most = most.max(n.div_ceil(self.per_gpu(p).max(1)));
        }
        let (gm, gs) = self.gpu_slices;
        (mem.div_ceil(u64::from(gm)) as u32)
            .max(sm.div_ceil(u64::from(gs)) as u32)
            .max(most)
    }

    /// Just the GPU count of [`Self::pack`].
    pub fn bins(&self, need: &BTreeMap<String, u32>) -> Option<u32> {
        let profiles: Vec<String> = need
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, _)| p.clone())
            .collect();
        if profiles.is_empty() {
            return Some(0);
        }
        let cur: Vec<u32> = profiles.iter().map(|p| need[p]).collect();
        let t = self.table(&profiles, &cur);
        if t.fits(&cur) {
            let b = t.best[t.index(&cur)];
            return (b != u32::MAX).then_some(b);
        }
        self.pack(need).map(|p| p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{Catalogue, validate_layout};

    fn need(v: &[(&str, u32)]) -> BTreeMap<String, u32> {
        v.iter().map(|(p, n)| (p.to_string(), *n)).collect()
    }

    #[test]
    fn packs_exactly() {
        let gpu = Catalogue::builtin().gpu("a100-80gb").unwrap().clone();
        let p = Packer::new(&gpu);
        assert_eq!(p.bins(&need(&[])), Some(0));
        assert_eq!(p.bins(&need(&[("3g.40gb", 2)])), Some(1));
        assert_eq!(p.bins(&need(&[("3g.40gb", 3)])), Some(2));
        assert_eq!(p.bins(&need(&[("1g.10gb", 7)])), Some(1));
        assert_eq!(p.bins(&need(&[("7g.80gb", 3)])), Some(3));
        assert_eq!(p.per_gpu("1g.10gb"), 7);
        // 3g + 2g + 2× 1g fill one GPU; two such need two.
        assert_eq!(
            p.bins(&need(&[("3g.40gb", 2), ("2g.20gb", 2), ("1g.10gb", 4)])),
            Some(2)
        );
        // 4g + 3g share one GPU.
        let (n, packing, exact) = p.pack(&need(&[("4g.40gb", 3), ("3g.40gb", 3)])).unwrap();
        assert!(exact);
        assert_eq!(n, 3);
        for g in &packing {
            validate_layout(&gpu, g).unwrap();
        }
        assert_eq!(packing.iter().map(Vec::len).sum::<usize>(), 6);
        // Large needs: cut down by whole GPUs first; every GPU still valid, every instance placed.
        let big = need(&[("3g.40gb", 300), ("2g.20gb", 250), ("1g.10gb", 400)]);
        let (n, packing, exact) = p.pack(&big).unwrap();
        assert!(!exact);
        assert_eq!(n as usize, packing.len());
        for g in &packing {
            validate_layout(&gpu, g).unwrap();
        }
        assert_eq!(
            packing.iter().flatten().filter(|x| *x == "1g.10gb").count(),
            400
        );
        // Slice bound: 4a + 2b + c memory slices over 8 per GPU.
        assert!(n >= (4 * 300 + 2 * 250 + 400u32).div_ceil(8));
    }

    #[test]
    fn agrees_with_brute_force_on_small_needs() {
        let gpu = Catalogue::builtin().gpu("a100-80gb").unwrap().clone();
        let p = Packer::new(&gpu);
        for a in 0..4u32 {
            for b in 0..4u32 {
                for c in 0..6u32 {
                    let nd = need(&[("3g.40gb", a), ("2g.20gb", b), ("1g.10gb", c)]);
                    let (k, packing, exact) = p.pack(&nd).unwrap();
                    assert!(exact);
                    for g in &packing {
                        validate_layout(&gpu, g).unwrap();
                    }
                    let count =
                        |name: &str| packing.iter().flatten().filter(|x| *x == name).count() as u32;
                    assert_eq!(
                        (count("3g.40gb"), count("2g.20gb"), count("1g.10gb")),
                        (a, b, c)
                    );
                    if k > 0 {
                        assert!(
                            !splits_into(&gpu, (a, b, c), k - 1),
                            "{a} {b} {c} fits in {}",
                            k - 1
                        );
                    }
                }
            }
        }
    }

    /// True if (a, b, c) instances split into `k` valid GPUs.
    fn splits_into(gpu: &GpuSpec, left: (u32, u32, u32), k: u32) -> bool {
        if left == (0, 0, 0) {
            return true;
        }
        if k == 0 {
            return false;
        }
        for x in 0..=left.0.min(2) {
            for y in 0..=left.1.min(3) {
                for z in 0..=left.2.min(7) {
                    if x + y + z == 0 {
                        continue;
                    }
                    let mut names = vec!["3g.40gb"; x as usize];
                    names.extend(vec!["2g.20gb"; y as usize]);
                    names.extend(vec!["1g.10gb"; z as usize]);
                    if validate_layout(gpu, &names).is_ok()
                        && splits_into(gpu, (left.0 - x, left.1 - y, left.2 - z), k - 1)
                    {
                        return true;
                    }
                }
            }
        }
        false
    }
}
