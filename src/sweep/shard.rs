//! Shards: a deterministic share of a sweep's runs for one machine. Run `r` belongs to shard
//! `r mod N` (0-based), so every shard gets a similar mix of the grid.
//!
//! Written `--shard I/N` with I 1-based (1..=N); picked up from a Kubernetes Indexed Job
//! (`JOB_COMPLETION_INDEX`, 0-based, with the count from `--shards N` or `GPUSHARE_SHARDS`)
//! or a Slurm job array (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, count
//! `SLURM_ARRAY_TASK_COUNT`; the array's indices must be consecutive).

use std::fmt;

/// One shard, 0-based `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards (>= 1).
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// Most shards a sweep may be split into.
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    /// Whether run `r` is this shard's.
    pub fn owns(&self, r: usize) -> bool {
        r % self.count == self.index
    }

    /// Parse `I/N`, I 1-based.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let err = || {
            format!(
                "--shard {text}: expected I/N with 1 <= I <= N <= {MAX_SHARDS} (I is 1-based), e.g. 2/4"
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(err)?;
        let i: usize = i.trim().parse().map_err(|_| err())?;
        let n: usize = n.trim().parse().map_err(|_| err())?;
        if i == 0 || n == 0 || i > n || n > MAX_SHARDS {
            return Err(err());
        }
        Ok(Shard {
            index: i - 1,
            count: n,
        })
    }

    /// The shard to run: `--shard` if given, else from the environment (`env` looks a
    /// variable up). Returns the shard and where it came from.
    pub fn select(
        flag: Option<&str>,
        shards_flag: Option<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, String> {
        if let Some(f) = flag {
            if shards_flag.is_some() {
                return Err("give either --shard I/N or --shards N, not both".into());
            }
            return Shard::parse(f).map(|s| Some((s, "--shard")));
        }
        let num = |name: &str| -> Result<Option<usize>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v}: expected a whole number")),
            }
        };
        let check = |index: usize, count: usize, what: &str| -> Result<Shard, String> {
            if count == 0 || count > MAX_SHARDS || index >= count {
                return Err(format!(
                    "{what}: shard index {index} (0-based) is not below the shard count {count}"
                ));
            }
            Ok(Shard { index, count })
        };
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = match shards_flag {
                Some(n) => n,
                None => num("GPUSHARE_SHARDS")?.ok_or_else(|| {
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give the number of shards, the Job's completions, with --shards N or GPUSHARE_SHARDS".to_string()
                })?,
            };
            return check(index, count, "JOB_COMPLETION_INDEX")
                .map(|s| Some((s, "JOB_COMPLETION_INDEX")));
        }
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = match (shards_flag, num("SLURM_ARRAY_TASK_COUNT")?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT: give --shards N".into());
                }
            };
            let index = id.checked_sub(min).ok_or_else(|| {
                format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
            })?;
            return check(index, count, "SLURM_ARRAY_TASK_ID")
                .map(|s| Some((s, "SLURM_ARRAY_TASK_ID")));
        }
        if let Some(n) = shards_flag {
            return Err(format!(
                "--shards {n} needs a shard index: --shard I/{n}, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID"
            ));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flag_is_one_based_and_checked() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(Shard::parse("4/4"), Ok(Shard { index: 3, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_of_kubernetes_and_slurm() {
        let k8s = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(
            Shard::select(None, Some(4), &env(&k8s)).unwrap(),
            Some((Shard { index: 2, count: 4 }, "JOB_COMPLETION_INDEX"))
        );
        assert!(Shard::select(None, None, &env(&k8s)).is_err());
        let k8s_env = [("JOB_COMPLETION_INDEX", "3"), ("GPUSHARE_SHARDS", "4")];
        assert_eq!(
            Shard::select(None, None, &env(&k8s_env))
                .unwrap()
                .unwrap()
                .0,
            Shard { index: 3, count: 4 }
        );
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ];
        assert_eq!(
            Shard::select(None, None, &env(&slurm)).unwrap().unwrap().0,
            Shard { index: 4, count: 8 }
        );
        // The flag wins over the environment.
        assert_eq!(
            Shard::select(Some("1/2"), None, &env(&slurm))
                .unwrap()
                .unwrap()
                .0,
            Shard { index: 0, count: 2 }
        );
        assert_eq!(Shard::select(None, None, &env(&[])).unwrap(), None);
        assert!(Shard::select(None, Some(3), &env(&[])).is_err());
        let over = [("JOB_COMPLETION_INDEX", "4"), ("GPUSHARE_SHARDS", "4")];
        assert!(Shard::select(None, None, &env(&over)).is_err());
    }

    #[test]
    fn every_run_has_exactly_one_shard() {
        for n in 1..6 {
            for r in 0..50 {
                let owners = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.owns(r))
                    .count();
                assert_eq!(owners, 1);
            }
        }
    }
}
