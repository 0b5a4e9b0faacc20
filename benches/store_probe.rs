//! Helpers of the store-scale scripts (`benches/store-figures.sh`, `benches/store-scale.sh`):
//! a bench binary with subcommands, run as `cargo bench --bench store_probe -- CMD ARGS`.
//!
//! - `seed N ISSUER EXPIRE_IN OUT`: N revocations as NDJSON, random 128-bit values (as real
//!   jti/sid are), 80 % jti / 15 % sid / 5 % sub, all expiring EXPIRE_IN seconds from now.
//! - `token ISSUER AUDIENCE JTI`: an RS256 access token (test key `rsa-1`) with that jti,
//!   issued 5 s ago, valid for an hour; random sid and sub.
//! - `paced URL RATE SECONDS ISSUER AUDIENCE`: an open-loop load of RATE requests/s for
//!   SECONDS, each with one of 1000 valid (never revoked) tokens; latency is measured from
//!   the instant a request was due, not from when it was sent (no coordinated omission).
//!   Prints `sent=… ok=… p50_ms=… p99_ms=… max_ms=…`; fails on any answer but 200.
//! - `lookup STORE SEED`: opens the store (offline) and times `find_match` for revoked jtis
//!   read from the seed file (hits) and for random values (misses: jti, sid and sub).
//!   Prints `hit_ns=… miss_ns=…` (median of 25 rounds).
//! - `open-time STORE`: times sled's open of the store and a key scan of each tree.
//! - `sweep STORE`: sweeps the whole store in-process (as if a day had passed), timed.
//! - `chart CSV SVG`: renders the scale CSV as an SVG of small multiples (log N axis).

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Distinct valid tokens the paced load rotates through.
const PACED_TOKENS: usize = 1000;
/// Most requests in flight in the paced load (beyond that the load generator itself is
/// the bottleneck and the run fails).
const PACED_MAX_IN_FLIGHT: usize = 4096;
/// Hit keys read from the seed for `lookup`.
const LOOKUP_HITS: usize = 10_000;
/// Rounds of `lookup` (the median round is printed).
const LOOKUP_ROUNDS: usize = 25;

/// 128 random bits from std's randomly keyed SipHash (no extra dependency).
fn random_u128() -> u128 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut out = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out = (out << 64) | u128::from(h.finish());
    }
    out
}

/// A fast stream of random values (SplitMix64 seeded from [`random_u128`]).
struct Values(u64);

impl Values {
    fn new() -> Values {
        Values(random_u128() as u64)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// 32 hex digits: a random 128-bit value.
    fn hex128(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn seed(n: u64, issuer: &str, expire_in: u64, out: &Path) {
    let now = now();
    let ts = revgate::clock::rfc3339(now);
    let exp = revgate::clock::rfc3339(now + expire_in);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).unwrap());
    let mut values = Values::new();
    for i in 0..n {
        let value = values.hex128();
        match i % 20 {
            0..16 => writeln!(
                w,
                r#"{{"kind":"jti","issuer":"{issuer}","value":"{value}","revoked_at":"{ts}","issued_before":null,"expires_at":"{exp}","reason":null,"source":"admin"}}"#
            ),
            k => writeln!(
                w,
                r#"{{"kind":"{}","issuer":"{issuer}","value":"{value}","revoked_at":"{ts}","issued_before":"{ts}","expires_at":"{exp}","reason":null,"source":"admin"}}"#,
                if k < 19 { "sid" } else { "sub" }
            ),
        }
        .unwrap();
    }
    w.flush().unwrap();
}

fn rsa_key() -> EncodingKey {
    let pem =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa_private.pem"))
            .expect("tests/keys/rsa_private.pem");
    EncodingKey::from_rsa_pem(&pem).expect("RSA key")
}

fn token(
    key: &EncodingKey,
    issuer: &str,
    audience: &str,
    jti: &str,
    values: &mut Values,
) -> String {
    let n = now();
    let claims = serde_json::json!({
        "iss": issuer, "aud": audience, "iat": n - 5, "exp": n + 3600,
        "jti": jti, "sid": values.hex128(), "sub": values.hex128(),
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_string());
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn paced(url: &str, rate: u64, seconds: u64, issuer: &str, audience: &str) {
    let key = rsa_key();
    let mut values = Values::new();
    let tokens: Vec<String> = (0..PACED_TOKENS)
        .map(|_| {
            let jti = values.hex128();
            format!(
                "Bearer {}",
                token(&key, issuer, audience, &jti, &mut values)
            )
        })
        .collect();
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(PACED_MAX_IN_FLIGHT)
        .build()
        .unwrap();
    // Warm every token into the gateway's verified-token cache first (not measured).
    for t in &tokens {
        let r = client
            .get(url)
            .header("authorization", t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "warm-up request refused");
        r.bytes().await.unwrap();
    }
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(PACED_MAX_IN_FLIGHT));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<u64, String>>();
    let start = tokio::time::Instant::now();
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let permit = in_flight.clone().try_acquire_owned().expect(
            "more than PACED_MAX_IN_FLIGHT requests in flight: the load is not paced any more",
        );
        let req = client
            .get(url)
            .header("authorization", &tokens[i as usize % tokens.len()]);
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = match req.send().await {
                Ok(r) if r.status() == 200 => match r.bytes().await {
                    Ok(_) => Ok(due.elapsed().as_micros() as u64),
                    Err(e) => Err(e.to_string()),
                },
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            drop(permit);
            let _ = tx.send(result);
        });
    }
    drop(tx);
    let mut lat = Vec::with_capacity(total as usize);
    let mut failed = Vec::new();
    while let Some(r) = rx.recv().await {
        match r {
            Ok(us) => lat.push(us),
            Err(e) => failed.push(e),
        }
    }
    lat.sort_unstable();
    println!(
        "sent={total} ok={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    if let Some(e) = failed.first() {
        eprintln!("{} requests failed, first: {e}", failed.len());
        std::process::exit(1);
    }
}

