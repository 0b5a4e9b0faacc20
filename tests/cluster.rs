//! Several gateways sharing revocations through a real Redis stream (SPEC §8): every
//! change from every source reaches the other nodes, concurrent changes converge, nodes
//! catch up before they are healthy, the outbox survives Redis being down, a Redis that
//! lost its data does not wedge anyone, new nodes get everything, trimming keeps what is
//! in force, and a node killed right after its `2xx` loses nothing.
//!
//! Each test starts its own `redis-server` (skipped without one, unless
//! `REVGATE_REQUIRE_REDIS=1`). `REVGATE_CLUSTER_CYCLES` sets how many kill -9 cycles the
//! crash test runs (default 3).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The `[cluster]` table of a node.
fn cluster_table(redis_url: &str, node: &str) -> String {
    format!("\n[cluster]\nredis_url = \"{redis_url}\"\nnode_id = \"{node}\"\n")
}

/// One node of a test cluster: an in-process gateway and its store.
struct Node {
    gw: Gateway,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts node `name` on a new store, linked to `redis_url`.
    async fn start(redis_url: &str, upstream: std::net::SocketAddr, name: &str) -> Node {
        let (dir, store) = temp_store();
        let gw = Gateway::start(&config_text(
            upstream,
            &store,
            &cluster_table(redis_url, name),
        ))
        .await;
        Node {
            gw,
            store,
            _dir: dir,
        }
    }
}

impl AdminTarget for Node {
    fn admin_addr(&self) -> std::net::SocketAddr {
        self.gw.admin
    }
}

impl ProxyTarget for Node {
    fn proxy_addr(&self) -> std::net::SocketAddr {
        self.gw.proxy
    }
}

/// A Redis and an upstream, or `None` (test skipped) without `redis-server`.
async fn redis_and_upstream(test: &str) -> Option<(RedisServer, std::net::SocketAddr)> {
    if !redis_available(test) {
        return None;
    }
    Some((RedisServer::start().await, start_echo().await))
}

/// Waits until `node`'s `/healthz` answers 200.
async fn wait_healthy(node: impl AdminTarget) {
    eventually("node healthy", || async { healthz(&node).await == 200 }).await;
}

/// The `cluster` object of a node's `/v1/stats`.
async fn cluster_stats(node: impl AdminTarget) -> Value {
    admin_stats(node).await["cluster"].clone()
}

/// The id of the stream's last entry (`0-0` when it has none).
async fn stream_end(redis: &RedisServer) -> String {
    let mut conn = redis.connection().await;
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg("revgate:revocations")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("XREVRANGE");
    last.ids.first().map_or("0-0".to_string(), |e| e.id.clone())
}

