//! Every acceptance rule of SPEC §4 for access tokens, over real HTTP: a real gateway on
//! 127.0.0.1:0 in front of the echo upstream, a temporary sled store, the keys of
//! `tests/keys/`. Each test function starts one gateway and runs many cases against it.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// Issuer that requires `typ: at+jwt` (RFC 9068).
const TYPED_ISS: &str = "https://typed.test/";
/// Issuer that allows RS256 only.
const RS_ONLY_ISS: &str = "https://rs-only.test/";

/// Two more issuers besides the harness's one (same keys).
fn extra_issuers() -> String {
    let jwks = key_path("jwks.json");
    format!(
        r#"
[[issuer]]
issuer = "{TYPED_ISS}"
audiences = ["{AUD}"]
jwks_file = "{jwks}"
algorithms = ["RS256"]
require_typ = "at+jwt"

[[issuer]]
issuer = "{RS_ONLY_ISS}"
audiences = ["{AUD}"]
jwks_file = "{jwks}"
algorithms = ["RS256"]
"#
    )
}

/// A gateway in front of the echo upstream, with the extra issuers.
async fn gateway() -> (Gateway, tempfile::TempDir) {
    let echo = start_echo().await;
    let (dir, store) = temp_store();
    let gw = Gateway::start(&config_text(echo, &store, &extra_issuers())).await;
    (gw, dir)
}

/// GET /api/x with `Authorization: Bearer <token>`.
async fn call(gw: &Gateway, token: &str) -> reqwest::Response {
    get_with(&gw.url("/api/x"), token).await
}

/// Asserts the echo upstream answered 200 ([`assert_passes_as`]); returns the headers it
/// saw.
async fn passed_headers(resp: reqwest::Response, case: &str) -> Value {
    let answer = status_json(resp).await;
    assert_passes_as(&answer, case);
    answer.1["headers"].clone()
}

/// Default claims as a mutable object.
fn base() -> serde_json::Map<String, Value> {
    claims("user-1", "sess-1", "jti-1")
        .as_object()
        .unwrap()
        .clone()
}

fn with(changes: &[(&str, Value)]) -> Value {
    let mut c = base();
    for (k, v) in changes {
        c.insert((*k).to_string(), v.clone());
    }
    Value::Object(c)
}

fn without(name: &str) -> Value {
    let mut c = base();
    c.remove(name);
    Value::Object(c)
}

#[tokio::test]
async fn a_valid_token_of_every_algorithm_passes_with_identity_headers() {
    let (gw, _dir) = gateway().await;
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        let jti = format!("jti-{alg}");
        let t = sign_with(alg, Some(kid_for(alg)), None, &claims("alice", "s-9", &jti));
        let headers = passed_headers(call(&gw, &t).await, alg).await;
        assert_eq!(headers["x-auth-iss"], ISS, "{alg}");
        assert_eq!(headers["x-auth-sub"], "alice", "{alg}");
        assert_eq!(headers["x-auth-sid"], "s-9", "{alg}");
        assert_eq!(headers["x-auth-jti"], jti.as_str(), "{alg}");
    }
    // No kid: the only key of the type is used (SPEC §4).
    let t = sign_with("ES256", None, None, &claims("alice", "s-9", "no-kid"));
    passed_headers(call(&gw, &t).await, "ES256 without kid").await;
    gw.stop().await;
}

