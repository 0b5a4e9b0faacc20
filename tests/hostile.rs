//! Hostile HTTP input against a real gateway on 127.0.0.1:0 (SPEC §4, §5, §6 "Bounded"):
//! oversized header blocks, bodies and tokens; signed tokens with thousands of claims,
//! deep nesting and duplicate names; invalid UTF-8 on the wire; huge and deeply nested admin
//! bodies; slow-loris clients. Every answer is a clear 4xx (never a 5xx: the store and the
//! upstream are healthy here), and the gateway stays healthy afterwards.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A gateway with an echo upstream; `max_body_bytes = 65536` so body limits are cheap to hit.
async fn start() -> (Gateway, tempfile::TempDir) {
    let upstream = start_echo().await;
    let (dir, store) = temp_store();
    let config = config_text_with_server(upstream, &store, "max_body_bytes = 65536", "");
    (Gateway::start(&config).await, dir)
}

/// The gateway still answers: `/healthz` 200 and a valid token passes.
async fn assert_healthy(gw: &Gateway) {
    let (status, body) = admin_get(gw, "/healthz").await;
    assert_eq!(status, 200, "healthz after hostile input: {body}");
    let (status, body) = proxy_get(gw, &token("u-ok", "s-ok", &unique_id("ok"))).await;
    assert_eq!(status, 200, "valid token after hostile input: {body}");
}

