//! Token checks: issuer key sets ([`jwks`]), access tokens ([`verify`]).

pub mod jwks;
pub mod logout;
pub mod verify;

pub use jwks::Keyring;
pub use verify::{TokenError, VerifiedToken};
