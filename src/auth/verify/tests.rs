//! Unit tests of [`verify_access_token`] against the keys of `tests/keys/`.

use super::*;
use crate::auth::testutil::*;
use crate::auth::MAX_TOKEN_BYTES;
use crate::clock::ManualClock;
use jsonwebtoken::Algorithm;
use jsonwebtoken::EncodingKey;
use serde_json::json;
use std::str::FromStr;

const ALL_ALGS: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
];

async fn keyring(config: &Config) -> Keyring {
    let keys = Keyring::without_store(ManualClock::new(NOW));
    keys.load_all(config, &Metrics::default()).await.unwrap();
    keys
}

async fn check(config: &Config, token: &str) -> Result<VerifiedToken, TokenError> {
    let keys = keyring(config).await;
    verify_access_token(config, &keys, &Metrics::default(), NOW, token).await
}

/// Asserts a refusal whose description contains `word`.
#[track_caller]
fn refused(result: Result<VerifiedToken, TokenError>, word: &str) -> TokenError {
    let err = result.expect_err("token should be refused");
    assert!(
        err.to_string().contains(word),
        "{err:?}: {err} lacks {word:?}"
    );
    err
}

fn rs256(claims: &serde_json::Value) -> String {
    token(Algorithm::RS256, claims)
}

#[tokio::test]
async fn every_algorithm_verifies() {
    let config = config(&ALL_ALGS);
    let keys = keyring(&config).await;
    for name in ALL_ALGS {
        let alg = Algorithm::from_str(name).unwrap();
        let t = token(alg, &claims());
        let v = verify_access_token(&config, &keys, &Metrics::default(), NOW, &t)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.issuer, ISS);
        assert_eq!(v.sub.as_deref(), Some("user-1"));
        assert_eq!(v.sid.as_deref(), Some("session-1"));
        assert_eq!(v.jti, "jti-1");
        assert_eq!((v.iat, v.exp), (NOW - 10, NOW + 600));
        assert_eq!(v.scopes, ["read", "write"]);
        assert_eq!(v.kid.as_deref(), kid_for(alg));
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let config = config(&["RS256"]);
    for alg in ["none", "NoNe"] {
        let t = format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        refused(check(&config, &t).await, "algorithm");
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let confused = EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap();
    let header = r#"{"alg":"HS256","kid":"rsa-1"}"#;
    let t = sign_raw(header, &claims().to_string(), Algorithm::HS256, &confused);
    // HS256 allowed and an HMAC secret configured: the RSA key is never an HMAC key.
    refused(check(&config(&["RS256", "HS256"]), &t).await, "signature");
    // HS256 allowed but no HMAC secret: no key at all.
    let mut no_secret = config(&["RS256", "HS256"]);
    no_secret.issuers[0].hmac_secret_file = None;
    refused(check(&no_secret, &t).await, "signature");
    // HS256 not allowed.
    refused(check(&config(&["RS256"]), &t).await, "algorithm");
}

#[tokio::test]
async fn forged_signature_with_known_kid_is_refused() {
    let other = EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap();
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let t = sign_raw(header, &claims().to_string(), Algorithm::RS256, &other);
    refused(check(&config(&["RS256"]), &t).await, "signature");
}

#[tokio::test]
async fn edited_payload_is_refused() {
    let config = config(&["RS256"]);
    let t = rs256(&claims());
    let mut edited = claims();
    edited["sub"] = "admin".into();
    let parts: Vec<&str> = t.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(edited.to_string().as_bytes()),
        parts[2]
    );
    refused(check(&config, &forged).await, "signature");
    // An empty signature too.
    refused(
        check(&config, &format!("{}.{}.", parts[0], parts[1])).await,
        "signature",
    );
}

#[tokio::test]
async fn unknown_issuer_is_refused() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["iss"] = "https://evil.test/".into();
    refused(check(&config, &rs256(&c)).await, "issuer");
    c["iss"] = json!(["https://idp.test/"]);
    refused(check(&config, &rs256(&c)).await, "issuer");
    c.as_object_mut().unwrap().remove("iss");
    refused(check(&config, &rs256(&c)).await, "issuer");
}

#[tokio::test]
async fn audience_must_match() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["aud"] = "api://other".into();
    refused(check(&config, &rs256(&c)).await, "audience");
    c["aud"] = json!(["api://other", "api://third"]);
    refused(check(&config, &rs256(&c)).await, "audience");
    c["aud"] = json!([]);
    refused(check(&config, &rs256(&c)).await, "audience");
    c.as_object_mut().unwrap().remove("aud");
    refused(check(&config, &rs256(&c)).await, "audience");
    c["aud"] = json!(["api://other", "api://two"]);
    check(&config, &rs256(&c)).await.unwrap();
}

