//! Unit tests of the CLI: argument parsing, request bodies, URL and token resolution,
//! error lines and tables, and whole admin commands against a fake admin API on
//! `127.0.0.1:0`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use super::client::*;
use super::commands::{self, revoke_request};
use super::output::*;
use super::*;
use crate::config::Config;

fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
    let mut argv = vec!["revgate"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Admin(cmd) => Ok(cmd),
        other => panic!("not an admin command: {other:?}"),
    }
}

#[test]
fn command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn parses_revoke() {
    let cmd = parse(&[
        "revoke",
        "sid",
        "abc",
        "--issuer",
        "https://idp/",
        "--ttl",
        "1h",
        "--reason",
        "stolen",
        "--admin",
        "127.0.0.1:9999",
        "--admin-token",
        "t",
    ])
    .unwrap();
    let AdminCommand::Revoke(a) = cmd else {
        panic!()
    };
    assert_eq!(a.kind, RevokeKind::Sid);
    assert_eq!(a.value, "abc");
    assert_eq!(a.issuer.as_deref(), Some("https://idp/"));
    assert_eq!(a.ttl.as_deref(), Some("1h"));
    assert_eq!(a.reason.as_deref(), Some("stolen"));
    assert_eq!(a.connection.admin.as_deref(), Some("127.0.0.1:9999"));
    assert_eq!(a.connection.admin_token.as_deref(), Some("t"));

    // options before and between the positionals work too
    let cmd = parse(&[
        "revoke",
        "--admin",
        "http://h:1",
        "jti",
        "--until",
        "2030-01-01T00:00:00Z",
        "j-1",
    ])
    .unwrap();
    let AdminCommand::Revoke(a) = cmd else {
        panic!()
    };
    assert_eq!((a.kind, a.value.as_str()), (RevokeKind::Jti, "j-1"));
    assert_eq!(a.until.as_deref(), Some("2030-01-01T00:00:00Z"));

    let cmd = parse(&["revoke", "token", "aaa.bbb.ccc", "--reason", "logout"]).unwrap();
    let AdminCommand::Revoke(a) = cmd else {
        panic!()
    };
    assert_eq!(
        (a.kind, a.value.as_str()),
        (RevokeKind::Token, "aaa.bbb.ccc")
    );

    let e = parse(&[
        "revoke",
        "sid",
        "x",
        "--ttl",
        "1h",
        "--until",
        "2030-01-01T00:00:00Z",
    ])
    .unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    assert!(parse(&["revoke", "iss", "x"]).is_err());
    assert!(parse(&["revoke", "sid"]).is_err());
}