fn lookup(store_path: &Path, seed_path: &Path) {
    use revgate::store::{OpenMode, RevocationStore};
    let store = RevocationStore::open_with(
        store_path,
        64 << 20,
        revgate::clock::system(),
        OpenMode::Check,
    )
    .expect("open the store");
    let mut hits: Vec<(String, String)> = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(seed_path).unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["kind"] == "jti" {
            hits.push((
                v["issuer"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            ));
            if hits.len() == LOOKUP_HITS {
                break;
            }
        }
    }
    let issuer = hits[0].0.clone();
    let mut values = Values::new();
    let misses: Vec<[String; 3]> = (0..LOOKUP_HITS)
        .map(|_| [values.hex128(), values.hex128(), values.hex128()])
        .collect();
    let iat = now();
    let mut hit_rounds = Vec::new();
    let mut miss_rounds = Vec::new();
    for _ in 0..LOOKUP_ROUNDS {
        let t = Instant::now();
        for (iss, jti) in &hits {
            let found = store.find_match(iss, jti, None, None, iat).unwrap();
            assert!(found.is_some(), "a seeded jti is not found");
        }
        hit_rounds.push(t.elapsed().as_nanos() as u64 / hits.len() as u64);
        let t = Instant::now();
        for [jti, sid, sub] in &misses {
            let found = store
                .find_match(&issuer, jti, Some(sid), Some(sub), iat)
                .unwrap();
            assert!(found.is_none(), "a random value matched");
        }
        miss_rounds.push(t.elapsed().as_nanos() as u64 / misses.len() as u64);
    }
    hit_rounds.sort_unstable();
    miss_rounds.sort_unstable();
    println!(
        "hit_ns={} miss_ns={}",
        hit_rounds[LOOKUP_ROUNDS / 2],
        miss_rounds[LOOKUP_ROUNDS / 2]
    );
}

/// Where restart time goes: sled's own open (log recovery) and a key scan of each tree,
/// timed with sled directly (the store must not be open elsewhere).
fn open_time(store: &Path) {
    let t = Instant::now();
    let db = sled::Config::new()
        .path(store)
        .cache_capacity(64 << 20)
        .open()
        .expect("open");
    print!("sled_open_ms={}", t.elapsed().as_millis());
    for name in ["jti", "sid", "sub", "logout_jti", "expiry"] {
        let tree = db.open_tree(name).unwrap();
        let t = Instant::now();
        let n = tree.iter().keys().count();
        print!(" {name}={n}/{}ms", t.elapsed().as_millis());
    }
    println!();
    drop(db);
    let t = Instant::now();
    let store = revgate::store::RevocationStore::open_with(
        store,
        64 << 20,
        revgate::clock::system(),
        revgate::store::OpenMode::Check,
    )
    .expect("open the store");
    println!(
        "store_open_ms={} counts={:?}",
        t.elapsed().as_millis(),
        store.counts()
    );
}

/// Sweeps everything in the store (as if a day had passed), in-process, for profiling.
async fn sweep(store: &Path) {
    use revgate::store::{RevocationStore, SWEEP_BATCH};
    let store = RevocationStore::open(store, 64 << 20, revgate::clock::system()).expect("open");
    let t = Instant::now();
    let report = store
        .sweep_due(now() + 86_400, SWEEP_BATCH)
        .await
        .expect("sweep");
    println!(
        "sweep_ms={} purged={}",
        t.elapsed().as_millis(),
        report.purged
    );
}

/// One panel of the chart: a CSV column against N.
struct Panel {
    column: &'static str,
    title: &'static str,
    scale: f64,
}

