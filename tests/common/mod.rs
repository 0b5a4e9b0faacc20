//! Shared integration-test harness: a real gateway on 127.0.0.1:0 with a temporary sled
//! store, an echo upstream, and tokens signed by the real keys in `tests/keys/`.
//! Every wait is bounded; nothing sleeps to synchronise.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use revgate::clock::SharedClock;
use revgate::config::Config;
use revgate::App;
use serde_json::{json, Value};

/// Issuer of the test tokens.
pub const ISS: &str = "https://idp.test/";
/// Audience of the test tokens.
pub const AUD: &str = "api://one";
/// client_id logout tokens are addressed to.
pub const CLIENT_ID: &str = "client-1";
/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// Absolute path of a file in `tests/keys/`.
pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read_key(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The kid of the test key used for `alg` (see tests/keys/jwks.json).
pub fn kid_for(alg: &str) -> &'static str {
    match alg {
        "ES256" => "ec256-1",
        "ES384" => "ec384-1",
        "EdDSA" => "ed-1",
        _ => "rsa-1",
    }
}

/// Signs `claims` with the test key for `alg` (RS*/PS*/ES*/EdDSA/HS*), header kid `kid`
/// (None: no kid), optional extra header members (e.g. `typ`).
pub fn sign_with(alg: &str, kid: Option<&str>, typ: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let algorithm: Algorithm = alg.parse().expect("known alg");
    let key = match alg {
        "ES256" => EncodingKey::from_ec_pem(&read_key("ec256_private.pem")).unwrap(),
        "ES384" => EncodingKey::from_ec_pem(&read_key("ec384_private.pem")).unwrap(),
        "EdDSA" => EncodingKey::from_ed_pem(&read_key("ed25519_private.pem")).unwrap(),
        "HS256" | "HS384" | "HS512" => {
            let s = String::from_utf8(read_key("hmac.secret")).unwrap();
            EncodingKey::from_secret(s.trim_end().as_bytes()).unwrap()
        }
        _ => EncodingKey::from_rsa_pem(&read_key("rsa_private.pem")).unwrap(),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    header.typ = typ.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// Signs with the RSA key that is NOT in the JWKS, under a known kid (a forgery).
pub fn sign_forged(claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = EncodingKey::from_rsa_pem(&read_key("rsa_other_private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A compact JWS from raw header/payload JSON and a raw signature (for malformed cases).
pub fn raw_jws(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Default access-token claims: valid for 10 minutes, issued now.
pub fn claims(sub: &str, sid: &str, jti: &str) -> Value {
    let n = now();
    json!({"iss": ISS, "aud": AUD, "sub": sub, "sid": sid, "jti": jti, "iat": n, "exp": n + 600, "scope": "read"})
}

/// An RS256 token with the default claims.
pub fn token(sub: &str, sid: &str, jti: &str) -> String {
    sign_with("RS256", Some("rsa-1"), None, &claims(sub, sid, jti))
}

/// Config text for a gateway on 127.0.0.1:0 with the test issuer, an upstream, and a
/// store at `store`. `extra_routes` is appended TOML.
pub fn config_text(upstream: SocketAddr, store: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[issuer]]
issuer = "{ISS}"
audiences = ["{AUD}", "api://two"]
jwks_file = "{jwks}"
algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
logout_audiences = ["{CLIENT_ID}"]
logout_algorithms = ["RS256"]

[auth]
leeway = "60s"
max_token_lifetime = "1h"

[[route]]
prefix = "/"
upstream = "http://{upstream}"

[[route]]
prefix = "/public"
upstream = "http://{upstream}"
public = true

[[route]]
prefix = "/admin-area"
upstream = "http://{upstream}"
scopes = ["admin"]

[store]
path = "{store}"
sweep_interval = "1h"
{extra}
"#,
        jwks = key_path("jwks.json"),
        store = store.display(),
    )
}

/// Starts the in-process echo upstream on 127.0.0.1:0.
pub async fn start_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(revgate::demo::serve_echo(l));
    addr
}

/// A running in-process gateway.
pub struct Gateway {
    /// Proxy listener address.
    pub proxy: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// Shared state (store, metrics, clock).
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Starts a gateway from config text with the system clock.
    pub async fn start(config_text: &str) -> Gateway {
        Gateway::start_with_clock(config_text, revgate::clock::system()).await
    }

    /// Starts a gateway from config text with the given clock.
    pub async fn start_with_clock(config_text: &str, clock: SharedClock) -> Gateway {
        let config = Config::parse(config_text, |_| None).expect("valid test config");
        let listeners = revgate::Listeners::bind(config.server.listen, config.server.admin_listen)
            .await
            .expect("bind");
        Gateway::launch(config, None, clock, listeners).await
    }

    /// Starts a gateway from config text on listeners bound beforehand (when a peer must
    /// know the gateway's address before the gateway's config can be written).
    pub async fn start_on(config_text: &str, listeners: revgate::Listeners) -> Gateway {
        let config = Config::parse(config_text, |_| None).expect("valid test config");
        Gateway::launch(config, None, revgate::clock::system(), listeners).await
    }

    /// Opens the store, loads the keys and runs the gateway on `listeners`.
    async fn launch(
        config: Config,
        path: Option<PathBuf>,
        clock: SharedClock,
        listeners: revgate::Listeners,
    ) -> Gateway {
        let gateway = revgate::Gateway::start_on(config, path, clock, listeners)
            .await
            .expect("gateway starts");
        let proxy = gateway.proxy_addr();
        let admin = gateway.admin_addr();
        let app = gateway.app().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async move {
            let _ = rx.await;
        }));
        Gateway {
            proxy,
            admin,
            app,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `http://proxy` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// `http://admin` + path.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Graceful stop; waits (bounded) until the store is released.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("gateway stops within the bound")
                .expect("gateway task");
        }
    }
}

/// A reqwest client without proxies or pooling surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
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

/// Status and JSON body of a response.
pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST JSON to the admin API.
pub async fn admin_post(gw: &Gateway, path: &str, body: &Value) -> (u16, Value) {
    status_json(
        client()
            .post(gw.admin_url(path))
            .json(body)
            .send()
            .await
            .expect("admin request"),
    )
    .await
}

/// A temporary directory for a store; keep it alive for the test's duration.
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revgate.db");
    (dir, path)
}

