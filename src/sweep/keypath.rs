//! Key paths into an experiment's TOML (`workload.users`, `gpus[0].sharing.time_slice_us`,
//! `profiles."parakeet-1.1b".chunk.flops`), and setting a value at one.

use std::fmt;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index (0-based).
    Index(usize),
}

/// A parsed key path: table keys separated by `.`, array indices in `[n]`, keys with dots or
/// other characters in double quotes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "\"{k}\"")?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

fn is_bare(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl KeyPath {
    /// Parse `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let mut segs = Vec::new();
        let mut chars = text.chars().peekable();
        let mut expect_key = true;
        while let Some(&c) = chars.peek() {
            if expect_key {
                let key = if c == '"' {
                    chars.next();
                    let mut k = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(ch) => k.push(ch),
                            None => return Err("an unclosed quote".into()),
                        }
                    }
                    k
                } else {
                    let mut k = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch == '.' || ch == '[' {
                            break;
                        }
                        if !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
                            return Err(format!(
                                "character '{ch}' in a key (quote keys with other characters: \"...\")"
                            ));
                        }
                        k.push(ch);
                        chars.next();
                    }
                    k
                };
                if key.is_empty() {
                    return Err("an empty key".into());
                }
                segs.push(Segment::Key(key));
                expect_key = false;
            } else if c == '[' {
                chars.next();
                let mut n = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(d) if d.is_ascii_digit() => n.push(d),
                        _ => return Err("an index that is not [n] with n a whole number".into()),
                    }
                }
                let i = n
                    .parse()
                    .map_err(|_| "an index that is not [n] with n a whole number".to_string())?;
                segs.push(Segment::Index(i));
            } else if c == '.' {
                chars.next();
                expect_key = true;
            } else {
                return Err(format!("'{c}' after a key or index (expected '.' or '[')"));
            }
        }
        if segs.is_empty() || expect_key {
            return Err("an empty key".into());
        }
        Ok(KeyPath(segs))
    }

    /// The first key (top-level field).
    pub fn head(&self) -> &str {
        match &self.0[0] {
            Segment::Key(k) => k,
            Segment::Index(_) => unreachable!("a parsed key path starts with a key"),
        }
    }

    /// Set `value` at this path inside `root`, creating missing tables on the way (so a field
    /// left at its default can be set); arrays are never extended.
    pub fn set(&self, root: &mut toml::Value, value: toml::Value) -> Result<(), String> {
        let mut cur = root;
        let mut walked = KeyPath(Vec::new());
        for (i, seg) in self.0.iter().enumerate() {
            let last = i + 1 == self.0.len();
            let here = walked.to_string();
            cur = match seg {
                Segment::Key(k) => {
                    let what = describe(cur);
                    let Some(t) = cur.as_table_mut() else {
                        return Err(format!(
                            "`{here}` is {what}, not a table, so it has no key `{k}`"
                        ));
                    };
                    if last {
                        t.insert(k.clone(), value);
                        return Ok(());
                    }
                    t.entry(k.clone())
                        .or_insert_with(|| toml::Value::Table(Default::default()))
                }
                Segment::Index(n) => {
                    let what = describe(cur);
                    let Some(a) = cur.as_array_mut() else {
                        return Err(format!(
                            "`{here}` is {what}, not an array, so it has no index [{n}]"
                        ));
                    };
                    let len = a.len();
                    let Some(slot) = a.get_mut(*n) else {
                        return Err(format!(
                            "`{here}` has {len} entries in the base experiment, so index [{n}] does not exist"
                        ));
                    };
                    if last {
                        *slot = value;
                        return Ok(());
                    }
                    slot
                }
            };
            walked.0.push(seg.clone());
        }
        Ok(())
    }
}

fn describe(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_indices_and_quotes() {
        let p = KeyPath::parse("gpus[0].sharing.time_slice_us").unwrap();
        assert_eq!(
            p.0,
            vec![
                Segment::Key("gpus".into()),
                Segment::Index(0),
                Segment::Key("sharing".into()),
                Segment::Key("time_slice_us".into()),
            ]
        );
        assert_eq!(p.to_string(), "gpus[0].sharing.time_slice_us");
        let q = KeyPath::parse("profiles.\"parakeet-1.1b\".chunk.flops").unwrap();
        assert_eq!(q.0[1], Segment::Key("parakeet-1.1b".into()));
        assert_eq!(q.to_string(), "profiles.\"parakeet-1.1b\".chunk.flops");
        for bad in ["", "a.", ".a", "a[x]", "a b", "a[1", "\"a", "a..b"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn sets_existing_and_missing_keys_but_never_extends_arrays() {
        let mut v: toml::Value = toml::from_str(
            "[[gpus]]\nid = \"g\"\nsharing = { mode = \"time-slicing\", replicas = 2 }\n",
        )
        .unwrap();
        KeyPath::parse("gpus[0].sharing.time_slice_us")
            .unwrap()
            .set(&mut v, toml::Value::Integer(512))
            .unwrap();
        assert_eq!(
            v["gpus"][0]["sharing"]["time_slice_us"].as_integer(),
            Some(512)
        );
        let e = KeyPath::parse("gpus[3].id")
            .unwrap()
            .set(&mut v, toml::Value::Integer(1))
            .unwrap_err();
        assert!(e.contains("has 1 entries"), "{e}");
        let e = KeyPath::parse("gpus[0].id.x")
            .unwrap()
            .set(&mut v, toml::Value::Integer(1))
            .unwrap_err();
        assert!(e.contains("`gpus[0].id` is a string"), "{e}");
    }
}
