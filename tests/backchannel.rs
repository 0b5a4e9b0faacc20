//! OpenID Connect Back-Channel Logout receiver (SPEC §4 "Back-Channel Logout endpoint",
//! STANDARDS §1, §2): a real gateway on 127.0.0.1:0, real HTTP, a real sled store and
//! logout tokens signed with the real test keys.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::*;
use revgate::clock::rfc3339;
use serde_json::{json, Value};

/// A gateway on a fresh store; keep the `TempDir` alive for the test.
struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    upstream: SocketAddr,
    gw: Gateway,
}

async fn start(extra: &str) -> Fixture {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, extra)).await;
    Fixture {
        _dir: dir,
        store,
        upstream,
        gw,
    }
}

/// Stops `gw` and starts a new gateway on the same store with the same config.
async fn restart(gw: Gateway, upstream: SocketAddr, store: &Path, extra: &str) -> Gateway {
    gw.stop().await;
    Gateway::start(&config_text(upstream, store, extra)).await
}

/// An access token of the test issuer with an explicit `iat` (valid 10 minutes from it).
fn access(sub: &str, sid: &str, iat: u64) -> String {
    let c = json!({
        "iss": ISS, "aud": AUD, "sub": sub, "sid": sid, "jti": unique_id("at"),
        "iat": iat, "exp": iat + 600, "scope": "read",
    });
    sign_with("RS256", Some("rsa-1"), None, &c)
}

/// Asserts `400` `{"error":"invalid_request","error_description":...}` with
/// `Cache-Control: no-store`; returns the description.
async fn assert_invalid(resp: reqwest::Response, what: &str) -> String {
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("no-store".to_string()),
        "{what}: Cache-Control"
    );
    assert_eq!(
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("application/json".to_string()),
        "{what}: Content-Type"
    );
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"], "invalid_request", "{what}: {body}");
    let desc = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: error_description missing: {body}"));
    assert!(!desc.is_empty(), "{what}: empty error_description");
    desc.to_string()
}

/// Asserts that the store holds no revocation at all and that `session_token` still passes.
async fn assert_nothing_recorded(gw: &Gateway, session_token: &str, what: &str) {
    assert_no_revocations(gw, what).await;
    assert_eq!(
        proxy_status(gw, session_token).await,
        200,
        "{what}: the session's access token must still pass"
    );
}

/// Asserts a `400 invalid_request` for the logout token `token` and that nothing changed.
async fn assert_refused(gw: &Gateway, token: &str, session_token: &str, what: &str) {
    assert_invalid(post_logout(gw, token).await, what).await;
    assert_nothing_recorded(gw, session_token, what).await;
}

/// Victim session of the negative cases.
const VICTIM_SUB: &str = "u-victim";
const VICTIM_SID: &str = "s-victim";

