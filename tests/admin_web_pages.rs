//! A web page cannot drive the admin API (SPEC §5; issue 10 point 5). A page the operator
//! visits can make the browser send requests to `http://127.0.0.1:9090`: a `text/plain`
//! POST goes out cross-site without a CORS preflight, and with DNS rebinding
//! (`Host: rebind.evil.example`, resolving to 127.0.0.1) the page can even read the answers.
//! Each test sends exactly what a browser would send, over raw HTTP to a real gateway, and
//! checks the refusal (`421` foreign Host, `403` Origin, `415` media type, `405` + `Allow`),
//! its JSON error shape, and that nothing changed in the store.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "page-proof-admin-token";

/// A gateway with `server_keys` added to `[server]`.
async fn start(server_keys: &str) -> (tempfile::TempDir, Gateway) {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let config = with_server_keys(&config_text(echo, &store, ""), server_keys);
    (dir, Gateway::start(&config).await)
}

/// One HTTP/1.1 request on its own connection with exactly `headers` (plus
/// `Content-Length` when `body` is not empty, and `Connection: close`).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body);
    raw_http(addr, req.as_bytes()).await
}

/// Asserts `status` with the admin API's JSON error shape and error code `code`.
#[track_caller]
fn assert_error(resp: &RawResponse, status: u16, code: &str, what: &str) {
    let text = String::from_utf8_lossy(&resp.body);
    assert_eq!(resp.status, status, "{what}: {text}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = resp.json();
    let obj = body.as_object().unwrap_or_else(|| panic!("{what}: {text}"));
    assert_eq!(
        obj.len(),
        2,
        "{what}: only error and error_description: {body}"
    );
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
}

/// `ROUTES` as (method, concrete path, content type, body) a valid request would use.
fn concrete_routes() -> Vec<(&'static str, String, Option<&'static str>, String)> {
    revgate::admin::ROUTES
        .iter()
        .map(|r| {
            let path = r.path.replace("{kind}", "sub").replace("{value}", "alice");
            let (ct, body) = match r.body {
                revgate::admin::Body::Json => (
                    Some("application/json"),
                    json!({"kind": "sub", "value": "alice"}).to_string(),
                ),
                revgate::admin::Body::Ndjson => (Some("application/x-ndjson"), sid_line_2099()),
                revgate::admin::Body::None => (None, String::new()),
            };
            (r.method, path, ct, body)
        })
        .collect()
}

/// The import line of the audit: a sid cutoff in 2099 (every session token dead).
fn sid_line_2099() -> String {
    format!(
        "{}\n",
        json!({"kind": "sid", "issuer": ISS, "value": "s-alice", "revoked_at": "2024-01-01T00:00:00Z",
            "issued_before": "2099-01-01T00:00:00Z", "expires_at": "2099-01-02T00:00:00Z",
            "reason": "page", "source": "admin"})
    )
}

#[tokio::test]
async fn a_cross_site_page_cannot_revoke_import_reload_or_sweep() {
    // admin_token unset: the default.
    let (_dir, gw) = start("").await;
    let host = format!("127.0.0.1:{}", gw.admin.port());
    let alice = token("alice", "s-alice", &unique_id("alice"));
    assert_eq!(proxy_status(&gw, &alice).await, 200);

    let revoke_alice = json!({"kind": "sub", "value": "alice"}).to_string();
    let revoke_token = json!({"token": alice}).to_string();
    let attempts: [(&str, &str); 5] = [
        ("/v1/revocations", &revoke_alice),
        ("/v1/revocations/token", &revoke_token),
        ("/v1/import", &sid_line_2099()),
        ("/v1/reload", ""),
        ("/v1/sweep", ""),
    ];
    for (path, body) in attempts {
        // fetch(url, {method: "POST", mode: "no-cors", body}): Origin and text/plain.
        let resp = send(
            gw.admin,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", "https://evil.example"),
                ("Content-Type", "text/plain;charset=UTF-8"),
            ],
            body,
        )
        .await;
        assert_error(&resp, 403, "forbidden", &format!("{path} with Origin"));
        // Origin: null (sandboxed frame, file: page) is an Origin too.
        let resp = send(
            gw.admin,
            "POST",
            path,
            &[("Host", &host), ("Origin", "null")],
            body,
        )
        .await;
        assert_error(
            &resp,
            403,
            "forbidden",
            &format!("{path} with Origin: null"),
        );
        // Without Origin, the body types a form or a no-cors fetch can send are refused.
        if body.is_empty() {
            continue;
        }
        for ct in [
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let resp = send(
                gw.admin,
                "POST",
                path,
                &[("Host", &host), ("Content-Type", ct)],
                body,
            )
            .await;
            assert_error(
                &resp,
                415,
                "unsupported_media_type",
                &format!("{path} as {ct}"),
            );
        }
        let resp = send(gw.admin, "POST", path, &[("Host", &host)], body).await;
        assert_error(
            &resp,
            415,
            "unsupported_media_type",
            &format!("{path} without Content-Type"),
        );
    }
    // A JSON body under the import's type, and NDJSON under a JSON route, are refused too.
    let resp = send(
        gw.admin,
        "POST",
        "/v1/import",
        &[("Host", &host), ("Content-Type", "application/json")],
        &sid_line_2099(),
    )
    .await;
    assert_error(&resp, 415, "unsupported_media_type", "import as JSON");

    // Nothing happened: no record, no sweep, alice still passes.
    assert_eq!(stats_counts(&gw).await, (0, 0, 0));
    assert_eq!(admin_stats(&gw).await["last_sweep"], Value::Null);
    assert_eq!(proxy_status(&gw, &alice).await, 200);

    // The operator's own requests (curl, the CLI, scripts) still work.
    let resp = send(
        gw.admin,
        "POST",
        "/v1/revocations",
        &[
            ("Host", &host),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        &revoke_alice,
    )
    .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let resp = send(
        gw.admin,
        "POST",
        "/v1/import",
        &[("Host", &host), ("Content-Type", "application/x-ndjson")],
        &sid_line_2099(),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    assert_eq!(resp.json()["imported"], 1);
    let resp = send(gw.admin, "POST", "/v1/sweep", &[("Host", &host)], "").await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    assert_eq!(stats_counts(&gw).await, (0, 1, 1));
    assert_eq!(proxy_status(&gw, &alice).await, 401);
    gw.stop().await;
}

#[tokio::test]
async fn a_rebound_host_gets_421_on_every_route_and_changes_nothing() {
    let (_dir, gw) = start("").await;
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sub", "value": "alice"}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    let port = gw.admin.port();
    let rebound = format!("rebind.evil.example:{port}");
    // Every route, sent as the operator would send it but under the rebound name (a
    // rebound page is same-origin, so GETs carry no Origin).
    for (method, path, ct, body) in concrete_routes() {
        let mut headers = vec![("Host", rebound.as_str())];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        let resp = send(gw.admin, method, &path, &headers, &body).await;
        assert_error(
            &resp,
            421,
            "misdirected_request",
            &format!("{method} {path}"),
        );
        assert!(
            !String::from_utf8_lossy(&resp.body).contains("alice"),
            "{method} {path} leaked a record"
        );
    }
    // Any name that is not loopback, localhost, admin_listen or admin_hosts.
    for host in [
        "rebind.evil.example",
        "localhost.evil.example",
        "localhost.",
        "127.0.0.1.nip.io",
        "127.1",
        "0.0.0.0",
        "[::]",
        "10.11.12.13",
        "",
    ] {
        let resp = send(gw.admin, "GET", "/v1/stats", &[("Host", host)], "").await;
        assert_error(&resp, 421, "misdirected_request", &format!("Host {host:?}"));
    }
    // Nothing was deleted or swept.
    let (status, found) = admin_get(&gw, "/v1/revocations/sub/alice").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(stats_counts(&gw).await, (0, 0, 1));
    assert_eq!(admin_stats(&gw).await["last_sweep"], Value::Null);
    gw.stop().await;
}

#[tokio::test]
async fn loopback_localhost_admin_listen_and_admin_hosts_are_answered_nothing_else() {
    let (_dir, gw) = start("admin_hosts = [\"gw-1.internal\", \"10.9.8.7\"]").await;
    let port = gw.admin.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("127.3.2.1:{port}"),
        format!("[::1]:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("gw-1.internal:{port}"),
        "GW-1.Internal".to_string(),
        "10.9.8.7:9090".to_string(),
    ] {
        let resp = send(gw.admin, "GET", "/v1/stats", &[("Host", &host)], "").await;
        assert_eq!(resp.status, 200, "Host {host}: {:?}", resp.json());
    }
    // No Host at all (HTTP/1.0 or a bare HTTP/1.1 request): refused, no exception.
    for req in [
        "GET /v1/stats HTTP/1.0\r\n\r\n".to_string(),
        "GET /healthz HTTP/1.0\r\n\r\n".to_string(),
        "GET /v1/stats HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        let resp = raw_http(gw.admin, req.as_bytes()).await;
        assert_error(&resp, 421, "misdirected_request", &req);
    }
    // Absolute form: the URI's authority counts, and must agree with Host.
    let local = format!("127.0.0.1:{port}");
    for (target, host, status) in [
        (format!("http://{local}/v1/stats"), local.clone(), 200),
        (
            "http://rebind.evil.example/v1/stats".to_string(),
            local.clone(),
            421,
        ),
        (
            format!("http://{local}/v1/stats"),
            "rebind.evil.example".to_string(),
            421,
        ),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw_http(gw.admin, req.as_bytes()).await;
        assert_eq!(resp.status, status, "{req}: {:?}", resp.json());
    }
    // Two Host headers: ambiguous, refused.
    let req = format!(
        "GET /v1/stats HTTP/1.1\r\nHost: {local}\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n"
    );
    let resp = raw_http(gw.admin, req.as_bytes()).await;
    assert_error(&resp, 400, "invalid_request", "two Host headers");
    gw.stop().await;
}

#[tokio::test]
async fn admin_hosts_follow_a_reload() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let config_dir = tempfile::tempdir().unwrap();
    let with_hosts = |hosts: &str| {
        with_server_keys(
            &config_text(echo, &store, ""),
            &format!("admin_hosts = [{hosts}]"),
        )
    };
    let path = write_config_file(config_dir.path(), &with_hosts("\"gw-1.internal\""));
    let gw = Gateway::start_from_file(&path).await;
    let admin = gw.admin;
    let status_as = move |host: &'static str| async move {
        send(admin, "GET", "/v1/stats", &[("Host", host)], "")
            .await
            .status
    };
    assert_eq!(status_as("gw-1.internal").await, 200);
    assert_eq!(status_as("gw-2.internal").await, 421);
    write_config(&path, &with_hosts("\"gw-2.internal\""));
    let (status, report) = admin_reload(gw.admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(status_as("gw-1.internal").await, 421);
    assert_eq!(status_as("gw-2.internal").await, 200);
    // A bad entry refuses the reload and keeps the running list.
    write_config(&path, &with_hosts("\"gw-3.internal:9090\""));
    let (status, report) = admin_reload(gw.admin).await;
    assert_eq!(status, 400, "{report}");
    assert!(
        report["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("server.admin_hosts[0]")),
        "{report}"
    );
    assert_eq!(status_as("gw-2.internal").await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn with_admin_token_a_page_meets_the_same_refusals_before_the_token_check() {
    let (_dir, gw) = start(&format!("admin_token = \"{ADMIN_TOKEN}\"")).await;
    let local = format!("127.0.0.1:{}", gw.admin.port());
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let body = json!({"kind": "sub", "value": "alice"}).to_string();
    let json_ct = ("Content-Type", "application/json");
    // Token or not, a rebound Host is 421 and an Origin is 403: a page cannot tell whether
    // a token is configured, nor probe routes.
    for auth in [None, Some(bearer.as_str())] {
        for (method, path) in [
            ("POST", "/v1/revocations"),
            ("GET", "/nope"),
            ("GET", "/metrics"),
            ("GET", "/healthz"),
        ] {
            let body = if method == "POST" { body.as_str() } else { "" };
            for (host, origin, status, code) in [
                ("rebind.evil.example", None, 421, "misdirected_request"),
                (
                    local.as_str(),
                    Some("https://evil.example"),
                    403,
                    "forbidden",
                ),
            ] {
                let mut headers = vec![("Host", host), json_ct];
                headers.extend(origin.map(|o| ("Origin", o)));
                headers.extend(auth.map(|a| ("Authorization", a)));
                let resp = send(gw.admin, method, path, &headers, body).await;
                assert_error(&resp, status, code, &format!("{method} {path} {headers:?}"));
            }
        }
    }
    // Then the token, then the media type.
    let resp = send(
        gw.admin,
        "POST",
        "/v1/revocations",
        &[("Host", &local), ("Content-Type", "text/plain")],
        &body,
    )
    .await;
    assert_error(&resp, 401, "unauthorized", "text/plain without token");
    let resp = send(
        gw.admin,
        "POST",
        "/v1/revocations",
        &[
            ("Host", &local),
            ("Authorization", &bearer),
            ("Content-Type", "text/plain"),
        ],
        &body,
    )
    .await;
    assert_error(
        &resp,
        415,
        "unsupported_media_type",
        "text/plain with token",
    );
    let resp = send(
        gw.admin,
        "POST",
        "/v1/revocations",
        &[("Host", &local), ("Authorization", &bearer), json_ct],
        &body,
    )
    .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    // healthz stays token-free for loopback callers.
    let resp = send(gw.admin, "GET", "/healthz", &[("Host", &local)], "").await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    gw.stop().await;
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_answers_405_with_allow() {
    let (_dir, gw) = start("").await;
    let local = format!("127.0.0.1:{}", gw.admin.port());
    let paths: BTreeSet<&str> = revgate::admin::ROUTES.iter().map(|r| r.path).collect();
    for template in paths {
        let served: BTreeSet<&str> = revgate::admin::ROUTES
            .iter()
            .filter(|r| r.path == template)
            .map(|r| r.method)
            .collect();
        let path = template
            .replace("{kind}", "sub")
            .replace("{value}", "alice");
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            if served.contains(method) {
                continue;
            }
            let resp = send(gw.admin, method, &path, &[("Host", &local)], "").await;
            assert_eq!(resp.status, 405, "{method} {path}");
            let allow: BTreeSet<&str> = resp
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
                .split(',')
                .map(str::trim)
                .collect();
            assert_eq!(allow, served, "{method} {path}: Allow");
            if method != "HEAD" {
                assert_error(
                    &resp,
                    405,
                    "method_not_allowed",
                    &format!("{method} {path}"),
                );
            }
        }
    }
    gw.stop().await;
}
