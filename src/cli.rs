//! Admin subcommands of the CLI, over HTTP to the admin API (SPEC §2).
