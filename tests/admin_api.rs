//! Admin API (SPEC §1, §5): revocations of every kind against real tokens through the
//! proxy, merging, expiries, lookup / delete / list, stats and sweep, bad input, the admin
//! token, health and metrics, and the separation of the admin and proxy listeners.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};

/// Leeway and max token lifetime of the test config (`60s`, `1h`).
const LEEWAY: u64 = 60;
const MAX_LIFETIME: u64 = 3600;
/// Tolerance for "now" measured on both sides of a request.
const SLACK: u64 = 5;

async fn start() -> (tempfile::TempDir, Gateway) {
    start_with("").await
}

async fn start_with(extra: &str) -> (tempfile::TempDir, Gateway) {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let gw = Gateway::start(&config_text(echo, &store, extra)).await;
    (dir, gw)
}

#[track_caller]
fn assert_near(actual: u64, expected: u64, what: &str) {
    assert!(
        actual.abs_diff(expected) <= SLACK,
        "{what}: {actual} is not within {SLACK}s of {expected}"
    );
}

/// Asserts the exact record shape of SPEC §5.
#[track_caller]
fn assert_record_shape(record: &Value, kind: &str, value: &str) {
    let obj = record.as_object().expect("record is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "expires_at",
            "issued_before",
            "issuer",
            "kind",
            "reason",
            "revoked_at",
            "source",
            "value"
        ],
        "{record}"
    );
    assert_eq!(record["kind"], kind);
    assert_eq!(record["issuer"], ISS);
    assert_eq!(record["value"], value);
    assert_eq!(record["source"], "admin");
    instant(&record["revoked_at"]);
    instant(&record["expires_at"]);
    if kind == "jti" {
        assert!(record["issued_before"].is_null(), "{record}");
    } else {
        instant(&record["issued_before"]);
    }
}

#[tokio::test]
async fn revoke_each_kind_returns_the_record_and_refuses_matching_tokens() {
    let (_dir, gw) = start().await;
    // Tokens issued before the revocations (sid/sub cut off at "now").
    let victim_jti = token("alice", "s-a", "jti-victim");
    let victim_sid = token("bob", "s-victim", "j-b");
    let victim_sub = token("carol", "s-c", "j-c");
    let bystander = token("dave", "s-d", "j-d");
    for t in [&victim_jti, &victim_sid, &victim_sub, &bystander] {
        assert_passes(&proxy_get(&gw, t).await);
    }

    for (kind, value) in [("jti", "jti-victim"), ("sid", "s-victim"), ("sub", "carol")] {
        let before = now();
        let (status, record) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": value, "reason": "stolen laptop"}),
        )
        .await;
        assert_eq!(status, 201, "{kind}: {record}");
        assert_record_shape(&record, kind, value);
        assert_eq!(record["reason"], "stolen laptop");
        assert!(instant(&record["revoked_at"]) >= before);
    }

    assert_revoked(&proxy_get(&gw, &victim_jti).await);
    assert_revoked(&proxy_get(&gw, &victim_sid).await);
    assert_revoked(&proxy_get(&gw, &victim_sub).await);
    // Other jti / sid / sub values are untouched.
    assert_passes(&proxy_get(&gw, &bystander).await);
    assert_passes(&proxy_get(&gw, &token("alice", "s-a", "jti-other")).await);

    let stats = admin_stats(&gw).await;
    assert_eq!(
        (
            stats["jti"].as_u64(),
            stats["sid"].as_u64(),
            stats["sub"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    gw.stop().await;
}

#[tokio::test]
async fn sid_and_sub_cutoffs_spare_tokens_issued_after_issued_before() {
    let (_dir, gw) = start().await;
    let n = now();
    let cutoff = revgate::clock::rfc3339(n - 60);
    for (kind, value) in [("sub", "erin"), ("sid", "sess-9")] {
        let (status, record) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": value, "issued_before": cutoff}),
        )
        .await;
        assert_eq!(status, 201, "{record}");
        assert_eq!(instant(&record["issued_before"]), n - 60);
    }
    let at = |sub: &str, sid: &str, jti: &str, iat: u64| {
        token_with(sub, sid, jti, |c| {
            c["iat"] = json!(iat);
            c["exp"] = json!(n + 600);
        })
    };
    // sub cut-off.
    assert_revoked(&proxy_get(&gw, &at("erin", "x1", "j1", n - 120)).await);
    assert_revoked(&proxy_get(&gw, &at("erin", "x2", "j2", n - 60)).await);
    assert_passes(&proxy_get(&gw, &at("erin", "x3", "j3", n - 10)).await);
    // sid cut-off.
    assert_revoked(&proxy_get(&gw, &at("u1", "sess-9", "j4", n - 120)).await);
    assert_revoked(&proxy_get(&gw, &at("u2", "sess-9", "j5", n - 60)).await);
    assert_passes(&proxy_get(&gw, &at("u3", "sess-9", "j6", n - 10)).await);
    gw.stop().await;
}

#[tokio::test]
async fn revoking_a_key_twice_merges_into_one_record() {
    let (_dir, gw) = start().await;
    let n = now();
    let later_cutoff = revgate::clock::rfc3339(n - 50);
    let earlier_cutoff = revgate::clock::rfc3339(n - 100);
    let (s1, r1) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sub", "value": "frank", "issued_before": later_cutoff, "ttl": "1h"}),
    )
    .await;
    assert_eq!(s1, 201, "{r1}");
    let (s2, r2) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sub", "value": "frank", "issued_before": earlier_cutoff, "ttl": "2h"}),
    )
    .await;
    assert_eq!(s2, 201, "{r2}");
    // The later issued_before (from the first call) and the later expiry (second call).
    assert_eq!(instant(&r2["issued_before"]), n - 50, "{r2}");
    assert_near(instant(&r2["expires_at"]), n + 7200, "merged expires_at");
    // Stored, not just answered.
    let (status, looked) = admin_get(&gw, "/v1/revocations/sub/frank").await;
    assert_eq!(status, 200);
    assert_eq!(looked["issued_before"], r2["issued_before"]);
    assert_eq!(looked["expires_at"], r2["expires_at"]);

    // A third call with a later cutoff and a shorter ttl moves the cutoff only.
    let (s3, r3) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sub", "value": "frank", "ttl": "10m"}),
    )
    .await;
    assert_eq!(s3, 201, "{r3}");
    assert!(instant(&r3["issued_before"]) >= n, "{r3}");
    assert_eq!(r3["expires_at"], r2["expires_at"]);

    // jti twice: still one record.
    for _ in 0..2 {
        let (s, r) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "jti", "value": "dup"}),
        )
        .await;
        assert_eq!(s, 201, "{r}");
    }
    let stats = admin_stats(&gw).await;
    assert_eq!(stats["sub"], 1, "{stats}");
    assert_eq!(stats["jti"], 1, "{stats}");
    let (_, page) = admin_get(&gw, "/v1/revocations").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    gw.stop().await;
}

