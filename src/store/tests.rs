//! Unit tests of the store: real sled databases in temporary directories, time from a
//! [`ManualClock`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::clock::{Clock, ManualClock};

const ISS: &str = "https://idp.example.com/";
const T0: u64 = 1_700_000_000;

/// The store directory inside a test's temporary directory (its mark goes beside it,
/// still inside the temporary directory).
fn store_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("store")
}

fn open_at(dir: &std::path::Path, clock: Arc<ManualClock>) -> RevocationStore {
    RevocationStore::open(&store_path(dir), 1 << 20, clock).expect("open store")
}

fn setup() -> (tempfile::TempDir, Arc<ManualClock>, RevocationStore) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_at(dir.path(), clock.clone());
    (dir, clock, store)
}

fn rev(kind: Kind, value: &str, issued_before: Option<u64>, expires_at: u64) -> NewRevocation {
    NewRevocation {
        kind,
        issuer: ISS.to_string(),
        value: value.to_string(),
        issued_before,
        expires_at,
        reason: None,
        source: Source::Admin,
    }
}

/// A back-channel logout recording `revocation` and the logout token's `jti`.
fn logout(revocation: NewRevocation, jti: &str, fingerprint: [u8; 32], until: u64) -> Logout {
    Logout {
        revocation,
        jti: jti.to_string(),
        fingerprint,
        jti_expires_at: until,
    }
}

fn revocations(revs: Vec<NewRevocation>) -> Vec<Change> {
    revs.into_iter().map(Change::Revoke).collect()
}

fn index_len(store: &RevocationStore) -> usize {
    store.raw_tree("expiry").len()
}

#[tokio::test]
async fn revoke_then_find_match_each_kind() {
    let (_dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "j1", None, T0 + 100))
        .await
        .unwrap();
    store
        .revoke(rev(Kind::Sid, "s1", Some(T0 - 10), T0 + 100))
        .await
        .unwrap();
    store
        .revoke(rev(Kind::Sub, "u1", Some(T0 - 10), T0 + 100))
        .await
        .unwrap();

    let m = |jti, sid, sub, iat| store.find_match(ISS, jti, sid, sub, iat).unwrap();
    assert_eq!(m("j1", None, None, T0), Some(Kind::Jti));
    assert_eq!(m("other", None, None, T0), None);
    // jti is scoped to the issuer.
    assert_eq!(
        store
            .find_match("https://other/", "j1", None, None, T0)
            .unwrap(),
        None
    );

    // sid: iat <= issued_before matches, later iat does not.
    assert_eq!(m("x", Some("s1"), None, T0 - 10), Some(Kind::Sid));
    assert_eq!(m("x", Some("s1"), None, T0 - 11), Some(Kind::Sid));
    assert_eq!(m("x", Some("s1"), None, T0 - 9), None);
    // sub: same cutoff rule.
    assert_eq!(m("x", None, Some("u1"), T0 - 10), Some(Kind::Sub));
    assert_eq!(m("x", None, Some("u1"), T0), None);
    // First matching kind wins, in order jti, sid, sub.
    assert_eq!(m("j1", Some("s1"), Some("u1"), T0 - 20), Some(Kind::Jti));
    assert_eq!(m("x", Some("s1"), Some("u1"), T0 - 20), Some(Kind::Sid));
    assert_eq!(m("x", Some("nope"), Some("u1"), T0 - 20), Some(Kind::Sub));
    // Empty and oversized values never match.
    assert_eq!(m("", None, None, T0), None);
    let huge = "a".repeat(MAX_VALUE_BYTES + 1);
    assert_eq!(m(&huge, None, None, T0), None);
}

#[tokio::test]
async fn expired_record_no_longer_matches() {
    let (_dir, clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "j", None, T0 + 10))
        .await
        .unwrap();
    clock.set(T0 + 9);
    assert_eq!(
        store.find_match(ISS, "j", None, None, T0).unwrap(),
        Some(Kind::Jti)
    );
    clock.set(T0 + 10);
    assert_eq!(store.find_match(ISS, "j", None, None, T0).unwrap(), None);
    // Still there until swept.
    assert!(store.get(Kind::Jti, ISS, "j").unwrap().is_some());
}

#[tokio::test]
async fn merge_keeps_later_cutoff_and_expiry_with_one_index_entry() {
    let (_dir, clock, store) = setup();
    let mut first = rev(Kind::Sid, "s", Some(T0 - 100), T0 + 1_000);
    first.reason = Some("first".into());
    let r1 = store.revoke(first).await.unwrap();
    assert_eq!(r1.revoked_at, T0);
    assert_eq!(r1.issued_before, Some(T0 - 100));

    clock.advance(5);
    // Later cutoff, earlier expiry, no reason, other source.
    let mut second = rev(Kind::Sid, "s", Some(T0 - 50), T0 + 500);
    second.source = Source::Backchannel;
    let r2 = store.revoke(second).await.unwrap();
    assert_eq!(r2.issued_before, Some(T0 - 50));
    assert_eq!(r2.expires_at, T0 + 1_000);
    assert_eq!(r2.revoked_at, T0 + 5);
    assert_eq!(r2.reason.as_deref(), Some("first"));
    assert_eq!(r2.source, Source::Backchannel);
    assert_eq!(index_len(&store), 1);

    // Earlier cutoff, later expiry, new reason.
    let mut third = rev(Kind::Sid, "s", Some(T0 - 200), T0 + 2_000);
    third.reason = Some("third".into());
    let r3 = store.revoke(third).await.unwrap();
    assert_eq!(r3.issued_before, Some(T0 - 50));
    assert_eq!(r3.expires_at, T0 + 2_000);
    assert_eq!(r3.reason.as_deref(), Some("third"));
    assert_eq!(index_len(&store), 1);
    assert_eq!(store.get(Kind::Sid, ISS, "s").unwrap(), Some(r3));
    assert_eq!(store.counts().sid, 1);
    let report = store.check_consistency(false).unwrap();
    assert_eq!(
        report.index_without_record + report.records_without_index,
        0
    );
}

