//! Consistency checks on catalogue data, reporting every problem with its key path at once.

use std::collections::HashSet;

use super::catalogue::{GpuSpec, MigProfile};

/// Widest memory-slice axis the layout code handles (slices are bits of a `u64`).
pub(crate) const MAX_MEMORY_SLICES: u32 = 64;

/// Every problem found in `gpus`, each as "`path`: what is wrong (what is allowed)".
pub(crate) fn catalogue_problems(gpus: &[GpuSpec]) -> Vec<String> {
    let mut out = Vec::new();
    if gpus.is_empty() {
        out.push("the catalogue has no [[gpu]] entries".to_string());
    }
    let mut names = HashSet::new();
    for (i, g) in gpus.iter().enumerate() {
        let at = format!("gpu[{i}] ({})", g.key);
        // Keys, product names, NVML names, their label forms and PCI ids share one namespace
        // because lookup accepts any of them.
        for n in g.aliases() {
            if !names.insert(n.to_lowercase()) {
                out.push(format!(
                    "{at}: name `{n}` is used by another GPU (keys, names, NVML names and PCI \
                     device ids must be unique)"
                ));
            }
        }
        gpu_problems(g, &at, &mut out);
        let mut seen = HashSet::new();
        for (j, p) in g.mig_profiles.iter().enumerate() {
            let at = format!("{at}.mig_profile[{j}] ({})", p.name);
            if !seen.insert(p.name.to_lowercase()) {
                out.push(format!("{at}.name: duplicate profile name"));
            }
            profile_problems(g, p, &at, &mut out);
        }
    }
    out
}

fn gpu_problems(g: &GpuSpec, at: &str, out: &mut Vec<String>) {
    let mut need = |ok: bool, what: String| {
        if !ok {
            out.push(format!("{at}.{what}"));
        }
    };
    need(
        !g.key.is_empty() && g.key == g.key.to_lowercase(),
        format!("key: `{}` must be non-empty lowercase", g.key),
    );
    need(!g.name.is_empty(), "name: must be non-empty".to_string());
    let id = &g.pci_device_id;
    let hex = id
        .strip_prefix("0x")
        .is_some_and(|h| h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit()));
    need(
        hex,
        format!("pci_device_id: `{id}` must be 0x followed by 8 hex digits, e.g. 0x20B210DE"),
    );
    need(g.sms > 0, "sms: must be at least 1".to_string());
    need(
        g.memory_bytes > 0,
        "memory_bytes: must be at least 1".to_string(),
    );
    let p = &g.peak_flops_per_s;
    let mut positives = vec![
        ("mem_bw_bytes_per_s", g.mem_bw_bytes_per_s),
        ("peak_flops_per_s.fp32", p.fp32),
        ("peak_flops_per_s.tf32", p.tf32),
        ("peak_flops_per_s.fp16", p.fp16),
        ("peak_flops_per_s.int8", p.int8),
    ];
    if let Some(v) = p.fp8 {
        positives.push(("peak_flops_per_s.fp8", v));
    }
    for (field, v) in positives {
        need(
            v.is_finite() && v > 0.0,
            format!("{field}: {v} must be a finite positive number"),
        );
    }
    for n in &g.nvml_names {
        need(
            n.trim() == n && !n.is_empty(),
            format!("nvml_names: `{n}` must be non-empty without surrounding spaces"),
        );
    }
    if g.mig_profiles.is_empty() {
        // No MIG: no slices either.
        need(
            g.memory_slices == 0 && g.sm_slices == 0,
            format!(
                "memory_slices/sm_slices: {}/{} must be absent (0) on a GPU without \
                 [[gpu.mig_profile]] entries",
                g.memory_slices, g.sm_slices
            ),
        );
        return;
    }
    need(
        (1..=MAX_MEMORY_SLICES).contains(&g.memory_slices),
        format!(
            "memory_slices: {} must be in 1..={MAX_MEMORY_SLICES}",
            g.memory_slices
        ),
    );
    need(g.sm_slices > 0, "sm_slices: must be at least 1".to_string());
}

