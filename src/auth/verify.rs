//! Access-token verification (SPEC §4).
//!
//! [`verify_access_token`] applies every acceptance rule of SPEC §4 except the revocation
//! check (the proxy does that, with the [`VerifiedToken`] this returns). Nothing in the
//! claims is trusted before the signature checks out, except `iss` (to pick the issuer and
//! its keys) and the header (to pick the algorithm and key). Order of the checks:
//!
//! 1. size ([`MAX_TOKEN_BYTES`]);
//! 2. compact JWS: three base64url parts (no padding), JSON objects, no duplicate members;
//! 3. header: `alg` a string, `kid`/`typ` strings if present, no `crit`; `jku`, `x5u`,
//!    `jwk`, `x5c` ignored (never fetched or used);
//! 4. `iss` names a configured issuer;
//! 5. `alg` is not `none` and is in the issuer's `algorithms` (case-sensitive);
//! 6. signature, with the issuer's key for (`kid`, `alg`) from the [`Keyring`];
//! 7. `typ` is not `logout+jwt`/`secevent+jwt`, equals `require_typ` when set; no `events`;
//! 8. `exp`, `iat`, `nbf` with `auth.leeway`; `exp - iat <= max_token_lifetime`;
//! 9. `aud` contains one of the issuer's `audiences`.
//!
//! The token is base64-decoded and parsed once; claims are read into borrowed slices of
//! the decoded payload and only the output fields are allocated.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::jws::{self, AlgorithmProblem, Compact, JwsError};
use crate::auth::Keyring;
use crate::config::{Config, IssuerConfig};
use crate::metrics::Metrics;

// The one bound on revoked values is the store's `MAX_VALUE_BYTES` (the admin API and
// imports refuse longer values with it). A token within `MAX_TOKEN_BYTES` decodes to at
// most 3/4 of that, so every `jti`, `sid` and `sub` a verified (or logout) token can carry
// fits it: whatever passes here can be revoked, and its revocation matches.
const _: () = assert!(crate::auth::MAX_TOKEN_BYTES / 4 * 3 <= crate::store::MAX_VALUE_BYTES);

/// The claims of a token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `iss`.
    pub issuer: String,
    /// `sub`, if present.
    pub sub: Option<String>,
    /// The issuer's session claim, if present.
    pub sid: Option<String>,
    /// `jti`, or, when the token has none, `sha256:<digest>` of its JWS signing input
    /// (`header.payload`, SPEC §1): the signature is left out because ECDSA signatures are
    /// malleable, so a digest over it would let anyone mint an unrevoked twin.
    pub jti: String,
    /// For a token without `jti` only: the digest of the whole compact token, the
    /// identifier releases before the signing-input digest wrote. Revocations stored under
    /// it keep matching this very token until they expire; `None` when the token has a
    /// `jti`.
    pub legacy_jti: Option<String>,
    /// `iat`.
    pub iat: u64,
    /// `exp`.
    pub exp: u64,
    /// Granted scopes (`scope` space-separated, or `scp` string/array).
    pub scopes: Vec<String>,
    /// `kid` header, for logs.
    pub kid: Option<String>,
    /// The identity headers' values, built once here so a token answered from the
    /// verified-token cache costs no copy per request ([`IdentityValues::of`]).
    pub identity: IdentityValues,
}

/// `X-Auth-Iss`, `X-Auth-Sub`, `X-Auth-Sid`, `X-Auth-Jti` of a verified token (SPEC §4,
/// `auth.identity_headers`) as header values; `None` for an absent claim or one that is not
/// a valid header value (such a header is not set).
#[derive(Debug, Clone, Default)]
pub struct IdentityValues {
    /// `iss`.
    pub iss: Option<http::HeaderValue>,
    /// `sub`.
    pub sub: Option<http::HeaderValue>,
    /// `sid`.
    pub sid: Option<http::HeaderValue>,
    /// `jti` (or the digest that stands for it).
    pub jti: Option<http::HeaderValue>,
}

impl IdentityValues {
    /// The values of these claims.
    pub fn of(iss: &str, sub: Option<&str>, sid: Option<&str>, jti: &str) -> IdentityValues {
        let value = |v: &str| http::HeaderValue::from_str(v).ok();
        IdentityValues {
            iss: value(iss),
            sub: sub.and_then(value),
            sid: sid.and_then(value),
            jti: value(jti),
        }
    }
}

