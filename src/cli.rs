//! Admin subcommands of the CLI, over HTTP to the admin API (SPEC §2, §5).
//!
//! | subcommand | request |
//! |---|---|
//! | `revoke jti\|sid\|sub VALUE` | `POST /v1/revocations` |
//! | `revoke token JWT` | `POST /v1/revocations/token` |
//! | `unrevoke KIND VALUE` | `DELETE /v1/revocations/{kind}/{value}?issuer=` |
//! | `lookup KIND VALUE` | `GET /v1/revocations/{kind}/{value}?issuer=` |
//! | `list` | `GET /v1/revocations?kind=&limit=&after=`, following `next` |
//! | `stats` | `GET /v1/stats` |
//! | `sweep` | `POST /v1/sweep` |
//!
//! Where the admin API is: `--admin`, else `server.admin_listen` of `--config FILE` (or of
//! `./revgate.toml` when it exists), else [`DEFAULT_ADMIN_URL`]. The bearer token:
//! `--admin-token`, else `$REVGATE_ADMIN_TOKEN`, else that config's `server.admin_token`.
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_FAILURE`] (the API refused the request, or a lookup /
//! unrevoke found nothing), [`EXIT_USAGE`] (bad arguments or configuration) and
//! [`EXIT_UNAVAILABLE`] (the admin API cannot be reached). A failure prints exactly one
//! line on stderr.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};

use crate::config::{Config, ConfigError};
use crate::store::Kind;

/// Success.
pub const EXIT_OK: i32 = 0;
/// The admin API refused the request, or a lookup / unrevoke found nothing.
pub const EXIT_FAILURE: i32 = 1;
/// Bad arguments or configuration (`EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;
/// The admin API cannot be reached (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// Where the admin API is when neither `--admin` nor a config file says.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";
/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "revgate.toml";
/// Environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "REVGATE_ADMIN_TOKEN";

/// Whole-request bound (connect, send, read the answer): the CLI never hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on establishing the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Records asked for per `GET /v1/revocations` page.
const LIST_PAGE_SIZE: u64 = 500;
/// Longest error detail from an answer body shown on the error line.
const MAX_ERROR_DETAIL_CHARS: usize = 300;
/// Largest JWT read from stdin by `revoke token -`.
const MAX_STDIN_TOKEN_BYTES: u64 = 64 * 1024;

