//! Tests of the MIG placement rules against docs/sources.md §1.6 and known-impossible layouts.

use proptest::prelude::*;

use super::*;
use crate::hardware::Catalogue;

/// docs/sources.md §1.6: maximal layouts of the classic profiles, 40 GB names.
const TABLE_40GB: [&str; 14] = [
    "7g.40gb",
    "4g.20gb + 3g.20gb",
    "4g.20gb + 2g.10gb + 1g.5gb",
    "4g.20gb + 3× 1g.5gb",
    "3g.20gb + 2× 2g.10gb",
    "3g.20gb + 2g.10gb + 2× 1g.5gb",
    "3g.20gb + 4× 1g.5gb",
    "3g.20gb + 3g.20gb",
    "3g.20gb + 2g.10gb + 1g.5gb",
    "3g.20gb + 3× 1g.5gb",
    "3× 2g.10gb + 1g.5gb",
    "2× 2g.10gb + 3× 1g.5gb",
    "2g.10gb + 5× 1g.5gb",
    "7× 1g.5gb",
];

/// The table rows marked `3g.20gb(@0)`: full only with the 3g at slice 0, so not maximal as
/// multisets (moving the 3g to slice 4 frees room for one more 1g).
const PLACEMENT_ONLY: [&str; 2] = ["3g.20gb + 2g.10gb + 1g.5gb", "3g.20gb + 3× 1g.5gb"];

fn gpu(key: &str) -> GpuSpec {
    Catalogue::builtin().gpu(key).unwrap().clone()
}

/// Keys of every GPU of the catalogue that has MIG.
fn mig_keys() -> Vec<String> {
    let keys: Vec<String> = Catalogue::builtin()
        .gpus()
        .iter()
        .filter(|g| g.has_mig())
        .map(|g| g.key.clone())
        .collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    keys
}

/// Parses `3g.20gb + 2× 1g.5gb` into names.
fn expand(layout: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in layout.split(" + ") {
        match part.split_once("× ") {
            Some((n, name)) => {
                out.extend(std::iter::repeat_n(name.to_string(), n.parse().unwrap()))
            }
            None => out.push(part.to_string()),
        }
    }
    out
}

/// The same layout on another GPU, matching profiles by NVIDIA profile ID.
fn translate(from: &GpuSpec, to: &GpuSpec, names: &[String]) -> Vec<String> {
    let id = |n: &String| from.mig_profile(n).unwrap().id;
    names
        .iter()
        .map(|n| {
            to.mig_profiles
                .iter()
                .find(|p| p.id == id(n))
                .unwrap()
                .name
                .clone()
        })
        .collect()
}

/// A layout as sorted profile IDs: comparable across GPUs.
fn shape(g: &GpuSpec, names: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = names.iter().map(|n| g.mig_profile(n).unwrap().id).collect();
    ids.sort();
    ids
}

fn table_shapes(rows: &[&str]) -> BTreeSet<Vec<u32>> {
    let a40 = gpu("a100-40gb");
    rows.iter().map(|r| shape(&a40, &expand(r))).collect()
}

fn reason(g: &GpuSpec, layout: &str) -> String {
    match validate_layout(g, &expand(layout)) {
        Err(HardwareError::InvalidLayout { reason, .. }) => reason,
        other => panic!("{layout}: expected InvalidLayout, got {other:?}"),
    }
}

#[test]
fn every_table_layout_is_accepted_on_every_gpu() {
    let a40 = gpu("a100-40gb");
    for key in &mig_keys() {
        let g = gpu(key);
        for row in TABLE_40GB {
            let names = translate(&a40, &g, &expand(row));
            let placed = validate_layout(&g, &names).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(placed.len(), names.len());
        }
    }
}

