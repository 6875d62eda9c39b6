//! Studies: several experiments run side by side (the seed study is one), optionally with GPU
//! prices so that throughput can be compared per dollar as well as per GPU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config;
use crate::error::InputError;
use crate::experiment::Experiment;
use crate::hardware::Catalogue;
use crate::report::{RunSummary, run_experiment};

/// A study file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    /// Study name.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Experiment files, relative to the study file, run in this order.
    pub experiments: Vec<String>,
    /// GPU prices, for requests per dollar beside requests per second per GPU.
    #[serde(default)]
    pub prices: Option<PricesFile>,
}

/// `[prices]` of a study file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    /// Where the prices come from, or that they are an assumption (shown with the results).
    pub source: String,
    /// US dollars per GPU-hour, by GPU (any name the catalogue resolves: key, NVML name...).
    pub usd_per_gpu_hour: BTreeMap<String, f64>,
}

/// What each run of a study costs, per GPU-hour.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunPrices {
    /// The study's `prices.source`.
    pub source: String,
    /// Run name -> mean price of its GPUs, US dollars per GPU-hour.
    pub usd_per_gpu_hour: BTreeMap<String, f64>,
}

impl RunPrices {
    /// Requests per dollar of a run that serves `throughput_per_gpu_rps` per GPU:
    /// `req/s per GPU x 3600 / (dollars per GPU-hour)`.
    pub fn requests_per_dollar(&self, run: &str, throughput_per_gpu_rps: f64) -> Option<f64> {
        self.usd_per_gpu_hour
            .get(run)
            .map(|usd| throughput_per_gpu_rps * 3600.0 / usd)
    }
}

/// A loaded study: every experiment validated before any is run.
#[derive(Debug)]
pub struct Study {
    /// The study file.
    pub file: StudyFile,
    /// Experiments, in order.
    pub experiments: Vec<Experiment>,
    /// Each run's price per GPU-hour, when the study file gives prices.
    pub prices: Option<RunPrices>,
}

/// Prices of every run: each GPU priced (names resolved through the catalogue), every price a
/// positive number, every GPU of every run priced.
fn run_prices(
    path: &Path,
    p: &PricesFile,
    experiments: &[Experiment],
    catalogue: &Catalogue,
) -> Result<RunPrices, InputError> {
    let mut by_key: BTreeMap<String, f64> = BTreeMap::new();
    for (name, &usd) in &p.usd_per_gpu_hour {
        let field = format!("prices.usd_per_gpu_hour.\"{name}\"");
        let spec = catalogue
            .gpu(name)
            .map_err(|e| InputError::hardware(path, &field, e))?;
        if !(usd.is_finite() && usd > 0.0) {
            return Err(InputError::invalid(
                path,
                &field,
                usd,
                "a positive number of US dollars per GPU-hour",
            ));
        }
        if by_key.insert(spec.key.clone(), usd).is_some() {
            return Err(InputError::invalid(
                path,
                &field,
                usd,
                &format!("one price per GPU (`{}` is priced twice)", spec.key),
            ));
        }
    }
    let mut usd_per_gpu_hour = BTreeMap::new();
    for e in experiments {
        let mut sum = 0.0;
        for g in &e.gpus {
            sum += by_key.get(&g.key).copied().ok_or_else(|| {
                InputError::invalid(
                    path,
                    "prices.usd_per_gpu_hour",
                    format!("(no price for `{}`)", g.key),
                    &format!(
                        "a price for every GPU the experiments use (`{}` runs on `{}`)",
                        e.raw.name, g.key
                    ),
                )
            })?;
        }
        usd_per_gpu_hour.insert(e.raw.name.clone(), sum / e.gpus.len().max(1) as f64);
    }
    Ok(RunPrices {
        source: p.source.clone(),
        usd_per_gpu_hour,
    })
}

impl Study {
    /// Load a study and all its experiments.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Study, InputError> {
        let file: StudyFile = config::parse_toml(&config::read(path)?, path)?;
        if file.experiments.is_empty() {
            return Err(InputError::invalid(
                path,
                "experiments",
                "[]",
                "at least one experiment file",
            ));
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let experiments = file
            .experiments
            .iter()
            .map(|e| {
                let p: PathBuf = base.join(e);
                if !p.is_file() {
                    return Err(InputError::invalid(
                        path,
                        "experiments",
                        format!("\"{e}\""),
                        &format!(
                            "paths of experiment files relative to the study ({} does not exist)",
                            p.display()
                        ),
                    ));
                }
                Experiment::load(&p, catalogue)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prices = match &file.prices {
            Some(p) => Some(run_prices(path, p, &experiments, catalogue)?),
            None => None,
        };
        Ok(Study {
            file,
            experiments,
            prices,
        })
    }

    /// Run every experiment (one after another; each run is single-threaded).
    pub fn run(&self) -> Vec<RunSummary> {
        self.experiments.iter().map(run_experiment).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardware_study() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/hardware-study.toml")
    }

    #[test]
    fn the_hardware_study_prices_every_run() {
        let s = Study::load(&hardware_study(), &Catalogue::builtin()).unwrap();
        let p = s.prices.unwrap();
        assert_eq!(p.usd_per_gpu_hour.len(), 18);
        assert_eq!(p.usd_per_gpu_hour["hw-l40s-mps"], 1.0);
        assert_eq!(p.usd_per_gpu_hour["hw-b200-mig-3g"], 6.0);
        // 1 req/s per GPU at 2 $/GPU-hour: 1800 requests per dollar.
        assert_eq!(p.requests_per_dollar("hw-a100-mps", 1.0), Some(1800.0));
        assert_eq!(p.requests_per_dollar("nobody", 1.0), None);
    }

    #[test]
    fn price_errors_name_the_field_and_what_is_allowed() {
        let text = std::fs::read_to_string(hardware_study()).unwrap();
        let dir = std::env::temp_dir().join(format!("gpushare-study-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let text = text.replace("\"hardware/", &format!("\"{}/hardware/", src.display()));
        let cases = [
            (
                text.replace(", \"l40s\" = 1.0", ""),
                "(no price for `l40s`)",
            ),
            (
                text.replace("\"l40s\" = 1.0", "\"l40x\" = 1.0"),
                "unknown GPU `l40x`",
            ),
            (
                text.replace("\"l40s\" = 1.0", "\"NVIDIA L40S\" = -1.0"),
                "a positive number of US dollars per GPU-hour",
            ),
            (
                text.replace("\"l40s\" = 1.0", "\"l40s\" = 1.0, \"NVIDIA L40S\" = 1.0"),
                "one price per GPU (`l40s` is priced twice)",
            ),
        ];
        for (i, (t, want)) in cases.iter().enumerate() {
            let path = dir.join(format!("s{i}.toml"));
            std::fs::write(&path, t).unwrap();
            let e = Study::load(&path, &Catalogue::builtin())
                .unwrap_err()
                .to_string();
            assert!(e.contains("prices.usd_per_gpu_hour"), "{e}");
            assert!(e.contains(want), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
