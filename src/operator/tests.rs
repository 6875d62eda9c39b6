//! Tests of import and export: the documented presets, the device plugin's semantics, and the
//! round trip import(export(x)) == x.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::export::{self, bundle_from_files, bundle_of, files_of, layout_of};
use super::migparted::{MigParted, MigState};
use super::*;
use crate::experiment::{Deployment, GpuEntry, MpsMemoryLimit, ReplicaPlacement, SharingSpec};
use crate::hardware::{Catalogue, maximal_layouts, validate_layout};

const PRESETS: &str = include_str!("../../experiments/operator/mig-parted-presets.yaml");

fn presets() -> MigParted {
    MigParted::from_text(Path::new("mig-parted-presets.yaml"), PRESETS).unwrap()
}

fn gpu(key: &str) -> crate::hardware::GpuSpec {
    Catalogue::builtin().gpu(key).unwrap().clone()
}

fn enabled(list: &[(&str, usize)]) -> MigState {
    MigState::Enabled(
        list.iter()
            .flat_map(|(p, n)| std::iter::repeat_n(p.to_string(), *n))
            .collect(),
    )
}

#[test]
fn documented_presets_yield_the_right_instances_on_a100_80gb() {
    let m = presets();
    let g = gpu("a100-80gb");
    let cases: [(&str, MigState); 9] = [
        ("all-disabled", MigState::Disabled),
        ("all-enabled", MigState::Enabled(vec![])),
        ("all-1g.10gb", enabled(&[("1g.10gb", 7)])),
        ("all-1g.10gb.me", enabled(&[("1g.10gb+me", 1)])),
        ("all-1g.20gb", enabled(&[("1g.20gb", 4)])),
        ("all-2g.20gb", enabled(&[("2g.20gb", 3)])),
        ("all-3g.40gb", enabled(&[("3g.40gb", 2)])),
        ("all-4g.40gb", enabled(&[("4g.40gb", 1)])),
        ("all-7g.80gb", enabled(&[("7g.80gb", 1)])),
    ];
    for (name, want) in cases {
        for i in 0..3 {
            assert_eq!(m.state(name, i, &g).unwrap(), want, "{name} GPU {i}");
        }
    }
    // all-balanced: created 3g, 2g, 1g, 1g; placed where all four fit (the 3g must go to
    // slice 4 for the two 1g to find slices 2 and 3).
    let MigState::Enabled(b) = m.state("all-balanced", 0, &g).unwrap() else {
        panic!("all-balanced enables MIG")
    };
    assert_eq!(b, ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]);
    let placed: Vec<(String, u32)> = validate_layout(&g, &b)
        .unwrap()
        .into_iter()
        .map(|p| (p.profile, p.start))
        .collect();
    assert_eq!(
        placed,
        [
            ("3g.40gb".to_string(), 4),
            ("2g.20gb".to_string(), 0),
            ("1g.10gb".to_string(), 2),
            ("1g.10gb".to_string(), 3)
        ]
    );
}

#[test]
fn documented_presets_follow_device_filters_on_a100_40gb_and_h100() {
    let m = presets();
    let g40 = gpu("a100-40gb");
    assert_eq!(
        m.state("all-1g.10gb", 0, &g40).unwrap(),
        enabled(&[("1g.10gb", 4)])
    );
    assert_eq!(
        m.state("all-balanced", 0, &g40).unwrap(),
        enabled(&[("3g.20gb", 1), ("2g.10gb", 1), ("1g.5gb", 2)])
    );
    assert_eq!(
        m.state("all-1g.5gb", 1, &g40).unwrap(),
        enabled(&[("1g.5gb", 7)])
    );
    assert_eq!(
        m.state("all-7g.40gb", 0, &g40).unwrap(),
        enabled(&[("7g.40gb", 1)])
    );
    let h = gpu("h100-80gb");
    assert_eq!(
        m.state("all-1g.10gb", 0, &h).unwrap(),
        enabled(&[("1g.10gb", 7)])
    );
    assert_eq!(
        m.state("all-balanced", 0, &h).unwrap(),
        enabled(&[("3g.40gb", 1), ("2g.20gb", 1), ("1g.10gb", 2)])
    );
}