/// Why a token was refused. `Display` is the RFC 6750 `error_description`: each message
/// contains the word SPEC §4 names for its cause (`malformed`, `issuer`, `algorithm`,
/// `signature`, `expired`, `audience`, `lifetime`; `revoked` is the proxy's [`crate::error::GatewayError::Revoked`]) and never echoes token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS with JSON header and claims, or a required claim is
    /// missing or of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `iss` missing, not a string, or not a configured issuer.
    #[error("unknown issuer")]
    Issuer,
    /// `alg` is `none` or not allowed for this issuer.
    #[error("algorithm not allowed: {0}")]
    Algorithm(String),
    /// Bad signature, or no (matching) key.
    #[error("invalid signature: {0}")]
    Signature(String),
    /// `exp` passed (with leeway).
    #[error("token expired")]
    Expired,
    /// `aud` names none of the issuer's audiences.
    #[error("audience not accepted")]
    Audience,
    /// `exp - iat` exceeds `max_token_lifetime`.
    #[error("token lifetime exceeds max_token_lifetime")]
    Lifetime,
    /// Claims that are well-formed JSON but unacceptable in an access token: `typ`,
    /// `events`, `iat` or `nbf` in the future.
    #[error("malformed claims: {0}")]
    Claims(String),
}

impl TokenError {
    /// The description without the cause word's prefix (for a caller that words it anew).
    pub(crate) fn detail(&self) -> String {
        match self {
            TokenError::Malformed(d)
            | TokenError::Algorithm(d)
            | TokenError::Signature(d)
            | TokenError::Claims(d) => d.clone(),
            other => other.to_string(),
        }
    }
}

impl From<JwsError> for TokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Malformed(d) => TokenError::Malformed(d.to_string()),
            JwsError::Algorithm(p) => TokenError::Algorithm(
                match p {
                    AlgorithmProblem::Unsigned => "unsigned tokens (none) are refused",
                    AlgorithmProblem::NotAllowed => "not allowed for this issuer",
                    AlgorithmProblem::Unsupported => "unsupported algorithm",
                }
                .to_string(),
            ),
            JwsError::Signature(d) => TokenError::Signature(d),
        }
    }
}

fn malformed(why: &str) -> TokenError {
    TokenError::Malformed(why.to_string())
}

/// Checks `token` against SPEC §4 (all but the revocation check) at time `now` (seconds
/// since the epoch). `metrics` counts the JWKS fetches an unknown `kid` may trigger.
pub async fn verify_access_token(
    config: &Config,
    keys: &Keyring,
    metrics: &Metrics,
    now: u64,
    token: &str,
) -> Result<VerifiedToken, TokenError> {
    // 1–2. Size; compact JWS; header and claims as strict JSON.
    let jws = Compact::decode(token)?;
    let header: Header<'_> = parse_object(&jws.header_json, HeaderSeed, "header")?;
    let claims: Claims<'_> = parse_object(&jws.payload_json, ClaimsSeed { config }, "claims")?;

    // 3. Header.
    if header.crit {
        return Err(malformed("unsupported crit header"));
    }
    let alg_name = match &header.alg {
        Some(Loose::Str(s)) => s.as_ref(),
        Some(_) => return Err(malformed("alg must be a string")),
        None => return Err(malformed("missing alg")),
    };
    let kid = optional_str(&header.kid, "kid must be a string")?;
    let typ = optional_str(&header.typ, "typ must be a string")?;

    // 4. Issuer.
    let issuer = match &claims.iss {
        Some(Loose::Str(iss)) => config.issuer(iss).ok_or(TokenError::Issuer)?,
        _ => return Err(TokenError::Issuer),
    };

    // 5–6. Algorithm (the issuer's allow-list) and signature (the issuer's key).
    jws::verify_signature(
        keys,
        metrics,
        &issuer.issuer,
        &issuer.algorithms,
        alg_name,
        kid,
        &jws,
    )
    .await?;
    let signing_input = jws.signing_input();

    // 7. Token type.
    check_typ(issuer, typ)?;
    if claims.events {
        return Err(TokenError::Claims(
            "events claim: a security event token is not an access token".into(),
        ));
    }

    // 8. Times.
    let leeway = config.auth.leeway.as_secs();
    let exp = numeric_date(&claims.exp, "exp")?.ok_or_else(|| malformed("missing exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let iat = numeric_date(&claims.iat, "iat")?.ok_or_else(|| malformed("missing iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::Claims("iat is in the future".into()));
    }
    if let Some(nbf) = numeric_date(&claims.nbf, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(TokenError::Claims("token not valid yet (nbf)".into()));
        }
    }
    if exp.saturating_sub(iat) > config.auth.max_token_lifetime.as_secs() {
        return Err(TokenError::Lifetime);
    }

    // 9. Audience.
    let audience_ok = match &claims.aud {
        Some(Loose::Str(aud)) => issuer.audiences.iter().any(|a| a == aud),
        Some(Loose::StrList(auds)) => auds
            .iter()
            .any(|aud| issuer.audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience);
    }

    // 10. Output.
    let sub = optional_str(&claims.sub, "sub must be a string")?.map(str::to_string);
    let sid = match claims
        .session
        .iter()
        .find(|(name, _)| *name == issuer.session_claim)
    {
        None => None,
        Some((_, Loose::Str(sid))) => Some(sid.to_string()),
        Some(_) => return Err(malformed("session claim must be a string")),
    };
    let (jti, legacy_jti) = match &claims.jti {
        None => (sha256_id(signing_input), Some(sha256_id(token.as_bytes()))),
        Some(Loose::Str(jti)) if !jti.is_empty() => (jti.to_string(), None),
        Some(_) => return Err(malformed("jti must be a non-empty string")),
    };
    let scopes = match (&claims.scope, &claims.scp) {
        (Some(Loose::Str(s)), _) | (None, Some(Loose::Str(s))) => split_scopes(s),
        (None, Some(Loose::StrList(list))) => list
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect(),
        (None, None) => Vec::new(),
        _ => return Err(malformed("scope must be a string, scp a string or array")),
    };
    let identity = IdentityValues::of(&issuer.issuer, sub.as_deref(), sid.as_deref(), &jti);
    Ok(VerifiedToken {
        identity,
        issuer: issuer.issuer.clone(),
        sub,
        sid,
        jti,
        legacy_jti,
        iat,
        exp,
        scopes,
        kid: kid.map(str::to_string),
    })
}

