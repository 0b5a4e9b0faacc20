//! Property tests of [`validate_logout_token`] on hostile input: arbitrary text and bytes,
//! JWS-shaped logout tokens with random (duplicate, deeply nested, huge) members signed with
//! the real test key, and valid logout tokens with a byte changed. Nothing may panic; every
//! refusal has a message; a logout token is accepted only when it is genuinely valid.
//!
//! Cases per property: 256, or `PROPTEST_CASES`.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::auth::logout::LogoutReason;
use crate::auth::testutil::{self, ISS, NOW};
use crate::auth::verify::proptests::{
    cases, deep, json_string, json_value, object_text, runner, Members, NAMES,
};
use crate::clock::ManualClock;
use jsonwebtoken::Algorithm;

/// The `aud` logout tokens must name.
const CLIENT: &str = "client-1";

/// The validator under test: config, keys and a runtime, built once per property.
struct Validator {
    config: Config,
    keys: Keyring,
    rt: tokio::runtime::Runtime,
}

impl Validator {
    fn new() -> Validator {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let issuer_lines = format!(
            "jwks_file = {:?}\nlogout_audiences = [{CLIENT:?}]\nlogout_algorithms = [\"RS256\", \"ES256\"]",
            testutil::key_path("jwks.json")
        );
        let config = testutil::config_with(&issuer_lines, &["RS256"]);
        let keys = Keyring::without_store(ManualClock::new(NOW));
        rt.block_on(keys.load_all(&config, &Metrics::default()))
            .unwrap();
        Validator { config, keys, rt }
    }

    fn validate(&self, token: &str) -> Result<LogoutToken, LogoutError> {
        self.rt.block_on(validate_logout_token(
            &self.config,
            &self.keys,
            &Metrics::default(),
            NOW,
            token,
        ))
    }
}

fn assert_refused(result: &Result<LogoutToken, LogoutError>) -> Result<(), TestCaseError> {
    match result {
        Ok(t) => Err(TestCaseError::fail(format!("accepted: {t:?}"))),
        Err(e) => {
            prop_assert!(
                !e.to_string()
                    .trim_start_matches("invalid logout token:")
                    .trim()
                    .is_empty(),
                "empty message: {e:?}"
            );
            Ok(())
        }
    }
}

fn sign_rs256(header: &str, payload: &str) -> String {
    let alg = Algorithm::RS256;
    testutil::sign_raw(header, payload, alg, &testutil::encoding_key(alg))
}

