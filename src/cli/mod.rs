//! The `revgate` command line (SPEC §2): every subcommand's clap definition, and
//! [`run`], which dispatches a parsed [`Cli`] and returns the process exit status.
//!
//! | subcommand | what runs | file |
//! |---|---|---|
//! | `serve`, `demo`, `check-config` | the gateway / its config check | `serve.rs` |
//! | `check-store` | offline store check | `offline.rs` |
//! | `discover ISSUER_URL` | an `[[issuer]]` block from the provider's discovery document ([`crate::discover`]) | `serve.rs` |
//! | `revoke jti\|sid\|sub VALUE` | `POST /v1/revocations` | `commands.rs` |
//! | `revoke token JWT` | `POST /v1/revocations/token` | `commands.rs` |
//! | `unrevoke KIND VALUE` | `DELETE /v1/revocations/{kind}/{value}?issuer=` | `commands.rs` |
//! | `lookup KIND VALUE` | `GET /v1/revocations/{kind}/{value}?issuer=` | `commands.rs` |
//! | `list` | `GET /v1/revocations?kind=&limit=&after=`, following `next` | `commands.rs` |
//! | `stats` | `GET /v1/stats` | `commands.rs` |
//! | `sweep` | `POST /v1/sweep` | `commands.rs` |
//! | `export`, `import` | `GET /v1/export`, `POST /v1/import`, or the store with `--offline` | `transfer.rs` |
//!
//! | `completions SHELL`, `man` | shell completions (clap_complete), manual pages (clap_mangen) | `mod.rs` |
//!
//! The config file: `--config FILE`, else `$REVGATE_CONFIG`, else `./revgate.toml` when it
//! exists, else `/etc/revgate/revgate.toml` (`config_file.rs`). Where the admin API is:
//! `--admin`, else `$REVGATE_ADMIN_URL`, else `server.admin_listen` of that config, else
//! [`DEFAULT_ADMIN_URL`]. The bearer token: `--admin-token`, else `$REVGATE_ADMIN_TOKEN`,
//! else that config's `server.admin_token` (`client.rs`). Every admin command but `export`
//! takes `--output table|json`. Tables, JSON printing and the one-line errors: `output.rs`;
//! opening the store of a stopped gateway: `offline.rs`; the warnings about `REVGATE_*`
//! variables no setting reads: `environment.rs`.
//!
//! Exit codes, defined here once: [`EXIT_OK`], [`EXIT_FAILURE`] (the API refused the
//! request, a lookup / unrevoke found nothing, the gateway could not start, the store is
//! inconsistent), [`EXIT_USAGE`] (bad arguments — clap's usage errors included, see
//! [`usage_error`] — or configuration) and [`EXIT_UNAVAILABLE`] (the admin API cannot be
//! reached). A failure prints exactly one line on stderr.

mod client;
mod commands;
mod config_file;
mod environment;
mod offline;
mod output;
mod serve;
#[cfg(test)]
mod tests;
mod transfer;

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::store::Kind;