#[tokio::test]
async fn ttl_expires_at_and_default_expiries() {
    let (_dir, gw) = start().await;
    let n = now();
    let post = |body: Value| {
        let gw = &gw;
        async move {
            let (s, r) = admin_post(gw, "/v1/revocations", &body).await;
            assert_eq!(s, 201, "{body} -> {r}");
            r
        }
    };
    // Defaults (SPEC §1).
    let r = post(json!({"kind": "jti", "value": "d-jti"})).await;
    assert_near(
        instant(&r["expires_at"]),
        n + MAX_LIFETIME + LEEWAY,
        "jti default",
    );
    let r = post(json!({"kind": "sid", "value": "d-sid"})).await;
    let ib = instant(&r["issued_before"]);
    assert_near(ib, n, "sid issued_before defaults to now");
    assert_eq!(instant(&r["expires_at"]), ib + MAX_LIFETIME + LEEWAY);
    let r = post(
        json!({"kind": "sub", "value": "d-sub", "issued_before": revgate::clock::rfc3339(n - 600)}),
    )
    .await;
    assert_eq!(instant(&r["expires_at"]), n - 600 + MAX_LIFETIME + LEEWAY);
    // Explicit ttl / expires_at replace the default, for any kind.
    let r = post(json!({"kind": "jti", "value": "t-jti", "ttl": "90s"})).await;
    assert_near(instant(&r["expires_at"]), n + 90, "ttl 90s");
    let r = post(json!({"kind": "sub", "value": "t-sub", "ttl": "2h"})).await;
    assert_near(instant(&r["expires_at"]), n + 7200, "ttl 2h");
    let at = n + 86_400;
    let r =
        post(json!({"kind": "sid", "value": "e-sid", "expires_at": revgate::clock::rfc3339(at)}))
            .await;
    assert_eq!(instant(&r["expires_at"]), at);
    // An offset is honoured.
    let with_offset = format!(
        "{}+02:00",
        revgate::clock::rfc3339(at + 7200).trim_end_matches('Z')
    );
    let r = post(json!({"kind": "jti", "value": "e-jti", "expires_at": with_offset})).await;
    assert_eq!(instant(&r["expires_at"]), at);
    gw.stop().await;
}

