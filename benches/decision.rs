//! Token verification per algorithm and the whole per-request decision (criterion).
//!
//! - `verify/<alg>`: `verify_access_token` (parse → signature → claims), no cache.
//! - `decision/uncached`: verify + the three revocation lookups (jti, sid, sub) in a store
//!   of 100k revocations — what every request costs with `verified_token_cache = 0`.
//! - `decision/cached`: the same through `App::verify` with the verified-token cache.
//!
//! `cargo bench --bench decision`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use revgate::auth::Keyring;
use revgate::config::Config;
use revgate::metrics::Metrics;
use revgate::store::{Kind, Record, RevocationStore, Source};
use serde_json::json;

const ISS: &str = "https://issuer.bench.local/";

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn config(store: &std::path::Path) -> Config {
    Config::parse(
        &format!(
            r#"
[[issuer]]
issuer = "{ISS}"
audiences = ["bench-api"]
jwks_file = "{}/tests/keys/jwks.json"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
[[route]]
prefix = "/"
upstream = "http://127.0.0.1:1"
[store]
path = "{}"
"#,
            env!("CARGO_MANIFEST_DIR"),
            store.display()
        ),
        |_| None,
    )
    .unwrap()
}

fn token(alg: Algorithm, now: u64, i: u64) -> String {
    let (k, kid) = match alg {
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&key("ec256_private.pem")).unwrap(),
            "ec256-1",
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(&key("ed25519_private.pem")).unwrap(),
            "ed-1",
        ),
        _ => (
            EncodingKey::from_rsa_pem(&key("rsa_private.pem")).unwrap(),
            "rsa-1",
        ),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let claims = json!({"iss": ISS, "aud": "bench-api", "sub": format!("user-{i}"), "sid": format!("sid-{i}"),
        "jti": format!("jti-{i}"), "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(&h, &claims, &k).unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("db"));
    let clock = revgate::clock::system();
    let now = clock.now();
    let metrics = Metrics::default();
    let keys = Keyring::without_store(clock.clone());
    rt.block_on(keys.load_all(&cfg, &metrics)).unwrap();

    let mut group = c.benchmark_group("verify");
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let t = token(alg, now, 1);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{alg:?}")),
            &t,
            |b, t| {
                b.iter(|| {
                    rt.block_on(revgate::auth::verify_access_token(
                        &cfg, &keys, &metrics, now, t,
                    ))
                    .unwrap()
                })
            },
        );
    }
    group.finish();

    // A store with 100k revocations, none matching the benchmark token.
    let store =
        RevocationStore::open(&cfg.store.path, cfg.store.cache_bytes, clock.clone()).unwrap();
    let records: Vec<Record> = (0..100_000u64)
        .map(|i| Record {
            kind: [Kind::Jti, Kind::Sid, Kind::Sub][(i % 3) as usize],
            issuer: ISS.into(),
            value: format!("revoked-{i}"),
            revoked_at: now,
            issued_before: (i % 3 != 0).then_some(now),
            expires_at: now + 86_400,
            reason: None,
            source: Source::Admin,
        })
        .collect();
    for chunk in records.chunks(4096) {
        rt.block_on(store.import_records(chunk.to_vec())).unwrap();
    }
    let t = token(Algorithm::RS256, now, 7);
    let mut group = c.benchmark_group("decision");
    group.bench_function("uncached_rs256", |b| {
        b.iter(|| {
            let v = rt
                .block_on(revgate::auth::verify_access_token(
                    &cfg, &keys, &metrics, now, &t,
                ))
                .unwrap();
            assert!(store
                .find_match(&v.issuer, &v.jti, v.sid.as_deref(), v.sub.as_deref(), v.iat)
                .unwrap()
                .is_none());
        })
    });
    let mut cached_cfg = cfg.clone();
    cached_cfg.auth.verified_token_cache = 10_000;
    let app = revgate::App::new(cached_cfg, None, store.clone(), clock.clone());
    rt.block_on(app.keys.load_all(&app.config(), &app.metrics))
        .unwrap();
    // The snapshot a request takes once, as the endpoints do.
    let snapshot = app.snapshot();
    group.bench_function("cached_rs256", |b| {
        b.iter(|| {
            let v = rt.block_on(app.verify(&snapshot, &t)).unwrap();
            assert!(app
                .store
                .find_match(&v.issuer, &v.jti, v.sid.as_deref(), v.sub.as_deref(), v.iat)
                .unwrap()
                .is_none());
        })
    });
    group.finish();
}

criterion_group!(decision, benches);
criterion_main!(decision);
