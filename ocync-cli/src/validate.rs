//! `ocync validate FILE`: load and check a configuration without contacting any registry.
//!
//! Warnings go to stderr as `warning: <file>:<line>:<column>: …`. Errors are returned (all of
//! them, one per line) for `main` to print as `error: …` with exit code 3.

use crate::cli::ValidateArgs;
use crate::config;
use crate::exit::Code;

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<Code> {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            for w in err.warnings() {
                eprintln!("warning: {w}");
            }
            return Err(err.into());
        }
    };
    for w in config.warnings() {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "config valid: {} registries, {} mappings",
        config.registries().len(),
        config.mappings().len()
    );
    Ok(Code::Ok)
}