fn profile_problems(g: &GpuSpec, p: &MigProfile, at: &str, out: &mut Vec<String>) {
    let mut need = |ok: bool, what: String| {
        if !ok {
            out.push(format!("{at}.{what}"));
        }
    };
    need(!p.name.is_empty(), "name: must be non-empty".to_string());
    need(
        (1..=g.sms).contains(&p.sms),
        format!("sms: {} must be in 1..={} (the GPU's SMs)", p.sms, g.sms),
    );
    need(
        (1..=g.sm_slices).contains(&p.sm_slices),
        format!(
            "sm_slices: {} must be in 1..={} (the GPU's SM slices)",
            p.sm_slices, g.sm_slices
        ),
    );
    need(
        (1..=g.memory_slices).contains(&p.memory_slices),
        format!(
            "memory_slices: {} must be in 1..={} (the GPU's memory slices)",
            p.memory_slices, g.memory_slices
        ),
    );
    need(
        (1..=g.memory_bytes).contains(&p.memory_bytes),
        format!(
            "memory_bytes: {} must be in 1..={} (the GPU's memory)",
            p.memory_bytes, g.memory_bytes
        ),
    );
    // Bandwidth follows memory_slices and overlap follows placement_size: they must agree.
    need(
        p.placement_size == p.memory_slices,
        format!(
            "placement_size: {} must equal memory_slices ({})",
            p.placement_size, p.memory_slices
        ),
    );
    let starts = &p.placement_starts;
    need(
        !starts.is_empty(),
        "placement_starts: must list at least one start".to_string(),
    );
    need(
        starts.windows(2).all(|w| w[0] < w[1]),
        format!("placement_starts: {starts:?} must be strictly increasing"),
    );
    if let Some(&s) = starts
        .iter()
        .find(|&&s| s.saturating_add(p.placement_size) > g.memory_slices)
    {
        need(
            false,
            format!(
                "placement_starts: start {s} + size {} passes the GPU's {} memory slices",
                p.placement_size, g.memory_slices
            ),
        );
    }
    need(
        (1..=starts.len()).contains(&(p.max_count as usize)),
        format!(
            "max_count: {} must be in 1..={} (the number of placement starts)",
            p.max_count,
            starts.len()
        ),
    );
}

#[cfg(test)]
mod tests {
    use crate::hardware::Catalogue;

    const TEXT: &str = include_str!("../../hardware/gpus.toml");

    fn err(text: &str) -> String {
        Catalogue::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = TEXT
            .replacen("sms = 108", "sms = 0", 1)
            .replacen("mem_bw_bytes_per_s = 1555e9", "mem_bw_bytes_per_s = nan", 1)
            .replacen("placement_starts = [0, 4]", "placement_starts = [4, 0]", 1);
        let e = err(&text);
        assert!(
            e.contains("gpu[0] (a100-40gb).sms: must be at least 1"),
            "{e}"
        );
        assert!(
            e.contains("gpu[0] (a100-40gb).mem_bw_bytes_per_s: NaN must be a finite positive"),
            "{e}"
        );
        assert!(
            e.contains(
                "mig_profile[4] (3g.20gb).placement_starts: [4, 0] must be strictly increasing"
            ),
            "{e}"
        );
    }

    #[test]
    fn geometry_problems() {
        let e = err(&TEXT.replacen(
            "placement_starts = [0] # [S2] lgipp {0}:8",
            "placement_starts = [1]",
            1,
        ));
        assert!(
            e.contains("start 1 + size 8 passes the GPU's 8 memory slices"),
            "{e}"
        );
        let e = err(&TEXT.replacen("max_count = 2 # [S3]", "max_count = 3", 1));
        assert!(e.contains("max_count: 3 must be in 1..=2"), "{e}");
        let e = err(&TEXT.replacen("key = \"a100-80gb\"", "key = \"a100-40gb\"", 1));
        assert!(e.contains("name `a100-40gb` is used by another GPU"), "{e}");
        let e = err(&TEXT.replacen("0x20B010DE", "20B0", 1));
        assert!(e.contains("pci_device_id: `20B0` must be 0x"), "{e}");
    }
}