/// How to reach the admin API; accepted by every admin subcommand after its arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminConnection {
    /// Admin API base URL, or host:port [default: server.admin_listen of the config, else
    /// http://127.0.0.1:9090]
    #[arg(long = "admin", value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token for the admin API [default: $REVGATE_ADMIN_TOKEN, else
    /// server.admin_token of the config]
    #[arg(long = "admin-token", value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Config file to take server.admin_listen and server.admin_token from [default:
    /// ./revgate.toml when it exists]
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The admin subcommands; `main` flattens them into the top-level command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Revoke a jti, sid or sub, or the jti of a token until its exp
    ///
    /// `revoke jti|sid|sub VALUE [--issuer ISS] [--ttl DURATION | --until RFC3339] [--reason TEXT]`
    /// revokes through the admin API (merging with an existing revocation: the later
    /// issued_before and expiry win). `revoke token JWT [--reason TEXT]` verifies the token
    /// and revokes its jti until its exp + leeway; pass `-` as JWT to read it from stdin.
    /// Prints the stored record as JSON.
    Revoke(RevokeArgs),
    /// Remove a revocation (exits 1 when there is none)
    Unrevoke(TargetArgs),
    /// Show a revocation as JSON (exits 1 when there is none)
    Lookup(TargetArgs),
    /// List revocations as a table (KIND ISSUER VALUE EXPIRES_AT SOURCE), or JSON lines
    List(ListArgs),
    /// Show revocation counts per kind and the last sweep
    Stats(StatsArgs),
    /// Purge expired revocations now and print how many went
    Sweep(SweepArgs),
    /// Write every revocation as NDJSON (one record JSON per line) to stdout
    ///
    /// `export [--kind K] > FILE.ndjson` streams `GET /v1/export` from the running
    /// gateway; `export --offline --config FILE` reads the store of a stopped gateway
    /// directly (refused while a gateway holds the store; a damaged store is read as far
    /// as sled can, with a warning).
    Export(ExportArgs),
    /// Merge NDJSON records (from an export or another system) into the revocations
    ///
    /// Each line merges as a revocation would (later issued_before and expiry win) and
    /// keeps its issuer, source, reason and revoked_at; expired lines are skipped; bad lines
    /// are reported with their number while the good ones land. Ends with the counts as
    /// JSON; exits 1 when a line was rejected. `--dry-run` validates only. `--offline
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
    /// Read the store directly (the gateway must be stopped); needs --config
    #[arg(long, requires = "config")]
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
    /// Write into the store directly (the gateway must be stopped); needs --config
    #[arg(long, requires = "config")]
    pub offline: bool,
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
    /// One record JSON per line instead of a table
    #[arg(long)]
    pub json: bool,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Print the answer JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// How to reach the admin API.
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Arguments of `sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
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

    fn connection(&self) -> &AdminConnection {
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

/// Runs an admin subcommand and returns the process exit code. Output goes to stdout;
/// a failure prints one line on stderr.
pub async fn run(cmd: AdminCommand) -> i32 {
    let name = cmd.name();
    match execute(cmd).await {
        Ok(()) => EXIT_OK,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "revgate {name}: {}",
                err.message()
            );
            err.exit_code()
        }
    }
}

/// Why a subcommand failed; decides the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CliError {
    /// Bad arguments or configuration: [`EXIT_USAGE`].
    Usage(String),
    /// The admin API answered with an error, or something unexpected: [`EXIT_FAILURE`].
    Refused(String),
    /// The admin API could not be reached: [`EXIT_UNAVAILABLE`].
    Unavailable(String),
}

impl CliError {
    fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused(_) => EXIT_FAILURE,
            CliError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }

    /// The message, on one line.
    fn message(&self) -> String {
        let (CliError::Usage(m) | CliError::Refused(m) | CliError::Unavailable(m)) = self;
        one_line(m)
    }
}

async fn execute(cmd: AdminCommand) -> Result<(), CliError> {
    match &cmd {
        AdminCommand::Export(args) if args.offline => return export_offline(args).await,
        AdminCommand::Import(args) if args.offline => return import_offline(args).await,
        _ => {}
    }
    // Check the arguments before touching the config or the network.
    let revoke_request = match &cmd {
        AdminCommand::Revoke(args) => Some(revoke_request(args, read_token_from_stdin)?),
        AdminCommand::Unrevoke(args) | AdminCommand::Lookup(args) => {
            check_path_value(&args.value)?;
            None
        }
        _ => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    let config = load_config(cmd.connection(), Path::new(DEFAULT_CONFIG_FILE), &env)?;
    let target = resolve_target(cmd.connection(), config.as_ref(), &env)?;
    let client = AdminClient::new(target)?;
    match cmd {
        AdminCommand::Revoke(_) => {
            let (segments, body) = revoke_request.expect("built above");
            let url = client.url(&segments, &[]);
            let record = client.call(Method::POST, url, Some(body)).await?;
            print_json_pretty(&record.unwrap_or(Value::Null));
        }
        AdminCommand::Lookup(args) => {
            let url = client.revocation_url(&args);
            let record = client.call(Method::GET, url, None).await?;
            print_json_pretty(&record.unwrap_or(Value::Null));
        }
        AdminCommand::Unrevoke(args) => {
            let url = client.revocation_url(&args);
            client.call(Method::DELETE, url, None).await?;
            let issuer = match &args.issuer {
                Some(iss) => format!("issuer {iss:?}"),
                None => "the configured issuer".to_string(),
            };
            print_line(&format!(
                "unrevoked {} {:?} ({issuer})",
                args.kind.kind(),
                args.value
            ));
        }
        AdminCommand::List(args) => list(&client, &args).await?,
        AdminCommand::Stats(args) => {
            let url = client.url(&["v1", "stats"], &[]);
            let stats = client.call(Method::GET, url, None).await?;
            let stats = stats.unwrap_or(Value::Null);
            if args.json {
                print_json_pretty(&stats);
            } else {
                print_text(&stats_table(&stats));
            }
        }
        AdminCommand::Sweep(_) => {
            let url = client.url(&["v1", "sweep"], &[]);
            let answer = client.call(Method::POST, url, None).await?;
            print_json_pretty(&answer.unwrap_or(Value::Null));
        }
        AdminCommand::Export(args) => export_online(&client, &args).await?,
        AdminCommand::Import(args) => import_online(&client, &args).await?,
    }
    Ok(())
}

/// Bulk transfers run as long as they need; only connecting is bounded.
fn transfer_client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| CliError::Unavailable(format!("cannot set up the HTTP client: {e}")))
}

/// The config named by `--config` (required with `--offline`).
fn offline_config(conn: &AdminConnection) -> Result<Config, CliError> {
    let path = conn
        .config
        .as_ref()
        .ok_or_else(|| CliError::Usage("--offline needs --config FILE".to_string()))?;
    Config::load(path)
        .map_err(|e| CliError::Usage(format!("invalid config {}: {e}", path.display())))
}

/// The error of an offline open, on one line.
fn offline_open_error(config: &Config, e: crate::store::StoreError) -> CliError {
    match e {
        crate::store::StoreError::Locked(_) => CliError::Refused(format!(
            "{e}: stop the gateway, or run the command without --offline"
        )),
        crate::store::StoreError::Damaged(d) => CliError::Refused(d.to_string()),
        other => CliError::Refused(format!(
            "cannot open store {}: {other}",
            config.store.path.display()
        )),
    }
}

/// Opens the store named by `--config` for an offline export or a dry-run import, in
/// `mode`; a damaged store that sled can still read is read as it is, saying so on stderr.
fn open_offline_store(
    conn: &AdminConnection,
    mode: crate::store::OpenMode,
) -> Result<(Config, crate::store::RevocationStore), CliError> {
    let config = offline_config(conn)?;
    let store = crate::store::RevocationStore::open_with(
        &config.store.path,
        config.store.cache_bytes,
        crate::clock::system(),
        mode,
    )
    .map_err(|e| offline_open_error(&config, e))?;
    if let Some(d) = store.damage() {
        eprintln!(
            "revgate: store {} is damaged: {}; reading what it still holds",
            d.store.display(),
            d.problem
        );
    }
    Ok((config, store))
}

async fn export_offline(args: &ExportArgs) -> Result<(), CliError> {
    let (_config, store) = open_offline_store(&args.connection, crate::store::OpenMode::Salvage)?;
    let kind = args.kind.map(|k| k.kind());
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        for item in store.iter_records(kind) {
            let record = item.map_err(|e| CliError::Refused(format!("export stopped: {e}")))?;
            if let Err(e) = out.write_all(&crate::backup::export_line(&record)) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(CliError::Refused(format!("cannot write to stdout: {e}")));
            }
        }
        out.flush()
            .map_err(|e| CliError::Refused(format!("cannot write to stdout: {e}")))
    })
    .await
    .map_err(|e| CliError::Refused(format!("export task failed: {e}")))?
}

async fn export_online(client: &AdminClient, args: &ExportArgs) -> Result<(), CliError> {
    use futures_util::StreamExt as _;
    let kind = args.kind.map(|k| k.kind().as_str());
    let query: Vec<(&str, &str)> = kind.map(|k| ("kind", k)).into_iter().collect();
    let url = client.url(&["v1", "export"], &query);
    let mut request = transfer_client()?.get(url);
    if let Some(auth) = &client.authorization {
        request = request.header(AUTHORIZATION, auth.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| client.transport_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        let bytes = response.bytes().await.unwrap_or_default();
        return Err(CliError::Refused(api_error_line(status, &bytes)));
    }
    let mut stream = response.bytes_stream();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CliError::Unavailable(format!("export interrupted: {e}")))?;
        if let Err(e) = out.write_all(&chunk) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(CliError::Refused(format!("cannot write to stdout: {e}")));
        }
    }
    out.flush()
        .map_err(|e| CliError::Refused(format!("cannot write to stdout: {e}")))
}

/// Chunk size when reading an import file.
const IMPORT_READ_CHUNK: usize = 256 * 1024;

/// The input file (or stdin) as a stream of chunks, reporting progress on a terminal.
async fn import_input(
    file: &Path,
) -> Result<
    (
        std::pin::Pin<
            Box<
                dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync,
            >,
        >,
        Option<u64>,
    ),
    CliError,
> {
    use tokio::io::AsyncReadExt as _;
    let (reader, total): (
        Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>,
        Option<u64>,
    ) = if file == Path::new("-") {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
        let len = f.metadata().await.ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; IMPORT_READ_CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    Ok((Box::pin(stream), total))
}

/// Shows `done / total` bytes on stderr when it is a terminal.
struct Progress {
    total: Option<u64>,
    enabled: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        use std::io::IsTerminal as _;
        Progress {
            total,
            enabled: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }
    fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = std::time::Instant::now();
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let line = match self.total {
            Some(t) if t > 0 => format!(
                "\rimport: {:.1} / {:.1} MiB ({:.0}%)",
                mb(done),
                mb(t),
                done as f64 * 100.0 / t as f64
            ),
            _ => format!("\rimport: {:.1} MiB", mb(done)),
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    fn finish(&self) {
        if self.enabled {
            let _ = std::io::stderr().write_all(b"\n");
        }
    }
}

fn import_result(summary: &Value) -> Result<(), CliError> {
    print_json_pretty(summary);
    let rejected = summary
        .get("rejected_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if rejected > 0 {
        return Err(CliError::Refused(format!(
            "{rejected} line(s) rejected (listed above); the other lines were imported"
        )));
    }
    Ok(())
}

async fn import_offline(args: &ImportArgs) -> Result<(), CliError> {
    let (config, store) = if args.dry_run {
        open_offline_store(&args.connection, crate::store::OpenMode::Salvage)?
    } else {
        open_restore_store(&args.connection).await?
    };
    let (input, total) = import_input(&args.file).await?;
    let mut progress = Progress::new(total);
    let now = crate::clock::system().now();
    let summary = crate::backup::import_ndjson(&store, &config, now, args.dry_run, input, |done| {
        progress.update(done)
    })
    .await
    .map_err(|e| CliError::Refused(e.to_string()))?;
    progress.finish();
    import_result(&serde_json::to_value(&summary).unwrap_or_default())
}

/// Opens the store for an offline import: a damaged store is replaced by a new one
/// holding what could be read back from it (SPEC §6 recovery); says so on stderr.
async fn open_restore_store(
    conn: &AdminConnection,
) -> Result<(Config, crate::store::RevocationStore), CliError> {
    let config = offline_config(conn)?;
    let (store, restored) = crate::store::RevocationStore::open_for_restore(
        &config.store.path,
        config.store.cache_bytes,
        crate::clock::system(),
    )
    .await
    .map_err(|e| offline_open_error(&config, e))?;
    if let Some(r) = restored {
        let moved = match &r.moved_to {
            Some(p) => format!("moved aside to {}", p.display()),
            None => "it was gone".to_string(),
        };
        let stopped = r
            .salvage_error
            .map(|e| format!(" (sled could read no further: {e})"))
            .unwrap_or_default();
        eprintln!(
            "revgate: store {} was damaged: {}; {moved}; a new store holds the {} unexpired \
             record(s) read back from it{stopped}, and the import follows",
            r.damage.store.display(),
            r.damage.problem,
            r.salvaged
        );
    }
    Ok((config, store))
}

async fn import_online(client: &AdminClient, args: &ImportArgs) -> Result<(), CliError> {
    use futures_util::StreamExt as _;
    let (input, total) = import_input(&args.file).await?;
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(total)));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (p2, s2) = (progress.clone(), sent.clone());
    let counted = input.map(move |chunk| {
        if let Ok(c) = &chunk {
            let done =
                s2.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed) + c.len() as u64;
            if let Ok(mut p) = p2.lock() {
                p.update(done);
            }
        }
        chunk
    });
    let query: Vec<(&str, &str)> = if args.dry_run {
        vec![("dry_run", "true")]
    } else {
        vec![]
    };
    let url = client.url(&["v1", "import"], &query);
    let mut request = transfer_client()?
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(counted));
    if let Some(auth) = &client.authorization {
        request = request.header(AUTHORIZATION, auth.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| client.transport_error(&e))?;
    if let Ok(p) = progress.lock() {
        p.finish();
    }
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| client.transport_error(&e))?;
    if !status.is_success() {
        return Err(CliError::Refused(api_error_line(status, &bytes)));
    }
    let summary: Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Refused(format!(
            "the admin API answered with a body that is not JSON: {e}"
        ))
    })?;
    import_result(&summary)
}

/// Reads the JWT for `revoke token -` from stdin (bounded).
fn read_token_from_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_TOKEN_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| CliError::Usage(format!("cannot read the token from stdin: {e}")))?;
    Ok(text)
}

/// The path segments and JSON body of a `revoke`, checked locally: a bad `--ttl` or
/// `--until` is a usage error before anything is sent. `stdin` supplies the JWT for
/// `revoke token -`.
fn revoke_request(
    args: &RevokeArgs,
    stdin: impl FnOnce() -> Result<String, CliError>,
) -> Result<(Vec<&'static str>, Value), CliError> {
    if args.kind == RevokeKind::Token {
        let extra = [
            ("--issuer", args.issuer.is_some()),
            ("--ttl", args.ttl.is_some()),
            ("--until", args.until.is_some()),
        ];
        if let Some((flag, _)) = extra.iter().find(|(_, given)| *given) {
            return Err(CliError::Usage(format!(
                "{flag} does not apply to `revoke token`: the token's issuer and exp decide"
            )));
        }
        let token = if args.value == "-" {
            stdin()?
        } else {
            args.value.clone()
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(CliError::Usage("the token is empty".to_string()));
        }
        let mut body = Map::new();
        body.insert("token".into(), json!(token));
        if let Some(reason) = &args.reason {
            body.insert("reason".into(), json!(reason));
        }
        return Ok((vec!["v1", "revocations", "token"], Value::Object(body)));
    }

    let kind = match args.kind {
        RevokeKind::Jti => Kind::Jti,
        RevokeKind::Sid => Kind::Sid,
        RevokeKind::Sub => Kind::Sub,
        RevokeKind::Token => unreachable!("handled above"),
    };
    if args.value.is_empty() {
        return Err(CliError::Usage("VALUE must not be empty".to_string()));
    }
    let mut body = Map::new();
    body.insert("kind".into(), json!(kind.as_str()));
    body.insert("value".into(), json!(args.value));
    if let Some(issuer) = &args.issuer {
        body.insert("issuer".into(), json!(issuer));
    }
    if let Some(ttl) = &args.ttl {
        let parsed = humantime::parse_duration(ttl.trim())
            .map_err(|e| CliError::Usage(format!("--ttl {ttl:?}: not a duration ({e})")))?;
        if parsed.is_zero() {
            return Err(CliError::Usage(format!(
                "--ttl {ttl:?}: must be greater than 0"
            )));
        }
        body.insert("ttl".into(), json!(ttl.trim()));
    }
    if let Some(until) = &args.until {
        let secs = crate::clock::parse_rfc3339(until)
            .map_err(|e| CliError::Usage(format!("--until {until:?}: {e}")))?;
        body.insert("expires_at".into(), json!(crate::clock::rfc3339(secs)));
    }
    if let Some(reason) = &args.reason {
        body.insert("reason".into(), json!(reason));
    }
    Ok((vec!["v1", "revocations"], Value::Object(body)))
}

/// A value that must travel as one URL path segment: not empty, and not `.` / `..`, which
/// URL normalisation would swallow.
fn check_path_value(value: &str) -> Result<(), CliError> {
    if value.is_empty() {
        return Err(CliError::Usage("VALUE must not be empty".to_string()));
    }
    if value == "." || value == ".." {
        return Err(CliError::Usage(format!(
            "VALUE {value:?} cannot be addressed in an admin API path; use `list` to find it"
        )));
    }
    Ok(())
}

/// Percent-encodes one URL path segment: everything but the RFC 3986 unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so `/`, `?`, `#`, `%`, `+` and
/// non-ASCII values survive intact.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Loads the config the connection settings may come from: an explicit `--config` always
/// (missing or invalid: usage error); else `default_path` when it exists and something is
/// still unresolved (an invalid one is a usage error too).
fn load_config(
    conn: &AdminConnection,
    default_path: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Config>, CliError> {
    let load = |path: &Path| {
        Config::load(path).map(Some).map_err(|e| {
            CliError::Usage(match e {
                ConfigError::Read { .. } => e.to_string(),
                _ => format!("invalid config {}: {e}", path.display()),
            })
        })
    };
    if let Some(path) = &conn.config {
        return load(path);
    }
    let unresolved = conn.admin.is_none() || explicit_token(conn, env).is_none();
    if unresolved && default_path.is_file() {
        return load(default_path);
    }
    Ok(None)
}

/// Where and how to reach the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Base URL; API paths are appended to its path.
    base: Url,
    /// Admin token, sent as `Authorization: Bearer`.
    token: Option<String>,
}

