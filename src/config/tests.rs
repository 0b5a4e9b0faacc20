//! Config parsing, validation and overrides.

use super::*;

/// The SPEC §3 example, with `jwks_url` and without the commented keys.
const SPEC_EXAMPLE: &str = r#"
[server]
listen        = "127.0.0.1:8080"   # proxy + public endpoints
admin_listen  = "127.0.0.1:9090"   # admin API; a non-loopback address requires admin_token
admin_token   = ""                 # if set, the admin API requires "Authorization: Bearer <admin_token>"
max_header_bytes = 16384
max_body_bytes   = 10485760
log_format       = "text"          # or "json"

[[issuer]]                         # one or more
issuer     = "https://idp.example.com/"          # exact match on iss
audiences  = ["https://api.example.com"]         # access token aud must contain one
jwks_url   = "https://idp.example.com/.well-known/jwks.json"   # exactly one of jwks_url / jwks_file
algorithms = ["RS256"]            # default; allow-list, case-sensitive; "none" is refused by check-config
session_claim = "sid"             # claim carrying the session id (e.g. a namespaced claim for Auth0)
require_typ   = ""                # e.g. "at+jwt": then typ must be present and equal (RFC 9068)
logout_audiences  = ["my-client-id"]   # client_ids a logout token's aud may name
logout_algorithms = ["RS256"]     # default; allow-list for logout tokens
logout_require_exp = true         # false only for IdPs that predate errata set 1

[auth]
leeway             = "60s"
max_token_lifetime = "24h"
jwks_refresh       = "10m"        # periodic refetch; an unknown kid triggers a rate-limited refetch
forward_cors_preflight = true     # OPTIONS with Access-Control-Request-Method passes without a token
identity_headers   = true         # add X-Auth-Iss/Sub/Sid/Jti upstream; client-sent copies are always removed

[[route]]                         # one or more; longest prefix wins, matched by whole path
prefix   = "/"                    # segments ("/api" matches /api and /api/x, not /apix); no match: 404
upstream = "http://127.0.0.1:8081"   # its own path, if any, is put before the request path
strip_prefix = false              # true: the route prefix is removed before forwarding
timeout  = "30s"
public   = false                  # true: forwarded without a token
scopes   = []                     # all required in the token's scope / scp claim, else 403

[backchannel]
path    = "/backchannel-logout"   # "" disables the endpoint
max_age = "5m"                    # logout token iat older than this is rejected
strict_typ = false                # true: typ must be present and be logout+jwt

[revoke_endpoint]
path = "/revoke"                  # "" disables

[store]
path           = "data/revgate.db"
sweep_interval = "30s"
cache_bytes    = 67108864
"#;

const MINIMAL: &str = r#"
[[issuer]]
issuer = "https://idp.example.com/"
audiences = ["api"]
jwks_url = "https://idp.example.com/jwks.json"

[[route]]
upstream = "http://127.0.0.1:8081"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, no_env)
}

/// Parses `text`, expecting a failure; returns the message.
fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// `MINIMAL` with `extra` lines appended to the first issuer.
fn with_issuer(extra: &str) -> String {
    MINIMAL.replace(
        "jwks_url = \"https://idp.example.com/jwks.json\"\n",
        &format!("jwks_url = \"https://idp.example.com/jwks.json\"\n{extra}\n"),
    )
}

/// `MINIMAL` with `extra` lines appended to the first route.
fn with_route(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

/// `MINIMAL` with a `[section]` table holding `body`.
fn with_section(section: &str, body: &str) -> String {
    format!("[{section}]\n{body}\n{MINIMAL}")
}

fn assert_err(text: &str, needles: &[&str]) {
    let msg = err(text);
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should contain {n:?}");
    }
}

#[test]
fn spec_example_parses() {
    let c = parse(SPEC_EXAMPLE).expect("SPEC example is valid");
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.issuers.len(), 1);
    assert_eq!(c.issuers[0].logout_audiences, vec!["my-client-id"]);
    assert_eq!(c.issuers[0].access_algorithms(), vec![Algorithm::RS256]);
    assert_eq!(c.auth.max_token_lifetime, Duration::from_secs(86400));
    assert_eq!(c.routes[0].timeout, Duration::from_secs(30));
    assert_eq!(c.backchannel.max_age, Duration::from_secs(300));
    assert_eq!(c.store.cache_bytes, 67_108_864);
}

