//! Keyring tests: JWK parsing, start-up loading, refetches against a real HTTP JWKS server.
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

/// The one-line messages of `check-config` / reload / start-up for bad key files: the key
/// or issuer first, then the file and the reason.
#[tokio::test]
async fn local_key_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = |extra: &str| -> Config {
        toml::from_str(&format!("[[issuer]]\nissuer = \"a\"\n{extra}")).unwrap()
    };
    let missing = dir.path().join("missing.json");
    let err = check_local_keys(&issuer(&format!("jwks_file = {missing:?}\n"))).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "issuer[0].jwks_file: cannot read jwks_file {}: ",
            missing.display()
        )),
        "{err}"
    );
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys":[]}"#).unwrap();
    let err = check_local_keys(&issuer(&format!("jwks_file = {empty:?}\n"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "issuer[0].jwks_file: {}: no usable signing key",
            empty.display()
        )
    );
    let secret = dir.path().join("no-secret");
    let err = check_local_keys(&issuer(&format!(
        "jwks_file = {empty:?}\nhmac_secret_file = {secret:?}\n"
    )))
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "issuer[0].hmac_secret_file: {}: ",
            secret.display()
        )),
        "{err}"
    );

    // At start-up every issuer's problem is reported, in order, on one line.
    let two: Config = toml::from_str(&format!(
        "[[issuer]]\nissuer = \"a\"\njwks_file = {missing:?}\n\
         [[issuer]]\nissuer = \"b\"\njwks_file = {empty:?}\n"
    ))
    .unwrap();
    let keys = Keyring::without_store(ManualClock::new(1000));
    let err = keys.load_all(&two, &Metrics::default()).await.unwrap_err();
    let KeyError::Startup(problems) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        problems
            .iter()
            .map(|p| p.issuer.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "issuer a: {}; issuer b: jwks_file {}: no usable signing key",
            problems[0].problem,
            empty.display()
        )
    );
    assert!(
        err.to_string()
            .starts_with("issuer a: cannot read jwks_file "),
        "{err}"
    );
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
    let err = keys
        .load_all(&config, &metrics)
        .await
        .unwrap_err()
        .to_string();
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

#[tokio::test]
async fn generation_changes_with_the_keys_not_with_every_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, JWKS).unwrap();
    let config: Config = toml::from_str(&format!(
        "[[issuer]]\nissuer = \"a\"\njwks_file = {:?}\n",
        path.display().to_string()
    ))
    .unwrap();
    let keys = Keyring::without_store(ManualClock::new(1000));
    let metrics = Metrics::default();
    keys.load_all(&config, &metrics).await.unwrap();
    let loaded = keys.generation();
    // The same document again: verified tokens stay valid (the cache keeps them).
    keys.refresh_all(&config, &metrics).await;
    keys.refresh_all(&config, &metrics).await;
    assert_eq!(keys.generation(), loaded);
    // Another key set: everything verified before must be verified again.
    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    set["keys"].as_array_mut().unwrap().pop();
    std::fs::write(&path, set.to_string()).unwrap();
    keys.refresh_all(&config, &metrics).await;
    assert!(keys.generation() > loaded);
    let changed = keys.generation();
    // An issuer removed by a reload drops its keys: a new generation too.
    let none: Config = toml::from_str("").unwrap();
    keys.refresh_all(&none, &metrics).await;
    assert!(keys.generation() > changed);
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
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap();
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
        assert_eq!(s.metrics.jwks_fetches(&s.config.issuers[0].issuer).ok, 2);
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
                s.metrics.jwks_fetches(&s.config.issuers[0].issuer).error,
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
        assert_eq!(metrics.jwks_fetches(&config.issuers[0].issuer).error, 2);
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