// ===== Back-channel logout and revocation endpoint helpers (t-bcl) =====

/// The `events` claim of a valid logout token (BCL §2.4).
pub fn bcl_events() -> Value {
    json!({"http://schemas.openid.net/event/backchannel-logout": {}})
}

/// A process-wide unique id with `prefix` (jti, sid, sub values that never collide).
pub fn unique_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Claims of a valid logout token for the test issuer and `CLIENT_ID`: `iat`, `exp` =
/// `iat + 120`, a unique `jti`, the logout event, and `sid` / `sub` when given.
pub fn logout_claims(sid: Option<&str>, sub: Option<&str>, iat: u64) -> Value {
    let mut c = json!({
        "iss": ISS,
        "aud": CLIENT_ID,
        "iat": iat,
        "exp": iat + 120,
        "jti": unique_id("lt"),
        "events": bcl_events(),
    });
    if let Some(sid) = sid {
        c["sid"] = json!(sid);
    }
    if let Some(sub) = sub {
        c["sub"] = json!(sub);
    }
    c
}

/// A logout token: RS256, kid `rsa-1`, header `typ: logout+jwt`.
pub fn sign_logout(claims: &Value) -> String {
    sign_with("RS256", Some("rsa-1"), Some("logout+jwt"), claims)
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

/// POSTs `logout_token=<token>` to the gateway's back-channel logout endpoint.
pub async fn post_logout(gw: &Gateway, token: &str) -> reqwest::Response {
    post_form(
        &gw.url("/backchannel-logout"),
        form(&[("logout_token", token)]),
    )
    .await
}

/// POSTs `token=<token>` to the gateway's revocation endpoint.
pub async fn post_revoke(gw: &Gateway, token: &str) -> reqwest::Response {
    post_form(&gw.url("/revoke"), form(&[("token", token)])).await
}

/// GET on the admin API: status and JSON body.
pub async fn admin_get(gw: &Gateway, path: &str) -> (u16, Value) {
    status_json(
        client()
            .get(gw.admin_url(path))
            .send()
            .await
            .expect("admin request"),
    )
    .await
}

/// Every record `GET /v1/revocations` lists (one page, limit 1000).
pub async fn list_revocations(gw: &Gateway) -> Vec<Value> {
    let (status, body) = admin_get(gw, "/v1/revocations?limit=1000").await;
    assert_eq!(status, 200, "list revocations: {body}");
    body["items"].as_array().expect("items array").clone()
}

/// `(jti, sid, sub)` counts from `GET /v1/stats`.
pub async fn stats_counts(gw: &Gateway) -> (u64, u64, u64) {
    let (status, body) = admin_get(gw, "/v1/stats").await;
    assert_eq!(status, 200, "stats: {body}");
    let n = |k: &str| {
        body[k]
            .as_u64()
            .unwrap_or_else(|| panic!("stats.{k}: {body}"))
    };
    (n("jti"), n("sid"), n("sub"))
}

/// The value of the sample `series` (name with labels, exactly as exposed) on `/metrics`.
pub async fn metric(gw: &Gateway, series: &str) -> u64 {
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("metric {series} not exposed"))
        .trim()
        .parse()
        .expect("numeric sample")
}

