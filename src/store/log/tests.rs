use super::*;
use crate::store::Source;

fn record(kind: Kind, value: &str) -> Record {
    Record {
        kind,
        issuer: "https://idp/".into(),
        value: value.into(),
        revoked_at: 10,
        issued_before: (kind != Kind::Jti).then_some(9),
        expires_at: 100,
        reason: Some("why".into()),
        source: Source::Backchannel,
    }
}

#[test]
fn ops_round_trip_as_readable_json() {
    let ops = vec![
        LogOp::Record(record(Kind::Jti, "j")),
        LogOp::Logout {
            record: record(Kind::Sid, "s"),
            jti: "lj".into(),
            fingerprint: [0xab; 32],
            jti_expires_at: 200,
        },
        LogOp::Unrevoke {
            kind: Kind::Sub,
            issuer: "https://idp/".into(),
            value: "u".into(),
        },
    ];
    let json = serde_json::to_string(&ops).unwrap();
    assert!(json.contains(r#""op":"record""#), "{json}");
    assert!(json.contains(&"ab".repeat(32)), "{json}");
    assert_eq!(decode_ops(json.as_bytes()).unwrap(), ops);
    assert_eq!(ops[1].expires_at(), 200);
    assert_eq!(ops[2].expires_at(), 0);
    let digests = unrevoked_digests(&ops);
    assert_eq!(digests, key_digest(Kind::Sub, "https://idp/", "u"));
    assert_eq!(digests.len(), 32);
    assert_ne!(
        key_digest(Kind::Sub, "a", "bc"),
        key_digest(Kind::Sub, "ab", "c")
    );
    assert!(decode_ops(br#"[{"op":"drop_table"}]"#).is_err());
    assert!(decode_ops(br#"[{"op":"logout","record":{},"jti":"x"}]"#).is_err());
}

#[test]
fn positions_and_stream_ids_round_trip() {
    let p = LogPosition {
        epoch: "5f3a".into(),
        id: "1700000000000-7".parse().unwrap(),
        resync: true,
    };
    assert_eq!(LogPosition::decode(&p.encode()).unwrap(), p);
    assert!(LogPosition::decode(&p.encode()[..5]).is_err());
    assert_eq!(p.id.to_string(), "1700000000000-7");
    assert!("12".parse::<StreamId>().is_err());
    assert!(StreamId { ms: 1, seq: 9 } < StreamId { ms: 2, seq: 0 });
    let outbox = encode_outbox(&[LogOp::Record(record(Kind::Sub, "u"))]).unwrap();
    let e = decode_outbox(3, &outbox).unwrap();
    assert_eq!((e.seq, e.expires_at, e.unrevoked.as_str()), (3, 100, ""));
}

use crate::clock::ManualClock;
use crate::store::{Change, NewRevocation, Outcome};

const T0: u64 = 1_700_000_000;

fn open(dir: &std::path::Path, node: &str) -> (RevocationStore, Arc<LogLink>) {
    let store = RevocationStore::open(&dir.join("store"), 1 << 20, ManualClock::new(T0)).unwrap();
    let link = LogLink::new(node, Duration::from_millis(50));
    store.join_log(link.clone());
    (store, link)
}

fn revoke(value: &str, reason: Option<&str>) -> Change {
    Change::Revoke(NewRevocation {
        kind: Kind::Sub,
        issuer: "https://idp/".into(),
        value: value.into(),
        issued_before: None,
        expires_at: T0 + 100,
        reason: reason.map(str::to_string),
        source: Source::Admin,
    })
}

/// The outbox entries of `store` as the stream would carry them, at stream id `ms`.
async fn to_stream(store: &RevocationStore, node: &str, ms: &mut u64) -> Vec<LogEntry> {
    let mut out = Vec::new();
    for e in store.durable_outbox(0, 100, true).await.unwrap() {
        *ms += 1;
        out.push(LogEntry {
            id: StreamId { ms: *ms, seq: 0 },
            node: node.to_string(),
            store: store.store_id(),
            seq: e.seq,
            ops: decode_ops(e.ops.as_bytes()).unwrap(),
        });
    }
    out
}

fn all(store: &RevocationStore) -> Vec<Record> {
    store.iter_records(None).collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn a_logged_change_waits_in_the_outbox_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, link) = open(dir.path(), "a");
    // Offline: answered at once, queued; the change is durable and in the outbox.
    let (outcome, ack) = store.apply_acked(&revoke("u", Some("why"))).await.unwrap();
    assert!(matches!(outcome, Outcome::Revoked(_)));
    assert_eq!(ack, LogAck::Queued);
    assert_eq!(store.outbox_len(), 1);
    let pending = store.durable_outbox(0, 10, false).await.unwrap();
    assert_eq!(pending.len(), 1);
    let ops = decode_ops(pending[0].ops.as_bytes()).unwrap();
    match &ops[..] {
        [LogOp::Record(r)] => {
            assert_eq!(
                (r.revoked_at, r.issued_before, r.reason.as_deref()),
                (T0, Some(T0), Some("why"))
            );
        }
        other => panic!("{other:?}"),
    }
    // Online, confirmed: appended.
    link.set_online(true);
    let confirm = {
        let link = link.clone();
        tokio::spawn(async move {
            link.woken().await;
            link.confirm(2);
        })
    };
    let (_, ack) = store
        .apply_acked(&Change::Unrevoke {
            kind: Kind::Jti,
            issuer: "https://idp/".into(),
            value: "never-here".into(),
        })
        .await
        .unwrap();
    confirm.await.unwrap();
    assert_eq!(
        ack,
        LogAck::Appended,
        "an unrevoke of nothing is logged too"
    );
    // It survives a restart, then leaves the outbox when it comes back.
    drop(store);
    let (store, _) = open(dir.path(), "a");
    assert_eq!(store.outbox_len(), 2);
    let mut ms = 0;
    let back = to_stream(&store, "a", &mut ms).await;
    let position = LogPosition {
        epoch: "e".into(),
        id: back.last().unwrap().id,
        resync: false,
    };
    store.apply_log(&back, &position, None).unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.outbox_len(), 0);
    assert_eq!(store.log_position().unwrap(), Some(position));
    assert_eq!(store.durable_outbox(0, 10, true).await.unwrap(), vec![]);
    // Another node's entry with the same sequence is not ours.
    let mut foreign = back.clone();
    foreign[0].node = "b".into();
    store.apply_all(&[revoke("v", None)]).await.unwrap();
    store
        .apply_log(&foreign[..1], &store.log_position().unwrap().unwrap(), None)
        .unwrap();
    assert_eq!(store.outbox_len(), 1);
}

#[tokio::test]
async fn the_node_that_applied_its_changes_early_ends_like_the_others() {
    // A accepts changes and applies them at once; B only reads the stream; in the
    // stream, another node's changes to the same key come between.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = open(da.path(), "a");
    let (b, _) = open(db.path(), "b");
    let other = |revoked_at: u64, reason: Option<&str>| LogEntry {
        id: StreamId::ZERO,
        node: "c".into(),
        store: 9,
        seq: 1,
        ops: vec![LogOp::Record(Record {
            kind: Kind::Sub,
            issuer: "https://idp/".into(),
            value: "k".into(),
            revoked_at,
            issued_before: Some(revoked_at - 50),
            expires_at: T0 + 500,
            reason: reason.map(str::to_string),
            source: Source::Backchannel,
        })],
    };
    a.apply_all(&[revoke("k", None)]).await.unwrap();
    let mut ms = 0;
    let own = to_stream(&a, "a", &mut ms).await;
    let mut stream = vec![
        other(T0 - 10, Some("older, with a reason")),
        other(T0, Some("same second")),
    ];
    stream.extend(own);
    stream.push(LogEntry {
        ops: vec![LogOp::Unrevoke {
            kind: Kind::Jti,
            issuer: "https://idp/".into(),
            value: "nothing".into(),
        }],
        ..other(T0, None)
    });
    for (i, e) in stream.iter_mut().enumerate() {
        e.id = StreamId {
            ms: 100 + i as u64,
            seq: 0,
        };
    }
    let p = LogPosition {
        epoch: "e".into(),
        id: stream.last().unwrap().id,
        resync: false,
    };
    // Entry by entry on A, all at once on B: the same records.
    for e in &stream {
        a.apply_log(std::slice::from_ref(e), &p, None).unwrap();
    }
    b.apply_log(&stream, &p, None).unwrap();
    assert_eq!(all(&a), all(&b));
    let r = &all(&a)[0];
    assert_eq!(r.revoked_at, T0);
    assert_eq!(r.issued_before, Some(T0));
    assert_eq!(r.expires_at, T0 + 500);
    assert_eq!(a.outbox_len(), 0);
}

#[tokio::test]
async fn a_logout_from_the_log_is_remembered_even_if_its_jti_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), "a");
    let logout = |fp: u8, sid: &str| LogEntry {
        id: StreamId {
            ms: fp as u64,
            seq: 0,
        },
        node: "b".into(),
        store: 1,
        seq: fp as u64,
        ops: vec![LogOp::Logout {
            record: Record {
                kind: Kind::Sid,
                issuer: "https://idp/".into(),
                value: sid.into(),
                revoked_at: T0,
                issued_before: Some(T0),
                expires_at: T0 + 100,
                reason: None,
                source: Source::Backchannel,
            },
            jti: "lt".into(),
            fingerprint: [fp; 32],
            jti_expires_at: T0 + 60,
        }],
    };
    let p = |ms| LogPosition {
        epoch: "e".into(),
        id: StreamId { ms, seq: 0 },
        resync: false,
    };
    store.apply_log(&[logout(1, "s1")], &p(1), None).unwrap();
    // Another node accepted another token with the same jti: its session is revoked
    // here too (that node answered 200), and the jti stays remembered.
    store.apply_log(&[logout(2, "s2")], &p(2), None).unwrap();
    assert_eq!(store.counts().sid, 2);
    // A third token reusing the jti, arriving here: a replay.
    let local = crate::store::Logout {
        revocation: NewRevocation {
            kind: Kind::Sid,
            issuer: "https://idp/".into(),
            value: "s3".into(),
            issued_before: Some(T0),
            expires_at: T0 + 100,
            reason: None,
            source: Source::Backchannel,
        },
        jti: "lt".into(),
        fingerprint: [3; 32],
        jti_expires_at: T0 + 60,
    };
    assert_eq!(
        store.record_logout(local).await.unwrap(),
        crate::store::SeenLogout::Conflict
    );
    assert_eq!(store.counts().sid, 2);
}

#[tokio::test]
async fn a_resync_removes_what_the_stream_no_longer_holds_but_keeps_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), "a");
    // Records as they were before this node's position was trimmed away ...
    let entry = |ms: u64, value: &str| LogEntry {
        id: StreamId { ms, seq: 0 },
        node: "b".into(),
        store: 1,
        seq: ms,
        ops: vec![LogOp::Record(Record {
            kind: Kind::Jti,
            issuer: "https://idp/".into(),
            value: value.into(),
            revoked_at: T0,
            issued_before: None,
            expires_at: T0 + 100,
            reason: None,
            source: Source::Admin,
        })],
    };
    let p = |ms| LogPosition {
        epoch: "e".into(),
        id: StreamId { ms, seq: 0 },
        resync: false,
    };
    store
        .apply_log(
            &[entry(1, "kept"), entry(2, "unrevoked-elsewhere")],
            &p(2),
            None,
        )
        .unwrap();
    // ... and a change accepted here, not yet appended.
    store.apply_all(&[revoke("mine", None)]).await.unwrap();
    // The re-read of what the stream holds now: only "kept".
    let mut seen = HashSet::new();
    store
        .apply_log(&[entry(10, "kept")], &p(10), Some(&mut seen))
        .unwrap();
    assert_eq!(store.prune_unseen(&seen).await.unwrap(), 1);
    let left: Vec<String> = all(&store).into_iter().map(|r| r.value).collect();
    assert_eq!(left, vec!["kept".to_string(), "mine".to_string()]);
}