#[tokio::test]
async fn revoke_normalises_cutoff_and_rejects_bad_keys() {
    let (_dir, _clock, store) = setup();
    let r = store
        .revoke(rev(Kind::Jti, "j", Some(T0), T0 + 10))
        .await
        .unwrap();
    assert_eq!(r.issued_before, None);
    let r = store
        .revoke(rev(Kind::Sub, "u", None, T0 + 10))
        .await
        .unwrap();
    assert_eq!(r.issued_before, Some(T0));
    assert!(matches!(
        store.revoke(rev(Kind::Jti, "", None, T0 + 10)).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn unrevoke_removes_record_and_index() {
    let (_dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Sub, "u", Some(T0), T0 + 100))
        .await
        .unwrap();
    assert_eq!(index_len(&store), 1);
    assert!(store.unrevoke(Kind::Sub, ISS, "u").await.unwrap());
    assert_eq!(index_len(&store), 0);
    assert!(store.get(Kind::Sub, ISS, "u").unwrap().is_none());
    assert_eq!(
        store.find_match(ISS, "x", None, Some("u"), T0).unwrap(),
        None
    );
    assert!(!store.unrevoke(Kind::Sub, ISS, "u").await.unwrap());
    // Same value under another kind is untouched by unrevoke of this one.
    assert!(!store.unrevoke(Kind::Jti, ISS, "u").await.unwrap());
    assert_eq!(store.counts(), Counts::default());
}

#[tokio::test]
async fn list_paginates_across_kinds() {
    let (_dir, _clock, store) = setup();
    let revs = vec![
        rev(Kind::Sub, "u1", None, T0 + 10),
        rev(Kind::Jti, "j2", None, T0 + 10),
        rev(Kind::Jti, "j1", None, T0 + 10),
        rev(Kind::Sid, "s1", None, T0 + 10),
        rev(Kind::Sub, "u2", None, T0 + 10),
    ];
    store.apply_all(&revocations(revs)).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let (items, next) = store.list(None, cursor.as_deref(), 2).unwrap();
        assert!(items.len() <= 2);
        pages += 1;
        seen.extend(items.into_iter().map(|r| (r.kind, r.value)));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected = [
        (Kind::Jti, "j1"),
        (Kind::Jti, "j2"),
        (Kind::Sid, "s1"),
        (Kind::Sub, "u1"),
        (Kind::Sub, "u2"),
    ];
    let expected: Vec<_> = expected.iter().map(|(k, v)| (*k, v.to_string())).collect();
    assert_eq!(seen, expected);

    // Exactly `limit` items left: no next cursor.
    let (all, next) = store.list(None, None, 5).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(next, None);

    // One kind only; a cursor from another kind's page still works.
    let (subs, next) = store.list(Some(Kind::Sub), None, 10).unwrap();
    assert_eq!(subs.len(), 2);
    assert!(next.is_none());
    let (first, c) = store.list(None, None, 1).unwrap();
    assert_eq!(first[0].value, "j1");
    let (sids, _) = store.list(Some(Kind::Sid), c.as_deref(), 10).unwrap();
    assert_eq!(sids.len(), 1);

    // Logout jtis are not listed (this logout's revocation merges into s1).
    let seen = store
        .record_logout(logout(
            rev(Kind::Sid, "s1", None, T0 + 10),
            "lj",
            [1; 32],
            T0 + 10,
        ))
        .await
        .unwrap();
    assert_eq!(seen, SeenLogout::New);
    assert_eq!(store.list(None, None, 100).unwrap().0.len(), 5);

    assert!(matches!(
        store.list(None, Some("not a cursor!"), 2),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.list(None, Some("A"), 2),
        Err(StoreError::Invalid(_))
    ));
    // Any other base64url text is a position in (kind byte, record key) order, handed out
    // or not (the admin API document's `after`): kind byte 7 sorts after every kind ...
    let (items, next) = store.list(None, Some("BwAA"), 2).unwrap();
    assert!(items.is_empty() && next.is_none());
    // ... and kind jti with the key bytes 0, 5, 'a' before every jti record of ISS.
    let from_start = store.list(None, None, 2).unwrap();
    let from_there = store.list(None, Some("AAAFYQ"), 2).unwrap();
    assert_eq!(
        from_there.0.iter().map(|r| &r.value).collect::<Vec<_>>(),
        from_start.0.iter().map(|r| &r.value).collect::<Vec<_>>()
    );
    assert_eq!(from_there.1, from_start.1);
}

#[tokio::test]
async fn counts_follow_revoke_unrevoke_sweep_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "j1", None, T0 + 10))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Jti, "j2", None, T0 + 1_000))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Jti, "j2", None, T0 + 2_000))
            .await
            .unwrap(); // merge
        store
            .revoke(rev(Kind::Sid, "s1", None, T0 + 1_000))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Sub, "u1", None, T0 + 1_000))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Sub, "u2", None, T0 + 1_000))
            .await
            .unwrap();
        assert_eq!(
            store.counts(),
            Counts {
                jti: 2,
                sid: 1,
                sub: 2
            }
        );
        assert!(store.unrevoke(Kind::Sub, ISS, "u2").await.unwrap());
        assert_eq!(
            store.counts(),
            Counts {
                jti: 2,
                sid: 1,
                sub: 1
            }
        );
        let report = store.sweep_due(T0 + 11, 100).await.unwrap();
        assert_eq!(report.purged, 1);
        assert_eq!(
            store.counts(),
            Counts {
                jti: 1,
                sid: 1,
                sub: 1
            }
        );
        assert_eq!(store.sweep_totals(), (1, 1));
    }
    let store = open_at(dir.path(), clock);
    assert_eq!(
        store.counts(),
        Counts {
            jti: 1,
            sid: 1,
            sub: 1
        }
    );
    let last = store.last_sweep().expect("report survives restart");
    assert_eq!(last.at, T0 + 11);
    assert_eq!(last.purged, 1);
}

