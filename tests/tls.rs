//! The TLS proxy listener (SPEC §4, issue 13): real TLS with a certificate generated at test
//! time, HTTP/2 and HTTP/1.1 by ALPN from real clients, the same limits, decision and
//! streaming on both, forwarding headers over TLS, certificate reload without dropping
//! connections, and bad pairs refused with the file named.

mod common;
mod tls_support;

use std::path::Path;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use tls_support::*;
use tokio_rustls::rustls;

/// A TLS gateway in front of `upstream`, with `server_lines` added to `[server]` and
/// `extra` appended; the certificate's files live in `dir`.
async fn tls_gateway(
    dir: &Path,
    cert: &TestCert,
    upstream: std::net::SocketAddr,
    server_lines: &str,
    extra: &str,
) -> Gateway {
    let (c, k) = cert.write(dir, "gateway");
    let store = dir.join("store");
    let lines = format!("{}\n{server_lines}", tls_lines(&c, &k));
    Gateway::start(&config_text_with_server(upstream, &store, &lines, extra)).await
}

fn header<'a>(mirror: &'a Value, name: &str) -> &'a str {
    mirror["headers"][name].as_str().unwrap_or("")
}

#[tokio::test]
async fn https_serves_h2_and_http11_by_alpn_and_tells_the_upstream_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let upstream = start_mirror().await;
    let gw = tls_gateway(dir.path(), &cert, upstream, "", "").await;
    let token = token("alice", "s-1", &unique_id("j"));
    let authority = format!("localhost:{}", gw.proxy.port());

    for (mut client, alpn, version) in [
        (
            Client::h2(gw.proxy, &cert).await,
            &b"h2"[..],
            ::http::Version::HTTP_2,
        ),
        (
            Client::h1(gw.proxy, &cert).await,
            &b"http/1.1"[..],
            ::http::Version::HTTP_11,
        ),
    ] {
        assert_eq!(client.alpn.as_deref(), Some(alpn));
        let answer = client.get("/api/x?q=1", &token).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.version, version);
        let mirror = answer.json();
        assert_eq!(mirror["path"], "/api/x");
        assert_eq!(mirror["query"], "q=1");
        assert_eq!(header(&mirror, "x-forwarded-proto"), "https");
        assert_eq!(header(&mirror, "x-forwarded-for"), "127.0.0.1");
        assert_eq!(header(&mirror, "x-forwarded-host"), authority);
        assert_eq!(header(&mirror, "x-auth-sub"), "alice");
        assert_eq!(header(&mirror, "authorization"), format!("Bearer {token}"));
        assert!(answer.headers.contains_key("x-request-id"));

        // The same decision: no token, a revoked one.
        let refused = client
            .send("GET", "/api/x", &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.headers["www-authenticate"],
            "Bearer realm=\"revgate\""
        );
    }

    // A client that offers no ALPN gets HTTP/1.1.
    let stream = connect(gw.proxy, &cert, &[]).await;
    assert_eq!(alpn(&stream), None);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Full<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = ::http::Request::get("/public/x")
        .header("host", &authority)
        .body(Default::default())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn only_tls_12_and_13_are_spoken_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let gw = tls_gateway(dir.path(), &cert, start_echo().await, "", "").await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&[&cert], &[b"h2"], &[version]);
        let stream = tls_connect(gw.proxy, config).await.expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
    }
    // TLS 1.0 / 1.1: a ClientHello whose highest version is TLS 1.1 (record and
    // client_version 0x0302, no supported_versions extension) is refused with an alert.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    // An alert record (content type 21), never a ServerHello (handshake, 22).
    assert!(
        n > 0 && buf[0] == 21,
        "TLS 1.1 hello answered with {:?}",
        &buf[..n]
    );

    // Plain HTTP on the TLS port is not answered as HTTP.
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    tcp.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("closed");
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    gw.stop().await;
}

