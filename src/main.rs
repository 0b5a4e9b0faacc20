//! The `revgate` binary: parses the command line and hands it to the library
//! ([`revgate::cli::run`]), which runs the command and decides the exit status
//! ([`revgate::cli::EXIT_OK`] and the other `EXIT_*` codes).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = revgate::cli::Cli::parse();
    ExitCode::from(revgate::cli::run(cli))
}