#[tokio::test]
async fn sweep_never_purges_early() {
    let (_dir, clock, store) = setup();
    let exp = T0 + 100;
    store.revoke(rev(Kind::Jti, "j", None, exp)).await.unwrap();
    store
        .revoke(rev(Kind::Sid, "s", Some(T0), exp))
        .await
        .unwrap();
    // A logout whose revocation merges into s, its jti kept until the same instant.
    store
        .record_logout(logout(
            rev(Kind::Sid, "s", Some(T0), exp),
            "lj",
            [2; 32],
            exp,
        ))
        .await
        .unwrap();

    for now in [T0, exp - 1, exp] {
        clock.set(now);
        let report = store.sweep_due(clock.now(), 1).await.unwrap();
        assert_eq!(report.purged + report.purged_logout_jtis, 0, "at {now}");
        assert_eq!(store.counts().jti, 1);
        assert!(store.get(Kind::Jti, ISS, "j").unwrap().is_some());
    }
    clock.set(exp + 1);
    // Batch of 1: several batches in one sweep.
    let report = store.sweep_due(clock.now(), 1).await.unwrap();
    assert_eq!(report.purged, 2);
    assert_eq!(report.purged_logout_jtis, 1);
    assert_eq!(store.counts(), Counts::default());
    assert_eq!(index_len(&store), 0);
    assert_eq!(store.raw_tree("logout_jti").len(), 0);
    assert_eq!(store.last_sweep().unwrap().purged, 2);
    let (runs, purged) = store.sweep_totals();
    assert_eq!((runs, purged), (4, 3));
}

#[tokio::test]
async fn re_revoke_after_scan_keeps_the_record() {
    let (_dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "j", None, T0 + 10))
        .await
        .unwrap();
    // Simulate the race: the sweeper scanned the old index key, then a re-revoke moved
    // the expiry. Reproduce the state the sweep transaction then sees by re-inserting
    // the stale index key next to the record's new one.
    let stale = keys::index_key(
        T0 + 10,
        keys::KIND_JTI,
        &keys::record_key(ISS, "j").unwrap(),
    );
    store
        .revoke(rev(Kind::Jti, "j", None, T0 + 1_000))
        .await
        .unwrap();
    store
        .raw_tree("expiry")
        .insert(stale.as_slice(), &[][..])
        .unwrap();
    assert_eq!(index_len(&store), 2);

    let report = store.sweep_due(T0 + 11, 10).await.unwrap();
    assert_eq!(report.purged, 0);
    assert_eq!(
        store.get(Kind::Jti, ISS, "j").unwrap().unwrap().expires_at,
        T0 + 1_000
    );
    assert_eq!(index_len(&store), 1, "only the stale index key was removed");
    assert_eq!(store.counts().jti, 1);
    let report = store.check_consistency(false).unwrap();
    assert_eq!(
        report.records_without_index + report.index_without_record,
        0
    );

    // A re-revoke extending a record whose old expiry passed (not yet swept) also wins.
    store
        .revoke(rev(Kind::Sid, "s", None, T0 + 20))
        .await
        .unwrap();
    store
        .revoke(rev(Kind::Sid, "s", None, T0 + 5_000))
        .await
        .unwrap();
    let report = store.sweep_due(T0 + 100, 10).await.unwrap();
    assert_eq!(report.purged, 0);
    assert!(store.get(Kind::Sid, ISS, "s").unwrap().is_some());
}

