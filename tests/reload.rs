//! Configuration reload (SPEC §7): `POST /v1/reload` and `SIGHUP` re-read the config file;
//! routes, upstreams, issuers and limits change under load without a failed request or a
//! lost revocation; a bad file is refused with the key named, the running config stays,
//! and `check-config` says exactly the same about the same file.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// Second issuer added by a reload (same test keys, different `iss`).
const ISS2: &str = "https://idp2.test/";

/// The reload tests' config: the harness config plus `extra` TOML (routes, issuers).
fn config_file_text(upstream: std::net::SocketAddr, store: &Path, extra: &str) -> String {
    config_text(upstream, store, "").replace("[store]", &format!("{extra}\n[store]"))
}

/// A second `[[issuer]]` table for [`ISS2`].
fn issuer2() -> String {
    format!(
        "[[issuer]]\nissuer = \"{ISS2}\"\naudiences = [\"{AUD}\"]\njwks_file = \"{}\"\n",
        key_path("jwks.json")
    )
}

/// What one load task saw that it should not have.
type Failures = Arc<Mutex<Vec<String>>>;

/// Runs requests in a loop (each task with its own keep-alive client, so connections
/// span the reload) until `stop` is set or the [`WAIT`] bound passes. Every answer must be
/// the expected one for its path: `/api/x` with a valid token 200, with a revoked token
/// 401 revoked, `/v2/x` served by the `/` route until the new `/v2` route (another upstream,
/// with a base path) is in force and by that route from then on — never back.
#[allow(clippy::too_many_arguments)]
fn spawn_load(
    proxy: std::net::SocketAddr,
    valid: String,
    revoked: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    progress: Arc<tokio::sync::Notify>,
    notify_at: Vec<usize>,
    failures: Failures,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = client();
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut v2_live = false;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
            i += 1;
            let (path, token) = match i % 3 {
                0 => ("/api/x", &valid),
                1 => ("/api/x", &revoked),
                _ => ("/v2/x", &valid),
            };
            let answer = http
                .get(format!("http://{proxy}{path}"))
                .bearer_auth(token)
                .send()
                .await;
            let problem = match answer {
                Err(e) => Some(format!("{path}: connection error {e}")),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    match (i % 3, status) {
                        (0, 200) if body["echo"] == true => None,
                        (1, 401)
                            if body["error_description"]
                                .as_str()
                                .is_some_and(|d| d.contains("revoked")) =>
                        {
                            None
                        }
                        (2, 200) if !v2_live && body["path"] == "/v2/x" => None,
                        (2, 200) if body["path"] == "/two/v2/x" => {
                            v2_live = true;
                            None
                        }
                        _ => Some(format!("{path} (v2 live: {v2_live}): {status} {body}")),
                    }
                }
            };
            if let Some(p) = problem {
                failures.lock().unwrap().push(p);
            }
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if notify_at.contains(&n) {
                progress.notify_one();
            }
        }
    })
}

/// Waits (bounded) for the load tasks' next progress notification.
async fn wait_progress(progress: &tokio::sync::Notify, what: &str) {
    tokio::time::timeout(WAIT, progress.notified())
        .await
        .unwrap_or_else(|_| panic!("load made no progress within {WAIT:?}: {what}"));
}

