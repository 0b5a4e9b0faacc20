//! Property tests of [`verify_access_token`] on hostile input: arbitrary text and bytes,
//! JWS-shaped tokens with random (duplicate, deeply nested, huge) members signed with the
//! real test key, and valid tokens with a byte changed. Nothing may panic; every refusal
//! has a message; a token is accepted only when it is genuinely valid.
//!
//! Cases per property: 256, or `PROPTEST_CASES`.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::Value;

use super::*;
use crate::auth::testutil::{self, config, ISS, NOW};
use crate::auth::MAX_TOKEN_BYTES;
use crate::clock::ManualClock;
use jsonwebtoken::Algorithm;

/// Cases per property: `PROPTEST_CASES` when set, else 256 (fast enough for CI).
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

pub(crate) fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: cases(),
        // Failures are reported with the shrunk input; no regression files in src/.
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// The verifier under test: config, keys and a runtime, built once per property.
struct Verifier {
    config: Config,
    keys: Keyring,
    rt: tokio::runtime::Runtime,
}

impl Verifier {
    fn new() -> Verifier {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = config(&["RS256", "ES256", "EdDSA", "PS256", "HS256"]);
        let keys = Keyring::without_store(ManualClock::new(NOW));
        rt.block_on(keys.load_all(&config, &Metrics::default()))
            .unwrap();
        Verifier { config, keys, rt }
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.rt.block_on(verify_access_token(
            &self.config,
            &self.keys,
            &Metrics::default(),
            NOW,
            token,
        ))
    }
}

/// Asserts a refusal with a non-empty description.
fn assert_refused(result: &Result<VerifiedToken, TokenError>) -> Result<(), TestCaseError> {
    match result {
        Ok(v) => Err(TestCaseError::fail(format!("accepted: {v:?}"))),
        Err(e) => {
            prop_assert!(!e.to_string().trim().is_empty(), "empty message: {e:?}");
            Ok(())
        }
    }
}

// ---- JSON text generators ------------------------------------------------------------

/// Member names: the ones the verifier acts on, and a few others (so duplicates happen).
pub(crate) const NAMES: &[&str] = &[
    "iss", "aud", "exp", "iat", "nbf", "sub", "sid", "jti", "scope", "scp", "events", "alg", "kid",
    "typ", "crit", "jku", "x", "",
];

/// A JSON string literal of arbitrary text (escaped by serde_json).
pub(crate) fn json_string() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap())
}

/// Number literals, including ones out of every range.
pub(crate) fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("123456789012345678901234567890123456789".to_string()),
        Just("1700000000.999".to_string()),
    ]
}

/// Any JSON value as text, up to a few levels of arrays and objects (duplicate member
/// names included).
pub(crate) fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..6).prop_map(|m| {
                let members: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// `depth` nested arrays or objects around `null`.
pub(crate) fn deep(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}null{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}null{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// Values of the time claims: good, boundary, wrong type, out of range.
fn time_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            NOW - 10, NOW, NOW + 60, NOW + 61, NOW - 59, NOW - 60, NOW - 61, NOW + 600,
            NOW + 3600, NOW + 3601, NOW + 3700, NOW - 3600, 0, u64::MAX,
        ])
        .prop_map(|n| n.to_string()),
        1 => Just(format!("{}.5", NOW - 10)),
        1 => Just(format!("\"{NOW}\"")),
        1 => json_value(),
    ]
}