#[tokio::test]
async fn a_sweep_over_many_batches_purges_all_due_and_only_due() {
    // Many small batches over the purging threads: every due entry goes, with its index
    // key and its counters; what is not due stays, findable; the mark check still passes.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_at(dir.path(), clock.clone());
    let revs: Vec<_> = (0..3_000)
        .map(|i| {
            let kind = [Kind::Jti, Kind::Sid, Kind::Sub][i % 3];
            let cutoff = (kind != Kind::Jti).then_some(T0);
            // Two thirds fall due, one third outlives the sweep.
            let exp = if i % 3 == 0 {
                T0 + 1_000
            } else {
                T0 + 5 + (i as u64 % 7)
            };
            rev(kind, &format!("v{i}"), cutoff, exp)
        })
        .collect();
    store.apply_all(&revocations(revs)).await.unwrap();
    clock.set(T0 + 100);
    let report = store.sweep_due(clock.now(), 7).await.unwrap();
    assert_eq!(report.purged, 2_000);
    assert_eq!(
        store.counts(),
        Counts {
            jti: 1_000,
            sid: 0,
            sub: 0
        }
    );
    assert_eq!(index_len(&store), 1_000);
    for i in 0..3_000 {
        let kind = [Kind::Jti, Kind::Sid, Kind::Sub][i % 3];
        assert_eq!(
            store.get(kind, ISS, &format!("v{i}")).unwrap().is_some(),
            i % 3 == 0,
            "v{i}"
        );
    }
    let consistency = store.check_consistency(false).unwrap();
    assert_eq!(
        consistency.records_without_index + consistency.index_without_record,
        0
    );
    drop(store);
    // The counts the mark acknowledged after the sweep are what the store holds.
    let store = open_at(dir.path(), clock);
    assert_eq!(store.counts().jti, 1_000);
}

#[tokio::test]
async fn concurrent_sweeps_and_revokes_stay_consistent() {
    let (_dir, _clock, store) = setup();
    let revs: Vec<_> = (0..300)
        .map(|i| rev(Kind::Jti, &format!("j{i}"), None, T0 + (i % 3)))
        .collect();
    store.apply_all(&revocations(revs)).await.unwrap();
    let a = {
        let s = store.clone();
        tokio::spawn(async move { s.sweep_due(T0 + 10, 7).await.unwrap() })
    };
    let b = {
        let s = store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                s.revoke(rev(Kind::Jti, &format!("j{i}"), None, T0 + 100))
                    .await
                    .unwrap();
            }
        })
    };
    a.await.unwrap();
    b.await.unwrap();
    let report = store.check_consistency(false).unwrap();
    assert_eq!(
        report.records_without_index + report.index_without_record,
        0
    );
    assert_eq!(report.records, report.index_entries);
    assert_eq!(store.counts().jti, report.records);
}

#[tokio::test]
async fn consistency_check_finds_and_repairs_damage() {
    let (_dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "j", None, T0 + 10))
        .await
        .unwrap();
    store
        .revoke(rev(Kind::Sid, "s", None, T0 + 20))
        .await
        .unwrap();
    // Its revocation merges into s (same expiry): one more entry, the seen jti.
    store
        .record_logout(logout(
            rev(Kind::Sid, "s", None, T0 + 20),
            "lj",
            [3; 32],
            T0 + 30,
        ))
        .await
        .unwrap();
    let clean = store.check_consistency(false).unwrap();
    assert_eq!(
        clean,
        ConsistencyReport {
            records: 3,
            index_entries: 3,
            records_without_index: 0,
            index_without_record: 0,
            repaired: false,
        }
    );
    assert!(!store.check_consistency(true).unwrap().repaired);

    let expiry = store.raw_tree("expiry");
    let jkey = keys::record_key(ISS, "j").unwrap();
    // Remove the jti's index entry; add a stray one for a record that does not exist and
    // one with the wrong expiry.
    expiry
        .remove(keys::index_key(T0 + 10, keys::KIND_JTI, &jkey))
        .unwrap()
        .unwrap();
    let ghost = keys::index_key(
        T0 + 5,
        keys::KIND_SUB,
        &keys::record_key(ISS, "ghost").unwrap(),
    );
    expiry.insert(ghost, &[][..]).unwrap();
    let skey = keys::record_key(ISS, "s").unwrap();
    expiry
        .insert(keys::index_key(T0 + 99, keys::KIND_SID, &skey), &[][..])
        .unwrap();
    expiry.insert(&b"junk"[..], &[][..]).unwrap();

    let damaged = store.check_consistency(false).unwrap();
    assert_eq!(damaged.records, 3);
    assert_eq!(damaged.index_entries, 5);
    assert_eq!(damaged.records_without_index, 1);
    assert_eq!(damaged.index_without_record, 3);
    assert!(!damaged.repaired);

    let repaired = store.check_consistency(true).unwrap();
    assert!(repaired.repaired);
    assert_eq!(repaired.records_without_index, 1);
    assert_eq!(repaired.index_without_record, 3);

    let after = store.check_consistency(false).unwrap();
    assert_eq!(after.records, 3);
    assert_eq!(after.index_entries, 3);
    assert_eq!(after.records_without_index + after.index_without_record, 0);
    // The revocation was kept (index re-created, not record removed).
    assert_eq!(
        store.find_match(ISS, "j", None, None, T0).unwrap(),
        Some(Kind::Jti)
    );
}

