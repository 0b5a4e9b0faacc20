//! Signing keys per issuer ([`Keyring`]): JWKS loaded from a file or URL, refreshed periodically and on an unknown
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

//!
//! Files: this one holds the [`Keyring`] (lookups, refreshes, readiness); [`jwk`] turns JWK
//! documents and HMAC secret files into [`VerifyingKey`]s; [`source`] reads a JWKS from its
//! URL or file and checks local key material for `check-config`.

mod jwk;
mod source;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::{Digest, Sha256};

use crate::auth::TokenError;
use crate::clock::SharedClock;
use crate::config::{Config, IssuerConfig, MIN_JWKS_REFRESH};
use crate::metrics::Metrics;
use crate::store::RevocationStore;

pub use jwk::VerifyingKey;
use jwk::{parse_jwks, read_hmac_secret, same_key};
pub use source::{check_local_keys, IssuerKeyError, KeyError, JWKS_FETCH_TIMEOUT, MAX_JWKS_BYTES};
use source::{read_jwks_file, JwksSource};

/// At most one unknown-`kid` refetch per issuer in this interval. Tokens with an unknown
/// `kid` arriving within it fail at once with a `signature` error and do not reach the IdP,
/// so a flood of made-up `kid`s costs the IdP at most one request per interval.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

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
    /// The keyring's generation counter, bumped when this slot's usable keys change.
    generation: Arc<AtomicU64>,
}

impl IssuerSlot {
    fn snapshot(&self) -> Arc<IssuerKeys> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Installs `keys`; bumps the generation only when the usable keys differ (another
    /// JWKS document, another HMAC secret), not when a refresh found the same set.
    fn replace(&self, keys: IssuerKeys) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let changed = state.digest != keys.digest
            || state.keys.len() != keys.keys.len()
            || !same_key(state.hmac.as_deref(), keys.hmac.as_deref());
        *state = Arc::new(keys);
        drop(state);
        if changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
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
    pub async fn load_all(&self, config: &Config, metrics: &Metrics) -> Result<(), KeyError> {
        let results = futures_util::future::join_all(
            config
                .issuers
                .iter()
                .map(|ic| self.sync_issuer(ic, metrics, true)),
        )
        .await;
        self.retain(config);
        let errors: Vec<IssuerKeyError> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(KeyError::Startup(errors))
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

    /// Background task: calls [`Keyring::refresh_all`] with the configuration `config`
    /// returns (asked each round, so reloads apply) every `auth.jwks_refresh` (at least
    /// [`MIN_JWKS_REFRESH`]), until `shutdown` flips to `true` or its sender is dropped.
    /// Call [`Keyring::load_all`] first; this waits one period before its first round.
    pub async fn run_refresher(
        keys: Arc<Keyring>,
        metrics: Arc<Metrics>,
        config: impl Fn() -> Arc<Config>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let period = config().auth.jwks_refresh.max(MIN_JWKS_REFRESH);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let config = config();
            tokio::select! {
                _ = keys.refresh_all(&config, &metrics) => {}
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
                        .map(|k| k.kid().unwrap_or_default().to_string())
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
        let before = map.len();
        map.retain(|iss, _| config.issuer(iss).is_some());
        if map.len() != before {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
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
    ) -> Result<(), IssuerKeyError> {
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
                    let err = IssuerKeyError {
                        issuer: ic.issuer.clone(),
                        problem: format!("hmac_secret_file {}: {e}", path.display()),
                    };
                    tracing::warn!(issuer = %ic.issuer, "{err}");
                    error = Some(err);
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
                error.get_or_insert(IssuerKeyError {
                    issuer: ic.issuer.clone(),
                    problem: e,
                });
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
            JwksSource::Url(url) => match source::fetch(&self.http, url).await {
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
                    metrics.jwks_fetched(issuer, true);
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
                    metrics.jwks_fetched(issuer, false);
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
    for key in keys.keys.iter().filter(|k| k.kid() == Some(kid)) {
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

#[cfg(test)]
mod tests;
