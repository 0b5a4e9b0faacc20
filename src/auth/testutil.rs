//! Test helpers: the keys of `tests/keys/`, a raw JWS signer and a tiny JWKS server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// The issuer of the test configs.
pub const ISS: &str = "https://idp.test/";
/// "Now" in the tests.
pub const NOW: u64 = 1_700_000_000;

pub const JWKS: &str = include_str!("../../tests/keys/jwks.json");
pub const RSA_PRIVATE: &str = include_str!("../../tests/keys/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../../tests/keys/rsa_public.pem");
pub const RSA_OTHER_PRIVATE: &str = include_str!("../../tests/keys/rsa_other_private.pem");
pub const RSA_OTHER_JWK: &str = include_str!("../../tests/keys/rsa_other_jwk.json");
pub const EC256_PRIVATE: &str = include_str!("../../tests/keys/ec256_private.pem");
pub const EC384_PRIVATE: &str = include_str!("../../tests/keys/ec384_private.pem");
pub const ED_PRIVATE: &str = include_str!("../../tests/keys/ed25519_private.pem");
pub const HMAC_SECRET: &str = include_str!("../../tests/keys/hmac.secret");

/// Absolute path of a file in `tests/keys/`.
pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

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

/// The encoding key of the test key for `alg` (the in-JWKS RSA key for RS*/PS*).
pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    use jsonwebtoken::AlgorithmFamily::*;
    match alg.family() {
        Rsa => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        Ec if alg == Algorithm::ES256 => {
            EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap()
        }
        Ec => EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap(),
        Ed => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        Hmac => EncodingKey::from_secret(HMAC_SECRET.trim_end().as_bytes()).unwrap(),
    }
}

/// The kid of the test key for `alg` in `jwks.json`.
pub fn kid_for(alg: Algorithm) -> Option<&'static str> {
    use jsonwebtoken::AlgorithmFamily::*;
    match alg.family() {
        Rsa => Some("rsa-1"),
        Ec if alg == Algorithm::ES256 => Some("ec256-1"),
        Ec => Some("ec384-1"),
        Ed => Some("ed-1"),
        Hmac => None,
    }
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