#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open_at(dir.path(), clock.clone());
        let mut r = rev(Kind::Sub, "u", Some(T0 - 1), T0 + 100);
        r.reason = Some("fired".into());
        store.revoke(r).await.unwrap();
        store.save_jwks(ISS, br#"{"keys":[]}"#).await.unwrap();
        store
            .record_logout(logout(
                rev(Kind::Sid, "ls", Some(T0), T0 + 100),
                "lj",
                [4; 32],
                T0 + 100,
            ))
            .await
            .unwrap();
    }
    let store = open_at(dir.path(), clock);
    let got = store.get(Kind::Sub, ISS, "u").unwrap().unwrap();
    assert_eq!(got.reason.as_deref(), Some("fired"));
    assert_eq!(got.issued_before, Some(T0 - 1));
    assert_eq!(
        store.find_match(ISS, "x", None, Some("u"), T0 - 1).unwrap(),
        Some(Kind::Sub)
    );
    assert_eq!(
        store.load_jwks(ISS).unwrap().as_deref(),
        Some(&br#"{"keys":[]}"#[..])
    );
    assert_eq!(store.load_jwks("https://other/").unwrap(), None);
    assert_eq!(
        store
            .record_logout(logout(
                rev(Kind::Sid, "ls", Some(T0), T0 + 100),
                "lj",
                [4; 32],
                T0 + 100
            ))
            .await
            .unwrap(),
        SeenLogout::Repeat
    );
    assert!(store.get(Kind::Sid, ISS, "ls").unwrap().is_some());
    store.probe().unwrap();
}

