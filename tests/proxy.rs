//! Forwarding behaviour of the proxy listener (SPEC §4, §7 request ids): routing, path
//! rewriting, identity and forwarding headers, scopes, CORS preflight, hop-by-hop headers,
//! upstream failures, limits and streamed bodies. Real gateway on 127.0.0.1:0, real
//! upstreams (see `tests/common`), temporary sled store, real keys.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A gateway whose routes (from [`config_text`]) all go to a mirror upstream, plus the
/// `extra` TOML and `server_keys` added to `[server]`.
async fn start(extra: &str, server_keys: &str) -> (Gateway, tempfile::TempDir, SocketAddr) {
    let mirror = start_mirror().await;
    let (dir, store) = temp_store();
    let config = with_server_keys(&config_text(mirror, &store, extra), server_keys);
    (Gateway::start(&config).await, dir, mirror)
}

fn good_token() -> String {
    token("user-1", "sess-1", "jti-1")
}

/// GET with the good token; asserts 200 and returns the mirror's view of the request.
/// A chunked (no Content-Length) request body of `n` chunks of `size` bytes.
fn chunked_body(n: usize, size: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..n).map(|_| Ok(vec![b'y'; size])).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

async fn mirrored(gw: &Gateway, path: &str) -> Value {
    let resp = get_with(&gw.url(path), &good_token()).await;
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn longest_whole_segment_prefix_wins() {
    let mirror = start_mirror().await;
    let (_dir, store) = temp_store();
    let extra = route_table("/api", &format!("http://{mirror}/A"), "")
        + &route_table("/api/v2", &format!("http://{mirror}/B"), "");
    let gw = Gateway::start(&config_text(mirror, &store, &extra)).await;
    for (path, seen) in [
        ("/api", "/A/api"),
        ("/api/", "/A/api/"),
        ("/api/x", "/A/api/x"),
        ("/apix", "/apix"),
        ("/api/v2", "/B/api/v2"),
        ("/api/v2/y", "/B/api/v2/y"),
        ("/api/v2x", "/A/api/v2x"),
        ("/", "/"),
    ] {
        assert_eq!(mirrored(&gw, path).await["path"], seen, "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn unmatched_paths_are_404_before_any_token_check() {
    let mirror = start_mirror().await;
    let (_dir, store) = temp_store();
    let config = config_with_routes(
        &store,
        &route_table("/api", &format!("http://{mirror}"), ""),
    );
    let gw = Gateway::start(&config).await;
    for path in ["/apix", "/", "/other/api", "/ap"] {
        // No token, a forged token: 404 either way, with a JSON error body.
        let (status, body) = status_json(client().get(gw.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
        let forged = sign_forged(&claims("u", "s", "j"));
        let (status, _) = status_json(get_with(&gw.url(path), &forged).await).await;
        assert_eq!(status, 404, "{path} with a forged token");
    }
    // The route itself still needs a token.
    let resp = client().get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(mirrored(&gw, "/api/x").await["path"], "/api/x");
    gw.stop().await;
}

#[tokio::test]
async fn strip_prefix_upstream_base_path_and_query() {
    let mirror = start_mirror().await;
    let (_dir, store) = temp_store();
    let extra = route_table(
        "/svc",
        &format!("http://{mirror}/base"),
        "strip_prefix = true",
    ) + &route_table("/keep", &format!("http://{mirror}/base/"), "")
        + &route_table("/bare", &format!("http://{mirror}"), "strip_prefix = true");
    let gw = Gateway::start(&config_text(mirror, &store, &extra)).await;

    let b = mirrored(&gw, "/svc/x/y?q=1&r=a%20b").await;
    assert_eq!(
        (b["path"].as_str(), b["query"].as_str()),
        (Some("/base/x/y"), Some("q=1&r=a%20b"))
    );
    let b = mirrored(&gw, "/keep/z?flag").await;
    assert_eq!(
        (b["path"].as_str(), b["query"].as_str()),
        (Some("/base/keep/z"), Some("flag"))
    );
    let b = mirrored(&gw, "/bare/deep/er").await;
    assert_eq!(b["path"], "/deep/er");
    assert_eq!(b["query"], Value::Null);
    let b = mirrored(&gw, "/bare").await;
    assert_eq!(b["path"], "/");
    let b = mirrored(&gw, "/plain/p?a=1&a=2&empty=").await;
    assert_eq!(
        (b["path"].as_str(), b["query"].as_str()),
        (Some("/plain/p"), Some("a=1&a=2&empty="))
    );
    assert_eq!(b["method"], "GET");

    // Method and body are passed as they are.
    let resp = client()
        .put(gw.url("/svc/item?v=2"))
        .bearer_auth(good_token())
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, b) = status_json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(b["method"], "PUT");
    assert_eq!(b["path"], "/base/item");
    assert_eq!(b["body_len"], 5);
    assert_eq!(b["body_sha256"], sha256_hex(b"hello"));
    gw.stop().await;
}

#[tokio::test]
async fn public_route_needs_no_token_and_strips_identity_headers() {
    let (gw, _dir, _) = start("", "").await;
    let resp = client()
        .get(gw.url("/public/info?x=1"))
        .header("X-Auth-Sub", "evil")
        .header("X-Auth-Iss", "https://evil.test/")
        .header("X-Auth-Sid", "evil-sid")
        .header("X-Auth-Jti", "evil-jti")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/public/info");
    let headers = body["headers"].as_object().unwrap();
    for h in ["x-auth-sub", "x-auth-iss", "x-auth-sid", "x-auth-jti"] {
        assert!(!headers.contains_key(h), "{h} reached the upstream: {body}");
    }
    // /publicity is not /public.
    let resp = client().get(gw.url("/publicity")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn client_identity_headers_are_replaced_by_verified_ones() {
    let (gw, _dir, _) = start("", "").await;
    let resp = client()
        .get(gw.url("/api"))
        .bearer_auth(good_token())
        .header("X-Auth-Sub", "evil")
        .header("X-Auth-Iss", "https://evil.test/")
        .header("X-Auth-Jti", "evil-jti")
        .header("X-Auth-Sid", "evil-sid")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    let h = &body["headers"];
    assert_eq!(h["x-auth-sub"], "user-1");
    assert_eq!(h["x-auth-iss"], ISS);
    assert_eq!(h["x-auth-jti"], "jti-1");
    assert_eq!(h["x-auth-sid"], "sess-1");

    // A token without sid: the client's X-Auth-Sid is removed, none is added.
    let mut c = claims("user-2", "x", "jti-2");
    c.as_object_mut().unwrap().remove("sid");
    let t = sign_with("RS256", Some("rsa-1"), None, &c);
    let resp = client()
        .get(gw.url("/api"))
        .bearer_auth(&t)
        .header("X-Auth-Sid", "evil-sid")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200);
    assert!(body["headers"].get("x-auth-sid").is_none(), "{body}");
    assert_eq!(body["headers"]["x-auth-sub"], "user-2");
    gw.stop().await;
}

#[tokio::test]
async fn route_scopes_are_enforced() {
    let (gw, _dir, _) = start("", "").await;
    let url = gw.url("/admin-area/panel");

    // Default token: scope "read" only.
    let resp = get_with(&url, &good_token()).await;
    let www = www_authenticate(&resp);
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        www.starts_with("Bearer realm=\"revgate\", error=\"insufficient_scope\""),
        "{www:?}"
    );
    assert_eq!(body["error"], "insufficient_scope");

    let mut c = claims("u", "s", "j").as_object().unwrap().clone();
    c.insert("scope".into(), json!("read admin"));
    let t = sign_with("RS256", Some("rsa-1"), None, &Value::Object(c.clone()));
    assert_eq!(get_with(&url, &t).await.status(), 200, "scope string");

    c.remove("scope");
    c.insert("scp".into(), json!(["write", "admin"]));
    let t = sign_with("RS256", Some("rsa-1"), None, &Value::Object(c.clone()));
    assert_eq!(get_with(&url, &t).await.status(), 200, "scp array");

    c.insert("scp".into(), json!(["write", "administrator"]));
    let t = sign_with("RS256", Some("rsa-1"), None, &Value::Object(c.clone()));
    assert_eq!(get_with(&url, &t).await.status(), 403, "scp without admin");

    c.remove("scp");
    let t = sign_with("RS256", Some("rsa-1"), None, &Value::Object(c));
    assert_eq!(get_with(&url, &t).await.status(), 403, "no scope at all");

    // Scope checks come after token checks: a bad token is still 401.
    let resp = get_with(&url, &sign_forged(&claims("u", "s", "j"))).await;
    assert_invalid_token(resp, "signature", "forged on scoped route").await;
    gw.stop().await;
}

#[tokio::test]
async fn cors_preflight_passes_without_a_token_plain_options_does_not() {
    let (gw, _dir, _) = start("", "").await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/api/items"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "OPTIONS");
    assert_eq!(body["headers"]["access-control-request-method"], "DELETE");
    assert!(body["headers"].get("x-auth-sub").is_none());

    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/api/items"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(www_authenticate(&resp), "Bearer realm=\"revgate\"");

    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/api/items"))
        .bearer_auth(good_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;

    // Disabled: a preflight needs a token like anything else.
    let mirror = start_mirror().await;
    let (_dir2, store) = temp_store();
    let config = config_text(mirror, &store, "")
        .replace("[auth]\n", "[auth]\nforward_cors_preflight = false\n");
    let gw = Gateway::start(&config).await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/api/items"))
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let (gw, _dir, _) = start("", "").await;
    let request = format!(
        "GET /api/hop HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {}\r\n\
         Connection: close, X-Secret\r\nX-Secret: s3cr3t\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: yes\r\n\r\n",
        good_token()
    );
    let resp = raw_http(gw.proxy, request.as_bytes()).await;
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let body = resp.json();
    let h = body["headers"].as_object().unwrap();
    for name in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(!h.contains_key(name), "{name} was forwarded: {body}");
    }
    if let Some(c) = h.get("connection") {
        assert!(
            !c.as_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-secret"),
            "client's Connection forwarded: {c}"
        );
    }
    assert_eq!(h["x-kept"], "yes");
    gw.stop().await;
}

/// GET `/api/fwd` with the good token and `headers`: the headers the mirror received.
async fn forwarded_headers(gw: &Gateway, headers: &[(&str, &str)]) -> Value {
    let mut req = client().get(gw.url("/api/fwd")).bearer_auth(good_token());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, body) = status_json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["headers"].clone()
}

#[tokio::test]
async fn forwarding_headers_and_authorization_are_set() {
    // 127.0.0.1 is not in trusted_proxies (empty by default): the client's forwarding
    // headers are replaced by the gateway's own (SPEC §4).
    let (gw, _dir, _) = start("", "").await;
    let client_sent = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
    ];
    let h = forwarded_headers(&gw, &client_sent).await;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.proxy.to_string());
    assert_eq!(h["authorization"], format!("Bearer {}", good_token()));

    let h = mirrored(&gw, "/api/fwd").await["headers"].clone();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    gw.stop().await;

    // From a trusted proxy the list is kept and the peer appended.
    let (gw, _dir, _) = start("", "trusted_proxies = [\"127.0.0.1\"]").await;
    let h = forwarded_headers(&gw, &[("X-Forwarded-For", "203.0.113.7")]).await;
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.proxy.to_string());
    assert_eq!(h["authorization"], format!("Bearer {}", good_token()));

    let h = mirrored(&gw, "/api/fwd").await["headers"].clone();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");

    // Several X-Forwarded-For headers form one list (RFC 9110 §5.3): none is dropped.
    let h = forwarded_headers(
        &gw,
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-For", "198.51.100.2, 192.0.2.9"),
        ],
    )
    .await;
    assert_eq!(
        h["x-forwarded-for"],
        "203.0.113.7, 198.51.100.2, 192.0.2.9, 127.0.0.1"
    );
    gw.stop().await;
}