/// The token from `--admin-token`, else from `$REVGATE_ADMIN_TOKEN` (empty counts as unset).
fn explicit_token(conn: &AdminConnection, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    conn.admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| env(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty()))
}

/// Resolves the URL (`--admin` > config `server.admin_listen` > [`DEFAULT_ADMIN_URL`]) and
/// the token (`--admin-token` > `$REVGATE_ADMIN_TOKEN` > config `server.admin_token`).
fn resolve_target(
    conn: &AdminConnection,
    config: Option<&Config>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Target, CliError> {
    let base = match (&conn.admin, config) {
        (Some(admin), _) => parse_admin_url(admin).map_err(CliError::Usage)?,
        (None, Some(config)) => url_of_listen_address(config.server.admin_listen)?,
        (None, None) => Url::parse(DEFAULT_ADMIN_URL).expect("valid default URL"),
    };
    let token = explicit_token(conn, env).or_else(|| {
        config
            .map(|c| c.server.admin_token.clone())
            .filter(|t| !t.is_empty())
    });
    Ok(Target { base, token })
}

/// `--admin` as a URL; `host:port` alone means `http://host:port`.
fn parse_admin_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("--admin {text:?}: not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "--admin {text:?}: must be an http:// or https:// URL"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("--admin {text:?}: has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--admin {text:?}: must not have a query or fragment"
        ));
    }
    Ok(url)
}