#[tokio::test]
async fn time_checks_use_leeway() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["exp"] = (NOW - 60).into();
    refused(check(&config, &rs256(&c)).await, "expired");
    c["exp"] = (NOW - 59).into();
    check(&config, &rs256(&c)).await.unwrap();

    let mut c = claims();
    c["nbf"] = (NOW + 61).into();
    let err = refused(check(&config, &rs256(&c)).await, "malformed");
    assert!(err.to_string().contains("nbf"));
    c["nbf"] = (NOW + 60).into();
    check(&config, &rs256(&c)).await.unwrap();

    let mut c = claims();
    c.as_object_mut().unwrap().remove("iat");
    let err = refused(check(&config, &rs256(&c)).await, "malformed");
    assert!(err.to_string().contains("missing iat"));
    c["iat"] = (NOW + 61).into();
    let err = refused(check(&config, &rs256(&c)).await, "malformed");
    assert!(err.to_string().contains("iat is in the future"));

    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    refused(check(&config, &rs256(&c)).await, "malformed");
}

#[tokio::test]
async fn numeric_dates_may_be_floats_never_negative() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["iat"] = json!((NOW - 10) as f64 + 0.75);
    c["exp"] = json!((NOW + 600) as f64 + 0.5);
    let v = check(&config, &rs256(&c)).await.unwrap();
    assert_eq!((v.iat, v.exp), (NOW - 10, NOW + 600));
    for bad in [
        json!(-5),
        json!(-0.5),
        json!("1700000000"),
        json!(null),
        json!(true),
    ] {
        let mut c = claims();
        c["iat"] = bad;
        refused(check(&config, &rs256(&c)).await, "malformed");
    }
}

#[tokio::test]
async fn over_long_lifetime_is_refused() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["iat"] = (NOW - 10).into();
    c["exp"] = (NOW - 10 + 3601).into();
    refused(check(&config, &rs256(&c)).await, "lifetime");
    c["exp"] = (NOW - 10 + 3600).into();
    check(&config, &rs256(&c)).await.unwrap();
}

fn with_header(header: serde_json::Value, claims: &serde_json::Value) -> String {
    sign_raw(
        &header.to_string(),
        &claims.to_string(),
        Algorithm::RS256,
        &encoding_key(Algorithm::RS256),
    )
}