pub use client::{ADMIN_TOKEN_ENV, ADMIN_URL_ENV, DEFAULT_ADMIN_URL};
pub use config_file::{CONFIG_ENV, DEFAULT_CONFIG_FILE, SEARCH_PATH, SYSTEM_CONFIG_FILE};
pub use environment::environment_warnings;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The admin API refused the request, a lookup / unrevoke found nothing, or the command
/// failed otherwise (the gateway could not start, the store is inconsistent).
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments or configuration (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// The admin API cannot be reached (sysexits `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// What `revgate --help` and the manual page say after the commands: files, environment,
/// exit status.
const AFTER_LONG_HELP: &str = "\
Files:
  --config FILE, else $REVGATE_CONFIG, else ./revgate.toml when it exists, else
  /etc/revgate/revgate.toml (serve, check-config, check-store, and the admin commands when
  they need server.admin_listen or server.admin_token from it).

Environment:
  REVGATE_CONFIG              the config file when --config is not given
  REVGATE_ADMIN_URL           the admin API of the admin commands when --admin is not given
  REVGATE_ADMIN_TOKEN         the admin token: sent by the admin commands when --admin-token
                              is not given, and server.admin_token of serve (and of every
                              config read) unless REVGATE_SERVER_ADMIN_TOKEN is set
  REVGATE_<SECTION>_<KEY>     overrides a scalar key of [server], [auth], [backchannel],
                              [revoke_endpoint], [store] or [cluster], e.g.
                              REVGATE_SERVER_LISTEN, REVGATE_CLUSTER_NODE_ID
  RUST_LOG                    log filter of serve and demo (default info)
  Any other REVGATE_* variable is reported as unknown (a typo would otherwise be ignored).

Exit status:
  0   success
  1   refused or failed: the admin API refused, a lookup / unrevoke found nothing, the
      gateway could not start, the store is inconsistent or damaged
  64  usage error or bad configuration
  69  the admin API cannot be reached";

/// revgate — an API gateway that verifies JWT bearer tokens and refuses revoked ones
/// (jti, session or subject), with revocations from OpenID Connect Back-Channel Logout,
/// an RFC 7009-style endpoint and this CLI. Revocations persist in an embedded store.
#[derive(Parser, Debug)]
#[command(name = "revgate", version, about, long_about = None, after_long_help = AFTER_LONG_HELP)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway
    ///
    /// Serves the proxy listener (server.listen) and the admin API (server.admin_listen).
    /// SIGHUP (or POST /v1/reload) re-reads the config file without a restart; SIGTERM /
    /// SIGINT drain in-flight requests, flush the store and exit 0. Exit 64: bad config.
    Serve {
        /// Configuration file [default: $REVGATE_CONFIG, else ./revgate.toml when it
        /// exists, else /etc/revgate/revgate.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Self-contained demo: gateway (127.0.0.1:8080), admin (:9090), echo upstream (:8081),
    /// dev signing key; prints a valid token and commands to try revocation; store under data/.
    Demo,
    /// Validate a config file and print the effective settings
    ///
    /// Runs exactly the checks a reload runs (TOML, unknown keys, values, REVGATE_*
    /// overrides, every jwks_file and hmac_secret_file loaded; jwks_url is not fetched).
    /// Exit 0 and the effective settings (admin_token shown as "<set>"), or exit 64 and one
    /// line naming the key and the problem. Settings that are valid but probably wrong
    /// (an issuer whose audiences and logout_audiences overlap without require_typ) are
    /// printed as "warning:" lines on stderr and still exit 0.
    CheckConfig {
        /// Configuration file [default: $REVGATE_CONFIG, else ./revgate.toml when it
        /// exists, else /etc/revgate/revgate.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Offline: verify every record has its expiry-index entry and vice versa; report
    /// counts; --repair removes orphans. Exit 0 when consistent (or repaired), 1 otherwise.
    CheckStore {
        /// Configuration file (for store.path) [default: $REVGATE_CONFIG, else
        /// ./revgate.toml when it exists, else /etc/revgate/revgate.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Repair: remove orphan index entries, re-index orphan records.
        #[arg(long)]
        repair: bool,
    },
    /// Read ISSUER_URL/.well-known/openid-configuration and its JWKS, print a ready
    /// [[issuer]] block (TOML) for that provider, with its known quirks set and commented,
    /// and warnings on stderr
    ///
    /// Paste the block into the config, fill in what stderr says is left (register
    /// https://<gateway>/backchannel-logout at the provider, pick the audience), then run
    /// check-config. Exit 1 with one line when the provider is unreachable, answers
    /// something that is not JSON, or names another issuer.
    Discover {
        /// The provider's issuer URL (what its tokens carry in `iss`).
        #[arg(value_name = "ISSUER_URL")]
        issuer_url: String,
        /// The client whose back-channel logout tokens the gateway receives
        /// (logout_audiences).
        #[arg(long, value_name = "ID")]
        client_id: Option<String>,
        /// The `aud` of the access tokens the gateway accepts (audiences).
        #[arg(long, value_name = "AUD")]
        audience: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    ///
    /// e.g. `revgate completions bash > /etc/bash_completion.d/revgate`, or
    /// `revgate completions zsh > "${fpath[1]}/_revgate"`, or
    /// `revgate completions fish > ~/.config/fish/completions/revgate.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page revgate(1) (roff) to stdout, or write it and one page per
    /// subcommand into a directory
    ///
    /// e.g. `revgate man | man -l -`, or
    /// `revgate man --dir /usr/local/share/man/man1`.
    Man {
        /// Write revgate.1 and revgate-SUBCOMMAND.1 for every subcommand here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The admin subcommands (revoke … import), flattened in beside the others.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// Reports a command line clap refused (or `--help` / `--version`, which it also hands
/// back as an "error") and returns the exit status: 0 for help and version (printed on
/// stdout), [`EXIT_USAGE`] for every usage error (printed on stderr, clap's own text with
/// its hint; clap alone would exit 2).
pub fn usage_error(err: &clap::Error) -> u8 {
    let _ = err.print();
    if err.use_stderr() {
        EXIT_USAGE
    } else {
        EXIT_OK
    }
}

/// Runs a parsed command line to its end and returns the process exit status. Output goes
/// to stdout; a failure prints one line on stderr (`revgate: ...`, or `revgate NAME: ...`
/// for an admin subcommand).
pub fn run(cli: Cli) -> u8 {
    let warnings = environment_warnings(std::env::vars_os());
    let logs = matches!(cli.command, Command::Serve { .. } | Command::Demo);
    if !logs {
        // serve and demo log them once their logger is set up.
        let mut err = std::io::stderr().lock();
        for w in &warnings {
            let _ = writeln!(err, "revgate: warning: {w}");
        }
    }
    let done = match cli.command {
        Command::Serve { config } => serve::serve(config.as_deref(), &warnings),
        Command::Demo => serve::demo(&warnings),
        Command::CheckConfig { config } => serve::check_config(config.as_deref()),
        Command::CheckStore { config, repair } => offline::check_store(config.as_deref(), repair),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "revgate", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Discover {
            issuer_url,
            client_id,
            audience,
        } => serve::discover(&issuer_url, client_id, audience),
        Command::Admin(cmd) => return runtime().block_on(commands::run(cmd)),
    };
    match done {
        Ok(()) => EXIT_OK,
        Err(err) => output::fail("revgate", &err),
    }
}

/// `man`: revgate(1) on stdout, or every page into `dir`.
fn man(dir: Option<&std::path::Path>) -> Result<(), output::CliError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let failed =
        |e: std::io::Error| output::CliError::Failed(format!("cannot write the manual page: {e}"));
    match dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir).map_err(|e| {
            output::CliError::Failed(format!(
                "cannot write manual pages to {}: {e}",
                dir.display()
            ))
        }),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(failed)?;
            output::print_text(&String::from_utf8_lossy(&page));
            Ok(())
        }
    }
}

/// The async runtime. `TOKIO_WORKER_THREADS` sizes the worker pool (default: one per
/// CPU); with exactly one worker the single-threaded scheduler is used, which saves the
/// work-stealing machinery when the gateway is pinned to one core (blocking work such as
/// store flushes still runs on the blocking pool).
fn runtime() -> tokio::runtime::Runtime {
    let one_worker = std::env::var("TOKIO_WORKER_THREADS")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    let mut builder = if one_worker {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().expect("tokio runtime")
}

/// How to reach the admin API; accepted by every admin subcommand after its arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminConnection {
    /// Admin API base URL, or host:port [default: $REVGATE_ADMIN_URL, else
    /// server.admin_listen of the config, else http://127.0.0.1:9090]
    #[arg(long = "admin", value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token for the admin API [default: $REVGATE_ADMIN_TOKEN, else
    /// server.admin_token of the config]
    #[arg(long = "admin-token", value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Config file to take server.admin_listen and server.admin_token from [default:
    /// $REVGATE_CONFIG, else ./revgate.toml or /etc/revgate/revgate.toml when it exists]
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How an admin command prints its result (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people (the default)
    #[default]
    Table,
    /// The admin API's JSON (one record per line for `list`), for scripts
    Json,
}

/// `--output table|json`, accepted by every admin command that prints a result.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArg {
    /// Output format
    #[arg(
        long = "output",
        short = 'o',
        value_enum,
        value_name = "FORMAT",
        default_value_t
    )]
    pub output: OutputFormat,
}

