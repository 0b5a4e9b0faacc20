//! The stream entry format (version 1). One entry is one batch of changes accepted by one
//! node (at most [`MAX_OPS_PER_ENTRY`](crate::store::MAX_OPS_PER_ENTRY) ops); its fields:
//!
//! | field | value |
//! |---|---|
//! | `v` | `1` |
//! | `node` | the node id of the node that appended it |
//! | `store` | that node's store id, 16 hex digits |
//! | `seq` | its outbox sequence on that node (`0`: a republished snapshot or a carried-forward record, not from the outbox) |
//! | `exp` | the latest `expires_at` of its ops, seconds (`0`: only unrevokes) — what trimming reads |
//! | `ops` | the changes, a JSON array of [`LogOp`] (`{"op":"record",…}`, `{"op":"logout",…}`, `{"op":"unrevoke",…}`; instants in seconds) |
//! | `u` | space-separated digests of the keys it unrevokes (absent when none) — what the carry-forward check reads |
//!
//! Readable with `redis-cli XRANGE revgate:revocations - +`.

use std::collections::HashMap;

use redis::Value;

use crate::store::{decode_ops, LogEntry, LogOp, OutboxEntry, StreamId};

/// The entry format version this build writes and reads.
pub const ENTRY_VERSION: &str = "1";

/// The XADD field/value pairs of an entry.
pub fn fields(
    node: &str,
    store: u64,
    seq: u64,
    expires_at: u64,
    ops: &str,
    unrevoked: &str,
) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("v", ENTRY_VERSION.to_string()),
        ("node", node.to_string()),
        ("store", format!("{store:016x}")),
        ("seq", seq.to_string()),
        ("exp", expires_at.to_string()),
        ("ops", ops.to_string()),
    ];
    if !unrevoked.is_empty() {
        f.push(("u", unrevoked.to_string()));
    }
    f
}

/// The fields of an outbox entry of this node.
pub fn outbox_fields(node: &str, store: u64, e: &OutboxEntry) -> Vec<(&'static str, String)> {
    fields(node, store, e.seq, e.expires_at, &e.ops, &e.unrevoked)
}

/// The fields of an entry that is not from the outbox (`seq` 0): a snapshot or carried
/// records.
pub fn snapshot_fields(node: &str, store: u64, ops: &[LogOp]) -> Vec<(&'static str, String)> {
    let json = serde_json::to_string(ops).expect("log ops serialise");
    let exp = ops.iter().map(LogOp::expires_at).max().unwrap_or(0);
    fields(
        node,
        store,
        0,
        exp,
        &json,
        &crate::store::unrevoked_digests(ops),
    )
}

fn text<'a>(map: &'a HashMap<String, Value>, field: &str) -> Result<&'a [u8], String> {
    match map.get(field) {
        Some(Value::BulkString(b)) => Ok(b),
        Some(Value::SimpleString(s)) => Ok(s.as_bytes()),
        Some(_) => Err(format!("field {field} is not a string")),
        None => Err(format!("field {field} is missing")),
    }
}

fn number(map: &HashMap<String, Value>, field: &str, radix: u32) -> Result<u64, String> {
    let t = text(map, field)?;
    std::str::from_utf8(t)
        .ok()
        .and_then(|t| u64::from_str_radix(t, radix).ok())
        .ok_or_else(|| format!("field {field} is not a number"))
}

/// Decodes one entry read from the stream. An entry of another version, or one that is
/// not an entry at all, is an error: the follower stops there rather than skip a change.
pub fn decode(id: &str, map: &HashMap<String, Value>) -> Result<LogEntry, String> {
    let id: StreamId = id.parse()?;
    let version = text(map, "v")?;
    if version != ENTRY_VERSION.as_bytes() {
        return Err(format!(
            "entry format version {:?} (this gateway reads version {ENTRY_VERSION}: upgrade it)",
            String::from_utf8_lossy(version)
        ));
    }
    let node = std::str::from_utf8(text(map, "node")?)
        .map_err(|_| "field node is not UTF-8".to_string())?
        .to_string();
    Ok(LogEntry {
        id,
        node,
        store: number(map, "store", 16)?,
        seq: number(map, "seq", 10)?,
        ops: decode_ops(text(map, "ops")?)?,
    })
}

/// The `exp` field of an entry (`None` when it has none that reads: such an entry is never
/// taken for dead).
pub fn expires_at(map: &HashMap<String, Value>) -> Option<u64> {
    number(map, "exp", 10).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Kind, Record, Source};

    fn as_map(fields: &[(&'static str, String)]) -> HashMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let ops = vec![
            LogOp::Record(Record {
                kind: Kind::Sub,
                issuer: "https://idp/".into(),
                value: "alice".into(),
                revoked_at: 1_700_000_000,
                issued_before: Some(1_700_000_000),
                expires_at: 1_700_090_000,
                reason: None,
                source: Source::Admin,
            }),
            LogOp::Unrevoke {
                kind: Kind::Jti,
                issuer: "https://idp/".into(),
                value: "j".into(),
            },
        ];
        let fields = snapshot_fields("gw-1:8080", 0xabc, &ops);
        let map = as_map(&fields);
        let e = decode("1700000000123-4", &map).unwrap();
        assert_eq!(
            e.id,
            StreamId {
                ms: 1_700_000_000_123,
                seq: 4
            }
        );
        assert_eq!((e.node.as_str(), e.store, e.seq), ("gw-1:8080", 0xabc, 0));
        assert_eq!(e.ops, ops);
        assert_eq!(expires_at(&map), Some(1_700_090_000));
        assert!(map.contains_key("u"));
    }

    #[test]
    fn anything_else_is_refused() {
        let good = as_map(&snapshot_fields("n", 1, &[]));
        let mut newer = good.clone();
        newer.insert("v".into(), Value::BulkString(b"2".to_vec()));
        assert!(decode("1-0", &newer).unwrap_err().contains("upgrade"));
        let mut broken = good.clone();
        broken.insert("ops".into(), Value::BulkString(b"{not json".to_vec()));
        assert!(decode("1-0", &broken).is_err());
        let mut no_node = good.clone();
        no_node.remove("node");
        assert!(decode("1-0", &no_node).is_err());
        assert!(decode("not-an-id", &good).is_err());
        let mut bad_exp = good;
        bad_exp.insert("exp".into(), Value::BulkString(b"soon".to_vec()));
        assert_eq!(expires_at(&bad_exp), None);
    }
}
