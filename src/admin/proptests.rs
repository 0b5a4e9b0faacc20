//! Property tests of [`parse_revocation`] (the `POST /v1/revocations` body) on hostile
//! input: arbitrary JSON values, and objects with the API's fields holding anything.
//! Nothing may panic; a refusal is `400 invalid_request` with a description; a body is
//! accepted only when every field is acceptable.
//!
//! Cases per property: 256, or `PROPTEST_CASES`.

use proptest::prelude::*;

use super::*;
use crate::auth::verify::proptests::{json_value, runner};
use crate::clock::ManualClock;
use crate::store::{Kind, MAX_VALUE_BYTES};

/// "Now" of these tests (2023-11-14T22:13:20Z).
const NOW: u64 = 1_700_000_000;

/// An `App` on a temporary store (kept alive by the returned directory).
fn app() -> (Arc<App>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::auth::testutil::config(&["RS256"]);
    let clock = ManualClock::new(NOW);
    let store = crate::store::RevocationStore::open(&dir.path().join("db"), 1 << 20, clock.clone())
        .unwrap();
    (App::new(config, None, store, clock), dir)
}

/// Checks the answer: a refusal is a 400 with a description; an acceptance is sound.
fn check(app: &App, body: &Value) -> Result<(), TestCaseError> {
    match parse_revocation(app, body) {
        Err(e) => {
            prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            let (code, description) = e.code_and_description();
            prop_assert_eq!(code, "invalid_request");
            // SPEC §5: the description names the field ("ttl: ...", "malformed JSON: ...").
            let named = description.split(": ").next().unwrap_or_default();
            let known = [
                "kind",
                "value",
                "issuer",
                "ttl",
                "expires_at",
                "issued_before",
                "reason",
                "malformed JSON",
            ];
            prop_assert!(
                named
                    .split(", ")
                    .all(|f| known.contains(&f)
                        || body.as_object().is_some_and(|o| o.contains_key(f))),
                "description names no field: {:?}",
                description
            );
        }
        Ok(rev) => {
            let obj = body.as_object().expect("only objects are accepted");
            prop_assert!(!rev.value.is_empty() && rev.value.len() <= MAX_VALUE_BYTES);
            prop_assert_eq!(Some(&Value::from(rev.value.clone())), obj.get("value"));
            prop_assert_eq!(&rev.issuer, crate::auth::testutil::ISS);
            prop_assert!(
                rev.expires_at > NOW,
                "expiry {} not after now",
                rev.expires_at
            );
            prop_assert!(rev.expires_at <= crate::clock::MAX_RFC3339_SECS);
            prop_assert_eq!(rev.issued_before.is_none(), rev.kind == Kind::Jti);
            let given = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
            prop_assert!(!(given("ttl") && given("expires_at")));
            prop_assert!(rev
                .reason
                .as_ref()
                .is_none_or(|r| r.len() <= MAX_REASON_BYTES));
            for k in obj.keys() {
                prop_assert!(
                    [
                        "kind",
                        "value",
                        "issuer",
                        "ttl",
                        "expires_at",
                        "issued_before",
                        "reason"
                    ]
                    .contains(&k.as_str()),
                    "unknown field {k} accepted"
                );
            }
        }
    }
    Ok(())
}

/// Text for the instant and duration fields: valid, nearly valid, hostile.
fn instant_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2030-01-01T00:00:00Z".to_string()),
        Just("2023-11-14T22:13:21Z".to_string()),
        Just("2023-11-14T22:13:20Z".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("2030-01-01T00:00:00+14:00".to_string()),
        Just("1969-12-31T23:59:59Z".to_string()),
        Just("2030-02-30T00:00:00Z".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        ".{0,70}",
        // Multi-byte characters just before the offset position.
        "[0-9T:-]{0,20}[é€😀][+-]?[0-9:]{0,6}",
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1h".to_string()),
        Just("0s".to_string()),
        Just("18446744073709551615s".to_string()),
        Just("99999999999999y".to_string()),
        Just("300000y".to_string()),
        "[0-9]{1,25} ?(ns|ms|s|m|h|d|w|y|months|x)",
        ".{0,70}",
    ]
}

/// A value for field `name`: mostly of the right type, sometimes anything.
fn field(name: &'static str) -> BoxedStrategy<Value> {
    let right: BoxedStrategy<Value> = match name {
        "kind" => prop::sample::select(vec!["jti", "sid", "sub", "JTI", "", "token"])
            .prop_map(Value::from)
            .boxed(),
        "issuer" => prop::sample::select(vec![crate::auth::testutil::ISS, "https://other/"])
            .prop_map(Value::from)
            .boxed(),
        "ttl" => duration_text().prop_map(Value::from).boxed(),
        "expires_at" | "issued_before" => instant_text().prop_map(Value::from).boxed(),
        "value" | "reason" => prop_oneof![
            ".{0,40}".prop_map(Value::from),
            (1020usize..1030).prop_map(|n| Value::from("v".repeat(n))),
        ]
        .boxed(),
        _ => ".{0,10}".prop_map(Value::from).boxed(),
    };
    let any_value = json_value().prop_map(|t| serde_json::from_str(&t).unwrap_or(Value::Null));
    prop_oneof![8 => right, 1 => Just(Value::Null), 1 => any_value].boxed()
}

#[test]
fn random_revocation_bodies_are_refused_clearly_or_accepted_soundly() {
    let (app, _dir) = app();
    let fields = [
        "kind",
        "value",
        "issuer",
        "ttl",
        "expires_at",
        "issued_before",
        "reason",
        "bogus",
    ];
    let members = fields.map(|name| {
        let p = match name {
            "kind" | "value" => 0.9,
            "bogus" => 0.05,
            _ => 0.25,
        };
        prop::option::weighted(p, field(name)).prop_map(move |v| v.map(|v| (name, v)))
    });
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&members.to_vec(), |members| {
            let body = Value::Object(
                members
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            );
            if parse_revocation(&app, &body).is_ok() {
                accepted.set(accepted.get() + 1);
            }
            check(&app, &body)
        })
        .unwrap();
    eprintln!("accepted {} random revocation bodies", accepted.get());
}

#[test]
fn any_json_value_as_a_body_is_handled() {
    let (app, _dir) = app();
    runner()
        .run(&json_value(), |text| {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                check(&app, &v)?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_instant_and_duration_text_never_panics() {
    let (app, _dir) = app();
    let strategy = (
        prop::sample::select(vec!["ttl", "expires_at", "issued_before"]),
        prop_oneof![instant_text(), duration_text(), any::<String>()],
        prop::sample::select(vec!["jti", "sid", "sub"]),
    );
    runner()
        .run(&strategy, |(name, text, kind)| {
            let body = serde_json::json!({"kind": kind, "value": "v", name: text});
            check(&app, &body)
        })
        .unwrap();
}

#[test]
fn instants_ending_inside_a_multibyte_character_are_refused_not_a_panic() {
    // Found by the property above: the offset check sliced the last six bytes of the text
    // even when they began inside a character.
    for text in ["xé12345", "2030-01-01T00:00:0€+1:00", "ⵑৗ%?ab"] {
        assert!(crate::clock::parse_rfc3339(text).is_err(), "{text}");
    }
    let (app, _dir) = app();
    let body = serde_json::json!({"kind": "sid", "value": "v", "expires_at": "xé12345"});
    let e = parse_revocation(&app, &body).expect_err("refused");
    let description = e.code_and_description().1;
    assert!(description.starts_with("expires_at:"), "{description}");
}
