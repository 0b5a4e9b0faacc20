//! Fuzzes the access-token verifier (`revgate::auth::verify_access_token`) with arbitrary
//! bytes as the compact token. A crash (panic, overflow, abort) is a finding; so is an
//! accepted token that the fuzzer made up (it cannot sign, so acceptance means a bug),
//! unless it is byte for byte one of the valid seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    // Tokens reach the verifier as text (an HTTP header value); lossy keeps every input.
    let token = String::from_utf8_lossy(data);
    let result = f.rt.block_on(revgate::auth::verify_access_token(
        &f.config,
        &f.keys,
        &f.metrics,
        common::NOW,
        &token,
    ));
    match result {
        Err(e) => assert!(!e.to_string().is_empty(), "refusal without a message"),
        Ok(v) => assert!(
            v.jti.starts_with("seed-"),
            "a made-up token was accepted: {v:?}"
        ),
    }
});