#[tokio::test]
async fn revoke_by_token() {
    let (_dir, gw) = start().await;
    let n = now();
    let t = token_with("gina", "s-g", "tok-1", |c| c["exp"] = json!(n + 900));
    assert_passes(&proxy_get(&gw, &t).await);
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations/token",
        &json!({"token": t, "reason": "logout"}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_record_shape(&record, "jti", "tok-1");
    assert_eq!(instant(&record["expires_at"]), n + 900 + LEEWAY);
    assert_eq!(record["reason"], "logout");
    assert_revoked(&proxy_get(&gw, &t).await);
    // Same session, other token: unaffected.
    assert_passes(&proxy_get(&gw, &token("gina", "s-g", "tok-2")).await);

    // Tokens that do not verify: 400, nothing stored.
    let forged = sign_forged(&claims("gina", "s-g", "forged-1"));
    let expired = token_with("gina", "s-g", "old-1", |c| {
        c["iat"] = json!(n - 1000);
        c["exp"] = json!(n - 500);
    });
    for bad in [forged.as_str(), expired.as_str(), "not-a-jwt"] {
        let (status, body) = admin_post(&gw, "/v1/revocations/token", &json!({"token": bad})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("token"),
            "{body}"
        );
    }
    let (status, body) = admin_post(&gw, "/v1/revocations/token", &json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("token"),
        "{body}"
    );
    assert_eq!(total_records(&gw).await, 1);
    for v in ["forged-1", "old-1"] {
        assert_eq!(
            admin_get(&gw, &format!("/v1/revocations/jti/{v}")).await.0,
            404
        );
    }

    // A token without jti is revoked by its sha256: id.
    let mut c = claims("hank", "s-h", "unused");
    c.as_object_mut().unwrap().remove("jti");
    let nojti = sign_with("RS256", Some("rsa-1"), None, &c);
    assert_passes(&proxy_get(&gw, &nojti).await);
    let (status, record) = admin_post(&gw, "/v1/revocations/token", &json!({"token": nojti})).await;
    assert_eq!(status, 201, "{record}");
    // SPEC §1: the digest of the JWS signing input `header.payload`.
    let expected = digest_id(&nojti);
    assert_eq!(record["value"], expected.as_str());
    assert_revoked(&proxy_get(&gw, &nojti).await);
    let (status, _) = admin_get(&gw, &revocation_path("jti", &expected)).await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn lookup_delete_and_percent_encoded_values() {
    let (_dir, gw) = start().await;
    let odd_jti = "a/b c:d?e#f%g+h";
    let odd_sid = "urn:session/42 x";
    let t1 = token("ivan", "s-i", odd_jti);
    let t2 = token("judy", odd_sid, "j-judy");
    for (kind, value) in [("jti", odd_jti), ("sid", odd_sid)] {
        let (s, r) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": value}),
        )
        .await;
        assert_eq!(s, 201, "{r}");
    }
    assert_revoked(&proxy_get(&gw, &t1).await);
    assert_revoked(&proxy_get(&gw, &t2).await);

    for (kind, value) in [("jti", odd_jti), ("sid", odd_sid)] {
        let path = revocation_path(kind, value);
        let (status, record) = admin_get(&gw, &path).await;
        assert_eq!(status, 200, "{path}: {record}");
        assert_record_shape(&record, kind, value);
        // With the issuer named explicitly too.
        let (status, _) = admin_get(&gw, &format!("{path}?issuer={}", url_encode(ISS))).await;
        assert_eq!(status, 200);
        // Another kind with the same value: nothing.
        let other = if kind == "jti" { "sub" } else { "jti" };
        let (status, body) = admin_get(&gw, &revocation_path(other, value)).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(admin_delete(&gw, &path).await, 204);
        assert_eq!(admin_get(&gw, &path).await.0, 404);
        assert_eq!(admin_delete(&gw, &path).await, 404);
    }
    // Unrevoke restores access.
    assert_passes(&proxy_get(&gw, &t1).await);
    assert_passes(&proxy_get(&gw, &t2).await);
    assert_eq!(total_records(&gw).await, 0);
    assert_eq!(
        admin_get(&gw, "/v1/revocations/jti/never-revoked").await.0,
        404
    );
    gw.stop().await;
}

/// Follows `next` cursors from `first`; returns every (kind, value) and the page count.
async fn walk(gw: &Gateway, query: &str) -> (Vec<(String, String)>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/revocations?{query}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", url_encode(a)));
        }
        let (status, page) = admin_get(gw, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages += 1;
        assert!(pages < 100, "pagination does not end");
        for r in page["items"].as_array().expect("items") {
            seen.push((
                r["kind"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            ));
        }
        match &page["next"] {
            Value::Null => break,
            Value::String(s) => after = Some(s.clone()),
            other => panic!("next is neither a string nor null: {other}"),
        }
    }
    (seen, pages)
}

#[tokio::test]
async fn list_pages_cover_every_record_exactly_once() {
    let (_dir, gw) = start().await;
    let mut expected = HashSet::new();
    for (kind, n) in [("jti", 7), ("sid", 4), ("sub", 3)] {
        for i in 0..n {
            let value = format!("{kind}-{i}");
            let (s, r) = admin_post(
                &gw,
                "/v1/revocations",
                &json!({"kind": kind, "value": value}),
            )
            .await;
            assert_eq!(s, 201, "{r}");
            expected.insert((kind.to_string(), value));
        }
    }
    for limit in [1usize, 3, 5, 13, 14, 15, 100] {
        let (seen, pages) = walk(&gw, &format!("limit={limit}")).await;
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            seen.len(),
            14,
            "limit {limit}: duplicates or gaps: {seen:?}"
        );
        assert_eq!(unique, expected, "limit {limit}");
        assert!(
            pages >= 14usize.div_ceil(limit),
            "limit {limit}: {pages} pages"
        );
        assert!(
            pages <= 14usize.div_ceil(limit) + 1,
            "limit {limit}: {pages} pages"
        );
    }
    // Without limit: everything on one page (default page size is larger).
    let (status, page) = admin_get(&gw, "/v1/revocations").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 14);
    assert!(page["next"].is_null(), "{page}");
    // kind filter, with pagination.
    for (kind, n) in [("jti", 7), ("sid", 4), ("sub", 3)] {
        let (seen, _) = walk(&gw, &format!("kind={kind}&limit=2")).await;
        assert_eq!(seen.len(), n, "{kind}: {seen:?}");
        assert!(seen.iter().all(|(k, _)| k == kind), "{kind}: {seen:?}");
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), n);
    }
    // Bad list parameters.
    for q in ["kind=foo", "limit=0", "limit=abc", "after=%%%garbage"] {
        let (status, body) = admin_get(&gw, &format!("/v1/revocations?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"], "invalid_request", "{q}: {body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn stats_and_sweep() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let clock = revgate::clock::ManualClock::new(now());
    let gw = Gateway::start_with_clock(&config_text(echo, &store, ""), clock.clone()).await;
    let stats = admin_stats(&gw).await;
    assert_eq!(stats["jti"], 0);
    assert_eq!(stats["sid"], 0);
    assert_eq!(stats["sub"], 0);
    assert!(stats["last_sweep"].is_null(), "{stats}");

    for body in [
        json!({"kind": "jti", "value": "s1", "ttl": "60s"}),
        json!({"kind": "jti", "value": "s2"}),
        json!({"kind": "sid", "value": "s3", "ttl": "60s"}),
        json!({"kind": "sub", "value": "s4"}),
        json!({"kind": "sub", "value": "s5"}),
    ] {
        assert_eq!(admin_post(&gw, "/v1/revocations", &body).await.0, 201);
    }
    let stats = admin_stats(&gw).await;
    assert_eq!(
        (
            stats["jti"].as_u64(),
            stats["sid"].as_u64(),
            stats["sub"].as_u64()
        ),
        (Some(2), Some(1), Some(2)),
        "{stats}"
    );

    let (status, body) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"purged": 0}));
    let stats = admin_stats(&gw).await;
    assert!(stats["last_sweep"].is_object(), "{stats}");

    clock.advance(61);
    let (status, body) = admin_post(&gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"purged": 2}));
    let stats = admin_stats(&gw).await;
    assert_eq!(
        (
            stats["jti"].as_u64(),
            stats["sid"].as_u64(),
            stats["sub"].as_u64()
        ),
        (Some(1), Some(0), Some(2)),
        "{stats}"
    );
    assert_eq!(stats["last_sweep"]["purged"], 2, "{stats}");
    gw.stop().await;
}