#[tokio::test]
async fn routes_and_issuers_change_under_load_without_a_failed_request_or_a_lost_revocation() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let upstream2 = start_echo().await;
    let path = dir.path().join("revgate.toml");
    write_config(&path, &config_file_text(upstream, &store, ""));
    let gw = Gateway::start_from_file(&path).await;

    // Revocations made before the reload, of each kind.
    let jti = unique_id("jti-before");
    let revoked = token("rita", "s-rita", &jti);
    assert_eq!(
        admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "jti", "value": jti})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "sid", "value": "s-sam"})
        )
        .await
        .0,
        201
    );
    let sam = token("sam", "s-sam", &unique_id("sam"));
    let stats_before = admin_stats(&gw).await;

    let valid = token("vic", "s-vic", &unique_id("valid"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let failures: Failures = Arc::default();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            spawn_load(
                gw.proxy,
                valid.clone(),
                revoked.clone(),
                stop.clone(),
                done.clone(),
                progress.clone(),
                vec![60, 400],
                failures.clone(),
            )
        })
        .collect();
    wait_progress(&progress, "before the reload").await;

    // Add a route to another upstream (with a base path) and a second issuer.
    let extra = format!(
        "{}\n{}",
        route_table("/v2", &format!("http://{upstream2}/two"), ""),
        issuer2()
    );
    write_config(&path, &config_file_text(upstream, &store, &extra));
    let (status, report) = admin_reload(gw.admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reloaded"], true, "{report}");
    assert_eq!(report["changed"], json!(["issuer", "route"]), "{report}");
    assert_eq!(report["needs_restart"], json!([]), "{report}");
    assert_eq!(report["routes"], 4);
    assert_eq!(report["issuers"], 2);

    // In force at once: the new route, the new issuer.
    let (status, body) = status_json(get_with(&gw.url("/v2/x"), &valid).await).await;
    assert_eq!(
        (status, body["path"].clone()),
        (200, json!("/two/v2/x")),
        "{body}"
    );
    let from_iss2 = token_with("ivy", "s-ivy", &unique_id("iss2"), |c| {
        c["iss"] = json!(ISS2)
    });
    assert_passes(&proxy_get(&gw, &from_iss2).await);

    wait_progress(&progress, "after the reload").await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .expect("load task ends")
            .unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "requests failed across the reload: {failures:#?}"
    );
    assert!(done.load(Ordering::Relaxed) >= 400);

    // No revocation lost or changed.
    assert_revoked(&proxy_get(&gw, &revoked).await);
    assert_revoked(&proxy_get(&gw, &sam).await);
    // The stats are the same but for the per-issuer logout rows, which follow the
    // configured issuers: the new one joins with nothing counted.
    let mut stats_after = admin_stats(&gw).await;
    let mut expected_logouts = stats_before["logouts"].as_array().unwrap().clone();
    expected_logouts
        .push(json!({"issuer": ISS2, "accepted": 0, "refused": 0, "last_refusal": null}));
    assert_eq!(
        stats_after["logouts"].take(),
        json!(expected_logouts),
        "{stats_after}"
    );
    let mut stats_before = stats_before;
    stats_before["logouts"].take();
    assert_eq!(stats_after, stats_before);

    // The per-route counters follow the new routes.
    let m = metrics_text(&gw).await;
    let v2 = metric_in(
        &m,
        "revgate_route_requests_total{route=\"/v2\",outcome=\"allowed\"}",
    );
    assert!(v2.is_some_and(|n| n >= 1.0), "{m}");
    let none = metric_in(
        &m,
        "revgate_route_requests_total{route=\"none\",outcome=\"no_route\"}",
    );
    assert!(none.is_some(), "{m}");
    assert!(
        m.contains("revgate_decision_seconds_bucket{le=\"+Inf\"}"),
        "{m}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_bad_config_is_refused_with_the_key_named_and_check_config_says_the_same() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let path = dir.path().join("revgate.toml");
    let good = config_file_text(
        upstream,
        &store,
        &route_table("/v2", &format!("http://{upstream}/two"), ""),
    );
    write_config(&path, &good);
    let gw = Gateway::start_from_file(&path).await;
    let valid = token("vic", "s-vic", &unique_id("valid"));
    let revoked = token("rita", "s-rita", &unique_id("rev"));
    let (status, _) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "sid", "value": "s-rita"}),
    )
    .await;
    assert_eq!(status, 201);

    let bad_jwks = dir.path().join("bad-jwks.json");
    std::fs::write(&bad_jwks, "{\"not\": \"a jwk set\"}").unwrap();
    let cases: Vec<(String, &str, String)> = vec![
        (
            "unknown key".into(),
            "colour",
            good.replacen("[[route]]\n", "[[route]]\ncolour = \"red\"\n", 1),
        ),
        (
            "invalid value".into(),
            "route[3].timeout",
            good.replace(
                "prefix = \"/v2\"",
                "prefix = \"/v2\"\ntimeout = \"0s\"",
            ),
        ),
        (
            "TOML syntax".into(),
            "line",
            format!("{good}\n[[route]\n"),
        ),
        (
            "jwks_file that does not parse".into(),
            "issuer[1].jwks_file",
            config_file_text(
                upstream,
                &store,
                &format!(
                    "{}\n[[issuer]]\nissuer = \"{ISS2}\"\naudiences = [\"{AUD}\"]\njwks_file = \"{}\"\n",
                    route_table("/v2", &format!("http://{upstream}/two"), ""),
                    bad_jwks.display()
                ),
            ),
        ),
        (
            "non-loopback admin without a token (kept admin_listen re-validated)".into(),
            "server.admin_listen",
            good.replace("admin_listen = \"127.0.0.1:0\"", "admin_listen = \"0.0.0.0:0\""),
        ),
    ];
    for (case, key, text) in cases {
        write_config(&path, &text);
        let (status, body) = admin_reload(gw.admin).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_request", "{case}: {body}");
        let description = body["error_description"].as_str().unwrap().to_string();
        assert!(
            description.contains(key),
            "{case}: {description:?} should name {key}"
        );

        // The running configuration stays: old routes serve, revocations hold.
        let (status, body) = status_json(get_with(&gw.url("/v2/x"), &valid).await).await;
        assert_eq!(
            (status, body["path"].clone()),
            (200, json!("/two/v2/x")),
            "{case}"
        );
        assert_passes(&proxy_get(&gw, &valid).await);
        assert_revoked(&proxy_get(&gw, &revoked).await);

        // check-config reports exactly what reload refused with.
        let out = run_revgate(
            &["check-config", "--config", path.to_str().unwrap()],
            &[],
            dir.path(),
        )
        .await;
        assert_eq!(out.status.code(), Some(64), "{case}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim_end().ends_with(&description),
            "{case}: check-config said {stderr:?}, reload said {description:?}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{case}: one line: {stderr:?}"
        );
    }

    // Fixed again: reload and check-config accept it.
    write_config(&path, &good);
    assert_eq!(admin_reload(gw.admin).await.0, 200);
    let out = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}

