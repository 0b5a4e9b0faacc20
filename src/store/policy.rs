//! The revocation policy, written once: how long each entry is kept (SPEC §1 "kept until",
//! §4 seen logout-token `jti`s) and how a new revocation merges into a stored record
//! (SPEC §1: the later `issued_before` and the later expiry win).
//!
//! Pure functions: no store, no clock (`now` is an argument), so every source of a
//! revocation — admin API and CLI, revoke-by-token, `/revoke`, back-channel logout,
//! import — computes its expiry here, and each rule is tested on its own below.

use super::record::{self, StoredRecordV1};
use super::{Kind, NewRevocation, Record, Source};
use crate::config::Config;

/// The configured lifetimes the "kept until" rules depend on, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `auth.max_token_lifetime`: no accepted access token lives longer (a token whose
    /// `exp - iat` exceeds it is refused), so a cutoff older than this kills nothing more.
    pub max_token_lifetime: u64,
    /// `auth.leeway`: the clock skew every time check allows.
    pub leeway: u64,
    /// `backchannel.max_age`: the oldest logout token (by `iat`) that is accepted.
    pub logout_max_age: u64,
}

/// An expiry the operator asked for. It replaces the policy's for any kind (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// `ttl`: kept for this many seconds from now.
    Ttl(u64),
    /// `expires_at`: kept until this instant (seconds since the epoch).
    At(u64),
}

impl Policy {
    /// The lifetimes of `config`.
    pub fn of(config: &Config) -> Policy {
        Policy {
            max_token_lifetime: config.auth.max_token_lifetime.as_secs(),
            leeway: config.auth.leeway.as_secs(),
            logout_max_age: config.backchannel.max_age.as_secs(),
        }
    }

    /// A token's `exp` + leeway: after it the token is refused as expired anyway.
    fn past_exp(&self, exp: u64) -> u64 {
        exp.saturating_add(self.leeway)
    }

    /// A `jti` revocation (SPEC §1): until the token's `exp` + leeway when the token is
    /// known, else `now` + `max_token_lifetime` + leeway (no token it names can outlive it).
    pub fn jti_expires_at(&self, now: u64, token_exp: Option<u64>) -> u64 {
        match token_exp {
            Some(exp) => self.past_exp(exp),
            None => self.past_exp(now.saturating_add(self.max_token_lifetime)),
        }
    }

    /// A `sid` / `sub` revocation (SPEC §1): until `issued_before` + `max_token_lifetime` +
    /// leeway, when the last token it kills has expired.
    pub fn cutoff_expires_at(&self, issued_before: u64) -> u64 {
        self.past_exp(issued_before.saturating_add(self.max_token_lifetime))
    }

    /// The cutoff a revocation of `kind` carries (SPEC §1): none for `jti`; for `sid` /
    /// `sub` the one `given`, else `now` (tokens issued until now are dead).
    pub fn issued_before(kind: Kind, given: Option<u64>, now: u64) -> Option<u64> {
        match kind {
            Kind::Jti => None,
            Kind::Sid | Kind::Sub => Some(given.unwrap_or(now)),
        }
    }

    /// The `expires_at` of a revocation of `kind` recorded at `now` without the token at
    /// hand (admin API, CLI, back-channel logout): what the operator `requested` when
    /// given, else [`jti_expires_at`](Self::jti_expires_at) /
    /// [`cutoff_expires_at`](Self::cutoff_expires_at) with the cutoff of
    /// [`issued_before`](Self::issued_before).
    pub fn expires_at(
        &self,
        kind: Kind,
        now: u64,
        issued_before: Option<u64>,
        requested: Option<Requested>,
    ) -> u64 {
        match (requested, kind) {
            (Some(Requested::Ttl(secs)), _) => now.saturating_add(secs),
            (Some(Requested::At(at)), _) => at,
            (None, Kind::Jti) => self.jti_expires_at(now, None),
            (None, Kind::Sid | Kind::Sub) => self.cutoff_expires_at(issued_before.unwrap_or(now)),
        }
    }

