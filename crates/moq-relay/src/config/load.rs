//! Reading a TOML file into a [`Config`], and turning serde's errors into messages that
//! name the file, the line and the full key, with a suggestion for near-miss keys.

use std::path::Path;

use serde_path_to_error::Segment;

use super::{Config, ConfigError, Location};

/// Keys that are accepted only for migration, as (table, key): never suggest them for a typo.
const LEGACY_KEYS: [(&str, &str); 3] = [
    ("cluster", "advertise"),
    ("cluster", "prefix"),
    ("auth", "auth_api"),
];

/// Two spellings of one key, for "set twice" messages: (canonical, other).
const SPELLINGS: [(&str, &str); 5] = [
    ("server", "listen"),
    ("client", "connect"),
    ("bind", "listen"),
    ("listen", "bind"),
    ("disable_verify", "insecure"),
];

/// Keys that moved: where they live now.
const MOVED: [(&str, &str); 4] = [
    (
        "tls",
        "TLS settings live under [server.tls], or [client.tls] for dialing",
    ),
    (
        "server.tls.disable_verify",
        "disable_verify belongs under [client.tls]",
    ),
    ("server.tls.insecure", "insecure belongs under [client.tls]"),
    ("web.listen", "write listen under [web.http] or [web.https]"),
];

/// Parse `text` (the contents of `file`) into a config, without applying flags. Inert
/// keys (see [`inert`](super::inert)) are removed first, each with a warning.
pub(super) fn parse(text: &str, file: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let mut table = toml::de::DeTable::parse(text).map_err(|err| {
        let (line, column) = err.span().map(|span| line_col(text, span.start)).unzip();
        ConfigError::Syntax {
            at: Location {
                file: file.to_path_buf(),
                line,
                column,
            },
            message: one_line(err.message()),
        }
    })?;
    let renamed = super::renamed::find(table.get_ref());
    if !renamed.is_empty() {
        return Err(ConfigError::Renamed {
            origin: file.display().to_string(),
            settings: renamed
                .into_iter()
                .map(|(line, offset)| format!("line {}: {line}", line_col(text, offset).0))
                .collect(),
        });
    }
    let warnings = super::inert::strip(table.get_mut())
        .into_iter()
        .filter_map(|(key, offset)| {
            let (_, why) = super::inert::lookup(&key)?;
            let place = format!("line {}", line_col(text, offset).0);
            Some(super::inert::warning(&place, &key, why))
        })
        .collect();
    let deserializer = toml::Deserializer::from(table);
    let config = serde_path_to_error::deserialize(deserializer).map_err(|err| translate(err, text, file))?;
    Ok((config, warnings))
}

fn translate(err: serde_path_to_error::Error<toml::de::Error>, text: &str, file: &Path) -> ConfigError {
    let keys: Vec<String> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    let inner = err.into_inner();
    let line = inner.span().map(|span| line_col(text, span.start).0);
    let at = Location {
        file: file.to_path_buf(),
        line,
        column: None,
    };
    let message = inner.message();
    let names = backticked(message);

    if message.starts_with("unknown field") {
        return unknown_key(&keys, &names, message, at);
    }

    if message.starts_with("duplicate field")
        && let Some(name) = names.first()
    {
        let key = join(&dotted(&keys), name);
        let other = SPELLINGS
            .iter()
            .find(|(canonical, _)| canonical == name)
            .map(|(_, other)| *other);
        let message = match other {
            Some(other) => {
                format!("set twice: '{name}' and '{other}' are two spellings of the same key; keep one")
            }
            None => "set twice; keep one".to_string(),
        };
        return ConfigError::Value { at, key, message };
    }

    if message.starts_with("unknown variant")
        && let Some((value, expected)) = names.split_first()
    {
        let expected_list: Vec<String> = expected.iter().map(|name| format!("'{name}'")).collect();
        let mut message = format!("unknown value '{value}' (expected {})", expected_list.join(", "));
        if let Some(near) = closest(value, expected.iter().map(String::as_str)) {
            message = format!("{message}; did you mean '{near}'?");
        }
        return ConfigError::Value {
            at,
            key: dotted(&keys),
            message,
        };
    }

    ConfigError::Value {
        at,
        key: dotted(&keys),
        message: reword(message),
    }
}

/// An unknown key: where it is, and the nearest known key or a hint where it moved.
fn unknown_key(keys: &[String], names: &[String], message: &str, at: Location) -> ConfigError {
    let Some((unknown, expected)) = names.split_first() else {
        return ConfigError::Value {
            at,
            key: dotted(keys),
            message: message.to_string(),
        };
    };
    // The path ends with the unknown key itself.
    let parent = match keys.split_last() {
        Some((last, parent)) if last == unknown => dotted(parent),
        _ => dotted(keys),
    };
    let key = join(&parent, unknown);
    let candidates = expected
        .iter()
        .map(String::as_str)
        .filter(|name| !LEGACY_KEYS.contains(&(parent.as_str(), *name)));
    ConfigError::UnknownKey {
        suggestion: closest(unknown, candidates).map(|name| join(&parent, name)),
        hint: MOVED
            .iter()
            .find(|(moved, _)| *moved == key)
            .map(|(_, hint)| *hint),
        at,
        key,
    }
}

/// Serde names Rust types in its messages; say what to write in TOML instead.
fn reword(message: &str) -> String {
    let mut out = one_line(message);
    // A "one or many" value: say what was wrong with the form that was written.
    if let Some(rest) = out.strip_prefix("OneOrMany could not deserialize any variant:; One: ")
        && let Some((one, many)) = rest.split_once("; Many: ")
    {
        out = match (
            one.contains("invalid type: sequence"),
            many.contains("expected a sequence"),
        ) {
            (true, _) => many.to_string(),
            (false, true) if one.ends_with("expected a string") => format!("{one} or a list of strings"),
            (false, _) => one.to_string(),
        };
    }
    for rust in ["u8", "u16", "u32", "u64", "usize"] {
        out = out.replace(
            &format!("expected {rust}"),
            "expected a non-negative whole number",
        );
    }
    out = out.replace("expected a sequence", "expected a list");
    if let Some(start) = out.find("expected struct ") {
        out.truncate(start);
        out.push_str("expected a table");
    }
    out
}

/// The nearest candidate within a small edit distance (`-` and case are forgiven).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase().replace('-', "_");
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(&word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `["server", "tls", "cert", "[1]"]` → `server.tls.cert[1]`.
fn dotted(keys: &[String]) -> String {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() && !key.starts_with('[') {
            out.push('.');
        }
        out.push_str(key);
    }
    out
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (saturate(line), saturate(column))
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["root", "connect", "node", "linger", "key_dir"];
        assert_eq!(closest("roots", keys), Some("root"));
        assert_eq!(closest("conect", keys), Some("connect"));
        assert_eq!(closest("key-dir", keys), Some("key_dir"));
        assert_eq!(closest("Node", keys), Some("node"));
        assert_eq!(closest("bandwidth", keys), None);
        assert_eq!(closest("x", keys), None);
    }

    #[test]
    fn positions() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 11), (2, 5));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn serde_wording() {
        assert_eq!(
            reword("invalid type: string \"x\", expected u64"),
            "invalid type: string \"x\", expected a non-negative whole number"
        );
        assert_eq!(
            reword("invalid type: integer `1`, expected struct Cache"),
            "invalid type: integer `1`, expected a table"
        );
        assert_eq!(
            backticked("unknown field `a`, expected `b` or `c`"),
            ["a", "b", "c"]
        );
    }
}
