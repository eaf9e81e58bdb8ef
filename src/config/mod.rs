//! Flags (clap) and the TOML file (serde) → one validated, immutable [`Config`].
//!
//! - [`values`]: durations, sizes, counts, addresses: pure parsers shared by flags and file.
//! - [`flags`]: the command line.
//! - [`mod@file`]: the file as written, with positions.
//! - [`mod@print`]: the effective configuration back as TOML (`--check`).
//! - `spec`: the validated [`Config`] and its parts (re-exported here).
//! - `build`: the merge of flags and file; `pools`: the pools, routes and health checks.
//!
//! [`load_from`] merges them: a flag given on the command line wins over the file's key, which
//! wins over the default. Without `--config`, the `--upstream`s form one pool, `default`,
//! reached by a catch-all route. Every error in the file is `PATH:LINE:COL: message`.

mod build;
pub mod file;
pub mod flags;
mod pools;
pub mod print;
mod spec;
pub mod values;

use crate::http::Limits;
use crate::route;
use build::build;
use clap::{CommandFactory, FromArgMatches};
use file::At;
pub use spec::*;
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
pub use values::{parse_duration, parse_size, Address};

/// The ports `--demo` starts `goround-dummy` children on (on 127.0.0.1); they are the upstreams
/// when no `--upstream` is given.
pub const DEMO_PORTS: [u16; 3] = [8081, 8082, 8083];

/// Default `--splice-min` for request bodies and tunnels: below about 128 KiB splicing an upload
/// saves nothing measurable; from 256 KiB it costs 7–28 % less CPU than copying, 56 % at 64 MiB.
pub const SPLICE_MIN: usize = 128 * 1024;

/// Default `--splice-min` for response bodies: on loopback a spliced 1 MiB download costs about
/// 15 % more proxy CPU than a copied one (311 vs 271 µs), 2 MiB about 10 % less and 4 MiB 37 %
/// less; the crossover is near 1.5 MiB.
pub const SPLICE_MIN_RESPONSE: usize = 2 * 1024 * 1024;

/// Descriptors kept aside from the client and upstream budgets: listeners, epoll, wakers,
/// health probes, logs.
pub const RESERVED_FDS: usize = 64;

/// Most idle upstream connections kept by default, whatever the open-files limit: past a few
/// thousand, idle connections only hold descriptors and the upstreams' memory.
pub const MAX_DEFAULT_IDLE: usize = 8192;

/// The name of the pool the `--upstream` flags form.
pub const DEFAULT_POOL: &str = "default";

/// Most retries a pool makes by default after the first try.
pub const DEFAULT_RETRIES: usize = 2;

/// The default idle-connection budget for an open-files limit of `nofile`: a tenth of the
/// descriptors, so that clients keep at least 90 % of what they could have without pooling.
pub fn default_idle_budget(nofile: usize) -> usize {
    // A tenth of what two-descriptor clients could have, in whole pairs: clients then keep at
    // least 90 % of their connections, rounding included.
    (nofile.saturating_sub(RESERVED_FDS) / 2 / 10 * 2).min(MAX_DEFAULT_IDLE)
}

/// The client-connection limit derived from the open-files limit: each connection may hold two
/// descriptors (client and upstream) besides the idle pool's `idle`.
pub fn default_max_connections(nofile: usize, idle: usize, workers: usize) -> usize {
    (nofile.saturating_sub(RESERVED_FDS + idle) / 2).max(workers)
}

/// Why [`load_from`] produced no [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: the text to print on stdout, then exit 0.
    Help(String),
    /// `--check` succeeded: the effective configuration to print on stdout, then exit 0.
    Checked(String),
    /// A bad flag or value: one line (no "error:" prefix, no newline); exit 2.
    Usage(String),
    /// A bad config file: `PATH:LINE:COL: message`; exit 1.
    File(String),
}

/// Parse a command line (`args[0]` is the program name) and the config file it names into a
/// [`Config`], without printing or exiting: what [`from_args`] does, minus the side effects.
pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = flags::Cli::command()
        .try_get_matches_from(args)
        .map_err(|e| {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ConfigError::Help(text),
                _ => {
                    let first = text.lines().next().unwrap_or("invalid arguments");
                    ConfigError::Usage(first.strip_prefix("error: ").unwrap_or(first).to_string())
                }
            }
        })?;
    let cli = flags::Cli::from_arg_matches(&matches)
        .map_err(|e| ConfigError::Usage(e.to_string().trim().to_string()))?;
    let check = cli.check;
    let config = build(cli, &matches, None)?;
    if check {
        return Err(ConfigError::Checked(print::effective(&config)));
    }
    Ok(config)
}

/// Parse the process arguments. On a bad flag: one clear line on stderr and exit 2; on a bad
/// file: `PATH:LINE:COL: message` and exit 1. `--help`, `--version` and `--check` print on
/// stdout and exit 0.
pub fn from_args() -> Config {
    match load_from(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Help(text)) | Err(ConfigError::Checked(text)) => {
            // A closed stdout (`| head`) is no reason to panic; the exit code stays 0.
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::exit(0)
        }
        Err(ConfigError::Usage(message)) => {
            eprintln!("goround-mio: error: {message}");
            std::process::exit(2)
        }
        Err(ConfigError::File(message)) => {
            eprintln!("{message}");
            std::process::exit(1)
        }
    }
}
/// The port `--demo` serves the admin pages on (127.0.0.1).
pub const DEMO_ADMIN_PORT: u16 = 8404;

#[cfg(test)]
mod tests;