/// Every entry of the stream: (id, node, seq).
async fn stream_entries(redis: &RedisServer) -> Vec<(String, String, u64)> {
    let mut conn = redis.connection().await;
    let all: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("revgate:revocations")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    all.ids
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                e.get::<String>("node").unwrap_or_default(),
                e.get::<String>("seq")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until every node has applied the whole stream and its outbox is empty.
async fn wait_converged(redis: &RedisServer, nodes: &[&dyn AdminTarget]) {
    eventually(
        "every node at the end of the stream, outboxes empty",
        || async {
            let end = stream_end(redis).await;
            for n in nodes {
                let c = cluster_stats(n).await;
                if c["outbox"] != 0 || c["position"] != end.as_str() || c["state"] != "ok" {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// A node's whole export (NDJSON, in key order).
async fn export_text(node: impl AdminTarget) -> String {
    let resp = client()
        .get(node.admin_url("/v1/export"))
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("export body")
}

/// Asserts that every node exports exactly what the first one does.
async fn assert_same_exports(nodes: &[(&str, &dyn AdminTarget)]) -> String {
    let first = export_text(nodes[0].1).await;
    for (name, n) in &nodes[1..] {
        let other = export_text(n).await;
        assert_eq!(
            other, first,
            "{name} exports differently from {}",
            nodes[0].0
        );
    }
    first
}

/// `POST path` with `body` on the admin API: status, JSON body, `Revgate-Cluster` header.
async fn admin_write(
    node: impl AdminTarget,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let mut req = client().request(method, node.admin_url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("admin request");
    let ack = resp
        .headers()
        .get("revgate-cluster")
        .map(|v| v.to_str().unwrap().to_string());
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, ack)
}

/// Revokes through the admin API (201), returns the `Revgate-Cluster` header.
async fn revoke_on(node: impl AdminTarget, body: Value) -> String {
    let (status, record, ack) =
        admin_write(node, reqwest::Method::POST, "/v1/revocations", Some(&body)).await;
    assert_eq!(status, 201, "revoke {body}: {record}");
    ack.expect("a Revgate-Cluster header in a cluster")
}

/// Unrevokes through the admin API; the status and the `Revgate-Cluster` header.
async fn unrevoke_on(node: impl AdminTarget, kind: &str, value: &str) -> (u16, Option<String>) {
    let (status, _, ack) = admin_write(
        node,
        reqwest::Method::DELETE,
        &revocation_path(kind, value),
        None,
    )
    .await;
    (status, ack)
}

/// Waits until `node` has (or, with `present` false, lacks) the revocation `kind value`.
async fn wait_lookup(node: impl AdminTarget, kind: &str, value: &str, present: bool) {
    let path = revocation_path(kind, value);
    let what = format!(
        "{kind} {value} {} on the node",
        if present { "present" } else { "gone" }
    );
    eventually(&what, || async {
        let (status, _) = admin_get(&node, &path).await;
        status == if present { 200 } else { 404 }
    })
    .await;
}

/// An NDJSON record line for an import.
fn record_line(kind: &str, value: &str, reason: &str) -> String {
    let now = now();
    let issued_before = if kind == "jti" {
        Value::Null
    } else {
        json!(revgate::clock::rfc3339(now))
    };
    json!({
        "kind": kind,
        "issuer": ISS,
        "value": value,
        "revoked_at": revgate::clock::rfc3339(now),
        "issued_before": issued_before,
        "expires_at": revgate::clock::rfc3339(now + 3600),
        "reason": reason,
        "source": "admin",
    })
    .to_string()
}

/// `POST /v1/import` of `lines`: the summary and the `Revgate-Cluster` header.
async fn import_on(node: impl AdminTarget, lines: &[String]) -> (Value, Option<String>) {
    let resp = client()
        .post(node.admin_url("/v1/import"))
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .expect("import");
    let ack = resp
        .headers()
        .get("revgate-cluster")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "import: {body}");
    (body, ack)
}

/// The `Revgate-Cluster` header of an endpoint answer.
fn ack_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("revgate-cluster")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_from_every_source_reaches_the_two_other_nodes() {
    let Some((redis, up)) = redis_and_upstream("every_change_from_every_source").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    let b = Node::start(&url, up, "b").await;
    let c = Node::start(&url, up, "c").await;
    for n in [&a, &b, &c] {
        wait_healthy(n).await;
    }
    // Admin API: jti, sid and sub.
    for (kind, value) in [("jti", "j-admin"), ("sid", "s-admin"), ("sub", "u-admin")] {
        let ack = revoke_on(&a, json!({"kind": kind, "value": value, "reason": "admin"})).await;
        assert_eq!(ack, "appended", "{kind}");
    }
    // Revoke-by-token (admin) and the revocation endpoint (the app).
    let by_token = token("u-t1", "s-t1", &unique_id("jt-admin"));
    let (status, _, ack) = admin_write(
        &a,
        reqwest::Method::POST,
        "/v1/revocations/token",
        Some(&json!({"token": by_token})),
    )
    .await;
    assert_eq!((status, ack.as_deref()), (201, Some("appended")));
    let by_app = token("u-t2", "s-t2", &unique_id("jt-app"));
    let resp = post_revoke(&a, &by_app).await;
    assert_endpoint_ok(&resp, "revoke endpoint");
    assert_eq!(ack_of(&resp).as_deref(), Some("appended"));
    // Back-channel logout: the session and the logout token's jti.
    let logout_jti = unique_id("lt");
    let mut claims = logout_claims(Some("s-bcl"), None, now());
    claims["jti"] = json!(logout_jti);
    let resp = post_logout(&a, &sign_logout(&claims)).await;
    assert_endpoint_ok(&resp, "back-channel logout");
    assert_eq!(ack_of(&resp).as_deref(), Some("appended"));
    // Import.
    let (summary, ack) = import_on(
        &a,
        &[
            record_line("sub", "u-import", "restored"),
            record_line("jti", "j-import", "restored"),
        ],
    )
    .await;
    assert_eq!(summary["imported"], 2, "{summary}");
    assert_eq!(ack.as_deref(), Some("appended"));
    // Another node is a source too.
    assert_eq!(
        revoke_on(&b, json!({"kind": "sub", "value": "u-from-b"})).await,
        "appended"
    );

    let expected = [
        ("jti", "j-admin"),
        ("sid", "s-admin"),
        ("sub", "u-admin"),
        ("sid", "s-bcl"),
        ("sub", "u-import"),
        ("jti", "j-import"),
        ("sub", "u-from-b"),
    ];
    for n in [&b, &c] {
        for (kind, value) in expected {
            wait_lookup(n, kind, value, true).await;
        }
    }
    wait_lookup(&a, "sub", "u-from-b", true).await;
    // Enforced by the other nodes' own stores.
    for n in [&b, &c] {
        assert_token_revoked(
            n,
            &old_token("u-admin", "s-x", &unique_id("j")),
            "sub from A",
        )
        .await;
        assert_token_revoked(
            n,
            &old_token("u-x", "s-admin", &unique_id("j")),
            "sid from A",
        )
        .await;
        assert_token_revoked(n, &token("u-x", "s-x", "j-admin"), "jti from A").await;
        assert_token_revoked(n, &by_token, "revoke-by-token at A").await;
        assert_token_revoked(n, &by_app, "revoke endpoint at A").await;
        assert_token_revoked(
            n,
            &old_token("u-x", "s-bcl", &unique_id("j")),
            "logout at A",
        )
        .await;
        assert_token_revoked(
            n,
            &old_token("u-import", "s-x", &unique_id("j")),
            "import at A",
        )
        .await;
    }
    // The seen logout-token jti: another token reusing it is a replay at C too.
    let mut replay = logout_claims(Some("s-other"), None, now());
    replay["jti"] = json!(logout_jti);
    let resp = post_logout(&c, &sign_logout(&replay)).await;
    assert_eq!(
        resp.status().as_u16(),
        400,
        "a reused logout jti is refused at C"
    );
    // An unrevoke from C removes it everywhere.
    let (status, ack) = unrevoke_on(&c, "sub", "u-admin").await;
    assert_eq!((status, ack.as_deref()), (204, Some("appended")));
    for n in [&a, &b] {
        wait_lookup(n, "sub", "u-admin", false).await;
        assert_passes(&proxy_get(n, &old_token("u-admin", "s-x", &unique_id("j"))).await);
    }
    wait_converged(&redis, &[&a, &b, &c]).await;
    let export = assert_same_exports(&[("a", &a), ("b", &b), ("c", &c)]).await;
    assert_eq!(export.lines().count(), expected.len() - 1 + 2, "{export}");
    // Stats and metrics say so.
    let s = cluster_stats(&b).await;
    assert_eq!(s["node_id"], "b");
    assert!(s["applied"].as_u64().unwrap() >= 9, "{s}");
    assert_eq!(s["lag_seconds"], 0.0);
    let text = metrics_text(&b).await;
    assert_eq!(metric_in(&text, "revgate_cluster_redis_up"), Some(1.0));
    assert_eq!(metric_in(&text, "revgate_cluster_outbox"), Some(0.0));
    assert!(metric_in(&text, "revgate_cluster_applied_total").unwrap() >= 9.0);
    assert!(metric_in(&text, "revgate_cluster_lag_seconds").is_some());
    for n in [a, b, c] {
        n.gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revokes_and_unrevokes_of_the_same_keys_converge_to_identical_exports() {
    let Some((redis, up)) = redis_and_upstream("concurrent_revokes_and_unrevokes").await else {
        return;
    };
    let url = redis.url();
    let nodes = [
        Node::start(&url, up, "a").await,
        Node::start(&url, up, "b").await,
        Node::start(&url, up, "c").await,
    ];
    for n in &nodes {
        wait_healthy(n).await;
    }
    let keys: Vec<String> = (0..8).map(|i| format!("shared-{i}")).collect();
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let admin = n.gw.admin;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..40u64 {
                let r = random_u64();
                let key = &keys[(r % keys.len() as u64) as usize];
                if (r >> 8) % 3 == 0 {
                    let (status, ack) = unrevoke_on(admin, "sub", key).await;
                    assert!(matches!(status, 204 | 404), "unrevoke: {status}");
                    if status == 204 {
                        assert_eq!(ack.as_deref(), Some("appended"));
                    }
                } else {
                    // Same second on several nodes, with and without a reason, with
                    // and without an explicit cutoff: every merge rule is exercised.
                    let mut body = json!({"kind": "sub", "value": key});
                    if (r >> 16) % 2 == 0 {
                        body["reason"] = json!(format!("node {i} round {round}"));
                    }
                    if (r >> 20) % 2 == 0 {
                        body["issued_before"] =
                            json!(revgate::clock::rfc3339(now() - (r >> 24) % 100));
                    }
                    assert_eq!(revoke_on(admin, body).await, "appended");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    wait_converged(&redis, &[&nodes[0], &nodes[1], &nodes[2]]).await;
    assert_same_exports(&[("a", &nodes[0]), ("b", &nodes[1]), ("c", &nodes[2])]).await;
    for n in nodes {
        n.gw.stop().await;
    }
}

/// The config file of a child node.
fn child_config(
    dir: &Path,
    upstream: std::net::SocketAddr,
    redis_url: &str,
    name: &str,
) -> PathBuf {
    let store = dir.join("revgate.db");
    write_config_file(
        dir,
        &config_text(upstream, &store, &cluster_table(redis_url, name)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_while_others_write_catches_up_before_it_answers_healthy() {
    let Some((redis, up)) = redis_and_upstream("a_node_killed_while_others_write").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    let b = Node::start(&url, up, "b").await;
    let dir = tempfile::tempdir().unwrap();
    let config = child_config(dir.path(), up, &url, "c");
    let c = ServeChild::start(&config).await;
    wait_healthy(&c).await;
    revoke_on(&a, json!({"kind": "sub", "value": "before"})).await;
    wait_lookup(&c, "sub", "before", true).await;
    c.kill9().await;

    // While C is dead: thousands of changes from A and B (single ones and an import).
    let mut writers = Vec::new();
    for (w, admin) in [a.gw.admin, b.gw.admin]
        .into_iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let ack =
                    revoke_on(admin, json!({"kind": "jti", "value": format!("w{w}-{i}")})).await;
                assert_eq!(ack, "appended");
            }
            let (status, ack) = unrevoke_on(admin, "jti", &format!("w{w}-0")).await;
            assert_eq!((status, ack.as_deref()), (204, Some("appended")));
        }));
    }
    let lines: Vec<String> = (0..4000)
        .map(|i| record_line("sub", &format!("imp-{i}"), "bulk"))
        .collect();
    let (summary, _) = import_on(&a, &lines).await;
    assert_eq!(summary["imported"], 4000);
    for w in writers {
        w.await.expect("writer");
    }
    wait_converged(&redis, &[&a, &b]).await;
    let expected = stats_counts(&a).await;
    assert_eq!(expected, (16 * 39, 0, 4001));

    // Restarted: the first 200 comes with everything applied.
    let mut c = ServeChild::start(&config).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = admin_get(&c, "/healthz").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        // "unreachable" until its first connection, then "catching_up".
        assert!(
            matches!(
                body["cluster"].as_str(),
                Some("catching_up" | "unreachable")
            ),
            "{body}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "C not healthy within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        stats_counts(&c).await,
        expected,
        "C answered 200 before it caught up"
    );
    assert!(
        c.wait_for_log("cluster caught up").await,
        "{}",
        c.log_text()
    );
    assert!(
        c.log_text().contains("cluster catching up"),
        "{}",
        c.log_text()
    );
    wait_converged(&redis, &[&a, &b, &c]).await;
    assert_same_exports(&[("a", &a), ("b", &b), ("c", &c)]).await;
    c.sigterm();
    assert!(c.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    a.gw.stop().await;
    b.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_while_nodes_accept_writes_then_back_drains_the_outbox_exactly_once() {
    let Some((mut redis, up)) = redis_and_upstream("redis_stopped_while_nodes_accept").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    let b = Node::start(&url, up, "b").await;
    wait_healthy(&a).await;
    wait_healthy(&b).await;
    revoke_on(&a, json!({"kind": "sub", "value": "k0"})).await;
    wait_converged(&redis, &[&a, &b]).await;
    let before = stream_entries(&redis).await.len();

    redis.stop().await;
    let mut changes = 0;
    for value in ["k1", "k2"] {
        assert_eq!(
            revoke_on(&a, json!({"kind": "sub", "value": value})).await,
            "queued"
        );
        changes += 1;
    }
    assert_eq!(
        unrevoke_on(&a, "sub", "k0").await,
        (204, Some("queued".to_string()))
    );
    changes += 1;
    assert_eq!(
        revoke_on(&b, json!({"kind": "jti", "value": "k3"})).await,
        "queued"
    );
    assert_eq!(
        revoke_on(&b, json!({"kind": "sub", "value": "k1", "reason": "again"})).await,
        "queued"
    );
    let resp = post_logout(
        &b,
        &sign_logout(&logout_claims(Some("s-down"), None, now())),
    )
    .await;
    assert_endpoint_ok(&resp, "logout while Redis is down");
    assert_eq!(ack_of(&resp).as_deref(), Some("queued"));
    changes += 3;
    // Durable and enforced here, waiting in the outbox; still healthy (caught up before).
    let s = cluster_stats(&a).await;
    assert_eq!(
        (s["outbox"].as_u64(), s["state"].as_str()),
        (Some(3), Some("unreachable")),
        "{s}"
    );
    assert_eq!(cluster_stats(&b).await["outbox"], 3);
    let (status, body) = admin_get(&a, "/healthz").await;
    assert_eq!(
        (status, &body["cluster"]),
        (200, &json!("unreachable")),
        "{body}"
    );
    assert_eq!(metric(&a, "revgate_cluster_redis_up").await, 0);
    assert_eq!(metric(&a, "revgate_cluster_outbox").await, 3);
    assert_token_revoked(&a, &old_token("k1", "s", &unique_id("j")), "queued at A").await;
    assert_passes(&proxy_get(&a, &token("u", "s", "k3")).await);

    redis.restart().await;
    wait_converged(&redis, &[&a, &b]).await;
    let entries = stream_entries(&redis).await;
    assert_eq!(
        entries.len(),
        before + changes,
        "nothing lost, nothing twice: {entries:?}"
    );
    let own: HashSet<(String, u64)> = entries.iter().map(|(_, n, s)| (n.clone(), *s)).collect();
    assert_eq!(
        own.len(),
        entries.len(),
        "an outbox entry appended twice: {entries:?}"
    );
    for n in [&a, &b] {
        wait_lookup(n, "sub", "k0", false).await;
        wait_lookup(n, "jti", "k3", true).await;
        wait_lookup(n, "sid", "s-down", true).await;
    }
    assert_eq!(
        admin_get(&a, &revocation_path("sub", "k1")).await.1["reason"],
        "again"
    );
    assert_same_exports(&[("a", &a), ("b", &b)]).await;
    a.gw.stop().await;
    b.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_loses_no_revocation_and_later_changes_propagate() {
    let Some((mut redis, up)) = redis_and_upstream("redis_restarted_empty").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    let b = Node::start(&url, up, "b").await;
    wait_healthy(&a).await;
    wait_healthy(&b).await;
    revoke_on(&a, json!({"kind": "sub", "value": "r1"})).await;
    revoke_on(&b, json!({"kind": "sid", "value": "r2"})).await;
    revoke_on(&b, json!({"kind": "jti", "value": "gone"})).await;
    unrevoke_on(&a, "jti", "gone").await;
    wait_converged(&redis, &[&a, &b]).await;
    let old_epoch = cluster_stats(&a).await["epoch"].clone();

    redis.restart_empty().await;
    eventually("a new epoch on both nodes", || async {
        cluster_stats(&a).await["epoch"] != old_epoch
            && cluster_stats(&b).await["epoch"] != old_epoch
    })
    .await;
    wait_converged(&redis, &[&a, &b]).await;
    assert!(
        !stream_entries(&redis).await.is_empty(),
        "the nodes republished their records"
    );
    // Later changes propagate, and a new node gets everything.
    revoke_on(&a, json!({"kind": "sub", "value": "r3"})).await;
    wait_lookup(&b, "sub", "r3", true).await;
    let c = Node::start(&url, up, "c").await;
    wait_healthy(&c).await;
    for (kind, value) in [("sub", "r1"), ("sid", "r2"), ("sub", "r3")] {
        wait_lookup(&c, kind, value, true).await;
    }
    wait_lookup(&c, "jti", "gone", false).await;
    let (status, ack) = unrevoke_on(&b, "sub", "r1").await;
    assert_eq!((status, ack.as_deref()), (204, Some("appended")));
    wait_lookup(&a, "sub", "r1", false).await;
    wait_lookup(&c, "sub", "r1", false).await;
    wait_converged(&redis, &[&a, &b, &c]).await;
    assert_same_exports(&[("a", &a), ("b", &b), ("c", &c)]).await;
    for n in [a, b, c] {
        n.gw.stop().await;
    }
}

/// Redis loses its data while node B is stopped, so what A appended meanwhile was never
/// read by B (in flight): the revocation reaches B through the records A publishes into
/// the new stream; the unrevoke B never saw comes back as a revocation from B's records
/// (fail safe, as the README says), and unrevoking it again heals every node. The log
/// says connect, disconnect and the new shared log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_in_flight_when_redis_loses_its_data_reach_every_node_or_fail_safe() {
    let Some((mut redis, up)) = redis_and_upstream("entries_in_flight").await else {
        return;
    };
    let url = redis.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config_a = child_config(dirs[0].path(), up, &url, "a");
    let config_b = child_config(dirs[1].path(), up, &url, "b");
    let mut a = ServeChild::start(&config_a).await;
    let mut b = ServeChild::start(&config_b).await;
    wait_healthy(&a).await;
    wait_healthy(&b).await;
    assert!(
        a.wait_for_log("cluster connected to Redis").await,
        "{}",
        a.log_text()
    );
    assert_eq!(
        revoke_on(&a, json!({"kind": "sub", "value": "undone"})).await,
        "appended"
    );
    wait_lookup(&b, "sub", "undone", true).await;
    b.sigterm();
    assert!(b.wait_exit(WAIT).await.is_some_and(|s| s.success()));

    // In flight: appended while B is stopped, and never read by B.
    assert_eq!(
        revoke_on(&a, json!({"kind": "jti", "value": "in-flight"})).await,
        "appended"
    );
    let (status, ack) = unrevoke_on(&a, "sub", "undone").await;
    assert_eq!((status, ack.as_deref()), (204, Some("appended")));
    redis.restart_empty().await;
    assert!(
        a.wait_for_log("cluster disconnected from Redis").await,
        "{}",
        a.log_text()
    );
    // "is a new one" (found at reconnect) or "was reset" (found by a running session).
    assert!(
        a.wait_for_log("cluster: the shared log").await,
        "{}",
        a.log_text()
    );

    b = ServeChild::start(&config_b).await;
    wait_healthy(&b).await;
    wait_lookup(&b, "jti", "in-flight", true).await;
    // B never saw the unrevoke: its records bring the revocation back, at A too.
    wait_lookup(&a, "sub", "undone", true).await;
    assert!(
        b.wait_for_log("cluster: the shared log is a new one").await,
        "{}",
        b.log_text()
    );
    wait_converged(&redis, &[&a, &b]).await;
    assert_same_exports(&[("a", &a), ("b", &b)]).await;
    // Healing: unrevoke it again; every node follows.
    let (status, ack) = unrevoke_on(&a, "sub", "undone").await;
    assert_eq!((status, ack.as_deref()), (204, Some("appended")));
    wait_lookup(&b, "sub", "undone", false).await;
    wait_converged(&redis, &[&a, &b]).await;
    assert_same_exports(&[("a", &a), ("b", &b)]).await;
    for n in [&mut a, &mut b] {
        n.sigterm();
        assert!(n.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_node_joins_with_every_revocation_and_a_node_with_records_shares_them() {
    let Some((redis, up)) = redis_and_upstream("a_fresh_node_joins").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    wait_healthy(&a).await;
    for i in 0..300 {
        revoke_on(&a, json!({"kind": "jti", "value": format!("a-{i}")})).await;
    }
    revoke_on(&a, json!({"kind": "sub", "value": "temp", "ttl": "1h"})).await;
    unrevoke_on(&a, "sub", "temp").await;
    // A store that has only ever run alone, with records of its own.
    let (dir_b, store_b) = temp_store();
    let alone = Gateway::start(&config_text(up, &store_b, "")).await;
    admin_revoke(
        &alone,
        &json!({"kind": "sid", "value": "from-a-single-node"}),
    )
    .await;
    let (_, _, ack) = admin_write(
        &alone,
        reqwest::Method::POST,
        "/v1/revocations",
        Some(&json!({"kind": "sid", "value": "x"})),
    )
    .await;
    assert_eq!(ack, None, "no Revgate-Cluster header on a single node");
    alone.stop().await;
    let b = Gateway::start(&config_text(up, &store_b, &cluster_table(&url, "b"))).await;
    wait_healthy(&b).await;
    wait_lookup(&a, "sid", "from-a-single-node", true).await;
    wait_lookup(&b, "jti", "a-299", true).await;
    // A node with an empty store.
    let c = Node::start(&url, up, "c").await;
    wait_healthy(&c).await;
    assert_eq!(stats_counts(&c).await, (300, 2, 0));
    wait_converged(&redis, &[&a, &b, &c]).await;
    assert_same_exports(&[("a", &a), ("b", &b), ("c", &c)]).await;
    a.gw.stop().await;
    b.stop().await;
    c.gw.stop().await;
    drop(dir_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_accepting_node_right_after_its_2xx_loses_no_acknowledged_change() {
    let Some((redis, up)) = redis_and_upstream("killing_the_accepting_node").await else {
        return;
    };
    let cycles: usize = std::env::var("REVGATE_CLUSTER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let url = redis.url();
    let b = Node::start(&url, up, "b").await;
    let c = Node::start(&url, up, "c").await;
    wait_healthy(&b).await;
    wait_healthy(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let config = child_config(dir.path(), up, &url, "a");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for cycle in 0..cycles {
        let a = ServeChild::start(&config).await;
        wait_healthy(&a).await;
        let admin = a.admin;
        let kill_after = 10 + (random_u64() % 40) as usize;
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let kill_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(kill_tx)));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (acked, kill_tx) = (acked.clone(), kill_tx.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let (kind, value) = if i % 2 == 0 {
                        ("jti", format!("c{cycle}-w{w}-{i}"))
                    } else {
                        ("sub", format!("c{cycle}-w{w}-{i}"))
                    };
                    let req = client()
                        .post(format!("http://{admin}/v1/revocations"))
                        .json(&json!({"kind": kind, "value": value}))
                        .send()
                        .await;
                    let Ok(resp) = req else { return };
                    if resp.status().as_u16() != 201 {
                        return;
                    }
                    let ack = resp
                        .headers()
                        .get("revgate-cluster")
                        .map(|v| v.to_str().unwrap().to_string());
                    assert_eq!(
                        ack.as_deref(),
                        Some("appended"),
                        "a 201 with Redis up is appended"
                    );
                    let mut acked = acked.lock().unwrap();
                    acked.push((kind.to_string(), value));
                    if acked.len() >= kill_after {
                        if let Some(tx) = kill_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }));
        }
        // kill -9 right after the kill_after-th 2xx, while the writers keep going.
        tokio::time::timeout(WAIT, kill_rx)
            .await
            .expect("writes acknowledged")
            .unwrap();
        a.kill9().await;
        for w in writers {
            tokio::time::timeout(WAIT, w)
                .await
                .expect("writer ends")
                .expect("writer");
        }
        acknowledged.extend(acked.lock().unwrap().drain(..));
        for n in [&b, &c] {
            for (kind, value) in &acknowledged {
                wait_lookup(n, kind, value, true).await;
            }
        }
    }
    // Restarted once more, the accepting node ends with what the others have.
    let a = ServeChild::start(&config).await;
    wait_healthy(&a).await;
    wait_converged(&redis, &[&a, &b, &c]).await;
    assert_same_exports(&[("a", &a), ("b", &b), ("c", &c)]).await;
    a.kill9().await;
    b.gw.stop().await;
    c.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trimming_keeps_what_is_in_force_and_a_node_whose_position_was_trimmed_resyncs() {
    let Some((redis, up)) = redis_and_upstream("trimming_keeps_what_is_in_force").await else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, up, "a").await;
    let c = Node::start(&url, up, "c").await;
    wait_healthy(&a).await;
    wait_healthy(&c).await;
    revoke_on(&a, json!({"kind": "jti", "value": "short", "ttl": "1s"})).await;
    revoke_on(
        &a,
        json!({"kind": "sub", "value": "long", "reason": "keep"}),
    )
    .await;
    revoke_on(&a, json!({"kind": "sub", "value": "unrevoked-later"})).await;
    wait_converged(&redis, &[&a, &c]).await;
    // C stops; meanwhile an unrevoke and a revocation, then everything is trimmed.
    let c_store = c.store.clone();
    let c_dir = c._dir;
    c.gw.stop().await;
    unrevoke_on(&a, "sub", "unrevoked-later").await;
    revoke_on(&a, json!({"kind": "sid", "value": "later"})).await;
    wait_converged(&redis, &[&a]).await;
    eventually("the short revocation expired", || async {
        let (_, r) = admin_get(&a, &revocation_path("jti", "short")).await;
        r["expires_at"]
            .as_str()
            .is_some_and(|e| revgate::clock::parse_rfc3339(e).unwrap() < now())
    })
    .await;
    let cluster = a.gw.app.cluster.clone().expect("clustered");
    let entries_before = stream_entries(&redis).await.len();
    let report = cluster
        .trim_now(&revgate::cluster::Retention {
            margin: Duration::ZERO,
            carry_after: Duration::ZERO,
            interval: Duration::from_secs(60),
            scan_limit: 1000,
        })
        .await
        .expect("trim");
    assert_eq!(report.skipped, None, "{report:?}");
    assert_eq!(report.removed as usize, entries_before, "{report:?}");
    assert_eq!(
        report.carried, 2,
        "the two records in force are carried: {report:?}"
    );
    assert_eq!(
        stream_entries(&redis).await.len(),
        1,
        "one entry carries both"
    );
    // C comes back behind the trimmed part: it re-reads the stream and drops what the
    // stream no longer holds (the unrevoke it missed).
    let c = Gateway::start(&config_text(up, &c_store, &cluster_table(&url, "c"))).await;
    wait_healthy(&c).await;
    wait_lookup(&c, "sub", "unrevoked-later", false).await;
    wait_lookup(&c, "sid", "later", true).await;
    assert_eq!(
        admin_get(&c, &revocation_path("sub", "long")).await.1["reason"],
        "keep"
    );
    // The expired record is the sweeper's business on each node; the rest is the same.
    for n in [&a.gw, &c] {
        let (status, body) = admin_post(n, "/v1/sweep", &json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    wait_converged(&redis, &[&a, &c]).await;
    assert_same_exports(&[("a", &a), ("c", &c)]).await;
    // A fresh node gets what is in force from the trimmed stream.
    let d = Node::start(&url, up, "d").await;
    wait_healthy(&d).await;
    assert_eq!(stats_counts(&d).await, (0, 1, 1));
    a.gw.stop().await;
    c.stop().await;
    d.gw.stop().await;
    drop(c_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reached_redis_is_unhealthy_but_enforces_and_queues() {
    if !redis_available("a_node_that_never_reached_redis") {
        return;
    }
    let up = start_echo().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    // With a health path: the load balancer's check follows /healthz (one decision).
    let (dir, store) = temp_store();
    let a = Node {
        gw: Gateway::start(&config_text_with_server(
            up,
            &store,
            "health_path = \"/-/health\"",
            &cluster_table(&url, "a"),
        ))
        .await,
        store,
        _dir: dir,
    };
    let balancer_check = || async {
        let resp = client()
            .get(format!("http://{}/-/health", a.gw.proxy))
            .send()
            .await
            .expect("health path");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.expect("health JSON"))
    };
    let (status, body) = admin_get(&a, "/healthz").await;
    assert_eq!(
        (status, &body["cluster"]),
        (503, &json!("unreachable")),
        "{body}"
    );
    assert_eq!(
        balancer_check().await,
        (503, json!({"status": "unavailable"}))
    );
    assert_eq!(
        revoke_on(&a, json!({"kind": "sub", "value": "early"})).await,
        "queued"
    );
    assert_token_revoked(
        &a,
        &old_token("early", "s", &unique_id("j")),
        "enforced locally",
    )
    .await;
    assert_eq!(metric(&a, "revgate_cluster_redis_up").await, 0);
    assert_eq!(cluster_stats(&a).await["outbox"], 1);
    let redis = RedisServer::start_on(port).await;
    wait_healthy(&a).await;
    assert_eq!(balancer_check().await, (200, json!({"status": "ok"})));
    wait_converged(&redis, &[&a]).await;
    assert_eq!(stream_entries(&redis).await.len(), 1);
    a.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_and_a_password_in_the_url_work_and_the_password_is_never_logged() {
    if !redis_available("tls_and_a_password_in_the_url") {
        return;
    }
    const PASSWORD: &str = "s3cr3t-pw-for-tests";
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(PASSWORD.to_string()),
        tls: true,
    })
    .await;
    let up = start_echo().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ca = redis_tls_file("ca.crt");
    let mut nodes = Vec::new();
    for (dir, name) in dirs.iter().zip(["a", "b"]) {
        let config = child_config(dir.path(), up, &redis.url(), name);
        let mut cmd = ServeChild::command(&config);
        cmd.env("SSL_CERT_FILE", &ca);
        nodes.push(ServeChild::spawn(cmd).await);
    }
    for n in &nodes {
        wait_healthy(n).await;
    }
    assert_eq!(
        revoke_on(&nodes[0], json!({"kind": "sub", "value": "over-tls"})).await,
        "appended"
    );
    wait_lookup(&nodes[1], "sub", "over-tls", true).await;
    // A wrong password: unreachable, and still never logged.
    let dir = tempfile::tempdir().unwrap();
    let wrong = redis.url().replace(PASSWORD, "wrong-pw-for-tests");
    let config = child_config(dir.path(), up, &wrong, "c");
    let mut cmd = ServeChild::command(&config);
    cmd.env("SSL_CERT_FILE", &ca);
    let mut c = ServeChild::spawn(cmd).await;
    assert!(
        c.wait_for_log("cluster cannot reach Redis").await,
        "{}",
        c.log_text()
    );
    let (status, body) = admin_get(&c, "/healthz").await;
    assert_eq!((status, &body["cluster"]), (503, &json!("unreachable")));
    let check = run_revgate(
        &["check-config", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert!(check.status.success());
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(shown.contains(":<set>@localhost"), "{shown}");
    for n in nodes.iter().chain([&c]) {
        let log = n.log_text();
        assert!(log.contains("cluster"), "{log}");
        assert!(
            !log.contains(PASSWORD) && !log.contains("wrong-pw-for-tests"),
            "{log}"
        );
    }
    assert!(!shown.contains("wrong-pw-for-tests"), "{shown}");
    for n in nodes.into_iter().chain([c]) {
        n.kill9().await;
    }
}

#[tokio::test]
async fn check_config_validates_the_cluster_section_without_showing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let up = dead_addr();
    let store = dir.path().join("revgate.db");
    let good = config_text(
        up,
        &store,
        "\n[cluster]\nredis_url = \"redis://revgate:hunter2-pw@10.0.0.5:6380/2\"\n",
    );
    let path = write_config_file(dir.path(), &good);
    let out = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("redis://revgate:<set>@10.0.0.5:6380/2"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2-pw"), "{shown}");
    // The node id is derived from the host name and the listen port.
    assert!(shown.contains("node_id = \""), "{shown}");
    assert!(!shown.contains("node_id = \"\""), "{shown}");
    for (bad, key) in [
        (
            "redis_url = \"http://hunter2-pw@host\"",
            "cluster.redis_url",
        ),
        (
            "redis_url = \"redis://u:hunter2-pw@host/notadb\"",
            "cluster.redis_url",
        ),
        (
            "redis_url = \"rediss://u:hunter2-pw@host#insecure\"",
            "cluster.redis_url",
        ),
        (
            "redis_url = \"redis://h\"\nnode_id = \"two words\"",
            "cluster.node_id",
        ),
        ("redis_url = \"redis://h\"\nstream = \"\"", "cluster.stream"),
        ("redis_url = \"redis://h\"\nbogus = 1", "bogus"),
    ] {
        let text = config_text(up, &store, &format!("\n[cluster]\n{bad}\n"));
        let path = write_config_file(dir.path(), &text);
        let out = run_revgate(
            &["check-config", "--config", path.to_str().unwrap()],
            &[],
            dir.path(),
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad}: {err}");
        assert!(err.contains(key), "{bad}: {err}");
        assert!(!err.contains("hunter2-pw"), "{bad}: {err}");
    }
    // The environment can set it (a node's id, the password from a secret store).
    let text = config_text(up, &store, "");
    let path = write_config_file(dir.path(), &text);
    let out = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[
            (
                "REVGATE_CLUSTER_REDIS_URL",
                "redis://:hunter2-pw@127.0.0.1:1",
            ),
            ("REVGATE_CLUSTER_NODE_ID", "gw-7"),
        ],
        dir.path(),
    )
    .await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("node_id = \"gw-7\"") && !shown.contains("hunter2-pw"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_single_node_has_no_cluster_in_its_answers() {
    let up = start_echo().await;
    let (_dir, store) = temp_store();
    let gw = Gateway::start(&config_text(up, &store, "")).await;
    let (status, _, ack) = admin_write(
        &gw,
        reqwest::Method::POST,
        "/v1/revocations",
        Some(&json!({"kind": "sub", "value": "x"})),
    )
    .await;
    assert_eq!((status, ack), (201, None));
    let resp = post_revoke(&gw, &token("u", "s", &unique_id("j"))).await;
    assert_eq!(ack_of(&resp), None);
    assert!(admin_stats(&gw).await.get("cluster").is_none());
    assert!(admin_get(&gw, "/healthz").await.1.get("cluster").is_none());
    assert!(!metrics_text(&gw).await.contains("revgate_cluster_"));
    assert!(gw.app.cluster.is_none());
    gw.stop().await;
}
