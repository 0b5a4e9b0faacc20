//! JWKS per issuer: loaded from a file or URL, refreshed periodically and on an unknown
//! `kid` (rate-limited), the last good set kept in the store for restarts.
//!
//! Rules (SPEC §3, §4; RFC 8725 §3.1, §3.8, §3.10):
//! - every issuer has its own key set; a token is only ever checked against its issuer's keys;
//! - a JWKS never supplies HMAC keys (`kty: oct` is ignored): HS256/384/512 use only the
//!   issuer's `hmac_secret_file`, and every other algorithm only JWKS keys, so a token
//!   "signed" with the RSA public key as an HMAC secret can never verify;
//! - keys with a `use` other than `sig` (or `key_ops` without `verify`) are ignored, as are
//!   keys that fail to parse (logged by `kid`, never by key material);
//! - a key is used with exactly one family of algorithms (its `kty`/`crv`), and with exactly
//!   its JWK `alg` when it names one;
//! - a fetched set that is garbage or has no usable key is a failed fetch and never replaces
//!   the last good set; the last good document is kept in the store so a restart while the
//!   IdP is down still has keys.
//!
//! State per issuer is an immutable [`IssuerKeys`] snapshot behind a `std::sync::RwLock`;
//! readers clone an `Arc` and never hold a lock across an `.await`. Refetches of one issuer
//! are serialised by a `tokio::sync::Mutex` (single flight).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use sha2::{Digest, Sha256};

use crate::auth::TokenError;
use crate::clock::SharedClock;
use crate::config::{Config, IssuerConfig};
use crate::metrics::Metrics;
use crate::store::RevocationStore;
use crate::App;

/// Whole-request timeout of one JWKS fetch (connect, headers and body).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document accepted from a URL or file (1 MiB); larger ones are a failed fetch.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// At most one unknown-`kid` refetch per issuer in this interval. Tokens with an unknown
/// `kid` arriving within it fail at once with a `signature` error and do not reach the IdP,
/// so a flood of made-up `kid`s costs the IdP at most one request per interval.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Shortest period of the background refresher, whatever `auth.jwks_refresh` says.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(1);

/// One signature-verification key of an issuer.
pub struct VerifyingKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// Curve of EC / OKP keys.
    curve: Option<EllipticCurve>,
    /// The JWK's `alg`, when it names one (an unknown name never matches).
    alg: Option<KeyAlgorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never key material.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("curve", &self.curve)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The JWK `kid`, if any (`None` for the HMAC secret).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key, for `jsonwebtoken::crypto::verify`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether this key may verify `alg`: same family (RSA for RS*/PS*, EC P-256 for
    /// ES256, EC P-384 for ES384, OKP Ed25519 for EdDSA, the HMAC secret for HS*), and the
    /// JWK `alg`, when given, equal to `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family || self.key.family() != self.family {
            return false;
        }
        let curve_ok = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        };
        curve_ok && self.alg.is_none_or(|a| a == KeyAlgorithm::from(alg))
    }
}

/// What the keyring holds for one issuer (no key material).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuerKeyStatus {
    /// The issuer (`iss`).
    pub issuer: String,
    /// `kid` of every usable JWKS key (`""` for a key without one).
    pub kids: Vec<String>,
    /// Whether an HMAC secret is loaded.
    pub hmac: bool,
    /// Last successful JWKS load, seconds since the epoch.
    pub fetched_at: Option<u64>,
    /// Last JWKS load attempt, seconds since the epoch.
    pub attempted_at: Option<u64>,
}

/// Where an issuer's JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JwksSource {
    Url(String),
    File(PathBuf),
    /// Neither configured (refused by `Config::validate`; tolerated here).
    None,
}

impl JwksSource {
    fn of(ic: &IssuerConfig) -> Self {
        match (&ic.jwks_url, &ic.jwks_file) {
            (Some(url), _) => JwksSource::Url(url.clone()),
            (None, Some(path)) => JwksSource::File(path.clone()),
            (None, None) => JwksSource::None,
        }
    }
}

/// Immutable snapshot of one issuer's keys; replaced as a whole on every change.
#[derive(Debug)]
struct IssuerKeys {
    source: JwksSource,
    /// Usable JWKS keys (never HMAC).
    keys: Vec<Arc<VerifyingKey>>,
    /// The issuer's `hmac_secret_file`, for HS* only.
    hmac: Option<Arc<VerifyingKey>>,
    /// SHA-256 of the JWKS document `keys` came from (to save only changed documents).
    digest: Option<[u8; 32]>,
    /// Last successful load (clock seconds).
    fetched_at: Option<u64>,
    /// Last load attempt, successful or not (clock seconds).
    attempted_at: Option<u64>,
}

