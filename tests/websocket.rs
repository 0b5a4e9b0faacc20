//! WebSocket through the gateway (SPEC §4, issue 13): a real WebSocket client
//! (tokio-tungstenite) through the real gateway to a real WebSocket upstream. The upgrade
//! happens only after the token decision; refused requests never reach the upstream;
//! public routes upgrade without a token; messages flow both ways and either side can
//! close cleanly; the same over TLS (HTTP/1.1).

mod common;
mod tls_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket upstream: echoes every text and binary message; answers the text `bye` by
/// closing itself. Counts the handshakes it completed and keeps the headers of the last.
struct WsUpstream {
    addr: SocketAddr,
    upgraded: Arc<AtomicUsize>,
    last_headers: Arc<Mutex<Vec<(String, String)>>>,
}

impl WsUpstream {
    async fn start() -> WsUpstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let upgraded = Arc::new(AtomicUsize::new(0));
        let last_headers = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (upgraded.clone(), last_headers.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let (count, seen) = (count.clone(), seen.clone());
                tokio::spawn(async move {
                    // tungstenite's callback signature: its error type is its own.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &Request, resp: Response| {
                        *seen.lock().unwrap() = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                            .collect();
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.next().await {
                        let echo = match &msg {
                            Message::Text(t) if t.as_str() == "bye" => {
                                let _ = ws.close(None).await;
                                false
                            }
                            Message::Text(_) | Message::Binary(_) => true,
                            _ => false,
                        };
                        if echo && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsUpstream {
            addr,
            upgraded,
            last_headers,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.last_headers
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// The WebSocket handshake request for `url` with an optional bearer token.
fn ws_request(url: &str, token: Option<&str>) -> ::http::Request<()> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

/// Text and binary round trips on an open WebSocket, then a close begun by `who`.
async fn exchange<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, client_closes: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text("hello")).await.unwrap();
    let got = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("hello"));
    let blob: Vec<u8> = pattern(200_000);
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let got = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.into_data().as_ref(), &blob[..]);
    if client_closes {
        ws.close(None).await.unwrap();
    } else {
        ws.send(Message::text("bye")).await.unwrap();
    }
    // The close handshake completes: a Close frame, then the end of the stream.
    let mut saw_close = false;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed within the bound")
        {
            Some(Ok(Message::Close(_))) => saw_close = true,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => break,
            Some(Err(e)) => panic!("close was not clean: {e}"),
        }
    }
    assert!(saw_close, "the peer's Close frame came through");
}

#[tokio::test]
async fn websocket_upgrades_only_after_the_token_decision() {
    let upstream = WsUpstream::start().await;
    let (_dir, store) = temp_store();
    let gw = Gateway::start(&config_text(upstream.addr, &store, "")).await;
    let url = format!("ws://{}/ws/chat", gw.proxy);
    let good = token("alice", "s-1", &unique_id("j"));

    // Refused requests are answered like any other and never reach the upstream.
    for bad in [None, Some("x.y.z"), Some(good.as_str())] {
        let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
        let req = match bad {
            Some(t) if t == good => {
                ws_request(&format!("ws://{}/admin-area/ws", gw.proxy), Some(t))
            }
            other => ws_request(&url, other),
        };
        match tokio_tungstenite::client_async(req, tcp).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let expected = if bad == Some(good.as_str()) { 403 } else { 401 };
                assert_eq!(resp.status().as_u16(), expected);
            }
            other => panic!(
                "a refused request upgraded: {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
    assert_eq!(upstream.upgraded.load(Ordering::SeqCst), 0);

    // Accepted: 101, then messages both ways; the client closes.
    let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(ws_request(&url, Some(&good)), tcp)
        .await
        .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(upstream.upgraded.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.header("x-auth-sub").as_deref(), Some("alice"));
    assert_eq!(
        upstream.header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(upstream.header("upgrade").as_deref(), Some("websocket"));
    exchange(&mut ws, true).await;

    // The upstream closes.
    let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(ws_request(&url, Some(&good)), tcp)
        .await
        .expect("upgrade");
    exchange(&mut ws, false).await;

    // A public route upgrades without a token.
    let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let public = format!("ws://{}/public/ws", gw.proxy);
    let (mut ws, _) = tokio_tungstenite::client_async(ws_request(&public, None), tcp)
        .await
        .expect("public upgrade");
    assert_eq!(upstream.header("x-auth-sub"), None);
    exchange(&mut ws, true).await;
    assert_eq!(upstream.upgraded.load(Ordering::SeqCst), 3);
    gw.stop().await;
}

#[tokio::test]
async fn websocket_over_tls_uses_http11() {
    let upstream = WsUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = tls_support::TestCert::new();
    let (c, k) = cert.write(dir.path(), "gw");
    let store = dir.path().join("store");
    let gw = Gateway::start(&config_text_with_server(
        upstream.addr,
        &store,
        &tls_support::tls_lines(&c, &k),
        "",
    ))
    .await;
    let good = token("alice", "s-1", &unique_id("j"));
    let stream = tls_support::connect(gw.proxy, &cert, &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/ws", gw.proxy.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(ws_request(&url, Some(&good)), stream)
        .await
        .expect("upgrade over TLS");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(
        upstream.header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    exchange(&mut ws, true).await;
    gw.stop().await;
}
