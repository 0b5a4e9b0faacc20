//! The `revgate` binary: parses the command line and hands it to the library
//! ([`revgate::cli::run`]), which runs the command and decides the exit status
//! ([`revgate::cli::EXIT_OK`] and the other `EXIT_*` codes). A command line clap refuses
//! exits [`revgate::cli::EXIT_USAGE`] (64); `--help` and `--version` exit 0.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match revgate::cli::Cli::try_parse() {
        Ok(cli) => ExitCode::from(revgate::cli::run(cli)),
        Err(err) => ExitCode::from(revgate::cli::usage_error(&err)),
    }
}