fn victim_claims() -> Value {
    logout_claims(Some(VICTIM_SID), Some(VICTIM_SUB), now())
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn b64_json(v: &Value) -> String {
    b64url(serde_json::to_vec(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_by_sid_revokes_the_session_durably() {
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    let before = access("u-1", "s-1", n - 30);
    let other_session = access("u-1", "s-2", n - 30);
    assert_eq!(proxy_status(&gw, &before).await, 200);

    let resp = post_logout(
        &gw,
        &sign_logout(&logout_claims(Some("s-1"), Some("u-1"), n)),
    )
    .await;
    assert_endpoint_ok(&resp, "valid logout token");
    assert_eq!(
        resp.text().await.unwrap(),
        "",
        "200 has no content to speak of"
    );

    assert_token_revoked(&gw, &before, "token of the logged-out session").await;
    assert_eq!(
        proxy_status(&gw, &other_session).await,
        200,
        "another session"
    );

    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let rec = &items[0];
    assert_eq!(rec["kind"], "sid");
    assert_eq!(rec["issuer"], ISS);
    assert_eq!(rec["value"], "s-1");
    assert_eq!(rec["source"], "backchannel");
    assert_eq!(rec["issued_before"], rfc3339(n));
    // SPEC §1: issued_before + max_token_lifetime (1h) + leeway (60 s).
    assert_eq!(rec["expires_at"], rfc3339(n + 3600 + 60));
    let (status, looked_up) = admin_get(&gw, "/v1/revocations/sid/s-1").await;
    assert_eq!(status, 200);
    assert_eq!(&looked_up, rec);
    assert_eq!(stats_counts(&gw).await, (0, 1, 0));

    let gw = restart(gw, f.upstream, &f.store, "").await;
    assert_token_revoked(&gw, &before, "after a restart").await;
    assert_eq!(proxy_status(&gw, &other_session).await, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_after_the_logout_is_not_locked_out() {
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    let old = access("u-1", "s-1", n - 40);
    let at_cutoff = access("u-1", "s-1", n - 20);
    let relogin = access("u-1", "s-1", n);
    let resp = post_logout(&gw, &sign_logout(&logout_claims(Some("s-1"), None, n - 20))).await;
    assert_endpoint_ok(&resp, "logout with iat = now-20");
    assert_token_revoked(&gw, &old, "issued before the logout").await;
    assert_token_revoked(
        &gw,
        &at_cutoff,
        "issued at the logout's iat (iat <= issued_before)",
    )
    .await;
    assert_eq!(
        proxy_status(&gw, &relogin).await,
        200,
        "same session, issued after the logout"
    );
    let items = list_revocations(&gw).await;
    assert_eq!(items[0]["issued_before"], rfc3339(n - 20));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_only_sub_revokes_the_subject() {
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    let a = access("u-9", "s-a", n - 30);
    let b = access("u-9", "s-b", n - 30);
    let someone_else = access("u-10", "s-a", n - 30);
    let later = access("u-9", "s-c", n + 1);
    // A charset parameter on the form content type is fine.
    let resp = client()
        .post(gw.url("/backchannel-logout"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(form(&[(
            "logout_token",
            &sign_logout(&logout_claims(None, Some("u-9"), n)),
        )]))
        .send()
        .await
        .unwrap();
    assert_endpoint_ok(&resp, "sub-only logout token");
    assert_token_revoked(&gw, &a, "session a of the user").await;
    assert_token_revoked(&gw, &b, "session b of the user").await;
    assert_eq!(proxy_status(&gw, &someone_else).await, 200);
    assert_eq!(proxy_status(&gw, &later).await, 200, "a later login");

    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "sub");
    assert_eq!(items[0]["value"], "u-9");
    assert_eq!(items[0]["source"], "backchannel");
    assert_eq!(items[0]["issued_before"], rfc3339(n));
    assert_eq!(stats_counts(&gw).await, (0, 0, 1));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_jti_is_refused_and_remembered_across_restarts() {
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    let first = logout_claims(Some("s-1"), Some("u-1"), n - 10);
    let token = sign_logout(&first);
    assert_endpoint_ok(&post_logout(&gw, &token).await, "first delivery");
    let after_first = list_revocations(&gw).await;
    assert_eq!(after_first.len(), 1);

    // The exact same token again (an OP retry): 200, nothing changes.
    assert_endpoint_ok(&post_logout(&gw, &token).await, "exact repeat");
    assert_eq!(
        list_revocations(&gw).await,
        after_first,
        "a repeat changes nothing"
    );

    // A different token reusing the jti: 400, nothing new recorded.
    let other_session = access("u-2", "s-2", n - 30);
    let reuse = with(first.clone(), "sid", json!("s-2"));
    let reuse = with(reuse, "sub", json!("u-2"));
    let reuse_token = sign_logout(&reuse);
    let desc = assert_invalid(post_logout(&gw, &reuse_token).await, "jti reuse").await;
    assert!(desc.contains("jti"), "{desc}");
    assert_eq!(
        list_revocations(&gw).await,
        after_first,
        "jti reuse records nothing"
    );
    assert_eq!(proxy_status(&gw, &other_session).await, 200);
    // Same claims, another signature header (typ absent): another token, same jti.
    let same_claims_other_header = sign_with("RS256", Some("rsa-1"), None, &first);
    assert_invalid(
        post_logout(&gw, &same_claims_other_header).await,
        "same jti, other header",
    )
    .await;

    // Seen jtis are neither counted nor listed.
    assert_eq!(stats_counts(&gw).await, (0, 1, 0));
    assert_eq!(list_revocations(&gw).await.len(), 1);

    let gw = restart(gw, f.upstream, &f.store, "").await;
    assert_invalid(
        post_logout(&gw, &reuse_token).await,
        "jti reuse after restart",
    )
    .await;
    assert_eq!(list_revocations(&gw).await, after_first);
    assert_eq!(proxy_status(&gw, &other_session).await, 200);
    assert_endpoint_ok(
        &post_logout(&gw, &token).await,
        "exact repeat after restart",
    );
    assert_eq!(list_revocations(&gw).await, after_first);
    assert_eq!(stats_counts(&gw).await, (0, 1, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typ_variants_are_accepted_by_default() {
    let f = start("").await;
    let gw = f.gw;
    for typ in [
        None,
        Some("logout+jwt"),
        Some("application/logout+jwt"),
        Some("JWT"),
    ] {
        let c = logout_claims(Some(&unique_id("s")), None, now());
        let resp = post_logout(&gw, &sign_with("RS256", Some("rsa-1"), typ, &c)).await;
        assert_endpoint_ok(&resp, &format!("typ {typ:?}"));
    }
    assert_eq!(stats_counts(&gw).await, (0, 4, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_shape_is_accepted() {
    // What the OIDF suite sends: no typ, `ignored_claim`, and an `ignored_parameter`.
    let f = start("").await;
    let gw = f.gw;
    let c = with(
        logout_claims(Some("s-suite"), Some("u-suite"), now()),
        "ignored_claim",
        json!("x"),
    );
    let token = sign_with("RS256", Some("rsa-1"), None, &c);
    let body = form(&[("logout_token", &token), ("ignored_parameter", "y")]);
    let resp = post_form(&gw.url("/backchannel-logout"), body).await;
    assert_endpoint_ok(&resp, "conformance-suite logout token");
    assert_eq!(stats_counts(&gw).await, (0, 1, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_typ_accepts_only_logout_jwt() {
    let f = start("[backchannel]\nstrict_typ = true\n").await;
    let gw = f.gw;
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);
    for typ in [None, Some("JWT")] {
        let token = sign_with("RS256", Some("rsa-1"), typ, &victim_claims());
        assert_refused(&gw, &token, &session, &format!("strict typ {typ:?}")).await;
    }
    let resp = post_logout(&gw, &sign_logout(&victim_claims())).await;
    assert_endpoint_ok(&resp, "strict typ logout+jwt");
    assert_token_revoked(&gw, &session, "strict mode still revokes").await;
    gw.stop().await;
}

const LEGACY_ISS: &str = "https://legacy-idp.test/";
const NO_LOGOUT_ISS: &str = "https://no-logout-idp.test/";

fn extra_issuers() -> String {
    format!(
        r#"
[[issuer]]
issuer = "{LEGACY_ISS}"
audiences = ["{AUD}"]
jwks_file = "{jwks}"
logout_audiences = ["{CLIENT_ID}"]
logout_require_exp = false

[[issuer]]
issuer = "{NO_LOGOUT_ISS}"
audiences = ["{AUD}"]
jwks_file = "{jwks}"
"#,
        jwks = key_path("jwks.json")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_is_optional_only_where_configured() {
    let extra = extra_issuers();
    let f = start(&extra).await;
    let gw = f.gw;
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);

    let default_issuer = without(victim_claims(), "exp");
    assert_refused(&gw, &sign_logout(&default_issuer), &session, "missing exp").await;

    let legacy = with(
        without(logout_claims(Some("s-legacy"), None, now()), "exp"),
        "iss",
        json!(LEGACY_ISS),
    );
    assert_endpoint_ok(
        &post_logout(&gw, &sign_logout(&legacy)).await,
        "no exp, logout_require_exp = false",
    );
    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["issuer"], LEGACY_ISS);
    assert_eq!(items[0]["value"], "s-legacy");
    // Still refused when its iat is too old (max_age is the only bound left).
    let stale = with(
        without(logout_claims(Some("s-legacy-2"), None, now() - 600), "exp"),
        "iss",
        json!(LEGACY_ISS),
    );
    assert_invalid(
        post_logout(&gw, &sign_logout(&stale)).await,
        "stale, no exp",
    )
    .await;
    assert_eq!(list_revocations(&gw).await.len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_claims_are_refused_and_record_nothing() {
    let extra = extra_issuers();
    let f = start(&extra).await;
    let gw = f.gw;
    let n = now();
    let session = access(VICTIM_SUB, VICTIM_SID, n - 30);
    let lt = victim_claims;
    let cases: Vec<(&str, Value)> = vec![
        ("no sid and no sub", without(without(lt(), "sid"), "sub")),
        ("nonce present", with(lt(), "nonce", json!("n-1"))),
        ("events missing", without(lt(), "events")),
        (
            "events without the logout member",
            with(
                lt(),
                "events",
                json!({"http://schemas.openid.net/event/foobar": {}}),
            ),
        ),
        (
            "events member true",
            with(
                lt(),
                "events",
                json!({"http://schemas.openid.net/event/backchannel-logout": true}),
            ),
        ),
        (
            "events member a string",
            with(
                lt(),
                "events",
                json!({"http://schemas.openid.net/event/backchannel-logout": "x"}),
            ),
        ),
        (
            "events an array",
            with(
                lt(),
                "events",
                json!(["http://schemas.openid.net/event/backchannel-logout"]),
            ),
        ),
        (
            "wrong iss",
            with(lt(), "iss", json!(format!("{ISS}INVALID"))),
        ),
        (
            "issuer without logout_audiences",
            with(lt(), "iss", json!(NO_LOGOUT_ISS)),
        ),
        (
            "wrong aud",
            with(lt(), "aud", json!(format!("{CLIENT_ID}INVALID"))),
        ),
        (
            "aud is the API, not the client",
            with(lt(), "aud", json!(AUD)),
        ),
        ("missing iat", without(lt(), "iat")),
        ("missing exp", without(lt(), "exp")),
        ("missing jti", without(lt(), "jti")),
        ("jti not a string", with(lt(), "jti", json!(7))),
        (
            "expired",
            with(with(lt(), "iat", json!(n - 200)), "exp", json!(n - 100)),
        ),
        (
            "iat in the future beyond the leeway",
            with(with(lt(), "iat", json!(n + 120)), "exp", json!(n + 240)),
        ),
        (
            "iat older than max_age",
            with(with(lt(), "iat", json!(n - 600)), "exp", json!(n + 120)),
        ),
        ("sid a number", with(lt(), "sid", json!(42))),
        ("sub a number", with(without(lt(), "sid"), "sub", json!(42))),
        ("iat a string", with(lt(), "iat", json!(n.to_string()))),
    ];
    for (what, claims) in cases {
        assert_refused(&gw, &sign_logout(&claims), &session, what).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_algorithms_and_signatures_are_refused() {
    let f = start("").await;
    let gw = f.gw;
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);

    // The conformance suite's "wrong alg": a valid key of the OP's own JWKS, ES256.
    for typ in [None, Some("logout+jwt")] {
        let t = sign_with("ES256", Some("ec256-1"), typ, &victim_claims());
        assert_refused(
            &gw,
            &t,
            &session,
            &format!("ES256 with ec256-1, typ {typ:?}"),
        )
        .await;
    }
    // RS384 with the right RSA key: also not in logout_algorithms.
    let t = sign_with("RS384", Some("rsa-1"), Some("logout+jwt"), &victim_claims());
    assert_refused(&gw, &t, &session, "RS384").await;

    // alg none, with and without typ, empty signature.
    let payload = serde_json::to_string(&victim_claims()).unwrap();
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"none","typ":"logout+jwt"}"#,
        r#"{"alg":"None","kid":"rsa-1"}"#,
    ] {
        let t = raw_jws(header, &payload, b"");
        assert_refused(&gw, &t, &session, &format!("alg none: {header}")).await;
    }

    // Signed with a key that is not in the JWKS, under its kid.
    assert_refused(
        &gw,
        &sign_forged(&victim_claims()),
        &session,
        "forged signature",
    )
    .await;

    // A valid token whose payload was edited afterwards (another sid).
    let good = sign_logout(&victim_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let edited_claims = with(victim_claims(), "sid", json!("s-other"));
    let edited = format!("{}.{}.{}", parts[0], b64_json(&edited_claims), parts[2]);
    assert_refused(&gw, &edited, &session, "payload edited").await;
    // A signature cut short.
    let truncated = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 4]
    );
    assert_refused(&gw, &truncated, &session, "truncated signature").await;

    // Unknown kid.
    let t = sign_with("RS256", Some("nope"), Some("logout+jwt"), &victim_claims());
    assert_refused(&gw, &t, &session, "unknown kid").await;

    // Wrong kinds of JWT.
    for typ in ["at+jwt", "secevent+jwt", "application/at+jwt", "JOSE"] {
        let t = sign_with("RS256", Some("rsa-1"), Some(typ), &victim_claims());
        assert_refused(&gw, &t, &session, &format!("typ {typ}")).await;
    }

    // Not a JWS at all.
    for garbage in ["garbage", "a.b.c", "a.b", format!("{good}.x").as_str()] {
        assert_refused(&gw, garbage, &session, &format!("garbage {garbage:.20}")).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_record_nothing() {
    let f = start("").await;
    let gw = f.gw;
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);
    let url = gw.url("/backchannel-logout");
    let valid = sign_logout(&victim_claims());

    // Wrong content type: JSON, and a form body labelled as JSON.
    for body in [
        json!({ "logout_token": valid }).to_string(),
        form(&[("logout_token", &valid)]),
    ] {
        let resp = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_invalid(resp, "application/json").await;
        assert_nothing_recorded(&gw, &session, "application/json").await;
    }
    // No content type at all.
    let resp = client()
        .post(&url)
        .body(form(&[("logout_token", &valid)]))
        .send()
        .await
        .unwrap();
    assert_invalid(resp, "no content type").await;
    assert_nothing_recorded(&gw, &session, "no content type").await;

    // Missing, empty and repeated logout_token.
    for (what, body) in [
        ("missing logout_token", form(&[("other", "x")])),
        ("empty body", String::new()),
        ("empty logout_token", form(&[("logout_token", "")])),
        (
            "repeated logout_token",
            form(&[("logout_token", &valid), ("logout_token", &valid)]),
        ),
    ] {
        assert_invalid(post_form(&url, body).await, what).await;
        assert_nothing_recorded(&gw, &session, what).await;
    }

    // 100 KiB form: over the endpoint's 64 KiB limit, under max_body_bytes (10 MiB).
    let big = form(&[("logout_token", &valid), ("pad", &"a".repeat(100 * 1024))]);
    assert_invalid(post_form(&url, big).await, "100 KiB body").await;
    assert_nothing_recorded(&gw, &session, "100 KiB body").await;

    // The valid token still works afterwards (nothing above consumed its jti).
    assert_endpoint_ok(&post_logout(&gw, &valid).await, "valid after the refusals");
    assert_token_revoked(&gw, &session, "valid after the refusals").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_bytes_is_413() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let text = config_text_with_server(upstream, &store, "max_body_bytes = 4096", "");
    let gw = Gateway::start(&text).await;
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);
    let url = gw.url("/backchannel-logout");
    let valid = sign_logout(&victim_claims());
    let big = form(&[("logout_token", &valid), ("pad", &"a".repeat(100 * 1024))]);

    // With Content-Length.
    let resp = post_form(&url, big.clone()).await;
    assert_eq!(resp.status().as_u16(), 413, "with Content-Length");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_nothing_recorded(&gw, &session, "413 with Content-Length").await;

    // Chunked, no Content-Length: the limit is found while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = client()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "chunked");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_nothing_recorded(&gw, &session, "413 chunked").await;

    // A normal-sized logout still works under this limit.
    assert_endpoint_ok(&post_logout(&gw, &valid).await, "small body");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405() {
    let f = start("").await;
    let gw = f.gw;
    let url = gw.url("/backchannel-logout");
    let valid = sign_logout(&victim_claims());
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let resp = client()
            .request(method.clone(), &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("logout_token", &valid)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{method}");
        assert_eq!(resp.headers()["allow"], "POST", "{method}");
    }
    let session = access(VICTIM_SUB, VICTIM_SID, now() - 30);
    assert_nothing_recorded(&gw, &session, "405").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_accepted_and_rejected_logouts() {
    let f = start("").await;
    let gw = f.gw;
    let accepted = "revgate_backchannel_logouts_total{result=\"accepted\"}";
    let rejected = "revgate_backchannel_logouts_total{result=\"rejected\",reason=\"claims\"}";
    let recorded = "revgate_revocations_total{source=\"backchannel\"}";
    assert_eq!(metric(&gw, accepted).await, 0);
    assert_eq!(metric(&gw, rejected).await, 0);
    assert_eq!(metric(&gw, recorded).await, 0);

    let token = sign_logout(&logout_claims(Some("s-m"), None, now()));
    assert_endpoint_ok(&post_logout(&gw, &token).await, "valid");
    assert_eq!(metric(&gw, accepted).await, 1);
    assert_eq!(metric(&gw, recorded).await, 1);
    assert_eq!(metric(&gw, rejected).await, 0);

    let bad = sign_logout(&with(victim_claims(), "nonce", json!("n")));
    assert_invalid(post_logout(&gw, &bad).await, "nonce").await;
    assert_eq!(metric(&gw, rejected).await, 1);
    assert_eq!(metric(&gw, accepted).await, 1);
    assert_eq!(metric(&gw, recorded).await, 1);
    assert_eq!(
        metric(&gw, "revgate_revocations_total{source=\"revoke_endpoint\"}").await,
        0
    );
    gw.stop().await;
}

/// The `logouts` row of `issuer` (`None`: the unattributed row) in `GET /v1/stats`.
async fn logout_row(gw: &Gateway, issuer: Option<&str>) -> Option<Value> {
    let stats = admin_stats(gw).await;
    let rows = stats["logouts"]
        .as_array()
        .unwrap_or_else(|| panic!("stats without logouts: {stats}"));
    rows.iter()
        .find(|r| r["issuer"].as_str() == issuer)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_logouts_per_issuer_with_the_last_refusal() {
    let f = start("").await;
    let gw = f.gw;
    // Every configured issuer has its row from the start; no unattributed row yet.
    let row = logout_row(&gw, Some(ISS)).await.expect("row of the issuer");
    assert_eq!(
        row,
        json!({"issuer": ISS, "accepted": 0, "refused": 0, "last_refusal": null})
    );
    assert!(logout_row(&gw, None).await.is_none());

    let good = sign_logout(&logout_claims(Some("s-stats"), None, now()));
    assert_endpoint_ok(&post_logout(&gw, &good).await, "valid");
    // The IdP's usual trap: no exp (LemonLDAP::NG, Keycloak before 22).
    let mut no_exp = logout_claims(Some("s-stats-2"), None, now());
    no_exp.as_object_mut().unwrap().remove("exp");
    let before = now();
    let desc = assert_invalid(post_logout(&gw, &sign_logout(&no_exp)).await, "no exp").await;
    let row = logout_row(&gw, Some(ISS)).await.unwrap();
    assert_eq!(
        (row["accepted"].as_u64(), row["refused"].as_u64()),
        (Some(1), Some(1)),
        "{row}"
    );
    let last = &row["last_refusal"];
    assert_eq!(last["reason"], "time", "{row}");
    assert_eq!(last["error"], desc.as_str(), "{row}");
    assert!(desc.contains("missing exp"), "{desc}");
    let at = instant(&last["at"]);
    assert!(at >= before && at <= now(), "{row}");

    // A later refusal of another class replaces it.
    let wrong_aud = sign_logout(&with(
        logout_claims(Some("s-stats-3"), None, now()),
        "aud",
        json!("someone-else"),
    ));
    assert_invalid(post_logout(&gw, &wrong_aud).await, "audience").await;
    let row = logout_row(&gw, Some(ISS)).await.unwrap();
    assert_eq!(row["refused"], 2, "{row}");
    assert_eq!(row["last_refusal"]["reason"], "audience", "{row}");

    // A token naming no configured issuer is counted apart, and not under ISS.
    let stranger = sign_logout(&with(
        logout_claims(Some("s-x"), None, now()),
        "iss",
        json!("https://stranger.example/"),
    ));
    assert_invalid(post_logout(&gw, &stranger).await, "unknown issuer").await;
    let row = logout_row(&gw, None).await.expect("unattributed row");
    assert_eq!(
        (row["accepted"].as_u64(), row["refused"].as_u64()),
        (Some(0), Some(1)),
        "{row}"
    );
    assert_eq!(row["last_refusal"]["reason"], "issuer", "{row}");
    assert_eq!(logout_row(&gw, Some(ISS)).await.unwrap()["refused"], 2);
    assert!(
        logout_row(&gw, Some("https://stranger.example/"))
            .await
            .is_none(),
        "an unconfigured iss never gets a row of its own"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_logout_is_logged_at_warn_with_issuer_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_echo().await;
    let path = write_config_file(
        dir.path(),
        &config_text(upstream, &dir.path().join("store.db"), ""),
    );
    let mut child = ServeChild::start(&path).await;
    let mut no_exp = logout_claims(Some("s-warn"), None, now());
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid(post_logout(&child, &sign_logout(&no_exp)).await, "no exp").await;
    assert!(
        child.wait_for_log("back-channel logout refused").await,
        "no refusal line: {}",
        child.log_text()
    );
    let log = child.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("back-channel logout refused"))
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("issuer={ISS}")), "{line}");
    assert!(line.contains("reason=time"), "{line}");
    assert!(line.contains("missing exp"), "{line}");
    // `revgate stats` shows it too (the table of logouts per issuer).
    let o = run_revgate(
        &["stats", "--admin", &child.admin.to_string()],
        &[],
        dir.path(),
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("ISSUER") && out.contains("LAST_REFUSAL"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(ISS))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        [ISS, "0", "1"],
        "{row}"
    );
    assert!(
        row.contains("time: invalid logout token: missing exp"),
        "{row}"
    );
    child.sigterm();
    child.wait_exit(WAIT).await.expect("exits after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_sharing_a_jti_never_record_on_a_400() {
    // Two different logout tokens with one jti, sent at the same moment: whichever loses
    // must get 400 and must not have recorded its session.
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    for round in 0..10 {
        let jti = unique_id("race");
        let sids = [format!("s-race-{round}-a"), format!("s-race-{round}-b")];
        let tokens: Vec<String> = sids
            .iter()
            .map(|sid| {
                let c = with(logout_claims(Some(sid), None, n), "jti", json!(jti));
                sign_logout(&c)
            })
            .collect();
        let (a, b) = tokio::join!(post_logout(&gw, &tokens[0]), post_logout(&gw, &tokens[1]));
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(
            statuses.contains(&200) && statuses.contains(&400),
            "round {round}: exactly one wins: {statuses:?}"
        );
        for (sid, status) in sids.iter().zip(statuses) {
            let (found, _) = admin_get(&gw, &format!("/v1/revocations/sid/{sid}")).await;
            let expected = if status == 200 { 200 } else { 404 };
            assert_eq!(found, expected, "round {round}: {sid} answered {status}");
        }
    }
    assert_eq!(stats_counts(&gw).await, (0, 10, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_logout_arriving_late_keeps_the_later_cutoff() {
    let f = start("").await;
    let gw = f.gw;
    let n = now();
    let between = access("u-1", "s-1", n - 10);
    let newer = sign_logout(&logout_claims(Some("s-1"), None, n));
    let older = sign_logout(&logout_claims(Some("s-1"), None, n - 30));
    assert_endpoint_ok(&post_logout(&gw, &newer).await, "newer logout");
    assert_endpoint_ok(
        &post_logout(&gw, &older).await,
        "older logout, delivered late",
    );
    let items = list_revocations(&gw).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        items[0]["issued_before"],
        rfc3339(n),
        "the later cutoff wins"
    );
    assert_eq!(items[0]["expires_at"], rfc3339(n + 3600 + 60));
    assert_token_revoked(&gw, &between, "issued between the two logouts").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_jti_is_kept_until_exp_plus_leeway_then_swept() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let t0 = now();
    let clock = revgate::clock::ManualClock::new(t0);
    let gw = Gateway::start_with_clock(&config_text(upstream, &store, ""), clock.clone()).await;
    let jti = unique_id("kept");
    let first = with(logout_claims(Some("s-1"), None, t0), "jti", json!(jti));
    assert_endpoint_ok(&post_logout(&gw, &sign_logout(&first)).await, "first");

    // A later, otherwise valid token reusing the jti, at exp + leeway of the first.
    let second = with(
        logout_claims(Some("s-2"), None, t0 + 170),
        "jti",
        json!(jti),
    );
    let second = sign_logout(&second);
    clock.set(t0 + 120 + 60);
    assert_invalid(post_logout(&gw, &second).await, "jti still remembered").await;
    let (status, _) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    let (_, stats) = admin_get(&gw, "/v1/stats").await;
    assert_eq!(stats["last_sweep"]["purged_logout_jtis"], 0, "{stats}");

    // One second later the seen jti is due: the sweeper purges it and the jti is free.
    clock.set(t0 + 120 + 61);
    let (status, body) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["purged"], 0, "no revocation is due: {body}");
    let (_, stats) = admin_get(&gw, "/v1/stats").await;
    assert_eq!(stats["last_sweep"]["purged_logout_jtis"], 1, "{stats}");
    assert_eq!(stats["sid"], 1, "{stats}");
    assert_endpoint_ok(&post_logout(&gw, &second).await, "jti free again");
    assert_eq!(stats_counts(&gw).await, (0, 2, 0));
    gw.stop().await;
}

/// Sends the headers of a form POST to `path` on `addr` announcing the whole of `body`,
/// then the body at one byte a second, and reads until the server closes. Returns the
/// answer and the time from the end of the headers to the end of the answer; `None` when
/// no complete answer came within `bound`.
async fn trickle(
    addr: SocketAddr,
    path: &str,
    body: String,
    bound: std::time::Duration,
) -> Option<(u16, String, std::time::Duration)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    wr.write_all(head.as_bytes()).await.expect("headers");
    let sent = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        for b in body.into_bytes() {
            tick.tick().await; // pacing the trickle, not synchronisation
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
    });
    let read = async {
        let mut buf = Vec::new();
        let _ = rd.read_to_end(&mut buf).await;
        buf
    };
    let answer = tokio::time::timeout(bound, read).await;
    let elapsed = sent.elapsed();
    writer.abort();
    let buf = answer.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text, elapsed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_trickling_past_10_s_are_cut_with_408_on_both_public_endpoints() {
    let f = start("").await;
    let gw = f.gw;
    let limit = revgate::endpoints::PUBLIC_BODY_TIMEOUT;
    let bound = limit + std::time::Duration::from_secs(5);
    let logout = sign_logout(&logout_claims(Some("s-slow"), None, now()));
    let own = token("u-slow", "s-slow-2", &unique_id("slow"));
    // Both at once: the test takes the limit once (about 10 s).
    let (bcl, rev) = tokio::join!(
        trickle(
            gw.proxy,
            "/backchannel-logout",
            form(&[("logout_token", &logout)]),
            bound
        ),
        trickle(gw.proxy, "/revoke", form(&[("token", &own)]), bound),
    );
    for (what, answer) in [("back-channel", bcl), ("revoke", rev)] {
        let (status, text, elapsed) =
            answer.unwrap_or_else(|| panic!("{what}: no answer (and no close) within {bound:?}"));
        assert_eq!(status, 408, "{what}: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("\r\ncache-control: no-store\r\n"),
            "{what}: {text}"
        );
        assert!(
            lower.contains("\r\nconnection: close\r\n"),
            "{what}: {text}"
        );
        let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{what}: {text}"));
        assert_eq!(json["error"], "request_timeout", "{what}: {json}");
        assert!(
            elapsed + std::time::Duration::from_millis(50) >= limit,
            "{what}: cut after {elapsed:?}, before the {limit:?} limit"
        );
    }
    // Nothing was recorded, and the same requests sent at once still work.
    assert_eq!(stats_counts(&gw).await, (0, 0, 0));
    assert_endpoint_ok(&post_logout(&gw, &logout).await, "logout sent at once");
    assert_eq!(post_revoke(&gw, &own).await.status().as_u16(), 200);
    assert_eq!(stats_counts(&gw).await, (1, 1, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_exp_keeps_a_seen_jti_only_until_iat_plus_max_age_plus_leeway() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let t0 = now();
    let clock = revgate::clock::ManualClock::new(t0);
    let gw = Gateway::start_with_clock(&config_text(upstream, &store, ""), clock.clone()).await;
    // max_age 5m (default), leeway 60s: the jti is needed until t0 + 360 at most.
    let jti = unique_id("far");
    let far = with(
        with(logout_claims(Some("s-1"), None, t0), "jti", json!(jti)),
        "exp",
        json!(t0 + 1_000_000_000),
    );
    let far = sign_logout(&far);
    assert_endpoint_ok(
        &post_logout(&gw, &far).await,
        "logout with exp 31 years ahead",
    );
    let reuse = sign_logout(&with(
        logout_claims(Some("s-2"), None, t0 + 300),
        "jti",
        json!(jti),
    ));

    // At iat + max_age + leeway the jti is still remembered, and not due.
    clock.set(t0 + 300 + 60);
    assert_invalid(post_logout(&gw, &reuse).await, "jti still remembered").await;
    let (status, _) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        admin_stats(&gw).await["last_sweep"]["purged_logout_jtis"],
        0
    );

    // One second later the first token is refused for its age anyway, so the jti is
    // forgotten: purged by the sweeper, free for another token.
    clock.set(t0 + 300 + 61);
    let desc = assert_invalid(post_logout(&gw, &far).await, "the first token, too old now").await;
    assert!(desc.contains("iat") || desc.contains("old"), "{desc}");
    let (status, _) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    let stats = admin_stats(&gw).await;
    assert_eq!(stats["last_sweep"]["purged_logout_jtis"], 1, "{stats}");
    assert_endpoint_ok(&post_logout(&gw, &reuse).await, "jti free again");
    assert_eq!(stats_counts(&gw).await, (0, 2, 0));
    gw.stop().await;
}