#[test]
fn operator_presets_of_h100_nvl_h200_and_b200() {
    let m = presets();
    // all-balanced follows each GPU's device filter (the operator's default config).
    for (key, want) in [
        ("h100-nvl", [("3g.47gb", 1), ("2g.24gb", 1), ("1g.12gb", 2)]),
        ("h200", [("3g.71gb", 1), ("2g.35gb", 1), ("1g.18gb", 2)]),
        ("b200", [("3g.90gb", 1), ("2g.45gb", 1), ("1g.23gb", 2)]),
        (
            "h100-pcie",
            [("3g.40gb", 1), ("2g.20gb", 1), ("1g.10gb", 2)],
        ),
        (
            "a100-pcie-80gb",
            [("3g.40gb", 1), ("2g.20gb", 1), ("1g.10gb", 2)],
        ),
        (
            "a100-pcie-40gb",
            [("3g.20gb", 1), ("2g.10gb", 1), ("1g.5gb", 2)],
        ),
    ] {
        assert_eq!(
            m.state("all-balanced", 0, &gpu(key)).unwrap(),
            enabled(&want),
            "{key}"
        );
    }
    // Every single-profile preset: on the GPUs that have its profile it yields that many
    // instances, which fill the GPU's placements; on the others it is refused, saying why.
    let cat = Catalogue::builtin();
    let mut accepted = 0;
    for (name, entries) in &m.configs {
        let [e] = entries.as_slice() else { continue };
        let [(profile, count)] = e.mig_devices.as_slice() else {
            continue;
        };
        for g in cat.gpus().iter().filter(|g| g.has_mig()) {
            match g.mig_profile(profile) {
                Ok(p) => {
                    assert_eq!(*count, p.max_count, "{name} on {}", g.key);
                    assert_eq!(
                        m.state(name, 0, g).unwrap(),
                        enabled(&[(profile, *count as usize)]),
                        "{name} on {}",
                        g.key
                    );
                    accepted += 1;
                }
                Err(_) => {
                    let e = m.state(name, 0, g).unwrap_err().to_string();
                    assert!(
                        e.contains("unknown MIG profile"),
                        "{name} on {}: {e}",
                        g.key
                    );
                }
            }
        }
    }
    // all-1g.10gb has two entries and is skipped here, so: 6 presets on each 40 GB A100 (SXM,
    // PCIe), 6 on each 80 GB A100/H100 (SXM and PCIe), 7 on each of H100 NVL, H200, B200.
    assert_eq!(accepted, 2 * 6 + 4 * 6 + 3 * 7);
    // No MIG on L40S: a MIG preset is refused by name.
    let e = m.state("all-1g.10gb", 0, &gpu("l40s"));
    assert!(
        e.is_ok(),
        "no entry matches L40S's PCI id: MIG stays disabled"
    );
    let e = m
        .state("all-1g.18gb", 0, &gpu("l40s"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no MIG on L40S"), "{e}");
}

#[test]
fn presets_for_another_gpu_are_rejected_with_the_reason() {
    let m = presets();
    let g = gpu("a100-80gb");
    let e = m.state("all-3g.20gb", 0, &g).unwrap_err().to_string();
    assert!(
        e.contains("mig-parted-presets.yaml: line 44, column 9"),
        "{e}"
    );
    assert!(e.contains("mig-configs.all-3g.20gb[0].mig-devices"), "{e}");
    assert!(
        e.contains("unknown MIG profile `3g.20gb` for A100-SXM4-80GB"),
        "{e}"
    );
    assert!(e.contains("did you mean `3g.40gb`?"), "{e}");
    let e = m
        .state("all-3g.40gb", 0, &gpu("a100-40gb"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown MIG profile `3g.40gb` for A100-SXM4-40GB"),
        "{e}"
    );
    let e = m.state("all-balanced-2", 0, &g).unwrap_err().to_string();
    assert!(e.contains("did you mean `all-balanced`?"), "{e}");
}

/// A bundle from file texts in memory.
fn bundle(files: &[(&str, &str)]) -> Result<(Bundle, Vec<String>), InputError> {
    let owned: Vec<(String, String)> = files
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut notes = Vec::new();
    let b = bundle_from_files(Path::new("k8s"), &owned, &mut notes)?;
    Ok((b, notes))
}

fn deployment(model: &str, replicas: u32, resource: &str, node: Option<&str>) -> String {
    let sel = node.map_or(String::new(), |n| {
        format!("      nodeSelector:\n        kubernetes.io/hostname: {n}\n")
    });
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {model}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {model}}}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: {model}\n    spec:\n{sel}      containers:\n      - name: server\n        resources:\n          limits:\n            {resource}: 1\n"
    )
}

