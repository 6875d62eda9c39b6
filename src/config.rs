//! Shared helpers for reading TOML inputs: parsing with key paths, and range checks.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::InputError;

/// Deserialize `text` (from `origin`) into `T`; type and unknown-field errors name the key path.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, InputError> {
    let de = toml::Deserializer::parse(text).map_err(|e| InputError::Parse {
        path: origin.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    from_deserializer(de, origin)
}

/// Deserialize an already-parsed TOML value (e.g. merged from several files) into `T`.
pub fn from_value<T: DeserializeOwned>(v: toml::Value, origin: &Path) -> Result<T, InputError> {
    from_deserializer(v, origin)
}

fn from_deserializer<'de, T: DeserializeOwned, D>(de: D, origin: &Path) -> Result<T, InputError>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // Value deserializers append "in `key`" lines; the key path below already says it.
        let inner: Vec<&str> = inner.lines().filter(|l| !l.starts_with("in `")).collect();
        let inner = inner.join("\n");
        let inner = inner.trim_end();
        // A tagged variant's own error (see `variant`) carries the rest of the key path.
        let (path, inner) = match inner.strip_prefix('`').and_then(|r| r.split_once("`: ")) {
            Some((sub, rest)) if path != "." => (format!("{path}.{sub}"), rest),
            _ => (path, inner),
        };
        InputError::Parse {
            path: origin.to_path_buf(),
            message: if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            },
        }
    })
}

/// Deserialize the table of one variant of a tagged enum, keeping the key path in the message
/// (for hand-written `Deserialize` impls of internally tagged enums).
pub fn variant<T: DeserializeOwned, E: serde::de::Error>(t: toml::Table) -> Result<T, E> {
    serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner: Vec<&str> = inner.lines().filter(|l| !l.starts_with("in `")).collect();
        let inner = inner.join("\n");
        if path == "." {
            E::custom(inner.trim_end())
        } else {
            E::custom(format!("`{path}`: {}", inner.trim_end()))
        }
    })
}

/// Read a whole file.
pub fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|e| InputError::read(path, e))
}

/// A number as messages show it: exponent notation when very large or small.
pub fn num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-4) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// `x` must be finite and > 0.
pub fn positive(origin: &Path, field: &str, x: f64) -> Result<(), InputError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            origin,
            field,
            num(x),
            "a finite number > 0",
        ))
    }
}

/// `x` must be finite and >= 0.
pub fn non_negative(origin: &Path, field: &str, x: f64) -> Result<(), InputError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            origin,
            field,
            num(x),
            "a finite number >= 0",
        ))
    }
}

/// `x` must be finite and in `[lo, hi]` (`unit` follows the bounds in the message, e.g. "s").
///
/// Upper bounds keep derived values (job times in integer nanoseconds, counts, allocations)
/// far from overflow, so the engine never sees a time past its end.
pub fn in_range(
    origin: &Path,
    field: &str,
    x: f64,
    lo: f64,
    hi: f64,
    unit: &str,
) -> Result<(), InputError> {
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(())
    } else {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        Err(InputError::invalid(
            origin,
            field,
            num(x),
            &format!("a number in [{}, {}]{unit}", num(lo), num(hi)),
        ))
    }
}

/// `name` becomes a folder under `results/`: it must be one plain path component (not empty,
/// no `/` or `\\`, not `.` or `..`, no control characters), so outputs stay in that folder.
pub fn folder_name(origin: &Path, field: &str, name: &str) -> Result<(), InputError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if plain {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(InputError::invalid(
            origin,
            field,
            format!("{shown:?}"),
            "one plain folder name (not empty, no `/` or `\\`, not `.` or `..`, no control \
             characters): outputs go to results/<name>",
        ))
    }
}

/// Refuse to write `out` (given as `flag`) over one of the command's own `inputs`.
pub fn not_an_input(out: &Path, flag: &str, inputs: &[&Path]) -> Result<(), InputError> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    match inputs.iter().find(|i| same(out, i)) {
        Some(input) => Err(InputError::invalid(
            out,
            flag,
            out.display(),
            &format!(
                "a file other than the command's input {}: outputs never overwrite inputs",
                input.display()
            ),
        )),
        None => Ok(()),
    }
}

/// `x` must be in (0, 1].
pub fn fraction(origin: &Path, field: &str, x: f64) -> Result<(), InputError> {
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            origin,
            field,
            num(x),
            "a fraction in (0, 1]",
        ))
    }
}

/// Write several files so that a reader never sees a half-written one, and a failure leaves
/// none of them changed: every file goes to a temporary sibling first, then all are renamed.
pub fn write_atomic_all(files: &[(PathBuf, Vec<u8>)]) -> Result<(), InputError> {
    let tmp_of = |path: &Path| {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        dir.unwrap_or(Path::new(".")).join(format!(
            ".{}.tmp{}",
            name.unwrap_or_default(),
            std::process::id()
        ))
    };
    let cleanup = || {
        for (p, _) in files {
            let _ = std::fs::remove_file(tmp_of(p));
        }
    };
    for (path, bytes) in files {
        let tmp = tmp_of(path);
        if let Err(e) = std::fs::write(&tmp, bytes) {
            cleanup();
            return Err(InputError::write(&tmp, e));
        }
    }
    for (path, _) in files {
        if let Err(e) = std::fs::rename(tmp_of(path), path) {
            cleanup();
            return Err(InputError::write(path, e));
        }
    }
    Ok(())
}
