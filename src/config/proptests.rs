//! Property tests of [`Config::parse`] on hostile input: arbitrary text, TOML documents
//! built from the real sections and keys with values of any type, and arbitrary
//! `REVGATE_*` overrides. Nothing may panic; a refusal is a one-line message (naming the
//! key for invalid values); an accepted config validates and survives a round trip.
//!
//! Cases per property: 256, or `PROPTEST_CASES`.

use proptest::prelude::*;

use super::*;
use crate::auth::verify::proptests::runner;
use crate::config::env::{env_var_name, ENV_OVERRIDES};

/// A valid base configuration that the generated lines are added to.
const BASE: &str = r#"
[[issuer]]
issuer = "https://idp.example.com/"
audiences = ["api"]
jwks_url = "https://idp.example.com/jwks.json"

[[route]]
upstream = "http://127.0.0.1:8081"
"#;

/// The keys of each section, plus a key no section has.
fn keys(section: &str) -> Vec<&'static str> {
    let mut k = match section {
        "server" => vec![
            "listen",
            "admin_listen",
            "admin_token",
            "max_header_bytes",
            "max_body_bytes",
            "log_format",
        ],
        "issuer" => vec![
            "issuer",
            "audiences",
            "jwks_url",
            "jwks_file",
            "algorithms",
            "hmac_secret_file",
            "session_claim",
            "require_typ",
            "logout_audiences",
            "logout_algorithms",
            "logout_require_exp",
        ],
        "auth" => vec![
            "leeway",
            "max_token_lifetime",
            "jwks_refresh",
            "forward_cors_preflight",
            "identity_headers",
        ],
        "route" => vec![
            "prefix",
            "upstream",
            "strip_prefix",
            "timeout",
            "public",
            "scopes",
        ],
        "backchannel" => vec!["path", "max_age", "strict_typ"],
        "revoke_endpoint" => vec!["path"],
        _ => vec!["path", "sweep_interval", "cache_bytes"],
    };
    k.push("bogus");
    k
}

/// A TOML value of any type, favouring the shapes the keys expect.
fn toml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        // Strings that mean something to some key.
        prop::sample::select(vec![
            "\"127.0.0.1:0\"",
            "\"0.0.0.0:9090\"",
            "\"[::1]:0\"",
            "\"http://127.0.0.1:1\"",
            "\"ftp://x\"",
            "\"https://\"",
            "\"/\"",
            "\"/api/\"",
            "\"//x\"",
            "\"\"",
            "\"60s\"",
            "\"0s\"",
            "\"1h\"",
            "\"99999999999999999999h\"",
            "\"json\"",
            "\"RS256\"",
            "\"none\"",
            "\"\\u0000\"",
        ])
        .prop_map(str::to_string),
        any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        any::<f64>().prop_map(|f| toml::Value::Float(f).to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ];
    scalar.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|m| {
                let kv: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

/// One table of TOML: a section header and a few `key = value` lines.
fn table() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "server",
        "issuer",
        "auth",
        "route",
        "backchannel",
        "revoke_endpoint",
        "store",
    ])
    .prop_flat_map(|section| {
        let header = if matches!(section, "issuer" | "route") {
            format!("[[{section}]]")
        } else {
            format!("[{section}]")
        };
        let lines =
            prop::collection::vec((prop::sample::select(keys(section)), toml_value()), 0..4);
        (Just(header), lines)
    })
    .prop_map(|(header, lines)| {
        let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{header}\n{}\n", body.join("\n"))
    })
}

/// Checks a parse result: one-line messages, keys named, accepted configs sound.
fn check(result: Result<Config, ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty(), "empty message: {e:?}");
            // SPEC §2: a bad configuration exits with a one-line reason.
            prop_assert!(!msg.contains(['\n', '\r']), "not one line: {msg:?}");
            if let ConfigError::Invalid { key, problem } = &e {
                prop_assert!(!key.is_empty() && !problem.is_empty(), "{e:?}");
            }
        }
        Ok(config) => {
            prop_assert!(config.validate().is_ok());
            // What check-config prints parses back to a valid config.
            let shown = config.effective_toml();
            let again = Config::parse(&shown, |_| None);
            prop_assert!(again.is_ok(), "{shown}\n=> {:?}", again.err());
        }
    }
    Ok(())
}

#[test]
fn arbitrary_text_is_refused_with_a_message() {
    runner()
        .run(
            &prop_oneof![any::<String>(), "[\\[\\]a-z_=\" \n.0-9{},]{0,200}"],
            |text| check(Config::parse(&text, |_| None)),
        )
        .unwrap();
}

#[test]
fn random_tables_are_refused_clearly_or_accepted_soundly() {
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&prop::collection::vec(table(), 0..4), |tables| {
            let text = format!("{}\n{BASE}", tables.join("\n"));
            let result = Config::parse(&text, |_| None);
            if result.is_ok() {
                accepted.set(accepted.get() + 1);
            }
            check(result)
        })
        .unwrap();
    eprintln!("accepted {} random configs", accepted.get());
}

#[test]
fn arbitrary_environment_overrides_are_refused_clearly_or_applied() {
    let vars: Vec<String> = ENV_OVERRIDES
        .iter()
        .map(|(s, k, _)| env_var_name(s, k))
        .collect();
    let value = prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "127.0.0.1:0",
            "0",
            "-1",
            "18446744073709551616",
            " 42 ",
            "TRUE",
            "yes",
            "5s",
            "0s",
            "\"quoted\"",
            "/",
        ])
        .prop_map(str::to_string),
    ];
    let overrides = prop::collection::vec((prop::sample::select(vars), value), 0..4);
    runner()
        .run(
            &(prop::collection::vec(table(), 0..2), overrides),
            |(tables, env)| {
                let text = format!("{}\n{BASE}", tables.join("\n"));
                check(Config::parse(&text, |name| {
                    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                }))
            },
        )
        .unwrap();
}
