//! The strict reading of a token's JOSE header and claims (RFC 8725 §3.9–3.11, SPEC §1):
//! one pass over the JSON text, nothing after it, duplicate member names refused, only the
//! members revgate acts on kept ([`Header`], [`Claims`]), every other value skipped
//! unread. Used by [`verify_access_token`](super::verify_access_token); logout tokens are read
//! as whole JSON objects by their own rules (`auth/logout.rs`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::TokenError;
use crate::config::Config;

/// Parses a whole JSON text (nothing after it) with `seed`.
pub(super) fn parse_object<'de, S: DeserializeSeed<'de>>(
    json: &'de [u8],
    seed: S,
    what: &str,
) -> Result<S::Value, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            if e.to_string().starts_with(DUPLICATE) {
                TokenError::Malformed(format!("duplicate member name in {what}"))
            } else {
                TokenError::Malformed(format!("{what} is not a JSON object"))
            }
        })?;
    Ok(value)
}

pub(super) const DUPLICATE: &str = "duplicate member name";

/// A JSON value reduced to the shapes header parameters and claims can take; strings
/// borrow from the decoded JSON when they have no escapes.
#[derive(Debug, Clone)]
pub(super) enum Loose<'a> {
    Str(Cow<'a, str>),
    /// A number: `Some(floor)` when a non-negative NumericDate, else `None`.
    Num(Option<u64>),
    /// An array of strings only.
    StrList(Vec<Cow<'a, str>>),
    /// Anything else (null, bool, object, mixed array).
    Other,
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

pub(super) struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::Num(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Num(u64::try_from(v).ok()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `as` saturates: absurdly large dates become u64::MAX.
        Ok(Loose::Num(
            (v.is_finite() && v >= 0.0).then(|| v.floor() as u64),
        ))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        let mut only_strings = true;
        while let Some(item) = seq.next_element::<Loose<'de>>()? {
            match item {
                Loose::Str(s) if only_strings => list.push(s),
                _ => only_strings = false,
            }
        }
        Ok(if only_strings {
            Loose::StrList(list)
        } else {
            Loose::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// A member name, unescaped (so `"s\u0075b"` is `sub`).
pub(super) struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Member names seen in one object; a repeated name is an error (serde_json would keep
/// the last value silently, and two parsers disagreeing on a claim is an attack).
#[derive(Default)]
pub(super) struct SeenNames<'a>(Vec<Cow<'a, str>>);

impl<'a> SeenNames<'a> {
    fn add<E: de::Error>(&mut self, name: Cow<'a, str>) -> Result<(), E> {
        // Objects are small (a token is at most MAX_TOKEN_BYTES); a linear scan over a
        // handful of names beats hashing, and sorting takes over for big objects.
        if self.0.len() < 32 && self.0.contains(&name) {
            return Err(E::custom(DUPLICATE));
        }
        self.0.push(name);
        Ok(())
    }
    fn finish<E: de::Error>(mut self) -> Result<(), E> {
        if self.0.len() > 32 {
            self.0.sort_unstable();
            if self.0.windows(2).any(|w| w[0] == w[1]) {
                return Err(E::custom(DUPLICATE));
            }
        }
        Ok(())
    }
}

/// The JOSE header parameters we act on.
#[derive(Default)]
pub(super) struct Header<'a> {
    pub(super) alg: Option<Loose<'a>>,
    pub(super) kid: Option<Loose<'a>>,
    pub(super) typ: Option<Loose<'a>>,
    /// `crit` present: we understand no extensions, so the token is refused.
    pub(super) crit: bool,
}

pub(super) struct HeaderSeed;

impl<'de> DeserializeSeed<'de> for HeaderSeed {
    type Value = Header<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed {
    type Value = Header<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = Header::default();
        let mut seen = SeenNames::default();
        while let Some(Name(name)) = map.next_key()? {
            match name.as_ref() {
                "alg" => header.alg = Some(map.next_value()?),
                "kid" => header.kid = Some(map.next_value()?),
                "typ" => header.typ = Some(map.next_value()?),
                "crit" => {
                    header.crit = true;
                    map.next_value::<IgnoredAny>()?;
                }
                // jku, x5u, jwk, x5c and the rest: ignored, never fetched or used.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.add(name)?;
        }
        seen.finish()?;
        Ok(header)
    }
}

/// The claims we act on, read in one pass.
#[derive(Default)]
pub(super) struct Claims<'a> {
    pub(super) iss: Option<Loose<'a>>,
    pub(super) sub: Option<Loose<'a>>,
    pub(super) jti: Option<Loose<'a>>,
    pub(super) aud: Option<Loose<'a>>,
    pub(super) exp: Option<Loose<'a>>,
    pub(super) iat: Option<Loose<'a>>,
    pub(super) nbf: Option<Loose<'a>>,
    pub(super) scope: Option<Loose<'a>>,
    pub(super) scp: Option<Loose<'a>>,
    pub(super) events: bool,
    /// Members named like some configured issuer's `session_claim` (the issuer is not
    /// known until `iss` is read, and members come in any order).
    pub(super) session: Vec<(Cow<'a, str>, Loose<'a>)>,
}

pub(super) struct ClaimsSeed<'c> {
    pub(super) config: &'c Config,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut claims = Claims::default();
        let mut seen = SeenNames::default();
        while let Some(Name(name)) = map.next_key()? {
            let is_session = self
                .config
                .issuers
                .iter()
                .any(|i| i.session_claim == name.as_ref());
            let field = match name.as_ref() {
                "iss" => Some(&mut claims.iss),
                "sub" => Some(&mut claims.sub),
                "jti" => Some(&mut claims.jti),
                "aud" => Some(&mut claims.aud),
                "exp" => Some(&mut claims.exp),
                "iat" => Some(&mut claims.iat),
                "nbf" => Some(&mut claims.nbf),
                "scope" => Some(&mut claims.scope),
                "scp" => Some(&mut claims.scp),
                _ => None,
            };
            match (field, is_session) {
                (Some(field), false) => *field = Some(map.next_value()?),
                (Some(field), true) => {
                    let value: Loose<'de> = map.next_value()?;
                    claims.session.push((name.clone(), value.clone()));
                    *field = Some(value);
                }
                (None, true) => {
                    let value = map.next_value()?;
                    claims.session.push((name.clone(), value));
                }
                (None, false) => {
                    if name == "events" {
                        claims.events = true;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.add(name)?;
        }
        seen.finish()?;
        Ok(claims)
    }
}