#[test]
fn parses_unrevoke_lookup_list_stats_sweep() {
    let AdminCommand::Unrevoke(a) = parse(&[
        "unrevoke",
        "sub",
        "user 1",
        "--issuer",
        "i",
        "--config",
        "/etc/r.toml",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (a.kind, a.value.as_str(), a.issuer.as_deref()),
        (KindArg::Sub, "user 1", Some("i"))
    );
    assert_eq!(a.connection.config, Some(PathBuf::from("/etc/r.toml")));
    assert!(parse(&["unrevoke", "token", "x"]).is_err());

    let AdminCommand::Lookup(a) = parse(&["lookup", "jti", "j", "--admin", "h:1"]).unwrap() else {
        panic!()
    };
    assert_eq!((a.kind, a.value.as_str()), (KindArg::Jti, "j"));
    assert_eq!(a.connection.admin.as_deref(), Some("h:1"));

    let AdminCommand::List(a) =
        parse(&["list", "--kind", "sid", "--limit", "5", "--json"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (a.kind, a.limit, a.json),
        (Some(KindArg::Sid), Some(5), true)
    );
    let AdminCommand::List(a) = parse(&["list"]).unwrap() else {
        panic!()
    };
    assert_eq!((a.kind, a.limit, a.json), (None, None, false));
    assert!(parse(&["list", "--limit", "0"]).is_err());
    assert!(parse(&["list", "--kind", "token"]).is_err());

    let AdminCommand::Stats(a) = parse(&["stats", "--json", "--admin-token", "t"]).unwrap() else {
        panic!()
    };
    assert!(a.json);
    assert_eq!(a.connection.admin_token.as_deref(), Some("t"));
    assert!(matches!(
        parse(&["sweep", "--admin", "h:2"]).unwrap(),
        AdminCommand::Sweep(_)
    ));
    assert!(matches!(
        Cli::try_parse_from(["revgate", "serve", "--config", "x.toml"])
            .unwrap()
            .command,
        Command::Serve { config: Some(config) } if config == Path::new("x.toml")
    ));
    // Without --config the file is looked for at run time (config_file.rs).
    assert!(matches!(
        Cli::try_parse_from(["revgate", "check-store"])
            .unwrap()
            .command,
        Command::CheckStore {
            config: None,
            repair: false
        }
    ));
}

fn revoke_args(args: &[&str]) -> RevokeArgs {
    let mut argv = vec!["revoke"];
    argv.extend_from_slice(args);
    match parse(&argv).unwrap() {
        AdminCommand::Revoke(a) => a,
        _ => panic!(),
    }
}

fn no_stdin() -> Result<String, CliError> {
    panic!("stdin not expected")
}

#[test]
fn revoke_bodies() {
    let (path, body) = revoke_request(
        &revoke_args(&[
            "sid",
            "abc",
            "--issuer",
            "https://idp/",
            "--ttl",
            "15m",
            "--reason",
            "r",
        ]),
        no_stdin,
    )
    .unwrap();
    assert_eq!(path, ["v1", "revocations"]);
    assert_eq!(
        body,
        json!({"kind":"sid","value":"abc","issuer":"https://idp/","ttl":"15m","reason":"r"})
    );
    let (_, body) = revoke_request(
        &revoke_args(&["jti", "j", "--until", "2029-12-31 23:00:00"]),
        no_stdin,
    )
    .unwrap();
    assert_eq!(
        body,
        json!({"kind":"jti","value":"j","expires_at":"2029-12-31T23:00:00Z"})
    );
    let (_, body) = revoke_request(&revoke_args(&["sub", "u"]), no_stdin).unwrap();
    assert_eq!(body, json!({"kind":"sub","value":"u"}));

    let (path, body) = revoke_request(
        &revoke_args(&["token", "a.b.c", "--reason", "bye"]),
        no_stdin,
    )
    .unwrap();
    assert_eq!(path, ["v1", "revocations", "token"]);
    assert_eq!(body, json!({"token":"a.b.c","reason":"bye"}));
    let (_, body) =
        revoke_request(&revoke_args(&["token", "-"]), || Ok(" x.y.z\n".to_string())).unwrap();
    assert_eq!(body, json!({"token":"x.y.z"}));

    for bad in [
        &["sid", "a", "--ttl", "soon"][..],
        &["sid", "a", "--ttl", "0s"],
        &["sid", "a", "--until", "tomorrow"],
        &["sid", ""],
        &["token", "a.b.c", "--ttl", "1h"],
        &["token", "a.b.c", "--issuer", "i"],
        &["token", "a.b.c", "--until", "2030-01-01T00:00:00Z"],
    ] {
        let err = revoke_request(&revoke_args(bad), || Ok(String::new())).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{bad:?}: {err:?}");
        assert_eq!(err.exit_code(), EXIT_USAGE);
    }
    assert!(matches!(
        revoke_request(&revoke_args(&["token", "-"]), || Ok("\n".to_string())),
        Err(CliError::Usage(_))
    ));
}

fn conn(admin: Option<&str>, token: Option<&str>) -> AdminConnection {
    AdminConnection {
        admin: admin.map(String::from),
        admin_token: token.map(String::from),
        config: None,
    }
}

fn config_with(admin_listen: &str, token: &str) -> Config {
    let text = format!(
        "[server]\nadmin_listen = \"{admin_listen}\"\nadmin_token = \"{token}\"\n\
         [[issuer]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_url = \"https://idp/jwks\"\n\
         [[route]]\nupstream = \"http://127.0.0.1:1\"\n"
    );
    Config::parse(&text, |_| None).unwrap()
}

#[test]
fn url_and_token_resolution_order() {
    let no_env = |_: &str| None;
    let env_tok = |n: &str| (n == ADMIN_TOKEN_ENV).then(|| "from-env".to_string());
    let cfg = config_with("127.0.0.2:7000", "from-config");

    // defaults
    let t = resolve_target(&conn(None, None), None, &no_env).unwrap();
    assert_eq!(t.base.as_str(), "http://127.0.0.1:9090/");
    assert_eq!(t.token, None);
    // config beats default
    let t = resolve_target(&conn(None, None), Some(&cfg), &no_env).unwrap();
    assert_eq!(t.base.as_str(), "http://127.0.0.2:7000/");
    assert_eq!(t.token.as_deref(), Some("from-config"));
    // env beats config for the token
    let t = resolve_target(&conn(None, None), Some(&cfg), &env_tok).unwrap();
    assert_eq!(t.token.as_deref(), Some("from-env"));
    // explicit beats everything
    let t = resolve_target(
        &conn(Some("https://admin.internal:8443/base"), Some("flag")),
        Some(&cfg),
        &env_tok,
    )
    .unwrap();
    assert_eq!(t.base.as_str(), "https://admin.internal:8443/base");
    assert_eq!(t.token.as_deref(), Some("flag"));
    // empty values count as unset
    let empty_env = |n: &str| (n == ADMIN_TOKEN_ENV).then(String::new);
    let t = resolve_target(&conn(None, Some("")), Some(&cfg), &empty_env).unwrap();
    assert_eq!(t.token.as_deref(), Some("from-config"));
    // host:port and bracketed IPv6
    let t = resolve_target(&conn(Some("localhost:9191"), None), None, &no_env).unwrap();
    assert_eq!(t.base.as_str(), "http://localhost:9191/");
    let t = resolve_target(&conn(Some("[::1]:9191"), None), None, &no_env).unwrap();
    assert_eq!(t.base.as_str(), "http://[::1]:9191/");
    // wildcard admin_listen is reached through loopback
    let t = resolve_target(
        &conn(None, None),
        Some(&config_with("0.0.0.0:9300", "x")),
        &no_env,
    )
    .unwrap();
    assert_eq!(t.base.as_str(), "http://127.0.0.1:9300/");
    let t = resolve_target(
        &conn(None, None),
        Some(&config_with("[::]:9300", "x")),
        &no_env,
    )
    .unwrap();
    assert_eq!(t.base.as_str(), "http://[::1]:9300/");
    // bad --admin is a usage error
    for bad in ["ftp://h:1", "http://h:1/?x=1", "not a host:port"] {
        let e = resolve_target(&conn(Some(bad), None), None, &no_env).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE, "{bad}: {e:?}");
    }
}

#[test]
fn config_loading() {
    let dir = tempfile::tempdir().unwrap();
    let no_env = |_: &str| None;
    let missing = dir.path().join("missing.toml");
    // explicit and missing: usage error naming the file
    let c = AdminConnection {
        config: Some(missing.clone()),
        ..conn(Some("h:1"), Some("t"))
    };
    let e = load_config(&c, &[&missing], &no_env).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert!(e.message().contains("missing.toml"), "{e:?}");
    // implicit and missing: no config
    assert!(load_config(&conn(None, None), &[&missing], &no_env)
        .unwrap()
        .is_none());
    // implicit and invalid: usage error
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nbogus = 1\n").unwrap();
    let e = load_config(&conn(None, None), &[&missing, &bad], &no_env).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert!(
        e.message().contains("bogus") && !e.message().contains('\n'),
        "{e:?}"
    );
    // implicit config not needed when --admin and a token are given
    assert!(load_config(&conn(Some("h:1"), Some("t")), &[&bad], &no_env)
        .unwrap()
        .is_none());
    let env_tok = |n: &str| (n == ADMIN_TOKEN_ENV).then(|| "e".to_string());
    assert!(load_config(&conn(Some("h:1"), None), &[&bad], &env_tok)
        .unwrap()
        .is_none());
    // implicit and valid
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nadmin_listen = \"127.0.0.1:9555\"\n[[issuer]]\nissuer = \"i\"\n\
         audiences = [\"a\"]\njwks_url = \"https://idp/jwks\"\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let cfg = load_config(&conn(None, None), &[&good], &no_env)
        .unwrap()
        .unwrap();
    assert_eq!(cfg.server.admin_listen.port(), 9555);
}

#[test]
fn config_file_is_flag_then_env_then_the_search_path() {
    use super::config_file::{locate, required, ConfigFile};
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("revgate.toml");
    let system = dir.path().join("etc-revgate.toml");
    let no_env = |_: &str| None;
    let env = |n: &str| (n == CONFIG_ENV).then(|| "/from/env.toml".to_string());
    let empty_env = |n: &str| (n == CONFIG_ENV).then(String::new);
    let search = [local.as_path(), system.as_path()];
    // Nothing exists: missing, and required() names every place.
    assert_eq!(locate(None, &search, &no_env), ConfigFile::Missing);
    let e = required(None, &search, &no_env).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert!(
        e.message().contains("REVGATE_CONFIG")
            && e.message().contains("revgate.toml")
            && e.message().contains("etc-revgate.toml"),
        "{e:?}"
    );
    // The system file, then the local one before it.
    std::fs::write(&system, "").unwrap();
    assert_eq!(
        locate(None, &search, &no_env),
        ConfigFile::Found(system.clone())
    );
    std::fs::write(&local, "").unwrap();
    assert_eq!(
        locate(None, &search, &no_env),
        ConfigFile::Found(local.clone())
    );
    // $REVGATE_CONFIG before both (empty: unset), --config before everything; named
    // files need not exist (loading them then fails loudly).
    assert_eq!(
        locate(None, &search, &env),
        ConfigFile::Named(PathBuf::from("/from/env.toml"), CONFIG_ENV)
    );
    assert_eq!(
        locate(None, &search, &empty_env),
        ConfigFile::Found(local.clone())
    );
    assert_eq!(
        locate(Some(Path::new("x.toml")), &search, &env),
        ConfigFile::Named(PathBuf::from("x.toml"), "--config")
    );
    assert_eq!(
        required(None, &search, &env).unwrap(),
        PathBuf::from("/from/env.toml")
    );
    assert_eq!(
        super::config_file::search_path()[1],
        Path::new("/etc/revgate/revgate.toml")
    );
}

#[test]
fn admin_url_from_the_environment() {
    let url_env = |n: &str| (n == ADMIN_URL_ENV).then(|| "127.0.0.9:7001".to_string());
    let cfg = config_with("127.0.0.2:7000", "from-config");
    // $REVGATE_ADMIN_URL beats the config, --admin beats it.
    let t = resolve_target(&conn(None, None), Some(&cfg), &url_env).unwrap();
    assert_eq!(t.base.as_str(), "http://127.0.0.9:7001/");
    let t = resolve_target(&conn(Some("h:1"), None), Some(&cfg), &url_env).unwrap();
    assert_eq!(t.base.as_str(), "http://h:1/");
    // Empty counts as unset.
    let empty = |n: &str| (n == ADMIN_URL_ENV).then(String::new);
    let t = resolve_target(&conn(None, None), Some(&cfg), &empty).unwrap();
    assert_eq!(t.base.as_str(), "http://127.0.0.2:7000/");
    // A bad one is a usage error naming the variable.
    let bad = |n: &str| (n == ADMIN_URL_ENV).then(|| "ftp://h:1".to_string());
    let e = resolve_target(&conn(None, None), None, &bad).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert!(e.message().contains("REVGATE_ADMIN_URL"), "{e:?}");
    // With the URL from the environment and a token, no config file is read.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("revgate.toml");
    std::fs::write(&broken, "[server]\nbogus = 1\n").unwrap();
    let both = |n: &str| match n {
        ADMIN_URL_ENV => Some("h:1".to_string()),
        ADMIN_TOKEN_ENV => Some("t".to_string()),
        _ => None,
    };
    assert!(load_config(&conn(None, None), &[&broken], &both)
        .unwrap()
        .is_none());
    assert!(load_config(&conn(None, None), &[&broken], &url_env).is_err());
}

#[test]
fn usage_errors_exit_64() {
    for argv in [
        vec!["revgate", "nope"],
        vec!["revgate", "list", "--bogus"],
        vec!["revgate", "revoke", "jti"],
        vec!["revgate"],
    ] {
        let e = Cli::try_parse_from(&argv).unwrap_err();
        assert!(e.use_stderr(), "{argv:?}");
        assert_eq!(usage_error(&e), EXIT_USAGE, "{argv:?}");
    }
    for argv in [
        vec!["revgate", "--version"],
        vec!["revgate", "stats", "--help"],
    ] {
        let e = Cli::try_parse_from(&argv).unwrap_err();
        assert!(
            !e.use_stderr(),
            "{argv:?}: help and version go to stdout, exit 0"
        );
    }
}

#[test]
fn output_format_is_parsed_on_every_admin_command_that_prints() {
    for args in [
        vec!["revoke", "jti", "x"],
        vec!["unrevoke", "jti", "x"],
        vec!["lookup", "jti", "x"],
        vec!["list"],
        vec!["stats"],
        vec!["sweep"],
        vec!["import", "f.ndjson"],
    ] {
        let cmd = parse(&args).unwrap();
        assert_eq!(cmd.output(), OutputFormat::Table, "{args:?}: default");
        for flag in [["--output", "json"], ["-o", "json"]] {
            let mut with = args.clone();
            with.extend(flag);
            assert_eq!(
                parse(&with).unwrap().output(),
                OutputFormat::Json,
                "{with:?}"
            );
        }
    }
    assert_eq!(
        parse(&["list", "--json"]).unwrap().output(),
        OutputFormat::Json
    );
    assert!(parse(&["list", "--json", "--output", "table"]).is_err());
    assert!(
        parse(&["export", "--output", "json"]).is_err(),
        "export is NDJSON only"
    );
}

#[test]
fn records_and_answers_as_field_tables() {
    let record = json!({"value": "v", "kind": "sid", "issuer": "i", "source": "admin",
        "expires_at": "t2", "revoked_at": "t1", "issued_before": null, "reason": null, "extra": 1});
    let table = fields_table(&record, &RECORD_FIELDS);
    let names: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "FIELD",
            "kind",
            "issuer",
            "value",
            "revoked_at",
            "issued_before",
            "expires_at",
            "reason",
            "source",
            "extra"
        ]
    );
    assert!(table.contains("\nissued_before  -\n"), "{table}");
    assert_eq!(
        fields_table(&json!({"purged": 3}), &[]),
        "FIELD   VALUE\npurged  3\n"
    );
}

