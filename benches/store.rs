//! Store benchmarks (criterion): revocation lookup at 1k / 100k / 1M entries, durable
//! revocation writes with 1 / 8 / 64 concurrent writers (group commit), and a sweep of
//! due entries.
//!
//! `cargo bench --bench store` (all), or e.g. `cargo bench --bench store -- lookup`.
//! The 1M-entry store is built once per run (about 10–20 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use revgate::clock::{ManualClock, SharedClock};
use revgate::store::{Kind, NewRevocation, Record, RevocationStore, Source};

const ISS: &str = "https://issuer.bench.local/";
const NOW: u64 = 1_900_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn record(kind: Kind, i: u64, expires_at: u64) -> Record {
    Record {
        kind,
        issuer: ISS.to_string(),
        value: format!("{}-{i:012}", kind.as_str()),
        revoked_at: NOW,
        issued_before: (kind != Kind::Jti).then_some(NOW),
        expires_at,
        reason: None,
        source: Source::Admin,
    }
}

/// A store holding `n` entries (jti 80 %, sid 15 %, sub 5 %), all expiring at `expires_at`.
fn filled(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    n: u64,
    expires_at: u64,
    clock: SharedClock,
) -> RevocationStore {
    let store = RevocationStore::open(&dir.join("db"), 64 << 20, clock).unwrap();
    rt.block_on(async {
        let mut batch = Vec::with_capacity(4096);
        for i in 0..n {
            let kind = match i % 20 {
                0..=15 => Kind::Jti,
                16..=18 => Kind::Sid,
                _ => Kind::Sub,
            };
            batch.push(record(kind, i, expires_at));
            if batch.len() == 4096 {
                store
                    .import_records(std::mem::take(&mut batch))
                    .await
                    .unwrap();
            }
        }
        store.import_records(batch).await.unwrap();
    });
    store
}

fn lookup(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("lookup");
    for n in [1_000u64, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(&rt, dir.path(), n, NOW + 86_400, ManualClock::new(NOW));
        // A token that matches nothing: the full cost (jti, sid and sub all looked up).
        group.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            b.iter(|| {
                store
                    .find_match(
                        ISS,
                        "jti-not-revoked",
                        Some("sid-not-revoked"),
                        Some("user-x"),
                        NOW - 10,
                    )
                    .unwrap()
            })
        });
        let hit = format!("jti-{:012}", n / 2 / 20 * 20);
        group.bench_with_input(BenchmarkId::new("hit_jti", n), &n, |b, _| {
            b.iter(|| store.find_match(ISS, &hit, None, None, NOW - 10).unwrap())
        });
    }
    group.finish();
}

fn writes(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_revocations");
    group.sample_size(10);
    for writers in [1usize, 8, 64] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            RevocationStore::open(&dir.path().join("db"), 64 << 20, revgate::clock::system())
                .unwrap();
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.throughput(criterion::Throughput::Elements(writers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(writers),
            &writers,
            |b, &writers| {
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    let counter = counter.clone();
                    async move {
                        let tasks: Vec<_> = (0..writers)
                            .map(|_| {
                                let store = store.clone();
                                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::spawn(async move {
                                    store
                                        .revoke(NewRevocation {
                                            kind: Kind::Jti,
                                            issuer: ISS.to_string(),
                                            value: format!("w-{i}"),
                                            issued_before: None,
                                            expires_at: NOW + 86_400,
                                            reason: None,
                                            source: Source::Admin,
                                        })
                                        .await
                                        .unwrap()
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                    }
                })
            },
        );
        let flushes = store.flush_count();
        let written = counter.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "durable_revocations/{writers}: {written} revocations, {flushes} fsyncs, {:.3} fsyncs per revocation",
            flushes as f64 / written.max(1) as f64
        );
    }
    group.finish();
}

fn sweep(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("sweep");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let n = 100_000u64;
    group.bench_function(BenchmarkId::new("due", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let clock = ManualClock::new(NOW);
                let store = filled(&rt, dir.path(), n, NOW + 10, clock.clone());
                clock.set(NOW + 100);
                let start = Instant::now();
                let report = rt.block_on(store.sweep_due(NOW + 100, 1024)).unwrap();
                total += start.elapsed();
                assert_eq!(report.purged, n);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, lookup, writes, sweep);
criterion_main!(benches);
