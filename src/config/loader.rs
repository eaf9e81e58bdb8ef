//! A command line and the file it names → a [`Config`], or why not.

use super::build::build;
use super::error::ConfigError;
use super::flags;
use super::print;
use super::spec::Config;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::io::Write;

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
        return Err(ConfigError::Checked {
            effective: print::effective(&config),
            warnings: config.warnings.clone(),
            config: Box::new(config),
        });
    }
    Ok(config)
}

/// Parse the process arguments. On a bad flag: one clear line on stderr and exit 2; on a bad
/// file: `PATH:LINE:COL: message` and exit 1. `--help`, `--version` and `--check` print on
/// stdout and exit 0. With `--check`, `files` loads what the configuration names as a start
/// would (certificates and keys): its error exits 1, its warnings join the others.
pub fn from_args(files: impl Fn(&Config) -> Result<Vec<String>, String>) -> Config {
    match load_from(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Help(text)) => {
            // A closed stdout (`| head`) is no reason to panic; the exit code stays 0.
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::exit(0)
        }
        Err(ConfigError::Checked {
            effective,
            mut warnings,
            config,
        }) => {
            match files(&config) {
                Ok(more) => warnings.extend(more),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1)
                }
            }
            // As `nginx -t` does: what a start would warn about, on stderr.
            for w in &warnings {
                eprintln!("goround-mio: warning: {w}");
            }
            let _ = std::io::stdout().write_all(effective.as_bytes());
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