    /// Until when a logout token's `jti` is remembered (SPEC §4): the earlier of `exp` +
    /// leeway and `iat` + `max_age` + leeway. After either instant the token is refused
    /// anyway (expired, or too old), so a replay needs no memory of it; without the second
    /// bound a far `exp` would keep the jti for decades.
    pub fn seen_jti_expires_at(&self, iat: u64, exp: Option<u64>) -> u64 {
        let too_old = self.past_exp(iat.saturating_add(self.logout_max_age));
        match exp {
            Some(exp) => self.past_exp(exp).min(too_old),
            None => too_old,
        }
    }

    /// The revocation of a verified access token's `jti` (`sha256:…` for a jti-less
    /// token), kept until its `exp` + leeway: SPEC §4 revocation endpoint and SPEC §5
    /// `POST /v1/revocations/token`.
    pub fn token_revocation(
        &self,
        issuer: &str,
        jti: &str,
        exp: u64,
        reason: Option<String>,
        source: Source,
    ) -> NewRevocation {
        NewRevocation {
            kind: Kind::Jti,
            issuer: issuer.to_string(),
            value: jti.to_string(),
            issued_before: None,
            expires_at: self.past_exp(exp),
            reason,
            source,
        }
    }
}

/// A revocation as [`merge`] sees it: what a [`Change::Revoke`](super::Change::Revoke)
/// or a [`Change::Import`](super::Change::Import) brings to the record of its key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Incoming<'a> {
    pub kind: Kind,
    pub issued_before: Option<u64>,
    pub expires_at: u64,
    pub reason: Option<&'a str>,
    pub source: Source,
    /// An imported record's own; `None` for a revocation (stamped now).
    pub revoked_at: Option<u64>,
}

impl<'a> Incoming<'a> {
    /// A revocation, stamped `revoked_at` = now by [`merge`].
    pub(super) fn revocation(rev: &'a NewRevocation) -> Self {
        Incoming {
            kind: rev.kind,
            issued_before: rev.issued_before,
            expires_at: rev.expires_at,
            reason: rev.reason.as_deref(),
            source: rev.source,
            revoked_at: None,
        }
    }

    /// An imported record, keeping its `revoked_at`.
    pub(super) fn import(record: &'a Record) -> Self {
        Incoming {
            kind: record.kind,
            issued_before: record.issued_before,
            expires_at: record.expires_at,
            reason: record.reason.as_deref(),
            source: record.source,
            revoked_at: Some(record.revoked_at),
        }
    }
}

/// Merges a new revocation into the existing stored record (SPEC §1): the later
/// `issued_before` and the later `expires_at` win, `revoked_at` is now, reason and source
/// come from the newest call (the old reason is kept when the new call gives none). An
/// imported record older than the stored one keeps the stored reason and source.
pub(super) fn merge(old: Option<StoredRecordV1>, new: &Incoming<'_>, now: u64) -> StoredRecordV1 {
    let revoked_at = new.revoked_at;
    let new = StoredRecordV1 {
        revoked_at: revoked_at.unwrap_or(now),
        issued_before: Policy::issued_before(new.kind, new.issued_before, now),
        expires_at: new.expires_at,
        reason: new.reason.map(str::to_string),
        source: record::source_byte(new.source),
    };
    match old {
        None => new,
        Some(old) if revoked_at.is_some_and(|r| r < old.revoked_at) => StoredRecordV1 {
            issued_before: later_cutoff(old.issued_before, new.issued_before),
            expires_at: old.expires_at.max(new.expires_at),
            ..old
        },
        Some(old) => StoredRecordV1 {
            issued_before: later_cutoff(new.issued_before, old.issued_before),
            expires_at: old.expires_at.max(new.expires_at),
            reason: new.reason.or(old.reason),
            ..new
        },
    }
}

