//! Upstreams the gateway forwards to, each on 127.0.0.1:0: an echo of the request
//! (`{"echo": true, ...}`), a mirror of everything that arrived, a body echo, a byte
//! pattern, one that never answers, an address nothing listens on, and [`start_raw`] for
//! hand-written answers (cut bodies, held connections, a fake IdP).

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::sha256_hex;

/// Starts the echo upstream on 127.0.0.1:0: it answers every request `200` with JSON
/// `{"echo": true, "method", "path", "headers"}` (every header but `authorization`, the
/// last value of a repeated one), without reading the request body.
pub async fn start_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_hyper(l, |req| async move {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "authorization")
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::String(v.to_str().unwrap_or("?").to_string()),
                )
            })
            .collect();
        let answer = json!({
            "echo": true,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "headers": headers,
        });
        Ok(json_response(
            serde_json::to_vec_pretty(&answer).unwrap_or_default(),
        ))
    }));
    addr
}

/// A `200` answer with `body` as `application/json`.
fn json_response(body: impl Into<bytes::Bytes>) -> hyper::Response<UpstreamBody> {
    let mut resp = hyper::Response::new(boxed_full(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves every connection accepted on `listener` with the hyper service `f`.
async fn serve_hyper<F, Fut>(listener: tokio::net::TcpListener, f: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<hyper::Response<UpstreamBody>, std::convert::Infallible>,
        > + Send
        + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let f = f.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper::service::service_fn(f),
                )
                .await;
        });
    }
}

/// Body type of the test upstreams.
type UpstreamBody =
    http_body_util::combinators::BoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn boxed_full(bytes: impl Into<bytes::Bytes>) -> UpstreamBody {
    use http_body_util::BodyExt as _;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An upstream that answers JSON describing the request exactly as it arrived: `method`,
/// `path`, `query` (or null), `headers` (every header including `authorization`, repeated
/// ones joined with ", "), `body_len` and `body_sha256` (hex).
pub async fn start_mirror() -> SocketAddr {
    use http_body_util::BodyExt as _;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_hyper(l, |req| async move {
        let (parts, body) = req.into_parts();
        let mut headers = serde_json::Map::new();
        for name in parts.headers.keys() {
            let joined: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect();
            headers.insert(name.to_string(), Value::String(joined.join(", ")));
        }
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let answer = json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_len": body.len(),
            "body_sha256": sha256_hex(&body),
        });
        Ok(json_response(answer.to_string()))
    }));
    addr
}

/// An upstream that streams each request body straight back as the response body.
pub async fn start_body_echo() -> SocketAddr {
    use http_body_util::BodyExt as _;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_hyper(l, |req| async move {
        // A body error (the gateway aborting the stream) ends the answer with an error.
        let body = req.into_body().map_err(|e| e.into()).boxed();
        Ok(hyper::Response::new(body))
    }));
    addr
}

/// Byte `i` of the deterministic pattern served by [`start_bytes`].
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// An upstream that answers every request with [`pattern`]`(len)`, streamed in 64 KiB
/// chunks without a Content-Length (chunked).
pub async fn start_bytes(len: usize) -> SocketAddr {
    use http_body_util::BodyExt as _;
    let data = bytes::Bytes::from(pattern(len));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_hyper(l, move |_req| {
        let data = data.clone();
        async move {
            type Chunk =
                Result<hyper::body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>;
            let chunks: Vec<Chunk> = (0..data.len())
                .step_by(64 * 1024)
                .map(|start| {
                    let end = (start + 64 * 1024).min(data.len());
                    Ok(hyper::body::Frame::data(data.slice(start..end)))
                })
                .collect();
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed();
            Ok(hyper::Response::new(body))
        }
    }));
    addr
}

/// An upstream that accepts connections and never answers (they stay open until the test's
/// runtime ends).
pub async fn start_silent() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = l.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An address nothing listens on: a port that was bound and then released (also a free
/// port for a peer to bind).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Starts a hand-written upstream on 127.0.0.1:0 for answers hyper would not give (cut
/// bodies, raw bytes, held connections): for each connection it reads the request head,
/// then hands the connection to `answer` (not when the peer went away first).
pub async fn start_raw<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_request_head(&mut stream).await {
                    answer(stream).await;
                }
            });
        }
    });
    addr
}

/// Writes a complete `200` answer with `content_type`, `body` and `Connection: close` on
/// a raw connection, then closes it (errors ignored: the client may be gone).
pub async fn write_raw_200(stream: &mut tokio::net::TcpStream, content_type: &str, body: &[u8]) {
    use tokio::io::AsyncWriteExt as _;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// Reads one request head (up to the blank line) off `stream`; false if the peer went
/// away first.
async fn read_request_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}
