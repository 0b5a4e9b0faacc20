//! Export, import and bulk seeding of revocations (SPEC §2 `export` / `import`, §5
//! `/v1/export` and `/v1/import`). The line format is the record JSON of SPEC §5, one
//! record per line (NDJSON). Both directions stream: an export never holds the store in
//! memory, an import holds one batch of [`IMPORT_BATCH`] records and one line at a time.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::store::{Kind, Record, RevocationStore, Source, StoreError};

/// Records written per durable flush during an import.
pub const IMPORT_BATCH: usize = 2048;
/// Longest accepted NDJSON line (a record is well under 20 KiB: values and reasons are
/// capped by the store and the admin API).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Rejected lines reported individually in an import summary; the count is always exact.
pub const MAX_REJECTED_REPORTED: usize = 1000;
/// Records per chunk of an export stream.
pub const EXPORT_CHUNK: usize = 512;

/// One refused import line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLine {
    /// 1-based line number in the input.
    pub line: u64,
    /// Why it was refused.
    pub error: String,
}

/// The answer of an import (SPEC §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Records whose key was new.
    pub imported: u64,
    /// Records merged into an existing record.
    pub merged: u64,
    /// Records skipped because their `expires_at` had passed.
    pub expired: u64,
    /// Refused lines (at most [`MAX_REJECTED_REPORTED`] listed).
    pub rejected: Vec<RejectedLine>,
    /// Exact number of refused lines.
    pub rejected_count: u64,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// In a cluster: whether every batch was appended to the shared log (answer header
    /// `Revgate-Cluster`, not part of the counts).
    #[serde(skip)]
    pub log: crate::store::LogAck,
}

impl ImportSummary {
    fn reject(&mut self, line: u64, error: String) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_REJECTED_REPORTED {
            self.rejected.push(RejectedLine { line, error });
        }
    }
}

/// Why an import stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store refused a write: nothing after the last durable batch was imported.
    #[error("store error after {imported} records were imported: {source}")]
    Store {
        /// Records durably imported before the failure.
        imported: u64,
        /// The store error.
        source: StoreError,
    },
    /// The input could not be read.
    #[error("input error: {0}")]
    Input(String),
}

