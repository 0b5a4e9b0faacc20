//! The identity of a token without `jti` (SPEC §1): the digest of its JWS signing input
//! `header.payload`, so that a revoked token cannot be revived by another signature over
//! the same header and claims.
//!
//! ECDSA signatures are malleable: from a valid ES256 signature `(r, s)` anyone can compute
//! `(r, n − s)`, which verifies too, without any key. A digest over the whole compact token
//! gave that twin another identity, so it passed after the original was revoked. Ed25519
//! (RFC 8032 §5.1.7 requires `S < L`) and RSA (PKCS#1 v1.5 is deterministic; a PSS
//! signature cannot be re-derived without the key) give no such twin, which the tests
//! below check as well; whatever a signature variant is, it no longer changes the identity.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// Order of the P-256 group (SEC 2 §2.4.2), big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Order `L` of the Ed25519 base point (RFC 8032 §5.1), little-endian as in signatures.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// `a − b` for 256-bit big-endian numbers with `a ≥ b`.
fn sub_be(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "a must not be smaller than b");
    out
}

/// `a + b` for 256-bit little-endian numbers (no overflow for the values used here).
fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = a[i] as u16 + b[i] as u16 + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    assert_eq!(carry, 0);
    out
}

fn split(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input, URL_SAFE_NO_PAD.decode(sig).unwrap())
}

/// The `(r, n − s)` twin of an ES256 token: another valid signature, made without the key.
fn es256_twin(token: &str) -> String {
    let (input, sig) = split(token);
    assert_eq!(sig.len(), 64, "ES256 signatures are r ‖ s, 32 bytes each");
    let s_twin = sub_be(&P256_N, &sig[32..]);
    let mut twin = sig[..32].to_vec();
    twin.extend_from_slice(&s_twin);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(twin))
}

/// Default claims without `jti`.
fn jti_less_claims(sub: &str) -> Value {
    let mut c = claims(sub, &unique_id("sid"), "unused");
    c.as_object_mut().unwrap().remove("jti");
    c
}

fn es256_jti_less(sub: &str) -> String {
    sign_with("ES256", Some("ec256-1"), None, &jti_less_claims(sub))
}

/// The `X-Auth-Jti` the upstream received for `token` (the echo upstream reflects headers).
async fn upstream_jti(gw: &Gateway, token: &str) -> String {
    let answer = proxy_get(gw, token).await;
    assert_passes(&answer);
    answer.1["headers"]["x-auth-jti"]
        .as_str()
        .unwrap_or_else(|| panic!("no x-auth-jti upstream: {answer:?}"))
        .to_string()
}

async fn gateway() -> (Gateway, tempfile::TempDir) {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    (
        Gateway::start(&config_text(upstream, &store, "")).await,
        dir,
    )
}

#[tokio::test]
async fn es256_twin_of_a_token_revoked_at_the_revoke_endpoint_is_refused() {
    let (gw, _dir) = gateway().await;
    let token = es256_jti_less("alice");
    let twin = es256_twin(&token);
    assert_ne!(token, twin);
    // Both verify: the twin is a real second signature, and both have one identity.
    let id = upstream_jti(&gw, &token).await;
    assert_eq!(upstream_jti(&gw, &twin).await, id);
    let (input, _) = split(&token);
    assert_eq!(
        id,
        sha256_id(input.as_bytes()),
        "SPEC §1: digest of header.payload"
    );

    assert_eq!(post_revoke(&gw, &token).await.status(), 200);
    assert_revoked(&proxy_get(&gw, &token).await);
    // The twin was verified (and cached) before the revocation: still refused.
    assert_revoked(&proxy_get(&gw, &twin).await);
    let records = list_revocations(&gw).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["value"], id.as_str());
    gw.stop().await;
}