/// The admin subcommands; [`Command`] flattens them into the top-level command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Revoke a jti, sid or sub, or the jti of a token until its exp
    ///
    /// `revoke jti|sid|sub VALUE [--issuer ISS] [--ttl DURATION | --until RFC3339] [--reason TEXT]`
    /// revokes through the admin API (merging with an existing revocation: the later
    /// issued_before and expiry win). `revoke token JWT [--reason TEXT]` verifies the token
    /// and revokes its jti until its exp + leeway; pass `-` as JWT to read it from stdin.
    /// Prints the stored record.
    Revoke(RevokeArgs),
    /// Remove a revocation (exits 1 when there is none)
    Unrevoke(TargetArgs),
    /// Show a revocation (exits 1 when there is none)
    Lookup(TargetArgs),
    /// List revocations as a table (KIND ISSUER VALUE EXPIRES_AT SOURCE), or one record
    /// JSON per line (--output json)
    List(ListArgs),
    /// Show revocation counts per kind, the last sweep, and back-channel logouts per issuer
    /// (accepted, refused, the last refusal's time and reason)
    Stats(StatsArgs),
    /// Purge expired revocations now and print how many went
    Sweep(SweepArgs),
    /// Write every revocation as NDJSON (one record JSON per line) to stdout
    ///
    /// `export [--kind K] > FILE.ndjson` streams `GET /v1/export` from the running
    /// gateway; `export --offline --config FILE` reads the store of a stopped gateway
    /// directly (refused while a gateway holds the store; a damaged store is read as far
    /// as sled can, with a warning). Always NDJSON (the backup format): no --output.
    Export(ExportArgs),
    /// Merge NDJSON records (from an export or another system) into the revocations
    ///
    /// Each line merges as a revocation would (later issued_before and expiry win) and
    /// keeps its issuer, source, reason and revoked_at; expired lines are skipped; bad lines
    /// are reported with their number while the good ones land. Ends with the counts as
    /// JSON; exits 1 when a line was rejected. `--dry-run` validates only and says on
    /// stderr that nothing was stored. `--offline
    /// --config FILE` writes into the store of a stopped gateway directly; a damaged store
    /// (one the gateway refuses) is moved aside first, and a new store gets what sled
    /// can still read of it, then the file.
    Import(ImportArgs),
}