const TS_PLUGIN: &str = "version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n";

fn cluster_yaml(nodes: &str, extra: &str) -> String {
    format!(
        "version: v1\nmigParted: mig-parted-config.yaml\ndevicePlugin: device-plugin-config.yaml\nworkloads: workloads.yaml\n{extra}nodes:\n{nodes}"
    )
}

#[test]
fn time_sliced_replicas_are_handed_out_distributed_and_counted() {
    let nodes = "- name: node0\n  gpu: a100-80gb\n  count: 2\n";
    let c = cluster_yaml(nodes, "");
    let w = format!(
        "{}{}",
        deployment("asr", 3, "nvidia.com/gpu", None),
        deployment("tts", 5, "nvidia.com/gpu", Some("node0"))
    );
    let (b, notes) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", TS_PLUGIN),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    assert!(notes.is_empty());
    let p = place(&b, &Catalogue::builtin()).unwrap();
    assert_eq!(p.gpus.len(), 2);
    assert!(matches!(
        p.gpus[0].sharing,
        SharingSpec::TimeSlicing { replicas: 4, .. }
    ));
    let gpus_of =
        |m: usize| -> Vec<&str> { p.deployments[m].1.iter().map(|r| r.gpu.as_str()).collect() };
    // Fewest references handed out first, lowest index on ties.
    assert_eq!(gpus_of(0), ["gpu0", "gpu1", "gpu0"]);
    assert_eq!(gpus_of(1), ["gpu1", "gpu0", "gpu1", "gpu0", "gpu1"]);
    // A ninth pod finds no free reference: the error names the resource and what is advertised.
    let w9 = format!(
        "{}{}",
        deployment("asr", 4, "nvidia.com/gpu", None),
        deployment("tts", 5, "nvidia.com/gpu", None)
    );
    let (b, _) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", TS_PLUGIN),
        ("workloads.yaml", &w9),
    ])
    .unwrap();
    let e = place(&b, &Catalogue::builtin()).unwrap_err().to_string();
    assert!(e.contains("workloads.yaml: line"), "{e}");
    assert!(
        e.contains("pod 5 of 5 (tts) finds no free nvidia.com/gpu"),
        "{e}"
    );
    assert!(e.contains("node0: nvidia.com/gpu: 8"), "{e}");
}