/// Values of claim `name`: mostly the valid one (so that a fair share of the tokens pass
/// and the oracle is tested both ways), else plausible mistakes, else anything.
fn claim_value(name: &'static str) -> BoxedStrategy<String> {
    let best = match name {
        "iss" => format!("{ISS:?}"),
        "aud" => r#""api://one""#.to_string(),
        "exp" => (NOW + 600).to_string(),
        "iat" => (NOW - 10).to_string(),
        "nbf" => (NOW - 10).to_string(),
        _ => format!("\"{name}-1\""),
    };
    let plausible: BoxedStrategy<String> = match name {
        "iss" => prop::sample::select(vec![ISS, "https://other/", "https://idp.test"])
            .prop_map(|s| serde_json::to_string(s).unwrap())
            .boxed(),
        "aud" => prop::sample::select(vec![
            r#""api://one""#,
            r#""api://three""#,
            r#"["api://x","api://two"]"#,
            r#"["api://one",1]"#,
            r#"[]"#,
        ])
        .prop_map(str::to_string)
        .boxed(),
        "exp" | "iat" | "nbf" => time_value().boxed(),
        _ => json_string().boxed(),
    };
    prop_oneof![24 => Just(best), 4 => plausible, 1 => json_value()].boxed()
}

/// A JSON object as `(name, value text)` members, in order; names may repeat.
pub(crate) type Members = Vec<(String, String)>;