#[test]
fn defaults_fill_in_for_minimal_file() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.server.admin_listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(c.server.admin_token, "");
    assert_eq!(c.server.max_header_bytes, 16384);
    assert_eq!(c.server.max_body_bytes, 10_485_760);
    assert_eq!(c.server.log_format, LogFormat::Text);
    let i = &c.issuers[0];
    assert_eq!(i.algorithms, vec!["RS256"]);
    assert_eq!(i.logout_algorithms, vec!["RS256"]);
    assert_eq!(i.session_claim, "sid");
    assert_eq!(i.require_typ, "");
    assert!(i.logout_audiences.is_empty());
    assert!(i.logout_require_exp);
    assert!(i.hmac_secret_file.is_none() && i.jwks_file.is_none());
    assert_eq!(c.auth.leeway, Duration::from_secs(60));
    assert_eq!(c.auth.max_token_lifetime, Duration::from_secs(86400));
    assert_eq!(c.auth.jwks_refresh, Duration::from_secs(600));
    assert!(c.auth.forward_cors_preflight && c.auth.identity_headers);
    let r = &c.routes[0];
    assert_eq!(r.prefix, "/");
    assert!(!r.strip_prefix && !r.public && r.scopes.is_empty());
    assert_eq!(r.timeout, Duration::from_secs(30));
    assert_eq!(c.backchannel.path, "/backchannel-logout");
    assert_eq!(c.backchannel.max_age, Duration::from_secs(300));
    assert!(!c.backchannel.strict_typ);
    assert_eq!(c.revoke_endpoint.path, "/revoke");
    assert_eq!(c.store.path, PathBuf::from("data/revgate.db"));
    assert_eq!(c.store.sweep_interval, Duration::from_secs(30));
    assert_eq!(c.store.cache_bytes, 67_108_864);
}

