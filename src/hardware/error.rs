//! Errors of the hardware module, and the closest-name suggestion they carry.

use thiserror::Error;

/// Something asked of the hardware catalogue that it cannot give: a name it does not know, a MIG
/// layout the placement rules forbid, or catalogue data that fails its checks.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HardwareError {
    /// A GPU name (key, product name, NVML name, node label value or PCI id) that no catalogue
    /// entry has.
    #[error(
        "unknown GPU `{name}`: the catalogue knows {known} (by key, product name, NVML name, \
         nvidia.com/gpu.product label or PCI device id){}",
        did_you_mean(.suggestion)
    )]
    UnknownGpu {
        /// The name that was asked for.
        name: String,
        /// The known GPU keys, comma-separated.
        known: String,
        /// The known name closest to `name` by edit distance (any of a GPU's names), with the
        /// key it belongs to when it is not the key itself.
        suggestion: Option<String>,
    },
    /// A MIG profile or layout asked of a GPU that has no MIG.
    #[error(
        "no MIG on {gpu}: it runs whole, time-sliced or under MPS (sharing mode `dedicated`, \
         `time-slicing` or `mps`)"
    )]
    NoMig {
        /// Product name of the GPU.
        gpu: String,
    },
    /// A MIG profile name that the GPU does not offer.
    #[error(
        "unknown MIG profile `{name}` for {gpu}: allowed profiles are {allowed}{}",
        did_you_mean(.suggestion)
    )]
    UnknownProfile {
        /// Product name of the GPU.
        gpu: String,
        /// The profile name that was asked for.
        name: String,
        /// The GPU's profile names, comma-separated.
        allowed: String,
        /// The allowed profile closest to `name` by edit distance.
        suggestion: Option<String>,
    },
    /// A set of MIG instances that cannot coexist on one GPU.
    #[error("invalid MIG layout `{layout}`: {reason}")]
    InvalidLayout {
        /// The layout as written by [`crate::hardware::mig::format_layout`].
        layout: String,
        /// Why it is invalid, in domain words (slices, placements, counts).
        reason: String,
    },
    /// Catalogue data that does not parse or fails a consistency check.
    #[error("bad GPU catalogue data in {origin}: {reason}")]
    BadCatalogue {
        /// Where the data came from (a file path, or "built-in").
        origin: String,
        /// Every problem found, each naming its key path and the allowed values.
        reason: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// The candidate closest to `name` by case-insensitive Levenshtein distance. Ties go to the
/// longest common prefix (`3g.20gb` suggests `3g.40gb`, not `1g.20gb`), then to the first.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let name = name.to_lowercase();
    candidates
        .into_iter()
        .min_by_key(|c| {
            let c = c.to_lowercase();
            let prefix = name
                .chars()
                .zip(c.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (edit_distance(&name, &c), std::cmp::Reverse(prefix))
        })
        .map(str::to_string)
}

/// Levenshtein distance over chars, one row of the DP table at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("3g.40gb", "3g.40gb"), 0);
    }

    #[test]
    fn closest_prefers_smallest_distance() {
        let names = ["a100-40gb", "a100-80gb", "h100-80gb"];
        assert_eq!(closest("A100-80G", names).as_deref(), Some("a100-80gb"));
        assert_eq!(closest("h100", names).as_deref(), Some("h100-80gb"));
        assert_eq!(closest("x", []), None);
        let profiles = ["1g.20gb", "2g.20gb", "3g.40gb"];
        assert_eq!(closest("3g.20gb", profiles).as_deref(), Some("3g.40gb"));
    }
}
