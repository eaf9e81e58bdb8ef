//! The `goround-mio` binary: parse the flags, set up logging, start the demo backends if asked,
//! and run the engine.

mod demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cfg = goround_mio::config::from_args(goround_mio::check_files);
    env_logger::Builder::new()
        .filter_level(cfg.log_level)
        .parse_default_env()
        .init();
    for notice in &cfg.notices {
        log::info!("{notice}");
    }
    for warning in &cfg.warnings {
        log::warn!("{warning}");
    }
    let demo = if cfg.demo {
        match demo::start() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("goround-mio: error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let result = goround_mio::run(cfg);
    drop(demo);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goround-mio: error: {e}");
            ExitCode::from(1)
        }
    }
}