/// The identifier of a token without `jti` (SPEC §1): `sha256:` + unpadded base64url of the
/// SHA-256 of its JWS signing input, the compact form up to the last `.` (`header.payload`).
/// Every signature over the same header and claims (an ECDSA `(r, n−s)` twin, another
/// base64url spelling of the signature) gives the same identifier.
pub fn token_id(token: &str) -> String {
    let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
    sha256_id(signing_input.as_bytes())
}

/// `sha256:` + unpadded base64url of the SHA-256 of `bytes`.
fn sha256_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut id = String::with_capacity(7 + 43);
    id.push_str("sha256:");
    URL_SAFE_NO_PAD.encode_string(digest, &mut id);
    id
}

/// `typ` with an `application/` prefix (any case) removed (RFC 7515 §4.1.9).
pub(crate) fn media_subtype(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &typ[PREFIX.len()..],
        _ => typ,
    }
}

fn check_typ(issuer: &IssuerConfig, typ: Option<&str>) -> Result<(), TokenError> {
    if let Some(typ) = typ {
        let t = media_subtype(typ);
        if t.eq_ignore_ascii_case("logout+jwt") || t.eq_ignore_ascii_case("secevent+jwt") {
            return Err(TokenError::Claims(
                "typ names a logout or security event token, not an access token".into(),
            ));
        }
    }
    if !issuer.require_typ.is_empty() {
        let wanted = media_subtype(&issuer.require_typ);
        if !typ.is_some_and(|t| media_subtype(t).eq_ignore_ascii_case(wanted)) {
            return Err(TokenError::Claims(format!(
                "typ must be {}",
                issuer.require_typ
            )));
        }
    }
    Ok(())
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn optional_str<'a>(
    value: &'a Option<Loose<'_>>,
    why: &str,
) -> Result<Option<&'a str>, TokenError> {
    match value {
        None => Ok(None),
        Some(Loose::Str(s)) => Ok(Some(s.as_ref())),
        Some(_) => Err(malformed(why)),
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative integer or float, floored.
fn numeric_date(value: &Option<Loose<'_>>, name: &str) -> Result<Option<u64>, TokenError> {
    match value {
        None => Ok(None),
        Some(Loose::Num(Some(n))) => Ok(Some(*n)),
        Some(_) => Err(TokenError::Malformed(format!(
            "{name} must be a non-negative NumericDate"
        ))),
    }
}

/// Parses a whole JSON text (nothing after it) with `seed`.
fn parse_object<'de, S: DeserializeSeed<'de>>(
    json: &'de [u8],
    seed: S,
    what: &str,
) -> Result<S::Value, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            if e.to_string().starts_with(DUPLICATE) {
                TokenError::Malformed(format!("duplicate member name in {what}"))
            } else {
                TokenError::Malformed(format!("{what} is not a JSON object"))
            }
        })?;
    Ok(value)
}

const DUPLICATE: &str = "duplicate member name";

