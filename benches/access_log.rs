//! Cost of one access-log line (`revgate::access`, the fields `proxy/access.rs` writes),
//! formatted by the same `tracing_subscriber::fmt` layer `revgate serve` installs, text and
//! JSON ([`revgate::logline::JsonLines`]; tracing-subscriber's own JSON for comparison),
//! into a sink: what each proxied request pays for the access log besides the
//! buffered write (benches/README.md compares it with the cost of a proxied request).

use std::net::IpAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};

fn line(peer: IpAddr, started: Instant) {
    let method = http::Method::GET;
    tracing::info!(
        target: revgate::proxy::ACCESS_TARGET,
        request_id = %"6f1c2a9d3b4e5f60-0000002a",
        peer = %peer,
        client = Option::<tracing::field::DisplayValue<IpAddr>>::None,
        method = %method,
        path = %"/api/orders/42",
        route = Some("/api"),
        status = 200u16,
        outcome = "allowed",
        upstream_ms = Some(0.412f64),
        total_ms = started.elapsed().as_micros() as f64 / 1000.0,
        bytes = 512u64,
        "request"
    );
}

fn bench(c: &mut Criterion) {
    let peer: IpAddr = "10.0.0.7".parse().unwrap();
    let started = Instant::now();
    let mut group = c.benchmark_group("access_line");
    let text = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(text, || {
        group.bench_function("text", |b| b.iter(|| line(peer, started)));
    });
    let json = tracing_subscriber::fmt()
        .event_format(revgate::logline::JsonLines)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(json, || {
        group.bench_function("json", |b| b.iter(|| line(peer, started)));
    });
    // tracing-subscriber's own JSON format, for comparison (what JsonLines replaces).
    let json = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(json, || {
        group.bench_function("json_tracing_subscriber", |b| {
            b.iter(|| line(peer, started))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
