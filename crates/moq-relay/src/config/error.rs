//! Errors from loading and validating the configuration. Each says where (file and line),
//! what was wrong, and what to write instead.

use std::{fmt, io, path::PathBuf};

/// Where in a file something was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file as given on the command line.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column (in characters), when known.
    pub column: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded or is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Bad command line or env var, or `--help` / `--version`; `clap::Error::exit` prints it
    /// and exits with the right code (0 for help, 2 for usage errors).
    #[error(transparent)]
    Usage(#[from] clap::Error),

    /// The config file does not exist.
    #[error(
        "config {}: file not found (give the path of a TOML file, or run with no arguments for a \
         development relay)",
        .file.display()
    )]
    NotFound {
        /// The path as given.
        file: PathBuf,
    },

    /// The config file exists but could not be read (permissions, not UTF-8, a directory...).
    #[error("config {}: cannot read: {source}", .file.display())]
    Read {
        /// The path as given.
        file: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// The file is not valid TOML.
    #[error("config {at}: TOML syntax error: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description of the problem.
        message: String,
    },

    /// A key that the section does not have (`deny_unknown_fields`).
    #[error("config {at}: unknown key '{key}'{}", suffix(.suggestion, .hint))]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The full dotted key, e.g. `cluster.roots`.
        key: String,
        /// A known key within a small edit distance, e.g. `cluster.root`.
        suggestion: Option<String>,
        /// Where a moved or renamed key lives now.
        hint: Option<&'static str>,
    },

    /// A value of the wrong type, or one that does not parse (duration, size, address...).
    #[error("config {at}: {key}: {message}")]
    Value {
        /// Where the value is.
        at: Location,
        /// The full dotted key (empty for the whole file).
        key: String,
        /// What was wrong and what to write.
        message: String,
    },

    /// A legacy key that cannot be migrated automatically (e.g. old and new spellings disagree).
    #[error("config {at}: {message}")]
    Legacy {
        /// The file.
        at: Location,
        /// What to change.
        message: String,
    },

    /// Settings the ecosystem's relay has removed (and this one does not read): each line
    /// names the old spelling, where it is, and its replacement.
    #[error("config {origin}: {}{}", super::renamed::HEADING, renamed_lines(.settings))]
    Renamed {
        /// The file, or "(flags and environment)".
        origin: String,
        /// `old -> new (note)`, prefixed with the line in the file when known.
        settings: Vec<String>,
    },

    /// The merged configuration contradicts itself or lets nobody connect (`Config::validate`).
    #[error("config {origin}: {}", list(.problems))]
    Invalid {
        /// The file, or where the settings came from when there is none.
        origin: String,
        /// Each problem, saying why and what to set.
        problems: Vec<String>,
    },
}

fn suffix(suggestion: &Option<String>, hint: &Option<&'static str>) -> String {
    match (suggestion, hint) {
        (_, Some(hint)) => format!(" ({hint})"),
        (Some(suggestion), None) => format!(" (did you mean '{suggestion}'?)"),
        (None, None) => String::new(),
    }
}

fn renamed_lines(settings: &[String]) -> String {
    settings.iter().map(|setting| format!("\n  {setting}")).collect()
}

fn list(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => {
            let mut out = format!("{} problems:", many.len());
            for problem in many {
                out.push_str("\n  - ");
                out.push_str(problem);
            }
            out
        }
    }
}