#[tokio::test]
async fn oversized_header_blocks_are_431_on_every_listener_and_endpoint() {
    let (gw, _dir) = start().await;
    let big = "a".repeat(40_000);
    for (addr, path) in [
        (gw.proxy, "/api/x"),
        (gw.proxy, "/public/x"),
        (gw.proxy, "/backchannel-logout"),
        (gw.proxy, "/revoke"),
        (gw.proxy, "/no-such-route/x"),
        (gw.admin, "/v1/stats"),
    ] {
        // One huge header.
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            raw_status(addr, req.as_bytes()).await,
            431,
            "{path}: one huge header"
        );
        // Many small headers, each harmless.
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
        for i in 0..1000 {
            req.push_str(&format!("X-H{i}: v\r\n"));
        }
        req.push_str("\r\n");
        assert_eq!(
            raw_status(addr, req.as_bytes()).await,
            431,
            "{path}: 1000 headers"
        );
    }
    // A megabyte of header block: refused without reading it all.
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    assert_eq!(
        raw_status(gw.proxy, req.as_bytes()).await,
        431,
        "1 MiB header"
    );
    // A huge request line (URI).
    let req = format!(
        "GET /api/{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "p".repeat(40_000)
    );
    let status = raw_status(gw.proxy, req.as_bytes()).await;
    assert!(matches!(status, 414 | 431 | 400), "huge URI: {status}");
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn oversized_tokens_are_refused_never_5xx() {
    let (gw, _dir) = start().await;
    // 100 KB bearer token: the header block is over the limit.
    let huge = "A".repeat(33_000);
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {huge}.{huge}.{huge}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        raw_status(gw.proxy, req.as_bytes()).await,
        431,
        "100 KB token"
    );
    // 12 KB: within the header limit, over MAX_TOKEN_BYTES (8 KiB): malformed, unread.
    let t = format!(
        "{}.{}.{}",
        "A".repeat(4000),
        "B".repeat(4000),
        "C".repeat(4000)
    );
    assert_invalid_token(
        get_with(&gw.url("/api/x"), &t).await,
        "malformed",
        "12 KB token",
    )
    .await;
    // Big tokens in form bodies (under the body limit): the revoke endpoint answers 200
    // and revokes nothing; back-channel logout answers 400.
    let t60 = format!(
        "{}.{}.{}",
        "A".repeat(20_000),
        "B".repeat(20_000),
        "C".repeat(20_000)
    );
    for t in [&t, &t60] {
        let resp = post_revoke(&gw, t).await;
        assert_eq!(
            resp.status().as_u16(),
            200,
            "revoke endpoint, {} bytes",
            t.len()
        );
        let resp = post_logout(&gw, t).await;
        assert_eq!(resp.status().as_u16(), 400, "logout, {} bytes", t.len());
    }
    assert_eq!(stats_counts(&gw).await, (0, 0, 0), "nothing recorded");
    // Admin: revoke-by-token with a 60 KB token (body under 64 KiB): 400.
    let (status, body) = admin_post(
        &gw,
        "/v1/revocations/token",
        &json!({"token": "A".repeat(60_000)}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_on_proxy_public_endpoints_and_admin() {
    let (gw, _dir) = start().await;
    let body = "x".repeat(70_000); // over max_body_bytes (65536) and the admin limit (64 KiB)
    let good = token("u-b", "s-b", &unique_id("b"));
    let form = "application/x-www-form-urlencoded";
    // The admin API refuses any other media type (415) before it looks at the body.
    let json = "application/json";
    for (url, auth, media) in [
        (gw.url("/api/x"), Some(good.as_str()), form),
        (gw.url("/public/x"), None, form),
        (gw.url("/revoke"), None, form),
        (gw.url("/backchannel-logout"), None, form),
        (gw.admin_url("/v1/revocations"), None, json),
        (gw.admin_url("/v1/revocations/token"), None, json),
    ] {
        let mut req = client()
            .post(&url)
            .header("content-type", media)
            .body(body.clone());
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let status = req.send().await.expect("request").status().as_u16();
        assert_eq!(status, 413, "{url}");
    }
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn signed_tokens_with_huge_claim_sets_deep_nesting_or_duplicates_are_refused() {
    let (gw, _dir) = start().await;
    let n = now();
    let good = format!(
        r#""iss":"{ISS}","aud":"{AUD}","iat":{n},"exp":{},"jti":"{}""#,
        n + 600,
        unique_id("big")
    );
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let call = |payload: String| {
        let t = sign_raw_with("RS256", header, &payload);
        let url = gw.url("/api/x");
        async move { get_with(&url, &t).await }
    };
    // Hundreds more: over MAX_TOKEN_BYTES (8 KiB), malformed, unread; thousands: the
    // header block is over max_header_bytes, 431.
    let many: Vec<String> = (0..700).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let resp = call(format!("{{{good},{}}}", many.join(","))).await;
    assert_invalid_token(resp, "malformed", "700 claims").await;
    let many: Vec<String> = (0..5000).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let resp = call(format!("{{{good},{}}}", many.join(","))).await;
    assert_eq!(resp.status().as_u16(), 431, "5000 claims");
    // Hundreds (the token still fits): a valid token.
    let some: Vec<String> = (0..300).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let resp = call(format!("{{{good},{}}}", some.join(","))).await;
    assert_eq!(resp.status().as_u16(), 200, "300 distinct claims");
    // ... with a name repeated far apart, or spelled with an escape: malformed.
    for dup in [r#""c17":1"#, r#""\u0069at":1"#] {
        let resp = call(format!("{{{good},{},{dup}}}", some.join(","))).await;
        assert_invalid_token(resp, "malformed", dup).await;
    }
    // 10 000 levels of '[': too large to read.
    let resp = call(format!(r#"{{{good},"x":{}}}"#, "[".repeat(10_000))).await;
    assert_invalid_token(resp, "malformed", "10 000 levels").await;
    // 2 500 levels in a claim the gateway reads: past serde_json's recursion limit.
    let nested = format!("{}{}", "[".repeat(2500), "]".repeat(2500));
    for claim in ["aud", "sub", "sid", "scope"] {
        let resp = call(format!(r#"{{{good},"{claim}":{nested}}}"#)).await;
        assert_invalid_token(resp, "malformed", claim).await;
    }
    // The same nesting in a claim nobody reads is skipped (iteratively): a valid token.
    let resp = call(format!(r#"{{{good},"x":{nested}}}"#)).await;
    assert_eq!(resp.status().as_u16(), 200, "ignored deep claim");
    // Non-UTF-8 claims after base64url decoding.
    let t = format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(b"{\"iss\":\"\xff\xfe\"}"),
        b64url([0u8; 256])
    );
    assert_invalid_token(
        get_with(&gw.url("/api/x"), &t).await,
        "malformed",
        "non-UTF-8",
    )
    .await;
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn invalid_utf8_on_the_wire_is_400() {
    let (gw, _dir) = start().await;
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "Authorization value",
            b"GET /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe.\xc3\x28.x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "header name",
            b"GET /api/x HTTP/1.1\r\nHost: t\r\nX-\xff\xfe: v\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "request target",
            b"GET /api/\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "method",
            b"G\xffT /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ];
    for (what, req) in &cases {
        assert_eq!(raw_status(gw.proxy, req).await, 400, "{what}");
    }
    // Invalid UTF-8 in a form body: 400 on both public endpoints' parsers, no 5xx.
    for path in ["/backchannel-logout", "/revoke"] {
        let body = b"logout_token=\xff\xfe&token=\xff\xfe".to_vec();
        let req = [
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            body,
        ]
        .concat();
        let status = raw_status(gw.proxy, &req).await;
        assert!(matches!(status, 200 | 400), "{path}: {status}");
    }
    // An opaque byte in an ordinary header is the upstream's business, never a 5xx.
    let req = b"GET /public/x HTTP/1.1\r\nHost: t\r\nX-Opaque: \xff\r\nConnection: close\r\n\r\n";
    let status = raw_status(gw.proxy, req).await;
    assert!(status < 500 && status != 0, "opaque header byte: {status}");
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn hostile_admin_bodies_are_400_413_or_411() {
    let (gw, _dir) = start().await;
    let post_raw = |path: &str, body: Vec<u8>| {
        let url = gw.admin_url(path);
        // Each route's own media type (SPEC §5: else 415 before the body is looked at).
        let media = if path == "/v1/import" {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        async move {
            let resp = client()
                .post(url)
                .header("content-type", media)
                .body(body)
                .send()
                .await
                .expect("admin request");
            status_json(resp).await
        }
    };
    // Nested past serde_json's limit (inside 64 KiB), objects and arrays.
    for body in [
        "[".repeat(60_000),
        format!(r#"{{"kind":"sub","value":{}}}"#, "[".repeat(30_000)),
        format!(
            r#"{{"kind":"sub","value":"v","reason":{}1{}}}"#,
            "{\"a\":".repeat(1000),
            "}".repeat(1000)
        ),
    ] {
        let (status, json) = post_raw("/v1/revocations", body.into_bytes()).await;
        assert_eq!(status, 400, "{json}");
        assert_eq!(json["error"], "invalid_request");
    }
    // Invalid UTF-8, a lone BOM, numbers out of range, duplicate fields.
    for body in [
        b"{\"kind\":\"sub\",\"value\":\"\xff\xfe\"}".to_vec(),
        b"\xef\xbb\xbf".to_vec(),
        br#"{"kind":"sub","value":"v","ttl":1e400}"#.to_vec(),
        br#"{"kind":"sub","value":"v","value":"w","kind":"jti"}"#.to_vec(),
    ] {
        let (status, json) = post_raw("/v1/revocations", body).await;
        assert!(matches!(status, 400 | 201), "{json}");
        assert_eq!(status == 400, json["error"] == "invalid_request", "{json}");
    }
    // Huge: over the admin body limit with and without Content-Length.
    let (status, _) = post_raw("/v1/revocations", vec![b' '; 200_000]).await;
    assert_eq!(status, 413);
    let chunks = futures_util::stream::iter(
        (0..50).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 4096]))),
    );
    let resp = client()
        .post(gw.admin_url("/v1/revocations"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("chunked admin request");
    let status = resp.status().as_u16();
    assert!(matches!(status, 411 | 413), "chunked 200 KB: {status}");
    // Import: one 1 MB line is rejected by number, the good line after it lands.
    let good = json!({"kind": "sub", "issuer": ISS, "value": "imported-1",
        "revoked_at": "2024-01-01T00:00:00Z", "issued_before": "2024-01-01T00:00:00Z",
        "expires_at": "2099-01-01T00:00:00Z"});
    let mut body = "[".repeat(1 << 20).into_bytes();
    body.extend_from_slice(format!("\n{good}\n").as_bytes());
    let (status, json) = post_raw("/v1/import", body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["imported"], 1, "{json}");
    assert_eq!(json["rejected"][0]["line"], 1, "{json}");
    assert_healthy(&gw).await;
    gw.stop().await;
}

/// Connects and sends `first`; then either nothing more, or one byte of `drip` per
/// `pace` (a trickle, not a synchronisation). Returns how long until the server closed.
async fn slow_client(addr: std::net::SocketAddr, first: &[u8], drip: Option<Duration>) -> Duration {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(first).await.expect("send");
    let (mut rd, mut wr) = s.into_split();
    let dripper = tokio::spawn(async move {
        if let Some(pace) = drip {
            let mut tick = tokio::time::interval(pace);
            loop {
                tick.tick().await;
                if wr.write_all(b"X").await.is_err() {
                    break;
                }
            }
        } else {
            // Hold the write half open, sending nothing.
            std::future::pending::<()>().await;
        }
    });
    let bound = revgate::server::HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut chunk = [0u8; 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    dripper.abort();
    assert!(
        closed.is_ok(),
        "slow client still connected after {bound:?}"
    );
    // Whatever the server said before closing, it was not a 5xx.
    let head = String::from_utf8_lossy(&buf);
    assert!(!head.starts_with("HTTP/1.1 5"), "{head}");
    started.elapsed()
}

#[tokio::test]
async fn slow_loris_clients_are_cut_off_after_the_header_read_timeout() {
    let (gw, _dir) = start().await;
    let partial = b"GET /api/x HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    // All at once, so the test takes one timeout: silent and trickling clients on both
    // listeners, plus a crowd of silent ones.
    let mut clients = Vec::new();
    for addr in [gw.proxy, gw.admin] {
        clients.push(tokio::spawn(slow_client(addr, partial, None)));
        clients.push(tokio::spawn(slow_client(
            addr,
            partial,
            Some(Duration::from_millis(500)),
        )));
    }
    for _ in 0..50 {
        clients.push(tokio::spawn(slow_client(gw.proxy, b"GE", None)));
    }
    // Meanwhile the gateway serves everyone else.
    assert_healthy(&gw).await;
    for c in clients {
        let took = c.await.expect("slow client task");
        assert!(
            took >= revgate::server::HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "closed after {took:?}, before the header read timeout"
        );
    }
    assert_healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn no_answer_to_hostile_json_content_is_a_5xx() {
    // Random-ish hostile bodies at every admin POST route and the public endpoints.
    let (gw, _dir) = start().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"\"\"".to_vec(),
        b"{\"token\":null}".to_vec(),
        b"{\"token\":\"a.b.c\",\"reason\":{}}".to_vec(),
        b"{\"kind\":\"jti\",\"value\":\"v\",\"expires_at\":\"\xe2\x82\xac12345\"}".to_vec(),
        b"{\"kind\":\"sid\",\"value\":\"v\",\"issued_before\":\"9999-12-31T23:59:59-99:99\"}"
            .to_vec(),
        b"{\"kind\":\"sub\",\"value\":\"v\",\"ttl\":\"18446744073709551615s\"}".to_vec(),
        b"{\"kind\":\"sub\",\"value\":\"v\",\"ttl\":\"584542046090y\"}".to_vec(),
        vec![0u8; 1000],
        b"\x00\x01\x02{".to_vec(),
    ];
    for body in &bodies {
        for path in [
            "/v1/revocations",
            "/v1/revocations/token",
            "/v1/import",
            "/v1/sweep",
        ] {
            // Each route's own media type, so the content reaches its parser.
            let media = if path == "/v1/import" {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            let resp = client()
                .post(gw.admin_url(path))
                .header("content-type", media)
                .body(body.clone())
                .send()
                .await
                .expect("admin request");
            let status = resp.status().as_u16();
            assert!(
                status < 500,
                "{path} {:?}: {status}",
                String::from_utf8_lossy(body)
            );
        }
        for path in ["/revoke", "/backchannel-logout"] {
            let resp = post_form(&gw.url(path), String::from_utf8_lossy(body).into_owned()).await;
            assert!(resp.status().as_u16() < 500, "{path}");
        }
    }
    let v: Value = admin_stats(&gw).await;
    assert!(v["jti"].as_u64().is_some());
    assert_healthy(&gw).await;
    gw.stop().await;
}
