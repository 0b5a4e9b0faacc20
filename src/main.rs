//! The `revgate` binary: parses the command line, loads the configuration, sets up
//! logging, opens the store, binds the listeners and hands over to the library.
//! Exit status: 0 success, 64 bad configuration or usage, 1 other failures.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use revgate::config::{Config, LogFormat};

/// Exit status for a bad configuration or usage (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// revgate — an API gateway that verifies JWT bearer tokens and refuses revoked ones
/// (jti, session or subject), with revocations from OpenID Connect Back-Channel Logout,
/// an RFC 7009-style endpoint and this CLI. Revocations persist in an embedded store.
#[derive(Parser, Debug)]
#[command(name = "revgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (default config: ./revgate.toml)
    ///
    /// Serves the proxy listener (server.listen) and the admin API (server.admin_listen).
    /// SIGHUP (or POST /v1/reload) re-reads the config file without a restart; SIGTERM /
    /// SIGINT drain in-flight requests, flush the store and exit 0. Exit 64: bad config.
    Serve {
        /// Configuration file.
        #[arg(long, value_name = "FILE", default_value = "revgate.toml")]
        config: PathBuf,
    },
    /// Self-contained demo: gateway (127.0.0.1:8080), admin (:9090), echo upstream (:8081),
    /// dev signing key; prints a valid token and commands to try revocation; store under data/.
    Demo,
    /// Validate a config file and print the effective settings
    ///
    /// Runs exactly the checks a reload runs (TOML, unknown keys, values, REVGATE_*
    /// overrides, every jwks_file and hmac_secret_file loaded; jwks_url is not fetched).
    /// Exit 0 and the effective settings (admin_token shown as "<set>"), or exit 64 and one
    /// line naming the key and the problem.
    CheckConfig {
        /// Configuration file.
        #[arg(long, value_name = "FILE", default_value = "revgate.toml")]
        config: PathBuf,
    },
    /// Offline: verify every record has its expiry-index entry and vice versa; report
    /// counts; --repair removes orphans. Exit 0 when consistent (or repaired), 1 otherwise.
    CheckStore {
        /// Configuration file (for store.path).
        #[arg(long, value_name = "FILE", default_value = "revgate.toml")]
        config: PathBuf,
        /// Repair: remove orphan index entries, re-index orphan records.
        #[arg(long)]
        repair: bool,
    },
    #[command(flatten)]
    Admin(revgate::cli::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Demo => {
            init_tracing(LogFormat::Text);
            match runtime().block_on(revgate::demo::run_demo()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { config } => match check_config(&config) {
            Ok(c) => {
                println!("# {}: OK", config.display());
                print!("{}", c.effective_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::CheckStore { config, repair } => check_store(&config, repair),
        Command::Admin(cmd) => {
            let code = runtime().block_on(revgate::cli::run(cmd));
            ExitCode::from(u8::try_from(code).unwrap_or(1))
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

fn fail(msg: &str) -> ExitCode {
    eprintln!("revgate: {msg}");
    ExitCode::from(1)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("revgate: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Config file plus its local keys, exactly as a reload checks it (exit 64 when bad).
fn check_config(path: &Path) -> Result<Config, ExitCode> {
    revgate::reload::check_file(path).map_err(|e| {
        eprintln!("revgate: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(revgate::logline::LogWriter);
    let _ = match format {
        LogFormat::Json => builder.event_format(revgate::logline::JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn serve(path: &Path) -> ExitCode {
    let config = match check_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_tracing(config.server.log_format);
    runtime().block_on(async move {
        let started =
            revgate::Gateway::start(config, Some(path.to_path_buf()), revgate::clock::system());
        match started.await {
            Ok(gateway) => {
                gateway.run(revgate::server::shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        }
    })
}

/// The one line for a store that cannot be opened: a damaged store's line says it all.
fn store_open_error(path: &Path, e: &revgate::store::StoreError) -> String {
    match e {
        revgate::store::StoreError::Damaged(_) => e.to_string(),
        other => format!("cannot open store {}: {other}", path.display()),
    }
}

fn check_store(path: &Path, repair: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match revgate::store::RevocationStore::open_with(
        &config.store.path,
        config.store.cache_bytes,
        revgate::clock::system(),
        revgate::store::OpenMode::Check,
    ) {
        Ok(s) => s,
        Err(e) => return fail(&store_open_error(&config.store.path, &e)),
    };
    let mark = store.mark_report();
    match store.check_consistency(repair) {
        Ok(r) => {
            println!("store:                 {}", config.store.path.display());
            match mark.acknowledged {
                Some((commit, c)) => println!(
                    "acknowledged:          commit {commit} (jti {}, sid {}, sub {}) per {}; the store holds commit {}",
                    c.jti,
                    c.sid,
                    c.sub,
                    mark.path.display(),
                    mark.store_commit
                ),
                None => println!(
                    "acknowledged:          no mark yet ({} is created when the gateway starts)",
                    mark.path.display()
                ),
            }
            println!("records:               {}", r.records);
            println!("index entries:         {}", r.index_entries);
            println!("records without index: {}", r.records_without_index);
            println!("index without record:  {}", r.index_without_record);
            let orphans = r.records_without_index + r.index_without_record;
            if orphans == 0 {
                println!("consistent");
                ExitCode::SUCCESS
            } else if repair && r.repaired {
                println!("repaired {orphans} orphan(s)");
                ExitCode::SUCCESS
            } else {
                eprintln!("revgate: store has {orphans} orphan(s); run check-store --repair");
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&format!("check-store: {e}")),
    }
}
