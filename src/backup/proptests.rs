//! Property tests of [`parse_record_line`] (one NDJSON import line) on hostile input:
//! arbitrary bytes (invalid UTF-8 included) and record objects whose fields hold anything.
//! Nothing may panic; a refusal names the problem; an accepted record is sound.
//!
//! Cases per property: 256, or `PROPTEST_CASES`.

use proptest::prelude::*;

use super::*;
use crate::auth::testutil::{config, ISS};
use crate::auth::verify::proptests::{json_value, runner};

fn check(line: &[u8], config: &Config) -> Result<(), TestCaseError> {
    match parse_record_line(line, config) {
        Err(e) => prop_assert!(!e.trim().is_empty()),
        Ok(r) => {
            prop_assert_eq!(&r.issuer, ISS);
            prop_assert!(!r.value.is_empty() && r.value.len() <= crate::store::MAX_VALUE_BYTES);
            prop_assert_eq!(r.issued_before.is_none(), r.kind == Kind::Jti);
            prop_assert!(r
                .reason
                .as_ref()
                .is_none_or(|x| x.len() <= crate::admin::MAX_REASON_BYTES));
        }
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_are_refused_with_a_message() {
    let config = config(&["RS256"]);
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..2000), |line| {
            check(&line, &config)
        })
        .unwrap();
}

#[test]
fn random_records_are_refused_clearly_or_accepted_soundly() {
    let config = config(&["RS256"]);
    let field = |name: &'static str| -> BoxedStrategy<Value> {
        let right: BoxedStrategy<Value> = match name {
            "kind" => prop::sample::select(vec!["jti", "sid", "sub", "x"])
                .prop_map(Value::from)
                .boxed(),
            "issuer" => prop::sample::select(vec![ISS, "https://other/"])
                .prop_map(Value::from)
                .boxed(),
            "source" => prop::sample::select(vec!["admin", "backchannel", "revoke_endpoint", "x"])
                .prop_map(Value::from)
                .boxed(),
            "revoked_at" | "issued_before" | "expires_at" => prop_oneof![
                Just(Value::from("2030-01-01T00:00:00Z")),
                Just(Value::from("9999-12-31T23:59:59+01:00")),
                ".{0,30}".prop_map(Value::from),
            ]
            .boxed(),
            _ => prop_oneof![
                ".{0,20}".prop_map(Value::from),
                (1020usize..1030).prop_map(|n| Value::from("x".repeat(n))),
            ]
            .boxed(),
        };
        let any_value = json_value().prop_map(|t| serde_json::from_str(&t).unwrap_or(Value::Null));
        prop_oneof![8 => right, 1 => Just(Value::Null), 1 => any_value].boxed()
    };
    let names = [
        "kind",
        "issuer",
        "value",
        "revoked_at",
        "issued_before",
        "expires_at",
        "reason",
        "source",
        "extra",
    ];
    let members = names.map(|n| {
        let p = if n == "extra" { 0.05 } else { 0.85 };
        prop::option::weighted(p, field(n)).prop_map(move |v| v.map(|v| (n.to_string(), v)))
    });
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&members.to_vec(), |members| {
            let line = Value::Object(members.into_iter().flatten().collect()).to_string();
            if parse_record_line(line.as_bytes(), &config).is_ok() {
                accepted.set(accepted.get() + 1);
            }
            check(line.as_bytes(), &config)
        })
        .unwrap();
    eprintln!("accepted {} random records", accepted.get());
}