#[tokio::test]
async fn revoking_the_twin_by_token_refuses_the_original() {
    let (gw, _dir) = gateway().await;
    let token = es256_jti_less("bob");
    let twin = es256_twin(&token);
    assert_passes(&proxy_get(&gw, &token).await);
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations/token",
        &json!({"token": twin, "reason": "twin"}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    let (input, _) = split(&token);
    assert_eq!(record["value"], sha256_id(input.as_bytes()).as_str());
    assert_revoked(&proxy_get(&gw, &token).await);
    assert_revoked(&proxy_get(&gw, &twin).await);
    gw.stop().await;
}

#[tokio::test]
async fn a_twin_stays_refused_after_a_restart() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let config = config_text(upstream, &store, "");
    let token = es256_jti_less("carol");
    let twin = es256_twin(&token);
    let gw = Gateway::start(&config).await;
    assert_eq!(post_revoke(&gw, &token).await.status(), 200);
    gw.stop().await;
    let gw = Gateway::start(&config).await;
    assert_revoked(&proxy_get(&gw, &twin).await);
    assert_revoked(&proxy_get(&gw, &token).await);
    gw.stop().await;
    drop(dir);
}

#[tokio::test]
async fn records_under_the_older_whole_token_digest_keep_matching() {
    let (gw, _dir) = gateway().await;
    let token = sign_with("RS256", Some("rsa-1"), None, &jti_less_claims("dave"));
    assert_passes(&proxy_get(&gw, &token).await);
    // What the previous release stored for `POST /revoke` of this token.
    let legacy = sha256_id(token.as_bytes());
    let (status, body) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": legacy, "ttl": "1h"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_revoked(&proxy_get(&gw, &token).await);
    // A token with a jti is not looked up under any digest.
    let with_jti = token_with("dave", "s", &unique_id("jti"), |_| {});
    let (status, body) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": sha256_id(with_jti.as_bytes()), "ttl": "1h"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_passes(&proxy_get(&gw, &with_jti).await);
    gw.stop().await;
}

#[tokio::test]
async fn eddsa_signatures_have_no_twin() {
    let (gw, _dir) = gateway().await;
    let token = sign_with("EdDSA", Some("ed-1"), None, &jti_less_claims("erin"));
    assert_passes(&proxy_get(&gw, &token).await);
    // S + L is the same scalar mod L; RFC 8032 verification must refuse S >= L.
    let (input, sig) = split(&token);
    let s_twin = add_le(&sig[32..], &ED25519_L);
    let mut twin = sig[..32].to_vec();
    twin.extend_from_slice(&s_twin);
    let twin = format!("{input}.{}", URL_SAFE_NO_PAD.encode(twin));
    let answer = status_json(get_with(&gw.url("/api/x"), &twin).await).await;
    assert_eq!(answer.0, 401, "{answer:?}");
    assert!(
        answer.1["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{answer:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn another_spelling_of_the_signature_never_escapes_a_revocation() {
    let (gw, _dir) = gateway().await;
    for (alg, kid) in [("RS256", "rsa-1"), ("PS256", "rsa-1"), ("ES256", "ec256-1")] {
        let token = sign_with(alg, Some(kid), None, &jti_less_claims(&unique_id("frank")));
        assert_passes(&proxy_get(&gw, &token).await);
        assert_eq!(post_revoke(&gw, &token).await.status(), 200);
        // The unused low bits of the last base64url character of the signature: a decoder
        // that ignored them would accept another spelling of the same bytes.
        let (input, _) = split(&token);
        let sig_text = token.rsplit_once('.').unwrap().1;
        let last = sig_text.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.find(last).unwrap();
        let flipped = alphabet.as_bytes()[pos ^ 1] as char;
        let variant = format!("{input}.{}{flipped}", &sig_text[..sig_text.len() - 1]);
        let answer = status_json(get_with(&gw.url("/api/x"), &variant).await).await;
        assert_eq!(answer.0, 401, "{alg}: {answer:?}");
        assert_revoked(&proxy_get(&gw, &token).await);
    }
    gw.stop().await;
}