#[test]
fn values_are_percent_encoded() {
    assert_eq!(encode_path_segment("abc-1.2_3~"), "abc-1.2_3~");
    assert_eq!(
        encode_path_segment("a/b c+%?#é"),
        "a%2Fb%20c%2B%25%3F%23%C3%A9"
    );
    let base = Url::parse("http://127.0.0.1:9090").unwrap();
    let url = build_url(
        &base,
        &["v1", "revocations", "sid", "a/b?c"],
        &[("issuer", "https://idp/ x&y")],
    );
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9090/v1/revocations/sid/a%2Fb%3Fc?issuer=https%3A%2F%2Fidp%2F+x%26y"
    );
    let base = Url::parse("https://h/admin/").unwrap();
    assert_eq!(
        build_url(&base, &["v1", "stats"], &[]).as_str(),
        "https://h/admin/v1/stats"
    );
    assert!(check_path_value("..").is_err());
    assert!(check_path_value(".").is_err());
    assert!(check_path_value("").is_err());
    assert!(check_path_value("...").is_ok());
}

#[test]
fn error_lines() {
    let body = br#"{"error":"invalid_request","error_description":"unknown issuer \"x\""}"#;
    assert_eq!(
        api_error_line(StatusCode::BAD_REQUEST, body),
        "admin API answered 400 Bad Request: unknown issuer \"x\""
    );
    assert_eq!(
        api_error_line(StatusCode::NOT_FOUND, br#"{"error":"not_found"}"#),
        "admin API answered 404 Not Found: not_found"
    );
    assert_eq!(
        api_error_line(StatusCode::NOT_FOUND, b""),
        "admin API answered 404 Not Found"
    );
    assert_eq!(
        api_error_line(StatusCode::BAD_GATEWAY, b"<html>\n<b>bad</b>\n</html>\n"),
        "admin API answered 502 Bad Gateway: <html> <b>bad</b> </html>"
    );
    let long = "x".repeat(1000);
    let line = api_error_line(StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes());
    assert!(line.chars().count() < 400 && line.ends_with('…'));
    let e = CliError::Failed("two\nlines\r\n".to_string());
    assert_eq!(e.message(), "two lines");
}

#[test]
fn tables() {
    let rows = vec![
        vec!["KIND".to_string(), "VALUE".to_string(), "X".to_string()],
        vec![
            "sid".to_string(),
            "a-long-value".to_string(),
            "1".to_string(),
        ],
    ];
    assert_eq!(
        format_table(&rows),
        "KIND  VALUE         X\nsid   a-long-value  1\n"
    );
    let rec = json!({"kind":"sid","issuer":"i","value":"v\nw","revoked_at":"t","issued_before":null,
                     "expires_at":"2030-01-01T00:00:00Z","reason":null,"source":"admin"});
    assert_eq!(
        record_row(&rec),
        ["sid", "i", "v\\nw", "2030-01-01T00:00:00Z", "admin"]
    );
    let stats = stats_table(&json!({"jti":1,"sid":2,"sub":0,"last_sweep":{"at":"t","purged":3}}));
    assert!(stats.contains("\nsid                2\n"), "{stats}");
    assert!(stats.contains("last_sweep.purged  3"), "{stats}");
    let stats = stats_table(&json!({"jti":0,"sid":0,"sub":0,"last_sweep":null}));
    assert!(stats.contains("last_sweep  never"), "{stats}");
    let stats = stats_table(
        &json!({"jti":0,"sid":0,"sub":0,"last_sweep":null,"logouts":[
        {"issuer":"https://idp/","accepted":4,"refused":1,"last_refusal":
            {"at":"2026-01-02T03:04:05Z","reason":"time","error":"invalid logout token: missing exp"}},
        {"issuer":null,"accepted":0,"refused":2,"last_refusal":null}]}),
    );
    assert!(!stats.contains("logouts"), "{stats}");
    assert!(
        stats.contains("\nISSUER        ACCEPTED  REFUSED  LAST_REFUSAL\n"),
        "{stats}"
    );
    assert!(
        stats.contains("\nhttps://idp/  4         1        2026-01-02T03:04:05Z time: invalid logout token: missing exp\n"),
        "{stats}"
    );
    assert!(
        stats.contains("\n-             0         2        -\n"),
        "{stats}"
    );
}

/// What the fake admin API saw.
#[derive(Debug)]
struct SeenRequest {
    head: String,
    body: String,
}

/// Serves `answers` (one per connection, in order) on `127.0.0.1:0`; returns the base
/// URL and a channel of the requests seen.
async fn fake_admin(
    answers: Vec<(u16, &'static str)>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<SeenRequest>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body_seen = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
            let _ = tx.send(SeenRequest {
                head,
                body: body_seen,
            });
            let reason = StatusCode::from_u16(status)
                .unwrap()
                .canonical_reason()
                .unwrap_or("");
            let answer = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), rx)
}

