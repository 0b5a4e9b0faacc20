//! Token checks: issuer key sets ([`keys`]), the JWS steps every token goes through
//! ([`jws`]), access tokens ([`verify`]) and logout tokens ([`logout`]).

pub mod authorize;
pub mod bearer;
pub mod cache;
pub(crate) mod jws;
pub mod keys;
pub mod logout;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil;

pub use jws::MAX_TOKEN_BYTES;
pub use keys::Keyring;
pub use verify::{verify_access_token, IdentityValues, TokenError, VerifiedToken};
