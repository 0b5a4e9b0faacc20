//! Export, import and their CLI commands (SPEC §2 export/import, §5 /v1/export, /v1/import).

mod common;

use common::*;
use serde_json::{json, Value};

const SECOND_ISS: &str = "https://second.test/";

fn two_issuers() -> String {
    format!(
        r#"
[[issuer]]
issuer = "{SECOND_ISS}"
audiences = ["api://second"]
jwks_file = "{}"
algorithms = ["RS256"]
"#,
        key_path("jwks.json")
    )
}

async fn gateway() -> (Gateway, tempfile::TempDir, std::path::PathBuf) {
    let upstream = start_echo().await;
    let (dir, store) = temp_store();
    let text = config_text(upstream, &store, &two_issuers());
    (Gateway::start(&text).await, dir, store)
}

async fn export(gw: &Gateway, query: &str) -> (u16, String, String) {
    let resp = client()
        .get(gw.admin_url(&format!("/v1/export{query}")))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn import(gw: &Gateway, body: String, dry_run: bool) -> (u16, Value) {
    let q = if dry_run { "?dry_run=true" } else { "" };
    status_json(
        client()
            .post(gw.admin_url(&format!("/v1/import{q}")))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn export_import_round_trip_is_lossless() {
    let (a, _da, _) = gateway().await;
    admin_revoke(
        &a,
        &json!({"kind":"jti","value":"j-1","issuer":ISS,"reason":"leaked"}),
    )
    .await;
    admin_revoke(&a, &json!({"kind":"jti","value":"sha256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","issuer":SECOND_ISS})).await;
    admin_revoke(
        &a,
        &json!({"kind":"sid","value":"s-1","issuer":ISS,"ttl":"2h"}),
    )
    .await;
    admin_revoke(&a, &json!({"kind":"sub","value":"alice","issuer":SECOND_ISS,"issued_before":"2030-01-01T00:00:00Z"})).await;
    // A jti-less token revoked by its digest, and a back-channel-sourced record.
    let n = now();
    let jti_less = sign_with(
        "RS256",
        Some("rsa-1"),
        None,
        &json!({"iss":ISS,"aud":AUD,"sub":"bob","iat":n,"exp":n+600}),
    );
    let (s, rec) = admin_post(&a, "/v1/revocations/token", &json!({"token": jti_less})).await;
    assert_eq!(s, 201);
    assert!(rec["value"].as_str().unwrap().starts_with("sha256:"));

    let (status, ct, first) = export(&a, "").await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-ndjson");
    let records = lines(&first);
    assert_eq!(records.len(), 5);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"jti") && kinds.contains(&"sid") && kinds.contains(&"sub"));

    let (b, _db, _) = gateway().await;
    let (status, summary) = import(&b, first.clone(), false).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["imported"], 5);
    assert_eq!(summary["merged"], 0);
    assert_eq!(summary["expired"], 0);
    assert_eq!(summary["rejected"], json!([]));
    let (_, _, second) = export(&b, "").await;
    assert_eq!(
        lines(&second),
        records,
        "export → import → export gives the same records"
    );

    // The imported revocation is enforced.
    let resp = get_with(&b.url("/x"), &jti_less).await;
    assert_eq!(resp.status(), 401);

    // One kind only.
    let (_, _, sids) = export(&b, "?kind=sid").await;
    assert_eq!(lines(&sids).len(), 1);
    let (status, _, _) = export(&b, "?kind=nope").await;
    assert_eq!(status, 400);
    a.stop().await;
    b.stop().await;
}

fn record(
    kind: &str,
    value: &str,
    revoked_at: &str,
    issued_before: Option<&str>,
    expires_at: &str,
) -> String {
    json!({"kind":kind,"issuer":ISS,"value":value,"revoked_at":revoked_at,"issued_before":issued_before,
           "expires_at":expires_at,"reason":"seed","source":"backchannel"})
    .to_string()
}