const BOUND: Duration = Duration::from_secs(20);

/// Parses `args` as a command line and runs the admin command, bounded by [`BOUND`].
async fn run_bounded(args: &[&str]) -> u8 {
    let cmd = parse(args).unwrap();
    tokio::time::timeout(BOUND, commands::run(cmd))
        .await
        .expect("bounded")
}

/// The next request the fake admin API saw, waiting at most [`BOUND`].
async fn next_request(seen: &mut tokio::sync::mpsc::UnboundedReceiver<SeenRequest>) -> SeenRequest {
    tokio::time::timeout(BOUND, seen.recv())
        .await
        .expect("bounded")
        .expect("a request")
}

#[tokio::test]
async fn revoke_against_a_fake_admin_api() {
    let record = r#"{"kind":"sid","issuer":"https://idp/","value":"a/b","revoked_at":"2030-01-01T00:00:00Z","issued_before":"2030-01-01T00:00:00Z","expires_at":"2030-01-02T00:00:00Z","reason":"x","source":"admin"}"#;
    let (base, mut seen) = fake_admin(vec![(201, record)]).await;
    let code = run_bounded(&[
        "revoke",
        "sid",
        "a/b",
        "--ttl",
        "1h",
        "--reason",
        "x",
        "--admin",
        &base,
        "--admin-token",
        "s3cret",
    ])
    .await;
    assert_eq!(code, EXIT_OK);
    let req = next_request(&mut seen).await;
    assert!(
        req.head.starts_with("POST /v1/revocations HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    assert!(
        req.head
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret\r\n"),
        "{}",
        req.head
    );
    // What the admin API's page checks want (SPEC §5): the JSON media type, a loopback
    // Host, no Origin.
    let head = req.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("host: 127.0.0.1:"), "{head}");
    assert!(!head.contains("\norigin:"), "{head}");
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"kind":"sid","value":"a/b","ttl":"1h","reason":"x"})
    );
}