#[tokio::test]
async fn limits_admin_token_and_sweep_interval_apply_and_restart_keys_are_reported() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let path = dir.path().join("revgate.toml");
    let good = config_file_text(upstream, &store, "");
    write_config(&path, &good);
    let gw = Gateway::start_from_file(&path).await;
    let valid = token("vic", "s-vic", &unique_id("valid"));
    // Kept for a second; the sweeper runs hourly until the reload.
    let (status, _) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "short-lived", "ttl": "1s"}),
    )
    .await;
    assert_eq!(status, 201);

    let other_store = dir.path().join("elsewhere.db");
    let changed = with_server_keys(
        &good,
        "admin_token = \"new-admin-token\"\nmax_body_bytes = 1024",
    )
    .replace(
        "listen = \"127.0.0.1:0\"\nadmin_listen",
        "listen = \"127.0.0.1:1\"\nadmin_listen",
    )
    .replace(
        &format!("path = \"{}\"", store.display()),
        &format!("path = \"{}\"", other_store.display()),
    )
    .replace("sweep_interval = \"1h\"", "sweep_interval = \"1s\"");
    write_config(&path, &changed);
    let (status, report) = admin_reload(gw.admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["needs_restart"],
        json!(["server.listen", "store.path"]),
        "{report}"
    );
    assert_eq!(report["changed"], json!(["server", "store"]), "{report}");

    // Restart-only keys kept their running values; the rest applies.
    let config = gw.app.config();
    assert_eq!(config.server.listen.port(), 0);
    assert_eq!(config.store.path, store);
    assert_passes(&proxy_get(&gw, &valid).await);
    let resp = client()
        .post(gw.url("/api/x"))
        .bearer_auth(&valid)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "max_body_bytes applies");
    assert_eq!(
        admin_get(&gw, "/v1/stats").await.0,
        401,
        "admin_token applies"
    );
    assert_eq!(admin_reload(gw.admin).await.0, 401);

    // The sweeper follows the new interval: the expired record goes within the bound.
    let admin = gw.with_token("new-admin-token");
    eventually(
        "the expired record swept after the interval changed",
        || async { admin_stats(admin).await["jti"] == 0 },
    )
    .await;
    assert!(
        !other_store.exists(),
        "store.path needs a restart: nothing opened there"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_without_a_config_file_refuses_reload() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let (status, body) = admin_reload(gw.admin).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no config file"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_serving_process_and_a_bad_file_keeps_it_running() {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let path = dir.path().join("revgate.toml");
    write_config(&path, &config_file_text(upstream, &store, ""));
    let mut child = ServeChild::start(&path).await;
    let valid = token("vic", "s-vic", &unique_id("valid"));
    let revoked = token("rita", "s-rita", &unique_id("rev"));
    let (status, _) = admin_post(
        child.admin,
        "/v1/revocations",
        &json!({"kind": "sub", "value": "rita"}),
    )
    .await;
    assert_eq!(status, 201);
    let v2 = format!("http://{}/v2/x", child.proxy);
    let (status, body) = status_json(get_with(&v2, &valid).await).await;
    assert_eq!(
        (status, body["path"].clone()),
        (200, json!("/v2/x")),
        "{body}"
    );

    write_config(
        &path,
        &config_file_text(
            upstream,
            &store,
            &route_table("/v2", &format!("http://{upstream}/two"), ""),
        ),
    );
    child.signal("HUP");
    assert!(
        child.wait_for_log("configuration reloaded").await,
        "{}",
        child.log_text()
    );
    let (status, body) = status_json(get_with(&v2, &valid).await).await;
    assert_eq!(
        (status, body["path"].clone()),
        (200, json!("/two/v2/x")),
        "{body}"
    );
    assert_revoked(&proxy_get(child.proxy, &revoked).await);

    // A bad file: refused, logged with the key, the process keeps serving the last good one.
    write_config(
        &path,
        &with_server_keys(&config_file_text(upstream, &store, ""), "bogus_key = 1"),
    );
    child.signal("HUP");
    assert!(
        child.wait_for_log("configuration reload refused").await,
        "{}",
        child.log_text()
    );
    let log = child.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(line.contains("bogus_key"), "{line}");
    assert_eq!(get_with(&v2, &valid).await.status().as_u16(), 200);
    assert_revoked(&proxy_get(child.proxy, &revoked).await);
    assert!(
        !log.contains(&valid) && !log.contains(&revoked),
        "tokens never logged"
    );

    child.sigterm();
    let status = child.wait_exit(WAIT).await.expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", child.log_text());
}