/// `http://ADDR` for a configured `server.admin_listen`; a wildcard address is reached
/// through loopback.
fn url_of_listen_address(addr: SocketAddr) -> Result<Url, CliError> {
    if addr.port() == 0 {
        return Err(CliError::Usage(format!(
            "server.admin_listen {addr} has port 0 (chosen at start-up): pass --admin URL"
        )));
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, addr.port());
    Url::parse(&format!("http://{addr}"))
        .map_err(|e| CliError::Usage(format!("server.admin_listen {addr}: {e}")))
}

/// An HTTP client bound to one admin API.
struct AdminClient {
    http: reqwest::Client,
    base: Url,
    authorization: Option<HeaderValue>,
}

impl AdminClient {
    fn new(target: Target) -> Result<AdminClient, CliError> {
        let authorization = match &target.token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        CliError::Usage(
                            "the admin token contains characters an HTTP header cannot carry"
                                .to_string(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| CliError::Unavailable(format!("cannot set up the HTTP client: {e}")))?;
        Ok(AdminClient {
            http,
            base: target.base,
            authorization,
        })
    }

    /// The base URL's path followed by `segments` (each percent-encoded) and `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        build_url(&self.base, segments, query)
    }

    /// `/v1/revocations/{kind}/{value}?issuer=`
    fn revocation_url(&self, args: &TargetArgs) -> Url {
        let query: Vec<(&str, &str)> = args
            .issuer
            .as_deref()
            .map(|iss| ("issuer", iss))
            .into_iter()
            .collect();
        self.url(
            &["v1", "revocations", args.kind.kind().as_str(), &args.value],
            &query,
        )
    }

    /// Sends one request. A `2xx` answer yields its JSON body (`None` when empty); any other
    /// status is [`CliError::Refused`] with the status and the API's error description;
    /// a transport failure is [`CliError::Unavailable`] naming the URL.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Option<Value>, CliError> {
        let mut request = self.http.request(method, url);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            let mut line = api_error_line(status, &bytes);
            if status == StatusCode::UNAUTHORIZED {
                line.push_str(if self.authorization.is_some() {
                    " (the admin token was refused)"
                } else {
                    " (pass --admin-token or set REVGATE_ADMIN_TOKEN)"
                });
            }
            return Err(CliError::Refused(line));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::Refused(format!(
                "the admin API at {} answered {status} with a body that is not JSON: {e}",
                self.base
            ))
        })
    }

    fn transport_error(&self, err: &reqwest::Error) -> CliError {
        let cause = root_cause(err);
        if err.is_timeout() {
            CliError::Unavailable(format!(
                "the admin API at {} did not answer within {}s",
                self.base,
                REQUEST_TIMEOUT.as_secs()
            ))
        } else {
            CliError::Unavailable(format!(
                "cannot reach the admin API at {}: {cause}",
                self.base
            ))
        }
    }
}

