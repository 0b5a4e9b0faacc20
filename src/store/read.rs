//! Reads: one record, the hot-path match, pages and the full walk an export streams.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{keys, record, Counts, Kind, Record, RevocationStore, StoreError};

/// Most records one [`RevocationStore::list`] page returns, whatever the caller asks.
pub const MAX_LIST_LIMIT: usize = 10_000;

impl RevocationStore {
    /// Every record (of one kind, or all in key order), read lazily from the trees: an
    /// export never holds the store in memory.
    pub fn iter_records(
        &self,
        kind: Option<Kind>,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + Send + 'static {
        let kinds: Vec<Kind> = match kind {
            Some(k) => vec![k],
            None => Kind::ALL.to_vec(),
        };
        // The stream keeps this database open until it ends (a reopen waits for it).
        let (h, failure) = match self.handles() {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(Err(e))),
        };
        failure.into_iter().chain(h.into_iter().flat_map(move |h| {
            kinds.clone().into_iter().flat_map(move |k| {
                h.trees.tree(k).iter().map(move |entry| {
                    let (key, value) = entry?;
                    let (issuer, val) = keys::split_stored_key(&key)?;
                    record::decode_stored(&value)?.into_record(k, issuer, val)
                })
            })
        }))
    }

    /// The record of that key, if any (expired-but-unswept records included).
    pub fn get(&self, kind: Kind, issuer: &str, value: &str) -> Result<Option<Record>, StoreError> {
        let h = self.handles()?;
        let key = match keys::record_key(issuer, value) {
            Ok(key) => key,
            Err(StoreError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match h.trees.tree(kind).get(&key)? {
            None => Ok(None),
            Some(bytes) => record::decode_stored(&bytes)?
                .into_record(kind, issuer, value)
                .map(Some),
        }
    }

    /// Hot path: which revocation (if any) matches an access token with these claims.
    /// jti matches on `(issuer, jti)`; sid/sub match when `iat <= issued_before`.
    /// Records whose `expires_at` has passed no longer match.
    pub fn find_match(
        &self,
        issuer: &str,
        jti: &str,
        sid: Option<&str>,
        sub: Option<&str>,
        iat: u64,
    ) -> Result<Option<Kind>, StoreError> {
        let h = self.handles()?;
        if issuer.len() > keys::MAX_ISSUER_BYTES {
            return Ok(None); // cannot have been stored
        }
        let now = self.inner.clock.now();
        let longest = jti
            .len()
            .max(sid.map_or(0, str::len))
            .max(sub.map_or(0, str::len))
            .min(keys::MAX_VALUE_BYTES);
        // One buffer for the three keys: issuer prefix once, value swapped in.
        let mut key = Vec::with_capacity(2 + issuer.len() + longest);
        keys::push_issuer(&mut key, issuer);
        let prefix = key.len();
        for (kind, value) in [(Kind::Jti, Some(jti)), (Kind::Sid, sid), (Kind::Sub, sub)] {
            let Some(value) = value else { continue };
            if value.is_empty() || value.len() > keys::MAX_VALUE_BYTES {
                continue; // never stored
            }
            key.truncate(prefix);
            key.extend_from_slice(value.as_bytes());
            if !self.inner.presence.may_contain(keys::kind_byte(kind), &key) {
                continue;
            }
            let Some(bytes) = h.trees.tree(kind).get(&key)? else {
                continue;
            };
            let head = record::decode_head(&bytes)?;
            if head.expires_at <= now {
                continue;
            }
            let matched = match kind {
                Kind::Jti => true,
                // A sid/sub record always has a cutoff; without one, fail closed.
                Kind::Sid | Kind::Sub => head.issued_before.is_none_or(|cutoff| iat <= cutoff),
            };
            if matched {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    /// Records in key order (kind, issuer, value), optionally of one kind, starting after
    /// the opaque `after` cursor; returns at most `limit` and the cursor of the next page.
    /// `limit` is clamped to `1..=`[`MAX_LIST_LIMIT`]; `next` is `None` on the last page.
    pub fn list(
        &self,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<String>), StoreError> {
        let h = self.handles()?;
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        let start = after.map(keys::decode_cursor).transpose()?;
        let one;
        let kinds: &[Kind] = match kind {
            Some(k) => {
                one = [k];
                &one
            }
            None => &Kind::ALL,
        };
        let mut items = Vec::with_capacity(limit.min(256));
        let mut last: Option<(u8, sled::IVec)> = None;
        let mut more = false;
        'kinds: for &k in kinds {
            let iter = match &start {
                Some((ck, _)) if *ck > keys::kind_byte(k) => continue,
                Some((ck, ckey)) if *ck == keys::kind_byte(k) => h
                    .trees
                    .tree(k)
                    .range::<&[u8], _>((Bound::Excluded(ckey.as_slice()), Bound::Unbounded)),
                _ => h.trees.tree(k).iter(),
            };
            for entry in iter {
                let (key, value) = entry?;
                if items.len() == limit {
                    more = true;
                    break 'kinds;
                }
                let (issuer, val) = keys::split_stored_key(&key)?;
                items.push(record::decode_stored(&value)?.into_record(k, issuer, val)?);
                last = Some((keys::kind_byte(k), key));
            }
        }
        let next = match (more, last) {
            (true, Some((kb, key))) => Some(keys::encode_cursor(kb, &key)),
            _ => None,
        };
        Ok((items, next))
    }

    /// Entries by kind.
    pub fn counts(&self) -> Counts {
        let c = &self.inner.counts;
        Counts {
            jti: c[keys::KIND_JTI as usize].load(Ordering::Relaxed),
            sid: c[keys::KIND_SID as usize].load(Ordering::Relaxed),
            sub: c[keys::KIND_SUB as usize].load(Ordering::Relaxed),
        }
    }
}
