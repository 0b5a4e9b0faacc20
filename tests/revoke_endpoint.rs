//! RFC 7009-style revocation endpoint (SPEC §4 "Revocation endpoint", STANDARDS §5):
//! real gateway on 127.0.0.1:0, real HTTP, real sled store, real keys.

mod common;

use common::*;
use revgate::clock::rfc3339;
use serde_json::{json, Value};

/// Claims of an access token of the test issuer with explicit times.
fn access_claims(jti: Option<&str>, iat: u64, exp: u64) -> Value {
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "u-1", "sid": "s-1", "iat": iat, "exp": exp, "scope": "read",
    });
    if let Some(jti) = jti {
        c["jti"] = json!(jti);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_is_revoked_durably() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let text = config_text(upstream, &store, "");
    let gw = Gateway::start(&text).await;
    let n = now();
    let jti = unique_id("at");
    let t = rs256(&access_claims(Some(&jti), n - 10, n + 600));
    let sibling = rs256(&access_claims(Some(&unique_id("at")), n - 10, n + 600));
    assert_eq!(proxy_status(&gw, &t).await, 200);

    let resp = post_revoke(&gw, &t).await;
    assert_endpoint_ok(&resp, "valid token");
    assert_token_revoked(&gw, &t, "revoked token").await;
    assert_eq!(
        proxy_status(&gw, &sibling).await,
        200,
        "only that token's jti is revoked"
    );

    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let rec = &items[0];
    assert_eq!(rec["kind"], "jti");
    assert_eq!(rec["issuer"], ISS);
    assert_eq!(rec["value"], jti.as_str());
    assert_eq!(rec["source"], "revoke_endpoint");
    assert_eq!(rec["issued_before"], Value::Null);
    assert_eq!(rec["expires_at"], rfc3339(n + 600 + 60), "exp + leeway");
    assert_eq!(stats_counts(&gw).await, (1, 0, 0));
    assert_eq!(
        metric(&gw, "revgate_revocations_total{source=\"revoke_endpoint\"}").await,
        1
    );

    // Posting it again is still 200 and keeps one record.
    assert_endpoint_ok(&post_revoke(&gw, &t).await, "again");
    assert_eq!(stats_counts(&gw).await, (1, 0, 0));

    gw.stop().await;
    let gw = Gateway::start(&text).await;
    assert_token_revoked(&gw, &t, "after a restart").await;
    assert_eq!(proxy_status(&gw, &sibling).await, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_type_hint_is_ignored() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let n = now();
    let url = gw.url("/revoke");
    for (i, hint) in ["access_token", "refresh_token", "nonsense"]
        .into_iter()
        .enumerate()
    {
        let t = rs256(&access_claims(Some(&unique_id("hint")), n, n + 300));
        let resp = post_form(&url, form(&[("token", &t), ("token_type_hint", hint)])).await;
        assert_endpoint_ok(&resp, hint);
        assert_token_revoked(&gw, &t, hint).await;
        assert_eq!(stats_counts(&gw).await, (i as u64 + 1, 0, 0), "{hint}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_tokens_get_200_and_revoke_nothing() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let n = now();
    let victim_jti = unique_id("victim");
    let victim = rs256(&access_claims(Some(&victim_jti), n - 10, n + 600));
    let victim_claims = access_claims(Some(&victim_jti), n - 10, n + 600);

    let edited = {
        let parts: Vec<&str> = victim.split('.').collect();
        let other = json!({"iss": ISS, "aud": AUD, "sub": "u-2", "jti": victim_jti, "iat": n, "exp": n + 600});
        let payload = b64url(serde_json::to_vec(&other).unwrap());
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "forged signature, victim's jti",
            sign_forged(&victim_claims),
        ),
        ("payload edited, victim's jti", edited),
        (
            "alg none, victim's jti",
            raw_jws(
                r#"{"alg":"none"}"#,
                &serde_json::to_string(&victim_claims).unwrap(),
                b"",
            ),
        ),
        (
            "expired",
            rs256(&access_claims(Some(&unique_id("exp")), n - 1000, n - 500)),
        ),
        (
            "wrong audience",
            rs256(
                &json!({"iss": ISS, "aud": "api://other", "sub": "u-1", "jti": unique_id("aud"), "iat": n, "exp": n + 300}),
            ),
        ),
        (
            "unknown issuer",
            rs256(
                &json!({"iss": "https://evil.test/", "aud": AUD, "sub": "u-1", "jti": victim_jti, "iat": n, "exp": n + 300}),
            ),
        ),
        (
            "lifetime over max_token_lifetime",
            rs256(&access_claims(Some(&unique_id("life")), n, n + 7200)),
        ),
        (
            "a logout token",
            sign_logout(&logout_claims(Some("s-1"), Some("u-1"), n)),
        ),
        ("garbage", "garbage".to_string()),
        ("three garbage parts", "a.b.c".to_string()),
    ];
    for (what, token) in cases {
        let resp = post_revoke(&gw, &token).await;
        assert_endpoint_ok(&resp, what);
        assert_no_revocations(&gw, what).await;
        assert_eq!(
            proxy_status(&gw, &victim).await,
            200,
            "{what}: the real token must still pass"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jti_less_token_is_revoked_by_its_digest() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let n = now();
    let t = rs256(&access_claims(None, n - 5, n + 600));
    let other = rs256(&access_claims(None, n - 6, n + 600));
    assert_endpoint_ok(&post_revoke(&gw, &t).await, "jti-less token");
    assert_token_revoked(&gw, &t, "jti-less token").await;
    assert_eq!(
        proxy_status(&gw, &other).await,
        200,
        "another jti-less token"
    );
    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "jti");
    assert_eq!(items[0]["value"], digest_id(&t));
    assert_eq!(items[0]["source"], "revoke_endpoint");
    assert_eq!(items[0]["expires_at"], rfc3339(n + 600 + 60));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_400_and_other_methods_405() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let url = gw.url("/revoke");
    for (what, body) in [
        (
            "missing token",
            form(&[("token_type_hint", "access_token")]),
        ),
        ("empty body", String::new()),
        ("empty token", form(&[("token", "")])),
    ] {
        let resp = post_form(&url, body).await;
        assert_eq!(resp.headers()["cache-control"], "no-store", "{what}");
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        assert!(body["error_description"].is_string(), "{what}: {body}");
    }
    let t = token("u-1", "s-1", &unique_id("m"));
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let resp = client()
            .request(method.clone(), &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", &t)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{method}");
    }
    assert_no_revocations(&gw, "after 400/405").await;
    assert_eq!(proxy_status(&gw, &t).await, 200);
    gw.stop().await;
}
