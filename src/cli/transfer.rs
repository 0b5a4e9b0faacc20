//! `export` and `import`: NDJSON streamed to and from the admin API (`GET /v1/export`,
//! `POST /v1/import`), or, with `--offline`, read from and written into the store of a
//! stopped gateway; import progress on a terminal.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::AdminClient;
use super::offline::{open_offline_store, open_restore_store};
use super::output::{api_error_line, cell, format_table, print_json_pretty, print_text, CliError};
use super::{ExportArgs, ImportArgs, OutputFormat};
use crate::store::OpenMode;

/// `export --offline`: every record of the store (or of one kind) as NDJSON on stdout; a
/// closed stdout (`| head`) ends the export quietly.
pub(super) async fn export_offline(args: &ExportArgs) -> Result<(), CliError> {
    let (_config, store) = open_offline_store(&args.connection, OpenMode::Salvage)?;
    let kind = args.kind.map(|k| k.kind());
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        for item in store.iter_records(kind) {
            let record = item.map_err(|e| CliError::Failed(format!("export stopped: {e}")))?;
            if let Err(e) = out.write_all(&crate::backup::export_line(&record)) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(CliError::Failed(format!("cannot write to stdout: {e}")));
            }
        }
        out.flush()
            .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
    })
    .await
    .map_err(|e| CliError::Failed(format!("export task failed: {e}")))?
}

/// `export`: streams `GET /v1/export` to stdout as it arrives.
pub(super) async fn export_online(client: &AdminClient, args: &ExportArgs) -> Result<(), CliError> {
    use futures_util::StreamExt as _;
    let kind = args.kind.map(|k| k.kind().as_str());
    let query: Vec<(&str, &str)> = kind.map(|k| ("kind", k)).into_iter().collect();
    let url = client.url(&["v1", "export"], &query);
    let response = client
        .transfer(Method::GET, url)?
        .send()
        .await
        .map_err(|e| client.transport_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        let bytes = response.bytes().await.unwrap_or_default();
        return Err(CliError::Failed(api_error_line(status, &bytes)));
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
            return Err(CliError::Failed(format!("cannot write to stdout: {e}")));
        }
    }
    out.flush()
        .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
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

/// Prints the import counts (JSON, or a table of the counts and of the rejected lines);
/// a dry run says on stderr that nothing was stored; a rejected line makes the command
/// fail (exit 1).
fn import_result(summary: &Value, output: OutputFormat) -> Result<(), CliError> {
    let count = |name: &str| summary.get(name).and_then(Value::as_u64).unwrap_or(0);
    let rejected = count("rejected_count");
    let dry_run = summary.get("dry_run") == Some(&Value::Bool(true));
    match output {
        OutputFormat::Json => print_json_pretty(summary),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = [
                ("imported", count("imported")),
                ("merged", count("merged")),
                ("expired", count("expired")),
                ("rejected", rejected),
            ]
            .iter()
            .map(|(name, n)| vec![name.to_string(), n.to_string()])
            .collect();
            let mut text = format_table(&rows);
            let lines = summary.get("rejected").and_then(Value::as_array);
            if let Some(lines) = lines.filter(|l| !l.is_empty()) {
                let mut table = vec![vec!["LINE".to_string(), "ERROR".to_string()]];
                table.extend(
                    lines
                        .iter()
                        .map(|l| vec![cell(l.get("line")), cell(l.get("error"))]),
                );
                text.push('\n');
                text.push_str(&format_table(&table));
            }
            print_text(&text);
        }
    }
    if dry_run {
        let _ = writeln!(
            std::io::stderr().lock(),
            "revgate import: dry run: nothing was stored ({} record(s) would be imported, {} merged, {} skipped as expired, {rejected} rejected)",
            count("imported"),
            count("merged"),
            count("expired")
        );
    }
    if rejected > 0 {
        let rest = if dry_run {
            "nothing was stored (dry run)"
        } else {
            "the other lines were imported"
        };
        return Err(CliError::Failed(format!(
            "{rejected} line(s) rejected (listed above); {rest}"
        )));
    }
    Ok(())
}

/// `import --offline`: merges the file into the store directly (a damaged store is
/// replaced first, see [`open_restore_store`]; `--dry-run` only reads it).
pub(super) async fn import_offline(args: &ImportArgs) -> Result<(), CliError> {
    let (config, store) = if args.dry_run {
        open_offline_store(&args.connection, OpenMode::Salvage)?
    } else {
        open_restore_store(&args.connection).await?
    };
    if config.cluster.enabled() && !args.dry_run {
        // A node of a cluster: the records go to the outbox too, and are appended to the
        // shared log when the gateway runs again.
        let node = config
            .cluster
            .effective_node_id(config.server.listen.port())
            .map_err(|e| CliError::Usage(format!("cluster.node_id {e}")))?;
        store.join_log(crate::store::LogLink::new(node, std::time::Duration::ZERO));
    }
    let (input, total) = import_input(&args.file).await?;
    let mut progress = Progress::new(total);
    let now = crate::clock::system().now();
    let summary = crate::backup::import_ndjson(&store, &config, now, args.dry_run, input, |done| {
        progress.update(done)
    })
    .await
    .map_err(|e| CliError::Failed(e.to_string()))?;
    progress.finish();
    import_result(
        &serde_json::to_value(&summary).unwrap_or_default(),
        args.output.output,
    )
}

/// `import`: streams the file to `POST /v1/import` and prints the counts it answers.
pub(super) async fn import_online(client: &AdminClient, args: &ImportArgs) -> Result<(), CliError> {
    use futures_util::StreamExt as _;
    let (input, total) = import_input(&args.file).await?;
    // An empty file has nothing to import: answered here (the API refuses a request
    // without a body).
    let mut input = input.peekable();
    if std::pin::Pin::new(&mut input).peek().await.is_none() {
        let nothing = crate::backup::ImportSummary {
            dry_run: args.dry_run,
            ..Default::default()
        };
        return import_result(
            &serde_json::to_value(&nothing).unwrap_or_default(),
            args.output.output,
        );
    }
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
    let response = client
        .transfer(Method::POST, url)?
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(counted))
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
        return Err(CliError::Failed(api_error_line(status, &bytes)));
    }
    let summary: Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Failed(format!(
            "the admin API answered with a body that is not JSON: {e}"
        ))
    })?;
    import_result(&summary, args.output.output)
}
