//! The command-line conventions of SPEC §2 on the real binary: usage errors exit 64 (help
//! and version 0); the config file is `--config`, else `$REVGATE_CONFIG`, else
//! `./revgate.toml`, else `/etc/revgate/revgate.toml`; `REVGATE_ADMIN_URL`; one admin-token
//! variable for `serve` and the CLI; `--output table|json` on every admin command that
//! prints a result; shell completions and the manual page; unknown `REVGATE_*` variables
//! reported; `import --dry-run` saying that nothing was stored; `check-config` warnings.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{json, Value};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A config for a gateway on 127.0.0.1:0 (its store in `dir`).
fn sample_config(dir: &Path) -> String {
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    config_text(upstream, &dir.join("store.db"), "")
}

/// `config` with the admin listener at `admin` (so the CLI finds it through the file).
fn with_admin_listen(config: &str, admin: std::net::SocketAddr) -> String {
    let replaced = config.replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"{admin}\""),
    );
    assert_ne!(replaced, config, "the test config names admin_listen");
    replaced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64_help_and_version_exit_0() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        vec!["no-such-command"],
        vec!["list", "--no-such-flag"],
        vec!["revoke", "jti"],
        vec!["revoke", "nope", "x"],
        vec!["list", "--limit", "zero"],
        vec!["list", "--output", "yaml"],
        vec!["completions", "tcsh"],
        vec![],
    ] {
        let o = run_revgate(&args, &[], cwd.path()).await;
        assert_exit(&o, 64, &format!("revgate {args:?}"));
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
        assert!(!stderr(&o).trim().is_empty(), "{args:?}: says why");
    }
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["list", "--help"],
        vec!["help"],
    ] {
        let o = run_revgate(&args, &[], cwd.path()).await;
        assert_exit(&o, 0, &format!("revgate {args:?}"));
        assert!(!stdout(&o).trim().is_empty(), "{args:?} prints on stdout");
    }
    let o = run_revgate(&["--version"], &[], cwd.path()).await;
    assert_eq!(
        stdout(&o).trim(),
        format!("revgate {}", env!("CARGO_PKG_VERSION"))
    );
    // The long help documents the files, the environment and the exit codes.
    let o = run_revgate(&["--help"], &[], cwd.path()).await;
    for word in [
        "REVGATE_CONFIG",
        "REVGATE_ADMIN_URL",
        "REVGATE_ADMIN_TOKEN",
        "64",
        "69",
    ] {
        assert!(
            stdout(&o).contains(word),
            "--help lacks {word}:\n{}",
            stdout(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_flag_then_env_then_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let text = sample_config(dir.path());
    let named = dir.path().join("named.toml");
    std::fs::write(
        &named,
        text.replace("https://idp.test/", "https://named.test/"),
    )
    .unwrap();
    let named_str = named.to_str().unwrap();

    // REVGATE_CONFIG when --config is not given.
    let env = [("REVGATE_CONFIG", named_str)];
    let o = run_revgate(&["check-config"], &env, cwd.path()).await;
    assert_exit(&o, 0, "check-config with REVGATE_CONFIG");
    assert!(
        stdout(&o).starts_with(&format!("# {named_str}: OK")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("https://named.test/"), "{}", stdout(&o));

    // ./revgate.toml when neither is given ...
    std::fs::write(cwd.path().join("revgate.toml"), &text).unwrap();
    let o = run_revgate(&["check-config"], &[], cwd.path()).await;
    assert_exit(&o, 0, "check-config with ./revgate.toml");
    assert!(
        stdout(&o).starts_with("# revgate.toml: OK"),
        "{}",
        stdout(&o)
    );
    // ... and REVGATE_CONFIG wins over it, --config over both.
    let o = run_revgate(&["check-config"], &env, cwd.path()).await;
    assert!(stdout(&o).contains("https://named.test/"), "{}", stdout(&o));
    let o = run_revgate(
        &["check-config", "--config", "revgate.toml"],
        &env,
        cwd.path(),
    )
    .await;
    assert_exit(&o, 0, "--config over REVGATE_CONFIG");
    assert!(
        !stdout(&o).contains("https://named.test/"),
        "{}",
        stdout(&o)
    );
    // check-store finds it the same way.
    let o = run_revgate(&["check-store"], &env, cwd.path()).await;
    assert_exit(&o, 0, "check-store with REVGATE_CONFIG");
    assert!(stdout(&o).contains("consistent"), "{}", stdout(&o));

    // A named file that does not exist is an error, not a fall-back to ./revgate.toml.
    let missing = [("REVGATE_CONFIG", "/nonexistent/revgate.toml")];
    let o = run_revgate(&["check-config"], &missing, cwd.path()).await;
    assert_exit(&o, 64, "REVGATE_CONFIG naming a missing file");
    assert!(
        stderr(&o).contains("/nonexistent/revgate.toml"),
        "{}",
        stderr(&o)
    );

    // Nothing at all: one line naming where it looked (only checkable where the system
    // file does not exist).
    if !Path::new(revgate::cli::SYSTEM_CONFIG_FILE).exists() {
        let empty = tempfile::tempdir().unwrap();
        for cmd in ["check-config", "serve", "check-store"] {
            let o = run_revgate(&[cmd], &[], empty.path()).await;
            assert_exit(&o, 64, cmd);
            let err = stderr(&o);
            assert!(
                err.contains("no config file")
                    && err.contains("REVGATE_CONFIG")
                    && err.contains("/etc/revgate/revgate.toml"),
                "{cmd}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{cmd}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_find_the_api_through_env_and_the_config_file() {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let gw = Gateway::start(&config_text(echo, &store, "")).await;
    let cwd = tempfile::tempdir().unwrap();
    let admin_url = format!("http://{}", gw.admin);

    // REVGATE_ADMIN_URL.
    let o = run_revgate(&["stats"], &[("REVGATE_ADMIN_URL", &admin_url)], cwd.path()).await;
    assert_exit(&o, 0, "stats with REVGATE_ADMIN_URL");
    // --admin wins over it.
    let dead = format!("http://{}", dead_addr());
    let o = run_revgate(
        &["stats", "--admin", &admin_url],
        &[("REVGATE_ADMIN_URL", &dead)],
        cwd.path(),
    )
    .await;
    assert_exit(&o, 0, "--admin over REVGATE_ADMIN_URL");
    let o = run_revgate(&["stats"], &[("REVGATE_ADMIN_URL", &dead)], cwd.path()).await;
    assert_exit(&o, 69, "REVGATE_ADMIN_URL naming a dead address");
    let o = run_revgate(&["stats"], &[("REVGATE_ADMIN_URL", "ftp://x")], cwd.path()).await;
    assert_exit(&o, 64, "a bad REVGATE_ADMIN_URL");
    assert!(stderr(&o).contains("REVGATE_ADMIN_URL"), "{}", stderr(&o));

    // server.admin_listen of the config found through REVGATE_CONFIG, then of ./revgate.toml.
    let config = with_admin_listen(&sample_config(dir.path()), gw.admin);
    let path = write_config_file(dir.path(), &config);
    let env = [("REVGATE_CONFIG", path.to_str().unwrap())];
    let o = run_revgate(&["sweep"], &env, cwd.path()).await;
    assert_exit(&o, 0, "sweep with REVGATE_CONFIG");
    std::fs::write(cwd.path().join("revgate.toml"), &config).unwrap();
    let o = run_revgate(&["lookup", "sub", "nobody"], &[], cwd.path()).await;
    assert_exit(&o, 1, "lookup through ./revgate.toml reaches the API (404)");
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_token_variable_for_serve_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config_file(dir.path(), &sample_config(dir.path()));

    // serve takes server.admin_token from REVGATE_ADMIN_TOKEN ...
    let mut cmd = ServeChild::command(&path);
    cmd.env("REVGATE_ADMIN_TOKEN", "one-token");
    let mut child = ServeChild::spawn(cmd).await;
    let admin = child.admin.to_string();
    let (status, _) = admin_get(child.admin, "/v1/stats").await;
    assert_eq!(status, 401, "the API wants the token now");
    let o = run_revgate(&["stats", "--admin", &admin], &[], dir.path()).await;
    assert_exit(&o, 1, "the CLI without the token");
    // ... and the CLI sends the same variable.
    let o = run_revgate(
        &["stats", "--admin", &admin],
        &[("REVGATE_ADMIN_TOKEN", "one-token")],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "the CLI with REVGATE_ADMIN_TOKEN");
    child.sigterm();
    child.wait_exit(WAIT).await.expect("exit after SIGTERM");

    // REVGATE_SERVER_ADMIN_TOKEN (the generic override) wins for serve, and the
    // disagreement is logged.
    let mut cmd = ServeChild::command(&path);
    cmd.env("REVGATE_ADMIN_TOKEN", "cli-token")
        .env("REVGATE_SERVER_ADMIN_TOKEN", "server-token");
    let mut child = ServeChild::spawn(cmd).await;
    let (status, _) = admin_get(child.admin.with_token("server-token"), "/v1/stats").await;
    assert_eq!(status, 200);
    let (status, _) = admin_get(child.admin.with_token("cli-token"), "/v1/stats").await;
    assert_eq!(status, 401);
    assert!(
        child
            .log_text()
            .contains("REVGATE_SERVER_ADMIN_TOKEN differ"),
        "{}",
        child.log_text()
    );
    child.sigterm();
    child.wait_exit(WAIT).await.expect("exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_command_prints_a_table_or_json() {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let gw = Gateway::start(&config_text(echo, &store, "")).await;
    let admin = format!("http://{}", gw.admin);
    let run = |args: Vec<String>| {
        let dir = dir.path().to_path_buf();
        async move {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            run_revgate(&argv, &[], &dir).await
        }
    };
    let with = |cmd: &[&str], output: &str| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--admin".into(),
            admin.clone(),
            "--output".into(),
            output.into(),
        ]);
        v
    };
    let file = dir.path().join("one.ndjson");
    let record = json!({"kind": "sub", "issuer": ISS, "value": "imported", "revoked_at": "2026-01-01T00:00:00Z",
        "issued_before": "2026-01-01T00:00:00Z", "expires_at": revgate::clock::rfc3339(now() + 3600),
        "reason": null, "source": "admin"});
    std::fs::write(&file, format!("{record}\n")).unwrap();
    let file = file.to_str().unwrap().to_string();

    // (command, what the table starts with, a JSON member the answer has)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["revoke", "jti", "out-1"], "FIELD", "expires_at"),
        (vec!["lookup", "jti", "out-1"], "FIELD", "revoked_at"),
        (vec!["list"], "KIND", "kind"),
        (vec!["stats"], "NAME", "logouts"),
        (vec!["sweep"], "FIELD", "purged"),
        (vec!["import", &file], "imported", "imported"),
        (vec!["unrevoke", "jti", "out-1"], "unrevoked", "unrevoked"),
    ];
    for (cmd, table_head, member) in cases {
        let o = run(with(&cmd, "table")).await;
        assert_exit(&o, 0, &format!("{cmd:?} --output table"));
        assert!(
            stdout(&o).starts_with(table_head),
            "{cmd:?} table:\n{}",
            stdout(&o)
        );
        assert!(
            serde_json::from_str::<Value>(&stdout(&o)).is_err(),
            "{cmd:?}"
        );
        if cmd[0] == "unrevoke" {
            // Revoked again so that the JSON run has something to remove.
            assert_eq!(
                admin_post(
                    &gw,
                    "/v1/revocations",
                    &json!({"kind": "jti", "value": "out-1"})
                )
                .await
                .0,
                201
            );
        }
        let o = run(with(&cmd, "json")).await;
        assert_exit(&o, 0, &format!("{cmd:?} --output json"));
        let out = stdout(&o);
        let first: Value = if cmd[0] == "list" {
            // One record JSON per line.
            let lines: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            assert!(!lines.is_empty(), "{out}");
            lines[0].clone()
        } else {
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{cmd:?}: {e}: {out}"))
        };
        assert!(
            first.get(member).is_some(),
            "{cmd:?}: no {member} in {first}"
        );
    }
    // `-o` is the short form, and `--json` of list / stats still works.
    let o = run(vec![
        "stats".into(),
        "--admin".into(),
        admin.clone(),
        "-o".into(),
        "json".into(),
    ])
    .await;
    assert!(
        serde_json::from_str::<Value>(&stdout(&o)).is_ok(),
        "{}",
        stdout(&o)
    );
    let o = run(vec![
        "stats".into(),
        "--admin".into(),
        admin.clone(),
        "--json".into(),
    ])
    .await;
    assert!(
        serde_json::from_str::<Value>(&stdout(&o)).is_ok(),
        "{}",
        stdout(&o)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dry_run_says_nothing_was_stored() {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let gw = Gateway::start(&config_text(echo, &store, "")).await;
    let admin = format!("http://{}", gw.admin);
    let file = dir.path().join("dry.ndjson");
    let line = json!({"kind": "jti", "issuer": ISS, "value": "dry-1", "revoked_at": "2026-01-01T00:00:00Z",
        "issued_before": null, "expires_at": revgate::clock::rfc3339(now() + 3600),
        "reason": "r", "source": "admin"});
    std::fs::write(&file, format!("{line}\nnot json\n")).unwrap();
    let o = run_revgate(
        &[
            "import",
            file.to_str().unwrap(),
            "--dry-run",
            "--admin",
            &admin,
        ],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 1, "a dry run with a bad line");
    let err = stderr(&o);
    assert!(
        err.contains("dry run: nothing was stored (1 record(s) would be imported, 0 merged, 0 skipped as expired, 1 rejected)"),
        "{err}"
    );
    assert!(err.contains("nothing was stored (dry run)"), "{err}");
    assert!(!err.contains("were imported"), "{err}");
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/dry-1").await.0, 404);
    // Without the bad line: exit 0, the same notice, still nothing stored.
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let o = run_revgate(
        &[
            "import",
            file.to_str().unwrap(),
            "--dry-run",
            "--admin",
            &admin,
            "-o",
            "json",
        ],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "a clean dry run");
    assert!(
        stderr(&o).contains("dry run: nothing was stored"),
        "{}",
        stderr(&o)
    );
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (summary["dry_run"].as_bool(), summary["imported"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/dry-1").await.0, 404);
    // An empty file imports nothing, without a request (the API refuses an empty body).
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let o = run_revgate(
        &[
            "import",
            empty.to_str().unwrap(),
            "--admin",
            &admin,
            "-o",
            "json",
        ],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "an empty file");
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (
            summary["imported"].as_u64(),
            summary["rejected_count"].as_u64()
        ),
        (Some(0), Some(0))
    );
    // A real import says nothing of the kind.
    let o = run_revgate(
        &["import", file.to_str().unwrap(), "--admin", &admin],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "import");
    assert!(!stderr(&o).contains("dry run"), "{}", stderr(&o));
    assert_eq!(admin_get(&gw, "/v1/revocations/jti/dry-1").await.0, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_revgate_variables_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config_file(dir.path(), &sample_config(dir.path()));
    let config = path.to_str().unwrap();
    let o = run_revgate(
        &["check-config", "--config", config],
        &[("REVGATE_SERVER_LISTN", "0.0.0.0:80")],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "an unknown variable is a warning, not an error");
    assert!(
        stderr(&o).contains(
            "revgate: warning: environment variable REVGATE_SERVER_LISTN is not a revgate setting and is ignored (did you mean REVGATE_SERVER_LISTEN?)"
        ),
        "{}",
        stderr(&o)
    );
    // Known ones are not reported.
    let o = run_revgate(
        &["check-config", "--config", config],
        &[
            ("REVGATE_AUTH_LEEWAY", "30s"),
            ("REVGATE_ADMIN_URL", "http://127.0.0.1:1"),
        ],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "known variables");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // serve logs it at warn.
    let mut cmd = ServeChild::command(&path);
    cmd.env("REVGATE_STORE_SWEEP_INTERVALL", "1s");
    let mut child = ServeChild::spawn(cmd).await;
    let log = child.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("REVGATE_STORE_SWEEP_INTERVALL"))
        .unwrap_or_else(|| panic!("not logged: {log}"));
    assert!(
        line.contains("WARN") && line.contains("REVGATE_STORE_SWEEP_INTERVAL?"),
        "{line}"
    );
    child.sigterm();
    child.wait_exit(WAIT).await.expect("exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_warns_when_audiences_overlap_without_require_typ() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample_config(dir.path());
    // The test issuer accepts logout tokens for CLIENT_ID: add it to the access audiences.
    let overlapping = good.replacen(
        &format!("audiences = [\"{AUD}\""),
        &format!("audiences = [\"{CLIENT_ID}\", \"{AUD}\""),
        1,
    );
    assert_ne!(overlapping, good);
    let path = write_config_file(dir.path(), &overlapping);
    let o = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "a warning still exits 0");
    let err = stderr(&o);
    assert!(
        err.contains("warning")
            && err.contains("issuer[0].audiences")
            && err.contains("overlap")
            && err.contains(CLIENT_ID)
            && err.contains("require_typ"),
        "{err}"
    );
    // With require_typ, ID tokens are told apart: no warning.
    let typed = overlapping.replacen("[[issuer]]\n", "[[issuer]]\nrequire_typ = \"at+jwt\"\n", 1);
    assert_ne!(typed, overlapping);
    let path = write_config_file(dir.path(), &typed);
    let o = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert_exit(&o, 0, "require_typ set");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // And the original has none.
    let path = write_config_file(dir.path(), &good);
    let o = run_revgate(
        &["check-config", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_manual_pages() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _revgate"),
        ("zsh", "#compdef revgate"),
        ("fish", "complete -c revgate"),
    ] {
        let o = run_revgate(&["completions", shell], &[], dir.path()).await;
        assert_exit(&o, 0, shell);
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // (fish spells options `-l admin-token`)
        for word in [
            "check-config",
            "discover",
            "unrevoke",
            "output",
            "admin-token",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        // The script is valid for its shell, where that shell is installed.
        let file = dir.path().join(format!("revgate.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let check = match shell {
            "bash" => Some(("bash", vec!["-n"])),
            "zsh" => Some(("zsh", vec!["-n"])),
            "fish" => Some(("fish", vec!["--no-execute"])),
            _ => None,
        };
        if let Some((program, args)) = check {
            match std::process::Command::new(program)
                .args(&args)
                .arg(&file)
                .output()
            {
                Ok(out) => assert!(
                    out.status.success(),
                    "{program} refuses the script: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(_) => {
                    eprintln!("{program} not installed: syntax of the {shell} script not checked")
                }
            }
        }
    }

    let o = run_revgate(&["man"], &[], dir.path()).await;
    assert_exit(&o, 0, "man");
    let page = stdout(&o);
    assert!(page.contains(".TH revgate 1"), "{page}");
    for word in [
        "serve",
        "check\\-config",
        "discover",
        "REVGATE_ADMIN_URL",
        "Exit status",
    ] {
        assert!(page.contains(word), "revgate(1) lacks {word}");
    }
    let mandir = dir.path().join("man1");
    std::fs::create_dir(&mandir).unwrap();
    let o = run_revgate(&["man", "--dir", mandir.to_str().unwrap()], &[], dir.path()).await;
    assert_exit(&o, 0, "man --dir");
    for page in [
        "revgate.1",
        "revgate-serve.1",
        "revgate-revoke.1",
        "revgate-discover.1",
        "revgate-completions.1",
    ] {
        let text =
            std::fs::read_to_string(mandir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    // man(1) renders it, where man is installed.
    if let Ok(out) = std::process::Command::new("man")
        .arg("-l")
        .arg(mandir.join("revgate.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("REVGATE_CONFIG"), "{text}");
        }
    }
}