/// A minimal TLS 1.1 ClientHello (RFC 4346): one cipher suite, no extensions.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, 0, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x02, 0, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn http2_has_the_same_limits_and_streams_bodies_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let big = 6 * 1024 * 1024;
    let bytes_upstream = start_bytes(big).await;
    let echo_upstream = start_body_echo().await;
    let extra = format!(
        "[[route]]\nprefix = \"/big\"\nupstream = \"http://{bytes_upstream}\"\n\
         [[route]]\nprefix = \"/echo\"\nupstream = \"http://{echo_upstream}\"\npublic = true\n"
    );
    let gw = tls_gateway(
        dir.path(),
        &cert,
        start_echo().await,
        "max_header_bytes = 4096\nmax_body_bytes = 1000000",
        &extra,
    )
    .await;
    let token = token("alice", "s-1", &unique_id("j"));
    for mut client in [
        Client::h2(gw.proxy, &cert).await,
        Client::h1(gw.proxy, &cert).await,
    ] {
        // 431 from the gateway's own check (its JSON body), on both protocols.
        let filler = "a".repeat(5000);
        let answer = client
            .send("GET", "/public/x", &[("x-filler", &filler)], Bytes::new())
            .await
            .unwrap();
        assert_eq!(answer.status, 431);
        assert_eq!(answer.json()["error"], "request_header_fields_too_large");
        // 413 by the declared length, before the body is read.
        let answer = client
            .send(
                "POST",
                "/echo",
                &[("content-length", "1500000")],
                vec![0u8; 1_500_000],
            )
            .await;
        let answer = answer.expect("the 413 reaches the client");
        assert_eq!(answer.status, 413);
        assert_eq!(answer.json()["error"], "payload_too_large");
    }
    // The 413 on HTTP/1.1 closes that connection; fresh clients for the streaming checks.
    for mut client in [
        Client::h2(gw.proxy, &cert).await,
        Client::h1(gw.proxy, &cert).await,
    ] {
        let answer = client.get("/big", &token).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.len(), big);
        assert_eq!(sha256_hex(&answer.body), sha256_hex(&pattern(big)));
        let sent = pattern(900_000);
        let answer = client
            .send("POST", "/echo", &[], sent.clone())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(sha256_hex(&answer.body), sha256_hex(&sent));
    }
    gw.stop().await;
}

