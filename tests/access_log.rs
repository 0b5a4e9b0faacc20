//! The access log (SPEC §7, issue 13) and plain text logs, read from a real `revgate
//! serve` child's stderr: one `revgate::access` line per proxy-listener request, accepted
//! or refused (401, 404, 431 — the gateway's and the HTTP parser's — 502, the health path),
//! each with its request id and the SPEC's fields, in JSON and in text; never a token, a
//! query string or the `Authorization` header; `access_log = false` turns it off; no colour
//! codes when stderr is not a terminal.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Routes: `/api` (token) and `/pub` (public) to `upstream`, `/dead` to nothing; a health
/// path and 127.0.0.1 as a trusted proxy; `server_keys` added.
fn config(dir: &Path, upstream: SocketAddr, server_keys: &str) -> std::path::PathBuf {
    let routes = format!(
        "[[route]]\nprefix = \"/api\"\nupstream = \"http://{upstream}\"\n\
         [[route]]\nprefix = \"/pub\"\nupstream = \"http://{upstream}\"\npublic = true\n\
         [[route]]\nprefix = \"/dead\"\nupstream = \"http://{}\"\n",
        dead_addr()
    );
    let text = with_server_keys(
        &config_with_routes(&dir.join("store"), &routes),
        &format!("health_path = \"/-/health\"\ndrain_grace = \"200ms\"\ntrusted_proxies = [\"127.0.0.1\"]\n{server_keys}"),
    );
    write_config_file(dir, &text)
}

/// A raw HTTP/1.1 request with `X-Request-Id: id`, `Connection: close` and `headers`.
fn request(target: &str, id: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gw\r\nX-Request-Id: {id}\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Polls `log` until `done` holds for its lines, within [`WAIT`].
async fn wait_lines(
    log: &Arc<Mutex<Vec<String>>>,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = log.lock().unwrap().clone();
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "log lines did not come:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The access lines (JSON format) by request id.
fn access_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "revgate::access")
        .map(|v| v["fields"].clone())
        .collect()
}

#[tokio::test]
async fn every_request_is_one_json_access_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_mirror().await;
    let path = config(dir.path(), upstream, "log_format = \"json\"");
    let mut gw = ServeChild::start(&path).await;
    let secret_token = token("alice", "s-1", &unique_id("j"));
    let auth = format!("Authorization: Bearer {secret_token}\r\n");

    let ok = raw_http(
        gw.proxy,
        &request(
            "/api/x?access_token=SECRETQUERY&q=1",
            "ok-1",
            &format!("{auth}X-Forwarded-For: 203.0.113.9\r\n"),
        ),
    )
    .await;
    assert_eq!(ok.status, 200);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("noauth-1", request("/api/x", "noauth-1", ""), 401),
        (
            "bad-1",
            request(
                "/api/x",
                "bad-1",
                "Authorization: Bearer SECRETGARBAGE.x.y\r\n",
            ),
            401,
        ),
        (
            "nf-1",
            request("/nowhere?x=SECRETQUERY", "nf-1", &auth),
            404,
        ),
        (
            "big-1",
            request(
                "/pub/x",
                "big-1",
                &format!("X-Filler: {}\r\n", "a".repeat(17_000)),
            ),
            431,
        ),
        ("dead-1", request("/dead/x", "dead-1", &auth), 502),
        ("health-1", request("/-/health", "health-1", ""), 200),
    ];
    for (id, req, status) in &cases {
        assert_eq!(raw_http(gw.proxy, req).await.status, *status, "{id}");
    }
    // Beyond the HTTP/1.1 parser's buffer: hyper answers 431 itself; still one line.
    let huge = raw_http(
        gw.proxy,
        &request(
            "/pub/x",
            "huge-1",
            &format!("X-Filler: {}\r\n", "a".repeat(40_000)),
        ),
    )
    .await;
    assert_eq!(huge.status, 431);

    let lines = wait_lines(&gw.log, |lines| {
        let access = access_lines(lines);
        let ids = [
            "ok-1", "noauth-1", "bad-1", "nf-1", "big-1", "dead-1", "health-1",
        ];
        ids.iter()
            .all(|id| access.iter().any(|f| f["request_id"] == *id))
            && access.iter().any(|f| f["request_id"] == "-")
    })
    .await;
    let access = access_lines(&lines);
    let line = |id: &str| -> &Value {
        let mine: Vec<&Value> = access.iter().filter(|f| f["request_id"] == id).collect();
        assert_eq!(mine.len(), 1, "exactly one access line for {id}: {mine:?}");
        mine[0]
    };

    let l = line("ok-1");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/api/x");
    assert_eq!(l["route"], "/api");
    assert_eq!(l["status"], 200);
    assert_eq!(l["outcome"], "allowed");
    assert_eq!(l["peer"], "127.0.0.1");
    assert_eq!(l["client"], "203.0.113.9");
    assert_eq!(l["bytes"].as_u64(), Some(ok.body.len() as u64));
    let upstream_ms = l["upstream_ms"].as_f64().expect("upstream time");
    assert!(l["total_ms"].as_f64().unwrap() >= upstream_ms);

    for (id, status, outcome, route) in [
        ("noauth-1", 401, "unauthenticated", Some("/api")),
        ("bad-1", 401, "invalid_token", Some("/api")),
        ("nf-1", 404, "no_route", None),
        ("big-1", 431, "too_large", None),
        ("dead-1", 502, "upstream_error", Some("/dead")),
        ("health-1", 200, "health", None),
    ] {
        let l = line(id);
        assert_eq!(l["status"], status, "{id}: {l}");
        assert_eq!(l["outcome"], outcome, "{id}: {l}");
        assert_eq!(l["route"].as_str(), route, "{id}: {l}");
        assert!(
            l.get("client").is_none(),
            "{id}: no X-Forwarded-For, no client: {l}"
        );
        assert!(l["total_ms"].is_number(), "{id}: {l}");
        assert_eq!(l.get("upstream_ms").is_some(), id == "dead-1", "{id}: {l}");
    }
    assert_eq!(line("nf-1")["path"], "/nowhere");
    let parser = line("-");
    assert_eq!(
        (parser["status"].as_u64(), parser["outcome"].as_str()),
        (Some(431), Some("too_large"))
    );

    let all = lines.join("\n");
    for secret in [
        secret_token.as_str(),
        "SECRETQUERY",
        "SECRETGARBAGE",
        "access_token",
        "Bearer",
    ] {
        assert!(!all.contains(secret), "the log holds {secret:?}:\n{all}");
    }
    gw.sigterm();
    assert!(gw.wait_exit(WAIT).await.is_some_and(|s| s.success()));
}