/// Arguments of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Only this kind
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Read the store directly (the gateway must be stopped), named by the config file
    #[arg(long)]
    pub offline: bool,
    /// How to reach the admin API (or, with --offline, the config naming the store).
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// NDJSON file of records (`-` for stdin)
    #[arg(value_name = "FILE.ndjson")]
    pub file: PathBuf,
    /// Validate only; store nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write into the store directly (the gateway must be stopped), named by the config
    /// file
    #[arg(long)]
    pub offline: bool,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API (or, with --offline, the config naming the store).
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// What `revoke` matches on: a revocation kind, or `token` for a whole JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RevokeKind {
    /// Token id (or the sha256: digest of a token without jti)
    Jti,
    /// Session id
    Sid,
    /// Subject
    Sub,
    /// A whole JWT: its jti is revoked until its exp
    Token,
}

/// A revocation kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Token id
    Jti,
    /// Session id
    Sid,
    /// Subject
    Sub,
}

impl KindArg {
    /// The store's kind.
    pub fn kind(self) -> Kind {
        match self {
            KindArg::Jti => Kind::Jti,
            KindArg::Sid => Kind::Sid,
            KindArg::Sub => Kind::Sub,
        }
    }
}

/// Arguments of `revoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// jti, sid, sub, or token
    #[arg(value_enum, value_name = "KIND")]
    pub kind: RevokeKind,
    /// The value to revoke; with `token`, the JWT (`-` reads it from stdin)
    #[arg(value_name = "VALUE")]
    pub value: String,
    /// Issuer the value belongs to (may be left out when one issuer is configured)
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,
    /// Keep the revocation this long (e.g. 90s, 15m, 24h) instead of the default
    #[arg(long, value_name = "DURATION", conflicts_with = "until")]
    pub ttl: Option<String>,
    /// Keep the revocation until this RFC 3339 instant instead of the default
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// Why (stored with the record)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `unrevoke` and `lookup`: one revocation key.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// jti, sid or sub
    #[arg(value_enum, value_name = "KIND")]
    pub kind: KindArg,
    /// The revoked value
    #[arg(value_name = "VALUE")]
    pub value: String,
    /// Issuer the value belongs to (may be left out when one issuer is configured)
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only this kind
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Option<KindArg>,
    /// At most this many records [default: all]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// The same as --output json (kept for scripts written before --output)
    #[arg(long, hide = true, conflicts_with = "output")]
    pub json: bool,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The same as --output json (kept for scripts written before --output)
    #[arg(long, hide = true, conflicts_with = "output")]
    pub json: bool,
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArg,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

impl AdminCommand {
    /// The subcommand name, for error lines.
    pub fn name(&self) -> &'static str {
        match self {
            AdminCommand::Revoke(_) => "revoke",
            AdminCommand::Unrevoke(_) => "unrevoke",
            AdminCommand::Lookup(_) => "lookup",
            AdminCommand::List(_) => "list",
            AdminCommand::Stats(_) => "stats",
            AdminCommand::Sweep(_) => "sweep",
            AdminCommand::Export(_) => "export",
            AdminCommand::Import(_) => "import",
        }
    }

    /// The `--output` format (`--json` of `list` and `stats` counts as `json`; `export`
    /// always writes NDJSON).
    pub(crate) fn output(&self) -> OutputFormat {
        match self {
            AdminCommand::Revoke(a) => a.output.output,
            AdminCommand::Unrevoke(a) | AdminCommand::Lookup(a) => a.output.output,
            AdminCommand::List(a) if a.json => OutputFormat::Json,
            AdminCommand::List(a) => a.output.output,
            AdminCommand::Stats(a) if a.json => OutputFormat::Json,
            AdminCommand::Stats(a) => a.output.output,
            AdminCommand::Sweep(a) => a.output.output,
            AdminCommand::Export(_) => OutputFormat::Json,
            AdminCommand::Import(a) => a.output.output,
        }
    }

    pub(crate) fn connection(&self) -> &AdminConnection {
        match self {
            AdminCommand::Revoke(a) => &a.connection,
            AdminCommand::Unrevoke(a) | AdminCommand::Lookup(a) => &a.connection,
            AdminCommand::List(a) => &a.connection,
            AdminCommand::Stats(a) => &a.connection,
            AdminCommand::Sweep(a) => &a.connection,
            AdminCommand::Export(a) => &a.connection,
            AdminCommand::Import(a) => &a.connection,
        }
    }
}