/// Status of a GET through the proxy with `token` (200: it passes, 401: refused).
pub async fn proxy_status(gw: &Gateway, token: &str) -> u16 {
    get_with(&gw.url("/api/x"), token).await.status().as_u16()
}

/// `config_text` with `line` added to the `[server]` section (e.g. `max_body_bytes = 1`).
pub fn config_text_with_server(
    upstream: SocketAddr,
    store: &Path,
    server_line: &str,
    extra: &str,
) -> String {
    config_text(upstream, store, extra).replacen(
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!("admin_listen = \"127.0.0.1:0\"\n{server_line}\n"),
        1,
    )
}

// ===== end of t-bcl helpers =====
// ============================================================================================
// t-proxy helpers (branch t-proxy): refusal assertions, special upstreams, raw HTTP.
// Appended as one block to ease merging; nothing above is changed by it.
// ============================================================================================

/// The `WWW-Authenticate` prefix of every `invalid_token` refusal (SPEC §4).
pub const INVALID_TOKEN_CHALLENGE: &str =
    "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"";

/// The `WWW-Authenticate` header of a response, or "" when absent.
pub fn www_authenticate(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_string())
        .unwrap_or_default()
}

/// Asserts a SPEC §4 `invalid_token` refusal whose description (header and JSON) contains
/// `word`; `case` names the case in failure messages. Returns the description.
pub async fn assert_invalid_token(resp: reqwest::Response, word: &str, case: &str) -> String {
    let www = www_authenticate(&resp);
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 401, "{case}: status (body {body})");
    assert!(
        www.starts_with(INVALID_TOKEN_CHALLENGE),
        "{case}: WWW-Authenticate {www:?}"
    );
    assert!(
        www[INVALID_TOKEN_CHALLENGE.len()..].contains(word),
        "{case}: WWW-Authenticate {www:?} lacks {word:?}"
    );
    assert_eq!(body["error"], "invalid_token", "{case}: body {body}");
    let description = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no error_description in {body}"))
        .to_string();
    assert!(
        description.contains(word),
        "{case}: description {description:?} lacks {word:?}"
    );
    description
}

