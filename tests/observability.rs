//! Observability (SPEC §7): one `info` line per refused request with its reason, `kid`
//! and `jti` but never the token, in the JSON log format; request ids; and the metrics the
//! README documents (per-route outcomes, the decision latency histogram).

mod common;

use common::*;
use serde_json::{json, Value};

/// The JSON log lines of `child` whose message is `message`.
fn json_lines(child: &ServeChild, message: &str) -> Vec<Value> {
    child
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

#[tokio::test]
async fn refused_requests_are_logged_as_json_with_reason_kid_and_jti_but_never_the_token() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let path = dir.path().join("revgate.toml");
    write_config(
        &path,
        &with_server_keys(&config_text(upstream, &store, ""), "log_format = \"json\""),
    );
    let mut child = ServeChild::start(&path).await;

    let revoked_jti = unique_id("logged-revoked");
    let revoked = token("rita", "s-rita", &revoked_jti);
    let (status, _) = admin_post(
        child.admin,
        "/v1/revocations",
        &json!({"kind": "jti", "value": revoked_jti}),
    )
    .await;
    assert_eq!(status, 201);
    let forged_jti = unique_id("logged-forged");
    let forged = sign_forged(&claims("eve", "s-eve", &forged_jti));

    for (token, request_id) in [(&revoked, "req-revoked"), (&forged, "req-forged")] {
        let resp = client()
            .get(format!("http://{}/api/x", child.proxy))
            .bearer_auth(token)
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(resp.headers()["x-request-id"], request_id);
    }
    // A later accepted request flushes nothing special, but proves the order of lines.
    let valid = token("vic", "s-vic", &unique_id("valid"));
    assert_passes(&proxy_get(child.proxy, &valid).await);
    child.sigterm();
    assert!(child.wait_exit(WAIT).await.is_some_and(|s| s.success()));

    let rejected = json_lines(&child, "request rejected");
    let by_id = |id: &str| {
        rejected
            .iter()
            .find(|v| v["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no rejected line for {id}:\n{}", child.log_text()))
            .clone()
    };
    let line = by_id("req-revoked");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{line}"
    );
    assert_eq!(line["fields"]["kid"], "rsa-1", "{line}");
    assert_eq!(line["fields"]["jti"], revoked_jti.as_str(), "{line}");
    let line = by_id("req-forged");
    assert!(
        line["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{line}"
    );
    assert_eq!(line["fields"]["kid"], "rsa-1", "{line}");
    assert_eq!(line["fields"]["jti"], forged_jti.as_str(), "{line}");

    let log = child.log_text();
    for token in [&revoked, &forged, &valid] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token appears in the log");
    }
    // Every line is JSON in this format.
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
}

#[tokio::test]
async fn decision_histogram_and_route_outcomes_count_requests() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let before = gw.app.metrics.decisions();
    let valid = token("vic", "s-vic", &unique_id("valid"));
    assert_passes(&proxy_get(&gw, &valid).await);
    assert_eq!(
        get_with(&gw.url("/admin-area/x"), &valid)
            .await
            .status()
            .as_u16(),
        403
    );
    // Public route: no decision.
    assert_eq!(
        get_with(&gw.url("/public/x"), "x").await.status().as_u16(),
        200
    );
    assert_eq!(gw.app.metrics.decisions() - before, 2);

    let m = metrics_text(&gw).await;
    let series = |route: &str, outcome: &str| {
        metric_in(
            &m,
            &format!("revgate_route_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}}"),
        )
        .unwrap_or_else(|| panic!("{route} {outcome} missing:\n{m}"))
    };
    assert_eq!(series("/", "allowed"), 1.0);
    assert_eq!(series("/admin-area", "forbidden"), 1.0);
    assert_eq!(series("/public", "public"), 1.0);
    assert_eq!(series("none", "no_route"), 0.0);
    assert!(
        m.contains("# TYPE revgate_decision_seconds histogram"),
        "{m}"
    );
    assert!(
        m.contains("# TYPE revgate_route_requests_total counter"),
        "{m}"
    );
    let count = metric_in(&m, "revgate_decision_seconds_count").unwrap();
    let inf = metric_in(&m, "revgate_decision_seconds_bucket{le=\"+Inf\"}").unwrap();
    assert_eq!(count, inf);
    assert!(count >= 2.0);
    assert!(metric_in(&m, "revgate_decision_seconds_sum").unwrap() > 0.0);
    gw.stop().await;
}