#[test]
fn syntax_error_names_the_line() {
    let msg = err("[server]\nlisten = \n");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn unknown_key_in_each_section_is_named() {
    for section in ["server", "auth", "backchannel", "revoke_endpoint", "store"] {
        let msg = err(&with_section(section, "bogus_key = 1"));
        assert!(msg.contains("bogus_key"), "{section}: {msg}");
        assert!(msg.contains("line 2"), "{section}: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg:?}");
    }
    let msg = err(&with_issuer("bogus_key = 1"));
    assert!(msg.contains("bogus_key") && msg.contains("line 6"), "{msg}");
    let msg = err(&with_route("bogus_key = 1"));
    assert!(msg.contains("bogus_key") && msg.contains("line 9"), "{msg}");
    let msg = err(&format!("bogus_top = 1\n{MINIMAL}"));
    assert!(msg.contains("bogus_top") && msg.contains("line 1"), "{msg}");
}

#[test]
fn wrong_types_are_named() {
    assert_err(
        &with_section("server", "listen = \"nowhere\""),
        &["listen", "line 2"],
    );
    assert_err(
        &with_section("auth", "leeway = \"soon\""),
        &["leeway", "invalid duration"],
    );
    assert_err(
        &with_section("server", "log_format = \"xml\""),
        &["log_format"],
    );
    assert_err(
        &format!("{MINIMAL}[[route]]\nprefix = \"/x\"\n"),
        &["upstream"],
    );
}

#[test]
fn needs_an_issuer_and_a_route() {
    assert_err(
        "[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
        &["issuer: at least one"],
    );
    let no_route = MINIMAL.split("[[route]]").next().unwrap();
    assert_err(no_route, &["route: at least one"]);
}

#[test]
fn issuer_rules() {
    assert_err(
        &MINIMAL.replace("issuer = \"https://idp.example.com/\"", "issuer = \"\""),
        &["issuer[0].issuer", "empty"],
    );
    let dup = MINIMAL.replace(
        "[[route]]",
        &format!("{}\n[[route]]", MINIMAL.split("[[route]]").next().unwrap()),
    );
    assert_err(&dup, &["issuer[1].issuer", "issuer[0]"]);
    assert_err(
        &MINIMAL.replace("audiences = [\"api\"]", "audiences = []"),
        &["issuer[0].audiences"],
    );
    assert_err(
        &MINIMAL.replace("audiences = [\"api\"]", "audiences = [\"\"]"),
        &["issuer[0].audiences"],
    );
    // exactly one of jwks_url / jwks_file
    assert_err(
        &with_issuer("jwks_file = \"k.json\""),
        &["issuer[0].jwks_url", "not both"],
    );
    assert_err(
        &MINIMAL.replace("jwks_url = \"https://idp.example.com/jwks.json\"", ""),
        &["issuer[0].jwks_url", "required"],
    );
    let file_only = MINIMAL.replace(
        "jwks_url = \"https://idp.example.com/jwks.json\"",
        "jwks_file = \"data/demo/jwks.json\"",
    );
    assert!(parse(&file_only).is_ok());
    assert_err(
        &MINIMAL.replace("https://idp.example.com/jwks.json", "ftp://idp/jwks"),
        &["issuer[0].jwks_url", "http"],
    );
    assert_err(
        &MINIMAL.replace("https://idp.example.com/jwks.json", "not a url"),
        &["issuer[0].jwks_url"],
    );
    assert_err(
        &MINIMAL.replace("https://idp.example.com/jwks.json", "https://:443/jwks"),
        &["issuer[0].jwks_url"],
    );
    // algorithms
    assert_err(&with_issuer("algorithms = []"), &["issuer[0].algorithms"]);
    assert_err(
        &with_issuer("logout_algorithms = []"),
        &["issuer[0].logout_algorithms"],
    );
    assert_err(
        &with_issuer("algorithms = [\"rs256\"]"),
        &["issuer[0].algorithms", "rs256"],
    );
    assert_err(
        &with_issuer("algorithms = [\"ES512\"]"),
        &["issuer[0].algorithms", "ES512"],
    );
    for none in ["none", "None", "NONE"] {
        assert_err(
            &with_issuer(&format!("algorithms = [\"RS256\", \"{none}\"]")),
            &[
                "issuer[0].algorithms",
                "\"none\" algorithm is never allowed",
            ],
        );
        assert_err(
            &with_issuer(&format!("logout_algorithms = [\"{none}\"]")),
            &["issuer[0].logout_algorithms", "never allowed"],
        );
    }
    let all = "algorithms = [\"RS256\",\"RS384\",\"RS512\",\"PS256\",\"PS384\",\"PS512\",\
               \"ES256\",\"ES384\",\"EdDSA\"]";
    assert_eq!(
        parse(&with_issuer(all)).unwrap().issuers[0]
            .access_algorithms()
            .len(),
        9
    );
    // HMAC needs its secret and vice versa
    assert_err(
        &with_issuer("algorithms = [\"HS256\"]"),
        &["issuer[0].algorithms", "hmac_secret_file"],
    );
    assert_err(
        &with_issuer("logout_algorithms = [\"HS512\"]"),
        &["issuer[0].logout_algorithms", "hmac_secret_file"],
    );
    assert_err(
        &with_issuer("hmac_secret_file = \"/etc/revgate/idp.secret\""),
        &["issuer[0].hmac_secret_file"],
    );
    let hs = with_issuer(
        "algorithms = [\"RS256\", \"HS384\"]\nhmac_secret_file = \"/etc/revgate/idp.secret\"",
    );
    assert!(parse(&hs).is_ok());
    let hs_logout = with_issuer(
        "logout_algorithms = [\"HS256\"]\nhmac_secret_file = \"/etc/revgate/idp.secret\"",
    );
    assert!(parse(&hs_logout).is_ok());
    assert_err(
        &with_issuer("session_claim = \"\""),
        &["issuer[0].session_claim"],
    );
}

#[test]
fn route_rules() {
    let route =
        |body: &str| format!("{MINIMAL}[[route]]\nupstream = \"http://127.0.0.1:8082\"\n{body}\n");
    for bad in ["api", "/api/", "/a//b", "/a?b", "/a#b", "//"] {
        assert_err(&route(&format!("prefix = \"{bad}\"")), &["route[1].prefix"]);
    }
    assert!(parse(&route("prefix = \"/api/v1\"")).is_ok());
    assert_err(&route("prefix = \"/\""), &["route[1].prefix", "route[0]"]);
    for bad in [
        "ftp://127.0.0.1:1",
        "127.0.0.1:8081",
        "http://",
        "http://h/?q=1",
        "http://h/#f",
    ] {
        assert_err(
            &format!("{MINIMAL}[[route]]\nprefix = \"/x\"\nupstream = \"{bad}\"\n"),
            &["route[1].upstream"],
        );
    }
    assert!(parse(&format!(
        "{MINIMAL}[[route]]\nprefix = \"/x\"\nupstream = \"https://h:8443/base\"\n"
    ))
    .is_ok());
    assert_err(&with_route("timeout = \"0s\""), &["route[0].timeout"]);
    assert_err(&with_route("scopes = [\"\"]"), &["route[0].scopes"]);
    assert_err(
        &with_route("scopes = [\"read write\"]"),
        &["route[0].scopes"],
    );
    assert!(parse(&with_route("scopes = [\"read\", \"write:all\"]")).is_ok());
}

#[test]
fn endpoint_path_rules() {
    assert_err(
        &with_section("backchannel", "path = \"logout\""),
        &["backchannel.path"],
    );
    assert_err(
        &with_section("revoke_endpoint", "path = \"revoke\""),
        &["revoke_endpoint.path"],
    );
    assert_err(
        &with_section("revoke_endpoint", "path = \"/backchannel-logout\""),
        &["revoke_endpoint.path", "backchannel.path"],
    );
    let both_disabled =
        format!("[backchannel]\npath = \"\"\n[revoke_endpoint]\npath = \"\"\n{MINIMAL}");
    assert!(parse(&both_disabled).is_ok());
    assert_err(
        &with_section("backchannel", "max_age = \"0s\""),
        &["backchannel.max_age"],
    );
}

#[test]
fn admin_hosts_are_host_names_or_ip_literals_without_port() {
    let c = parse(&with_section(
        "server",
        "admin_hosts = [\"gateway-1.internal\", \"10.0.0.5\", \"[fd00::5]\", \"fd00::6\"]",
    ))
    .unwrap();
    assert_eq!(c.server.admin_hosts.len(), 4);
    assert!(ServerConfig::default().admin_hosts.is_empty());
    for bad in ["", "gw:9090", "*.internal", "a..b", "gw/x", "gw x", "[gw]"] {
        assert_err(
            &with_section("server", &format!("admin_hosts = [\"ok\", {bad:?}]")),
            &["server.admin_hosts[1]"],
        );
    }
    assert_err(
        &with_section("server", &format!("admin_hosts = [{:?}]", "a".repeat(254))),
        &["server.admin_hosts[0]", "253"],
    );
}

#[test]
fn server_rules() {
    assert_err(
        &with_section("server", "admin_listen = \"0.0.0.0:9090\""),
        &["server.admin_listen", "admin_token"],
    );
    assert_err(
        &with_section(
            "server",
            "admin_listen = \"10.1.2.3:9090\"\nadmin_token = \"\"",
        ),
        &["server.admin_listen"],
    );
    assert!(parse(&with_section(
        "server",
        "admin_listen = \"0.0.0.0:9090\"\nadmin_token = \"s3cret\""
    ))
    .is_ok());
    assert!(parse(&with_section("server", "admin_listen = \"127.9.9.9:9090\"")).is_ok());
    assert!(parse(&with_section("server", "admin_listen = \"[::1]:9090\"")).is_ok());
    assert_err(
        &with_section("server", "admin_listen = \"[::]:9090\""),
        &["server.admin_listen"],
    );
    assert_err(
        &with_section("server", "listen = \"127.0.0.1:9090\""),
        &["server.admin_listen", "server.listen"],
    );
    assert!(parse(&with_section(
        "server",
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\""
    ))
    .is_ok());
    assert_err(
        &with_section("server", "max_header_bytes = 1023"),
        &["server.max_header_bytes"],
    );
    assert_err(
        &with_section("server", "max_header_bytes = 1048577"),
        &["server.max_header_bytes"],
    );
    assert!(parse(&with_section("server", "max_header_bytes = 1024")).is_ok());
    assert!(parse(&with_section("server", "max_header_bytes = 1048576")).is_ok());
    assert_err(
        &with_section("server", "max_body_bytes = 0"),
        &["server.max_body_bytes"],
    );
    assert!(parse(&with_section("server", "log_format = \"json\"")).is_ok());
}

#[test]
fn auth_and_store_rules() {
    assert_err(&with_section("auth", "leeway = \"61m\""), &["auth.leeway"]);
    assert!(parse(&with_section("auth", "leeway = \"1h\"")).is_ok());
    assert!(parse(&with_section("auth", "leeway = \"0s\"")).is_ok());
    assert_err(
        &with_section("auth", "max_token_lifetime = \"0s\""),
        &["auth.max_token_lifetime"],
    );
    assert_err(
        &with_section("auth", "jwks_refresh = \"500ms\""),
        &["auth.jwks_refresh"],
    );
    assert_err(
        &with_section("store", "sweep_interval = \"999ms\""),
        &["store.sweep_interval"],
    );
    assert_err(
        &with_section("store", "cache_bytes = 1048575"),
        &["store.cache_bytes"],
    );
    assert!(parse(&with_section("store", "cache_bytes = 1048576")).is_ok());
    assert_err(&with_section("store", "path = \"\""), &["store.path"]);
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn env_overrides_apply() {
    let c = Config::parse(
        MINIMAL,
        env_of(&[
            ("REVGATE_SERVER_LISTEN", "127.0.0.1:18080"),
            ("REVGATE_SERVER_ADMIN_TOKEN", "tok"),
            ("REVGATE_SERVER_MAX_HEADER_BYTES", "4096"),
            ("REVGATE_AUTH_LEEWAY", "5s"),
            ("REVGATE_AUTH_IDENTITY_HEADERS", "false"),
            ("REVGATE_BACKCHANNEL_STRICT_TYP", "TRUE"),
            ("REVGATE_REVOKE_ENDPOINT_PATH", ""),
            ("REVGATE_STORE_PATH", "/var/lib/revgate/db"),
            ("REVGATE_STORE_CACHE_BYTES", "2097152"),
            // not overridable / unknown: ignored
            ("REVGATE_ROUTE_PREFIX", "/nope"),
            ("REVGATE_ISSUER_ISSUER", "nope"),
            ("REVGATE_SERVER_BOGUS", "1"),
            ("REVGATE_NOSECTION_KEY", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:18080".parse().unwrap());
    assert_eq!(c.server.admin_token, "tok");
    assert_eq!(c.server.max_header_bytes, 4096);
    assert_eq!(c.auth.leeway, Duration::from_secs(5));
    assert!(!c.auth.identity_headers);
    assert!(c.backchannel.strict_typ);
    assert_eq!(c.revoke_endpoint.path, "");
    assert_eq!(c.store.path, PathBuf::from("/var/lib/revgate/db"));
    assert_eq!(c.store.cache_bytes, 2_097_152);
    assert_eq!(c.routes[0].prefix, "/");
    assert_eq!(c.issuers[0].issuer, "https://idp.example.com/");
}

#[test]
fn env_overrides_beat_the_file_and_create_sections() {
    let text = with_section("auth", "leeway = \"30s\"");
    let c = Config::parse(&text, env_of(&[("REVGATE_AUTH_LEEWAY", "2m")])).unwrap();
    assert_eq!(c.auth.leeway, Duration::from_secs(120));
    // an override may also repair a bad file value
    let text = with_section("auth", "leeway = \"2h\"");
    assert!(Config::parse(&text, env_of(&[("REVGATE_AUTH_LEEWAY", "1m")])).is_ok());
    // [store] absent from MINIMAL: created
    let c = Config::parse(MINIMAL, env_of(&[("REVGATE_STORE_SWEEP_INTERVAL", "5s")])).unwrap();
    assert_eq!(c.store.sweep_interval, Duration::from_secs(5));
}

#[test]
fn one_admin_token_variable_sets_server_admin_token() {
    // REVGATE_ADMIN_TOKEN (the CLI's variable) sets it, over the file ...
    let text = with_section("server", "admin_token = \"from-file\"");
    let c = Config::parse(&text, env_of(&[("REVGATE_ADMIN_TOKEN", "shared")])).unwrap();
    assert_eq!(c.server.admin_token, "shared");
    let c = Config::parse(MINIMAL, env_of(&[("REVGATE_ADMIN_TOKEN", "shared")])).unwrap();
    assert_eq!(c.server.admin_token, "shared");
    // ... empty counts as unset ...
    let c = Config::parse(&text, env_of(&[("REVGATE_ADMIN_TOKEN", "")])).unwrap();
    assert_eq!(c.server.admin_token, "from-file");
    // ... and REVGATE_SERVER_ADMIN_TOKEN, the generic override, wins (even when empty).
    let c = Config::parse(
        &text,
        env_of(&[
            ("REVGATE_ADMIN_TOKEN", "shared"),
            ("REVGATE_SERVER_ADMIN_TOKEN", "server-only"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.admin_token, "server-only");
    let c = Config::parse(
        &text,
        env_of(&[
            ("REVGATE_ADMIN_TOKEN", "shared"),
            ("REVGATE_SERVER_ADMIN_TOKEN", ""),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.admin_token, "");
    assert!(override_variables().contains(&"REVGATE_ADMIN_TOKEN".to_string()));
    assert!(override_variables().contains(&"REVGATE_STORE_CACHE_BYTES".to_string()));
}

#[test]
fn overlapping_audiences_without_require_typ_are_a_warning() {
    let text = MINIMAL.replacen(
        "[[issuer]]\n",
        "[[issuer]]\nlogout_audiences = [\"api\", \"web\"]\n",
        1,
    );
    assert_ne!(text, MINIMAL);
    let c = Config::parse(&text, no_env).unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("issuer[0].audiences: ") && w[0].contains("\"api\""),
        "{w:?}"
    );
    let mut typed = c.clone();
    typed.issuers[0].require_typ = "at+jwt".into();
    assert!(typed.warnings().is_empty());
    let mut apart = c;
    apart.issuers[0].logout_audiences = vec!["web".into()];
    assert!(apart.warnings().is_empty());
}

#[test]
fn bad_env_values_name_the_variable() {
    let e = Config::parse(MINIMAL, env_of(&[("REVGATE_AUTH_IDENTITY_HEADERS", "yes")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("REVGATE_AUTH_IDENTITY_HEADERS"), "{e}");
    let e = Config::parse(
        MINIMAL,
        env_of(&[("REVGATE_SERVER_MAX_BODY_BYTES", "10MB")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("REVGATE_SERVER_MAX_BODY_BYTES"), "{e}");
    let e = Config::parse(MINIMAL, env_of(&[("REVGATE_SERVER_MAX_BODY_BYTES", "-1")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("REVGATE_SERVER_MAX_BODY_BYTES"), "{e}");
    let e = Config::parse(
        MINIMAL,
        env_of(&[("REVGATE_STORE_SWEEP_INTERVAL", "often")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("REVGATE_STORE_SWEEP_INTERVAL"), "{e}");
    let e = Config::parse(MINIMAL, env_of(&[("REVGATE_SERVER_LISTEN", "nowhere")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.listen") && e.contains("REVGATE_SERVER_LISTEN"),
        "{e}"
    );
    // an overridden value still goes through validate()
    let e = Config::parse(
        MINIMAL,
        env_of(&[("REVGATE_SERVER_ADMIN_LISTEN", "0.0.0.0:9090")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("server.admin_listen"), "{e}");
}

#[test]
fn effective_toml_redacts_and_round_trips() {
    let text = format!(
        "[server]\nadmin_listen = \"0.0.0.0:9090\"\nadmin_token = \"super-secret-token\"\n\
         [auth]\nleeway = \"90s\"\nmax_token_lifetime = \"36h\"\n{}",
        with_issuer(
            "algorithms = [\"RS256\", \"HS256\"]\nhmac_secret_file = \"/s\"\nlogout_audiences = [\"c\"]"
        )
    );
    let c = parse(&text).unwrap();
    let shown = c.effective_toml();
    assert!(!shown.contains("super-secret-token"), "{shown}");
    assert!(shown.contains("admin_token = \"<set>\""), "{shown}");
    let back = parse(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(back.server.admin_token, REDACTED);
    assert_eq!(back.auth.leeway, c.auth.leeway);
    assert_eq!(back.auth.max_token_lifetime, c.auth.max_token_lifetime);
    assert_eq!(back.server.admin_listen, c.server.admin_listen);
    assert_eq!(back.issuers[0].algorithms, c.issuers[0].algorithms);
    assert_eq!(
        back.issuers[0].hmac_secret_file,
        c.issuers[0].hmac_secret_file
    );
    assert_eq!(
        back.issuers[0].logout_audiences,
        c.issuers[0].logout_audiences
    );
    // rendering again is stable (apart from the token, which is already redacted)
    assert_eq!(back.effective_toml(), shown);

    let plain = parse(SPEC_EXAMPLE).unwrap().effective_toml();
    assert!(plain.contains("admin_token = \"\""), "{plain}");
    assert!(
        plain.contains("[[issuer]]") && plain.contains("[[route]]"),
        "{plain}"
    );
    let again = parse(&plain).unwrap();
    assert_eq!(again.effective_toml(), plain);
}

#[test]
fn trusted_proxies_are_parsed_and_bad_entries_name_the_key() {
    assert!(parse(MINIMAL).unwrap().server.trusted_proxies.is_empty());
    let c = parse(&with_section(
        "server",
        "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\", \"::1\"]",
    ))
    .unwrap();
    let nets = &c.server.trusted_proxies;
    assert_eq!(nets.len(), 4);
    assert!(nets[0].contains("10.9.8.7".parse().unwrap()));
    assert!(nets[3].contains("::1".parse().unwrap()));
    let shown = c.effective_toml();
    for entry in [
        "\"10.0.0.0/8\",",
        "\"192.0.2.7\",",
        "\"2001:db8::/32\",",
        "\"::1\",",
    ] {
        assert!(shown.contains(entry), "{entry} in {shown}");
    }
    assert_eq!(
        parse(&shown).unwrap().server.trusted_proxies,
        c.server.trusted_proxies
    );
    for (bad, why) in [
        ("\"10.0.0.0/40\"", "0..=32"),
        ("\"proxy.internal\"", "not an IP address"),
        ("\"10.1.2.3/8\"", "10.0.0.0/8"),
        ("\"::1/200\"", "0..=128"),
        ("\"\"", "not an IP address"),
    ] {
        assert_err(
            &with_section(
                "server",
                &format!("trusted_proxies = [\"127.0.0.1\", {bad}]"),
            ),
            &["server.trusted_proxies", why, "line 2"],
        );
    }
    assert_err(
        &with_section("server", "trusted_proxies = \"10.0.0.0/8\""),
        &["server.trusted_proxies"],
    );
    assert_err(
        &with_section("server", "trusted_proxies = [8]"),
        &["server.trusted_proxies"],
    );
}

#[test]
fn resolve_issuer_names_one_or_takes_the_only_one() {
    let one = parse(MINIMAL).unwrap();
    let only = &one.issuers[0].issuer;
    assert_eq!(&one.resolve_issuer(None).unwrap().issuer, only);
    assert_eq!(&one.resolve_issuer(Some(only)).unwrap().issuer, only);
    let e = one.resolve_issuer(Some("https://other/")).unwrap_err();
    assert_eq!(e.to_string(), "unknown issuer \"https://other/\"");

    let two = parse(&format!(
        "{MINIMAL}[[issuer]]\nissuer = \"https://second/\"\naudiences = [\"a\"]\n\
         jwks_url = \"https://second/jwks\"\n"
    ))
    .unwrap();
    let e = two.resolve_issuer(None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "issuer is required when several issuers are configured"
    );
    assert_eq!(
        two.resolve_issuer(Some("https://second/")).unwrap().issuer,
        "https://second/"
    );
}

#[test]
fn edge_keys_have_defaults_overrides_and_checks() {
    let c = parse(MINIMAL).unwrap();
    assert!(!c.server.tls_enabled() && c.server.access_log);
    assert_eq!(c.server.drain_grace, DEFAULT_DRAIN_GRACE);
    assert_eq!(c.server.health_path, "");

    let c = Config::parse(
        MINIMAL,
        env_of(&[
            ("REVGATE_SERVER_TLS_CERT", "/etc/revgate/tls/fullchain.pem"),
            ("REVGATE_SERVER_TLS_KEY", "/etc/revgate/tls/privkey.pem"),
            ("REVGATE_SERVER_ACCESS_LOG", "false"),
            ("REVGATE_SERVER_DRAIN_GRACE", "30s"),
            ("REVGATE_SERVER_HEALTH_PATH", "/-/health"),
        ]),
    )
    .unwrap();
    assert!(c.server.tls_enabled() && !c.server.access_log);
    assert_eq!(c.server.drain_grace, Duration::from_secs(30));
    assert_eq!(c.server.health_path, "/-/health");

    assert_err(
        &with_section("server", "tls_cert = \"a.pem\""),
        &["server.tls_key", "required with server.tls_cert"],
    );
    assert_err(
        &with_section("server", "tls_key = \"a.key\""),
        &["server.tls_cert", "required with server.tls_key"],
    );
    assert_err(
        &with_section("server", "drain_grace = \"6m\""),
        &["server.drain_grace", "exceeds the maximum of 5m"],
    );
    assert_err(
        &with_section("server", "health_path = \"health\""),
        &["server.health_path", "must start with"],
    );
    assert_err(
        &with_section("server", "health_path = \"/revoke\""),
        &["server.health_path", "public endpoint"],
    );
}