/// A JSON value reduced to the shapes header parameters and claims can take; strings
/// borrow from the decoded JSON when they have no escapes.
#[derive(Debug, Clone)]
enum Loose<'a> {
    Str(Cow<'a, str>),
    /// A number: `Some(floor)` when a non-negative NumericDate, else `None`.
    Num(Option<u64>),
    /// An array of strings only.
    StrList(Vec<Cow<'a, str>>),
    /// Anything else (null, bool, object, mixed array).
    Other,
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::Num(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Num(u64::try_from(v).ok()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `as` saturates: absurdly large dates become u64::MAX.
        Ok(Loose::Num(
            (v.is_finite() && v >= 0.0).then(|| v.floor() as u64),
        ))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        let mut only_strings = true;
        while let Some(item) = seq.next_element::<Loose<'de>>()? {
            match item {
                Loose::Str(s) if only_strings => list.push(s),
                _ => only_strings = false,
            }
        }
        Ok(if only_strings {
            Loose::StrList(list)
        } else {
            Loose::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// A member name, unescaped (so `"s\u0075b"` is `sub`).
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Member names seen in one object; a repeated name is an error (serde_json would keep
/// the last value silently, and two parsers disagreeing on a claim is an attack).
#[derive(Default)]
struct SeenNames<'a>(Vec<Cow<'a, str>>);

impl<'a> SeenNames<'a> {
    fn add<E: de::Error>(&mut self, name: Cow<'a, str>) -> Result<(), E> {
        // Objects are small (a token is at most MAX_TOKEN_BYTES); a linear scan over a
        // handful of names beats hashing, and sorting takes over for big objects.
        if self.0.len() < 32 && self.0.contains(&name) {
            return Err(E::custom(DUPLICATE));
        }
        self.0.push(name);
        Ok(())
    }
    fn finish<E: de::Error>(mut self) -> Result<(), E> {
        if self.0.len() > 32 {
            self.0.sort_unstable();
            if self.0.windows(2).any(|w| w[0] == w[1]) {
                return Err(E::custom(DUPLICATE));
            }
        }
        Ok(())
    }
}

/// The JOSE header parameters we act on.
#[derive(Default)]
struct Header<'a> {
    alg: Option<Loose<'a>>,
    kid: Option<Loose<'a>>,
    typ: Option<Loose<'a>>,
    /// `crit` present: we understand no extensions, so the token is refused.
    crit: bool,
}

struct HeaderSeed;

impl<'de> DeserializeSeed<'de> for HeaderSeed {
    type Value = Header<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed {
    type Value = Header<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = Header::default();
        let mut seen = SeenNames::default();
        while let Some(Name(name)) = map.next_key()? {
            match name.as_ref() {
                "alg" => header.alg = Some(map.next_value()?),
                "kid" => header.kid = Some(map.next_value()?),
                "typ" => header.typ = Some(map.next_value()?),
                "crit" => {
                    header.crit = true;
                    map.next_value::<IgnoredAny>()?;
                }
                // jku, x5u, jwk, x5c and the rest: ignored, never fetched or used.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.add(name)?;
        }
        seen.finish()?;
        Ok(header)
    }
}

/// The claims we act on, read in one pass.
#[derive(Default)]
struct Claims<'a> {
    iss: Option<Loose<'a>>,
    sub: Option<Loose<'a>>,
    jti: Option<Loose<'a>>,
    aud: Option<Loose<'a>>,
    exp: Option<Loose<'a>>,
    iat: Option<Loose<'a>>,
    nbf: Option<Loose<'a>>,
    scope: Option<Loose<'a>>,
    scp: Option<Loose<'a>>,
    events: bool,
    /// Members named like some configured issuer's `session_claim` (the issuer is not
    /// known until `iss` is read, and members come in any order).
    session: Vec<(Cow<'a, str>, Loose<'a>)>,
}

struct ClaimsSeed<'c> {
    config: &'c Config,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut claims = Claims::default();
        let mut seen = SeenNames::default();
        while let Some(Name(name)) = map.next_key()? {
            let is_session = self
                .config
                .issuers
                .iter()
                .any(|i| i.session_claim == name.as_ref());
            let field = match name.as_ref() {
                "iss" => Some(&mut claims.iss),
                "sub" => Some(&mut claims.sub),
                "jti" => Some(&mut claims.jti),
                "aud" => Some(&mut claims.aud),
                "exp" => Some(&mut claims.exp),
                "iat" => Some(&mut claims.iat),
                "nbf" => Some(&mut claims.nbf),
                "scope" => Some(&mut claims.scope),
                "scp" => Some(&mut claims.scp),
                _ => None,
            };
            match (field, is_session) {
                (Some(field), false) => *field = Some(map.next_value()?),
                (Some(field), true) => {
                    let value: Loose<'de> = map.next_value()?;
                    claims.session.push((name.clone(), value.clone()));
                    *field = Some(value);
                }
                (None, true) => {
                    let value = map.next_value()?;
                    claims.session.push((name.clone(), value));
                }
                (None, false) => {
                    if name == "events" {
                        claims.events = true;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.add(name)?;
        }
        seen.finish()?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;

/// Property tests; their runner and JSON generators serve the other parsers' too.
#[cfg(test)]
pub(crate) mod proptests;
