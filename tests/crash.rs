//! Crash tests (SPEC §6 durable acknowledgement, expiry): a child `revgate serve` is killed
//! with SIGKILL at a random moment while 8 writers revoke through the admin API, the
//! revoke endpoint and the back-channel logout endpoint; after each restart on the same
//! store every revocation that got a 2xx must be present (admin lookup 200) and enforced
//! (its token answers 401 revoked), and `check-store` must find no orphan.
//!
//! Cycles: `REVGATE_CRASH_CYCLES` (default 3, for CI). The long run:
//! `REVGATE_CRASH_CYCLES=25 cargo test --release --test crash -- --nocapture`.
//! It prints `cycles=N acknowledged=A lost=L`; L must be 0.
//!
//! Also: SIGKILL in the middle of a sweep of many due entries, and `check-store --repair`
//! on an expiry index damaged on purpose.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use revgate::clock::rfc3339;
use serde_json::{json, Value};

/// Concurrent writers per cycle.
const WRITERS: usize = 8;
/// Cycles when `REVGATE_CRASH_CYCLES` is not set.
const DEFAULT_CYCLES: usize = 3;
/// The kill comes after a random delay in this range, once the writers are running.
const KILL_AFTER: (Duration, Duration) = (Duration::from_millis(0), Duration::from_millis(500));

fn cycles() -> usize {
    std::env::var("REVGATE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

/// One acknowledged revocation: what to look up and the token it must refuse.
#[derive(Debug, Clone)]
struct Acked {
    kind: &'static str,
    value: String,
    token: String,
    via: &'static str,
}

/// A client that does not retry or pool across kills.
fn writer_client() -> reqwest::Client {
    client_keeping_idle(1)
}

/// One write by writer `w`, its `n`-th; `Ok(Some(acked))` on a 2xx, `Ok(None)` on a
/// non-2xx answer (an error, never expected before the kill), `Err` when the gateway is
/// gone (connection refused / reset: the kill).
async fn write_one(
    http: &reqwest::Client,
    proxy: SocketAddr,
    admin: SocketAddr,
    w: usize,
    n: usize,
    cycle: usize,
) -> Result<Option<Acked>, reqwest::Error> {
    let value = format!("c{cycle}-w{w}-n{n}");
    let (kind, via, token, resp) = match (w + n) % 5 {
        k @ 0..=2 => {
            let kind = ["jti", "sid", "sub"][k];
            let token = match kind {
                "jti" => old_token("u", "s", &value),
                "sid" => old_token("u", &value, &format!("j-{value}")),
                _ => old_token(&value, "s", &format!("j-{value}")),
            };
            let resp = http
                .post(format!("http://{admin}/v1/revocations"))
                .json(&json!({"kind": kind, "value": value}))
                .send()
                .await?;
            (kind, "admin", token, resp)
        }
        3 => {
            // The application revokes its own (valid) token: its jti.
            let token = old_token("u", "s", &value);
            let resp = http
                .post(format!("http://{proxy}/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("token", &token)]))
                .send()
                .await?;
            ("jti", "revoke_endpoint", token, resp)
        }
        _ => {
            let logout = sign_logout(&logout_claims(Some(&value), None, now()));
            let resp = http
                .post(format!("http://{proxy}/backchannel-logout"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("logout_token", &logout)]))
                .send()
                .await?;
            let token = old_token("u", &value, &format!("j-{value}"));
            ("sid", "backchannel", token, resp)
        }
    };
    let status = resp.status();
    // The acknowledgement is the whole answer: read it to the end.
    resp.bytes().await?;
    Ok(status.is_success().then_some(Acked {
        kind,
        value,
        token,
        via,
    }))
}

/// Whether `a` survived: admin lookup 200 and its token refused as revoked.
async fn present_and_enforced(http: &reqwest::Client, child: &ServeChild, a: &Acked) -> bool {
    let path = child.admin_url(&revocation_path(a.kind, &a.value));
    let lookup = http.get(path).send().await.expect("lookup").status();
    let resp = http
        .get(child.url("/api/resource"))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("proxy request");
    let (status, body) = status_json(resp).await;
    let revoked = status == 401
        && body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("revoked"));
    if lookup != 200 || !revoked {
        eprintln!(
            "LOST: {} {} via {} (lookup {lookup}, proxy {status} {body})",
            a.kind, a.value, a.via
        );
    }
    lookup == 200 && revoked
}

/// Checks every acknowledged revocation against a running gateway, 8 at a time; returns
/// how many are missing.
async fn count_lost(child: &ServeChild, acked: &[Acked]) -> usize {
    use futures_util::StreamExt as _;
    let http = writer_client();
    futures_util::stream::iter(acked)
        .map(|a| present_and_enforced(&http, child, a))
        .buffer_unordered(WRITERS)
        .filter(|ok| std::future::ready(!*ok))
        .count()
        .await
}

/// `revgate check-store --config FILE`: exit status and stdout.
async fn check_store(config: &Path, repair: bool) -> (i32, String, String) {
    let mut args = vec!["check-store", "--config", config.to_str().unwrap()];
    if repair {
        args.push("--repair");
    }
    let out = run_revgate(&args, &[], config.parent().unwrap()).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number after `label:` in check-store's output.
fn figure(out: &str, label: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label)?.trim_start().strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in check-store output:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writers_loses_no_acknowledged_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let config = write_config_file(
        dir.path(),
        &config_text(echo, &dir.path().join("store.db"), ""),
    );
    let cycles = cycles();
    let mut acked: Vec<Acked> = Vec::new();
    let mut lost = 0;
    let mut child = ServeChild::start(&config).await;

    for cycle in 0..cycles {
        let cycle_acked = Arc::new(Mutex::new(Vec::new()));
        let (ack_tx, mut ack_rx) = tokio::sync::watch::channel(0usize);
        let ack_tx = Arc::new(ack_tx);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (proxy, admin) = (child.proxy, child.admin);
                let cycle_acked = cycle_acked.clone();
                let ack_tx = ack_tx.clone();
                tokio::spawn(async move {
                    let http = writer_client();
                    let mut refused = 0;
                    for n in 0.. {
                        match write_one(&http, proxy, admin, w, n, cycle).await {
                            Ok(Some(a)) => {
                                cycle_acked.lock().unwrap().push(a);
                                ack_tx.send_modify(|n| *n += 1);
                            }
                            Ok(None) => refused += 1,
                            Err(_) => break, // the gateway is gone
                        }
                    }
                    refused
                })
            })
            .collect();
        // The writers are under way once the first acknowledgements came; then a random
        // moment.
        tokio::time::timeout(WAIT, ack_rx.wait_for(|n| *n >= WRITERS))
            .await
            .expect("the writers get acknowledgements within the bound")
            .expect("a writer is alive");
        tokio::time::sleep(random_between(KILL_AFTER.0, KILL_AFTER.1)).await;
        child.kill9().await;
        let mut refused = 0;
        for w in writers {
            refused += tokio::time::timeout(WAIT, w)
                .await
                .expect("writers stop once the gateway is gone")
                .expect("writer task");
        }
        assert_eq!(refused, 0, "non-2xx answers before the kill");
        let new = std::mem::take(&mut *cycle_acked.lock().unwrap());
        assert!(!new.is_empty(), "cycle {cycle}: no write was acknowledged");

        // The crashed store is consistent, then every acknowledgement is there.
        let (code, out, err) = check_store(&config, false).await;
        assert_eq!(code, 0, "check-store after kill -9:\n{out}{err}");
        acked.extend(new);
        child = ServeChild::start(&config).await;
        lost += count_lost(&child, &acked).await;
        println!(
            "cycle {}: acknowledged so far {}, lost {lost}",
            cycle + 1,
            acked.len()
        );
    }
    child.kill9().await;
    let by = |via: &str| acked.iter().filter(|a| a.via == via).count();
    println!(
        "cycles={cycles} acknowledged={} lost={lost} (admin {}, revoke_endpoint {}, backchannel {})",
        acked.len(),
        by("admin"),
        by("revoke_endpoint"),
        by("backchannel")
    );
    assert_eq!(lost, 0, "acknowledged revocations lost after kill -9");
}