/// Signs `header.payload` (raw JSON texts, base64url-encoded here) with the test key for
/// `alg`, so malformed-but-signed tokens (duplicate claims, `crit`, …) can be built.
pub fn sign_raw_with(alg: &str, header: &str, payload: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let algorithm: Algorithm = alg.parse().expect("known alg");
    let key = match alg {
        "ES256" => EncodingKey::from_ec_pem(&read_key("ec256_private.pem")).unwrap(),
        "ES384" => EncodingKey::from_ec_pem(&read_key("ec384_private.pem")).unwrap(),
        "EdDSA" => EncodingKey::from_ed_pem(&read_key("ed25519_private.pem")).unwrap(),
        _ => EncodingKey::from_rsa_pem(&read_key("rsa_private.pem")).unwrap(),
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, algorithm).expect("sign");
    format!("{input}.{sig}")
}

/// `config` with `keys` (TOML lines) added to its `[server]` table (e.g. limits).
pub fn with_server_keys(config: &str, keys: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1)
}

/// Like [`config_text`] but with only the given `[[route]]` tables (no default routes).
pub fn config_with_routes(store: &Path, routes: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[issuer]]
issuer = "{ISS}"
audiences = ["{AUD}", "api://two"]
jwks_file = "{jwks}"
algorithms = ["RS256", "ES256"]

[auth]
leeway = "60s"
max_token_lifetime = "1h"

[store]
path = "{store}"
sweep_interval = "1h"

{routes}
"#,
        jwks = key_path("jwks.json"),
        store = store.display(),
    )
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        let mut resp = hyper::Response::new(boxed_full(answer.to_string()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
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

/// An address nothing listens on: a port that was bound and then released.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
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

/// Sends `request` (a complete HTTP/1.1 request, which should say `Connection: close`) on a
/// new connection to `addr` and reads the answer until the server closes, within [`WAIT`].
/// For what reqwest cannot send: dot segments, hop-by-hop headers, huge header blocks.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before reading everything: ignore write errors.
        let _ = s.write_all(request).await;
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
    let buf = tokio::time::timeout(WAIT, fut)
        .await
        .expect("raw HTTP answer within the bound");
    parse_raw_response(&buf)
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
// ===================================== end t-proxy helpers ==================================

// ===========================================================================================
// t-admin helpers: admin API by address, metrics, the `revgate` binary as a child process.
// (Appended block; the functions above are unchanged.)
// ===========================================================================================

/// `config` with `store.sweep_interval` replaced.
pub fn with_sweep_interval(config: &str, interval: &str) -> String {
    config.replacen(
        "sweep_interval = \"1h\"",
        &format!("sweep_interval = \"{interval}\""),
        1,
    )
}

/// GET on an admin API at `admin`: status and JSON body.
pub async fn admin_get_at(admin: SocketAddr, path: &str) -> (u16, Value) {
    status_json(
        client()
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .expect("admin request"),
    )
    .await
}

/// POST JSON to an admin API at `admin`.
pub async fn admin_post_at(admin: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    status_json(
        client()
            .post(format!("http://{admin}{path}"))
            .json(body)
            .send()
            .await
            .expect("admin request"),
    )
    .await
}

/// DELETE on an admin API at `admin`: the status.
pub async fn admin_delete_at(admin: SocketAddr, path: &str) -> u16 {
    client()
        .delete(format!("http://{admin}{path}"))
        .send()
        .await
        .expect("admin request")
        .status()
        .as_u16()
}

/// DELETE on the gateway's admin API: the status.
pub async fn admin_delete(gw: &Gateway, path: &str) -> u16 {
    admin_delete_at(gw.admin, path).await
}

/// `GET /v1/stats` (must answer 200).
pub async fn admin_stats(gw: &Gateway) -> Value {
    let (status, body) = admin_get(gw, "/v1/stats").await;
    assert_eq!(status, 200, "stats: {body}");
    body
}

/// Total records (jti + sid + sub) according to `/v1/stats` of the admin API at `admin`.
pub async fn total_records_at(admin: SocketAddr) -> u64 {
    let (status, body) = admin_get_at(admin, "/v1/stats").await;
    assert_eq!(status, 200, "stats: {body}");
    ["jti", "sid", "sub"]
        .iter()
        .map(|k| body[k].as_u64().expect("count"))
        .sum()
}

/// GET `/api/resource` on a proxy listener with a bearer token: status and JSON body.
pub async fn proxy_get_at(proxy: SocketAddr, token: &str) -> (u16, Value) {
    status_json(get_with(&format!("http://{proxy}/api/resource"), token).await).await
}

/// GET `/api/resource` through the gateway with a bearer token.
pub async fn proxy_get(gw: &Gateway, token: &str) -> (u16, Value) {
    proxy_get_at(gw.proxy, token).await
}

/// Asserts a proxy answer is `401 invalid_token` naming a revocation.
#[track_caller]
pub fn assert_revoked(answer: &(u16, Value)) {
    assert_eq!(answer.0, 401, "expected 401 revoked, got {answer:?}");
    assert_eq!(answer.1["error"], "invalid_token", "{answer:?}");
    let description = answer.1["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("revoked"), "{answer:?}");
}

/// Asserts a proxy answer is a `200` from the echo upstream.
#[track_caller]
pub fn assert_passes(answer: &(u16, Value)) {
    assert_eq!(
        answer.0, 200,
        "expected 200 from the upstream, got {answer:?}"
    );
    assert_eq!(answer.1["echo"], true, "{answer:?}");
}

/// Signs default RS256 claims modified by `f`.
pub fn token_with(sub: &str, sid: &str, jti: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut c = claims(sub, sid, jti);
    f(&mut c);
    sign_with("RS256", Some("rsa-1"), None, &c)
}

/// The value of the sample `name` (with labels, exactly as written) in Prometheus text.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /metrics` of the gateway (no admin token): the text.
pub async fn metrics_text(gw: &Gateway) -> String {
    let resp = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("metrics text")
}

/// Parses an RFC 3339 field of a record JSON into seconds since the epoch.
#[track_caller]
pub fn instant(v: &Value) -> u64 {
    revgate::clock::parse_rfc3339(v.as_str().expect("an RFC 3339 string")).expect("RFC 3339")
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The proxy and admin addresses of a `revgate listening proxy=... admin=...` log line
/// (text or JSON log format, colours or not).
pub fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("revgate listening") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        for pat in [format!("{name}="), format!("\"{name}\":\"")] {
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
                    .unwrap_or(rest.len());
                if let Ok(addr) = rest[..end].parse() {
                    return Some(addr);
                }
            }
        }
        None
    };
    Some((field("proxy")?, field("admin")?))
}

/// Path of the `revgate` binary built for these tests.
pub fn revgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_revgate")
}

