//! Admin subcommands of the CLI, over HTTP to the admin API (SPEC §2).

/// Admin subcommands (placeholder until the CLI lands).
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Show entries by kind.
    Stats,
}

/// Runs an admin subcommand; returns the exit code.
pub async fn run(_cmd: AdminCommand) -> i32 {
    1
}