/// Records of the seed file: `n` jti revocations expiring at `expires_at` (RFC 3339).
fn seed(path: &Path, n: usize, expires_at: &str) {
    use std::io::Write as _;
    let revoked_at = rfc3339(now());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let r = json!({
            "kind": "jti", "issuer": ISS, "value": format!("due-{i}"),
            "revoked_at": revoked_at, "issued_before": null, "expires_at": expires_at,
            "reason": null, "source": "admin",
        });
        writeln!(f, "{r}").unwrap();
    }
    f.flush().unwrap();
}

/// Due entries for the mid-sweep test.
const DUE_ENTRIES: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_sweep_leaves_no_orphan_and_the_sweep_completes() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let config = write_config_file(
        dir.path(),
        &config_text(echo, &dir.path().join("store.db"), ""),
    );
    let seed_file = dir.path().join("seed.ndjson");
    let expires = now() + 3;
    seed(&seed_file, DUE_ENTRIES, &rfc3339(expires));
    let out = run_revgate(
        &[
            "import",
            seed_file.to_str().unwrap(),
            "--offline",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    )
    .await;
    assert!(
        out.status.success(),
        "offline import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Entries go once `expires_at < now`: wait (bounded) until the wall clock passed it.
    eventually("the wall clock to pass the entries' expiry", || async {
        now() > expires
    })
    .await;

    let child = ServeChild::start(&config).await;
    assert_eq!(total_records(child.admin).await, DUE_ENTRIES as u64);
    let admin = child.admin;
    let sweep = tokio::spawn(async move {
        client()
            .post(format!("http://{admin}/v1/sweep"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Kill as soon as the sweep has visibly started (its first batches are committed)
    // plus a random few milliseconds.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = total_records(child.admin).await;
        if left < DUE_ENTRIES as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not start"
        );
    }
    tokio::time::sleep(random_between(Duration::ZERO, Duration::from_millis(30))).await;
    child.kill9().await;
    let answer = tokio::time::timeout(WAIT, sweep)
        .await
        .expect("sweep request ends")
        .expect("task");
    println!("sweep request at the kill: {answer:?}");

    let (code, out, err) = check_store(&config, false).await;
    println!("{out}");
    assert_eq!(code, 0, "check-store after kill -9 mid-sweep:\n{out}{err}");
    assert_eq!(figure(&out, "records without index"), 0);
    assert_eq!(figure(&out, "index without record"), 0);
    let left = figure(&out, "records");
    println!(
        "mid-sweep kill: {} of {DUE_ENTRIES} entries purged before the kill, {left} left",
        DUE_ENTRIES as u64 - left
    );

    // Restarted, the sweep completes.
    let mut child = ServeChild::start(&config).await;
    let (s, r) = admin_post(child.admin, "/v1/sweep", &json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["purged"].as_u64(), Some(left), "{r}");
    assert_eq!(total_records(child.admin).await, 0);
    child.sigterm();
    assert!(child.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    let (code, out, err) = check_store(&config, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(figure(&out, "records"), 0);
    assert_eq!(figure(&out, "index entries"), 0);
}

/// Record key of the store layout (`src/store/keys.rs`): `u16 BE len ‖ issuer ‖ value`.
fn record_key(issuer: &str, value: &str) -> Vec<u8> {
    let mut k = (issuer.len() as u16).to_be_bytes().to_vec();
    k.extend_from_slice(issuer.as_bytes());
    k.extend_from_slice(value.as_bytes());
    k
}

/// Expiry-index key: `u64 BE expires_at ‖ kind byte ‖ record key`.
fn index_key(expires_at: u64, kind: u8, record_key: &[u8]) -> Vec<u8> {
    let mut k = expires_at.to_be_bytes().to_vec();
    k.push(kind);
    k.extend_from_slice(record_key);
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_store_repair_fixes_a_damaged_index() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let store = dir.path().join("store.db");
    let config = write_config_file(dir.path(), &config_text(echo, &store, ""));
    let mut child = ServeChild::start(&config).await;
    for (kind, value) in [("jti", "keep-1"), ("sid", "keep-2"), ("sub", "keep-3")] {
        let (s, r) = admin_post(
            child.admin,
            "/v1/revocations",
            &json!({"kind": kind, "value": value, "ttl": "1h"}),
        )
        .await;
        assert_eq!(s, 201, "{r}");
    }
    child.sigterm();
    assert!(child.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    let (code, out, _) = check_store(&config, false).await;
    assert_eq!(code, 0, "{out}");

    // Damage the index: drop the entry of `keep-1`, add one for a record that never was.
    {
        let db = sled::open(&store).expect("open store");
        let expiry = db.open_tree("expiry").unwrap();
        let jti = db.open_tree("jti").unwrap();
        assert!(jti.get(record_key(ISS, "keep-1")).unwrap().is_some());
        let victim = expiry
            .iter()
            .keys()
            .map(Result::unwrap)
            .find(|k| k[8] == 0 && k.ends_with(b"keep-1"))
            .expect("index entry of keep-1");
        expiry.remove(victim).unwrap();
        expiry
            .insert(
                index_key(now() + 3600, 0, &record_key(ISS, "ghost")),
                &[][..],
            )
            .unwrap();
        db.flush().unwrap();
    }

    let (code, out, err) = check_store(&config, false).await;
    println!("damaged:\n{out}{err}");
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(figure(&out, "records without index"), 1);
    assert_eq!(figure(&out, "index without record"), 1);
    assert!(err.contains("orphan"), "{err}");
    let (code, out, err) = check_store(&config, true).await;
    println!("repair:\n{out}");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = check_store(&config, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(figure(&out, "records"), 3);
    assert_eq!(figure(&out, "index entries"), 3);

    // The repaired store still enforces all three, and the sweeper can find keep-1 again.
    let child = ServeChild::start(&config).await;
    assert_revoked(&proxy_get(child.proxy, &old_token("u", "s", "keep-1")).await);
    assert_revoked(&proxy_get(child.proxy, &old_token("u", "keep-2", "j2")).await);
    assert_revoked(&proxy_get(child.proxy, &old_token("keep-3", "s", "j3")).await);
    let (s, r) = admin_get(child.admin, "/v1/revocations/jti/ghost").await;
    assert_eq!(s, 404, "{r}");
    let _: Value = r;
    child.kill9().await;
}