#[tokio::test]
async fn unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(store_path(dir.path())).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(META_SCHEMA, &99u32.to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
    }
    let err =
        RevocationStore::open(&store_path(dir.path()), 1 << 20, ManualClock::new(T0)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[tokio::test]
async fn second_open_in_same_process() {
    // sled 0.34 takes an exclusive `flock` on the database file; on Linux such locks
    // belong to the open file description, so a second open — even from this process —
    // fails the same way another process's would. That is the Locked mapping.
    let (dir, clock, _store) = setup();
    let err = RevocationStore::open(&store_path(dir.path()), 1 << 20, clock).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revokes_share_flushes() {
    let (_dir, _clock, store) = setup();
    let before = store.flush_count();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.revoke(rev(Kind::Jti, &format!("j{i}"), None, T0 + 100))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let flushes = store.flush_count() - before;
    assert!(flushes >= 1);
    eprintln!("{flushes} flushes for 64 writers");
    assert!(flushes < 32, "{flushes} flushes for 64 writers");
    assert_eq!(store.counts().jti, 64);
    // Every acknowledged write is covered: nothing left to flush.
    let n = store.flush_count();
    store.flush().await.unwrap();
    assert_eq!(store.flush_count(), n);
}

#[tokio::test]
async fn apply_all_flushes_once() {
    let (_dir, _clock, store) = setup();
    let before = store.flush_count();
    let revs: Vec<_> = (0..50)
        .map(|i| rev(Kind::Sub, &format!("u{i}"), None, T0 + 100))
        .collect();
    let out = store.apply_all(&revocations(revs)).await.unwrap();
    assert_eq!(out.len(), 50);
    assert!(out
        .iter()
        .all(|o| matches!(o, Outcome::Revoked(r) if r.kind == Kind::Sub)));
    assert_eq!(store.flush_count() - before, 1);
    assert_eq!(store.counts().sub, 50);
    assert_eq!(index_len(&store), 50);
}

#[tokio::test]
async fn a_batch_is_one_transaction_all_or_nothing() {
    let (_dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "kept", None, T0 + 100))
        .await
        .unwrap();
    // A record sled holds but that does not decode: merging into it aborts.
    store
        .raw_tree("jti")
        .insert(keys::record_key(ISS, "garbled").unwrap(), &[9u8, 9][..])
        .unwrap();
    let batch = vec![
        Change::Revoke(rev(Kind::Sid, "s", None, T0 + 100)),
        Change::Unrevoke {
            kind: Kind::Jti,
            issuer: ISS.into(),
            value: "kept".into(),
        },
        Change::Revoke(rev(Kind::Jti, "garbled", None, T0 + 100)),
    ];
    let before = store.flush_count();
    assert!(matches!(
        store.apply_all(&batch).await,
        Err(StoreError::Corrupt(_))
    ));
    // Nothing of the batch was applied, nor committed.
    assert_eq!(store.flush_count(), before);
    assert!(store.get(Kind::Sid, ISS, "s").unwrap().is_none());
    assert_eq!(
        store.find_match(ISS, "kept", None, None, T0).unwrap(),
        Some(Kind::Jti)
    );
    assert_eq!(
        store.counts(),
        Counts {
            jti: 1,
            sid: 0,
            sub: 0
        }
    );
    assert_eq!(index_len(&store), 1);
    // Without the bad change the same batch applies, in order, with one outcome each.
    let out = store.apply_all(&batch[..2]).await.unwrap();
    assert!(matches!(&out[0], Outcome::Revoked(r) if r.value == "s"));
    assert_eq!(out[1], Outcome::Unrevoked { removed: true });
    assert_eq!(store.find_match(ISS, "kept", None, None, T0).unwrap(), None);
    assert_eq!(
        store.counts(),
        Counts {
            jti: 0,
            sid: 1,
            sub: 0
        }
    );
}

#[tokio::test]
async fn every_change_reports_its_outcome() {
    let (_dir, _clock, store) = setup();
    let record = Record {
        kind: Kind::Sub,
        issuer: ISS.into(),
        value: "u".into(),
        revoked_at: T0 - 5,
        issued_before: Some(T0 - 5),
        expires_at: T0 + 100,
        reason: Some("imported".into()),
        source: Source::Backchannel,
    };
    assert_eq!(
        store.apply(&Change::Import(record.clone())).await.unwrap(),
        Outcome::Imported { new: true }
    );
    assert_eq!(
        store.get(Kind::Sub, ISS, "u").unwrap(),
        Some(record.clone())
    );
    assert_eq!(
        store.apply(&Change::Import(record)).await.unwrap(),
        Outcome::Imported { new: false }
    );
    let seen = Change::Logout(logout(
        rev(Kind::Sid, "s", Some(T0), T0 + 100),
        "lj",
        [1; 32],
        T0 + 60,
    ));
    assert_eq!(
        store.apply(&seen).await.unwrap(),
        Outcome::Logout(SeenLogout::New)
    );
    assert_eq!(
        store.apply(&seen).await.unwrap(),
        Outcome::Logout(SeenLogout::Repeat)
    );
    let unrevoke = |value: &str| Change::Unrevoke {
        kind: Kind::Sid,
        issuer: ISS.into(),
        value: value.into(),
    };
    assert_eq!(
        store.apply(&unrevoke("s")).await.unwrap(),
        Outcome::Unrevoked { removed: true }
    );
    assert_eq!(
        store.apply(&unrevoke("s")).await.unwrap(),
        Outcome::Unrevoked { removed: false }
    );
    // A key that cannot have been stored: nothing to remove, not an error.
    assert_eq!(
        store.apply(&unrevoke("")).await.unwrap(),
        Outcome::Unrevoked { removed: false }
    );
    assert_eq!(
        store.counts(),
        Counts {
            jti: 0,
            sid: 0,
            sub: 1
        }
    );
}

#[tokio::test]
async fn logout_jtis_new_repeat_conflict() {
    let (_dir, clock, store) = setup();
    let exp = T0 + 300;
    // The revocations outlive the seen jtis: what the sweep purges below is the jtis.
    let session = |issuer: &str| NewRevocation {
        issuer: issuer.to_string(),
        ..rev(Kind::Sid, "s", Some(T0), T0 + 10_000)
    };
    let seen = |issuer: &str, fingerprint, until| {
        store.record_logout(logout(session(issuer), "l1", fingerprint, until))
    };
    assert_eq!(seen(ISS, [1; 32], exp).await.unwrap(), SeenLogout::New);
    assert_eq!(seen(ISS, [1; 32], exp).await.unwrap(), SeenLogout::Repeat);
    assert_eq!(seen(ISS, [2; 32], exp).await.unwrap(), SeenLogout::Conflict);
    // Scoped by issuer.
    assert_eq!(
        seen("https://other/", [2; 32], exp).await.unwrap(),
        SeenLogout::New
    );
    // Seen jtis are neither counted nor listed: only the two sessions are.
    assert_eq!(
        store.counts(),
        Counts {
            jti: 0,
            sid: 2,
            sub: 0
        }
    );
    let (listed, _) = store.list(None, None, 10).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.kind == Kind::Sid && r.value == "s"));
    assert_eq!(store.raw_tree("logout_jti").len(), 2);
    assert_eq!(index_len(&store), 4);

    // Not purged at its expiry, purged after.
    assert_eq!(
        store.sweep_due(exp, 10).await.unwrap().purged_logout_jtis,
        0
    );
    clock.set(exp + 1);
    let report = store.sweep_due(clock.now(), 10).await.unwrap();
    assert_eq!(report.purged_logout_jtis, 2);
    assert_eq!(report.purged, 0);
    assert_eq!(store.raw_tree("logout_jti").len(), 0);
    assert_eq!(index_len(&store), 2);
    assert_eq!(
        seen(ISS, [2; 32], exp + 500).await.unwrap(),
        SeenLogout::New
    );
}

#[tokio::test]
async fn expired_unswept_logout_jti_is_replaced() {
    let (_dir, clock, store) = setup();
    let session = || rev(Kind::Sid, "s", Some(T0), T0 + 1_000);
    store
        .record_logout(logout(session(), "l", [1; 32], T0 + 10))
        .await
        .unwrap();
    clock.set(T0 + 11);
    assert_eq!(
        store
            .record_logout(logout(session(), "l", [2; 32], T0 + 100))
            .await
            .unwrap(),
        SeenLogout::New
    );
    // The session's entry and the new seen jti's: the old one's entry is gone.
    assert_eq!(index_len(&store), 2);
    assert_eq!(store.raw_tree("logout_jti").len(), 1);
    let report = store.check_consistency(false).unwrap();
    assert_eq!(
        report.records_without_index + report.index_without_record,
        0
    );
}

