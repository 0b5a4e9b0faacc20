//! Byte layouts of the sled keys and of the small fixed-size values (seen logout jtis,
//! list cursors). Kept in one place so the layout documented in `mod.rs` has exactly one
//! implementation.

use base64::Engine as _;

use super::{Kind, StoreError};

/// Kind byte of `jti` records in the expiry index and in list cursors.
pub(super) const KIND_JTI: u8 = 0;
/// Kind byte of `sid` records.
pub(super) const KIND_SID: u8 = 1;
/// Kind byte of `sub` records.
pub(super) const KIND_SUB: u8 = 2;
/// Kind byte of seen logout-token jtis (index only; never a revocation kind).
pub(super) const KIND_LOGOUT: u8 = 3;

/// Longest issuer a key can hold: its length is stored as a `u16`.
pub const MAX_ISSUER_BYTES: usize = u16::MAX as usize;
/// Longest jti / sid / sub value the store accepts. Real values are tens of bytes (a
/// `sha256:` digest is 50); the bound keeps a hostile value from bloating keys. Longer
/// values are refused on write and can never match on read.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Length of an expiry-index key prefix: `u64 BE expires_at ‖ kind byte`.
const INDEX_PREFIX_LEN: usize = 9;

/// Version byte of a seen-logout-jti value.
const LOGOUT_VERSION_V1: u8 = 1;
/// Length of a seen-logout-jti value: version ‖ 32-byte fingerprint ‖ u64 BE expires_at.
const LOGOUT_VALUE_LEN: usize = 1 + 32 + 8;

/// The kind byte of a revocation kind.
pub(super) fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Jti => KIND_JTI,
        Kind::Sid => KIND_SID,
        Kind::Sub => KIND_SUB,
    }
}

/// The revocation kind of a kind byte (`None` for the logout byte or garbage).
pub(super) fn kind_from_byte(byte: u8) -> Option<Kind> {
    match byte {
        KIND_JTI => Some(Kind::Jti),
        KIND_SID => Some(Kind::Sid),
        KIND_SUB => Some(Kind::Sub),
        _ => None,
    }
}

