//! What both targets share: a fixed configuration whose only issuer has the test keys of
//! `tests/keys/` as a `jwks_file` (an unknown `kid` never causes a network fetch), a
//! keyring loaded once, a current-thread runtime, and a fixed "now".

use std::sync::{Arc, OnceLock};

use revgate::auth::Keyring;
use revgate::clock::ManualClock;
use revgate::config::Config;
use revgate::metrics::Metrics;

/// "Now" for the fuzzed checks (the seeds are valid at this instant).
pub const NOW: u64 = 1_700_000_000;

/// The fixed state of a fuzz run.
pub struct Fixture {
    pub config: Config,
    pub keys: Keyring,
    pub metrics: Metrics,
    pub rt: tokio::runtime::Runtime,
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");
        let text = format!(
            r#"
[auth]
leeway = "60s"
max_token_lifetime = "1h"

[[issuer]]
issuer = "https://idp.test/"
audiences = ["api://one"]
jwks_file = "{keys_dir}/jwks.json"
hmac_secret_file = "{keys_dir}/hmac.secret"
algorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"]
logout_audiences = ["client-1"]
logout_algorithms = ["RS256", "ES256"]

[[route]]
upstream = "http://127.0.0.1:9"
"#
        );
        let config = Config::parse(&text, |_| None).expect("fuzz config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let keys = Keyring::without_store(ManualClock::new(NOW) as Arc<_>);
        let metrics = Metrics::default();
        rt.block_on(keys.load_all(&config, &metrics))
            .expect("test keys");
        Fixture {
            config,
            keys,
            metrics,
            rt,
        }
    })
}
