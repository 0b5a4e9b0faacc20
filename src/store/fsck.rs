//! `check-store`: records against the expiry index, and the repair of what is off.

use super::{abort, keys, stored_expiry, RevocationStore, StoreError};

/// Result of `check-store`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsistencyReport {
    /// Records in the jti/sid/sub/logout_jti trees.
    pub records: u64,
    /// Entries in the expiry index.
    pub index_entries: u64,
    /// Records whose index entry is missing.
    pub records_without_index: u64,
    /// Index entries whose record is missing or has another expiry.
    pub index_without_record: u64,
    /// Whether orphans were removed (with `repair`).
    pub repaired: bool,
}

impl RevocationStore {
    /// Offline consistency check of records against the expiry index: every record
    /// (jti/sid/sub/seen logout jti) must have exactly its index entry and every index
    /// entry must point at a record with that expiry. With `repair`, orphan index entries
    /// are removed and missing ones re-created (never losing a revocation), then flushed.
    pub fn check_consistency(&self, repair: bool) -> Result<ConsistencyReport, StoreError> {
        let h = self.handles()?;
        let t = &h.trees;
        let mut report = ConsistencyReport::default();
        let mut missing: Vec<(u8, sled::IVec)> = Vec::new();
        for (kind, tree) in h.trees.record_trees() {
            for entry in tree.iter() {
                let (key, value) = entry?;
                report.records += 1;
                let ikey = keys::index_key(stored_expiry(kind, &value)?, kind, &key);
                if !t.expiry.contains_key(&ikey)? {
                    report.records_without_index += 1;
                    missing.push((kind, key));
                }
            }
        }
        let mut orphans: Vec<sled::IVec> = Vec::new();
        for entry in t.expiry.iter().keys() {
            let ikey = entry?;
            report.index_entries += 1;
            if !self.index_entry_valid(&ikey)? {
                report.index_without_record += 1;
                orphans.push(ikey);
            }
        }
        if repair && (!missing.is_empty() || !orphans.is_empty()) {
            let mut fixed = 0u64;
            for (kind, key) in &missing {
                // Re-check in a transaction: the record may have changed meanwhile.
                let created = t
                    .transact(|tx| {
                        let Some(value) =
                            tx.entries(*kind).map(|r| r.get(key)).transpose()?.flatten()
                        else {
                            return Ok(false);
                        };
                        let exp = match stored_expiry(*kind, &value) {
                            Ok(e) => e,
                            Err(e) => return abort(e),
                        };
                        let ikey = keys::index_key(exp, *kind, key);
                        if tx.expiry.get(&ikey)?.is_some() {
                            return Ok(false);
                        }
                        tx.expiry.insert(ikey, sled::IVec::default())?;
                        Ok(true)
                    })
                    .map_err(|e| self.failed(e))?;
                fixed += u64::from(created);
            }
            for ikey in &orphans {
                let removed = t
                    .transact(|tx| {
                        let valid = match keys::split_index_key(ikey) {
                            // Not a well-formed index key: nothing can refer to it.
                            None => false,
                            Some((exp, kind, rkey)) => {
                                match tx.entries(kind).map(|r| r.get(rkey)).transpose()?.flatten() {
                                    None => false,
                                    Some(v) => {
                                        matches!(stored_expiry(kind, &v), Ok(e) if e == exp)
                                    }
                                }
                            }
                        };
                        Ok(!valid && tx.expiry.remove(ikey.as_ref())?.is_some())
                    })
                    .map_err(|e| self.failed(e))?;
                fixed += u64::from(removed);
            }
            if fixed > 0 {
                self.wrote();
                self.flush_blocking()?;
                report.repaired = true;
                tracing::info!(
                    index_created = report.records_without_index,
                    index_removed = report.index_without_record,
                    "store repaired"
                );
            }
        }
        Ok(report)
    }

    /// Whether an expiry-index key points at a record with that expiry.
    fn index_entry_valid(&self, ikey: &[u8]) -> Result<bool, StoreError> {
        let h = self.handles()?;
        let Some((exp, kind, rkey)) = keys::split_index_key(ikey) else {
            return Ok(false);
        };
        let Some(tree) = h.trees.record_tree(kind) else {
            return Ok(false);
        };
        match tree.get(rkey)? {
            None => Ok(false),
            Some(value) => Ok(stored_expiry(kind, &value)? == exp),
        }
    }
}