impl IssuerKeys {
    fn empty(source: JwksSource) -> Self {
        IssuerKeys {
            source,
            keys: Vec::new(),
            hmac: None,
            digest: None,
            fetched_at: None,
            attempted_at: None,
        }
    }
}

struct IssuerSlot {
    /// The `iss` this slot belongs to (for logs and the store).
    issuer: String,
    state: RwLock<Arc<IssuerKeys>>,
    /// Single flight for (re)fetches of this issuer; holds the instant (clock seconds) of
    /// the last unknown-`kid` refetch, for [`UNKNOWN_KID_REFETCH_INTERVAL`].
    refetch: tokio::sync::Mutex<Option<u64>>,
    /// The keyring's generation counter, bumped on every change of this slot's keys.
    generation: Arc<AtomicU64>,
}

impl IssuerSlot {
    fn snapshot(&self) -> Arc<IssuerKeys> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn replace(&self, keys: IssuerKeys) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Result of looking a key up without fetching.
enum Lookup {
    Found(Arc<VerifyingKey>),
    /// The kid is not in the set: a refetch may help.
    UnknownKid(Arc<IssuerSlot>),
}

/// Signing keys of every configured issuer. Lives inside `App`; all methods take `&self`.
///
/// Start-up: [`Keyring::load_all`]; then spawn [`Keyring::run_refresher`]. The proxy and the
/// back-channel endpoint look keys up with [`Keyring::key_for`].
pub struct Keyring {
    issuers: RwLock<HashMap<String, Arc<IssuerSlot>>>,
    store: Option<RevocationStore>,
    clock: SharedClock,
    http: reqwest::Client,
    /// Bumped whenever any issuer's key set changes or an issuer comes or goes, so a
    /// verified-token cache can tell its entries were verified against older keys.
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// An empty keyring backed by `store` (for the last good JWKS).
    pub fn new(store: RevocationStore, clock: SharedClock) -> Self {
        Self::build(Some(store), clock)
    }

    /// An empty keyring that keeps no JWKS in a store (tools, tests).
    pub fn without_store(clock: SharedClock) -> Self {
        Self::build(None, clock)
    }

