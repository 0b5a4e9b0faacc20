//! The admin subcommands that send one request or follow a list (`revoke`, `unrevoke`,
//! `lookup`, `list`, `stats`, `sweep`) and print the answer; `export` and `import` are
//! handed to [`super::transfer`]. Arguments are checked before the config is read or the
//! network is touched.

use std::io::Read;

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{check_path_value, load_config, resolve_target, AdminClient};
use super::config_file::search_path;
use super::output::{
    fail, fields_table, format_table, print_json_pretty, print_line, print_text, record_row,
    stats_table, CliError, RECORD_FIELDS,
};
use super::{transfer, AdminCommand, ListArgs, OutputFormat, RevokeArgs, RevokeKind, EXIT_OK};
use crate::store::Kind;

/// Records asked for per `GET /v1/revocations` page.
const LIST_PAGE_SIZE: u64 = 500;

/// Largest JWT read from stdin by `revoke token -`.
const MAX_STDIN_TOKEN_BYTES: u64 = 64 * 1024;

/// Runs an admin subcommand and returns the process exit code. Output goes to stdout;
/// a failure prints one line on stderr (`revgate NAME: ...`).
pub(super) async fn run(cmd: AdminCommand) -> u8 {
    let name = cmd.name();
    match execute(cmd).await {
        Ok(()) => EXIT_OK,
        Err(err) => fail(&format!("revgate {name}"), &err),
    }
}

async fn execute(cmd: AdminCommand) -> Result<(), CliError> {
    match &cmd {
        AdminCommand::Export(args) if args.offline => return transfer::export_offline(args).await,
        AdminCommand::Import(args) if args.offline => return transfer::import_offline(args).await,
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
    let config = load_config(cmd.connection(), &search_path(), &env)?;
    let target = resolve_target(cmd.connection(), config.as_ref(), &env)?;
    let client = AdminClient::new(target)?;
    let output = cmd.output();
    let json = output == OutputFormat::Json;
    match cmd {
        AdminCommand::Revoke(_) => {
            let (segments, body) = revoke_request.expect("built above");
            let url = client.url(&segments, &[]);
            let record = client.call(Method::POST, url, Some(body)).await?;
            print_record(&record.unwrap_or(Value::Null), output);
        }
        AdminCommand::Lookup(args) => {
            let url = client.revocation_url(&args);
            let record = client.call(Method::GET, url, None).await?;
            print_record(&record.unwrap_or(Value::Null), output);
        }
        AdminCommand::Unrevoke(args) => {
            let url = client.revocation_url(&args);
            client.call(Method::DELETE, url, None).await?;
            if json {
                print_json_pretty(&json!({
                    "unrevoked": true,
                    "kind": args.kind.kind().as_str(),
                    "issuer": args.issuer,
                    "value": args.value,
                }));
            } else {
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
        }
        AdminCommand::List(args) => list(&client, &args, json).await?,
        AdminCommand::Stats(_) => {
            let url = client.url(&["v1", "stats"], &[]);
            let stats = client.call(Method::GET, url, None).await?;
            let stats = stats.unwrap_or(Value::Null);
            if json {
                print_json_pretty(&stats);
            } else {
                print_text(&stats_table(&stats));
            }
        }
        AdminCommand::Sweep(_) => {
            let url = client.url(&["v1", "sweep"], &[]);
            let answer = client.call(Method::POST, url, None).await?;
            let answer = answer.unwrap_or(Value::Null);
            if json {
                print_json_pretty(&answer);
            } else {
                print_text(&fields_table(&answer, &[]));
            }
        }
        AdminCommand::Export(args) => transfer::export_online(&client, &args).await?,
        AdminCommand::Import(args) => transfer::import_online(&client, &args).await?,
    }
    Ok(())
}

/// A record as its JSON or as a FIELD VALUE table.
fn print_record(record: &Value, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json_pretty(record),
        OutputFormat::Table => print_text(&fields_table(record, &RECORD_FIELDS)),
    }
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
pub(super) fn revoke_request(
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

/// `list`: follows `next` cursors until `--limit` records or the end; one record JSON per
/// line with `json`, else one table.
async fn list(client: &AdminClient, args: &ListArgs, json: bool) -> Result<(), CliError> {
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
                CliError::Failed(
                    "unexpected answer from the admin API: no \"items\" array".to_string(),
                )
            })?;
        let take = remaining.map_or(items.len(), |r| usize::try_from(r).unwrap_or(usize::MAX));
        for item in items.iter().take(take) {
            if json {
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
                return Err(CliError::Failed(format!(
                    "unexpected answer from the admin API: \"next\" is {other}"
                )))
            }
        };
        if items.is_empty() {
            break;
        }
        if after.as_deref() == Some(next.as_str()) {
            return Err(CliError::Failed(
                "the admin API returned the same list cursor twice".to_string(),
            ));
        }
        after = Some(next);
    }
    if !json {
        print_text(&format_table(&rows));
    }
    Ok(())
}
