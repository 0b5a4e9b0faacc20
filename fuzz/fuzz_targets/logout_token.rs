//! Fuzzes the logout-token validator (`revgate::auth::logout::validate_logout_token`) with
//! arbitrary bytes as the compact token. A crash is a finding; so is an accepted token
//! that is not one of the valid seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    let token = String::from_utf8_lossy(data);
    let result = f.rt.block_on(revgate::auth::logout::validate_logout_token(
        &f.config,
        &f.keys,
        &f.metrics,
        common::NOW,
        &token,
    ));
    match result {
        Err(e) => assert!(!e.to_string().is_empty(), "refusal without a message"),
        Ok(t) => assert!(
            t.jti.starts_with("seed-"),
            "a made-up logout token was accepted: {t:?}"
        ),
    }
});