/// Runs the `revgate` binary to completion (bounded by [`WAIT`], killed if it overruns)
/// in `cwd`, with `envs` set and `REVGATE_ADMIN_TOKEN` removed unless given.
pub async fn run_revgate(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(revgate_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("REVGATE_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn revgate");
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("revgate {args:?} did not finish within {WAIT:?}"))
        .expect("revgate output")
}

/// `revgate serve --config FILE` as a child process; killed when dropped.
pub struct ServeChild {
    /// The child (kill_on_drop).
    pub child: tokio::process::Child,
    /// Proxy listener address (from the start-up log line).
    pub proxy: SocketAddr,
    /// Admin listener address (from the start-up log line).
    pub admin: SocketAddr,
    /// Every stderr line so far (ANSI stripped).
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ServeChild {
    /// Starts `revgate serve --config config` and waits (bounded) for its listening line.
    pub async fn start(config: &Path) -> ServeChild {
        ServeChild::start_under(&[], Path::new(revgate_bin()), config).await
    }

    /// Like [`ServeChild::start`] with the binary `bin`, run under `wrapper` (a command and
    /// its arguments, e.g. `strace -f -o FILE`; none when empty). The child is the wrapper.
    pub async fn start_under(
        wrapper: &[&std::ffi::OsStr],
        bin: &Path,
        config: &Path,
    ) -> ServeChild {
        use tokio::io::AsyncBufReadExt;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG_STYLE", "never")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn revgate serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let log2 = log.clone();
        // Drains stderr for the child's whole life, so it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let line = strip_ansi(&line);
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.recv().await {
                if let Some(addrs) = parse_listening_line(&line) {
                    return Some(addrs);
                }
            }
            None
        })
        .await;
        let (proxy, admin) = match found {
            Ok(Some(addrs)) => addrs,
            _ => {
                let _ = child.start_kill();
                panic!(
                    "revgate serve did not log its listening line within {WAIT:?}; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        ServeChild {
            child,
            proxy,
            admin,
            log,
            lines,
        }
    }

    /// Waits (bounded) for a stderr line containing `needle`; false if none came.
    pub async fn wait_for_log(&mut self, needle: &str) -> bool {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// SIGKILL, then reap (bounded).
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("killed child is reaped within the bound")
            .expect("wait");
    }

    /// Sends SIGTERM with `kill -TERM <pid>`.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("child still running");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits up to `bound` for the exit; kills the child if it overruns.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => Some(status.expect("wait")),
            Err(_) => {
                let _ = self.child.start_kill();
                None
            }
        }
    }

    /// The log so far, for failure messages.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