#[tokio::test]
async fn lookup_not_found_exits_1() {
    let (base, mut seen) = fake_admin(vec![(
        404,
        r#"{"error":"not_found","error_description":"no such revocation"}"#,
    )])
    .await;
    let code = run_bounded(&[
        "lookup",
        "sid",
        "a b/c",
        "--issuer",
        "https://idp/",
        "--admin",
        &base,
        "--admin-token",
        "t",
    ])
    .await;
    assert_eq!(code, EXIT_FAILURE);
    let req = next_request(&mut seen).await;
    assert!(
        req.head.starts_with(
            "GET /v1/revocations/sid/a%20b%2Fc?issuer=https%3A%2F%2Fidp%2F HTTP/1.1\r\n"
        ),
        "{}",
        req.head
    );
}

#[tokio::test]
async fn list_follows_cursors_up_to_the_limit() {
    let page1 = r#"{"items":[{"kind":"jti","issuer":"i","value":"1","expires_at":"t","source":"admin"},{"kind":"jti","issuer":"i","value":"2","expires_at":"t","source":"admin"}],"next":"c1"}"#;
    let page2 = r#"{"items":[{"kind":"jti","issuer":"i","value":"3","expires_at":"t","source":"admin"}],"next":"c2"}"#;
    let (base, mut seen) = fake_admin(vec![(200, page1), (200, page2)]).await;
    let code = run_bounded(&[
        "list",
        "--kind",
        "jti",
        "--limit",
        "3",
        "--json",
        "--admin",
        &base,
        "--admin-token",
        "t",
    ])
    .await;
    assert_eq!(code, EXIT_OK);
    let first = next_request(&mut seen).await;
    assert!(
        first
            .head
            .starts_with("GET /v1/revocations?limit=3&kind=jti HTTP/1.1"),
        "{}",
        first.head
    );
    let second = next_request(&mut seen).await;
    assert!(
        second
            .head
            .starts_with("GET /v1/revocations?limit=1&kind=jti&after=c1 HTTP/1.1"),
        "{}",
        second.head
    );
}

#[tokio::test]
async fn unreachable_admin_api_exits_69() {
    // A port that was just free: nothing listens there any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let code = run_bounded(&["stats", "--admin", &addr.to_string(), "--admin-token", "t"]).await;
    assert_eq!(code, EXIT_UNAVAILABLE);
}
