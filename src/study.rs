//! Studies: several experiments run side by side (the seed study is one).

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
}

/// A loaded study: every experiment validated before any is run.
#[derive(Debug)]
pub struct Study {
    /// The study file.
    pub file: StudyFile,
    /// Experiments, in order.
    pub experiments: Vec<Experiment>,
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
        Ok(Study { file, experiments })
    }

    /// Run every experiment (one after another; each run is single-threaded).
    pub fn run(&self) -> Vec<RunSummary> {
        self.experiments.iter().map(run_experiment).collect()
    }
}
