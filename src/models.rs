//! Where model profiles come from: the profiles shipped in `models/`, compiled into the binary
//! (so an experiment saved anywhere runs), and folders that add or override them.
//!
//! Precedence, highest first: the command line's `--models DIR`, then the experiment's
//! `models_dir`, then the built-in profiles. A profile `NAME` is the file `NAME.toml`; the
//! first source that has it wins, whole (profiles are never merged across sources).

use std::path::{Path, PathBuf};

use crate::error::InputError;

/// The profiles shipped in `models/`: (name, TOML text). A test checks that this list and the
/// folder agree, file for file and byte for byte.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "magpie-tts-multilingual",
        include_str!("../models/magpie-tts-multilingual.toml"),
    ),
    (
        "nemotron-nano-vl-8b",
        include_str!("../models/nemotron-nano-vl-8b.toml"),
    ),
    (
        "parakeet-1.1b",
        include_str!("../models/parakeet-1.1b.toml"),
    ),
];

/// The text of the built-in profile `name`, if there is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// How errors and listings name a built-in profile.
pub fn builtin_origin(name: &str) -> PathBuf {
    PathBuf::from(format!("built-in models/{name}.toml"))
}

/// A profile found: its text and where it came from.
#[derive(Clone, Debug)]
pub struct Found {
    /// The TOML text.
    pub text: String,
    /// The file it was read from, or `built-in models/NAME.toml`.
    pub origin: PathBuf,
}

/// Profile folders in precedence order (highest first), in front of the built-in profiles.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    dirs: Vec<PathBuf>,
}

impl Sources {
    /// The built-in profiles behind `dirs` (highest precedence first; `None`s are skipped).
    pub fn new<'a>(dirs: impl IntoIterator<Item = Option<&'a Path>>) -> Sources {
        Sources {
            dirs: dirs.into_iter().flatten().map(Path::to_path_buf).collect(),
        }
    }

    /// The folders searched before the built-in profiles, highest precedence first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Profile `name` from the first source that has it; `Ok(None)` when none has it. A
    /// folder given but missing is an error, not a silent fall-back to the built-in profile.
    pub fn find(&self, name: &str) -> Result<Option<Found>, InputError> {
        for d in &self.dirs {
            if !d.is_dir() {
                return Err(InputError::read(
                    d,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such folder of model profiles",
                    ),
                ));
            }
            let p = d.join(format!("{name}.toml"));
            if p.is_file() {
                return Ok(Some(Found {
                    text: crate::config::read(&p)?,
                    origin: p,
                }));
            }
        }
        Ok(builtin(name).map(|t| Found {
            text: t.to_string(),
            origin: builtin_origin(name),
        }))
    }

    /// Every profile name any source has, sorted, each with where it would be read from.
    pub fn list(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for d in &self.dirs {
            for n in profile_names(d) {
                if !out.iter().any(|(o, _)| *o == n) {
                    let p = d.join(format!("{n}.toml"));
                    out.push((n, p));
                }
            }
        }
        for (n, _) in BUILTIN {
            if !out.iter().any(|(o, _)| o == n) {
                out.push((n.to_string(), builtin_origin(n)));
            }
        }
        out.sort();
        out
    }

    /// What is allowed where a model name is expected, for error messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.list().into_iter().map(|(n, _)| n).collect();
        let mut s = format!("a model profile: {}", names.join(", "));
        if self.dirs.is_empty() {
            s.push_str(" (built in; models_dir or --models DIR adds others)");
        } else {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            s.push_str(&format!(
                " (from {} and the built-in profiles)",
                dirs.join(", ")
            ));
        }
        s
    }
}

/// The model profiles in `dir` (file stems of its `.toml` files), sorted; empty if unreadable.
pub fn profile_names(dir: &Path) -> Vec<String> {
    let mut known: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    if p.extension()? != "toml" {
                        return None;
                    }
                    Some(p.file_stem()?.to_string_lossy().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    known
}

/// The first comment line of a profile: what the model is, as its file says.
pub fn summary_line(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix('#').map(str::trim))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in list is the `models/` folder, file for file and byte for byte.
    #[test]
    fn builtin_profiles_are_the_models_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            profile_names(&dir),
            names,
            "add new models/ files to BUILTIN"
        );
        for (n, text) in BUILTIN {
            let on_disk = std::fs::read_to_string(dir.join(format!("{n}.toml"))).unwrap();
            assert_eq!(&on_disk, text, "{n}");
            let p = crate::profile::ModelProfile::from_toml_str(text, &builtin_origin(n)).unwrap();
            assert_eq!(p.name, *n);
        }
    }

    #[test]
    fn folders_override_and_add_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("parakeet-1.1b.toml"), "# from a\n").unwrap();
        std::fs::write(b.path().join("parakeet-1.1b.toml"), "# from b\n").unwrap();
        std::fs::write(b.path().join("extra.toml"), "# extra\n").unwrap();
        let s = Sources::new([Some(a.path()), None, Some(b.path())]);
        assert_eq!(s.find("parakeet-1.1b").unwrap().unwrap().text, "# from a\n");
        assert_eq!(s.find("extra").unwrap().unwrap().text, "# extra\n");
        let builtin = s.find("nemotron-nano-vl-8b").unwrap().unwrap();
        assert_eq!(builtin.origin, builtin_origin("nemotron-nano-vl-8b"));
        assert!(s.find("nothing").unwrap().is_none());
        let names: Vec<String> = s.list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "extra",
                "magpie-tts-multilingual",
                "nemotron-nano-vl-8b",
                "parakeet-1.1b"
            ]
        );
        let missing = Sources::new([Some(Path::new("/no/such/folder"))]);
        assert!(missing.find("parakeet-1.1b").is_err());
    }
}
