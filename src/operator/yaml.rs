//! YAML in and out: typed parsing whose errors name the file, the key path and the line, the
//! Kubernetes `ConfigMap` wrapper the GPU Operator reads its configs from, and writing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use crate::error::InputError;

/// Where a value sits in its file: 1-based line and column (0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct At {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl At {
    /// The location of a spanned value.
    pub fn of<T>(s: &Spanned<T>) -> At {
        At::from_location(&s.referenced)
    }

    fn from_location(l: &Location) -> At {
        At {
            line: l.line(),
            column: l.column(),
        }
    }

    /// Shift by the line on which an embedded document starts (a `ConfigMap` data entry).
    pub fn offset(self, lines: u64) -> At {
        if self.line == 0 {
            self
        } else {
            At {
                line: self.line + lines,
                column: self.column,
            }
        }
    }
}

/// A YAML document and where it came from, for messages.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The file.
    pub path: &'a Path,
    /// The text.
    pub text: &'a str,
    /// Lines before the text within the file (an embedded `ConfigMap` entry), else 0.
    pub line_offset: u64,
    /// What the text is within the file, e.g. `data."ts-4"` (empty for a whole file).
    pub within: String,
}

impl<'a> Source<'a> {
    /// A whole file.
    pub fn file(path: &'a Path, text: &'a str) -> Source<'a> {
        Source {
            path,
            text,
            line_offset: 0,
            within: String::new(),
        }
    }

    /// An error at `at` (relative to this text) about `field`.
    pub fn error(&self, at: At, field: &str, message: impl std::fmt::Display) -> InputError {
        located(
            self.path,
            at.offset(self.line_offset),
            &self.field(field),
            message,
        )
    }

    /// `field` prefixed with the embedding key, if any.
    pub fn field(&self, field: &str) -> String {
        match (self.within.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.within.clone(),
            (false, false) => format!("{}.{field}", self.within),
        }
    }

    /// Parse the text as `T`: unknown keys, wrong types and bad syntax are errors naming the
    /// key path, the line and the column.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, InputError> {
        let mut opts = serde_saphyr::options::Options::default();
        opts.with_snippet = false;
        let mut key_path = String::new();
        let result = serde_saphyr::with_deserializer_from_str_with_options(self.text, opts, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                key_path = e.path().to_string();
                e.into_inner()
            })
        });
        result.map_err(|e| {
            let at = e
                .location()
                .map(|l| At::from_location(&l))
                .unwrap_or_default();
            let mut msg = e.to_string();
            if at.line > 0 {
                for suffix in [
                    format!(" at line {}, column {}", at.line, at.column),
                    format!(" at line {} column {}", at.line, at.column),
                ] {
                    if let Some(s) = msg.strip_suffix(&suffix) {
                        msg = s.to_string();
                    }
                }
            }
            let msg = msg.trim_start_matches("error: ").trim().to_string();
            // `Spanned` values add a `value` step to the path: drop it.
            let field = key_path
                .split('.')
                .filter(|s| *s != "value" && !s.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            self.error(at, &field, msg)
        })
    }
}

/// An `InputError` naming the file, the line and column (when known) and the key path.
pub fn located(path: &Path, at: At, field: &str, message: impl std::fmt::Display) -> InputError {
    let place = if at.line > 0 {
        format!("line {}, column {}: ", at.line, at.column)
    } else {
        String::new()
    };
    let field = if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    };
    InputError::Parse {
        path: path.to_path_buf(),
        message: format!("{place}{field}{message}"),
    }
}

/// A Kubernetes `ConfigMap`, as the GPU Operator reads its MIG and device-plugin configs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMap {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Metadata,
    /// Config name -> config text.
    pub data: BTreeMap<String, String>,
}

/// Object metadata: the subset gpushare reads and writes; the other fields of Kubernetes'
/// `ObjectMeta` (as `kubectl get -o yaml` adds them) are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields set by the API server or by tools: accepted, ignored, never written.
    #[serde(default, skip_serializing)]
    pub generate_name: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub uid: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub resource_version: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub generation: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub creation_timestamp: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub deletion_timestamp: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub deletion_grace_period_seconds: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub finalizers: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub owner_references: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub managed_fields: Option<IgnoredAny>,
    #[doc(hidden)]
    #[serde(default, skip_serializing)]
    pub self_link: Option<IgnoredAny>,
}

/// True when the text is a Kubernetes object of kind `ConfigMap` (top-level `kind: ConfigMap`).
pub fn is_config_map(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_end() == "kind: ConfigMap" || l.trim_end() == "kind: \"ConfigMap\"")
}

/// The entries of a `ConfigMap` file: (name, text, line offset of the text in the file).
pub fn config_map_entries(
    path: &Path,
    text: &str,
) -> Result<Vec<(String, String, u64)>, InputError> {
    let src = Source::file(path, text);
    let cm: ConfigMap = src.parse()?;
    if cm.kind != "ConfigMap" || cm.api_version != "v1" {
        return Err(src.error(
            At::default(),
            "kind",
            format!(
                "{} {}: expected apiVersion v1, kind ConfigMap",
                cm.api_version, cm.kind
            ),
        ));
    }
    Ok(cm
        .data
        .into_iter()
        .map(|(k, v)| {
            let offset = block_offset(text, &k);
            (k, v, offset)
        })
        .collect())
}

/// The line after `  key: |` in `text` (where a block scalar's content starts), minus one, so
/// that lines inside the entry map back to lines of the file; 0 if the key is not found.
fn block_offset(text: &str, key: &str) -> u64 {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        for k in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
            if let Some(rest) = t.strip_prefix(&k)
                && let Some(rest) = rest.strip_prefix(':')
                && rest.trim_start().starts_with('|')
            {
                return i as u64 + 1;
            }
        }
    }
    0
}

/// YAML text of `value`, for writing.
pub fn to_string<T: Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value)
        .unwrap_or_else(|e| panic!("invariant: gpushare's own YAML types serialise: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        a: u32,
        b: Vec<String>,
    }

    #[test]
    fn errors_name_key_path_and_line() {
        let p = Path::new("x.yaml");
        let e = Source::file(p, "a: 1\nb: [x]\nc: 2\n")
            .parse::<Small>()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.yaml: line 3, column 1: field `c`"), "{e}");
        assert!(e.contains("unknown field `c`"), "{e}");
        let e = Source::file(p, "a: x\nb: []\n")
            .parse::<Small>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, column 4: field `a`"), "{e}");
        let e = Source::file(p, "a: 1\nb: [\n")
            .parse::<Small>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn config_map_entries_map_lines_back_to_the_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  ts-4: |\n    version: v1\n    bad: 1\n";
        assert!(is_config_map(text));
        let entries = config_map_entries(Path::new("cm.yaml"), text).unwrap();
        assert_eq!(entries.len(), 1);
        let (name, body, off) = &entries[0];
        assert_eq!(name, "ts-4");
        assert_eq!(*off, 6);
        let src = Source {
            path: Path::new("cm.yaml"),
            text: body,
            line_offset: *off,
            within: "data.ts-4".into(),
        };
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct V {
            version: String,
        }
        let e = src.parse::<V>().unwrap_err().to_string();
        assert!(e.contains("line 8, column 1: field `data.ts-4.bad`"), "{e}");
    }
}