/// Parses one NDJSON line into a record, checking it against the configuration.
pub fn parse_record_line(line: &[u8], config: &Config) -> Result<Record, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let obj = v.as_object().ok_or("a record must be a JSON object")?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "kind"
                | "issuer"
                | "value"
                | "revoked_at"
                | "issued_before"
                | "expires_at"
                | "reason"
                | "source"
        ) {
            return Err(format!("{k}: unknown field"));
        }
    }
    let string = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name}: must be a string")),
        }
    };
    let instant = |name: &str| -> Result<Option<u64>, String> {
        string(name)?
            .map(|t| crate::clock::parse_rfc3339(t).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let kind: Kind = string("kind")?
        .ok_or("kind: required")?
        .parse()
        .map_err(|e| format!("kind: {e}"))?;
    let issuer = string("issuer")?.ok_or("issuer: required")?;
    if config.issuer(issuer).is_none() {
        return Err(format!("issuer: {issuer:?} is not a configured issuer"));
    }
    let value = string("value")?.ok_or("value: required")?;
    if value.is_empty() {
        return Err("value: must not be empty".to_string());
    }
    if value.len() > crate::store::MAX_VALUE_BYTES {
        return Err(format!(
            "value: longer than {} bytes",
            crate::store::MAX_VALUE_BYTES
        ));
    }
    let revoked_at = instant("revoked_at")?.ok_or("revoked_at: required")?;
    let expires_at = instant("expires_at")?.ok_or("expires_at: required")?;
    let issued_before = instant("issued_before")?;
    match (kind, issued_before) {
        (Kind::Jti, Some(_)) => return Err("issued_before: must be null for kind jti".to_string()),
        (Kind::Sid | Kind::Sub, None) => {
            return Err(format!("issued_before: required for kind {kind}"))
        }
        _ => {}
    }
    let reason = string("reason")?;
    if reason.is_some_and(|r| r.len() > crate::admin::MAX_REASON_BYTES) {
        return Err(format!(
            "reason: longer than {} bytes",
            crate::admin::MAX_REASON_BYTES
        ));
    }
    let source = match string("source")?.unwrap_or("admin") {
        "admin" => Source::Admin,
        "backchannel" => Source::Backchannel,
        "revoke_endpoint" => Source::RevokeEndpoint,
        other => return Err(format!("source: unknown source {other:?}")),
    };
    Ok(Record {
        kind,
        issuer: issuer.to_string(),
        value: value.to_string(),
        revoked_at,
        issued_before,
        expires_at,
        reason: reason.map(str::to_string),
        source,
    })
}

/// Imports NDJSON from `input` into `store` (or only validates, with `dry_run`). Lines are
/// merged as revocations merge; lines already expired at `now` are skipped; bad lines are
/// reported with their number while the good ones land. Every batch is durable before the
/// next is read, and the summary is returned only after the last batch is durable.
/// `progress` is called with the number of input bytes consumed so far.
pub async fn import_ndjson<S, E>(
    store: &RevocationStore,
    config: &Config,
    now: u64,
    dry_run: bool,
    input: S,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut summary = ImportSummary {
        dry_run,
        ..ImportSummary::default()
    };
    let mut input = input;
    let mut pending = BytesMut::new();
    let mut batch: Vec<Record> = Vec::with_capacity(IMPORT_BATCH);
    let mut line_no: u64 = 0;
    let mut consumed: u64 = 0;
    let mut skipping_long_line = false;
    let mut eof = false;
    while !eof {
        match input.next().await {
            Some(Ok(chunk)) => {
                consumed += chunk.len() as u64;
                pending.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(ImportError::Input(e.to_string())),
            None => eof = true,
        }
        loop {
            let line = match pending.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line = pending.split_to(i + 1);
                    line.freeze()
                }
                None if eof && !pending.is_empty() => pending.split().freeze(),
                None => {
                    if pending.len() > MAX_LINE_BYTES && !skipping_long_line {
                        line_no += 1;
                        summary.reject(line_no, format!("line longer than {MAX_LINE_BYTES} bytes"));
                        skipping_long_line = true;
                    }
                    if skipping_long_line {
                        pending.clear();
                    }
                    break;
                }
            };
            if skipping_long_line {
                // The tail of an over-long line, already counted.
                skipping_long_line = false;
                continue;
            }
            line_no += 1;
            let text = trim_line(&line);
            if text.is_empty() {
                continue;
            }
            if text.len() > MAX_LINE_BYTES {
                summary.reject(line_no, format!("line longer than {MAX_LINE_BYTES} bytes"));
                continue;
            }
            match parse_record_line(text, config) {
                Err(e) => summary.reject(line_no, e),
                Ok(r) if r.expires_at <= now => summary.expired += 1,
                Ok(r) => {
                    batch.push(r);
                    if batch.len() >= IMPORT_BATCH {
                        write_batch(store, dry_run, &mut batch, &mut summary).await?;
                        progress(consumed.saturating_sub(pending.len() as u64));
                    }
                }
            }
        }
    }
    write_batch(store, dry_run, &mut batch, &mut summary).await?;
    progress(consumed);
    Ok(summary)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    &line[start..end]
}

async fn write_batch(
    store: &RevocationStore,
    dry_run: bool,
    batch: &mut Vec<Record>,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    if dry_run {
        for r in batch.iter() {
            match store.get(r.kind, &r.issuer, &r.value) {
                Ok(Some(_)) => summary.merged += 1,
                _ => summary.imported += 1,
            }
        }
    } else {
        let (outcomes, ack) = store
            .import_records_acked(std::mem::take(batch))
            .await
            .map_err(|source| ImportError::Store {
                imported: summary.imported + summary.merged,
                source,
            })?;
        summary.log = summary.log.and(ack);
        for was_new in outcomes {
            if was_new {
                summary.imported += 1;
            } else {
                summary.merged += 1;
            }
        }
    }
    batch.clear();
    Ok(())
}

/// One exported line: the record JSON and a newline.
pub fn export_line(record: &Record) -> Vec<u8> {
    let mut line = serde_json::to_vec(&record.to_json()).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Streams every record (optionally of one kind) as NDJSON chunks. A blocking task walks
/// the trees and hands over chunks through a small bounded channel, so memory stays
/// bounded whatever the store size and a slow reader slows the walk.
pub fn export_stream(
    store: RevocationStore,
    kind: Option<Kind>,
) -> tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK * 200);
        let mut n = 0;
        for item in store.iter_records(kind) {
            match item {
                Ok(record) => {
                    chunk.extend_from_slice(&export_line(&record));
                    n += 1;
                    if n == EXPORT_CHUNK {
                        if tx
                            .blocking_send(Ok(Bytes::from(std::mem::take(&mut chunk))))
                            .is_err()
                        {
                            return;
                        }
                        n = 0;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "export stopped: store error");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(Bytes::from(chunk)));
        }
    });
    rx
}

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;
