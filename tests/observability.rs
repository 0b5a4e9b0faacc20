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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_latency_is_a_histogram_by_route() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let extra = format!(
        "[[route]]\nprefix = \"/dead\"\nupstream = \"http://{}\"\ntimeout = \"2s\"\n",
        dead_addr()
    );
    let gw = Gateway::start(&config_text(upstream, &store, &extra)).await;
    let valid = token("up", "s-up", &unique_id("up"));
    for _ in 0..3 {
        assert_passes(&proxy_get(&gw, &valid).await);
    }
    // Refused before the upstream (scope): not timed.
    assert_eq!(
        get_with(&gw.url("/admin-area/x"), &valid)
            .await
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        get_with(&gw.url("/public/x"), "x").await.status().as_u16(),
        200
    );
    // An upstream that refuses the connection: timed too (502).
    assert_eq!(
        get_with(&gw.url("/dead/x"), &valid).await.status().as_u16(),
        502
    );

    let m = metrics_text(&gw).await;
    assert!(
        m.contains("# TYPE revgate_upstream_seconds histogram"),
        "{m}"
    );
    let count = |route: &str| {
        metric_in(
            &m,
            &format!("revgate_upstream_seconds_count{{route=\"{route}\"}}"),
        )
        .unwrap_or_else(|| panic!("no upstream count for {route}:\n{m}"))
    };
    assert_eq!(count("/"), 3.0);
    assert_eq!(count("/public"), 1.0);
    assert_eq!(count("/admin-area"), 0.0);
    assert_eq!(count("/dead"), 1.0);
    let inf = metric_in(
        &m,
        "revgate_upstream_seconds_bucket{route=\"/\",le=\"+Inf\"}",
    )
    .unwrap();
    assert_eq!(inf, 3.0);
    let top = metric_in(&m, "revgate_upstream_seconds_bucket{route=\"/\",le=\"30\"}").unwrap();
    let low = metric_in(
        &m,
        "revgate_upstream_seconds_bucket{route=\"/\",le=\"0.001\"}",
    )
    .unwrap();
    assert!(low <= top && top <= inf, "cumulative: {low} {top} {inf}");
    assert!(metric_in(&m, "revgate_upstream_seconds_sum{route=\"/\"}").unwrap() > 0.0);
    assert_eq!(gw.app.snapshot().routes.upstream_count("/"), 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_results_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_echo().await;
    let text = config_text(upstream, &dir.path().join("store.db"), "");
    let path = write_config_file(dir.path(), &text);
    let gw = Gateway::start_from_file(&path).await;
    let ok = "revgate_reloads_total{result=\"ok\"}";
    let refused = "revgate_reloads_total{result=\"refused\"}";
    assert_eq!((metric(&gw, ok).await, metric(&gw, refused).await), (0, 0));
    assert_eq!(admin_reload(&gw).await.0, 200);
    write_config(&path, &with_server_keys(&text, "bogus = 1"));
    assert_eq!(admin_reload(&gw).await.0, 400);
    assert_eq!(admin_reload(&gw).await.0, 400);
    assert_eq!((metric(&gw, ok).await, metric(&gw, refused).await), (1, 2));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_and_process_metrics_describe_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_echo().await;
    let path = write_config_file(
        dir.path(),
        &config_text(upstream, &dir.path().join("store.db"), ""),
    );
    let mut child = ServeChild::start(&path).await;
    let m = metrics_text(&child).await;
    // revgate_build_info{version,commit} 1, the commit of this checkout.
    let line = m
        .lines()
        .find(|l| l.starts_with("revgate_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{m}"));
    assert!(
        line.starts_with(&format!(
            "revgate_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    assert!(line.ends_with("\"} 1"), "{line}");
    let commit = line
        .split("commit=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches("\"} 1");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(commit, head, "built from this checkout's HEAD"),
        None => assert_eq!(commit, "unknown", "not a git checkout"),
    }

    // process_* from /proc, matching what /proc says about the child itself.
    let pid = child.pid();
    let value = |name: &str| metric_in(&m, name).unwrap_or_else(|| panic!("no {name}:\n{m}"));
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(
            m.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {m}"
        );
    }
    let rss = value("process_resident_memory_bytes");
    let proc_rss = (vm_rss_kib(pid) * 1024) as f64;
    assert!(
        rss > 1e6 && (rss - proc_rss).abs() < proc_rss * 0.5,
        "rss {rss} vs /proc {proc_rss}"
    );
    let fds = value("process_open_fds");
    let proc_fds = open_fds(pid) as f64;
    assert!(
        fds >= 5.0 && (fds - proc_fds).abs() <= 8.0,
        "fds {fds} vs /proc {proc_fds}"
    );
    assert!(value("process_max_fds") >= fds);
    let started = value("process_start_time_seconds");
    let now = now() as f64;
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "start {started}, now {now}"
    );
    // (that CPU seconds advance is checked in revgate::metrics::process's unit tests)
    assert!(value("process_cpu_seconds_total").is_finite());
    child.sigterm();
    child.wait_exit(WAIT).await.expect("exit after SIGTERM");
}
