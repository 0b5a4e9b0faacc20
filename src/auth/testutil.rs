//! Test helpers: the keys of `tests/keys/` (their table is `tests/keys/mod.rs`), test
//! configs, a raw JWS signer and a tiny JWKS server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// The test identity provider (issuer, key files, `kid`s, signing keys), shared with the
/// integration-test harness so the table is written once.
#[path = "../../tests/keys/mod.rs"]
mod keys;

pub use keys::*;

/// "Now" in the tests.
pub const NOW: u64 = 1_700_000_000;

/// A one-issuer config: JWKS from `jwks` (a `jwks_file = ...` or `jwks_url = ...` line),
/// the given algorithms, the test HMAC secret, leeway 60 s, max lifetime 1 h.
pub fn config_with(jwks: &str, algorithms: &[&str]) -> Config {
    toml::from_str(&format!(
        "[auth]\nleeway = \"60s\"\nmax_token_lifetime = \"1h\"\n\
         [[issuer]]\nissuer = {ISS:?}\naudiences = [\"api://one\", \"api://two\"]\n{jwks}\n\
         algorithms = {algorithms:?}\nhmac_secret_file = {:?}\n",
        key_path("hmac.secret")
    ))
    .expect("test config")
}

/// [`config_with`] the test `jwks.json` file.
pub fn config(algorithms: &[&str]) -> Config {
    config_with(
        &format!("jwks_file = {:?}", key_path("jwks.json")),
        algorithms,
    )
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of exactly these header and payload JSON texts, signed with `key`.
pub fn sign_raw(header: &str, payload: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

/// Claims that pass every check at [`NOW`].
pub fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISS,
        "aud": "api://one",
        "sub": "user-1",
        "sid": "session-1",
        "jti": "jti-1",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "scope": "read write",
    })
}

/// A token of `alg` signed by its test key, with its kid and `typ: JWT`.
pub fn token(alg: Algorithm, claims: &serde_json::Value) -> String {
    let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid_for(alg) {
        header["kid"] = kid.into();
    }
    sign_raw(
        &header.to_string(),
        &claims.to_string(),
        alg,
        &encoding_key(alg),
    )
}

/// A tiny HTTP/1.1 server on `127.0.0.1:0` answering every request with `body` (JSON)
/// and counting the requests it answered.
pub struct JwksServer {
    pub url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = b.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        JwksServer {
            url,
            body,
            hits,
            task,
        }
    }

    /// Serves `body` from now on.
    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
