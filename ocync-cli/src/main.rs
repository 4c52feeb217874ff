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
mod progress;
mod signals;
mod sync;
mod tags;
mod validate;
mod watch;

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
    let display = progress::Mode::detect(&cli.global);
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
            cli::Command::Copy(args) => copy::run(args, display).await,
            cli::Command::Sync(args) => sync::run(args, display).await,
            cli::Command::Validate(args) => validate::run(&args),
            cli::Command::Expand(args) => expand::run(&args),
            cli::Command::Tags(args) => tags::run(args).await,
            cli::Command::Watch(args) => watch::run(args, display).await,
            cli::Command::Auth(cli::AuthCommand::Check(args)) => auth::check(args).await,
            cli::Command::Completions(args) => {
                let mut command = <cli::Cli as clap::CommandFactory>::command();
                clap_complete::generate(args.shell, &mut command, "ocync", &mut std::io::stdout());
                Ok(exit::Code::Ok)
            }
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