/// The cutoff both records carry (for `jti`: none): the later one.
fn later_cutoff(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// In a cluster, the revocation a change accepted here brings, as its log entry carries
/// it (SPEC §8): `revoked_at` now (an imported record keeps its own), the cutoff of
/// [`Policy::issued_before`], and — when it is not older than the stored record — the
/// stored reason if it gives none (the single-node rule of [`merge`]). Every node applies
/// this same entry with [`join`].
pub(super) fn resolve(
    old: Option<&StoredRecordV1>,
    new: &Incoming<'_>,
    now: u64,
) -> StoredRecordV1 {
    let revoked_at = new.revoked_at.unwrap_or(now);
    let reason = match old {
        Some(old) if revoked_at >= old.revoked_at => new
            .reason
            .map(str::to_string)
            .or_else(|| old.reason.clone()),
        _ => new.reason.map(str::to_string),
    };
    StoredRecordV1 {
        revoked_at,
        issued_before: Policy::issued_before(new.kind, new.issued_before, now),
        expires_at: new.expires_at,
        reason,
        source: record::source_byte(new.source),
    }
}

/// Which of two records' `revoked_at`, reason and source a [`join`] keeps: the later
/// `revoked_at`; on a tie (one second, two nodes) the one with a reason, then the
/// greater reason, then the greater source byte — any fixed order will do, as long as it
/// is the same on every node.
fn rank(r: &StoredRecordV1) -> (u64, bool, Option<&str>, u8) {
    (
        r.revoked_at,
        r.reason.is_some(),
        r.reason.as_deref(),
        r.source,
    )
}

/// The cluster's merge of a log entry into the stored record (SPEC §8 "merges commute"):
/// the later cutoff, the later expiry, and `revoked_at` / reason / source of the entry
/// [`rank`] puts first. Commutative, associative and idempotent, so every node ends with
/// the same record whatever order, and however often, it saw the entries of a key —
/// including the accepting node, which applied its own entry before its place in the
/// stream was known.
pub(super) fn join(old: Option<StoredRecordV1>, entry: &StoredRecordV1) -> StoredRecordV1 {
    let Some(old) = old else {
        return entry.clone();
    };
    let issued_before = later_cutoff(old.issued_before, entry.issued_before);
    let expires_at = old.expires_at.max(entry.expires_at);
    let winner = if rank(entry) > rank(&old) {
        entry.clone()
    } else {
        old
    };
    StoredRecordV1 {
        issued_before,
        expires_at,
        ..winner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_token_lifetime: 1000,
        leeway: 60,
        logout_max_age: 300,
    };

    fn rev(kind: Kind, issued_before: Option<u64>, expires_at: u64) -> NewRevocation {
        NewRevocation {
            kind,
            issuer: "iss".into(),
            value: "v".into(),
            issued_before,
            expires_at,
            reason: None,
            source: Source::Admin,
        }
    }

    fn imported(
        issued_before: Option<u64>,
        expires_at: u64,
        revoked_at: u64,
        reason: Option<&str>,
    ) -> Record {
        Record {
            kind: Kind::Sub,
            issuer: "iss".into(),
            value: "v".into(),
            revoked_at,
            issued_before,
            expires_at,
            reason: reason.map(str::to_string),
            source: Source::Admin,
        }
    }

    #[test]
    fn default_expiry_rules() {
        // jti: exp + leeway when the token is known, else now + max lifetime + leeway.
        assert_eq!(POLICY.jti_expires_at(100, Some(500)), 560);
        assert_eq!(POLICY.jti_expires_at(100, None), 1160);
        assert_eq!(POLICY.expires_at(Kind::Jti, 100, None, None), 1160);
        // sid/sub: issued_before + max lifetime + leeway; issued_before defaults to now.
        assert_eq!(POLICY.cutoff_expires_at(50), 1110);
        assert_eq!(POLICY.expires_at(Kind::Sid, 100, Some(50), None), 1110);
        assert_eq!(POLICY.expires_at(Kind::Sub, 100, None, None), 1160);
        // Never wraps.
        assert_eq!(POLICY.jti_expires_at(0, Some(u64::MAX)), u64::MAX);
        assert_eq!(POLICY.cutoff_expires_at(u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn an_operator_expiry_replaces_the_default_for_every_kind() {
        for kind in Kind::ALL {
            assert_eq!(
                POLICY.expires_at(kind, 100, Some(50), Some(Requested::Ttl(30))),
                130
            );
            assert_eq!(
                POLICY.expires_at(kind, 100, Some(50), Some(Requested::At(7_000))),
                7_000
            );
        }
        assert_eq!(
            POLICY.expires_at(Kind::Jti, u64::MAX, None, Some(Requested::Ttl(1))),
            u64::MAX
        );
    }

    #[test]
    fn a_seen_jti_is_kept_until_the_earlier_of_exp_and_max_age() {
        let (iat, max_age, leeway) = (1_000, 300, 60);
        // exp before iat + max_age: exp + leeway.
        assert_eq!(POLICY.seen_jti_expires_at(iat, Some(iat + 120)), iat + 180);
        // A far exp (31 years): iat + max_age + leeway.
        let far = iat + 1_000_000_000;
        assert_eq!(
            POLICY.seen_jti_expires_at(iat, Some(far)),
            iat + max_age + leeway
        );
        // No exp (logout_require_exp = false): iat + max_age + leeway.
        assert_eq!(POLICY.seen_jti_expires_at(iat, None), iat + 360);
        // Never wraps.
        assert_eq!(
            POLICY.seen_jti_expires_at(u64::MAX - 1, Some(u64::MAX)),
            u64::MAX
        );
    }

    #[test]
    fn a_verified_token_is_revoked_by_jti_until_exp_plus_leeway() {
        let r = POLICY.token_revocation("iss", "j", 5_000, Some("why".into()), Source::Admin);
        assert_eq!(
            r,
            NewRevocation {
                kind: Kind::Jti,
                issuer: "iss".into(),
                value: "j".into(),
                issued_before: None,
                expires_at: 5_060,
                reason: Some("why".into()),
                source: Source::Admin,
            }
        );
        let r = POLICY.token_revocation("iss", "j", 5_000, None, Source::RevokeEndpoint);
        assert_eq!(r.source, Source::RevokeEndpoint);
        assert_eq!(r.reason, None);
    }

    #[test]
    fn only_sid_and_sub_carry_a_cutoff() {
        assert_eq!(Policy::issued_before(Kind::Jti, Some(5), 100), None);
        assert_eq!(Policy::issued_before(Kind::Sid, Some(5), 100), Some(5));
        assert_eq!(Policy::issued_before(Kind::Sub, None, 100), Some(100));
    }

    #[test]
    fn merge_keeps_the_later_cutoff_and_expiry_and_the_newest_reason() {
        let first = merge(
            None,
            &Incoming::revocation(&rev(Kind::Sid, Some(10), 500)),
            100,
        );
        assert_eq!(
            first,
            StoredRecordV1 {
                revoked_at: 100,
                issued_before: Some(10),
                expires_at: 500,
                reason: None,
                source: record::source_byte(Source::Admin),
            }
        );
        let mut second = rev(Kind::Sid, Some(5), 900);
        second.reason = Some("again".into());
        second.source = Source::Backchannel;
        let merged = merge(Some(first.clone()), &Incoming::revocation(&second), 200);
        assert_eq!(merged.revoked_at, 200);
        assert_eq!(merged.issued_before, Some(10));
        assert_eq!(merged.expires_at, 900);
        assert_eq!(merged.reason.as_deref(), Some("again"));
        assert_eq!(merged.source, record::source_byte(Source::Backchannel));
        // A later call without a reason keeps the old one.
        let third = merge(
            Some(merged),
            &Incoming::revocation(&rev(Kind::Sid, Some(20), 100)),
            300,
        );
        assert_eq!(third.issued_before, Some(20));
        assert_eq!(third.expires_at, 900);
        assert_eq!(third.reason.as_deref(), Some("again"));
        assert_eq!(third.source, record::source_byte(Source::Admin));
    }

    #[test]
    fn an_older_imported_record_keeps_the_stored_reason_and_source() {
        let mut stored = rev(Kind::Sub, Some(10), 500);
        stored.reason = Some("stored".into());
        stored.source = Source::Backchannel;
        let stored = merge(None, &Incoming::revocation(&stored), 100);
        let older = imported(Some(40), 800, 50, Some("older"));
        let merged = merge(Some(stored), &Incoming::import(&older), 200);
        assert_eq!(merged.revoked_at, 100);
        assert_eq!(merged.issued_before, Some(40));
        assert_eq!(merged.expires_at, 800);
        assert_eq!(merged.reason.as_deref(), Some("stored"));
        assert_eq!(merged.source, record::source_byte(Source::Backchannel));
        // A newer imported record is merged like a revocation, keeping its revoked_at.
        let newer = imported(Some(20), 100, 150, None);
        let newer = merge(Some(merged), &Incoming::import(&newer), 300);
        assert_eq!(newer.revoked_at, 150);
        assert_eq!(newer.issued_before, Some(40));
        assert_eq!(newer.source, record::source_byte(Source::Admin));
        assert_eq!(newer.reason.as_deref(), Some("stored"));
    }

    fn stored(
        revoked_at: u64,
        ib: Option<u64>,
        exp: u64,
        reason: Option<&str>,
        src: u8,
    ) -> StoredRecordV1 {
        StoredRecordV1 {
            revoked_at,
            issued_before: ib,
            expires_at: exp,
            reason: reason.map(str::to_string),
            source: src,
        }
    }

    #[test]
    fn join_is_a_semilattice_so_every_order_converges() {
        let entries = [
            stored(5, Some(4), 500, None, 0),
            stored(3, Some(9), 300, Some("y"), 1),
            stored(5, Some(2), 900, Some("x"), 2),
            stored(5, Some(1), 100, Some("x"), 0),
            stored(7, None, 50, None, 1),
        ];
        let fold = |order: &[usize]| {
            order
                .iter()
                .fold(None, |acc, &i| Some(join(acc, &entries[i])))
                .unwrap()
        };
        let expected = fold(&[0, 1, 2, 3, 4]);
        assert_eq!(expected.revoked_at, 7);
        assert_eq!(expected.issued_before, Some(9));
        assert_eq!(expected.expires_at, 900);
        // Every permutation of the five, each also with an entry seen twice (the
        // accepting node applies its own entry before and at its place in the stream).
        let mut order = vec![0, 1, 2, 3, 4];
        let mut permutations = 0;
        loop {
            assert_eq!(fold(&order), expected, "{order:?}");
            for dup in 0..5 {
                let mut twice = vec![order[dup]];
                twice.extend(&order);
                assert_eq!(fold(&twice), expected, "{twice:?}");
            }
            permutations += 1;
            // Next permutation (lexicographic).
            let Some(i) = (0..4).rev().find(|&i| order[i] < order[i + 1]) else {
                break;
            };
            let j = (i + 1..5).rev().find(|&j| order[j] > order[i]).unwrap();
            order.swap(i, j);
            order[i + 1..].reverse();
        }
        assert_eq!(permutations, 120);
        // A tie on revoked_at is decided by the reason, not by the order.
        let a = stored(5, None, 10, None, 0);
        let b = stored(5, None, 10, Some("b"), 0);
        assert_eq!(join(Some(a.clone()), &b), join(Some(b.clone()), &a));
        assert_eq!(join(Some(a), &b).reason.as_deref(), Some("b"));
    }

    #[test]
    fn a_resolved_entry_joined_in_is_the_single_node_merge() {
        // Whenever revoked_at differs, join(old, resolve(...)) is what merge gives.
        let old = stored(100, Some(10), 500, Some("stolen laptop"), 1);
        let again = rev(Kind::Sid, Some(20), 400);
        let joined = join(
            Some(old.clone()),
            &resolve(Some(&old), &Incoming::revocation(&again), 200),
        );
        assert_eq!(
            joined,
            merge(Some(old.clone()), &Incoming::revocation(&again), 200)
        );
        assert_eq!(joined.reason.as_deref(), Some("stolen laptop"));
        let older = imported(Some(40), 800, 50, Some("older"));
        assert_eq!(
            join(
                Some(old.clone()),
                &resolve(Some(&old), &Incoming::import(&older), 300)
            ),
            merge(Some(old.clone()), &Incoming::import(&older), 300)
        );
        // A jti never carries a cutoff, whatever the change says.
        let jti = rev(Kind::Jti, Some(5), 100);
        assert_eq!(
            resolve(None, &Incoming::revocation(&jti), 9).issued_before,
            None
        );
    }
}