#[tokio::test]
async fn probe_and_metrics_helpers() {
    let (_dir, _clock, store) = setup();
    store.probe().unwrap();
    assert!(store.size_on_disk() > 0);
    assert_eq!(store.sweep_totals(), (0, 0));
    assert!(store.last_sweep().is_none());
}

#[tokio::test]
async fn record_logout_is_all_or_nothing() {
    let (_dir, clock, store) = setup();
    let first = rev(Kind::Sid, "s-a", Some(T0), T0 + 100);
    assert_eq!(
        store
            .record_logout(logout(first.clone(), "lj", [1; 32], T0 + 60))
            .await
            .unwrap(),
        SeenLogout::New
    );
    assert_eq!(store.counts().sid, 1);
    // The same token again: nothing changes.
    assert_eq!(
        store
            .record_logout(logout(first.clone(), "lj", [1; 32], T0 + 60))
            .await
            .unwrap(),
        SeenLogout::Repeat
    );
    // Another token with that jti: refused, and its session is NOT recorded.
    let other = rev(Kind::Sid, "s-b", Some(T0), T0 + 100);
    assert_eq!(
        store
            .record_logout(logout(other.clone(), "lj", [2; 32], T0 + 60))
            .await
            .unwrap(),
        SeenLogout::Conflict
    );
    assert_eq!(store.counts().sid, 1);
    assert_eq!(
        store.find_match(ISS, "x", Some("s-b"), None, T0).unwrap(),
        None
    );
    // What is remembered is still the first token: a conflict for the other, a repeat
    // for the first.
    assert_eq!(
        store
            .record_logout(logout(other.clone(), "lj", [2; 32], T0 + 60))
            .await
            .unwrap(),
        SeenLogout::Conflict
    );
    assert_eq!(
        store
            .record_logout(logout(first.clone(), "lj", [1; 32], T0 + 60))
            .await
            .unwrap(),
        SeenLogout::Repeat
    );
    assert_eq!(store.counts().sid, 1);
    // Once the seen jti expired, the jti may be used again.
    clock.set(T0 + 61);
    assert_eq!(
        store
            .record_logout(logout(other, "lj", [2; 32], T0 + 200))
            .await
            .unwrap(),
        SeenLogout::New
    );
    assert_eq!(store.counts().sid, 2);
    assert!(store.check_consistency(false).unwrap().index_without_record == 0);
}

// ===== The acknowledgement mark (damage is never silent) =====

/// Copies the directory tree `from` to `to` (a file-level copy of a closed store).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn mark_of(dir: &std::path::Path) -> std::path::PathBuf {
    mark::path_for(&store_path(dir)).unwrap()
}

fn damage_of(result: Result<RevocationStore, StoreError>) -> Damage {
    match result {
        Err(StoreError::Damaged(d)) => d,
        Err(e) => panic!("expected a damage refusal, got {e}"),
        Ok(_) => panic!("expected a damage refusal, the store opened"),
    }
}

#[tokio::test]
async fn a_store_without_a_mark_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "a", None, T0 + 100))
            .await
            .unwrap();
    }
    // As a store from a release without marks.
    std::fs::remove_file(mark_of(dir.path())).unwrap();
    {
        let store = open_at(dir.path(), clock.clone());
        assert_eq!(store.mark_report().acknowledged, None);
        assert!(mark_of(dir.path()).is_file(), "mark created at open");
    }
    let store = open_at(dir.path(), clock);
    let (_, counts) = store.mark_report().acknowledged.expect("mark read");
    assert_eq!(counts.jti, 1);
}

#[tokio::test]
async fn a_store_missing_acknowledged_commits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let older = dir.path().join("older");
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "a", None, T0 + 100))
            .await
            .unwrap();
    }
    copy_tree(&store_path(dir.path()), &older);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Sub, "b", None, T0 + 100))
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(store_path(dir.path())).unwrap();
    std::fs::rename(&older, store_path(dir.path())).unwrap();
    let path = store_path(dir.path());
    let d = damage_of(RevocationStore::open(&path, 1 << 20, clock.clone()));
    assert!(d.problem.contains("jti 1, sid 0, sub 1"), "{d}");
    assert!(
        d.problem.contains("jti 1, sid 0, sub 0 up to commit"),
        "{d}"
    );
    let d2 = damage_of(RevocationStore::open_with(
        &path,
        1 << 20,
        clock.clone(),
        OpenMode::Check,
    ));
    assert_eq!(d, d2);
    // Salvage reads what is there, says what is wrong, writes nothing.
    let salvaged =
        RevocationStore::open_with(&path, 1 << 20, clock.clone(), OpenMode::Salvage).unwrap();
    assert_eq!(salvaged.damage(), Some(&d));
    assert_eq!(salvaged.counts().jti, 1);
    drop(salvaged);
    damage_of(RevocationStore::open(&path, 1 << 20, clock));
}

#[tokio::test]
async fn equal_commit_with_fewer_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "a", None, T0 + 100))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Jti, "b", None, T0 + 100))
            .await
            .unwrap();
    }
    // A record lost behind sled's back, the commit sequence untouched.
    {
        let db = sled::open(store_path(dir.path())).unwrap();
        let jti = db.open_tree("jti").unwrap();
        let victim = jti.iter().keys().next().unwrap().unwrap();
        jti.remove(victim).unwrap();
        db.flush().unwrap();
    }
    let d = damage_of(RevocationStore::open(
        &store_path(dir.path()),
        1 << 20,
        clock,
    ));
    assert!(d.problem.contains("fewer than the jti 2"), "{d}");
}

