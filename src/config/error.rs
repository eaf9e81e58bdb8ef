//! Why no configuration came out of a command line and its file.

use super::file::FileError;
use super::spec::Config;

/// Why [`load_from`](super::load_from) produced no [`Config`](super::Config).
#[derive(Debug, Clone)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: the text to print on stdout, then exit 0.
    Help(String),
    /// `--check` succeeded: the effective configuration to print on stdout, and the warnings
    /// a start would log, for stderr; then exit 0.
    Checked {
        /// The effective configuration as TOML.
        effective: String,
        /// One line each.
        warnings: Vec<String>,
        /// The configuration checked (for the files it names, loaded by the caller).
        config: Box<Config>,
    },
    /// A bad flag or value: one line (no "error:" prefix, no newline); exit 2.
    Usage(String),
    /// A bad config file: `PATH:LINE:COL: message`; exit 1.
    File(String),
}

/// A file error as a [`ConfigError`].
pub fn file_error(e: FileError) -> ConfigError {
    ConfigError::File(e.to_string())
}
