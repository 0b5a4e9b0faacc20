//! The test identity provider in Rust: its issuer and the key files of this directory
//! (see `README.md` here), the `kid` of each key and the signing key for each algorithm.
//!
//! Written once and compiled twice: into the library's unit tests (`src/auth/testutil.rs`)
//! and into the integration-test harness (`tests/common/mod.rs`), both with
//! `#[path = ".../tests/keys/mod.rs"] mod keys;`. It uses only `std` and `jsonwebtoken`, so
//! it builds in both crates.

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};

/// Issuer of every test token and test config.
pub const ISS: &str = "https://idp.test/";

/// The public keys below as a JWK Set (`kid`s `rsa-1`, `ec256-1`, `ec384-1`, `ed-1`).
pub const JWKS: &str = include_str!("jwks.json");
/// RSA 2048 private key of `kid` `rsa-1` (RS*/PS*).
pub const RSA_PRIVATE: &str = include_str!("rsa_private.pem");
/// Public PEM of `rsa-1` (also the HMAC secret of the algorithm-confusion tests).
pub const RSA_PUBLIC: &str = include_str!("rsa_public.pem");
/// An RSA 2048 private key that is NOT in [`JWKS`] (forgeries, key rotation).
pub const RSA_OTHER_PRIVATE: &str = include_str!("rsa_other_private.pem");
/// Public JWK of [`RSA_OTHER_PRIVATE`], `kid` `rsa-2` (key rotation).
pub const RSA_OTHER_JWK: &str = include_str!("rsa_other_jwk.json");
/// EC P-256 private key of `kid` `ec256-1` (ES256).
pub const EC256_PRIVATE: &str = include_str!("ec256_private.pem");
/// EC P-384 private key of `kid` `ec384-1` (ES384).
pub const EC384_PRIVATE: &str = include_str!("ec384_private.pem");
/// Ed25519 private key of `kid` `ed-1` (EdDSA).
pub const ED_PRIVATE: &str = include_str!("ed25519_private.pem");
/// Shared secret for HS256/384/512; the trailing newline is not part of it.
pub const HMAC_SECRET: &str = include_str!("hmac.secret");

/// Absolute path of a file in `tests/keys/` (for config keys such as `jwks_file`).
pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The signing key of the test key for `alg` (the in-JWKS RSA key for RS*/PS*).
pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        AlgorithmFamily::Ec if alg == Algorithm::ES256 => {
            EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap()
        }
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap(),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        AlgorithmFamily::Hmac => {
            EncodingKey::from_secret(HMAC_SECRET.trim_end().as_bytes()).unwrap()
        }
    }
}

/// The `kid` of the test key for `alg` in [`JWKS`] (`None` for HMAC: no JWK).
pub fn kid_for(alg: Algorithm) -> Option<&'static str> {
    match alg.family() {
        AlgorithmFamily::Rsa => Some("rsa-1"),
        AlgorithmFamily::Ec if alg == Algorithm::ES256 => Some("ec256-1"),
        AlgorithmFamily::Ec => Some("ec384-1"),
        AlgorithmFamily::Ed => Some("ed-1"),
        AlgorithmFamily::Hmac => None,
    }
}