#[test]
fn renamed_shared_resources_and_requests_greater_than_one() {
    let c = cluster_yaml("- name: node0\n  gpu: A100-SXM4-80GB\n  count: 1\n", "");
    let renamed = TS_PLUGIN.replace(
        "  timeSlicing:\n",
        "  timeSlicing:\n    renameByDefault: true\n",
    );
    let files = |plugin: &str, w: &str| -> Result<Placed, InputError> {
        let (b, _) = bundle(&[
            ("cluster.yaml", &c),
            ("mig-parted-config.yaml", PRESETS),
            ("device-plugin-config.yaml", plugin),
            ("workloads.yaml", w),
        ])?;
        place(&b, &Catalogue::builtin())
    };
    let e = files(&renamed, &deployment("asr", 1, "nvidia.com/gpu", None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("asks for nvidia.com/gpu, which no matching node advertises (node0: nvidia.com/gpu.shared: 4)"), "{e}");
    let p = files(
        &renamed,
        &deployment("asr", 2, "nvidia.com/gpu.shared", None),
    )
    .unwrap();
    assert_eq!(p.deployments[0].1.len(), 2);
    let two = deployment("asr", 1, "nvidia.com/gpu.shared", None).replace(": 1\n", ": 2\n");
    let e = files(&renamed, &two).unwrap_err().to_string();
    assert!(
        e.contains("failRequestsGreaterThanOne")
            && e.contains("maximum request size for shared resources is 1"),
        "{e}"
    );
}

#[test]
fn mig_devices_under_the_mixed_strategy() {
    let nodes = "- name: node0\n  gpu: a100-80gb\n  count: 2\n  labels:\n    nvidia.com/mig.config: all-balanced\n";
    let plugin = "version: v1\nflags:\n  migStrategy: mixed\n";
    let w = format!(
        "{}{}",
        deployment("asr", 3, "nvidia.com/mig-1g.10gb", None),
        deployment("tts", 2, "nvidia.com/mig-3g.40gb", None)
    );
    let c = cluster_yaml(nodes, "");
    let (b, _) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", plugin),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    let p = place(&b, &Catalogue::builtin()).unwrap();
    let placed: Vec<(String, Option<usize>)> = p.deployments[0]
        .1
        .iter()
        .map(|r| (r.gpu.clone(), r.instance))
        .collect();
    assert_eq!(
        placed,
        [
            ("gpu0".into(), Some(2)),
            ("gpu0".into(), Some(3)),
            ("gpu1".into(), Some(2))
        ]
    );
    assert_eq!(
        p.deployments[1].1[1],
        ReplicaPlacement {
            gpu: "gpu1".into(),
            instance: Some(0)
        }
    );
    // The strategy must expose MIG devices.
    let (b, _) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", "version: v1\n"),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    let e = place(&b, &Catalogue::builtin()).unwrap_err().to_string();
    assert!(e.contains("MIG strategy is none"), "{e}");
    // all-enabled leaves nothing to run on.
    let c2 = cluster_yaml(&nodes.replace("all-balanced", "all-enabled"), "");
    let (b, _) = bundle(&[
        ("cluster.yaml", &c2),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", plugin),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    let e = place(&b, &Catalogue::builtin()).unwrap_err().to_string();
    assert!(e.contains("MIG enabled with no instance"), "{e}");
}

#[test]
fn single_strategy_advertises_mig_devices_as_gpus() {
    let nodes = "- name: node0\n  gpu: a100-80gb\n  count: 1\n  labels:\n    nvidia.com/mig.config: all-3g.40gb\n";
    let c = cluster_yaml(nodes, "migStrategy: single\n");
    let w = deployment("asr", 2, "nvidia.com/gpu", None);
    let (b, _) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", "version: v1\n"),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    let p = place(&b, &Catalogue::builtin()).unwrap();
    assert_eq!(p.deployments[0].1[1].instance, Some(1));
    let c = cluster_yaml(
        &nodes.replace("all-3g.40gb", "all-balanced"),
        "migStrategy: single\n",
    );
    let (b, _) = bundle(&[
        ("cluster.yaml", &c),
        ("mig-parted-config.yaml", PRESETS),
        ("device-plugin-config.yaml", "version: v1\n"),
        ("workloads.yaml", &w),
    ])
    .unwrap();
    let e = place(&b, &Catalogue::builtin()).unwrap_err().to_string();
    assert!(e.contains("single needs one MIG profile"), "{e}");
}

/// The seed study's clusters, on separate nodes where the device plugin needs it, are
/// canonical: their export imports back to exactly them.
#[test]
fn seed_clusters_round_trip_exactly() {
    let cat = Catalogue::builtin();
    for (stem, nodes) in [
        ("mig-heavy", ["node0", "node0"]),
        ("time-slicing-heavy", ["shared", "llm"]),
        ("mps-heavy", ["shared", "llm"]),
    ] {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("experiments/seed/{stem}.toml"));
        let mut raw = crate::experiment::Experiment::load(&path, &cat)
            .unwrap()
            .raw;
        for (g, n) in raw
            .gpus
            .iter_mut()
            .zip(nodes.iter().chain(["node0"].iter().cycle()))
        {
            g.node = n.to_string();
        }
        let files = export_raw(&raw, &path, &cat).unwrap();
        let mut notes = Vec::new();
        let b = bundle_from_files(Path::new("out"), &files, &mut notes).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let p = place(&b, &cat).unwrap();
        assert_eq!(p.gpus, raw.gpus, "{stem}");
        let want: Vec<(String, Vec<ReplicaPlacement>)> = raw
            .deployments
            .iter()
            .map(|d| (d.model.clone(), d.replicas.clone()))
            .collect();
        assert_eq!(p.deployments, want, "{stem}");
    }
}

#[test]
fn clusters_the_files_cannot_express_are_errors() {
    let cat = Catalogue::builtin();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/seed/time-slicing-heavy.toml");
    let raw = crate::experiment::Experiment::load(&path, &cat)
        .unwrap()
        .raw;
    // A time-sliced and a dedicated GPU in one experiment node: two Kubernetes nodes, the
    // second keeping the experiment's node as `simNode`.
    let files = export_raw(&raw, &path, &cat).unwrap();
    let cluster = &files.iter().find(|(n, _)| n == "cluster.yaml").unwrap().1;
    assert!(cluster.contains("name: node0-2"), "{cluster}");
    assert!(cluster.contains("simNode: node0"), "{cluster}");
    let mut one = raw.clone();
    one.gpus[0].sharing = SharingSpec::TimeSlicing {
        replicas: 1,
        time_slice_us: 1024.0,
        switch_cost_us: 230.0,
    };
    one.gpus[1].node = "b".into();
    let e = export_raw(&one, &path, &cat).unwrap_err().to_string();
    assert!(e.contains("replicas >= 2"), "{e}");
    let mut mps = raw;
    mps.gpus[1].node = "b".into();
    mps.gpus[0].sharing = SharingSpec::Mps {
        replicas: 2,
        active_thread_pct: vec![70.0, 30.0],
        memory_limit: MpsMemoryLimit::Equal,
    };
    let e = export_raw(&mps, &path, &cat).unwrap_err().to_string();
    assert!(e.contains("100 / replicas"), "{e}");
}

// ---- property: the round trip over generated clusters ----

/// A generated cluster: per node a GPU model, per GPU its sharing; slots given to models.
#[derive(Clone, Debug)]
struct Gen {
    gpus: Vec<GpuEntry>,
    deployments: Vec<Deployment>,
}

fn gen_cluster() -> impl Strategy<Value = Gen> {
    let node = (
        0usize..7,
        1usize..4,
        0u32..3,
        2u32..5,
        proptest::collection::vec((any::<bool>(), any::<u16>(), any::<u16>()), 3),
    );
    (
        proptest::collection::vec(node, 1..4),
        proptest::collection::vec(any::<u32>(), 40),
        1usize..4,
    )
        .prop_map(|(nodes, picks, models)| {
            let cat = Catalogue::builtin();
            let keys = [
                "a100-40gb",
                "a100-80gb",
                "h100-80gb",
                "h100-nvl",
                "h200",
                "b200",
                "l40s",
            ];
            let mut gpus = Vec::new();
            // Slots: (gpu id, instance, capacity).
            let mut slots: Vec<(String, Option<usize>, u32)> = Vec::new();
            for (ni, (k, count, kind, replicas, per_gpu)) in nodes.iter().enumerate() {
                let spec = cat.gpu(keys[*k]).unwrap();
                let layouts = maximal_layouts(spec, true);
                // kind: 0 dedicated, 1 time-slicing, 2 MPS (whole GPUs); MIG GPUs only beside 0 or 1.
                for &(mig, a, b) in per_gpu.iter().take(*count) {
                    let id = format!("g{}", gpus.len());
                    let sharing = if mig && *kind != 2 && spec.has_mig() {
                        let l = &layouts[a as usize % layouts.len()];
                        let mut inst: Vec<String> = l
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| (b >> i) & 1 == 1 || *i == 0)
                            .map(|(_, n)| n.clone())
                            .collect();
                        inst.reverse();
                        for i in 0..inst.len() {
                            slots.push((id.clone(), Some(i), 1));
                        }
                        SharingSpec::Mig { instances: inst }
                    } else {
                        match kind {
                            0 => {
                                slots.push((id.clone(), None, 1));
                                SharingSpec::Dedicated
                            }
                            1 => {
                                slots.push((id.clone(), None, *replicas));
                                SharingSpec::TimeSlicing {
                                    replicas: *replicas,
                                    time_slice_us: if ni % 2 == 0 { 1024.0 } else { 2048.0 },
                                    switch_cost_us: 230.0,
                                }
                            }
                            _ => {
                                slots.push((id.clone(), None, *replicas));
                                SharingSpec::Mps {
                                    replicas: *replicas,
                                    active_thread_pct: vec![],
                                    memory_limit: MpsMemoryLimit::Equal,
                                }
                            }
                        }
                    };
                    gpus.push(GpuEntry {
                        id,
                        gpu_type: keys[*k].into(),
                        node: format!("n{ni}"),
                        sharing,
                    });
                }
            }
            // Shuffle GPUs (ids stay) so the input is not in canonical order.
            let n = gpus.len();
            for i in (1..n).rev() {
                gpus.swap(i, picks[i % picks.len()] as usize % (i + 1));
            }
            // Hand out slots to models.
            let names = ["asr", "llm", "tts"];
            let mut deployments: Vec<Deployment> = names[..models]
                .iter()
                .map(|m| Deployment {
                    model: m.to_string(),
                    replicas: vec![],
                    routing: Default::default(),
                    batching: None,
                    engine: None,
                })
                .collect();
            for (si, (gpu, inst, cap)) in slots.iter().enumerate() {
                for c in 0..*cap {
                    let pick = picks[(si * 7 + c as usize) % picks.len()] as usize;
                    let m = pick % (models + 1);
                    if m < models {
                        deployments[m].replicas.push(ReplicaPlacement {
                            gpu: gpu.clone(),
                            instance: *inst,
                        });
                    }
                }
            }
            for (m, d) in deployments.iter_mut().enumerate() {
                if d.replicas.is_empty() {
                    let (gpu, inst, _) = &slots[m % slots.len()];
                    d.replicas.push(ReplicaPlacement {
                        gpu: gpu.clone(),
                        instance: *inst,
                    });
                }
            }
            Gen { gpus, deployments }
        })
}

/// Over-full slots (the fallback above can over-fill one) are not valid clusters.
fn valid(g: &Gen) -> bool {
    let mut used: BTreeMap<(String, Option<usize>), u32> = BTreeMap::new();
    for d in &g.deployments {
        for r in &d.replicas {
            *used.entry((r.gpu.clone(), r.instance)).or_default() += 1;
        }
    }
    used.iter().all(|((gpu, _), n)| {
        let e = g.gpus.iter().find(|x| &x.id == gpu).unwrap();
        match &e.sharing {
            SharingSpec::TimeSlicing { replicas, .. } | SharingSpec::Mps { replicas, .. } => {
                *n <= *replicas
            }
            _ => *n <= 1,
        }
    })
}

fn round_trip(gpus: &[GpuEntry], deployments: &[Deployment]) -> Placed {
    let cat = Catalogue::builtin();
    let origin = Path::new("gen.toml");
    let layout = layout_of(gpus, deployments, origin, &cat).unwrap();
    let files = files_of(&bundle_of(&layout, &cat).unwrap());
    let mut notes = Vec::new();
    let b = bundle_from_files(Path::new("x"), &files, &mut notes).unwrap();
    assert!(notes.is_empty());
    place(&b, &cat).unwrap()
}

/// Per node its GPUs, per model its pods.
type Signature = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, Vec<(String, String)>>,
);

