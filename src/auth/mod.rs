//! Token checks: issuer key sets ([`jwks`]), access tokens ([`verify`]).

pub mod cache;
pub mod jwks;
pub mod logout;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil;

pub use jwks::Keyring;
pub use verify::{verify_access_token, TokenError, VerifiedToken, MAX_TOKEN_BYTES};