#[tokio::test]
async fn http2_bounds_streams_per_connection_and_multiplexes_within_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let gw = tls_gateway(dir.path(), &cert, start_echo().await, "", "").await;

    // The SETTINGS the gateway sends, read by h2's own client.
    let stream = connect(gw.proxy, &cert, &[b"h2"]).await;
    let (mut send, mut conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    let req = ::http::Request::get(format!("https://localhost:{}/public/x", gw.proxy.port()))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(req, true).unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        tokio::select! {
            r = response => r,
            e = &mut conn => panic!("connection ended first: {e:?}"),
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        conn.max_concurrent_send_streams(),
        revgate::server::H2_MAX_CONCURRENT_STREAMS as usize
    );
    drop((send, conn));

    // 64 concurrent requests on one connection, each decided on its own.
    let client = Client::h2(gw.proxy, &cert).await;
    let Sender::H2(sender) = client.sender else {
        unreachable!()
    };
    let good = token("alice", "s-1", &unique_id("j"));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut sender = sender.clone();
        let auth = if i % 2 == 0 {
            format!("Bearer {good}")
        } else {
            "Bearer x.y.z".into()
        };
        let uri = format!("https://localhost:{}/api/{i}", gw.proxy.port());
        tasks.push(tokio::spawn(async move {
            let req = ::http::Request::get(uri)
                .header("authorization", auth)
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            sender.send_request(req).await.map(|r| r.status().as_u16())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let status = tokio::time::timeout(WAIT, t)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(status, if i % 2 == 0 { 200 } else { 401 }, "stream {i}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn forwarding_headers_over_tls_follow_trusted_proxies() {
    let sent: &[(&str, &str)] = &[
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=203.0.113.7;proto=http"),
        ("x-real-ip", "203.0.113.7"),
    ];
    let token = token("alice", "s-1", &unique_id("j"));
    let auth = format!("Bearer {token}");
    let mut headers = sent.to_vec();
    headers.push(("authorization", &auth));
    for trusted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cert = TestCert::new();
        let line = if trusted {
            "trusted_proxies = [\"127.0.0.0/8\"]"
        } else {
            ""
        };
        let gw = tls_gateway(dir.path(), &cert, start_mirror().await, line, "").await;
        for mut client in [
            Client::h2(gw.proxy, &cert).await,
            Client::h1(gw.proxy, &cert).await,
        ] {
            let answer = client
                .send("GET", "/api/x", &headers, Bytes::new())
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
            let m = answer.json();
            if trusted {
                assert_eq!(header(&m, "x-forwarded-for"), "203.0.113.7, 127.0.0.1");
                assert_eq!(header(&m, "x-forwarded-proto"), "http");
                assert_eq!(header(&m, "x-forwarded-host"), "evil.example");
                assert_eq!(header(&m, "forwarded"), "for=203.0.113.7;proto=http");
                assert_eq!(header(&m, "x-real-ip"), "203.0.113.7");
            } else {
                assert_eq!(header(&m, "x-forwarded-for"), "127.0.0.1");
                assert_eq!(header(&m, "x-forwarded-proto"), "https");
                assert_eq!(
                    header(&m, "x-forwarded-host"),
                    format!("localhost:{}", gw.proxy.port())
                );
                assert!(m["headers"].get("forwarded").is_none());
                assert!(m["headers"].get("x-real-ip").is_none());
            }
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCert::new();
    let second = TestCert::new();
    let (cert_path, key_path) = first.write(dir.path(), "live");
    let store = dir.path().join("store");
    let text = config_text_with_server(
        start_echo().await,
        &store,
        &tls_lines(&cert_path, &key_path),
        "",
    );
    let config = write_config_file(dir.path(), &text);
    let gw = Gateway::start_from_file(&config).await;

    let mut open_h2 = Client::h2(gw.proxy, &first).await;
    let mut open_h1 = Client::h1(gw.proxy, &first).await;
    assert_eq!(open_h2.cert, first.der);

    // Renewal as an ACME client does it: new files in place, then a reload.
    second.write(dir.path(), "live");
    let (status, body) = admin_reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");

    // Open connections go on with the old certificate; new ones get the new one.
    assert_eq!(open_h2.get("/public/x", "").await.status, 200);
    assert_eq!(open_h1.get("/public/x", "").await.status, 200);
    let fresh = Client::h2(gw.proxy, &second).await;
    assert_eq!(fresh.cert, second.der);
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    assert!(
        tls_connect(gw.proxy, client_config(&[&first], &[b"h2"], &versions))
            .await
            .is_err(),
        "a client trusting only the old certificate must fail now"
    );

    // A mismatched pair (the new key with another certificate) is refused, naming the file.
    std::fs::write(&cert_path, TestCert::new().cert_pem).unwrap();
    let (status, body) = admin_reload(gw.admin).await;
    assert_ne!(status, 200);
    let text = body.to_string();
    assert!(
        text.contains("server.tls_key") && text.contains("live.key"),
        "{text}"
    );
    assert!(text.contains("does not match"), "{text}");
    // The running pair stays.
    assert_eq!(Client::h1(gw.proxy, &second).await.cert, second.der);

    // check-config refuses the same files (exit 64), naming the file.
    let out = run_revgate(
        &["check-config", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("live.key") && err.contains("does not match"),
        "{err}"
    );

    // A file that is not PEM at all, named.
    std::fs::write(&cert_path, "garbage").unwrap();
    let (status, body) = admin_reload(gw.admin).await;
    assert_ne!(status, 200);
    assert!(body.to_string().contains("live.crt"), "{body}");

    // Turning TLS off needs a restart: the running listener stays TLS.
    second.write(dir.path(), "live");
    let plain = config_text_with_server(start_echo().await, &store, "", "");
    write_config(&config, &plain);
    let (status, body) = admin_reload(gw.admin).await;
    assert_eq!(status, 200, "{body}");
    let restart: Vec<&str> = body["needs_restart"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(restart.contains(&"server.tls_cert"), "{body}");
    assert_eq!(
        Client::h2(gw.proxy, &second)
            .await
            .get("/public/x", "")
            .await
            .status,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_mismatched_pair_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = TestCert::new().write(dir.path(), "a");
    let (_, key) = TestCert::new().write(dir.path(), "b");
    let store = dir.path().join("store");
    let text = config_text_with_server(start_echo().await, &store, &tls_lines(&cert, &key), "");
    let config = revgate::config::Config::parse(&text, |_| None).unwrap();
    let err = revgate::Gateway::start(config, None, revgate::clock::system())
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("b.key") && err.contains("a.crt") && err.contains("does not match"),
        "{err}"
    );
}