#[tokio::test]
async fn request_ids_are_passed_or_generated() {
    let (gw, _dir, _) = start("", "").await;
    let resp = client()
        .get(gw.url("/api/rid"))
        .bearer_auth(good_token())
        .header("X-Request-Id", "client-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-req-42");
    let (_, body) = status_json(resp).await;
    assert_eq!(body["headers"]["x-request-id"], "client-req-42");

    let mut seen = Vec::new();
    for _ in 0..2 {
        let resp = get_with(&gw.url("/api/rid"), &good_token()).await;
        let answered = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let (_, body) = status_json(resp).await;
        assert!(!answered.is_empty());
        assert_eq!(body["headers"]["x-request-id"], answered.as_str());
        seen.push(answered);
    }
    assert_ne!(seen[0], seen[1], "generated ids are unique");

    // Refusals carry one too.
    let resp = client().get(gw.url("/api/rid")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("x-request-id"));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let dead = dead_addr();
    let silent = start_silent().await;
    let extra = route_table("/down", &format!("http://{dead}"), "")
        + &route_table("/slow", &format!("http://{silent}"), "timeout = \"1s\"");
    let (gw, _dir, _) = start(&extra, "").await;

    let (status, body) = status_json(get_with(&gw.url("/down/x"), &good_token()).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].is_string(), "{body}");

    let started = Instant::now();
    let (status, body) = status_json(get_with(&gw.url("/slow/x"), &good_token()).await).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "504 after {took:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn dot_segments_are_refused() {
    let (gw, _dir, _) = start("", "").await;
    for path in [
        "/public/../admin-area",
        "/public/%2e%2e/admin-area",
        "/public/%2E./x",
        "/api/./x",
        "/public/..",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
        let resp = raw_http(gw.proxy, req.as_bytes()).await;
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(resp.json()["error"], "invalid_request", "{path}");
    }
    // Dots inside a segment are fine.
    let req = "GET /public/a..b/.c HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_http(gw.proxy, req.as_bytes()).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_intact_both_ways() {
    let echo_body = start_body_echo().await;
    let big = start_bytes(20 * 1024 * 1024).await;
    let extra = route_table("/echo-body", &format!("http://{echo_body}"), "")
        + &route_table("/big", &format!("http://{big}"), "");
    let (gw, _dir, _) = start(&extra, "").await;

    // 8 MiB up (Content-Length) and back, under the default 10 MiB limit.
    let upload: Vec<u8> = pattern(8 * 1024 * 1024 + 13).into_iter().rev().collect();
    let resp = client()
        .post(gw.url("/echo-body/up"))
        .bearer_auth(good_token())
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.bytes().await.unwrap();
    assert_eq!(back.len(), upload.len());
    assert_eq!(sha256_hex(&back), sha256_hex(&upload));

    // The same, chunked (no Content-Length).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        upload.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(gw.url("/echo-body/chunked"))
        .bearer_auth(good_token())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sha256_hex(&resp.bytes().await.unwrap()),
        sha256_hex(&upload)
    );

    // 20 MiB down: responses are not limited by max_body_bytes.
    let resp = get_with(&gw.url("/big/file"), &good_token()).await;
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), 20 * 1024 * 1024);
    assert_eq!(sha256_hex(&got), sha256_hex(&pattern(20 * 1024 * 1024)));
    gw.stop().await;

    // With max_body_bytes raised, a 12 MiB upload passes.
    let (gw, _dir, _) = start(&extra, "max_body_bytes = 16777216").await;
    let upload = pattern(12 * 1024 * 1024);
    let resp = client()
        .post(gw.url("/echo-body/raised"))
        .bearer_auth(good_token())
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sha256_hex(&resp.bytes().await.unwrap()),
        sha256_hex(&upload)
    );
    gw.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let echo_body = start_body_echo().await;
    let extra = route_table("/echo-body", &format!("http://{echo_body}"), "");
    let (gw, _dir, _) = start(&extra, "max_body_bytes = 65536").await;
    let over = vec![b'x'; 65537];

    // Content-Length over the limit: refused up front, even on public routes and the
    // public endpoints, and without a token.
    for (path, with_token) in [
        ("/api/up", true),
        ("/api/up", false),
        ("/public/up", false),
        ("/revoke", false),
        ("/backchannel-logout", false),
    ] {
        let mut req = client()
            .post(gw.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(over.clone());
        if with_token {
            req = req.bearer_auth(good_token());
        }
        let (status, body) = status_json(req.send().await.unwrap()).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // At the limit: fine.
    let resp = client()
        .post(gw.url("/api/up"))
        .bearer_auth(good_token())
        .body(vec![b'x'; 65536])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!((status, body["body_len"].as_u64()), (200, Some(65536)));

    // Chunked over the limit, to upstreams that read the whole body before answering
    // (the mirror, as most APIs do): 413, on protected and public routes.
    for path in [
        "/api/chunked",
        "/public/chunked",
        "/revoke",
        "/backchannel-logout",
    ] {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(good_token())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(chunked_body(100, 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: connection not answered: {e}"));
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    // An upstream that answers before the body has arrived (it streams it back): the
    // status is already sent when the limit trips, so the gateway cuts the stream. The
    // client must never get a complete-looking answer: either 413, or a body that fails.
    let result = client()
        .post(gw.url("/echo-body/chunked"))
        .bearer_auth(good_token())
        .body(chunked_body(100, 1024))
        .send()
        .await;
    match result {
        Ok(resp) if resp.status() == 413 => {}
        Ok(resp) => {
            let status = resp.status();
            let body = resp.bytes().await;
            assert!(
                body.is_err(),
                "{status} with a complete body of {:?} bytes over the limit",
                body.map(|b| b.len())
            );
        }
        Err(_) => {} // connection closed before an answer: refused
    }
    // The gateway is still fine afterwards.
    assert_eq!(mirrored(&gw, "/api/after").await["path"], "/api/after");
    gw.stop().await;
}

#[tokio::test]
async fn header_blocks_over_the_limit_are_431() {
    let (gw, _dir, _) = start("", "").await;
    // Default max_header_bytes is 16384: just over it, and far over it.
    for size in [16_500, 40_000] {
        let req = format!(
            "GET /api/x HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        );
        let resp = raw_http(gw.proxy, req.as_bytes()).await;
        assert_eq!(resp.status, 431, "{size} bytes of header");
    }
    // Many small headers add up too.
    let mut req = String::from("GET /public/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for i in 0..400 {
        req.push_str(&format!("X-H-{i}: {}\r\n", "b".repeat(40)));
    }
    req.push_str("\r\n");
    assert_eq!(raw_http(gw.proxy, req.as_bytes()).await.status, 431);
    // Well under: fine.
    let req = format!(
        "GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8000)
    );
    assert_eq!(raw_http(gw.proxy, req.as_bytes()).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn admin_api_is_not_served_on_the_proxy_listener() {
    let (gw, _dir, _) = start("", "").await;
    for path in [
        "/v1/stats",
        "/metrics",
        "/healthz",
        "/v1/revocations",
        "/v1/openapi.json",
    ] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without a token");
        let body = mirrored(&gw, path).await;
        assert_eq!(body["path"], path, "{path} reached the upstream");
    }
    let resp = client()
        .post(gw.url("/v1/revocations"))
        .json(&json!({"kind": "sub", "value": "user-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // The admin listener does serve them.
    let resp = client()
        .get(gw.admin_url("/v1/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn percent_encoded_paths_match_the_route_they_name() {
    let (gw, _dir, _) = start("", "").await;
    // "%2D" is "-" and "%61" is "a" (RFC 3986 §2.3, §6.2.2.2): the same resource as
    // /admin-area/panel, so the admin scope applies; a read-only token is refused.
    for path in [
        "/admin%2Darea/panel",
        "/%61dmin-area/panel",
        "/admin%2darea",
    ] {
        let resp = get_with(&gw.url(path), &good_token()).await;
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 403, "{path} bypassed the admin scope: {body}");
    }
    // Likewise a public route named with escapes is the public route.
    let resp = client().get(gw.url("/p%75blic/x")).send().await.unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/public/x");
    // Other escapes are kept as they are.
    let body = mirrored(&gw, "/api/a%20b%3Fc%25").await;
    assert_eq!(body["path"], "/api/a%20b%3Fc%25");
    gw.stop().await;
}