/// Checks the bounds a record key imposes on issuer and value.
pub(super) fn check_key_parts(issuer: &str, value: &str) -> Result<(), StoreError> {
    if issuer.len() > MAX_ISSUER_BYTES {
        return Err(StoreError::Invalid(format!(
            "issuer longer than {MAX_ISSUER_BYTES} bytes"
        )));
    }
    if value.is_empty() {
        return Err(StoreError::Invalid("empty value".to_string()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid(format!(
            "value longer than {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Appends the issuer prefix `u16 BE len ‖ issuer` to `buf`. The caller checked the
/// issuer length.
pub(super) fn push_issuer(buf: &mut Vec<u8>, issuer: &str) {
    debug_assert!(issuer.len() <= MAX_ISSUER_BYTES);
    buf.extend_from_slice(&(issuer.len() as u16).to_be_bytes());
    buf.extend_from_slice(issuer.as_bytes());
}

/// Record key `u16 BE issuer length ‖ issuer ‖ value`, after checking the bounds.
pub(super) fn record_key(issuer: &str, value: &str) -> Result<Vec<u8>, StoreError> {
    check_key_parts(issuer, value)?;
    let mut key = Vec::with_capacity(2 + issuer.len() + value.len());
    push_issuer(&mut key, issuer);
    key.extend_from_slice(value.as_bytes());
    Ok(key)
}

/// Splits a record key into issuer and value; `None` when it is not one.
pub(super) fn split_record_key(key: &[u8]) -> Option<(&str, &str)> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    let len = u16::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (issuer, value) = rest.split_at(len);
    Some((
        std::str::from_utf8(issuer).ok()?,
        std::str::from_utf8(value).ok()?,
    ))
}

/// Like [`split_record_key`], for keys read from the store (a bad one is corruption).
pub(super) fn split_stored_key(key: &[u8]) -> Result<(&str, &str), StoreError> {
    split_record_key(key).ok_or_else(|| StoreError::Corrupt("malformed record key".to_string()))
}

/// Expiry-index key `u64 BE expires_at ‖ kind byte ‖ record key`.
pub(super) fn index_key(expires_at: u64, kind: u8, record_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_PREFIX_LEN + record_key.len());
    key.extend_from_slice(&expires_at.to_be_bytes());
    key.push(kind);
    key.extend_from_slice(record_key);
    key
}

/// Splits an expiry-index key into `(expires_at, kind byte, record key)`.
pub(super) fn split_index_key(key: &[u8]) -> Option<(u64, u8, &[u8])> {
    let (exp, rest) = key.split_first_chunk::<8>()?;
    let (&kind, record_key) = rest.split_first()?;
    Some((u64::from_be_bytes(*exp), kind, record_key))
}

/// Seen-logout-jti value: version ‖ fingerprint ‖ u64 BE expires_at.
pub(super) fn encode_logout(fingerprint: &[u8; 32], expires_at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(LOGOUT_VALUE_LEN);
    v.push(LOGOUT_VERSION_V1);
    v.extend_from_slice(fingerprint);
    v.extend_from_slice(&expires_at.to_be_bytes());
    v
}

/// Inverse of [`encode_logout`]: `(fingerprint, expires_at)`.
pub(super) fn decode_logout(bytes: &[u8]) -> Result<([u8; 32], u64), StoreError> {
    let corrupt = || StoreError::Corrupt("malformed seen-logout-jti entry".to_string());
    if bytes.len() != LOGOUT_VALUE_LEN {
        return Err(corrupt());
    }
    let (version, rest) = bytes.split_first().ok_or_else(corrupt)?;
    if *version != LOGOUT_VERSION_V1 {
        return Err(StoreError::Corrupt(format!(
            "unknown seen-logout-jti version {version}"
        )));
    }
    let (fp, exp) = rest.split_first_chunk::<32>().ok_or_else(corrupt)?;
    let exp: [u8; 8] = exp.try_into().map_err(|_| corrupt())?;
    Ok((*fp, u64::from_be_bytes(exp)))
}

/// Opaque list cursor: unpadded base64url of `kind byte ‖ record key`.
pub(super) fn encode_cursor(kind: u8, record_key: &[u8]) -> String {
    let mut raw = Vec::with_capacity(1 + record_key.len());
    raw.push(kind);
    raw.extend_from_slice(record_key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Inverse of [`encode_cursor`]: the position `(kind byte, record key)` a list resumes
/// after. Any unpadded base64url text is a position (in the order of kind byte, then
/// record key bytes), so a cursor that was not handed out still lists what sorts after it,
/// as the API document's pattern for `after` promises; only text that is not base64url
/// (or decodes to nothing) is [`StoreError::Invalid`].
pub(super) fn decode_cursor(cursor: &str) -> Result<(u8, Vec<u8>), StoreError> {
    use base64::engine::{general_purpose::GeneralPurposeConfig, DecodePaddingMode};
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let invalid = || StoreError::Invalid("invalid cursor".to_string());
    let raw = LENIENT.decode(cursor.trim()).map_err(|_| invalid())?;
    let (&kind, key) = raw.split_first().ok_or_else(invalid)?;
    Ok((kind, key.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_index_keys_round_trip() {
        let rk = record_key("https://idp/", "abc").unwrap();
        assert_eq!(split_record_key(&rk), Some(("https://idp/", "abc")));
        let ik = index_key(42, KIND_SID, &rk);
        assert_eq!(split_index_key(&ik), Some((42, KIND_SID, rk.as_slice())));
        assert!(index_key(1, 0, b"") < index_key(256, 0, b""));
        assert!(record_key("i", "").is_err());
        assert!(split_record_key(&[0, 9, b'a']).is_none());
    }

    #[test]
    fn logout_and_cursor_round_trip() {
        let v = encode_logout(&[7; 32], 99);
        assert_eq!(decode_logout(&v).unwrap(), ([7; 32], 99));
        assert!(decode_logout(&v[1..]).is_err());
        let rk = record_key("i", "v").unwrap();
        let c = encode_cursor(KIND_SUB, &rk);
        assert_eq!(decode_cursor(&c).unwrap(), (KIND_SUB, rk));
        assert!(decode_cursor("!!").is_err());
        assert!(decode_cursor("").is_err());
        assert!(
            decode_cursor("A").is_err(),
            "no base64url text has 4n+1 characters"
        );
        // Any other base64url text is a position, trailing bits and all.
        assert_eq!(decode_cursor("AB").unwrap(), (0, vec![]));
        assert_eq!(decode_cursor("_w").unwrap(), (0xff, vec![]));
        assert_eq!(
            decode_cursor(&encode_cursor(KIND_LOGOUT, b"\0\0x"))
                .unwrap()
                .0,
            KIND_LOGOUT
        );
    }
}