// ===========================================================================================
// t-robust helpers (branch robust): randomness without a crate, child process figures
// (RSS, open fds), a small tmpfs for disk-full faults. Appended block; nothing above changes.
// ===========================================================================================

/// A random `u64` from the standard library's per-process random hash keys and the clock.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A random duration in `[low, high)` (millisecond resolution).
pub fn random_between(low: Duration, high: Duration) -> Duration {
    let span = (high.as_millis() - low.as_millis()).max(1) as u64;
    low + Duration::from_millis(random_u64() % span)
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd dir")
        .count()
}

impl ServeChild {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }
}

/// Writes `text` to `dir/revgate.toml` and returns the path.
pub fn write_config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("revgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A tmpfs of a few MiB mounted on a fresh directory; unmounted when dropped. Needs root
/// (CAP_SYS_ADMIN): [`TmpfsMount::try_new`] answers `None` where mounting is not allowed.
pub struct TmpfsMount {
    /// Keeps the mount point alive.
    dir: Option<tempfile::TempDir>,
    /// The mount point.
    pub path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_mib` MiB, or `None` when `mount` is refused here.
    pub fn try_new(size_mib: u32) -> Option<TmpfsMount> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_path_buf();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0700"))
            .arg("tmpfs")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TmpfsMount {
            dir: Some(dir),
            path,
        })
    }

    /// Fills the file system with `path/filler` until it is full; returns the filler path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("create filler");
        for chunk in [1 << 16, 4096, 512, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        let _ = f.sync_all();
        filler
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let done = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            // Still busy (a test failed with the store open): detach it anyway.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
        drop(self.dir.take());
    }
}
// ===================================== end t-robust helpers =================================
// ops helpers (branch ops): a gateway started from a config FILE (so `POST /v1/reload` and
// SIGHUP re-read it), admin requests with a bearer token. Appended block; nothing above
// is changed by it.
// ===========================================================================================

impl Gateway {
    /// Starts a gateway from the config file at `path` (checked exactly as `revgate serve`
    /// and a reload check it), with the system clock. Its `POST /v1/reload` re-reads `path`.
    pub async fn start_from_file(path: &Path) -> Gateway {
        let config = revgate::reload::check_file(path).expect("valid test config file");
        let listeners = revgate::Listeners::bind(config.server.listen, config.server.admin_listen)
            .await
            .expect("bind");
        Gateway::launch(
            config,
            Some(path.to_path_buf()),
            revgate::clock::system(),
            listeners,
        )
        .await
    }
}

/// Writes `text` to `path` atomically (temp file + rename), as an operator's editor or
/// configuration management would: a reader never sees half a file.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// `POST /v1/reload` on the admin API at `admin` (with `token` when given): status and body.
pub async fn admin_reload_at(admin: SocketAddr, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(format!("http://{admin}/v1/reload"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    status_json(req.send().await.expect("reload request")).await
}
// ===================================== end ops helpers ======================================