#[tokio::test]
async fn unsigned_confused_and_disallowed_algorithms_are_refused() {
    let (gw, _dir) = gateway().await;
    let c = claims("user-1", "sess-1", "jti-1").to_string();

    for alg in ["none", "None"] {
        let t = raw_jws(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &c, b"");
        assert!(t.ends_with('.'), "empty signature part");
        assert_invalid_token(call(&gw, &t).await, "algorithm", alg).await;
    }

    // HS256 keyed with the RSA public key (algorithm confusion): HS256 is not allowed.
    let pem = std::fs::read(key_path("rsa_public.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_secret(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let t = jsonwebtoken::encode(&header, &claims("user-1", "sess-1", "jti-1"), &key).unwrap();
    assert_invalid_token(call(&gw, &t).await, "algorithm", "HS256 confusion").await;

    // A valid ES256 signature, but this issuer allows RS256 only.
    let t = sign_with(
        "ES256",
        Some("ec256-1"),
        None,
        &with(&[("iss", json!(RS_ONLY_ISS))]),
    );
    assert_invalid_token(
        call(&gw, &t).await,
        "algorithm",
        "ES256 for RS256-only issuer",
    )
    .await;
    // The same issuer accepts RS256.
    let t = rs256(&with(&[("iss", json!(RS_ONLY_ISS))]));
    passed_headers(call(&gw, &t).await, "RS256 for RS256-only issuer").await;

    // The allow-list is case-sensitive.
    let t = raw_jws(r#"{"alg":"rs256","kid":"rsa-1"}"#, &c, b"sig");
    assert_invalid_token(call(&gw, &t).await, "algorithm", "lower-case alg").await;
    gw.stop().await;
}

#[tokio::test]
async fn bad_signatures_and_unknown_keys_are_refused() {
    let (gw, _dir) = gateway().await;
    let good = rs256(&claims("user-1", "sess-1", "jti-1"));

    let forged = sign_forged(&claims("user-1", "sess-1", "jti-1"));
    assert_invalid_token(call(&gw, &forged).await, "signature", "forged, known kid").await;

    // Payload edited after signing: sub changed, signature kept.
    let parts: Vec<&str> = good.split('.').collect();
    let edited_payload =
        URL_SAFE_NO_PAD.encode(claims("admin", "sess-1", "jti-1").to_string().as_bytes());
    let edited = format!("{}.{}.{}", parts[0], edited_payload, parts[2]);
    assert_invalid_token(call(&gw, &edited).await, "signature", "edited payload").await;

    // Signature of another token.
    let other = rs256(&claims("user-2", "sess-2", "jti-2"));
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    assert_invalid_token(call(&gw, &swapped).await, "signature", "swapped signature").await;

    let unknown = sign_with(
        "RS256",
        Some("no-such-kid"),
        None,
        &claims("user-1", "sess-1", "j"),
    );
    assert_invalid_token(call(&gw, &unknown).await, "signature", "unknown kid").await;

    // jku/x5u/jwk headers are ignored: an attacker-supplied key does not help.
    let header = r#"{"alg":"RS256","kid":"no-such-kid","jku":"http://127.0.0.1:1/jwks.json"}"#;
    let forged_jku = sign_raw_with("RS256", header, &claims("u", "s", "j").to_string());
    assert_invalid_token(call(&gw, &forged_jku).await, "signature", "jku header").await;

    passed_headers(call(&gw, &good).await, "the original").await;
    gw.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let (gw, _dir) = gateway().await;
    let t = rs256(&with(&[("iss", json!("https://evil.test/"))]));
    assert_invalid_token(call(&gw, &t).await, "issuer", "unknown iss").await;
    let t = rs256(&without("iss"));
    assert_invalid_token(call(&gw, &t).await, "issuer", "no iss").await;
    // Issuer comparison is exact.
    let t = rs256(&with(&[("iss", json!("https://idp.test"))]));
    assert_invalid_token(call(&gw, &t).await, "issuer", "iss without slash").await;

    let t = rs256(&with(&[("aud", json!("api://other"))]));
    assert_invalid_token(call(&gw, &t).await, "audience", "aud string").await;
    let t = rs256(&with(&[("aud", json!(["api://other", "api://third"]))]));
    assert_invalid_token(call(&gw, &t).await, "audience", "aud array").await;
    let t = rs256(&without("aud"));
    assert_invalid_token(call(&gw, &t).await, "audience", "no aud").await;

    let t = rs256(&with(&[("aud", json!(["api://other", AUD]))]));
    passed_headers(call(&gw, &t).await, "aud array with the right one").await;
    let t = rs256(&with(&[("aud", json!("api://two"))]));
    passed_headers(call(&gw, &t).await, "second configured audience").await;
    gw.stop().await;
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let (gw, _dir) = gateway().await;
    let n = now();

    let t = rs256(&with(&[("iat", json!(n - 900)), ("exp", json!(n - 120))]));
    assert_invalid_token(call(&gw, &t).await, "expired", "expired beyond leeway").await;
    let t = rs256(&with(&[("iat", json!(n - 900)), ("exp", json!(n - 30))]));
    passed_headers(call(&gw, &t).await, "expired within leeway").await;
    let t = rs256(&without("exp"));
    assert_invalid_token(call(&gw, &t).await, "malformed", "no exp").await;

    let t = rs256(&with(&[("nbf", json!(n + 300))]));
    assert_invalid_token(call(&gw, &t).await, "", "nbf beyond leeway").await;
    let t = rs256(&with(&[("nbf", json!(n + 30))]));
    passed_headers(call(&gw, &t).await, "nbf within leeway").await;
    let t = rs256(&with(&[("nbf", json!(n - 30))]));
    passed_headers(call(&gw, &t).await, "nbf passed").await;

    let t = rs256(&without("iat"));
    assert_invalid_token(call(&gw, &t).await, "malformed", "no iat").await;
    let t = rs256(&with(&[("iat", json!("yesterday"))]));
    assert_invalid_token(call(&gw, &t).await, "malformed", "iat not a number").await;
    let t = rs256(&with(&[("iat", json!(n + 300)), ("exp", json!(n + 900))]));
    assert_invalid_token(call(&gw, &t).await, "", "iat in the future").await;
    let t = rs256(&with(&[("iat", json!(n + 30)), ("exp", json!(n + 900))]));
    passed_headers(call(&gw, &t).await, "iat within leeway").await;

    // max_token_lifetime is 1h in the harness.
    let t = rs256(&with(&[("iat", json!(n)), ("exp", json!(n + 3601))]));
    assert_invalid_token(call(&gw, &t).await, "lifetime", "lifetime over 1h").await;
    let t = rs256(&with(&[("iat", json!(n - 100)), ("exp", json!(n + 3500))]));
    passed_headers(call(&gw, &t).await, "lifetime exactly 1h").await;
    gw.stop().await;
}

#[tokio::test]
async fn logout_and_event_tokens_and_require_typ() {
    let (gw, _dir) = gateway().await;
    let c = claims("user-1", "sess-1", "jti-1");
    for typ in [
        "logout+jwt",
        "application/logout+jwt",
        "Logout+JWT",
        "secevent+jwt",
        "application/secevent+jwt",
    ] {
        let t = sign_with("RS256", Some("rsa-1"), Some(typ), &c);
        assert_invalid_token(call(&gw, &t).await, "", typ).await;
    }
    let events = with(&[(
        "events",
        json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
    )]);
    assert_invalid_token(call(&gw, &rs256(&events)).await, "", "events claim").await;
    // Other typ values are fine for an issuer without require_typ.
    for typ in ["JWT", "at+jwt"] {
        let t = sign_with("RS256", Some("rsa-1"), Some(typ), &c);
        passed_headers(call(&gw, &t).await, typ).await;
    }

    let typed = with(&[("iss", json!(TYPED_ISS))]);
    let t = sign_with("RS256", Some("rsa-1"), None, &typed);
    assert_invalid_token(call(&gw, &t).await, "", "require_typ, no typ").await;
    let t = sign_with("RS256", Some("rsa-1"), Some("JWT"), &typed);
    assert_invalid_token(call(&gw, &t).await, "", "require_typ, typ JWT").await;
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let t = sign_with("RS256", Some("rsa-1"), Some(typ), &typed);
        let headers = passed_headers(call(&gw, &t).await, typ).await;
        assert_eq!(headers["x-auth-iss"], TYPED_ISS);
    }
    gw.stop().await;
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let (gw, _dir) = gateway().await;
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let n = now();
    let claims_json = |extra: &str| {
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"user-1","jti":"j-dup","iat":{n},"exp":{}{extra}}}"#,
            n + 600
        )
    };
    // Sanity: the raw signer produces a token that passes.
    let ok = sign_raw_with("RS256", header, &claims_json(""));
    passed_headers(call(&gw, &ok).await, "raw-signed control").await;

    // Duplicate claim names, really signed.
    let dup = sign_raw_with("RS256", header, &claims_json(r#","sub":"admin""#));
    assert_invalid_token(call(&gw, &dup).await, "malformed", "duplicate sub").await;
    let dup_escaped = sign_raw_with("RS256", header, &claims_json(r#","s\u0075b":"admin""#));
    assert_invalid_token(call(&gw, &dup_escaped).await, "malformed", "escaped dup").await;
    let dup_header = sign_raw_with(
        "RS256",
        r#"{"alg":"RS256","kid":"rsa-1","alg":"RS256"}"#,
        &claims_json(""),
    );
    assert_invalid_token(call(&gw, &dup_header).await, "malformed", "dup header").await;

    let parts: Vec<&str> = ok.split('.').collect();
    let cases = [
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{ok}.{}", parts[2])),
        ("one part", parts[1].to_string()),
        (
            "standard-base64 characters in the payload",
            format!("{}.{}+/.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "undecodable base64 (length 1 mod 4)",
            format!("{}.{}A.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "JSON array payload",
            sign_raw_with("RS256", header, r#"["iss","sub"]"#),
        ),
        (
            "payload not JSON",
            sign_raw_with("RS256", header, "not json at all"),
        ),
        (
            "header not JSON",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("RS256"),
                parts[1],
                parts[2]
            ),
        ),
        (
            "trailing data after payload",
            sign_raw_with("RS256", header, &format!("{} {{}}", claims_json(""))),
        ),
    ];
    for (case, t) in cases {
        assert_invalid_token(call(&gw, &t).await, "malformed", case).await;
    }
    // Base64 padding is not base64url-without-padding. (Trailing "=" is valid b64token, so
    // this reaches the token parser; a "=" mid-token is a 400 like any non-b64token text.)
    let padded = format!("{ok}=");
    assert_invalid_token(call(&gw, &padded).await, "malformed", "padded").await;
    let mid = format!("{}.{}=.{}", parts[0], parts[1], parts[2]);
    assert_eq!(call(&gw, &mid).await.status(), 400, "padding mid-token");

    // An unknown crit header is refused, even with a valid signature.
    let crit = sign_raw_with(
        "RS256",
        r#"{"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}"#,
        &claims_json(""),
    );
    assert_invalid_token(call(&gw, &crit).await, "", "crit").await;
    gw.stop().await;
}

#[tokio::test]
async fn a_token_without_jti_is_identified_by_its_digest() {
    let (gw, _dir) = gateway().await;
    let t = rs256(&without("jti"));
    let headers = passed_headers(call(&gw, &t).await, "no jti").await;
    // SPEC §1: the digest of the JWS signing input `header.payload`.
    let expected = digest_id(&t);
    assert_eq!(headers["x-auth-jti"], expected.as_str());
    assert_eq!(expected.len(), 7 + 43, "unpadded base64url of 32 bytes");
    gw.stop().await;
}

#[tokio::test]
async fn credentials_follow_rfc6750() {
    let (gw, _dir) = gateway().await;
    let url = gw.url("/api/x");
    let good = token("user-1", "sess-1", "jti-1");

    let assert_bare_challenge = |resp: reqwest::Response, case: &'static str| async move {
        let www = www_authenticate(&resp);
        let all: Vec<_> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(all.len(), 1, "{case}: one challenge");
        let (status, _) = status_json(resp).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(www, "Bearer realm=\"revgate\"", "{case}");
    };
    assert_bare_challenge(client().get(&url).send().await.unwrap(), "no header").await;
    let basic = client()
        .get(&url)
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_bare_challenge(basic, "Basic").await;
    let token_scheme = client()
        .get(&url)
        .header("Authorization", format!("Token {good}"))
        .send()
        .await
        .unwrap();
    assert_bare_challenge(token_scheme, "other scheme with a JWT").await;

    let bad_requests: Vec<(&str, Vec<String>)> = vec![
        ("empty token", vec!["Bearer ".to_string()]),
        ("bare scheme", vec!["Bearer".to_string()]),
        ("comma", vec!["Bearer a,b".to_string()]),
        ("inner space", vec![format!("Bearer {good} x")]),
        ("quote", vec!["Bearer \"abc\"".to_string()]),
        (
            "two Authorization headers",
            vec![format!("Bearer {good}"), format!("Bearer {good}")],
        ),
    ];
    for (case, values) in bad_requests {
        let mut req = client().get(&url);
        for v in &values {
            req = req.header("Authorization", v.as_str());
        }
        let resp = req.send().await.unwrap();
        let www = www_authenticate(&resp);
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert!(
            www.starts_with("Bearer realm=\"revgate\", error=\"invalid_request\""),
            "{case}: {www:?}"
        );
        assert_eq!(body["error"], "invalid_request", "{case}: {body}");
    }

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = client()
            .get(&url)
            .header("Authorization", format!("{scheme} {good}"))
            .send()
            .await
            .unwrap();
        passed_headers(resp, scheme).await;
    }
    gw.stop().await;
}
