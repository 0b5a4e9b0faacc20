//! Tokens signed with the test keys ([`super::keys`]): access-token claims, logout-token
//! claims, malformed and forged tokens, and the digest id of a token without `jti`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::keys;
use super::keys::ISS;
use super::{now, unique_id};

/// Audience of the test tokens.
pub const AUD: &str = "api://one";
/// client_id logout tokens are addressed to.
pub const CLIENT_ID: &str = "client-1";

/// The kid of the test key used for `alg` (see tests/keys/jwks.json); `alg` has a JWK.
pub fn kid_for(alg: &str) -> &'static str {
    keys::kid_for(algorithm(alg)).expect("an algorithm with a JWK in tests/keys/jwks.json")
}

fn algorithm(alg: &str) -> Algorithm {
    alg.parse().expect("known alg")
}

/// Unpadded base64url of `bytes`.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with the test key for `alg` (RS*/PS*/ES*/EdDSA/HS*), header kid `kid`
/// (None: no kid) and header `typ` (None: none).
pub fn sign_with(alg: &str, kid: Option<&str>, typ: Option<&str>, claims: &Value) -> String {
    let algorithm = algorithm(alg);
    sign_header(algorithm, kid, typ, claims, &keys::encoding_key(algorithm))
}

/// Signs with the RSA key that is NOT in the JWKS, under a known kid (a forgery).
pub fn sign_forged(claims: &Value) -> String {
    sign_other_key("rsa-1", claims)
}

/// RS256 with the RSA key that is not in `jwks.json` (`rsa_other_private.pem`), header kid
/// `kid` and `typ: JWT`: a forgery under `rsa-1`, a rotated key under `rsa-2`.
pub fn sign_other_key(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(keys::RSA_OTHER_PRIVATE.as_bytes()).unwrap();
    sign_header(Algorithm::RS256, Some(kid), Some("JWT"), claims, &key)
}

fn sign_header(
    alg: Algorithm,
    kid: Option<&str>,
    typ: Option<&str>,
    claims: &Value,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    header.typ = typ.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// Signs `header.payload` (raw JSON texts, base64url-encoded here) with the test key for
/// `alg`, so malformed-but-signed tokens (duplicate claims, `crit`, …) can be built.
pub fn sign_raw_with(alg: &str, header: &str, payload: &str) -> String {
    let algorithm = algorithm(alg);
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &keys::encoding_key(algorithm), algorithm)
            .expect("sign");
    format!("{input}.{sig}")
}

/// A compact JWS from raw header/payload JSON and a raw signature (for malformed cases).
pub fn raw_jws(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header),
        b64url(payload),
        b64url(signature)
    )
}

/// Default access-token claims: valid for 10 minutes, issued now.
pub fn claims(sub: &str, sid: &str, jti: &str) -> Value {
    let n = now();
    json!({"iss": ISS, "aud": AUD, "sub": sub, "sid": sid, "jti": jti, "iat": n, "exp": n + 600, "scope": "read"})
}

/// An RS256 token with the default claims.
pub fn token(sub: &str, sid: &str, jti: &str) -> String {
    token_with(sub, sid, jti, |_| {})
}

/// Signs default RS256 claims modified by `f`.
pub fn token_with(sub: &str, sid: &str, jti: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut c = claims(sub, sid, jti);
    f(&mut c);
    rs256(&c)
}

/// Signs `claims` RS256 with the test key, kid `rsa-1`, no `typ`.
pub fn rs256(claims: &Value) -> String {
    sign_with("RS256", Some("rsa-1"), None, claims)
}

/// A token issued 5 s ago and valid for 15 minutes, so that a sid or sub revocation made
/// now (`issued_before` = now) covers it.
pub fn old_token(sub: &str, sid: &str, jti: &str) -> String {
    token_with(sub, sid, jti, |c| {
        let n = now();
        c["iat"] = json!(n - 5);
        c["exp"] = json!(n + 900);
    })
}

/// `sha256:` + unpadded base64url of the SHA-256 of `bytes` (SPEC §1 notation).
pub fn sha256_id(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", b64url(sha2::Sha256::digest(bytes)))
}

/// The identity of a token without `jti` (SPEC §1): [`sha256_id`] of its JWS signing input
/// `header.payload`.
pub fn digest_id(token: &str) -> String {
    sha256_id(&token.as_bytes()[..token.rfind('.').expect("a compact JWS")])
}

/// The `events` claim of a valid logout token (BCL §2.4).
pub fn bcl_events() -> Value {
    json!({"http://schemas.openid.net/event/backchannel-logout": {}})
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