fn events() -> String {
    format!(r#"{{"{BACKCHANNEL_LOGOUT_EVENT}":{{}}}}"#)
}

/// Claims of a valid logout token at `NOW`.
fn valid_claims() -> Members {
    [
        ("iss", format!("{ISS:?}")),
        ("aud", format!("{CLIENT:?}")),
        ("iat", (NOW - 10).to_string()),
        ("exp", (NOW + 110).to_string()),
        ("jti", r#""lt-1""#.to_string()),
        ("events", events()),
        ("sid", r#""s-1""#.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Values of claim `name`: mostly the valid one, else plausible mistakes, else anything.
fn claim_value(name: &'static str) -> BoxedStrategy<String> {
    let best = match name {
        "iss" => format!("{ISS:?}"),
        "aud" => format!("{CLIENT:?}"),
        "iat" => (NOW - 10).to_string(),
        "exp" => (NOW + 110).to_string(),
        "events" => events(),
        _ => format!("\"{name}-1\""),
    };
    let plausible: BoxedStrategy<String> = match name {
        "aud" => prop::sample::select(vec![
            r#"["x","client-1"]"#,
            r#""client-2""#,
            r#"[]"#,
            r#"["client-1",null]"#,
        ])
        .prop_map(str::to_string)
        .boxed(),
        "iat" | "exp" => prop::sample::select(vec![
            NOW,
            NOW + 60,
            NOW + 61,
            NOW - 59,
            NOW - 60,
            NOW - 61,
            NOW - 300,
            NOW - 360,
            NOW - 361,
            0,
            u64::MAX,
        ])
        .prop_map(|n| n.to_string())
        .boxed(),
        "events" => prop::sample::select(vec![
            r#"{}"#.to_string(),
            format!(r#"{{"{BACKCHANNEL_LOGOUT_EVENT}":1}}"#),
            format!(r#"{{"{BACKCHANNEL_LOGOUT_EVENT}":{{"a":[1]}}}}"#),
            format!(r#"["{BACKCHANNEL_LOGOUT_EVENT}"]"#),
        ])
        .boxed(),
        _ => prop_oneof![json_string(), Just(r#""""#.to_string())].boxed(),
    };
    prop_oneof![24 => Just(best), 4 => plausible, 1 => json_value()].boxed()
}

fn claims_members() -> impl Strategy<Value = Members> {
    let known = [
        "iss", "aud", "iat", "exp", "jti", "events", "sid", "sub", "nonce",
    ];
    let present = known.map(|name| {
        let p = match name {
            "nonce" => 0.05,
            "sid" | "sub" => 0.7,
            _ => 0.95,
        };
        prop::option::weighted(p, claim_value(name))
            .prop_map(move |v| v.map(|v| (name.to_string(), v)))
    });
    let extra = prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(NAMES).prop_map(str::to_string),
                ".{0,8}"
            ],
            json_value(),
        ),
        0..3,
    );
    (present.to_vec(), extra, any::<prop::sample::Index>()).prop_map(|(known, extra, at)| {
        let mut members: Members = known.into_iter().flatten().collect();
        let pos = at.index(members.len() + 1);
        for (i, m) in extra.into_iter().enumerate() {
            members.insert((pos + i).min(members.len()), m);
        }
        members
    })
}

fn header_members() -> impl Strategy<Value = Members> {
    let alg = prop_oneof![
        20 => Just(r#""RS256""#.to_string()),
        1 => prop::sample::select(vec![r#""none""#, r#""ES256""#, r#""HS256""#, "null"])
            .prop_map(str::to_string),
    ];
    let kid = prop::option::weighted(
        0.8,
        prop_oneof![
            20 => Just(r#""rsa-1""#.to_string()),
            1 => prop::sample::select(vec![r#""ec256-1""#, r#""nope""#, "1"]).prop_map(str::to_string),
        ],
    );
    let typ = prop::option::weighted(
        0.6,
        prop_oneof![
            6 => Just(r#""logout+jwt""#.to_string()),
            1 => prop::sample::select(vec![
                r#""JWT""#,
                r#""application/logout+jwt""#,
                r#""at+jwt""#,
                r#""secevent+jwt""#,
                "7",
            ])
            .prop_map(str::to_string),
        ],
    );
    let extra = prop::option::weighted(
        0.2,
        (
            prop::sample::select(vec!["crit", "jku", "alg", "typ", "zip"]),
            json_value(),
        ),
    );
    (alg, kid, typ, extra).prop_map(|(alg, kid, typ, extra)| {
        let mut m: Members = vec![("alg".into(), alg)];
        m.extend(kid.map(|k| ("kid".into(), k)));
        m.extend(typ.map(|t| ("typ".into(), t)));
        m.extend(extra.map(|(k, v)| (k.to_string(), v)));
        m
    })
}

fn has_duplicates(members: &Members) -> bool {
    let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.windows(2).any(|w| w[0] == w[1])
}

fn numeric(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Some(u),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && n.as_i64().is_none() => {
                Some(f.floor() as u64)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Why BCL §2.6 / SPEC §4 says this RS256-signed logout token must be refused, or `None`.
fn must_refuse(header: &Members, claims: &Members) -> Option<&'static str> {
    if has_duplicates(header) || has_duplicates(claims) {
        return Some("duplicate member");
    }
    // Logout tokens are parsed whole into JSON values: anything serde_json refuses
    // (1e400, nesting past 128) anywhere is fatal.
    let Ok(Value::Object(h)) = serde_json::from_str::<Value>(&object_text(header)) else {
        return Some("header is not JSON serde_json accepts");
    };
    let Ok(Value::Object(c)) = serde_json::from_str::<Value>(&object_text(claims)) else {
        return Some("claims are not JSON serde_json accepts");
    };
    let leeway = 60;
    if h.get("alg") != Some(&Value::from("RS256")) || h.contains_key("crit") {
        return Some("alg is not RS256 (the signing key's), or crit");
    }
    if h.get("kid").is_some_and(|k| k != "rsa-1") {
        return Some("kid is not the signing key's");
    }
    if let Some(typ) = h.get("typ") {
        let t = typ.as_str().map(str::to_ascii_lowercase);
        let t = t
            .as_deref()
            .map(|t| t.strip_prefix("application/").unwrap_or(t));
        if !matches!(t, Some("logout+jwt" | "jwt")) {
            return Some("typ");
        }
    }
    if c.get("iss") != Some(&Value::from(ISS)) {
        return Some("iss");
    }
    match c.get("aud") {
        Some(Value::String(a)) if a == CLIENT => {}
        Some(Value::Array(list)) if list.iter().any(|a| a == CLIENT) => {}
        _ => return Some("aud"),
    }
    let Some(iat) = c.get("iat").and_then(numeric) else {
        return Some("iat");
    };
    if iat > NOW + leeway || iat.saturating_add(300 + leeway) < NOW {
        return Some("iat out of range");
    }
    let Some(exp) = c.get("exp").and_then(numeric) else {
        return Some("exp");
    };
    if NOW >= exp.saturating_add(leeway) {
        return Some("expired");
    }
    if c.get("jti")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Some("jti");
    }
    match c
        .get("events")
        .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
    {
        Some(Value::Object(_)) if c["events"].is_object() => {}
        _ => return Some("events"),
    }
    if c.contains_key("nonce") {
        return Some("nonce");
    }
    let string = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    match (c.get("sid"), c.get("sub")) {
        (None, None) => return Some("neither sid nor sub"),
        (Some(s), _) if !string(s) => return Some("sid"),
        (_, Some(s)) if !string(s) => return Some("sub"),
        _ => {}
    }
    None
}

#[test]
fn arbitrary_text_is_refused_with_a_message() {
    let v = Validator::new();
    let text = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=-]{0,400}",
        "[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,200}",
        (0usize..20_000).prop_map(|n| "A".repeat(n)),
    ];
    runner()
        .run(&text, |t| assert_refused(&v.validate(&t)))
        .unwrap();
}

#[test]
fn arbitrary_bytes_in_base64url_parts_are_refused() {
    let v = Validator::new();
    let parts = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..5);
    runner()
        .run(&parts, |parts| {
            let t: Vec<String> = parts.iter().map(|p| testutil::b64(p)).collect();
            assert_refused(&v.validate(&t.join(".")))
        })
        .unwrap();
}

#[test]
fn random_members_in_a_signed_logout_token_are_accepted_only_when_valid() {
    let v = Validator::new();
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&(header_members(), claims_members()), |(header, claims)| {
            let token = sign_rs256(&object_text(&header), &object_text(&claims));
            let result = v.validate(&token);
            if let Some(why) = must_refuse(&header, &claims) {
                prop_assert!(
                    result.is_err(),
                    "accepted although {why}: header {} claims {}",
                    object_text(&header),
                    object_text(&claims)
                );
            }
            match &result {
                Ok(t) => {
                    accepted.set(accepted.get() + 1);
                    prop_assert_eq!(&t.issuer, ISS);
                    prop_assert!(t.sid.is_some() || t.sub.is_some());
                }
                Err(e) => prop_assert!(!e
                    .to_string()
                    .trim_start_matches("invalid logout token:")
                    .trim()
                    .is_empty()),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "accepted {} of {} random logout tokens",
        accepted.get(),
        cases()
    );
    assert!(
        cases() < 64 || accepted.get() > 0,
        "no generated token was valid"
    );
}

#[test]
fn deep_nesting_huge_claim_sets_and_duplicates_are_refused_without_overflow() {
    let v = Validator::new();
    let valid = object_text(&valid_claims());
    let header = r#"{"alg":"RS256","kid":"rsa-1","typ":"logout+jwt"}"#;
    v.validate(&sign_rs256(header, &valid))
        .expect("the valid logout token");
    let body = &valid[1..valid.len() - 1];
    for depth in [129, 1000, 2500] {
        for objects in [false, true] {
            let nested = deep(depth, objects);
            for payload in [
                format!(r#"{{{body},"x":{nested}}}"#),
                format!(r#"{{{body},"sid":{nested}}}"#),
            ] {
                let r = v.validate(&sign_rs256(header, &payload));
                assert!(r.is_err(), "nested {depth} deep: {r:?}");
            }
            let deep_header = format!(r#"{{"alg":"RS256","x":{nested}}}"#);
            assert!(v.validate(&sign_rs256(&deep_header, &valid)).is_err());
        }
    }
    // 100 levels inside an ignored claim: fine.
    let payload = format!(r#"{{{body},"x":{}}}"#, deep(100, true));
    v.validate(&sign_rs256(header, &payload))
        .expect("100 levels are within serde_json's limit");
    // Many claims, then one repeated; names that unescape to the same name repeat too.
    let many: Vec<String> = (0..300).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let payload = format!("{{{body},{}}}", many.join(","));
    v.validate(&sign_rs256(header, &payload))
        .expect("many distinct claims");
    for dup in [r#""c7":0"#, r#""s\u0069d":"other""#, r#""jti":"lt-2""#] {
        let payload = format!("{{{body},{},{dup}}}", many.join(","));
        let r = v.validate(&sign_rs256(header, &payload));
        assert!(
            matches!(&r, Err(e) if e.reason == LogoutReason::Malformed && e.to_string().contains("duplicate")),
            "{dup}: {r:?}"
        );
    }
    let r = v.validate(&sign_rs256(r#"{"alg":"RS256","\u0061lg":"none"}"#, &valid));
    assert!(
        matches!(&r, Err(e) if e.reason == LogoutReason::Malformed && e.to_string().contains("duplicate")),
        "{r:?}"
    );
    // Thousands of claims: over MAX_TOKEN_BYTES, refused unread.
    let many: Vec<String> = (0..5000).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let payload = format!("{{{body},{}}}", many.join(","));
    let r = v.validate(&sign_rs256(header, &payload));
    assert!(
        matches!(&r, Err(e) if e.reason == LogoutReason::Malformed && e.to_string().contains("too large")),
        "{r:?}"
    );
}

#[test]
fn a_changed_byte_anywhere_in_a_valid_logout_token_is_refused() {
    let v = Validator::new();
    let valid = object_text(&valid_claims());
    let tokens: Vec<String> = [
        sign_rs256(
            r#"{"alg":"RS256","kid":"rsa-1","typ":"logout+jwt"}"#,
            &valid,
        ),
        testutil::sign_raw(
            r#"{"alg":"ES256","kid":"ec256-1"}"#,
            &valid,
            Algorithm::ES256,
            &testutil::encoding_key(Algorithm::ES256),
        ),
    ]
    .to_vec();
    for t in &tokens {
        v.validate(t).expect("the unchanged token is valid");
    }
    let edit = (
        prop::sample::select(tokens.clone()),
        0u8..4,
        any::<prop::sample::Index>(),
        1u8..=255,
    );
    runner()
        .run(&edit, |(token, op, at, byte)| {
            let mut b = token.clone().into_bytes();
            match op {
                0 => {
                    let i = at.index(b.len());
                    b[i] ^= byte;
                }
                1 => {
                    b.remove(at.index(b.len()));
                }
                2 => b.insert(at.index(b.len() + 1), byte),
                _ => b.truncate(at.index(b.len())),
            }
            let mutated = String::from_utf8_lossy(&b).into_owned();
            prop_assume!(mutated != token);
            assert_refused(&v.validate(&mutated))
        })
        .unwrap();
}
