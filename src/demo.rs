//! `revgate demo`: the gateway on 127.0.0.1:8080 (admin :9090) in front of an in-process
//! echo upstream on :8081, trusting a dev signing key from `data/demo/` that is committed
//! to the repository and therefore NOT FOR PRODUCTION. Prints a ready token and the
//! commands to revoke it; the store lives in `data/demo.db`, so a restart of the demo
//! shows revocations surviving.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::config::{AuthConfig, Config, IssuerConfig, RouteConfig, ServerConfig, StoreConfig};

/// `iss` of the demo's tokens.
pub const DEMO_ISSUER: &str = "https://demo.revgate.local/";
/// `aud` of the demo's tokens.
pub const DEMO_AUDIENCE: &str = "demo-api";
/// `kid` of the demo key.
pub const DEMO_KID: &str = "demo-key-1";
/// Echo upstream address.
pub const DEMO_UPSTREAM: &str = "127.0.0.1:8081";
/// Where the demo keeps its store.
pub const DEMO_STORE: &str = "data/demo.db";
/// The demo JWKS file (written from the embedded copy when missing).
pub const DEMO_JWKS_FILE: &str = "data/demo/jwks.json";

/// Dev signing key, committed on purpose: NOT FOR PRODUCTION.
const DEMO_PRIVATE_KEY: &str = include_str!("../data/demo/private-key.pem");
const DEMO_JWKS: &str = include_str!("../data/demo/jwks.json");
/// Lifetime of the printed token.
const DEMO_TOKEN_LIFETIME: u64 = 3600;

/// The demo's configuration.
pub fn demo_config() -> Config {
    Config {
        server: ServerConfig::default(),
        issuers: vec![IssuerConfig {
            issuer: DEMO_ISSUER.to_string(),
            audiences: vec![DEMO_AUDIENCE.to_string()],
            jwks_url: None,
            jwks_file: Some(PathBuf::from(DEMO_JWKS_FILE)),
            algorithms: vec!["RS256".to_string()],
            hmac_secret_file: None,
            session_claim: "sid".to_string(),
            require_typ: String::new(),
            logout_audiences: vec!["demo-client".to_string()],
            logout_algorithms: vec!["RS256".to_string()],
            logout_require_exp: true,
        }],
        auth: AuthConfig::default(),
        routes: vec![
            RouteConfig {
                prefix: "/".to_string(),
                upstream: format!("http://{DEMO_UPSTREAM}"),
                strip_prefix: false,
                timeout: Duration::from_secs(30),
                public: false,
                scopes: vec![],
            },
            RouteConfig {
                prefix: "/public".to_string(),
                upstream: format!("http://{DEMO_UPSTREAM}"),
                strip_prefix: false,
                timeout: Duration::from_secs(30),
                public: true,
                scopes: vec![],
            },
        ],
        backchannel: Default::default(),
        revoke_endpoint: Default::default(),
        store: StoreConfig {
            path: PathBuf::from(DEMO_STORE),
            ..StoreConfig::default()
        },
        cluster: Default::default(),
    }
}