const PANELS: &[Panel] = &[
    Panel {
        column: "lookup_hit_ns",
        title: "lookup, hit (ns)",
        scale: 1.0,
    },
    Panel {
        column: "lookup_miss_ns",
        title: "lookup, miss: jti+sid+sub (ns)",
        scale: 1.0,
    },
    Panel {
        column: "restart_rss_kb",
        title: "RSS after restart (MB)",
        scale: 1.0 / 1024.0,
    },
    Panel {
        column: "import_peak_rss_kb",
        title: "peak RSS during import (MB)",
        scale: 1.0 / 1024.0,
    },
    Panel {
        column: "disk_bytes",
        title: "store on disk (MB)",
        scale: 1.0 / 1048576.0,
    },
    Panel {
        column: "restart_ms",
        title: "restart → first request (ms)",
        scale: 1.0,
    },
    Panel {
        column: "sweep_ms",
        title: "sweep of all N (ms)",
        scale: 1.0,
    },
    Panel {
        column: "import_rps",
        title: "import (records/s)",
        scale: 1.0,
    },
];

fn chart(csv: &Path, svg: &Path) {
    let text = std::fs::read_to_string(csv).expect("read the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let ncol = col("n");
    let (w, h, cols) = (300.0, 200.0, 4usize);
    let (ml, mr, mt, mb) = (52.0, 12.0, 28.0, 30.0);
    let width = w * cols as f64;
    let height = h * PANELS.len().div_ceil(cols) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    s.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let ns: Vec<f64> = rows.iter().map(|r| r[ncol]).collect();
    let (nmin, nmax) = (
        ns.iter().cloned().fold(f64::INFINITY, f64::min).log10(),
        ns.iter().cloned().fold(0.0, f64::max).log10(),
    );
    for (i, p) in PANELS.iter().enumerate() {
        let (x0, y0) = ((i % cols) as f64 * w, (i / cols) as f64 * h);
        let c = col(p.column);
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r[ncol].log10(), r[c] * p.scale))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let vmax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
        let px = |n: f64| x0 + ml + (n - nmin) / (nmax - nmin).max(1e-9) * (w - ml - mr);
        let py = |v: f64| y0 + h - mb - v / vmax * (h - mt - mb);
        s.push_str(&format!(
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x0 + ml,
            y0 + 16.0,
            p.title
        ));
        s.push_str(&format!(
            r##"<path d="M{} {} V{} H{}" stroke="#444" fill="none"/>"##,
            x0 + ml,
            y0 + mt,
            y0 + h - mb,
            x0 + w - mr
        ));
        for k in 0..=4 {
            let v = vmax * k as f64 / 4.0;
            s.push_str(&format!(
                r##"<text x="{}" y="{}" text-anchor="end" fill="#444">{}</text>"##,
                x0 + ml - 4.0,
                py(v) + 4.0,
                short(v)
            ));
        }
        for n in &ns {
            s.push_str(&format!(
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                px(n.log10()),
                y0 + h - mb + 14.0,
                short(*n)
            ));
        }
        let d: Vec<String> = pts
            .iter()
            .map(|(n, v)| format!("{:.1},{:.1}", px(*n), py(*v)))
            .collect();
        s.push_str(&format!(
            r##"<polyline points="{}" stroke="#1f77b4" stroke-width="2" fill="none"/>"##,
            d.join(" ")
        ));
        for (n, v) in &pts {
            s.push_str(&format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#1f77b4"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
                px(*n), py(*v), px(*n), py(*v) - 6.0, short(*v)
            ));
        }
    }
    s.push_str("</svg>\n");
    std::fs::write(svg, s).expect("write the SVG");
}

/// 1234567 → "1.2M", 0.5 → "0.5".
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; drop it and anything before the command.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing argument {i}; see the module doc"))
    };
    match args.first().map(String::as_str) {
        Some("seed") => seed(
            a(1).parse().unwrap(),
            a(2),
            a(3).parse().unwrap(),
            Path::new(a(4)),
        ),
        Some("token") => {
            let mut values = Values::new();
            println!("{}", token(&rsa_key(), a(1), a(2), a(3), &mut values));
        }
        Some("paced") => tokio::runtime::Runtime::new().unwrap().block_on(paced(
            a(1),
            a(2).parse().unwrap(),
            a(3).parse().unwrap(),
            a(4),
            a(5),
        )),
        Some("open-time") => open_time(Path::new(a(1))),
        Some("sweep") => tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(sweep(Path::new(a(1)))),
        Some("lookup") => lookup(Path::new(a(1)), Path::new(a(2))),
        Some("chart") => chart(Path::new(a(1)), Path::new(a(2))),
        // `cargo bench` without arguments runs every bench: nothing to do here.
        _ => eprintln!("store_probe: no command (see benches/store_probe.rs)"),
    }
}