/// Every bad `POST /v1/revocations` body: 400 invalid_request naming the field, nothing stored.
#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let (_dir, gw) = start().await;
    let past = revgate::clock::rfc3339(now() - 10);
    let future = revgate::clock::rfc3339(now() + 3600);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"kind": "foo", "value": "bad-1"}), "kind"),
        (json!({"kind": 3, "value": "bad-1"}), "kind"),
        (json!({"value": "bad-1"}), "kind"),
        (
            json!({"kind": "jti", "value": "bad-1", "issuer": "https://unknown.example/"}),
            "issuer",
        ),
        (json!({"kind": "jti", "value": ""}), "value"),
        (json!({"kind": "jti"}), "value"),
        (json!({"kind": "jti", "value": 12}), "value"),
        (
            json!({"kind": "jti", "value": "bad-1", "ttl": "1h", "expires_at": future}),
            "expires_at",
        ),
        (
            json!({"kind": "jti", "value": "bad-1", "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"kind": "jti", "value": "bad-1", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"kind": "jti", "value": "bad-1", "issued_before": past}),
            "issued_before",
        ),
        (
            json!({"kind": "sub", "value": "bad-1", "issued_before": "yesterday"}),
            "issued_before",
        ),
        (
            json!({"kind": "jti", "value": "bad-1", "bogus": 1}),
            "bogus",
        ),
        (
            json!({"kind": "jti", "value": "bad-1", "ttl": "forever"}),
            "ttl",
        ),
        (json!({"kind": "jti", "value": "bad-1", "ttl": "0s"}), "ttl"),
        (json!({"kind": "jti", "value": "bad-1", "ttl": 60}), "ttl"),
        (
            json!({"kind": "jti", "value": "bad-1", "reason": 5}),
            "reason",
        ),
        // Expiries RFC 3339 cannot write (year > 9999) or that never come.
        (
            json!({"kind": "jti", "value": "bad-1", "ttl": "100000y"}),
            "ttl",
        ),
        (
            json!({"kind": "sub", "value": "bad-1", "ttl": "584542046090y"}),
            "ttl",
        ),
        (
            json!({"kind": "sub", "value": "bad-1", "issued_before": "9999-12-31T23:59:59Z"}),
            "issued_before",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = admin_post(&gw, "/v1/revocations", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"], "invalid_request", "{body} -> {answer}");
        let d = answer["error_description"].as_str().unwrap_or_default();
        assert!(
            d.contains(field),
            "{body}: description {d:?} does not name {field}"
        );
        assert_eq!(total_records(&gw).await, 0, "{body} stored something");
        for kind in ["jti", "sub"] {
            assert_eq!(
                admin_get(&gw, &format!("/v1/revocations/{kind}/bad-1"))
                    .await
                    .0,
                404
            );
        }
    }
    // Raw bodies: malformed JSON, non-object JSON.
    for raw in [
        "{\"kind\": \"jti\", \"value\": ",
        "not json",
        "[1,2]",
        "\"jti\"",
        "42",
        "null",
        "",
    ] {
        let resp = client()
            .post(gw.admin_url("/v1/revocations"))
            .header("content-type", "application/json")
            .header("content-length", raw.len().to_string())
            .body(raw.to_string())
            .send()
            .await
            .unwrap();
        let (status, answer) = status_json(resp).await;
        assert_eq!(status, 400, "{raw:?} -> {answer}");
        assert_eq!(answer["error"], "invalid_request", "{raw:?} -> {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
    }
    // A body without Content-Length (chunked, or none at all) is refused as such, never
    // answered as if POST were not a method of this route.
    let chunked =
        reqwest::Body::wrap_stream(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(b"{\"kind\":\"jti\",\"value\":\"chunked-1\"}"),
        )]));
    for body in [chunked, reqwest::Body::from("")] {
        let resp = client()
            .post(gw.admin_url("/v1/revocations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = status_json(resp).await;
        assert!(status == 400 || status == 411, "{status} {answer}");
        assert_eq!(answer["error"], "invalid_request", "{answer}");
    }
    assert_eq!(total_records(&gw).await, 0);
    // Path lookups with bad input.
    let (status, answer) = admin_get(&gw, "/v1/revocations/foo/x").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("kind"),
        "{answer}"
    );
    let (status, answer) = admin_get(&gw, "/v1/revocations/jti/x?issuer=nope").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{answer}"
    );

    // Body over the admin limit: 413, nothing stored.
    let big = json!({"kind": "jti", "value": "big-1", "reason": "x".repeat(70 * 1024)});
    let (status, _) = admin_post(&gw, "/v1/revocations", &big).await;
    assert_eq!(status, 413);
    let huge = format!("{{\"token\":\"{}\"}}", "a".repeat(70 * 1024));
    let resp = client()
        .post(gw.admin_url("/v1/revocations/token"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(total_records(&gw).await, 0);
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/big-1").await.0, 404);
    gw.stop().await;
}

#[tokio::test]
async fn admin_token_protects_everything_but_healthz() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let config = with_server_keys(
        &config_text(echo, &store, ""),
        "admin_token = \"s3cret-admin\"",
    );
    let gw = Gateway::start(&config).await;
    let c = client();
    let body = json!({"kind": "jti", "value": "guarded"});
    // Without a token, with a wrong one, with another scheme: 401, nothing stored.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-admin-x"),
        Some("Basic s3cret-admin"),
        Some("s3cret-admin"),
    ] {
        let mut req = c.post(gw.admin_url("/v1/revocations")).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (status, answer) = status_json(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{auth:?}: {answer}");
        for path in [
            "/v1/stats",
            "/v1/revocations",
            "/v1/revocations/jti/guarded",
            "/metrics",
        ] {
            let mut req = c.get(gw.admin_url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            assert_eq!(
                req.send().await.unwrap().status().as_u16(),
                401,
                "{path} {auth:?}"
            );
        }
        let mut req = c.post(gw.admin_url("/v1/sweep"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "sweep {auth:?}"
        );
    }
    let ok = |req: reqwest::RequestBuilder| req.bearer_auth("s3cret-admin");
    let (status, _) = status_json(
        ok(c.get(gw.admin_url("/v1/revocations/jti/guarded")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "nothing was stored by the refused requests");
    let (status, record) = status_json(
        ok(c.post(gw.admin_url("/v1/revocations")).json(&body))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    for path in [
        "/v1/stats",
        "/v1/revocations",
        "/v1/revocations/jti/guarded",
        "/metrics",
    ] {
        let status = ok(c.get(gw.admin_url(path)))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200, "{path}");
    }
    let status = ok(c.delete(gw.admin_url("/v1/revocations/jti/guarded")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 204);
    // The scheme is case-insensitive.
    let status = c
        .get(gw.admin_url("/v1/stats"))
        .header("authorization", "bearer s3cret-admin")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 200);
    // healthz needs no token.
    let (status, health) = admin_get(&gw, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    gw.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics_move() {
    let (_dir, gw) = start().await;
    let (status, health) = admin_get(&gw, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");

    let allowed = "revgate_requests_total{outcome=\"allowed\"}";
    let revoked = "revgate_requests_total{outcome=\"revoked\"}";
    let invalid = "revgate_requests_total{outcome=\"invalid_token\"}";
    let hits = "revgate_revocation_hits_total{kind=\"jti\"}";
    let sid_entries = "revgate_store_entries{kind=\"sid\"}";
    let sweeps = "revgate_sweeps_total";
    let resp = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let m0 = resp.text().await.unwrap();
    for name in [allowed, revoked, invalid, hits, sid_entries, sweeps] {
        assert!(metric_in(&m0, name).is_some(), "{name} missing in:\n{m0}");
    }
    assert!(m0.contains("# TYPE revgate_requests_total counter"), "{m0}");

    let t = token("kim", "s-k", "m-jti");
    assert_passes(&proxy_get(&gw, &t).await);
    assert_eq!(
        admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "jti", "value": "m-jti"})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "sid", "value": "m-sid"})
        )
        .await
        .0,
        201
    );
    assert_revoked(&proxy_get(&gw, &t).await);
    assert_eq!(admin_post(&gw, "/v1/sweep", &json!({})).await.0, 200);

    let m1 = metrics_text(&gw).await;
    let delta = |name: &str| metric_in(&m1, name).unwrap() - metric_in(&m0, name).unwrap();
    assert_eq!(delta(allowed), 1.0, "{m1}");
    assert_eq!(
        delta(revoked),
        1.0,
        "a revocation refusal counts as revoked: {m1}"
    );
    assert_eq!(delta(invalid), 0.0, "and not as invalid_token: {m1}");
    assert_eq!(delta(hits), 1.0, "{m1}");
    assert_eq!(delta(sid_entries), 1.0, "{m1}");
    assert!(delta(sweeps) >= 1.0, "{m1}");
    gw.stop().await;
}

#[tokio::test]
async fn admin_api_is_not_reachable_on_the_proxy_listener() {
    let (_dir, gw) = start().await;
    let body = json!({"kind": "jti", "value": "via-proxy"});
    let c = client();
    // Without a token: refused by the proxy.
    let resp = c
        .post(gw.url("/v1/revocations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // With a valid token: forwarded to the upstream, not handled as an admin call.
    let t = token("leo", "s-l", "j-leo");
    let (status, answer) = status_json(
        c.post(gw.url("/v1/revocations"))
            .bearer_auth(&t)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        status == 200 || status == 404 || status == 405,
        "{status} {answer}"
    );
    if status == 200 {
        assert_eq!(answer["echo"], true, "answered by the upstream: {answer}");
        assert_eq!(answer["path"], "/v1/revocations");
    }
    let (status, answer) = status_json(get_with(&gw.url("/v1/stats"), &t).await).await;
    assert!(answer.get("jti").is_none(), "{status} {answer}");
    let (status, answer) = status_json(
        c.post(gw.url("/v1/revocations/token"))
            .bearer_auth(&t)
            .json(&json!({"token": t}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(answer.get("kind").is_none(), "{status} {answer}");
    assert_eq!(total_records(&gw).await, 0);
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/via-proxy").await.0, 404);
    assert_passes(&proxy_get(&gw, &t).await);
    gw.stop().await;
}

#[tokio::test]
async fn two_issuers_need_an_explicit_issuer() {
    let second = format!(
        r#"
[[issuer]]
issuer = "https://idp2.test/"
audiences = ["{AUD}"]
jwks_file = "{}"
"#,
        key_path("jwks.json")
    );
    let (_dir, gw) = start_with(&second).await;
    let (status, answer) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "two-1"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_request");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{answer}"
    );
    assert_eq!(total_records(&gw).await, 0);

    // Scoped to the second issuer: a token of the first issuer with that jti still passes.
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "two-1", "issuer": "https://idp2.test/"}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["issuer"], "https://idp2.test/");
    assert_passes(&proxy_get(&gw, &token("m", "s-m", "two-1")).await);
    let (status, answer) = admin_get(&gw, "/v1/revocations/jti/two-1").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{answer}"
    );
    let (status, _) = admin_get(
        &gw,
        &format!(
            "/v1/revocations/jti/two-1?issuer={}",
            url_encode("https://idp2.test/")
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin_get(
        &gw,
        &format!("/v1/revocations/jti/two-1?issuer={}", url_encode(ISS)),
    )
    .await;
    assert_eq!(status, 404);

    // Now for the first issuer: the token is refused.
    let (status, _) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "two-1", "issuer": ISS}),
    )
    .await;
    assert_eq!(status, 201);
    assert_revoked(&proxy_get(&gw, &token("m", "s-m", "two-1")).await);
    gw.stop().await;
}

#[tokio::test]
async fn values_up_to_the_store_limit_are_revoked_and_enforced_everywhere() {
    let (_dir, gw) = start().await;
    let max = revgate::store::MAX_VALUE_BYTES;
    assert_eq!(
        max,
        8 * 1024,
        "SPEC: tokens and the store allow 8 KiB values"
    );
    let n = now();
    // A 1500-byte sub (over the old admin limit of 1024) in a real token, which passes ...
    let sub = format!("u-{}", "x".repeat(1498));
    assert_eq!(sub.len(), 1500);
    let mut claims = claims(&sub, "s-long", &unique_id("long"));
    claims["iat"] = json!(n - 5);
    let long = sign_with("RS256", Some("rsa-1"), None, &claims);
    assert_eq!(proxy_status(&gw, &long).await, 200);
    // ... until the admin API revokes that sub; then the token is refused as revoked.
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sub", "value": sub}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["value"], sub.as_str());
    assert_revoked(&proxy_get(&gw, &long).await);
    let (status, found) = admin_get(&gw, &revocation_path("sub", &sub)).await;
    assert_eq!(status, 200, "{found}");

    // Exactly the store's limit is accepted for every kind; one byte more is refused by
    // name, with the limit, and nothing is stored.
    for kind in ["jti", "sid", "sub"] {
        let at_limit = format!("{kind}{}", "v".repeat(max - kind.len()));
        let (status, record) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": at_limit}),
        )
        .await;
        assert_eq!(status, 201, "{kind} of {max} bytes: {record}");
        let over = format!("{at_limit}v");
        let (status, answer) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": over}),
        )
        .await;
        assert_eq!(status, 400, "{kind} of {} bytes: {answer}", max + 1);
        let desc = answer["error_description"].as_str().unwrap_or_default();
        assert!(
            desc.starts_with("value:") && desc.contains(&max.to_string()),
            "{desc}"
        );
    }
    assert_eq!(total_records(&gw).await, 4);

    // Imports take the same limit.
    let line = |value: &str| {
        json!({"kind": "sub", "issuer": ISS, "value": value,
            "revoked_at": "2024-01-01T00:00:00Z", "issued_before": "2024-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z"})
        .to_string()
    };
    let body = format!(
        "{}\n{}\n",
        line(&format!("imp-{}", "y".repeat(1496))),
        line(&"z".repeat(max + 1))
    );
    let (status, summary) = status_json(
        client()
            .post(gw.admin_url("/v1/import"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["imported"], 1, "{summary}");
    assert_eq!(summary["rejected"][0]["line"], 2, "{summary}");
    let error = summary["rejected"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("value") && error.contains(&max.to_string()),
        "{summary}"
    );
    assert_eq!(total_records(&gw).await, 5);
    gw.stop().await;
}

/// `POST /v1/import` with `body` (NDJSON) and the query `query`.
async fn import_raw(gw: &Gateway, query: &str, body: &str) -> (u16, Value) {
    status_json(
        client()
            .post(gw.admin_url(&format!("/v1/import{query}")))
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_its_document_refuses() {
    let (_dir, gw) = start().await;
    let refused = |answer: &(u16, Value), what: &str, field: &str| {
        assert_eq!(answer.0, 400, "{what}: {}", answer.1);
        let d = answer.1["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(field), "{what}: {d:?} does not name {field}");
    };
    // Empty query values are not "absent": kind= and limit= name nothing, issuer= no issuer.
    refused(
        &admin_get(&gw, "/v1/revocations?kind=").await,
        "list kind=",
        "kind",
    );
    refused(
        &admin_get(&gw, "/v1/revocations?limit=").await,
        "list limit=",
        "limit",
    );
    let resp = client()
        .get(gw.admin_url("/v1/export?kind="))
        .send()
        .await
        .unwrap();
    refused(&status_json(resp).await, "export kind=", "kind");
    refused(
        &admin_get(&gw, "/v1/revocations/jti/x?issuer=").await,
        "lookup issuer=",
        "issuer",
    );
    let resp = client()
        .delete(gw.admin_url("/v1/revocations/jti/x?issuer="))
        .send()
        .await
        .unwrap();
    refused(&status_json(resp).await, "delete issuer=", "issuer");
    // dry_run is a boolean: true or false.
    for bad in ["1", "0", "", "yes"] {
        let answer = import_raw(&gw, &format!("?dry_run={bad}"), "\n").await;
        refused(&answer, &format!("dry_run={bad}"), "dry_run");
    }
    // A request without a body is no import; a body of blank lines is an import of nothing.
    refused(&import_raw(&gw, "", "").await, "empty import body", "body");
    let (status, summary) = import_raw(&gw, "?dry_run=false", "\n\n").await;
    assert_eq!(
        (status, summary["imported"].as_u64()),
        (200, Some(0)),
        "{summary}"
    );

    // Members typed as strings are strings: null is refused, not read as absent.
    let future = revgate::clock::rfc3339(now() + 3600);
    for (body, field) in [
        (json!({"kind": "jti", "value": "n-1", "ttl": null}), "ttl"),
        (
            json!({"kind": "jti", "value": "n-1", "ttl": null, "expires_at": future}),
            "ttl",
        ),
        (
            json!({"kind": "jti", "value": "n-1", "issuer": null}),
            "issuer",
        ),
        (
            json!({"kind": "jti", "value": "n-1", "expires_at": null}),
            "expires_at",
        ),
        (
            json!({"kind": "sub", "value": "n-1", "issued_before": null}),
            "issued_before",
        ),
        // Instants are RFC 3339 date-times, exactly: no trailing text, an offset required.
        (
            json!({"kind": "jti", "value": "n-1", "expires_at": format!("{future}*")}),
            "expires_at",
        ),
        (
            json!({"kind": "jti", "value": "n-1", "expires_at": future.trim_end_matches('Z')}),
            "expires_at",
        ),
        (
            json!({"kind": "jti", "value": "n-1", "expires_at": future.replace('T', " ")}),
            "expires_at",
        ),
        (
            json!({"kind": "sub", "value": "n-1", "issued_before": "2024-01-01T00:00:00Zx"}),
            "issued_before",
        ),
    ] {
        refused(
            &admin_post(&gw, "/v1/revocations", &body).await,
            &body.to_string(),
            field,
        );
    }
    assert_eq!(total_records(&gw).await, 0);
    // reason may be null (no reason), as the document says; offsets are fine.
    let offset = revgate::clock::rfc3339(now() + 7200).replace('Z', "+00:00");
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "n-2", "reason": null, "expires_at": offset}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["reason"], Value::Null);

    // Any base64url text is a cursor (a position in key order); other text is not.
    for after in ["AAAA", "AA", "_w", "AQAAAA"] {
        let (status, page) = admin_get(&gw, &format!("/v1/revocations?after={after}")).await;
        assert_eq!(status, 200, "after={after}: {page}");
    }
    let (_, page) = admin_get(&gw, "/v1/revocations?after=AA").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "kind byte 0 sorts first: {page}"
    );
    let (_, page) = admin_get(&gw, "/v1/revocations?after=_w").await;
    assert_eq!(
        page["items"],
        json!([]),
        "byte 0xff sorts after every kind: {page}"
    );
    for bad in ["A", "!!", "a b", "AAAA="] {
        refused(
            &admin_get(&gw, &format!("/v1/revocations?after={}", url_encode(bad))).await,
            &format!("after={bad}"),
            "after",
        );
    }
    gw.stop().await;
}