/// Signs a demo access token (RS256, the dev key) with the given claims.
pub fn mint(sub: &str, sid: &str, jti: &str, iat: u64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(DEMO_KID.to_string());
    let claims = serde_json::json!({
        "iss": DEMO_ISSUER,
        "aud": DEMO_AUDIENCE,
        "sub": sub,
        "sid": sid,
        "jti": jti,
        "iat": iat,
        "exp": iat + DEMO_TOKEN_LIFETIME,
        "scope": "read write",
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(DEMO_PRIVATE_KEY.as_bytes())
        .expect("embedded demo key is valid");
    jsonwebtoken::encode(&header, &claims, &key).expect("signing with the demo key")
}

/// A short random identifier (no crypto strength needed: demo ids only).
fn random_id() -> String {
    format!("{:012x}", crate::ids::random_u64() & 0xffff_ffff_ffff)
}

/// Why the demo could not start; each is one line for the operator (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// [`DEMO_JWKS_FILE`] was missing and could not be written.
    #[error("cannot write {DEMO_JWKS_FILE}: {0}")]
    WriteJwks(std::io::Error),
    /// The built-in configuration did not validate.
    #[error("demo config: {0}")]
    Config(crate::config::ConfigError),
    /// [`DEMO_UPSTREAM`] could not be bound.
    #[error("cannot bind echo upstream {DEMO_UPSTREAM}: {0}")]
    BindUpstream(std::io::Error),
    /// The gateway did not start (store, listeners, keys).
    #[error("{0}")]
    Start(#[from] crate::StartError),
}

/// Runs the demo until Ctrl-C / SIGTERM.
pub async fn run_demo() -> Result<(), DemoError> {
    let jwks_path = PathBuf::from(DEMO_JWKS_FILE);
    if !jwks_path.exists() {
        std::fs::create_dir_all(jwks_path.parent().expect("has a parent"))
            .and_then(|_| std::fs::write(&jwks_path, DEMO_JWKS))
            .map_err(DemoError::WriteJwks)?;
    }
    let config = demo_config();
    config.validate().map_err(DemoError::Config)?;

    let upstream = tokio::net::TcpListener::bind(DEMO_UPSTREAM)
        .await
        .map_err(DemoError::BindUpstream)?;
    tokio::spawn(serve_echo(upstream));

    let clock = crate::clock::system();
    let gateway = crate::Gateway::start(config, None, clock.clone()).await?;
    let app = gateway.app().clone();
    let now = clock.now();
    let sid = format!("sess-{}", random_id());
    let jti = format!("demo-{}", random_id());
    let token = mint("alice", &sid, &jti, now);
    let counts = app.store.counts();
    let banner = Banner {
        command: &this_command(),
        proxy: gateway.proxy_addr(),
        admin: gateway.admin_addr(),
        counts: [counts.jti, counts.sid, counts.sub],
        sid: &sid,
        jti: &jti,
        token: &token,
    };
    print!("{}", banner.render());
    gateway.run(crate::server::shutdown_signal()).await;
    Ok(())
}

/// How to run this very binary again, for the copy-paste lines: `cargo run --release --`
/// (or `cargo run --` for a debug build) when it was started by `cargo run` in the
/// revgate source tree, else the path it was started as (`./target/release/revgate`,
/// `revgate` when found through `PATH`).
pub fn this_command() -> String {
    let argv0 = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = std::env::current_exe().ok();
    let cargo_run = std::env::var("CARGO_PKG_NAME").is_ok_and(|n| n == env!("CARGO_PKG_NAME"))
        && std::env::var_os("CARGO_MANIFEST_DIR").is_some();
    command_for(&argv0, exe.as_deref(), cargo_run)
}

/// [`this_command`] from its inputs: the program name as started (`argv[0]`), the
/// executable's path, and whether `cargo run` started it (it sets `CARGO_PKG_NAME` and
/// `CARGO_MANIFEST_DIR` for the program it runs).
pub fn command_for(argv0: &str, exe: Option<&std::path::Path>, cargo_run: bool) -> String {
    if cargo_run {
        // The profile is the directory the binary was built into: target/<profile>/revgate.
        let profile = exe
            .and_then(|e| e.parent())
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
            .unwrap_or("debug");
        return match profile {
            "debug" => "cargo run --".to_string(),
            "release" => "cargo run --release --".to_string(),
            other => format!("cargo run --profile {} --", shell_word(other)),
        };
    }
    // As typed: a path works again from the same directory, a bare name through PATH.
    if argv0.is_empty() {
        "revgate".to_string()
    } else {
        shell_word(argv0)
    }
}

/// `word` as one shell word: as is when it is made of safe characters, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// What the demo prints at start: where everything is, a token, and copy-paste lines that
/// run `command` (this binary, see [`this_command`]).
struct Banner<'a> {
    command: &'a str,
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    /// Revocations already in the store: jti, sid, sub.
    counts: [u64; 3],
    sid: &'a str,
    jti: &'a str,
    token: &'a str,
}

impl Banner<'_> {
    fn render(&self) -> String {
        let Banner {
            command,
            proxy,
            admin,
            counts: [jti_n, sid_n, sub_n],
            sid,
            jti,
            token,
        } = self;
        format!(
            r#"
revgate demo — the signing key in data/demo/ is public: NOT FOR PRODUCTION

  gateway   http://{proxy}   (every path needs a token; /public does not)
  admin     http://{admin}
  upstream  http://{DEMO_UPSTREAM}   (in-process echo: shows what the API receives)
  store     {DEMO_STORE}   ({jti_n} jti, {sid_n} sid, {sub_n} sub revocations already in it)

A token for user "alice" (session {sid}, jti {jti}), valid for 1 hour:

export TOKEN={token}

Try, in another terminal (in this directory):

  curl -i -H "Authorization: Bearer $TOKEN" http://{proxy}/api/hello        # 200, echoed
  {command} revoke jti {jti} --reason "demo"     # or: revoke sid {sid} / revoke sub alice
  curl -i -H "Authorization: Bearer $TOKEN" http://{proxy}/api/hello        # 401 ... revoked
  # stop the demo (Ctrl-C), start it again, same curl: still 401 — the store remembers
  {command} lookup jti {jti}
  {command} unrevoke jti {jti}                   # 200 again
  {command} stats
  curl -i http://{proxy}/public/info                                        # public route, no token
  curl -s http://{admin}/metrics | grep revgate_requests_total

Ctrl-C stops the demo.
"#
        )
    }
}

