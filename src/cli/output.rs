//! What the CLI prints: tables, JSON, and the one-line error of a failed command (with
//! the exit code it decides, [`CliError`]).

use std::io::Write;

use reqwest::StatusCode;
use serde_json::Value;

use super::{EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::store::Kind;

/// Longest error detail from an answer body shown on the error line.
const MAX_ERROR_DETAIL_CHARS: usize = 300;

/// Why a subcommand failed; decides the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CliError {
    /// Bad arguments or configuration: [`EXIT_USAGE`].
    Usage(String),
    /// The admin API answered with an error, or the command failed otherwise (the gateway
    /// could not start, the store is inconsistent): [`EXIT_FAILURE`].
    Failed(String),
    /// The admin API could not be reached: [`EXIT_UNAVAILABLE`].
    Unavailable(String),
}

impl CliError {
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed(_) => EXIT_FAILURE,
            CliError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }

    /// The message, on one line.
    pub(super) fn message(&self) -> String {
        let (CliError::Usage(m) | CliError::Failed(m) | CliError::Unavailable(m)) = self;
        one_line(m)
    }
}

/// Prints `err` as the one line `{prefix}: {message}` on stderr (a closed stderr is
/// ignored) and returns its exit code.
pub(super) fn fail(prefix: &str, err: &CliError) -> u8 {
    let _ = writeln!(std::io::stderr().lock(), "{prefix}: {}", err.message());
    err.exit_code()
}

/// One line for an error answer: the status and the body's `error_description` (or
/// `error`, or the start of the body text).
pub(super) fn api_error_line(status: StatusCode, body: &[u8]) -> String {
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
pub(super) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table cells of one record JSON.
pub(super) fn record_row(record: &Value) -> Vec<String> {
    ["kind", "issuer", "value", "expires_at", "source"]
        .iter()
        .map(|field| cell(record.get(field)))
        .collect()
}

/// A JSON value as a table cell: strings bare (control characters escaped), null as `-`.
pub(super) fn cell(value: Option<&Value>) -> String {
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
pub(super) fn format_table(rows: &[Vec<String>]) -> String {
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
/// last sweep's fields as `last_sweep.<field>`); then the back-channel logouts per issuer
/// as a table of their own (ISSUER ACCEPTED REFUSED LAST_REFUSAL).
pub(super) fn stats_table(stats: &Value) -> String {
    let mut out = counts_table(stats);
    if let Some(logouts) = stats.get("logouts").and_then(Value::as_array) {
        out.push('\n');
        out.push_str(&logouts_table(logouts));
    }
    out
}

/// The back-channel logouts of `stats`, one row per issuer (`-`: no configured issuer).
fn logouts_table(logouts: &[Value]) -> String {
    let mut rows = vec![["ISSUER", "ACCEPTED", "REFUSED", "LAST_REFUSAL"]
        .map(String::from)
        .to_vec()];
    for row in logouts {
        let last = match row.get("last_refusal") {
            Some(r @ Value::Object(_)) => format!(
                "{} {}: {}",
                cell(r.get("at")),
                cell(r.get("reason")),
                cell(r.get("error"))
            ),
            _ => "-".to_string(),
        };
        rows.push(vec![
            cell(row.get("issuer")),
            cell(row.get("accepted")),
            cell(row.get("refused")),
            last,
        ]);
    }
    format_table(&rows)
}

/// The members of `stats` but `logouts` as NAME VALUE rows.
fn counts_table(stats: &Value) -> String {
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
        if name == "logouts" || Kind::ALL.iter().any(|k| k.as_str() == name) {
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

/// The members of a record, in the order a record table shows them.
pub(super) const RECORD_FIELDS: [&str; 8] = [
    "kind",
    "issuer",
    "value",
    "revoked_at",
    "issued_before",
    "expires_at",
    "reason",
    "source",
];

/// A JSON object as a two-column FIELD VALUE table: the members named in `first` in that
/// order, then the others (nested values as JSON, null as `-`); anything else as one cell.
pub(super) fn fields_table(value: &Value, first: &[&str]) -> String {
    let Some(object) = value.as_object() else {
        return format_table(&[vec![cell(Some(value))]]);
    };
    let mut rows = vec![vec!["FIELD".to_string(), "VALUE".to_string()]];
    let named = first.iter().filter_map(|k| object.get_key_value(*k));
    let others = object.iter().filter(|(k, _)| !first.contains(&k.as_str()));
    for (name, v) in named.chain(others) {
        rows.push(vec![name.clone(), cell(Some(v))]);
    }
    format_table(&rows)
}

/// Writes to stdout, ignoring a closed pipe (`revgate list | head`).
pub(super) fn print_text(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub(super) fn print_line(line: &str) {
    print_text(&format!("{line}\n"));
}

pub(super) fn print_json_pretty(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_line(&text);
}
