//! HTTP for the tests: the reqwest client, form bodies, status and JSON of an answer, and
//! raw HTTP/1.1 for what reqwest cannot send (dot segments, hop-by-hop headers, huge
//! header blocks, invalid UTF-8, smuggling attempts).

use std::net::SocketAddr;

use serde_json::Value;

use super::WAIT;

/// A reqwest client without proxies, every request bounded by [`WAIT`].
pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// [`client`] keeping at most `idle` idle connections per host (0: a new connection per
/// request; 1: no pool of connections that a kill or a load could leave behind).
pub fn client_keeping_idle(idle: usize) -> reqwest::Client {
    client_builder()
        .pool_max_idle_per_host(idle)
        .build()
        .unwrap()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().timeout(WAIT)
}

/// GET `url` with a bearer token.
pub async fn get_with(url: &str, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

/// Status and JSON body of a response (`Null` when the body is not JSON).
pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POSTs `body` as `application/x-www-form-urlencoded` to `url`.
pub async fn post_form(url: &str, body: String) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("form request")
}

/// `name=value` pairs, form-encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("form encoding")
}

/// `value` percent-encoded for a path segment or a query value (every byte but ASCII
/// letters and digits).
pub fn url_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `bytes` on a new connection to `addr` and reads until the server closes, within
/// [`WAIT`]: everything the server sent.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before reading everything: ignore write errors.
        let _ = s.write_all(bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("raw HTTP answer within the bound")
}

/// Sends `request` (a complete HTTP/1.1 request, which should say `Connection: close`) on a
/// new connection to `addr` and parses the answer ([`raw_exchange`]).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    parse_raw_response(&raw_exchange(addr, request).await)
}

/// Sends `request` raw ([`raw_exchange`]) and returns the status of the answer, 0 when the
/// server closed without one.
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let buf = raw_exchange(addr, request).await;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn parse_raw_response(buf: &[u8]) -> RawResponse {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = raw_body;
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&rest[..pos]).unwrap_or("0");
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = pos + 2;
            out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        out
    } else {
        raw_body.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}
