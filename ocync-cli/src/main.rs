//! `ocync`: copy and sync OCI images between registries and OCI layouts.
//!
//! The binary holds no protocol logic: it parses arguments, sets up logging (stderr), runs a
//! library call, prints data (stdout) and maps errors to documented exit codes.

mod auth;
mod cli;
mod config;
mod copy;
mod credentials;
mod endpoints;
mod exit;
mod expand;
mod logging;
mod signals;
mod sync;
mod tags;
mod validate;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::Code::Ok
                }
                _ => exit::Code::Input,
            };
            let _ = e.print();
            return code.into();
        }
    };
    logging::init(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::Code::Failure.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Copy(args) => copy::run(args).await,
            cli::Command::Sync(args) => sync::run(args).await,
            cli::Command::Validate(args) => validate::run(&args),
            cli::Command::Expand(args) => expand::run(&args),
            cli::Command::Tags(args) => tags::run(args).await,
            cli::Command::Auth(cli::AuthCommand::Check(args)) => auth::check(args).await,
        }
    });
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            exit::report(&err);
            exit::classify(&err).into()
        }
    }
}