#[tokio::test]
async fn text_lines_are_plain_when_stderr_is_not_a_terminal() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), start_echo().await, "");
    // Not ServeChild: it sets NO_COLOR and strips escapes; here stderr is a pipe and
    // nothing asks for plain output but the pipe itself.
    let mut child = tokio::process::Command::new(revgate_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG_STYLE")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let mut reader = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let lines = wait_lines(&log, |l| {
        l.iter()
            .any(|l| parse_listening_line(&strip_ansi(l)).is_some())
    })
    .await;
    let (proxy, _) = lines
        .iter()
        .find_map(|l| parse_listening_line(&strip_ansi(l)))
        .unwrap();
    let answer = raw_http(proxy, &request("/pub/x?q=SECRETQUERY", "text-1", "")).await;
    assert_eq!(answer.status, 200);
    let lines = wait_lines(&log, |l| l.iter().any(|l| l.contains("request_id=text-1"))).await;
    for l in &lines {
        assert!(!l.contains('\u{1b}'), "colour codes in a piped log: {l:?}");
    }
    let access = lines
        .iter()
        .find(|l| l.contains("request_id=text-1"))
        .unwrap();
    for part in [
        " INFO revgate::access: ",
        "method=GET",
        "path=/pub/x ",
        "status=200",
        "peer=127.0.0.1",
    ] {
        assert!(access.contains(part), "{part:?} not in {access:?}");
    }
    assert!(!access.contains("SECRETQUERY"), "{access}");
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}

#[tokio::test]
async fn access_log_false_writes_no_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), start_echo().await, "log_format = \"json\"");
    // Through its environment override, as an operator might switch it.
    let env: [&std::ffi::OsStr; 2] = ["env".as_ref(), "REVGATE_SERVER_ACCESS_LOG=false".as_ref()];
    let mut gw = ServeChild::start_under(&env, Path::new(revgate_bin()), &path).await;
    for i in 0..3 {
        let id = format!("off-{i}");
        assert_eq!(
            raw_http(gw.proxy, &request("/pub/x", &id, "")).await.status,
            200
        );
    }
    // A line logged after the requests, so everything before it has been written.
    assert_eq!(
        raw_http(
            gw.proxy,
            &request("/api/x", "off-r", "Authorization: Bearer a.b.c\r\n")
        )
        .await
        .status,
        401
    );
    assert!(gw.wait_for_log("request rejected").await);
    let lines = gw.log.lock().unwrap().clone();
    assert!(access_lines(&lines).is_empty(), "{}", lines.join("\n"));
    gw.sigterm();
    assert!(gw.wait_exit(WAIT).await.is_some_and(|s| s.success()));
}
