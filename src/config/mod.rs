//! Flags (clap) and the TOML file (serde) → one validated, immutable [`Config`].
//!
//! From the bottom up:
//! - `values`: durations, sizes, counts, addresses: pure parsers shared by flags and file;
//!   `file`: the file as written, with positions; `defaults`: the settings' defaults.
//! - `spec`: the validated [`Config`] and its parts; `error`: [`ConfigError`].
//! - `read`: a value of the file as the spec needs it, or a positioned error; `flags`: the
//!   command line.
//! - `pools`: the pools, routes and health checks; `build`: the merge of flags and file;
//!   `print`: the effective configuration back as TOML (`--check`).
//! - `loader`: [`load_from`] and [`from_args`], over all of them.
//!
//! [`load_from`] merges them: a flag given on the command line wins over the file's key, which
//! wins over the default. Without `--config`, the `--upstream`s form one pool, `default`,
//! reached by a catch-all route. Every error in the file is `PATH:LINE:COL: message`.
//!
//! This file only names the parts and what the rest of the proxy takes from them.

mod acme;
mod build;
mod defaults;
mod error;
mod file;
mod flags;
mod loader;
mod pools;
mod print;
mod read;
mod spec;
mod tcp;
mod tls;
mod values;

pub use acme::{ACME_DIRECTORY, ACME_RENEW_BEFORE, ACME_STORAGE};
pub use defaults::*;
pub use error::ConfigError;
pub use loader::{from_args, load_from};
pub use spec::*;
pub use tcp::{SniRoute, TcpSpec, TcpTarget, TCP_IDLE_TIMEOUT};
pub use tls::HANDSHAKE_TIMEOUT;
pub use values::{format_duration, parse_dns_name, parse_duration, Address};

#[cfg(test)]
mod tests;
