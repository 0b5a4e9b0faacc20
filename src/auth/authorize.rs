//! The token decision of one request, top to bottom (SPEC §4, §1):
//!
//! 1. the bearer token of the request ([`super::bearer`]: RFC 6750 §2.1);
//! 2. verification ([`super::verify`]), answered from the verified-token cache
//!    ([`super::cache`]) when the same token was verified under the same configuration and
//!    keys;
//! 3. the revocation lookup in the store, on every request (never cached), failing closed
//!    while the store cannot make writes durable;
//! 4. the route's scopes.
//!
//! [`Authorizer::authorize`] returns the verified token or a [`Refusal`] that says what may
//! be logged about it (never the token itself).

use std::sync::Arc;

use http::HeaderMap;

use crate::auth::bearer::{bearer_token, unverified_ids};
use crate::auth::cache::TokenCache;
use crate::auth::{verify_access_token, Keyring, TokenError, VerifiedToken};
use crate::clock::SharedClock;
use crate::config::{Config, RouteConfig};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::store::{Kind, RevocationStore, StoreError};

/// A refused request: the error answered, and what is logged about the token, if any.
#[derive(Debug)]
pub struct Refusal {
    /// What the client is answered.
    pub error: GatewayError,
    /// The `request rejected` log line's fields; `None` for refusals not about a token.
    pub log: Option<RejectLog>,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Self {
        Refusal { error, log: None }
    }
}

/// What is logged about a refused token: never the token itself.
#[derive(Debug)]
pub struct RejectLog {
    /// The refusal's description.
    pub reason: String,
    /// The token's `kid` (unverified when verification failed).
    pub kid: Option<String>,
    /// The token's `jti` (unverified when verification failed).
    pub jti: Option<String>,
}

/// The configuration a decision is made under: one snapshot per request, so a reload in
/// the middle cannot route under one configuration and verify under another.
#[derive(Debug, Clone, Copy)]
pub struct Under<'a> {
    /// The configuration in force when the request arrived.
    pub config: &'a Config,
    /// Its generation (bumped by every reload), for the verified-token cache.
    pub generation: u64,
}

/// Everything the token decision reads: keys, the verified-token cache, the store.
pub struct Authorizer {
    keys: Arc<Keyring>,
    cache: TokenCache,
    store: RevocationStore,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// The decision over these parts; `cache_capacity` is `auth.verified_token_cache`.
    pub fn new(
        keys: Arc<Keyring>,
        store: RevocationStore,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        cache_capacity: usize,
    ) -> Authorizer {
        Authorizer {
            keys,
            cache: TokenCache::new(cache_capacity),
            store,
            metrics,
            clock,
        }
    }

    /// The verified-token cache (its size is a gauge on `/metrics`).
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Steps 1–4 for a request to `route` with `headers`.
    pub async fn authorize(
        &self,
        under: Under<'_>,
        headers: &HeaderMap,
        route: &RouteConfig,
    ) -> Result<Arc<VerifiedToken>, Refusal> {
        let token = bearer_token(headers)?;
        let verified = self.verify(under, token).await.map_err(|e| {
            let (kid, jti) = unverified_ids(token);
            Refusal {
                error: GatewayError::InvalidToken(e.to_string()),
                log: Some(RejectLog {
                    reason: e.to_string(),
                    kid,
                    jti,
                }),
            }
        })?;
        // A store that cannot persist writes is not trusted (a revocation may be missing):
        // fail closed. One atomic load.
        if self.store.check_durable().is_err() {
            return Err(GatewayError::StoreUnavailable.into());
        }
        let logged = |error: GatewayError, reason: String| Refusal {
            error,
            log: Some(RejectLog {
                reason,
                kid: verified.kid.clone(),
                jti: Some(verified.jti.clone()),
            }),
        };
        match self.find_revocation(&verified) {
            Ok(None) => {}
            Ok(Some(kind)) => {
                self.metrics.revocation_hit(kind);
                let error = GatewayError::Revoked(kind);
                let reason = error.code_and_description().1;
                return Err(logged(error, reason));
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation store unreadable: refusing request");
                return Err(GatewayError::StoreUnavailable.into());
            }
        }
        if let Some(missing) = route
            .scopes
            .iter()
            .find(|s| !verified.scopes.iter().any(|g| g == *s))
        {
            let reason = format!("insufficient scope: {missing} required");
            return Err(logged(
                GatewayError::InsufficientScope(reason.clone()),
                reason,
            ));
        }
        Ok(verified)
    }

    /// Verifies an access token against every rule of SPEC §4 except the revocation check.
    /// A token verified before under the same configuration and keys, and still unexpired,
    /// is answered from the verified-token cache (compared in full, never by a digest).
    pub async fn verify(
        &self,
        under: Under<'_>,
        token: &str,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let now = self.clock.now();
        let generation = (under.generation, self.keys.generation());
        let leeway = under.config.auth.leeway.as_secs();
        if let Some(hit) = self.cache.get(token, generation, now, leeway) {
            return Ok(hit);
        }
        let verified = Arc::new(
            verify_access_token(under.config, &self.keys, &self.metrics, now, token).await?,
        );
        self.cache.insert(token, verified.clone(), generation);
        Ok(verified)
    }

    /// Which revocation (if any) matches a verified token (SPEC §1). A token without `jti`
    /// is looked up by its signing-input digest and then by the whole-token digest older
    /// releases stored, so their records keep matching the same token until they expire.
    pub fn find_revocation(&self, token: &VerifiedToken) -> Result<Option<Kind>, StoreError> {
        let found = self.store.find_match(
            &token.issuer,
            &token.jti,
            token.sid.as_deref(),
            token.sub.as_deref(),
            token.iat,
        )?;
        match (&found, &token.legacy_jti) {
            (None, Some(legacy)) => {
                self.store
                    .find_match(&token.issuer, legacy, None, None, token.iat)
            }
            _ => Ok(found),
        }
    }
}