#[tokio::test]
async fn removals_that_never_committed_are_not_taken_for_damage() {
    // An unrevoke or a sweep whose commit never came (the gateway died first) may still
    // reach the disk through sled's own flushing: fewer records than the mark counted.
    // The removal raised the commit sequence in the same transaction, so this is a store
    // ahead of its mark, not a damaged one.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "a", None, T0 + 100))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Sid, "s", Some(T0), T0 + 10))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Sub, "u", Some(T0), T0 + 100))
            .await
            .unwrap();
        store.mark_degraded("test: commits fail from here on");
        assert!(store.unrevoke(Kind::Jti, ISS, "a").await.is_err());
        clock.set(T0 + 11);
        assert!(store.sweep_due(clock.now(), 16).await.is_err());
        // Dropping the database lets sled write everything it holds.
    }
    let store = open_at(dir.path(), clock);
    assert_eq!(
        store.counts(),
        Counts {
            jti: 0,
            sid: 0,
            sub: 1
        }
    );
    let (acked, counts) = store.mark_report().acknowledged.unwrap();
    assert_eq!(
        (counts.jti, counts.sid),
        (1, 1),
        "the mark still counts them"
    );
    assert!(store.mark_report().store_commit > acked);
}

#[tokio::test]
async fn the_watch_notices_a_deleted_store_and_recovery_never_reopens_it_empty() {
    let (dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "a", None, T0 + 100))
        .await
        .unwrap();
    store.watch_files();
    assert!(!store.is_degraded());
    std::fs::remove_dir_all(store_path(dir.path())).unwrap();
    store.watch_files();
    assert!(store.is_degraded(), "deleted directory noticed");
    assert!(store.probe().is_err());
    assert!(store.recover().await.is_err());
    assert!(store.is_degraded());
    assert!(!store_path(dir.path()).exists(), "no empty store created");
}

#[tokio::test]
async fn recovery_refuses_an_older_copy_and_accepts_the_real_store() {
    let (dir, _clock, store) = setup();
    store
        .revoke(rev(Kind::Jti, "a", None, T0 + 100))
        .await
        .unwrap();
    // A transient fault: the reopen is checked against the mark, then commits.
    store.mark_degraded("test: transient");
    let before = store.inner.commit_seq.load(Ordering::SeqCst);
    assert!(store.recover().await.unwrap());
    assert!(store.inner.commit_seq.load(Ordering::SeqCst) > before);
    assert!(matches!(mark::read(&mark_of(dir.path())), mark::Found::Valid(m) if m.counts[0] == 1));
    // An older copy put in place of the store while it runs.
    let older = dir.path().join("older");
    {
        let db = sled::Config::new().path(&older).open().unwrap();
        db.flush().unwrap();
    }
    store
        .revoke(rev(Kind::Jti, "b", None, T0 + 100))
        .await
        .unwrap();
    let path = store_path(dir.path());
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::rename(&older, &path).unwrap();
    store.watch_files();
    assert!(store.is_degraded(), "replaced store noticed");
    match store.recover().await {
        Err(StoreError::Damaged(d)) => assert!(d.problem.contains("not the one"), "{d}"),
        other => panic!("reopened into another store: {other:?}"),
    }
    assert!(store.is_degraded());
}

#[tokio::test]
async fn open_for_restore_moves_a_damaged_store_aside_and_salvages_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let path = store_path(dir.path());
    let older = dir.path().join("older");
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "a", None, T0 + 100))
            .await
            .unwrap();
        store
            .revoke(rev(Kind::Jti, "gone-soon", None, T0 + 5))
            .await
            .unwrap();
    }
    copy_tree(&path, &older);
    {
        let store = open_at(dir.path(), clock.clone());
        store
            .revoke(rev(Kind::Jti, "b", None, T0 + 100))
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::rename(&older, &path).unwrap();
    clock.set(T0 + 10);
    let (store, restored) = RevocationStore::open_for_restore(&path, 1 << 20, clock.clone())
        .await
        .unwrap();
    let restored = restored.expect("damage found");
    let aside = restored.moved_to.clone().expect("moved aside");
    assert!(aside.join("db").is_file(), "kept for analysis");
    assert_eq!(
        restored.salvaged, 1,
        "the unexpired record read back: {restored:?}"
    );
    assert_eq!(restored.salvage_error, None);
    assert!(store.get(Kind::Jti, ISS, "a").unwrap().is_some());
    assert_eq!(store.counts().jti, 1);
    drop(store);
    // The new store is the one the mark now describes.
    let store = open_at(dir.path(), clock);
    assert_eq!(store.mark_report().acknowledged.unwrap().1.jti, 1);
    // A healthy store opens for restore untouched.
    drop(store);
    let (_, restored) =
        RevocationStore::open_for_restore(&path, 1 << 20, ManualClock::new(T0 + 10))
            .await
            .unwrap();
    assert_eq!(restored, None);
}