/// The innermost error of a chain (for reqwest: the I/O error, without the URL echo).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `base`'s path, then each of `segments` percent-encoded, then `query` form-encoded.
fn build_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    let mut path = url.path().trim_end_matches('/').to_string();
    for segment in segments {
        path.push('/');
        path.push_str(&encode_path_segment(segment));
    }
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// One line for an error answer: the status and the body's `error_description` (or
/// `error`, or the start of the body text).
fn api_error_line(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        ["error_description", "error"].iter().find_map(|field| {
            v.get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        })
    });
    let detail = from_json.or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    });
    match detail {
        Some(detail) => {
            let mut detail = one_line(&detail);
            if detail.chars().count() > MAX_ERROR_DETAIL_CHARS {
                detail = detail
                    .chars()
                    .take(MAX_ERROR_DETAIL_CHARS)
                    .collect::<String>()
                    + "…";
            }
            format!("admin API answered {status}: {detail}")
        }
        None => format!("admin API answered {status}"),
    }
}

/// `text` with line breaks and other control characters turned into spaces, collapsed.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `list`: follows `next` cursors until `--limit` records or the end.
async fn list(client: &AdminClient, args: &ListArgs) -> Result<(), CliError> {
    let mut remaining = args.limit;
    let mut after: Option<String> = None;
    let mut rows = vec![["KIND", "ISSUER", "VALUE", "EXPIRES_AT", "SOURCE"]
        .map(String::from)
        .to_vec()];
    loop {
        let page = remaining
            .map_or(LIST_PAGE_SIZE, |r| r.min(LIST_PAGE_SIZE))
            .to_string();
        let mut query = vec![("limit", page.as_str())];
        if let Some(kind) = args.kind {
            query.push(("kind", kind.kind().as_str()));
        }
        if let Some(cursor) = &after {
            query.push(("after", cursor.as_str()));
        }
        let url = client.url(&["v1", "revocations"], &query);
        let answer = client
            .call(Method::GET, url, None)
            .await?
            .unwrap_or(Value::Null);
        let items = answer
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                CliError::Refused(
                    "unexpected answer from the admin API: no \"items\" array".to_string(),
                )
            })?;
        let take = remaining.map_or(items.len(), |r| usize::try_from(r).unwrap_or(usize::MAX));
        for item in items.iter().take(take) {
            if args.json {
                print_line(&item.to_string());
            } else {
                rows.push(record_row(item));
            }
        }
        if let Some(r) = remaining.as_mut() {
            *r = r.saturating_sub(items.len().min(take) as u64);
            if *r == 0 {
                break;
            }
        }
        let next = match answer.get("next") {
            None | Some(Value::Null) => break,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(CliError::Refused(format!(
                    "unexpected answer from the admin API: \"next\" is {other}"
                )))
            }
        };
        if items.is_empty() {
            break;
        }
        if after.as_deref() == Some(next.as_str()) {
            return Err(CliError::Refused(
                "the admin API returned the same list cursor twice".to_string(),
            ));
        }
        after = Some(next);
    }
    if !args.json {
        print_text(&format_table(&rows));
    }
    Ok(())
}

/// The table cells of one record JSON.
fn record_row(record: &Value) -> Vec<String> {
    ["kind", "issuer", "value", "expires_at", "source"]
        .iter()
        .map(|field| cell(record.get(field)))
        .collect()
}

/// A JSON value as a table cell: strings bare (control characters escaped), null as `-`.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if s.is_empty() => "\"\"".to_string(),
        Some(Value::String(s)) => s
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
        Some(other) => other.to_string(),
    }
}