    fn build(store: Option<RevocationStore>, clock: SharedClock) -> Self {
        let http = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .connect_timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("revgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client with static settings");
        Keyring {
            issuers: RwLock::new(HashMap::new()),
            store,
            clock,
            http,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Changes whenever a key set changes (see the field's doc).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Loads the keys of every configured issuer at start-up.
    ///
    /// `jwks_file` issuers: an unreadable or invalid file is an error naming the issuer and
    /// file, as is an unreadable `hmac_secret_file`. `jwks_url` issuers: fetched (all in
    /// parallel); on failure the last good document from the store is used and a warning
    /// logged; with neither the issuer has no keys for now — not an error: [`Keyring::ready`]
    /// reports it and its tokens fail with a `signature` error until a refetch succeeds.
    /// Issuers no longer configured are dropped.
    pub async fn load_all(&self, config: &Config, metrics: &Metrics) -> Result<(), String> {
        let results = futures_util::future::join_all(
            config
                .issuers
                .iter()
                .map(|ic| self.sync_issuer(ic, metrics, true)),
        )
        .await;
        self.retain(config);
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Refetches every URL issuer and re-reads every file (and HMAC secret), keeping the
    /// last good set of any that fails. Issuers added by a config reload are loaded, removed
    /// ones dropped. Never fails: problems are logged and counted.
    pub async fn refresh_all(&self, config: &Config, metrics: &Metrics) {
        futures_util::future::join_all(
            config
                .issuers
                .iter()
                .map(|ic| self.sync_issuer(ic, metrics, false)),
        )
        .await;
        self.retain(config);
    }

    /// Background task: calls [`Keyring::refresh_all`] with the configuration in force
    /// (re-read each round, so reloads apply) every `auth.jwks_refresh` (at least
    /// [`MIN_JWKS_REFRESH`]), until `shutdown` flips to `true` or its sender is dropped.
    /// Call [`Keyring::load_all`] first; this waits one period before its first round.
    ///
    /// ```ignore
    /// tokio::spawn(Keyring::run_refresher(app.clone(), shutdown_rx.clone()));
    /// ```
    pub async fn run_refresher(app: Arc<App>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let period = app.config().auth.jwks_refresh.max(MIN_JWKS_REFRESH);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let config = app.config();
            tokio::select! {
                _ = app.keys.refresh_all(&config, &app.metrics) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Whether every configured issuer has at least one key (JWKS key or HMAC secret).
    pub fn ready(&self, config: &Config) -> bool {
        let map = self.issuers.read().unwrap_or_else(|e| e.into_inner());
        config.issuers.iter().all(|ic| {
            map.get(&ic.issuer).is_some_and(|slot| {
                let keys = slot.snapshot();
                !keys.keys.is_empty() || keys.hmac.is_some()
            })
        })
    }

    /// What the keyring holds for each issuer it knows (health checks, diagnostics).
    pub fn status(&self) -> Vec<IssuerKeyStatus> {
        let map = self.issuers.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<IssuerKeyStatus> = map
            .iter()
            .map(|(issuer, slot)| {
                let keys = slot.snapshot();
                IssuerKeyStatus {
                    issuer: issuer.clone(),
                    kids: keys
                        .keys
                        .iter()
                        .map(|k| k.kid.clone().unwrap_or_default())
                        .collect(),
                    hmac: keys.hmac.is_some(),
                    fetched_at: keys.fetched_at,
                    attempted_at: keys.attempted_at,
                }
            })
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }

    /// The key that verifies a token of `issuer` signed with `alg`.
    ///
    /// HS256/384/512 get only the issuer's HMAC secret; every other algorithm only JWKS keys.
    /// With `kid`: the key with that `kid`, which must [accept](VerifyingKey::accepts) `alg`.
    /// Without: the only key that accepts `alg` (none or several: error). An unknown `kid`
    /// triggers one refetch of the issuer's JWKS (single flight, at most one per
    /// [`UNKNOWN_KID_REFETCH_INTERVAL`]) and a second look. Every failure is
    /// [`TokenError::Signature`].
    pub async fn key_for(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
        metrics: &Metrics,
    ) -> Result<Arc<VerifyingKey>, TokenError> {
        let slot = match self.lookup(issuer, kid, alg)? {
            Lookup::Found(key) => return Ok(key),
            Lookup::UnknownKid(slot) => slot,
        };
        let kid = kid.unwrap_or_default();
        let mut last_refetch = slot.refetch.lock().await;
        // Someone else may have fetched while we waited for the lock.
        if let Some(key) = find_by_kid(&slot.snapshot(), kid, alg)? {
            return Ok(key);
        }
        let now = self.clock.now();
        let interval = UNKNOWN_KID_REFETCH_INTERVAL.as_secs();
        // A clock that went backwards (now < last) does not block refetches forever.
        if let Some(last) = *last_refetch {
            if now >= last && now - last < interval {
                return Err(unknown_kid());
            }
        }
        *last_refetch = Some(now);
        tracing::info!(issuer, kid = ?kid, "unknown kid: refetching JWKS");
        let _ = self.refetch_locked(&slot, metrics, false).await;
        drop(last_refetch);
        find_by_kid(&slot.snapshot(), kid, alg)?.ok_or_else(unknown_kid)
    }

    /// Looks a key up without fetching.
    fn lookup(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Lookup, TokenError> {
        let slot = {
            let map = self.issuers.read().unwrap_or_else(|e| e.into_inner());
            match map.get(issuer) {
                Some(slot) => slot.clone(),
                None => return Err(TokenError::Signature("no keys for this issuer".into())),
            }
        };
        let keys = slot.snapshot();
        if alg.family() == AlgorithmFamily::Hmac {
            return match &keys.hmac {
                Some(key) if key.accepts(alg) => Ok(Lookup::Found(key.clone())),
                _ => Err(TokenError::Signature(
                    "no HMAC secret for this issuer".into(),
                )),
            };
        }
        match kid {
            Some(kid) => match find_by_kid(&keys, kid, alg)? {
                Some(key) => Ok(Lookup::Found(key)),
                None => Ok(Lookup::UnknownKid(slot)),
            },
            None => {
                let mut matching = keys.keys.iter().filter(|k| k.accepts(alg));
                match (matching.next(), matching.next()) {
                    (Some(key), None) => Ok(Lookup::Found(key.clone())),
                    (None, _) => Err(TokenError::Signature("no key for this algorithm".into())),
                    (Some(_), Some(_)) => Err(TokenError::Signature(
                        "token has no kid and several keys match".into(),
                    )),
                }
            }
        }
    }

    /// Drops issuers that are no longer configured.
    fn retain(&self, config: &Config) {
        let mut map = self.issuers.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|iss, _| config.issuer(iss).is_some());
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The slot of `ic`, created empty when new.
    fn slot(&self, ic: &IssuerConfig) -> Arc<IssuerSlot> {
        let mut map = self.issuers.write().unwrap_or_else(|e| e.into_inner());
        let slot = map
            .entry(ic.issuer.clone())
            .or_insert_with(|| {
                Arc::new(IssuerSlot {
                    issuer: ic.issuer.clone(),
                    state: RwLock::new(Arc::new(IssuerKeys::empty(JwksSource::of(ic)))),
                    refetch: tokio::sync::Mutex::new(None),
                    generation: self.generation.clone(),
                })
            })
            .clone();
        drop(map);
        slot
    }

    /// (Re)loads one issuer: HMAC secret and JWKS. `startup`: file problems are errors.
    async fn sync_issuer(
        &self,
        ic: &IssuerConfig,
        metrics: &Metrics,
        startup: bool,
    ) -> Result<(), String> {
        let slot = self.slot(ic);
        let _flight = slot.refetch.lock().await;
        let source = JwksSource::of(ic);
        if slot.snapshot().source != source {
            // A reload moved the JWKS elsewhere: the old keys no longer belong to the issuer.
            slot.replace(IssuerKeys::empty(source));
        }
        let mut error = None;
        let hmac = match &ic.hmac_secret_file {
            None => None,
            Some(path) => match read_hmac_secret(path) {
                Ok(key) => Some(Arc::new(key)),
                Err(e) => {
                    let msg = format!(
                        "issuer {}: hmac_secret_file {}: {e}",
                        ic.issuer,
                        path.display()
                    );
                    tracing::warn!(issuer = %ic.issuer, "{msg}");
                    error = Some(msg);
                    // Keep the secret already loaded, if any.
                    slot.snapshot().hmac.clone()
                }
            },
        };
        {
            let current = slot.snapshot();
            if !same_key(current.hmac.as_deref(), hmac.as_deref()) {
                slot.replace(IssuerKeys {
                    source: current.source.clone(),
                    keys: current.keys.clone(),
                    hmac,
                    digest: current.digest,
                    fetched_at: current.fetched_at,
                    attempted_at: current.attempted_at,
                });
            }
        }
        let jwks = self
            .refetch_locked(&slot, metrics, ic.hmac_secret_file.is_some())
            .await;
        if let Err(e) = jwks {
            if startup && matches!(slot.snapshot().source, JwksSource::File(_)) {
                error.get_or_insert(format!("issuer {}: {e}", ic.issuer));
            }
        }
        match error {
            Some(e) if startup => Err(e),
            _ => Ok(()),
        }
    }

    /// Reloads the JWKS of `slot` from its source; the caller holds `slot.refetch`.
    /// On success the new set replaces the old (and a changed URL document is saved to the
    /// store); on failure the last good set stays, or, when there is none, the store's
    /// last good document is tried. `empty_ok`: a file with no usable key is acceptable
    /// (HMAC-only issuers).
    async fn refetch_locked(
        &self,
        slot: &IssuerSlot,
        metrics: &Metrics,
        empty_ok: bool,
    ) -> Result<(), String> {
        let current = slot.snapshot();
        let issuer = slot.issuer.as_str();
        let now = self.clock.now();
        let loaded = match &current.source {
            JwksSource::None => return Ok(()),
            JwksSource::File(path) => read_jwks_file(path).and_then(|doc| {
                let keys = parse_jwks(&doc, issuer)
                    .map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
                if keys.is_empty() && !empty_ok {
                    return Err(format!(
                        "jwks_file {}: no usable signing key",
                        path.display()
                    ));
                }
                Ok((doc, keys))
            }),
            JwksSource::Url(url) => match self.fetch(url).await {
                Ok(doc) => match parse_jwks(&doc, issuer) {
                    Ok(keys) if keys.is_empty() => Err("JWKS has no usable signing key".into()),
                    Ok(keys) => Ok((doc, keys)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        let is_url = matches!(current.source, JwksSource::Url(_));
        match loaded {
            Ok((doc, keys)) => {
                if is_url {
                    metrics.jwks_fetch_ok.fetch_add(1, Ordering::Relaxed);
                }
                let digest: [u8; 32] = Sha256::digest(&doc).into();
                if is_url && current.digest != Some(digest) {
                    if let Some(store) = &self.store {
                        if let Err(e) = store.save_jwks(issuer, &doc).await {
                            tracing::warn!(issuer, error = %e, "cannot save JWKS to the store");
                        }
                    }
                }
                let latest = slot.snapshot();
                slot.replace(IssuerKeys {
                    source: latest.source.clone(),
                    keys,
                    hmac: latest.hmac.clone(),
                    digest: Some(digest),
                    fetched_at: Some(now),
                    attempted_at: Some(now),
                });
                tracing::debug!(issuer, "JWKS loaded");
                Ok(())
            }
            Err(e) => {
                if is_url {
                    metrics.jwks_fetch_error.fetch_add(1, Ordering::Relaxed);
                }
                let latest = slot.snapshot();
                let mut next = IssuerKeys {
                    source: latest.source.clone(),
                    keys: latest.keys.clone(),
                    hmac: latest.hmac.clone(),
                    digest: latest.digest,
                    fetched_at: latest.fetched_at,
                    attempted_at: Some(now),
                };
                if next.keys.is_empty() && is_url {
                    if let Some((doc, keys)) = self.load_saved(issuer) {
                        tracing::warn!(issuer, error = %e, "JWKS fetch failed; using the last good set from the store");
                        next.keys = keys;
                        next.digest = Some(Sha256::digest(&doc).into());
                    } else {
                        tracing::warn!(issuer, error = %e, "JWKS fetch failed and no saved set: issuer has no keys");
                    }
                } else {
                    tracing::warn!(issuer, error = %e, "JWKS load failed; keeping the last good set");
                }
                slot.replace(next);
                Err(e)
            }
        }
    }

    /// The last good document saved for `issuer`, parsed, if it has usable keys.
    fn load_saved(&self, issuer: &str) -> Option<(Vec<u8>, Vec<Arc<VerifyingKey>>)> {
        let store = self.store.as_ref()?;
        let doc = match store.load_jwks(issuer) {
            Ok(Some(doc)) => doc,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(issuer, error = %e, "cannot read the saved JWKS");
                return None;
            }
        };
        match parse_jwks(&doc, issuer) {
            Ok(keys) if !keys.is_empty() => Some((doc, keys)),
            _ => {
                tracing::warn!(issuer, "saved JWKS is unusable");
                None
            }
        }
    }

    /// GETs `url`, 2xx only, body at most [`MAX_JWKS_BYTES`].
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self
            .http
            .get(url)
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("JWKS request answered {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("JWKS body read failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Checks, without touching any keyring, that every issuer's local key material loads:
/// each `jwks_file` reads and parses as a JWK Set with a usable signing key (or is allowed
/// to have none because the issuer uses an HMAC secret), each `hmac_secret_file` reads.
/// `jwks_url` issuers are not fetched: an unreachable IdP is not a configuration error
/// (the last good keys are kept). The error names the key, like a config error:
/// `issuer[0].jwks_file: ...`. Shared by `check-config` and reload, so both refuse the same.
pub fn check_local_keys(config: &Config) -> Result<(), String> {
    for (i, ic) in config.issuers.iter().enumerate() {
        if let Some(path) = &ic.hmac_secret_file {
            read_hmac_secret(path)
                .map_err(|e| format!("issuer[{i}].hmac_secret_file: {}: {e}", path.display()))?;
        }
        if let (None, Some(path)) = (&ic.jwks_url, &ic.jwks_file) {
            let key = format!("issuer[{i}].jwks_file");
            let doc = read_jwks_file(path).map_err(|e| format!("{key}: {e}"))?;
            let keys = parse_jwks(&doc, &ic.issuer)
                .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
            if keys.is_empty() && ic.hmac_secret_file.is_none() {
                return Err(format!("{key}: {}: no usable signing key", path.display()));
            }
        }
    }
    Ok(())
}

fn unknown_kid() -> TokenError {
    TokenError::Signature("unknown signing key (kid)".into())
}

/// The key of `keys` with `kid`, if any; a key with that kid that does not accept `alg` is
/// an error (not a reason to refetch).
fn find_by_kid(
    keys: &IssuerKeys,
    kid: &str,
    alg: Algorithm,
) -> Result<Option<Arc<VerifyingKey>>, TokenError> {
    let mut seen = false;
    for key in keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)) {
        if key.accepts(alg) {
            return Ok(Some(key.clone()));
        }
        seen = true;
    }
    if seen {
        Err(TokenError::Signature(
            "signing key does not match the token algorithm".into(),
        ))
    } else {
        Ok(None)
    }
}

fn same_key(a: Option<&VerifyingKey>, b: Option<&VerifyingKey>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.key.try_get_as_bytes().ok() == b.key.try_get_as_bytes().ok(),
        _ => false,
    }
}

/// Reads an HMAC secret file; a trailing newline (`\n` or `\r\n`) is not part of the secret.
fn read_hmac_secret(path: &Path) -> Result<VerifyingKey, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err("empty secret".into());
    }
    let key = DecodingKey::from_secret(&bytes).map_err(|e| format!("unusable secret: {e}"))?;
    Ok(VerifyingKey {
        kid: None,
        family: AlgorithmFamily::Hmac,
        curve: None,
        alg: None,
        key,
    })
}

fn read_jwks_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read jwks_file {}: {e}", path.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "jwks_file {} is larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read jwks_file {}: {e}", path.display()))
}

/// Parses a JWK Set document into its usable signing keys (possibly none). Only a document
/// that is not a JSON object with a `keys` array is an error.
fn parse_jwks(doc: &[u8], issuer: &str) -> Result<Vec<Arc<VerifyingKey>>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(doc).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for value in set.keys {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        match value.get("kty").and_then(|k| k.as_str()) {
            // A JWKS never supplies HMAC keys (algorithm-confusion defence).
            Some("oct") => {
                tracing::warn!(issuer, kid = ?kid, "ignoring symmetric (kty oct) key in JWKS");
                continue;
            }
            Some("RSA" | "EC" | "OKP") => {}
            _ => {
                tracing::debug!(issuer, kid = ?kid, "ignoring JWKS key of unsupported kty");
                continue;
            }
        }
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                tracing::warn!(issuer, kid = ?kid, "ignoring JWKS key that does not parse");
                continue;
            }
        };
        match verifying_key(jwk) {
            Ok(Some(key)) => keys.push(Arc::new(key)),
            Ok(None) => {
                tracing::debug!(issuer, kid = ?kid, "ignoring JWKS key not meant for signatures")
            }
            Err(why) => tracing::warn!(issuer, kid = ?kid, "ignoring unusable JWKS key: {why}"),
        }
    }
    Ok(keys)
}

/// The verifying key of a parsed JWK; `None` when it is not meant for signatures.
fn verifying_key(jwk: Jwk) -> Result<Option<VerifyingKey>, &'static str> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Ok(None),
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return Ok(None);
        }
    }
    let b64_len = |s: &str| URL_SAFE_NO_PAD.decode(s).map(|v| v.len()).unwrap_or(0);
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            // At least 2048-bit moduli (RFC 7518 §3.3), a sane exponent.
            let n = URL_SAFE_NO_PAD.decode(&p.n).map_err(|_| "bad RSA n")?;
            let bits = match n.first() {
                Some(first) => n.len() * 8 - first.leading_zeros() as usize,
                None => 0,
            };
            if bits < 2048 {
                return Err("RSA key shorter than 2048 bits");
            }
            if !(1..=8).contains(&b64_len(&p.e)) {
                return Err("bad RSA e");
            }
            (AlgorithmFamily::Rsa, None)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let size = match p.curve {
                EllipticCurve::P256 => 32,
                EllipticCurve::P384 => 48,
                _ => return Err("unsupported EC curve"),
            };
            if b64_len(&p.x) != size || b64_len(&p.y) != size {
                return Err("bad EC point");
            }
            (AlgorithmFamily::Ec, Some(p.curve.clone()))
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            if b64_len(&p.x) != 32 {
                return Err("bad Ed25519 key");
            }
            (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519))
        }
        _ => return Err("unsupported key type"),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "does not parse")?;
    if key.family() != family {
        return Err("key family mismatch");
    }
    Ok(Some(VerifyingKey {
        kid: jwk.common.key_id,
        family,
        curve,
        alg: jwk.common.key_algorithm,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::JWKS;
    use crate::clock::ManualClock;

    #[test]
    fn parses_the_test_jwks() {
        let keys = parse_jwks(JWKS.as_bytes(), "t").unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid().unwrap()).collect();
        assert_eq!(kids, ["rsa-1", "ec256-1", "ec384-1", "ed-1"]);
        assert!(keys[0].accepts(Algorithm::RS256) && keys[0].accepts(Algorithm::PS512));
        assert!(!keys[0].accepts(Algorithm::HS256) && !keys[0].accepts(Algorithm::ES256));
        assert!(keys[1].accepts(Algorithm::ES256) && !keys[1].accepts(Algorithm::ES384));
        assert!(keys[2].accepts(Algorithm::ES384) && !keys[2].accepts(Algorithm::ES256));
        assert!(keys[3].accepts(Algorithm::EdDSA));
    }

    #[test]
    fn ignores_oct_enc_and_broken_keys() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"X1NjP7cAxtyL7FhuzPsJTSa09Cv72_p0koNOSBIlrn0","y":"rEsgkRRzVpvekU8ud1rXU6CpZ4nMc3NwEZUkATQci78"},
            {"kty":"EC","kid":"short","crv":"P-256","x":"AAAA","y":"AAAA"},
            {"kty":"RSA","kid":"nonum","n":5,"e":"AQAB"},
            {"kty":"XYZ","kid":"weird"},
            "not an object"
        ]}"#;
        assert!(parse_jwks(doc, "t").unwrap().is_empty());
        assert!(parse_jwks(b"[]", "t").is_err());
        assert!(parse_jwks(b"garbage", "t").is_err());
    }

    #[test]
    fn hmac_secret_trims_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\r\n").unwrap();
        let key = read_hmac_secret(&path).unwrap();
        assert_eq!(key.key.try_get_as_bytes().unwrap(), b"abc");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_hmac_secret(&path).is_err());
    }

    #[tokio::test]
    async fn load_all_reports_bad_files_and_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "nope").unwrap();
        let good = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/jwks.json");
        let config: Config = toml::from_str(&format!(
            "[[issuer]]\nissuer = \"a\"\njwks_file = {good:?}\n\
             [[issuer]]\nissuer = \"b\"\njwks_file = {:?}\n",
            bad.display().to_string()
        ))
        .unwrap();
        let keys = Keyring::without_store(ManualClock::new(1000));
        let metrics = Metrics::default();
        let err = keys.load_all(&config, &metrics).await.unwrap_err();
        assert!(
            err.contains("issuer b") && err.contains("bad.json"),
            "{err}"
        );
        assert!(!keys.ready(&config));
        std::fs::copy(good, &bad).unwrap();
        keys.refresh_all(&config, &metrics).await;
        assert!(keys.ready(&config));
        let status = keys.status();
        assert_eq!(status.len(), 2);
        assert_eq!(status[1].kids, ["rsa-1", "ec256-1", "ec384-1", "ed-1"]);
        assert_eq!(status[1].fetched_at, Some(1000));
        assert!(!status[1].hmac);
        // Kid-less lookups: one RSA key → found; EC ES256 → the only P-256 key.
        assert!(keys
            .key_for("a", None, Algorithm::RS256, &metrics)
            .await
            .is_ok());
        assert!(keys
            .key_for("a", None, Algorithm::ES256, &metrics)
            .await
            .is_ok());
        assert!(keys
            .key_for("a", None, Algorithm::HS256, &metrics)
            .await
            .is_err());
        assert!(keys
            .key_for("zzz", None, Algorithm::RS256, &metrics)
            .await
            .is_err());
    }

    mod refetch {
        use super::*;
        use crate::auth::testutil::{
            claims, config_with, sign_raw, token, JwksServer, NOW, RSA_OTHER_JWK, RSA_OTHER_PRIVATE,
        };
        use crate::auth::verify::verify_access_token;
        use serde_json::json;

        /// Every test step must finish within this (no unbounded waits).
        const BOUND: Duration = Duration::from_secs(20);

        async fn bounded<F: std::future::Future>(f: F) -> F::Output {
            tokio::time::timeout(BOUND, f)
                .await
                .expect("test step timed out")
        }

        fn set_b() -> String {
            let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
            let other: serde_json::Value = serde_json::from_str(RSA_OTHER_JWK).unwrap();
            set["keys"].as_array_mut().unwrap().push(other);
            set.to_string()
        }

        fn signed_by_other(kid: &str) -> String {
            let key =
                jsonwebtoken::EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap();
            sign_raw(
                &json!({"alg": "RS256", "kid": kid}).to_string(),
                &claims().to_string(),
                Algorithm::RS256,
                &key,
            )
        }

        struct Setup {
            server: JwksServer,
            config: Config,
            keys: Keyring,
            metrics: Metrics,
            clock: Arc<ManualClock>,
        }

        async fn setup() -> Setup {
            let server = JwksServer::start(JWKS).await;
            let config = config_with(&format!("jwks_url = {:?}", server.url), &["RS256"]);
            let clock = ManualClock::new(NOW);
            let keys = Keyring::without_store(clock.clone());
            let metrics = Metrics::default();
            bounded(keys.load_all(&config, &metrics)).await.unwrap();
            assert_eq!(server.hits(), 1);
            assert!(keys.ready(&config));
            Setup {
                server,
                config,
                keys,
                metrics,
                clock,
            }
        }

        impl Setup {
            async fn verify(&self, token: &str) -> Result<crate::auth::VerifiedToken, TokenError> {
                bounded(verify_access_token(
                    &self.config,
                    &self.keys,
                    &self.metrics,
                    NOW,
                    token,
                ))
                .await
            }
        }

        #[tokio::test]
        async fn new_kid_verifies_after_one_refetch() {
            let s = setup().await;
            s.server.set(&set_b());
            let v = s.verify(&signed_by_other("rsa-2")).await.unwrap();
            assert_eq!(v.kid.as_deref(), Some("rsa-2"));
            assert_eq!(s.server.hits(), 2);
            assert_eq!(s.metrics.jwks_fetch_ok.load(Ordering::Relaxed), 2);
            // Known now: no further fetch.
            s.verify(&signed_by_other("rsa-2")).await.unwrap();
            s.verify(&token(Algorithm::RS256, &claims())).await.unwrap();
            assert_eq!(s.server.hits(), 2);
        }

        #[tokio::test]
        async fn unknown_kid_flood_fetches_once_per_interval() {
            let s = setup().await;
            let tokens: Vec<String> = (0..50)
                .map(|i| signed_by_other(&format!("made-up-{i}")))
                .collect();
            let results = bounded(futures_util::future::join_all(
                tokens.iter().map(|t| s.verify(t)),
            ))
            .await;
            for r in results {
                let err = r.unwrap_err();
                assert!(matches!(err, TokenError::Signature(_)), "{err}");
            }
            assert_eq!(s.server.hits(), 2, "one refetch for the whole flood");
            // Still within the interval: refused at once, the IdP is not asked.
            s.clock.advance(UNKNOWN_KID_REFETCH_INTERVAL.as_secs() - 1);
            s.server.set(&set_b());
            assert!(s.verify(&signed_by_other("rsa-2")).await.is_err());
            assert_eq!(s.server.hits(), 2);
            // After the interval, one more refetch finds the new key.
            s.clock.advance(1);
            s.verify(&signed_by_other("rsa-2")).await.unwrap();
            assert_eq!(s.server.hits(), 3);
        }

        #[tokio::test]
        async fn garbage_or_empty_sets_keep_the_last_good_keys() {
            let s = setup().await;
            let good = token(Algorithm::RS256, &claims());
            for (i, bad) in [
                "garbage",
                "{\"keys\":[]}",
                "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
            ]
            .iter()
            .enumerate()
            {
                s.server.set(bad);
                bounded(s.keys.refresh_all(&s.config, &s.metrics)).await;
                assert_eq!(
                    s.metrics.jwks_fetch_error.load(Ordering::Relaxed),
                    i as u64 + 1
                );
                assert!(s.keys.ready(&s.config));
                s.verify(&good).await.unwrap();
            }
            // An unknown-kid refetch that gets garbage keeps them too.
            s.server.set("garbage");
            assert!(s.verify(&signed_by_other("rsa-2")).await.is_err());
            assert_eq!(s.server.hits(), 5);
            s.verify(&good).await.unwrap();
            // A good set again replaces them.
            s.server.set(&set_b());
            bounded(s.keys.refresh_all(&s.config, &s.metrics)).await;
            s.verify(&signed_by_other("rsa-2")).await.unwrap();
        }

        #[tokio::test]
        async fn unreachable_idp_at_start_is_not_an_error() {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let config = config_with(
                &format!("jwks_url = \"http://127.0.0.1:{port}/jwks.json\""),
                &["RS256"],
            );
            let keys = Keyring::without_store(ManualClock::new(NOW));
            let metrics = Metrics::default();
            bounded(keys.load_all(&config, &metrics)).await.unwrap();
            // The HMAC secret alone makes it ready; without it, not.
            assert!(keys.ready(&config));
            let mut no_hmac = config.clone();
            no_hmac.issuers[0].hmac_secret_file = None;
            let keys = Keyring::without_store(ManualClock::new(NOW));
            bounded(keys.load_all(&no_hmac, &metrics)).await.unwrap();
            assert!(!keys.ready(&no_hmac));
            assert_eq!(metrics.jwks_fetch_error.load(Ordering::Relaxed), 2);
            let err = bounded(verify_access_token(
                &no_hmac,
                &keys,
                &metrics,
                NOW,
                &token(Algorithm::RS256, &claims()),
            ))
            .await
            .unwrap_err();
            assert!(err.to_string().contains("signature"), "{err}");
        }
    }
}