/// What the files say about a cluster: per node its GPUs' models and sharing (instances as a
/// multiset), and per model the multiset of (node, resource) of its replicas.
fn signature(gpus: &[GpuEntry], deployments: &[Deployment]) -> Signature {
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in gpus {
        let s = match &g.sharing {
            SharingSpec::Mig { instances } => {
                let mut i = instances.clone();
                i.sort();
                format!("mig {i:?}")
            }
            other => format!("{other:?}"),
        };
        nodes
            .entry(g.node.clone())
            .or_default()
            .push(format!("{} {s}", g.gpu_type));
    }
    nodes.values_mut().for_each(|v| v.sort());
    let mut pods: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for d in deployments {
        for r in &d.replicas {
            let g = gpus.iter().find(|g| g.id == r.gpu).unwrap();
            let res = match (&g.sharing, r.instance) {
                (SharingSpec::Mig { instances }, Some(i)) => instances[i].clone(),
                _ => "gpu".into(),
            };
            pods.entry(d.model.clone())
                .or_default()
                .push((g.node.clone(), res));
        }
    }
    pods.values_mut().for_each(|v| v.sort());
    (nodes, pods)
}

fn as_deployments(p: &Placed) -> Vec<Deployment> {
    p.deployments
        .iter()
        .map(|(m, r)| Deployment {
            model: m.clone(),
            replicas: r.clone(),
            routing: Default::default(),
            batching: None,
            engine: None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// import(export(x)) keeps everything the files say about x, and on the clusters imports
    /// produce (canonical clusters) it is exactly the identity.
    #[test]
    fn import_of_export_is_the_identity_on_canonical_clusters(g in gen_cluster()) {
        prop_assume!(valid(&g));
        let y = round_trip(&g.gpus, &g.deployments);
        let yd = as_deployments(&y);
        prop_assert_eq!(signature(&y.gpus, &yd), signature(&g.gpus, &g.deployments));
        let z = round_trip(&y.gpus, &yd);
        // Models come back in the order their pods appear in the files, which the export
        // chooses for the allocation; an import orders them as its base experiment does.
        let by_model = |p: &Placed| {
            let mut d = p.deployments.clone();
            d.sort_by(|a, b| a.0.cmp(&b.0));
            d
        };
        prop_assert_eq!(&z.gpus, &y.gpus);
        prop_assert_eq!(by_model(&z), by_model(&y));
        // The GPUs keep their ids (cluster.yaml's gpuIds), grouped by node in order of first
        // appearance.
        let ids = |gs: &[GpuEntry]| {
            let mut v: Vec<String> = gs.iter().map(|g| g.id.clone()).collect();
            v.sort();
            v
        };
        prop_assert_eq!(ids(&y.gpus), ids(&g.gpus));
    }
}

#[test]
fn written_files_name_how_to_apply_them() {
    let cat = Catalogue::builtin();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/seed/mig-heavy.toml");
    let raw = crate::experiment::Experiment::load(&path, &cat)
        .unwrap()
        .raw;
    let files = export_raw(&raw, &path, &cat).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            export::CLUSTER_FILE,
            export::MIG_FILE,
            export::PLUGIN_FILE,
            export::WORKLOADS_FILE
        ]
    );
    let text = |n: &str| files.iter().find(|f| f.0 == n).unwrap().1.clone();
    assert!(text(export::CLUSTER_FILE).contains("kubectl label node node0 --overwrite nvidia.com/device-plugin.config=dedicated nvidia.com/mig.config=mig-node0"), "{}", text(export::CLUSTER_FILE));
    let mig = text(export::MIG_FILE);
    assert!(
        mig.contains("kind: ConfigMap") && mig.contains("3g.40gb: 2"),
        "{mig}"
    );
    assert!(text(export::WORKLOADS_FILE).contains("nvidia.com/mig-3g.40gb: 1"));
}