#[test]
fn table_is_the_set_of_full_placements() {
    let table = table_shapes(&TABLE_40GB);
    for key in &mig_keys() {
        let g = gpu(key);
        let placements = maximal_placements(&g, false);
        assert_eq!(placements.len(), 19, "{key}");
        let shapes: BTreeSet<Vec<u32>> = placements
            .iter()
            .map(|set| {
                shape(
                    &g,
                    &set.iter().map(|i| i.profile.clone()).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(shapes, table, "{key}");
    }
}

#[test]
fn maximal_layouts_are_the_table_without_placement_only_rows() {
    let rows: Vec<&str> = TABLE_40GB
        .into_iter()
        .filter(|r| !PLACEMENT_ONLY.contains(r))
        .collect();
    let want = table_shapes(&rows);
    for key in &mig_keys() {
        let g = gpu(key);
        let got: BTreeSet<Vec<u32>> = maximal_layouts(&g, false)
            .iter()
            .map(|l| shape(&g, l))
            .collect();
        assert_eq!(got, want, "{key}");
        assert_eq!(maximal_layouts(&g, true).len(), 44, "{key}");
    }
    let l = maximal_layouts(&gpu("a100-80gb"), false);
    assert_eq!(format_layout(&l[0]), "7g.80gb");
    assert_eq!(format_layout(&l[1]), "4g.40gb + 3g.40gb");
    assert_eq!(format_layout(&l[11]), "7× 1g.10gb");
}

#[test]
fn counts_with_the_double_memory_1g_profile() {
    // docs/sources.md §1.6 says 38 with 1g.10gb: that is the count of distinct full placements.
    let g = gpu("a100-40gb");
    let profiles: Vec<&MigProfile> = g
        .mig_profiles
        .iter()
        .filter(|p| !p.name.ends_with("+me"))
        .collect();
    let mut full = BTreeSet::new();
    for_each_fill(&g, &profiles, &mut |f| {
        if f.is_full(&g, &profiles) {
            full.insert(f.counts.clone());
        }
    });
    assert_eq!(full.len(), 38);
    assert_eq!(maximal_multisets(&g, &profiles).len(), 28);
}

#[test]
fn h100_has_the_same_maximal_shapes_as_a100() {
    for extra in [false, true] {
        let shapes = |key: &str| -> Vec<Vec<u32>> {
            let g = gpu(key);
            maximal_layouts(&g, extra)
                .iter()
                .map(|l| shape(&g, l))
                .collect()
        };
        // Every MIG GPU of the catalogue shares A100's geometry (eighths, the same placements).
        for key in mig_keys() {
            assert_eq!(shapes(&key), shapes("a100-80gb"), "{key}");
        }
    }
}

#[test]
fn impossible_layouts_say_why() {
    let g = gpu("a100-80gb");
    let err = validate_layout(&g, &["4g.40gb", "4g.40gb"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid MIG layout `2× 4g.40gb`: at most 1 × 4g.40gb fits on A100-SXM4-80GB (only placement: memory slice 0)"
    );
    let cases = [
        (
            "7g.80gb + 1g.10gb",
            "it needs 9 memory slices (8 + 1) but the A100-SXM4-80GB has 8",
        ),
        (
            "3× 3g.40gb",
            "at most 2 × 3g.40gb fit on A100-SXM4-80GB (placements: memory slices 0, 4)",
        ),
        (
            "4g.40gb + 3g.40gb + 1g.10gb",
            "it needs 9 memory slices (4 + 4 + 1) but the A100-SXM4-80GB has 8",
        ),
        (
            "4× 2g.20gb",
            "at most 3 × 2g.20gb fit on A100-SXM4-80GB (placements: memory slices 0, 2, 4)",
        ),
        (
            "8× 1g.10gb",
            "at most 7 × 1g.10gb fit on A100-SXM4-80GB (placements: memory slices 0, 1, 2, 3, 4, 5, 6)",
        ),
        (
            "2× 1g.10gb+me",
            "at most 1 × 1g.10gb+me fits on A100-SXM4-80GB (a per-GPU limit, not a lack of placements)",
        ),
        (
            "4g.40gb + 2g.20gb + 2× 1g.10gb",
            "it needs 8 SM slices (4 + 2 + 1 + 1) but the A100-SXM4-80GB has 7",
        ),
    ];
    for (layout, want) in cases {
        assert_eq!(reason(&g, layout), want, "{layout}");
    }
    let err = validate_layout(&g, &["3g.40gb", "3g.20gb"]).unwrap_err();
    assert!(matches!(err, HardwareError::UnknownProfile { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"),
        "{msg}"
    );
}

#[test]
fn overlap_without_other_violations_names_the_placements() {
    // The built-in data never reaches this case (counts and slice totals catch everything), so
    // restrict 3g.40gb to slice 0: then 3g + 2× 2g fits the totals but not the slices.
    let mut g = gpu("a100-80gb");
    let p = g
        .mig_profiles
        .iter_mut()
        .find(|p| p.name == "3g.40gb")
        .unwrap();
    (p.placement_starts, p.max_count) = (vec![0], 1);
    assert_eq!(
        reason(&g, "3g.40gb + 2× 2g.20gb"),
        "no non-overlapping placement exists on A100-SXM4-80GB: 3g.40gb (4 slices) can start only at \
         memory slice 0; 2g.20gb (2 slices) only at 0, 2 or 4"
    );
}

#[test]
fn placements_follow_the_given_order_lowest_start_first() {
    let g = gpu("a100-80gb");
    let starts = |names: &[&str]| -> Vec<u32> {
        validate_layout(&g, names)
            .unwrap()
            .iter()
            .map(|i| i.start)
            .collect()
    };
    // mig-parted "all-balanced" on 80 GB [S4].
    assert_eq!(
        starts(&["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]),
        [0, 1, 2, 4]
    );
    assert_eq!(
        starts(&["3g.40gb", "1g.10gb", "1g.10gb", "2g.20gb"]),
        [4, 0, 1, 2]
    );
    assert_eq!(starts(&["3g.40gb", "3g.40gb"]), [0, 4]);
    assert_eq!(starts(&["1g.20gb", "4g.40gb", "1g.20gb"]), [4, 0, 6]);
    assert!(validate_layout::<&str>(&g, &[]).unwrap().is_empty());
}

#[test]
fn search_agrees_with_enumeration_on_every_count_vector() {
    for key in ["a100-40gb", "h100-80gb"] {
        let g = gpu(key);
        let profiles: Vec<&MigProfile> = g.mig_profiles.iter().collect();
        let mut valid = BTreeSet::new();
        for_each_fill(&g, &profiles, &mut |f| {
            valid.insert(f.counts.clone());
        });
        // Every count vector up to max_count + 1 per profile.
        let mut counts = vec![0u32; profiles.len()];
        'all: loop {
            let names: Vec<&str> = counts
                .iter()
                .zip(&profiles)
                .flat_map(|(&n, p)| std::iter::repeat_n(p.name.as_str(), n as usize))
                .collect();
            assert_eq!(
                validate_layout(&g, &names).is_ok(),
                valid.contains(&counts),
                "{names:?}"
            );
            for (k, c) in counts.iter_mut().enumerate() {
                *c += 1;
                if *c <= profiles[k].max_count + 1 {
                    continue 'all;
                }
                *c = 0;
            }
            break;
        }
    }
}

#[test]
fn format_layout_groups_repeats() {
    assert_eq!(
        format_layout(&["3g.40gb", "2g.20gb", "2g.20gb"]),
        "3g.40gb + 2× 2g.20gb"
    );
    assert_eq!(
        format_layout(&["1g.10gb", "2g.20gb", "1g.10gb"]),
        "2× 1g.10gb + 2g.20gb"
    );
    assert_eq!(format_layout::<&str>(&[]), "no MIG instances");
}

fn any_gpu() -> impl Strategy<Value = GpuSpec> {
    let mig: Vec<GpuSpec> = Catalogue::builtin()
        .gpus()
        .iter()
        .filter(|g| g.has_mig())
        .cloned()
        .collect();
    prop::sample::select(mig)
}

#[test]
fn h200_and_b200_layouts_by_their_own_names() {
    let h200 = gpu("h200");
    let l = maximal_layouts(&h200, false);
    assert_eq!(l.len(), 12);
    assert_eq!(format_layout(&l[0]), "7g.141gb");
    assert_eq!(format_layout(&l[1]), "4g.71gb + 3g.71gb");
    assert_eq!(format_layout(&l[11]), "7× 1g.18gb");
    validate_layout(&h200, &["3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"]).unwrap();
    validate_layout(&h200, &["1g.35gb"; 4]).unwrap();
    let b200 = gpu("b200");
    let l = maximal_layouts(&b200, false);
    assert_eq!(l.len(), 12);
    assert_eq!(format_layout(&l[0]), "7g.180gb");
    assert_eq!(format_layout(&l[11]), "7× 1g.23gb");
    // The operator's all-balanced for B200: 2x 1g.23gb + 2g.45gb + 3g.90gb.
    validate_layout(&b200, &["1g.23gb", "1g.23gb", "2g.45gb", "3g.90gb"]).unwrap();
    // Impossible ones are refused, with the reason.
    for (g, bad) in [
        (&h200, "4g.71gb + 4g.71gb"),
        (&h200, "8× 1g.18gb"),
        (&h200, "7g.141gb + 1g.18gb"),
        (&h200, "2× 3g.71gb + 1g.18gb"),
        (&b200, "4g.90gb + 3g.90gb + 1g.23gb"),
        (&b200, "5× 1g.45gb"),
        (&b200, "2× 1g.23gb.me"),
    ] {
        assert!(
            validate_layout(g, &expand(bad)).is_err(),
            "{}: {bad}",
            g.key
        );
    }
    // Another GPU's profile names are not these GPUs'.
    let e = validate_layout(&h200, &["3g.40gb"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `3g.71gb`?"), "{e}");
}

#[test]
fn gpus_without_mig_refuse_every_profile() {
    for key in ["l40s", "l4", "a10g"] {
        let g = gpu(key);
        assert!(!g.has_mig());
        let e = validate_layout(&g, &["1g.10gb"]).unwrap_err();
        assert_eq!(
            e,
            HardwareError::NoMig {
                gpu: g.name.clone()
            }
        );
        assert!(
            e.to_string().starts_with(&format!("no MIG on {}", g.name)),
            "{e}"
        );
    }
    assert!(
        validate_layout(&gpu("l40s"), &["1g.10gb"])
            .unwrap_err()
            .to_string()
            .starts_with("no MIG on L40S")
    );
}

proptest! {
    #[test]
    fn accepted_layouts_have_disjoint_listed_placements(
        g in any_gpu(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let names: Vec<&str> = picks.iter().map(|i| i.get(&g.mig_profiles).name.as_str()).collect();
        if let Ok(placed) = validate_layout(&g, &names) {
            let mut used = 0u64;
            for (inst, name) in placed.iter().zip(&names) {
                let p = g.mig_profile(name).unwrap();
                prop_assert_eq!(&inst.profile, &p.name);
                prop_assert!(p.placement_starts.contains(&inst.start));
                prop_assert_eq!(inst.size, p.placement_size);
                prop_assert!(inst.slices().end <= g.memory_slices);
                let m = mask(inst.start, inst.size);
                prop_assert_eq!(used & m, 0, "overlap in {:?}", placed);
                used |= m;
            }
        }
    }

    #[test]
    fn nothing_can_be_added_to_a_maximal_layout(
        g in any_gpu(),
        extra in any::<bool>(),
        which in any::<prop::sample::Index>(),
        add in any::<prop::sample::Index>(),
    ) {
        let layouts = maximal_layouts(&g, extra);
        let mut names = which.get(&layouts).clone();
        prop_assert!(validate_layout(&g, &names).is_ok());
        let candidates: Vec<&MigProfile> = g.mig_profiles.iter().filter(|p| extra || !p.extra).collect();
        names.push(add.get(&candidates).name.clone());
        prop_assert!(validate_layout(&g, &names).is_err(), "{} fits", format_layout(&names));
    }
}
