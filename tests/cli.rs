//! The `revgate` binary (SPEC §2, §3): admin subcommands against an in-process gateway,
//! `check-config`, `check-store`, and `serve` refusing a bad configuration with exit 64.
//! Every child runs with a bounded wait and is killed if it overruns.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{json, Value};

async fn start() -> (tempfile::TempDir, Gateway) {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let gw = Gateway::start(&config_text(echo, &store, "")).await;
    (dir, gw)
}

fn admin_arg(gw: &Gateway) -> String {
    format!("http://{}", gw.admin)
}

/// Runs `revgate args...` in a scratch directory (no stray ./revgate.toml).
async fn revgate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    run_revgate(args, envs, cwd.path()).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Non-zero exit with exactly one non-empty line on stderr.
#[track_caller]
fn assert_fails_with_one_line(o: &Output, what: &str) {
    assert!(
        !o.status.success(),
        "{what} should fail; stdout: {}",
        stdout(o)
    );
    assert!(
        o.status.code().is_some(),
        "{what}: killed by a signal? {:?}",
        o.status
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {err:?}");
}

fn json_stdout(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_lookup_unrevoke_round_trip() {
    let (_dir, gw) = start().await;
    let admin = admin_arg(&gw);
    let t = token("nina", "s-n", "cli-jti-1");
    assert_passes(&proxy_get(&gw, &t).await);

    let o = revgate(
        &[
            "revoke",
            "jti",
            "cli-jti-1",
            "--reason",
            "cli test",
            "--admin",
            &admin,
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "revoke");
    let record = json_stdout(&o);
    assert_eq!(record["kind"], "jti");
    assert_eq!(record["value"], "cli-jti-1");
    assert_eq!(record["issuer"], ISS);
    assert_eq!(record["reason"], "cli test");
    assert_eq!(record["source"], "admin");
    assert_revoked(&proxy_get(&gw, &t).await);

    let o = revgate(
        &[
            "lookup",
            "jti",
            "cli-jti-1",
            "--admin",
            &admin,
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "lookup");
    assert_eq!(json_stdout(&o)["value"], "cli-jti-1");
    // The default output is a FIELD VALUE table.
    let o = revgate(&["lookup", "jti", "cli-jti-1", "--admin", &admin], &[]).await;
    assert_ok(&o, "lookup as a table");
    let table = stdout(&o);
    assert!(table.starts_with("FIELD "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["value", "cli-jti-1"]),
        "{table}"
    );
    // --admin anywhere after the subcommand.
    let o = revgate(
        &[
            "lookup",
            "--admin",
            &admin,
            "jti",
            "cli-jti-1",
            "--issuer",
            ISS,
        ],
        &[],
    )
    .await;
    assert_ok(&o, "lookup with --issuer");

    let o = revgate(&["lookup", "jti", "no-such-jti", "--admin", &admin], &[]).await;
    assert_fails_with_one_line(&o, "lookup of a missing value");

    let o = revgate(&["unrevoke", "jti", "cli-jti-1", "--admin", &admin], &[]).await;
    assert_ok(&o, "unrevoke");
    assert_passes(&proxy_get(&gw, &t).await);
    let o = revgate(&["lookup", "jti", "cli-jti-1", "--admin", &admin], &[]).await;
    assert_fails_with_one_line(&o, "lookup after unrevoke");
    let o = revgate(&["unrevoke", "jti", "cli-jti-1", "--admin", &admin], &[]).await;
    assert_fails_with_one_line(&o, "unrevoke of a missing value");

    // sid and sub, with a value that needs percent-encoding in the admin path.
    let odd = "sess/with space:colon";
    let t2 = token("oscar", odd, "cli-jti-2");
    let o = revgate(
        &["revoke", "sid", odd, "--admin", &admin, "--output=json"],
        &[],
    )
    .await;
    assert_ok(&o, "revoke sid");
    assert!(json_stdout(&o)["issued_before"].is_string());
    assert_revoked(&proxy_get(&gw, &t2).await);
    let o = revgate(
        &["lookup", "sid", odd, "--admin", &admin, "--output=json"],
        &[],
    )
    .await;
    assert_ok(&o, "lookup odd sid");
    assert_eq!(json_stdout(&o)["value"], odd);
    let o = revgate(&["unrevoke", "sid", odd, "--admin", &admin], &[]).await;
    assert_ok(&o, "unrevoke odd sid");
    assert_passes(&proxy_get(&gw, &t2).await);

    let o = revgate(&["revoke", "sub", "oscar", "--admin", &admin], &[]).await;
    assert_ok(&o, "revoke sub");
    assert_revoked(&proxy_get(&gw, &t2).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_stats_and_sweep() {
    let (_dir, gw) = start().await;
    let admin = admin_arg(&gw);
    for (kind, value) in [
        ("jti", "l-jti-1"),
        ("jti", "l-jti-2"),
        ("sid", "l-sid-1"),
        ("sub", "l-sub-1"),
    ] {
        assert_eq!(
            admin_post(
                &gw,
                "/v1/revocations",
                &json!({"kind": kind, "value": value})
            )
            .await
            .0,
            201
        );
    }
    let o = revgate(&["list", "--admin", &admin], &[]).await;
    assert_ok(&o, "list");
    let out = stdout(&o);
    for v in ["l-jti-1", "l-jti-2", "l-sid-1", "l-sub-1"] {
        assert!(out.contains(v), "{v} missing from list:\n{out}");
    }
    let o = revgate(&["list", "--kind", "sid", "--admin", &admin], &[]).await;
    assert_ok(&o, "list --kind");
    let out = stdout(&o);
    assert!(
        out.contains("l-sid-1") && !out.contains("l-jti-1") && !out.contains("l-sub-1"),
        "{out}"
    );
    let o = revgate(&["list", "--json", "--limit", "3", "--admin", &admin], &[]).await;
    assert_ok(&o, "list --json --limit");
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("one record JSON per line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&o));

    let o = revgate(&["stats", "--admin", &admin], &[]).await;
    assert_ok(&o, "stats");
    assert!(!stdout(&o).trim().is_empty());
    let o = revgate(&["stats", "--json", "--admin", &admin], &[]).await;
    assert_ok(&o, "stats --json");
    let stats = json_stdout(&o);
    assert_eq!(
        (
            stats["jti"].as_u64(),
            stats["sid"].as_u64(),
            stats["sub"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{stats}"
    );

    let o = revgate(&["sweep", "--admin", &admin, "--output", "json"], &[]).await;
    assert_ok(&o, "sweep");
    assert_eq!(json_stdout(&o)["purged"], 0);
    assert!(admin_stats(&gw).await["last_sweep"].is_object());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_token_ttl_and_until() {
    let (_dir, gw) = start().await;
    let admin = admin_arg(&gw);
    let n = now();
    let t = token_with("pat", "s-p", "cli-tok-1", |c| c["exp"] = json!(n + 700));
    let o = revgate(
        &[
            "revoke", "token", &t, "--reason", "logout", "--admin", &admin, "-o", "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "revoke token");
    let record = json_stdout(&o);
    assert_eq!(record["kind"], "jti");
    assert_eq!(record["value"], "cli-tok-1");
    assert_eq!(instant(&record["expires_at"]), n + 700 + 60);
    assert_revoked(&proxy_get(&gw, &t).await);
    // A token that does not verify is refused, nothing stored.
    let forged = sign_forged(&claims("pat", "s-p", "cli-forged"));
    let o = revgate(&["revoke", "token", &forged, "--admin", &admin], &[]).await;
    assert_fails_with_one_line(&o, "revoke forged token");
    assert_eq!(
        admin_get(&gw, "/v1/revocations/jti/cli-forged").await.0,
        404
    );

    let before = now();
    let o = revgate(
        &[
            "revoke", "jti", "cli-ttl", "--ttl", "90s", "--admin", &admin, "-o", "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "--ttl");
    let exp = instant(&json_stdout(&o)["expires_at"]);
    assert!(exp >= before + 90 && exp <= now() + 90, "{exp}");

    let at = n + 86_400;
    let until = revgate::clock::rfc3339(at);
    let o = revgate(
        &[
            "revoke",
            "sid",
            "cli-until",
            "--until",
            &until,
            "--admin",
            &admin,
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "--until Z");
    assert_eq!(instant(&json_stdout(&o)["expires_at"]), at);

    // The same instant written with a -05:00 offset.
    let local = revgate::clock::rfc3339(at - 5 * 3600);
    let until = format!("{}-05:00", local.trim_end_matches('Z'));
    let o = revgate(
        &[
            "revoke",
            "sub",
            "cli-until-off",
            "--until",
            &until,
            "--admin",
            &admin,
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "--until with offset");
    assert_eq!(instant(&json_stdout(&o)["expires_at"]), at, "{until}");

    // Bad durations / instants: non-zero, one line, nothing stored.
    for args in [
        vec!["revoke", "jti", "cli-bad", "--ttl", "forever"],
        vec!["revoke", "jti", "cli-bad", "--until", "tomorrow"],
        vec![
            "revoke",
            "jti",
            "cli-bad",
            "--until",
            "2001-01-01T00:00:00Z",
        ],
    ] {
        let mut args = args.clone();
        args.extend(["--admin", &admin]);
        let o = revgate(&args, &[]).await;
        assert_fails_with_one_line(&o, &format!("{args:?}"));
    }
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/cli-bad").await.0, 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_fails_with_one_line() {
    // A port nobody listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let admin = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["stats", "--admin", &admin],
        vec!["revoke", "jti", "x", "--admin", &admin],
        vec!["lookup", "jti", "x", "--admin", &admin],
        vec!["sweep", "--admin", &admin],
    ] {
        let o = revgate(&args, &[]).await;
        assert_fails_with_one_line(&o, &format!("{args:?}"));
        assert!(
            stderr(&o).contains(&port.to_string()),
            "names the admin URL: {}",
            stderr(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_from_flag_env_and_config() {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let config = with_server_keys(
        &config_text(echo, &store, ""),
        "admin_token = \"cli-admin-secret\"",
    );
    let gw = Gateway::start(&config).await;
    let admin = admin_arg(&gw);

    let o = revgate(&["stats", "--admin", &admin], &[]).await;
    assert_fails_with_one_line(&o, "no token");
    let o = revgate(
        &[
            "revoke",
            "jti",
            "tok-a",
            "--admin",
            &admin,
            "--admin-token",
            "wrong",
        ],
        &[],
    )
    .await;
    assert_fails_with_one_line(&o, "wrong token");
    let o = revgate(
        &["stats", "--admin", &admin],
        &[("REVGATE_ADMIN_TOKEN", "wrong")],
    )
    .await;
    assert_fails_with_one_line(&o, "wrong env token");
    assert_eq!(total_records(gw.with_token("cli-admin-secret")).await, 0);

    let o = revgate(
        &[
            "revoke",
            "jti",
            "tok-a",
            "--admin",
            &admin,
            "--admin-token",
            "cli-admin-secret",
        ],
        &[],
    )
    .await;
    assert_ok(&o, "--admin-token");
    let o = revgate(
        &["revoke", "jti", "tok-b", "--admin", &admin],
        &[("REVGATE_ADMIN_TOKEN", "cli-admin-secret")],
    )
    .await;
    assert_ok(&o, "REVGATE_ADMIN_TOKEN");
    // --admin-token wins over the environment.
    let o = revgate(
        &[
            "lookup",
            "jti",
            "tok-a",
            "--admin",
            &admin,
            "--admin-token",
            "cli-admin-secret",
        ],
        &[("REVGATE_ADMIN_TOKEN", "wrong")],
    )
    .await;
    assert_ok(&o, "flag over env");
    // The token from --config's server.admin_token.
    let cfg_path = write_config_file(dir.path(), &config);
    let o = revgate(
        &[
            "lookup",
            "jti",
            "tok-b",
            "--admin",
            &admin,
            "--config",
            cfg_path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_ok(&o, "token from --config");
    assert_eq!(total_records(gw.with_token("cli-admin-secret")).await, 2);
    gw.stop().await;
}

fn sample_config(dir: &Path) -> String {
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    config_text(upstream, &dir.join("store.db"), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_valid_prints_settings_with_the_token_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_server_keys(
        &sample_config(dir.path()),
        "admin_token = \"very-secret-admin-token\"",
    );
    let path = write_config_file(dir.path(), &text);
    let o = revgate(&["check-config", "--config", path.to_str().unwrap()], &[]).await;
    assert_ok(&o, "check-config");
    let out = stdout(&o);
    assert!(
        !out.contains("very-secret-admin-token"),
        "token leaked:\n{out}"
    );
    assert!(
        !stderr(&o).contains("very-secret-admin-token"),
        "token leaked on stderr"
    );
    assert!(out.contains("admin_token"), "{out}");
    assert!(out.contains("https://idp.test/"), "{out}");
    assert!(out.contains("max_token_lifetime"), "{out}");
    assert!(out.contains("sweep_interval"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_bad_files_with_64() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample_config(dir.path());
    let cases: Vec<(String, &str)> = vec![
        (with_server_keys(&good, "bogus_key = 1"), "bogus_key"),
        (
            good.replace("[auth]\n", "[auth]\nno_such_setting = true\n"),
            "no_such_setting",
        ),
        (
            with_server_keys(&good, "max_header_bytes = 10"),
            "max_header_bytes",
        ),
        (
            good.replace("leeway = \"60s\"", "leeway = \"sixty\""),
            "leeway",
        ),
        (
            good.replace(
                "admin_listen = \"127.0.0.1:0\"",
                "admin_listen = \"not-an-address\"",
            ),
            "admin_listen",
        ),
        (
            good.replace(
                "admin_listen = \"127.0.0.1:0\"",
                "admin_listen = \"0.0.0.0:0\"",
            ),
            "admin_listen",
        ),
    ];
    for (text, key) in cases {
        let path = write_config_file(dir.path(), &text);
        let o = revgate(&["check-config", "--config", path.to_str().unwrap()], &[]).await;
        assert_eq!(
            o.status.code(),
            Some(64),
            "{key}: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert!(stderr(&o).contains(key), "{key} not named: {}", stderr(&o));
    }
    let missing = dir.path().join("nope.toml");
    let o = revgate(
        &["check-config", "--config", missing.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = revgate(&["serve", "--config", missing.to_str().unwrap()], &[]).await;
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_public_admin_listener_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample_config(dir.path()).replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:0\"",
    );
    let path = write_config_file(dir.path(), &text);
    let o = revgate(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(o.status.code(), Some(64), "{:?} {}", o.status, stderr(&o));
    assert!(stderr(&o).contains("admin_listen"), "{}", stderr(&o));
    assert!(stderr(&o).contains("admin_token"), "{}", stderr(&o));
    // The store was not even created.
    assert!(!dir.path().join("store.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_store_reports_counts() {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let text = config_text(echo, &store, "");
    let gw = Gateway::start(&text).await;
    for (kind, value) in [("jti", "cs-1"), ("jti", "cs-2"), ("sid", "cs-3")] {
        assert_eq!(
            admin_post(
                &gw,
                "/v1/revocations",
                &json!({"kind": kind, "value": value})
            )
            .await
            .0,
            201
        );
    }
    gw.stop().await;
    let path = write_config_file(dir.path(), &text);
    let o = revgate(&["check-store", "--config", path.to_str().unwrap()], &[]).await;
    assert_ok(&o, "check-store");
    let out = stdout(&o);
    let count = |label: &str| -> u64 {
        out.lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label} count in:\n{out}"))
    };
    assert_eq!(count("records:"), 3, "{out}");
    assert_eq!(count("index entries:"), 3, "{out}");
    assert_eq!(count("records without index:"), 0, "{out}");
    assert_eq!(count("index without record:"), 0, "{out}");
}