/// The echo upstream: answers every request with a JSON view of what it received.
pub async fn serve_echo(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let headers: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .filter(|(k, _)| k.as_str() != "authorization")
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            serde_json::Value::String(v.to_str().unwrap_or("?").to_string()),
                        )
                    })
                    .collect();
                let body = serde_json::json!({
                    "echo": true,
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                    "headers": headers,
                });
                let mut resp = hyper::Response::new(Full::new(Bytes::from(
                    serde_json::to_vec_pretty(&body).unwrap_or_default(),
                )));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn copy_paste_lines_run_the_binary_as_it_was_started() {
        let release = Path::new("/src/revgate/target/release/revgate");
        let debug = Path::new("/src/revgate/target/debug/revgate");
        assert_eq!(
            command_for("target/release/revgate", Some(release), true),
            "cargo run --release --"
        );
        assert_eq!(
            command_for("target/debug/revgate", Some(debug), true),
            "cargo run --"
        );
        assert_eq!(
            command_for("x", Some(Path::new("/t/target/bench/revgate")), true),
            "cargo run --profile bench --"
        );
        assert_eq!(
            command_for("./target/release/revgate", Some(release), false),
            "./target/release/revgate"
        );
        assert_eq!(
            command_for("/usr/local/bin/revgate", None, false),
            "/usr/local/bin/revgate"
        );
        assert_eq!(command_for("revgate", None, false), "revgate");
        assert_eq!(command_for("", None, false), "revgate");
        assert_eq!(
            command_for("/opt/my tools/revgate", None, false),
            "'/opt/my tools/revgate'"
        );
        assert_eq!(
            command_for("/x/it's/revgate", None, false),
            "'/x/it'\\''s/revgate'"
        );
    }

    #[test]
    fn the_banner_uses_the_command_on_every_copy_paste_line() {
        let banner = Banner {
            command: "./target/release/revgate",
            proxy: "127.0.0.1:8080".parse().unwrap(),
            admin: "127.0.0.1:9090".parse().unwrap(),
            counts: [1, 2, 3],
            sid: "sess-1",
            jti: "demo-1",
            token: "a.b.c",
        }
        .render();
        for line in [
            "  ./target/release/revgate revoke jti demo-1 --reason \"demo\"",
            "  ./target/release/revgate lookup jti demo-1\n",
            "  ./target/release/revgate unrevoke jti demo-1 ",
            "  ./target/release/revgate stats\n",
            "export TOKEN=a.b.c\n",
            "(1 jti, 2 sid, 3 sub revocations already in it)",
        ] {
            assert!(banner.contains(line), "{line:?} not in {banner}");
        }
        assert!(!banner.contains("cargo run"), "{banner}");
    }

    #[test]
    fn the_demo_store_is_untracked_and_ignored() {
        let root = env!("CARGO_MANIFEST_DIR");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
        };
        match git(&["rev-parse", "--is-inside-work-tree"]) {
            Ok(o) if o.status.success() => {}
            _ => {
                eprintln!("skipped: not a git checkout");
                return;
            }
        }
        let tracked = git(&["ls-files", "--", DEMO_STORE, "data/demo.db.hwm"]).unwrap();
        assert!(tracked.status.success());
        assert!(
            tracked.stdout.is_empty(),
            "tracked: {}",
            String::from_utf8_lossy(&tracked.stdout)
        );
        // What a demo run creates is ignored (the index not consulted: rules only).
        let created = [
            "data/demo.db/db",
            "data/demo.db/conf",
            "data/demo.db/snap.0000000000000042",
            "data/demo.db.hwm",
            "data/demo.db.hwm.tmp",
        ];
        let mut args = vec!["check-ignore", "--no-index"];
        args.extend(created);
        let ignored = git(&args).unwrap();
        let listed = String::from_utf8_lossy(&ignored.stdout);
        for path in created {
            assert!(
                listed.lines().any(|l| l == path),
                "{path} is not ignored: {listed}"
            );
        }
    }
}