/// Rows as left-aligned columns separated by two spaces (the last column unpadded).
fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(text);
                line.push_str(&" ".repeat(widths[c] - text.chars().count() + 2));
            } else {
                line.push_str(text);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `stats` as a two-column table: the count of each kind, then the other members (the
/// last sweep's fields as `last_sweep.<field>`).
fn stats_table(stats: &Value) -> String {
    let mut rows = vec![vec!["NAME".to_string(), "VALUE".to_string()]];
    let Some(object) = stats.as_object() else {
        return format_table(&[vec![stats.to_string()]]);
    };
    for kind in Kind::ALL {
        rows.push(vec![
            kind.as_str().to_string(),
            cell(object.get(kind.as_str())),
        ]);
    }
    for (name, value) in object {
        if Kind::ALL.iter().any(|k| k.as_str() == name) {
            continue;
        }
        match value {
            Value::Object(fields) if !fields.is_empty() => {
                for (field, v) in fields {
                    rows.push(vec![format!("{name}.{field}"), cell(Some(v))]);
                }
            }
            Value::Null => rows.push(vec![name.clone(), "never".to_string()]),
            other => rows.push(vec![name.clone(), cell(Some(other))]),
        }
    }
    format_table(&rows)
}

/// Writes to stdout, ignoring a closed pipe (`revgate list | head`).
fn print_text(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn print_line(line: &str) {
    print_text(&format!("{line}\n"));
}

fn print_json_pretty(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_line(&text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The admin commands as `main` will see them: flattened beside other subcommands.
    #[derive(Debug, Parser)]
    #[command(name = "revgate")]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum TestCommand {
        /// Run the gateway.
        Serve {
            /// Config file.
            #[arg(long)]
            config: Option<PathBuf>,
        },
        #[command(flatten)]
        Admin(AdminCommand),
    }

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        let mut argv = vec!["revgate"];
        argv.extend_from_slice(args);
        match TestCli::try_parse_from(argv)?.command {
            TestCommand::Admin(cmd) => Ok(cmd),
            TestCommand::Serve { .. } => panic!("not an admin command"),
        }
    }

    #[test]
    fn command_definition_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn parses_revoke() {
        let cmd = parse(&[
            "revoke",
            "sid",
            "abc",
            "--issuer",
            "https://idp/",
            "--ttl",
            "1h",
            "--reason",
            "stolen",
            "--admin",
            "127.0.0.1:9999",
            "--admin-token",
            "t",
        ])
        .unwrap();
        let AdminCommand::Revoke(a) = cmd else {
            panic!()
        };
        assert_eq!(a.kind, RevokeKind::Sid);
        assert_eq!(a.value, "abc");
        assert_eq!(a.issuer.as_deref(), Some("https://idp/"));
        assert_eq!(a.ttl.as_deref(), Some("1h"));
        assert_eq!(a.reason.as_deref(), Some("stolen"));
        assert_eq!(a.connection.admin.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(a.connection.admin_token.as_deref(), Some("t"));

        // options before and between the positionals work too
        let cmd = parse(&[
            "revoke",
            "--admin",
            "http://h:1",
            "jti",
            "--until",
            "2030-01-01T00:00:00Z",
            "j-1",
        ])
        .unwrap();
        let AdminCommand::Revoke(a) = cmd else {
            panic!()
        };
        assert_eq!((a.kind, a.value.as_str()), (RevokeKind::Jti, "j-1"));
        assert_eq!(a.until.as_deref(), Some("2030-01-01T00:00:00Z"));

        let cmd = parse(&["revoke", "token", "aaa.bbb.ccc", "--reason", "logout"]).unwrap();
        let AdminCommand::Revoke(a) = cmd else {
            panic!()
        };
        assert_eq!(
            (a.kind, a.value.as_str()),
            (RevokeKind::Token, "aaa.bbb.ccc")
        );

        let e = parse(&[
            "revoke",
            "sid",
            "x",
            "--ttl",
            "1h",
            "--until",
            "2030-01-01T00:00:00Z",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["revoke", "iss", "x"]).is_err());
        assert!(parse(&["revoke", "sid"]).is_err());
    }

    #[test]
    fn parses_unrevoke_lookup_list_stats_sweep() {
        let AdminCommand::Unrevoke(a) = parse(&[
            "unrevoke",
            "sub",
            "user 1",
            "--issuer",
            "i",
            "--config",
            "/etc/r.toml",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.kind, a.value.as_str(), a.issuer.as_deref()),
            (KindArg::Sub, "user 1", Some("i"))
        );
        assert_eq!(a.connection.config, Some(PathBuf::from("/etc/r.toml")));
        assert!(parse(&["unrevoke", "token", "x"]).is_err());

        let AdminCommand::Lookup(a) = parse(&["lookup", "jti", "j", "--admin", "h:1"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.kind, a.value.as_str()), (KindArg::Jti, "j"));
        assert_eq!(a.connection.admin.as_deref(), Some("h:1"));

        let AdminCommand::List(a) =
            parse(&["list", "--kind", "sid", "--limit", "5", "--json"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (a.kind, a.limit, a.json),
            (Some(KindArg::Sid), Some(5), true)
        );
        let AdminCommand::List(a) = parse(&["list"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.kind, a.limit, a.json), (None, None, false));
        assert!(parse(&["list", "--limit", "0"]).is_err());
        assert!(parse(&["list", "--kind", "token"]).is_err());

        let AdminCommand::Stats(a) = parse(&["stats", "--json", "--admin-token", "t"]).unwrap()
        else {
            panic!()
        };
        assert!(a.json);
        assert_eq!(a.connection.admin_token.as_deref(), Some("t"));
        assert!(matches!(
            parse(&["sweep", "--admin", "h:2"]).unwrap(),
            AdminCommand::Sweep(_)
        ));
        assert!(matches!(
            TestCli::try_parse_from(["revgate", "serve", "--config", "x.toml"])
                .unwrap()
                .command,
            TestCommand::Serve { .. }
        ));
    }

    fn revoke_args(args: &[&str]) -> RevokeArgs {
        let mut argv = vec!["revoke"];
        argv.extend_from_slice(args);
        match parse(&argv).unwrap() {
            AdminCommand::Revoke(a) => a,
            _ => panic!(),
        }
    }

    fn no_stdin() -> Result<String, CliError> {
        panic!("stdin not expected")
    }

    #[test]
    fn revoke_bodies() {
        let (path, body) = revoke_request(
            &revoke_args(&[
                "sid",
                "abc",
                "--issuer",
                "https://idp/",
                "--ttl",
                "15m",
                "--reason",
                "r",
            ]),
            no_stdin,
        )
        .unwrap();
        assert_eq!(path, ["v1", "revocations"]);
        assert_eq!(
            body,
            json!({"kind":"sid","value":"abc","issuer":"https://idp/","ttl":"15m","reason":"r"})
        );
        let (_, body) = revoke_request(
            &revoke_args(&["jti", "j", "--until", "2029-12-31 23:00:00"]),
            no_stdin,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"kind":"jti","value":"j","expires_at":"2029-12-31T23:00:00Z"})
        );
        let (_, body) = revoke_request(&revoke_args(&["sub", "u"]), no_stdin).unwrap();
        assert_eq!(body, json!({"kind":"sub","value":"u"}));

        let (path, body) = revoke_request(
            &revoke_args(&["token", "a.b.c", "--reason", "bye"]),
            no_stdin,
        )
        .unwrap();
        assert_eq!(path, ["v1", "revocations", "token"]);
        assert_eq!(body, json!({"token":"a.b.c","reason":"bye"}));
        let (_, body) =
            revoke_request(&revoke_args(&["token", "-"]), || Ok(" x.y.z\n".to_string())).unwrap();
        assert_eq!(body, json!({"token":"x.y.z"}));

        for bad in [
            &["sid", "a", "--ttl", "soon"][..],
            &["sid", "a", "--ttl", "0s"],
            &["sid", "a", "--until", "tomorrow"],
            &["sid", ""],
            &["token", "a.b.c", "--ttl", "1h"],
            &["token", "a.b.c", "--issuer", "i"],
            &["token", "a.b.c", "--until", "2030-01-01T00:00:00Z"],
        ] {
            let err = revoke_request(&revoke_args(bad), || Ok(String::new())).unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{bad:?}: {err:?}");
            assert_eq!(err.exit_code(), EXIT_USAGE);
        }
        assert!(matches!(
            revoke_request(&revoke_args(&["token", "-"]), || Ok("\n".to_string())),
            Err(CliError::Usage(_))
        ));
    }

    fn conn(admin: Option<&str>, token: Option<&str>) -> AdminConnection {
        AdminConnection {
            admin: admin.map(String::from),
            admin_token: token.map(String::from),
            config: None,
        }
    }

    fn config_with(admin_listen: &str, token: &str) -> Config {
        let text = format!(
            "[server]\nadmin_listen = \"{admin_listen}\"\nadmin_token = \"{token}\"\n\
             [[issuer]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_url = \"https://idp/jwks\"\n\
             [[route]]\nupstream = \"http://127.0.0.1:1\"\n"
        );
        Config::parse(&text, |_| None).unwrap()
    }

    #[test]
    fn url_and_token_resolution_order() {
        let no_env = |_: &str| None;
        let env_tok = |n: &str| (n == ADMIN_TOKEN_ENV).then(|| "from-env".to_string());
        let cfg = config_with("127.0.0.2:7000", "from-config");

        // defaults
        let t = resolve_target(&conn(None, None), None, &no_env).unwrap();
        assert_eq!(t.base.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(t.token, None);
        // config beats default
        let t = resolve_target(&conn(None, None), Some(&cfg), &no_env).unwrap();
        assert_eq!(t.base.as_str(), "http://127.0.0.2:7000/");
        assert_eq!(t.token.as_deref(), Some("from-config"));
        // env beats config for the token
        let t = resolve_target(&conn(None, None), Some(&cfg), &env_tok).unwrap();
        assert_eq!(t.token.as_deref(), Some("from-env"));
        // explicit beats everything
        let t = resolve_target(
            &conn(Some("https://admin.internal:8443/base"), Some("flag")),
            Some(&cfg),
            &env_tok,
        )
        .unwrap();
        assert_eq!(t.base.as_str(), "https://admin.internal:8443/base");
        assert_eq!(t.token.as_deref(), Some("flag"));
        // empty values count as unset
        let empty_env = |n: &str| (n == ADMIN_TOKEN_ENV).then(String::new);
        let t = resolve_target(&conn(None, Some("")), Some(&cfg), &empty_env).unwrap();
        assert_eq!(t.token.as_deref(), Some("from-config"));
        // host:port and bracketed IPv6
        let t = resolve_target(&conn(Some("localhost:9191"), None), None, &no_env).unwrap();
        assert_eq!(t.base.as_str(), "http://localhost:9191/");
        let t = resolve_target(&conn(Some("[::1]:9191"), None), None, &no_env).unwrap();
        assert_eq!(t.base.as_str(), "http://[::1]:9191/");
        // wildcard admin_listen is reached through loopback
        let t = resolve_target(
            &conn(None, None),
            Some(&config_with("0.0.0.0:9300", "x")),
            &no_env,
        )
        .unwrap();
        assert_eq!(t.base.as_str(), "http://127.0.0.1:9300/");
        let t = resolve_target(
            &conn(None, None),
            Some(&config_with("[::]:9300", "x")),
            &no_env,
        )
        .unwrap();
        assert_eq!(t.base.as_str(), "http://[::1]:9300/");
        // bad --admin is a usage error
        for bad in ["ftp://h:1", "http://h:1/?x=1", "not a host:port"] {
            let e = resolve_target(&conn(Some(bad), None), None, &no_env).unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{bad}: {e:?}");
        }
    }

    #[test]
    fn config_loading() {
        let dir = tempfile::tempdir().unwrap();
        let no_env = |_: &str| None;
        let missing = dir.path().join("missing.toml");
        // explicit and missing: usage error naming the file
        let c = AdminConnection {
            config: Some(missing.clone()),
            ..conn(Some("h:1"), Some("t"))
        };
        let e = load_config(&c, &missing, &no_env).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(e.message().contains("missing.toml"), "{e:?}");
        // implicit and missing: no config
        assert!(load_config(&conn(None, None), &missing, &no_env)
            .unwrap()
            .is_none());
        // implicit and invalid: usage error
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[server]\nbogus = 1\n").unwrap();
        let e = load_config(&conn(None, None), &bad, &no_env).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(
            e.message().contains("bogus") && !e.message().contains('\n'),
            "{e:?}"
        );
        // implicit config not needed when --admin and a token are given
        assert!(load_config(&conn(Some("h:1"), Some("t")), &bad, &no_env)
            .unwrap()
            .is_none());
        let env_tok = |n: &str| (n == ADMIN_TOKEN_ENV).then(|| "e".to_string());
        assert!(load_config(&conn(Some("h:1"), None), &bad, &env_tok)
            .unwrap()
            .is_none());
        // implicit and valid
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "[server]\nadmin_listen = \"127.0.0.1:9555\"\n[[issuer]]\nissuer = \"i\"\n\
             audiences = [\"a\"]\njwks_url = \"https://idp/jwks\"\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let cfg = load_config(&conn(None, None), &good, &no_env)
            .unwrap()
            .unwrap();
        assert_eq!(cfg.server.admin_listen.port(), 9555);
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode_path_segment("abc-1.2_3~"), "abc-1.2_3~");
        assert_eq!(
            encode_path_segment("a/b c+%?#é"),
            "a%2Fb%20c%2B%25%3F%23%C3%A9"
        );
        let base = Url::parse("http://127.0.0.1:9090").unwrap();
        let url = build_url(
            &base,
            &["v1", "revocations", "sid", "a/b?c"],
            &[("issuer", "https://idp/ x&y")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9090/v1/revocations/sid/a%2Fb%3Fc?issuer=https%3A%2F%2Fidp%2F+x%26y"
        );
        let base = Url::parse("https://h/admin/").unwrap();
        assert_eq!(
            build_url(&base, &["v1", "stats"], &[]).as_str(),
            "https://h/admin/v1/stats"
        );
        assert!(check_path_value("..").is_err());
        assert!(check_path_value(".").is_err());
        assert!(check_path_value("").is_err());
        assert!(check_path_value("...").is_ok());
    }

    #[test]
    fn error_lines() {
        let body = br#"{"error":"invalid_request","error_description":"unknown issuer \"x\""}"#;
        assert_eq!(
            api_error_line(StatusCode::BAD_REQUEST, body),
            "admin API answered 400 Bad Request: unknown issuer \"x\""
        );
        assert_eq!(
            api_error_line(StatusCode::NOT_FOUND, br#"{"error":"not_found"}"#),
            "admin API answered 404 Not Found: not_found"
        );
        assert_eq!(
            api_error_line(StatusCode::NOT_FOUND, b""),
            "admin API answered 404 Not Found"
        );
        assert_eq!(
            api_error_line(StatusCode::BAD_GATEWAY, b"<html>\n<b>bad</b>\n</html>\n"),
            "admin API answered 502 Bad Gateway: <html> <b>bad</b> </html>"
        );
        let long = "x".repeat(1000);
        let line = api_error_line(StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes());
        assert!(line.chars().count() < 400 && line.ends_with('…'));
        let e = CliError::Refused("two\nlines\r\n".to_string());
        assert_eq!(e.message(), "two lines");
    }

    #[test]
    fn tables() {
        let rows = vec![
            vec!["KIND".to_string(), "VALUE".to_string(), "X".to_string()],
            vec![
                "sid".to_string(),
                "a-long-value".to_string(),
                "1".to_string(),
            ],
        ];
        assert_eq!(
            format_table(&rows),
            "KIND  VALUE         X\nsid   a-long-value  1\n"
        );
        let rec = json!({"kind":"sid","issuer":"i","value":"v\nw","revoked_at":"t","issued_before":null,
                         "expires_at":"2030-01-01T00:00:00Z","reason":null,"source":"admin"});
        assert_eq!(
            record_row(&rec),
            ["sid", "i", "v\\nw", "2030-01-01T00:00:00Z", "admin"]
        );
        let stats =
            stats_table(&json!({"jti":1,"sid":2,"sub":0,"last_sweep":{"at":"t","purged":3}}));
        assert!(stats.contains("\nsid                2\n"), "{stats}");
        assert!(stats.contains("last_sweep.purged  3"), "{stats}");
        let stats = stats_table(&json!({"jti":0,"sid":0,"sub":0,"last_sweep":null}));
        assert!(stats.contains("last_sweep  never"), "{stats}");
    }

    /// What the fake admin API saw.
    #[derive(Debug)]
    struct SeenRequest {
        head: String,
        body: String,
    }

    /// Serves `answers` (one per connection, in order) on `127.0.0.1:0`; returns the base
    /// URL and a channel of the requests seen.
    async fn fake_admin(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<SeenRequest>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (status, body) in answers {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body_seen =
                    String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
                let _ = tx.send(SeenRequest {
                    head,
                    body: body_seen,
                });
                let reason = StatusCode::from_u16(status)
                    .unwrap()
                    .canonical_reason()
                    .unwrap_or("");
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
                let _ = sock.shutdown().await;
            }
        });
        (format!("http://{addr}"), rx)
    }

    const BOUND: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn revoke_against_a_fake_admin_api() {
        let record = r#"{"kind":"sid","issuer":"https://idp/","value":"a/b","revoked_at":"2030-01-01T00:00:00Z","issued_before":"2030-01-01T00:00:00Z","expires_at":"2030-01-02T00:00:00Z","reason":"x","source":"admin"}"#;
        let (base, mut seen) = fake_admin(vec![(201, record)]).await;
        let cmd = parse(&[
            "revoke",
            "sid",
            "a/b",
            "--ttl",
            "1h",
            "--reason",
            "x",
            "--admin",
            &base,
            "--admin-token",
            "s3cret",
        ])
        .unwrap();
        let code = tokio::time::timeout(BOUND, run(cmd))
            .await
            .expect("bounded");
        assert_eq!(code, EXIT_OK);
        let req = tokio::time::timeout(BOUND, seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            req.head.starts_with("POST /v1/revocations HTTP/1.1\r\n"),
            "{}",
            req.head
        );
        assert!(
            req.head
                .to_ascii_lowercase()
                .contains("authorization: bearer s3cret\r\n"),
            "{}",
            req.head
        );
        // What the admin API's page checks want (SPEC §5): the JSON media type, a loopback
        // Host, no Origin.
        let head = req.head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("host: 127.0.0.1:"), "{head}");
        assert!(!head.contains("\norigin:"), "{head}");
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(
            body,
            json!({"kind":"sid","value":"a/b","ttl":"1h","reason":"x"})
        );
    }

    #[tokio::test]
    async fn lookup_not_found_exits_1() {
        let (base, mut seen) = fake_admin(vec![(
            404,
            r#"{"error":"not_found","error_description":"no such revocation"}"#,
        )])
        .await;
        let cmd = parse(&[
            "lookup",
            "sid",
            "a b/c",
            "--issuer",
            "https://idp/",
            "--admin",
            &base,
            "--admin-token",
            "t",
        ])
        .unwrap();
        let code = tokio::time::timeout(BOUND, run(cmd))
            .await
            .expect("bounded");
        assert_eq!(code, EXIT_FAILURE);
        let req = tokio::time::timeout(BOUND, seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            req.head.starts_with(
                "GET /v1/revocations/sid/a%20b%2Fc?issuer=https%3A%2F%2Fidp%2F HTTP/1.1\r\n"
            ),
            "{}",
            req.head
        );
    }

    #[tokio::test]
    async fn list_follows_cursors_up_to_the_limit() {
        let page1 = r#"{"items":[{"kind":"jti","issuer":"i","value":"1","expires_at":"t","source":"admin"},{"kind":"jti","issuer":"i","value":"2","expires_at":"t","source":"admin"}],"next":"c1"}"#;
        let page2 = r#"{"items":[{"kind":"jti","issuer":"i","value":"3","expires_at":"t","source":"admin"}],"next":"c2"}"#;
        let (base, mut seen) = fake_admin(vec![(200, page1), (200, page2)]).await;
        let cmd = parse(&[
            "list",
            "--kind",
            "jti",
            "--limit",
            "3",
            "--json",
            "--admin",
            &base,
            "--admin-token",
            "t",
        ])
        .unwrap();
        let code = tokio::time::timeout(BOUND, run(cmd))
            .await
            .expect("bounded");
        assert_eq!(code, EXIT_OK);
        let first = seen.recv().await.unwrap();
        assert!(
            first
                .head
                .starts_with("GET /v1/revocations?limit=3&kind=jti HTTP/1.1"),
            "{}",
            first.head
        );
        let second = seen.recv().await.unwrap();
        assert!(
            second
                .head
                .starts_with("GET /v1/revocations?limit=1&kind=jti&after=c1 HTTP/1.1"),
            "{}",
            second.head
        );
    }

    #[tokio::test]
    async fn unreachable_admin_api_exits_69() {
        // A port that was just free: nothing listens there any more.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let cmd = parse(&["stats", "--admin", &addr.to_string(), "--admin-token", "t"]).unwrap();
        let code = tokio::time::timeout(BOUND, run(cmd))
            .await
            .expect("bounded");
        assert_eq!(code, EXIT_UNAVAILABLE);
    }
}