pub(crate) fn object_text(members: &Members) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Claims: each known claim present or not, plus random extra members (maybe repeats).
fn claims_members() -> impl Strategy<Value = Members> {
    let known = [
        "iss", "aud", "exp", "iat", "nbf", "sub", "sid", "jti", "scope",
    ];
    let present = known.map(|name| {
        prop::option::weighted(if name == "nbf" { 0.2 } else { 0.95 }, claim_value(name))
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

/// Header members: alg (mostly RS256), kid (mostly the RSA one), maybe typ/crit/extras.
fn header_members() -> impl Strategy<Value = Members> {
    let alg = prop_oneof![
        20 => Just(r#""RS256""#.to_string()),
        1 => prop::sample::select(vec![r#""none""#, r#""ES256""#, r#""rs256""#, r#""HS256""#, "null", "256"])
            .prop_map(str::to_string),
    ];
    let kid = prop::option::weighted(
        0.8,
        prop_oneof![
            20 => Just(r#""rsa-1""#.to_string()),
            1 => prop::sample::select(vec![r#""ec256-1""#, r#""nope""#, "1", r#""""#]).prop_map(str::to_string),
        ],
    );
    let typ = prop::option::weighted(
        0.2,
        prop::sample::select(vec![
            r#""JWT""#,
            r#""at+jwt""#,
            r#""logout+jwt""#,
            r#""application/LOGOUT+JWT""#,
            r#""secevent+jwt""#,
            "7",
        ])
        .prop_map(str::to_string),
    );
    let extra = prop::collection::vec(
        (
            prop::sample::select(vec!["crit", "jku", "x5u", "jwk", "alg", "kid", "zip"]),
            json_value(),
        ),
        0..2,
    )
    .prop_filter("mostly without extra members", |e| {
        e.is_empty() || e.len() == 1
    });
    (alg, kid, typ, extra).prop_map(|(alg, kid, typ, extra)| {
        let mut m: Members = vec![("alg".into(), alg)];
        m.extend(kid.map(|k| ("kid".into(), k)));
        m.extend(typ.map(|t| ("typ".into(), t)));
        m.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        m
    })
}

fn sign_rs256(header: &str, payload: &str) -> String {
    let alg = Algorithm::RS256;
    testutil::sign_raw(header, payload, alg, &testutil::encoding_key(alg))
}

// ---- The oracle ------------------------------------------------------------------------

fn has_duplicates(members: &Members) -> bool {
    let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.windows(2).any(|w| w[0] == w[1])
}

/// A NumericDate as the SPEC reads it: `Some(floor)` for a non-negative number.
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

/// Why SPEC §4 says this RS256-signed token must be refused, or `None` when it does not
/// say so (the token may then be accepted or refused for a reason the oracle ignores).
fn must_refuse(header: &Members, claims: &Members) -> Option<&'static str> {
    if has_duplicates(header) || has_duplicates(claims) {
        return Some("duplicate member");
    }
    // The verifier reads only the members it acts on; the others are skipped unread (so
    // 1e400, which serde_json cannot hold, is harmless there but fatal in a claim it reads).
    let read = |members: &Members, names: &[&str]| -> Option<serde_json::Map<String, Value>> {
        let mut map = serde_json::Map::new();
        for (k, v) in members.iter().filter(|(k, _)| names.contains(&k.as_str())) {
            map.insert(k.clone(), serde_json::from_str(v).ok()?);
        }
        Some(map)
    };
    // Every member read here must be a string, number or array, so an unreadable value
    // is fatal; `crit` and `events` are fatal by name; `scope`/`scp` are left out.
    let Some(h) = read(header, &["alg", "kid", "typ"]) else {
        return Some("a header member the verifier reads is out of serde_json's range");
    };
    let claim_names = ["iss", "aud", "exp", "iat", "nbf", "sub", "sid", "jti"];
    let Some(c) = read(claims, &claim_names) else {
        return Some("a claim the verifier reads is out of serde_json's range");
    };
    if header.iter().any(|(k, _)| k == "crit") {
        return Some("crit");
    }
    if claims.iter().any(|(k, _)| k == "events") {
        return Some("events");
    }
    let leeway = 60;
    if h.get("alg") != Some(&Value::from("RS256")) {
        return Some("alg is not RS256, the only algorithm of the signing key");
    }
    if let Some(kid) = h.get("kid") {
        if kid != "rsa-1" {
            return Some("kid is not the signing key's");
        }
    }
    if let Some(typ) = h.get("typ") {
        match typ.as_str() {
            None => return Some("typ not a string"),
            Some(t) => {
                let t = t.to_ascii_lowercase();
                let t = t.strip_prefix("application/").unwrap_or(&t);
                if t == "logout+jwt" || t == "secevent+jwt" {
                    return Some("typ of a logout or event token");
                }
            }
        }
    }
    if c.get("iss") != Some(&Value::from(ISS)) {
        return Some("iss");
    }
    let accepted = |a: &Value| a == "api://one" || a == "api://two";
    match c.get("aud") {
        Some(Value::String(_)) if accepted(&c["aud"]) => {}
        Some(Value::Array(list)) if list.iter().any(accepted) => {}
        _ => return Some("aud"),
    }
    let Some(exp) = c.get("exp").and_then(numeric) else {
        return Some("exp missing or not a NumericDate");
    };
    let Some(iat) = c.get("iat").and_then(numeric) else {
        return Some("iat missing or not a NumericDate");
    };
    if NOW >= exp.saturating_add(leeway) {
        return Some("expired");
    }
    if iat > NOW + leeway {
        return Some("iat in the future");
    }
    if exp.saturating_sub(iat) > 3600 {
        return Some("lifetime");
    }
    if let Some(nbf) = c.get("nbf") {
        match numeric(nbf) {
            Some(n) if n <= NOW + leeway => {}
            _ => return Some("nbf"),
        }
    }
    for name in ["sub", "sid"] {
        if c.get(name).is_some_and(|v| !v.is_string()) {
            return Some("sub or sid not a string");
        }
    }
    if c.get("jti")
        .is_some_and(|v| v.as_str().is_none_or(str::is_empty))
    {
        return Some("jti not a non-empty string");
    }
    None
}

// ---- Properties ------------------------------------------------------------------------

#[test]
fn arbitrary_text_is_refused_with_a_message() {
    let v = Verifier::new();
    let text = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=-]{0,400}",
        "[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,200}",
        (0usize..20_000).prop_map(|n| "A".repeat(n)),
    ];
    runner()
        .run(&text, |t| assert_refused(&v.verify(&t)))
        .unwrap();
}

#[test]
fn arbitrary_bytes_in_base64url_parts_are_refused() {
    // Every part decodes, to bytes that are rarely UTF-8 and never a signed token.
    let v = Verifier::new();
    let parts = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..5);
    runner()
        .run(&parts, |parts| {
            let t: Vec<String> = parts.iter().map(|p| testutil::b64(p)).collect();
            assert_refused(&v.verify(&t.join(".")))
        })
        .unwrap();
}

#[test]
fn random_json_members_in_a_signed_token_are_accepted_only_when_valid() {
    let v = Verifier::new();
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&(header_members(), claims_members()), |(header, claims)| {
            let token = sign_rs256(&object_text(&header), &object_text(&claims));
            let result = v.verify(&token);
            if let Some(why) = must_refuse(&header, &claims) {
                prop_assert!(
                    result.is_err(),
                    "accepted although {why}: header {} claims {}",
                    object_text(&header),
                    object_text(&claims)
                );
            }
            match &result {
                Ok(_) => accepted.set(accepted.get() + 1),
                Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "accepted {} of {} random signed tokens",
        accepted.get(),
        cases()
    );
    // About one in five is valid: none means the generator no longer reaches valid tokens.
    assert!(
        cases() < 64 || accepted.get() > 0,
        "no generated token was valid"
    );
}

#[test]
fn valid_claims_with_arbitrary_extra_members_are_accepted() {
    let v = Verifier::new();
    let base: Members = [
        ("iss", format!("{ISS:?}")),
        ("aud", r#""api://one""#.to_string()),
        ("exp", (NOW + 600).to_string()),
        ("iat", (NOW - 10).to_string()),
        ("jti", r#""j-1""#.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Extra names that the verifier does not act on, each once.
    let extras = prop::collection::btree_map("x-[a-z0-9]{0,6}", json_value(), 0..8);
    runner()
        .run(&extras, |extras| {
            let mut claims = base.clone();
            claims.extend(extras);
            let token = sign_rs256(r#"{"alg":"RS256","kid":"rsa-1"}"#, &object_text(&claims));
            // Unknown claims are skipped unread: even 1e400 (valid JSON, out of f64 range)
            // or deep nesting inside them changes nothing.
            match v.verify(&token) {
                Ok(t) => prop_assert_eq!(t.jti, "j-1"),
                Err(e) => prop_assert!(false, "refused ({e}): {}", object_text(&claims)),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn deep_nesting_and_huge_claim_sets_are_refused_or_accepted_without_overflow() {
    let v = Verifier::new();
    let good = r#""iss":"https://idp.test/","aud":"api://one","exp":1700000600,"iat":1699999990"#;
    for depth in [129, 1000, 2500] {
        for objects in [false, true] {
            let nested = deep(depth, objects);
            // In a claim the verifier reads (aud, sub, the session claim, scope): parsed
            // recursively up to serde_json's limit of 128 levels, then refused as malformed.
            for claim in ["aud", "sub", "sid", "scope"] {
                let payload = format!(r#"{{{good},"{claim}":{nested}}}"#);
                let r = v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload));
                assert!(
                    matches!(&r, Err(TokenError::Malformed(_))),
                    "{claim} nested {depth} deep: {r:?}"
                );
            }
            let header = format!(r#"{{"alg":"RS256","kid":{nested}}}"#);
            let r = v.verify(&sign_rs256(&header, &format!("{{{good}}}")));
            assert!(matches!(&r, Err(TokenError::Malformed(_))), "kid: {r:?}");
            // In a member nobody reads: skipped without recursion (no stack to overflow),
            // and the token is as valid as it was.
            // (Past MAX_TOKEN_BYTES it is refused unread.)
            let payload = format!(r#"{{{good},"x":{nested}}}"#);
            let header = format!(r#"{{"alg":"RS256","x":{nested}}}"#);
            for token in [
                sign_rs256(r#"{"alg":"RS256"}"#, &payload),
                sign_rs256(&header, &format!("{{{good}}}")),
            ] {
                let r = v.verify(&token);
                if token.len() > MAX_TOKEN_BYTES {
                    assert!(matches!(&r, Err(TokenError::Malformed(m)) if m.contains("too large")));
                } else {
                    assert!(r.is_ok(), "unknown member nested {depth} deep: {r:?}");
                }
            }
        }
    }
    // Unbalanced nesting never ends the JSON text: malformed.
    let payload = format!(r#"{{{good},"x":{}"#, "[".repeat(5000));
    let r = v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload));
    assert!(matches!(&r, Err(TokenError::Malformed(_))), "{r:?}");
    // Within the limit: an ordinary extra claim, accepted.
    let payload = format!(r#"{{{good},"x":{}}}"#, deep(100, false));
    v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload))
        .expect("100 levels are within serde_json's limit");
    // Hundreds of distinct claims, then the same with one repeated at the end.
    let many: Vec<String> = (0..400).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let payload = format!("{{{good},{}}}", many.join(","));
    v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload))
        .expect("many distinct claims");
    let payload = format!(r#"{{{good},{},"c7":0}}"#, many.join(","));
    let r = v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload));
    assert!(
        matches!(&r, Err(TokenError::Malformed(m)) if m.contains("duplicate")),
        "{r:?}"
    );
    // Thousands of claims: over MAX_TOKEN_BYTES, refused before any parsing.
    let many: Vec<String> = (0..5000).map(|i| format!(r#""c{i}":{i}"#)).collect();
    let payload = format!("{{{good},{}}}", many.join(","));
    let r = v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload));
    assert!(matches!(&r, Err(TokenError::Malformed(m)) if m.contains("too large")));
}

#[test]
fn a_changed_byte_anywhere_in_a_valid_token_is_refused() {
    let v = Verifier::new();
    let tokens: Vec<String> = ["RS256", "PS256", "ES256", "EdDSA", "HS256"]
        .iter()
        .map(|a| testutil::token(a.parse().unwrap(), &testutil::claims()))
        .collect();
    for t in &tokens {
        v.verify(t).expect("the unchanged token is valid");
    }
    #[derive(Debug, Clone)]
    enum Edit {
        Xor(prop::sample::Index, u8),
        Delete(prop::sample::Index),
        Insert(prop::sample::Index, u8),
        Truncate(prop::sample::Index),
    }
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, m)| Edit::Xor(i, m)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ];
    runner()
        .run(
            &(prop::sample::select(tokens.clone()), edit),
            |(token, edit)| {
                let mut b = token.clone().into_bytes();
                match edit {
                    Edit::Xor(i, m) => {
                        let i = i.index(b.len());
                        b[i] ^= m;
                    }
                    Edit::Delete(i) => {
                        b.remove(i.index(b.len()));
                    }
                    Edit::Insert(i, x) => b.insert(i.index(b.len() + 1), x),
                    Edit::Truncate(i) => b.truncate(i.index(b.len())),
                }
                let mutated = String::from_utf8_lossy(&b).into_owned();
                prop_assume!(mutated != token);
                assert_refused(&v.verify(&mutated))
            },
        )
        .unwrap();
}

#[test]
fn names_that_unescape_to_the_same_claim_are_duplicates() {
    let v = Verifier::new();
    let good = r#""iss":"https://idp.test/","aud":"api://one","exp":1700000600,"iat":1699999990"#;
    for dup in [
        r#""sub":"a","s\u0075b":"b""#,
        r#""\u0069ss":"https://idp.test/""#,
        r#""exp":1700000600"#,
    ] {
        let payload = format!("{{{good},{dup}}}");
        let r = v.verify(&sign_rs256(r#"{"alg":"RS256"}"#, &payload));
        assert!(
            matches!(&r, Err(TokenError::Malformed(m)) if m.contains("duplicate")),
            "{payload}: {r:?}"
        );
    }
    let r = v.verify(&sign_rs256(
        r#"{"alg":"RS256","\u0061lg":"RS256"}"#,
        &format!("{{{good}}}"),
    ));
    assert!(matches!(&r, Err(TokenError::Malformed(m)) if m.contains("duplicate")));
}
