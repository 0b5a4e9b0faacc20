//! Token checks: issuer key sets ([`jwks`]), the JWS steps every token goes through
//! ([`jws`]), access tokens ([`verify`]) and logout tokens ([`logout`]).

pub mod cache;
pub mod jwks;
pub(crate) mod jws;
pub mod logout;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil;

pub use jwks::Keyring;
pub use jws::MAX_TOKEN_BYTES;
pub use verify::{verify_access_token, TokenError, VerifiedToken};
