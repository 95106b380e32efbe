//! Configuration errors. Every error tells the operator what is wrong, where (file, line and
//! column or environment variable, plus the dotted field path) and how to fix it, because a
//! node that refuses to start must not leave anyone guessing.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The overlay file could not be read (missing, unreadable, not UTF-8).
    #[error(
        "cannot read config file {}: {source}\n  hint: check that the path given to --config exists, is readable and is UTF-8 text",
        path.display()
    )]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A layer was read but its content is not a valid configuration.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// The detailed diagnostic, for callers (and tests) that branch on the kind or location;
    /// `None` for read errors, which have no location inside a file.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid(d) => Some(d),
        }
    }
}

/// What, where and how to fix one configuration problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The class of problem.
    pub kind: ErrorKind,
    /// The layer (file position or environment variable) that set the offending value.
    pub origin: Origin,
    /// Dotted path of the offending field, e.g. `strategies[0].market_making.risk_aversion`;
    /// empty when the problem is not tied to a field (TOML syntax errors).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it: valid keys, the valid range, an example value.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}\n  hint: {}", self.message, self.hint)
    }
}

/// The class of a configuration problem, so callers can tell a typo from a bad value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not valid TOML.
    Syntax,
    /// A key that the schema does not have (often a typo).
    UnknownKey,
    /// A value of the wrong type, e.g. a string where a number belongs.
    WrongType,
    /// A number outside its documented range.
    OutOfRange,
    /// Any other invalid value: malformed decimals, unknown references, duplicates.
    Invalid,
}

/// The layer a problem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A TOML file: the overlay, or the embedded default.
    File {
        /// File name as given by the caller (the embedded default is `config/default.toml`).
        name: String,
        /// Line and column of the offending key or value, when known.
        position: Option<Position>,
    },
    /// An `HFT_*` environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                name,
                position: Some(p),
            } => write!(f, "{name}:{}:{}", p.line, p.column),
            Self::File {
                name,
                position: None,
            } => f.write_str(name),
            Self::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// A 1-based line and column (in characters) inside a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`; offsets past the end or inside a character
    /// are clamped, so any span yields a position.
    pub(crate) fn of_offset(text: &str, offset: usize) -> Self {
        let mut line = 1;
        let mut column = 1;
        for (i, c) in text.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Self { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 1 }
        );
        // 'é' is two bytes but one column.
        assert_eq!(
            Position::of_offset(text, 9),
            Position { line: 2, column: 3 }
        );
        assert_eq!(
            Position::of_offset(text, 8),
            Position { line: 2, column: 3 }
        );
        assert_eq!(
            Position::of_offset(text, 1000),
            Position { line: 3, column: 1 }
        );
    }
}