#[tokio::test]
async fn import_merges_skips_expired_and_reports_bad_lines() {
    let (gw, _d, _) = gateway().await;
    admin_revoke(&gw, &json!({"kind":"sid","value":"s-1","issuer":ISS,"issued_before":"2030-01-01T00:00:00Z","expires_at":"2031-01-01T00:00:00Z"})).await;
    let body = [
        // merges: later issued_before wins, earlier expiry loses
        record("sid", "s-1", "2029-06-01T00:00:00Z", Some("2030-06-01T00:00:00Z"), "2030-12-01T00:00:00Z"),
        // new
        record("jti", "j-new", "2026-01-01T00:00:00Z", None, "2035-01-01T00:00:00Z"),
        // already expired
        record("jti", "j-old", "2020-01-01T00:00:00Z", None, "2021-01-01T00:00:00Z"),
        String::new(),
        "{not json".to_string(),
        json!({"kind":"jti","issuer":"https://unknown.test/","value":"x","revoked_at":"2026-01-01T00:00:00Z","issued_before":null,"expires_at":"2035-01-01T00:00:00Z","reason":null,"source":"admin"}).to_string(),
        record("jti", "j-bad", "2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z"), "2035-01-01T00:00:00Z"),
        record("sub", "", "2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z"), "2035-01-01T00:00:00Z"),
    ]
    .join("\n");

    // Dry run: counts, nothing written.
    let (status, dry) = import(&gw, body.clone(), true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["imported"], 1);
    assert_eq!(dry["merged"], 1);
    let st = admin_stats(&gw).await;
    assert_eq!(
        (st["jti"].as_u64(), st["sid"].as_u64()),
        (Some(0), Some(1)),
        "dry run stores nothing"
    );

    let (status, summary) = import(&gw, body, false).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["imported"], 1);
    assert_eq!(summary["merged"], 1);
    assert_eq!(summary["expired"], 1);
    let rejected: Vec<u64> = summary["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![5, 6, 7, 8], "{summary}");
    assert!(
        summary["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{summary}"
    );

    let (s, merged) = admin_get(
        &gw,
        "/v1/revocations/sid/s-1?issuer=https%3A%2F%2Fidp.test%2F",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(merged["issued_before"], "2030-06-01T00:00:00Z");
    assert_eq!(merged["expires_at"], "2031-01-01T00:00:00Z");
    let (s, new) = admin_get(
        &gw,
        "/v1/revocations/jti/j-new?issuer=https%3A%2F%2Fidp.test%2F",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(new["source"], "backchannel", "source kept");
    assert_eq!(new["reason"], "seed", "reason kept");
    assert_eq!(new["revoked_at"], "2026-01-01T00:00:00Z", "revoked_at kept");
    let (s, _) = admin_get(
        &gw,
        "/v1/revocations/jti/j-old?issuer=https%3A%2F%2Fidp.test%2F",
    )
    .await;
    assert_eq!(s, 404, "expired line not stored");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_export_import_and_offline_store_access() {
    let upstream = start_echo().await;
    let (dir, store) = temp_store();
    let text = config_text(upstream, &store, "");
    let config_file = dir.path().join("revgate.toml");
    std::fs::write(&config_file, &text).unwrap();

    let gw = Gateway::start(&text).await;
    admin_revoke(&gw, &json!({"kind":"jti","value":"j-1"})).await;
    admin_revoke(&gw, &json!({"kind":"sub","value":"alice"})).await;
    let admin = format!("http://{}", gw.admin);

    // Online export through the CLI.
    let out = run_revgate(&["export", "--admin", &admin], &[], dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = String::from_utf8(out.stdout).unwrap();
    assert_eq!(exported.lines().count(), 2);

    // Offline export while the gateway holds the store: refused with a clear message.
    let offline_export = [
        "export",
        "--offline",
        "--config",
        config_file.to_str().unwrap(),
    ];
    let out = run_revgate(&offline_export, &[], dir.path()).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // Online import of a file with one bad line: exit 1, the good lines land.
    let file = dir.path().join("seed.ndjson");
    let mut seed = exported.replace("j-1", "j-2");
    seed.push_str("garbage\n");
    std::fs::write(&file, seed).unwrap();
    let out = run_revgate(
        &[
            "import",
            file.to_str().unwrap(),
            "--admin",
            &admin,
            "--output",
            "json",
        ],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["imported"], 1);
    assert_eq!(summary["merged"], 1);
    assert_eq!(summary["rejected"][0]["line"], 3);
    let (s, _) = admin_get(&gw, "/v1/revocations/jti/j-2").await;
    assert_eq!(s, 200);
    gw.stop().await;

    // Stopped gateway: offline export works and matches; offline import into a new store.
    let out = run_revgate(&offline_export, &[], dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = String::from_utf8(out.stdout).unwrap();
    assert_eq!(offline.lines().count(), 3);

    let backup = dir.path().join("backup.ndjson");
    std::fs::write(&backup, &offline).unwrap();
    let store2 = dir.path().join("restored.db");
    let config2 = dir.path().join("restored.toml");
    std::fs::write(&config2, config_text(upstream, &store2, "")).unwrap();
    let out = run_revgate(
        &[
            "import",
            backup.to_str().unwrap(),
            "--offline",
            "--config",
            config2.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_revgate(
        &["export", "--offline", "--config", config2.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        offline,
        "restored store exports the same"
    );
}