#[tokio::test]
async fn logout_and_secevent_types_and_events_are_refused() {
    let config = config(&["RS256"]);
    for typ in [
        "logout+jwt",
        "application/secevent+jwt",
        "Application/Logout+JWT",
    ] {
        let t = with_header(
            json!({"alg": "RS256", "kid": "rsa-1", "typ": typ}),
            &claims(),
        );
        refused(check(&config, &t).await, "malformed");
    }
    let mut c = claims();
    c["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let err = refused(check(&config, &rs256(&c)).await, "malformed");
    assert!(err.to_string().contains("events"));
    // typ JWT is fine without require_typ.
    check(&config, &rs256(&claims())).await.unwrap();
}

#[tokio::test]
async fn require_typ() {
    let mut config = config(&["RS256"]);
    config.issuers[0].require_typ = "at+jwt".into();
    let no_typ = with_header(json!({"alg": "RS256", "kid": "rsa-1"}), &claims());
    let err = refused(check(&config, &no_typ).await, "malformed");
    assert!(err.to_string().contains("typ must be at+jwt"));
    refused(check(&config, &rs256(&claims())).await, "typ");
    for typ in ["AT+JWT", "application/at+jwt", "at+jwt"] {
        let t = with_header(
            json!({"alg": "RS256", "kid": "rsa-1", "typ": typ}),
            &claims(),
        );
        check(&config, &t).await.unwrap();
    }
    let t = with_header(json!({"alg": "RS256", "kid": "rsa-1", "typ": 7}), &claims());
    refused(check(&config, &t).await, "malformed");
}

#[tokio::test]
async fn duplicate_member_names_are_refused() {
    let config = config(&["RS256"]);
    let key = encoding_key(Algorithm::RS256);
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let base = format!(
        r#""iss":"{ISS}","aud":"api://one","iat":{},"exp":{}"#,
        NOW - 10,
        NOW + 600
    );
    for payload in [
        format!(r#"{{{base},"sub":"alice","sub":"admin"}}"#),
        format!(r#"{{{base},"sub":"alice","s\u0075b":"admin"}}"#),
        format!(r#"{{{base},"x":1,"x":2}}"#),
        format!(r#"{{{base},"aud":"api://two"}}"#),
        // Many members, the repeat after the linear-scan threshold.
        format!(
            r#"{{{base},{},"m3":0}}"#,
            (0..40)
                .map(|i| format!(r#""m{i}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ] {
        let t = sign_raw(header, &payload, Algorithm::RS256, &key);
        let err = refused(check(&config, &t).await, "malformed");
        assert!(err.to_string().contains("duplicate"), "{err}");
    }
    // 40 distinct extra members are fine.
    let many = format!(
        r#"{{{base},{}}}"#,
        (0..40)
            .map(|i| format!(r#""m{i}":0"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    check(&config, &sign_raw(header, &many, Algorithm::RS256, &key))
        .await
        .unwrap();
    // Duplicate header members.
    let dup_header = r#"{"alg":"RS256","kid":"rsa-1","alg":"RS256"}"#;
    let t = sign_raw(dup_header, &claims().to_string(), Algorithm::RS256, &key);
    refused(check(&config, &t).await, "malformed");
}

#[tokio::test]
async fn broken_compact_forms_are_malformed() {
    let config = config(&["RS256"]);
    let good = rs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], "a", parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1,2]"), parts[2]),
        format!("{}.{}.{}", parts[0], b64(br#"{"iss":"x"} {}"#), parts[2]),
        format!("{}.{}.{}", b64(b"[]"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"kid":"rsa-1"}"#), parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"alg":256}"#), parts[1], parts[2]),
        String::new(),
        "a".repeat(MAX_TOKEN_BYTES + 1),
        // Signed, valid JSON array payload.
        sign_raw(
            header,
            "[1,2]",
            Algorithm::RS256,
            &encoding_key(Algorithm::RS256),
        ),
        format!("{}  ", good),
    ];
    for t in &cases {
        refused(check(&config, t).await, "malformed");
    }
}

#[tokio::test]
async fn crit_header_is_refused_and_key_urls_ignored() {
    let config = config(&["RS256"]);
    let t = with_header(
        json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
        &claims(),
    );
    let err = refused(check(&config, &t).await, "malformed");
    assert!(err.to_string().contains("crit"));
    // jku / x5u / jwk are ignored: the configured key still decides.
    let t = with_header(
        json!({"alg": "RS256", "kid": "rsa-1", "jku": "http://127.0.0.1:1/jwks",
               "x5u": "http://127.0.0.1:1/cert", "jwk": {"kty": "oct", "k": "AAAA"}}),
        &claims(),
    );
    check(&config, &t).await.unwrap();
}

#[tokio::test]
async fn alg_outside_the_allow_list_is_refused() {
    refused(
        check(&config(&["RS256"]), &token(Algorithm::ES256, &claims())).await,
        "algorithm",
    );
    // Case-sensitive allow-list.
    let t = with_header(json!({"alg": "rs256", "kid": "rsa-1"}), &claims());
    refused(check(&config(&["RS256"]), &t).await, "algorithm");
}

#[tokio::test]
async fn kidless_token_uses_the_only_key_of_its_type() {
    let config = config(&["RS256", "ES256"]);
    let t = with_header(json!({"alg": "RS256"}), &claims());
    assert_eq!(check(&config, &t).await.unwrap().kid, None);
    // Unknown kid, no refetch possible (file re-read finds nothing new).
    let t = with_header(json!({"alg": "RS256", "kid": "nope"}), &claims());
    refused(check(&config, &t).await, "signature");
    // Kid of a key of another type.
    let t = with_header(json!({"alg": "RS256", "kid": "ec256-1"}), &claims());
    refused(check(&config, &t).await, "signature");
}

#[tokio::test]
async fn kidless_token_with_several_keys_of_its_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let other: serde_json::Value = serde_json::from_str(RSA_OTHER_JWK).unwrap();
    set["keys"].as_array_mut().unwrap().push(other);
    std::fs::write(&path, set.to_string()).unwrap();
    let config = config_with(
        &format!("jwks_file = {:?}", path.display().to_string()),
        &["RS256"],
    );
    let t = with_header(json!({"alg": "RS256"}), &claims());
    refused(check(&config, &t).await, "signature");
    check(&config, &rs256(&claims())).await.unwrap();
}

#[tokio::test]
async fn jwk_alg_and_curve_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    set["keys"][0]["alg"] = "RS256".into();
    std::fs::write(&path, set.to_string()).unwrap();
    let config = config_with(
        &format!("jwks_file = {:?}", path.display().to_string()),
        &["RS256", "PS256", "ES256", "ES384"],
    );
    check(&config, &rs256(&claims())).await.unwrap();
    refused(
        check(&config, &token(Algorithm::PS256, &claims())).await,
        "signature",
    );
    // ES256 signature presented with the P-384 key's kid.
    let t = sign_raw(
        r#"{"alg":"ES256","kid":"ec384-1"}"#,
        &claims().to_string(),
        Algorithm::ES256,
        &encoding_key(Algorithm::ES256),
    );
    refused(check(&config, &t).await, "signature");
}

#[tokio::test]
async fn jti_less_token_is_identified_by_its_digest() {
    assert_eq!(
        token_id("abc"),
        "sha256:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
    let config = config(&["RS256"]);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("jti");
    let t = rs256(&c);
    // SPEC §1: the digest of the signing input `header.payload`, not of the whole token.
    let signing_input = &t[..t.rfind('.').unwrap()];
    let expected = format!("sha256:{}", b64(&Sha256::digest(signing_input.as_bytes())));
    let verified = check(&config, &t).await.unwrap();
    assert_eq!(verified.jti, expected);
    assert_eq!(token_id(&t), expected);
    // The older whole-token digest is kept beside it, so records written under it match.
    let legacy = format!("sha256:{}", b64(&Sha256::digest(t.as_bytes())));
    assert_eq!(verified.legacy_jti.as_deref(), Some(legacy.as_str()));
    assert_ne!(legacy, expected);
    // A token with a jti has no second identifier.
    assert_eq!(
        check(&config, &rs256(&claims())).await.unwrap().legacy_jti,
        None
    );
    c["jti"] = json!(42);
    refused(check(&config, &rs256(&c)).await, "malformed");
}

#[tokio::test]
async fn scopes_from_scope_or_scp() {
    let config = config(&["RS256"]);
    let mut c = claims();
    c["scope"] = " a  b c ".into();
    assert_eq!(
        check(&config, &rs256(&c)).await.unwrap().scopes,
        ["a", "b", "c"]
    );
    c.as_object_mut().unwrap().remove("scope");
    assert!(check(&config, &rs256(&c)).await.unwrap().scopes.is_empty());
    c["scp"] = json!(["x", "y"]);
    assert_eq!(check(&config, &rs256(&c)).await.unwrap().scopes, ["x", "y"]);
    c["scp"] = "x y".into();
    assert_eq!(check(&config, &rs256(&c)).await.unwrap().scopes, ["x", "y"]);
    c["scp"] = json!([1]);
    refused(check(&config, &rs256(&c)).await, "malformed");
}

#[tokio::test]
async fn session_claim_follows_the_issuer_config() {
    let mut config = config(&["RS256"]);
    config.issuers[0].session_claim = "https://example.com/sid".into();
    let mut c = claims();
    c["https://example.com/sid"] = "ns-session".into();
    assert_eq!(
        check(&config, &rs256(&c)).await.unwrap().sid.as_deref(),
        Some("ns-session")
    );
    c["https://example.com/sid"] = json!(5);
    refused(check(&config, &rs256(&c)).await, "malformed");
    // The session claim may be a standard claim.
    config.issuers[0].session_claim = "sub".into();
    let v = check(&config, &rs256(&claims())).await.unwrap();
    assert_eq!(v.sid.as_deref(), Some("user-1"));
    assert_eq!(v.sub.as_deref(), Some("user-1"));
    // Absent session claim, non-string sub.
    let mut config2 = crate::auth::testutil::config(&["RS256"]);
    config2.issuers[0].session_claim = "sid".into();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sid");
    assert_eq!(check(&config2, &rs256(&c)).await.unwrap().sid, None);
    c["sub"] = json!({"a": 1});
    refused(check(&config2, &rs256(&c)).await, "malformed");
}

#[test]
fn every_error_names_its_cause() {
    let words = [
        (TokenError::Malformed("x".into()), "malformed"),
        (TokenError::Issuer, "issuer"),
        (TokenError::Algorithm("x".into()), "algorithm"),
        (TokenError::Signature("x".into()), "signature"),
        (TokenError::Expired, "expired"),
        (TokenError::Audience, "audience"),
        (TokenError::Lifetime, "lifetime"),
        (TokenError::Claims("x".into()), "malformed"),
    ];
    for (err, word) in words {
        assert!(err.to_string().contains(word), "{err}");
    }
}
