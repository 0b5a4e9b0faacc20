//! The in-process gateway ([`Gateway`]) and the config texts the tests run it with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use revgate::clock::SharedClock;
use revgate::config::Config;
use revgate::App;

use super::keys::key_path;
use super::keys::ISS;
use super::tokens::{AUD, CLIENT_ID};
use super::WAIT;

/// A running in-process gateway, started the way `revgate serve` starts
/// (`revgate::Gateway::start_on`: open the store, load the keys, run on the listeners).
pub struct Gateway {
    /// Proxy listener address.
    pub proxy: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// Shared state (store, metrics, clock).
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Starts a gateway from config text with the system clock.
    pub async fn start(config_text: &str) -> Gateway {
        Gateway::start_with_clock(config_text, revgate::clock::system()).await
    }

    /// Starts a gateway from config text with the given clock.
    pub async fn start_with_clock(config_text: &str, clock: SharedClock) -> Gateway {
        let config = Config::parse(config_text, |_| None).expect("valid test config");
        let listeners = bind(&config).await;
        Gateway::launch(config, None, clock, listeners).await
    }

    /// Starts a gateway from config text on listeners bound beforehand (when a peer must
    /// know the gateway's address before the gateway's config can be written).
    pub async fn start_on(config_text: &str, listeners: revgate::Listeners) -> Gateway {
        let config = Config::parse(config_text, |_| None).expect("valid test config");
        Gateway::launch(config, None, revgate::clock::system(), listeners).await
    }

    /// Starts a gateway from the config file at `path` (checked exactly as `revgate serve`
    /// and a reload check it), with the system clock. Its `POST /v1/reload` re-reads `path`.
    pub async fn start_from_file(path: &Path) -> Gateway {
        let config = revgate::reload::check_file(path).expect("valid test config file");
        let listeners = bind(&config).await;
        Gateway::launch(
            config,
            Some(path.to_path_buf()),
            revgate::clock::system(),
            listeners,
        )
        .await
    }

    /// Opens the store, loads the keys and runs the gateway on `listeners`.
    async fn launch(
        config: Config,
        path: Option<PathBuf>,
        clock: SharedClock,
        listeners: revgate::Listeners,
    ) -> Gateway {
        let gateway = revgate::Gateway::start_on(config, path, clock, listeners)
            .await
            .expect("gateway starts");
        let proxy = gateway.proxy_addr();
        let admin = gateway.admin_addr();
        let app = gateway.app().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async move {
            let _ = rx.await;
        }));
        Gateway {
            proxy,
            admin,
            app,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop; waits (bounded) until the store is released.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("gateway stops within the bound")
                .expect("gateway task");
        }
    }
}

/// Binds the listeners `config` names (127.0.0.1:0 in the test configs).
async fn bind(config: &Config) -> revgate::Listeners {
    revgate::Listeners::bind(config.server.listen, config.server.admin_listen)
        .await
        .expect("bind")
}

/// Config text for a gateway on 127.0.0.1:0 with the test issuer, an upstream, and a
/// store at `store`: routes `/` (token), `/public` (public) and `/admin-area` (scope
/// `admin`), all to `upstream`; sweeps hourly. `extra` is appended TOML.
pub fn config_text(upstream: SocketAddr, store: &Path, extra: &str) -> String {
    let head = config_head(
        r#""RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA""#,
        &format!("logout_audiences = [\"{CLIENT_ID}\"]\nlogout_algorithms = [\"RS256\"]\n"),
    );
    let store = store_table(store);
    format!(
        r#"{head}
[[route]]
prefix = "/"
upstream = "http://{upstream}"

[[route]]
prefix = "/public"
upstream = "http://{upstream}"
public = true

[[route]]
prefix = "/admin-area"
upstream = "http://{upstream}"
scopes = ["admin"]

{store}{extra}
"#
    )
}

/// Like [`config_text`] but with only the given `[[route]]` tables (no default routes)
/// and algorithms RS256 and ES256.
pub fn config_with_routes(store: &Path, routes: &str) -> String {
    let head = config_head(r#""RS256", "ES256""#, "");
    let store = store_table(store);
    format!("{head}\n{store}\n{routes}\n")
}

/// The `[server]` (both listeners on 127.0.0.1:0), `[[issuer]]` and `[auth]` tables of
/// the test configs: the test issuer with audiences [`AUD`] and `api://two`, the keys of
/// `jwks.json`, the quoted `algorithms` and the `issuer_more` lines; leeway 60 s, max
/// token lifetime 1 h.
fn config_head(algorithms: &str, issuer_more: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[issuer]]
issuer = "{ISS}"
audiences = ["{AUD}", "api://two"]
jwks_file = "{jwks}"
algorithms = [{algorithms}]
{issuer_more}
[auth]
leeway = "60s"
max_token_lifetime = "1h"
"#,
        jwks = key_path("jwks.json"),
    )
}

/// The `[store]` table: the store at `store`, swept hourly.
fn store_table(store: &Path) -> String {
    format!(
        "[store]\npath = \"{}\"\nsweep_interval = \"1h\"\n",
        store.display()
    )
}

/// A `[[route]]` table for `prefix` to `upstream` (a URL), with `more` TOML lines in it.
pub fn route_table(prefix: &str, upstream: &str, more: &str) -> String {
    format!("\n[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{more}\n")
}

/// `config_text` with `server_line` added to the `[server]` section (e.g.
/// `max_body_bytes = 1`).
pub fn config_text_with_server(
    upstream: SocketAddr,
    store: &Path,
    server_line: &str,
    extra: &str,
) -> String {
    config_text(upstream, store, extra).replacen(
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!("admin_listen = \"127.0.0.1:0\"\n{server_line}\n"),
        1,
    )
}

/// `config` with `keys` (TOML lines) added to its `[server]` table (e.g. limits).
pub fn with_server_keys(config: &str, keys: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1)
}

/// `config` with `store.sweep_interval` replaced.
pub fn with_sweep_interval(config: &str, interval: &str) -> String {
    config.replacen(
        "sweep_interval = \"1h\"",
        &format!("sweep_interval = \"{interval}\""),
        1,
    )
}

/// Writes `text` to `dir/revgate.toml` and returns the path.
pub fn write_config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("revgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Writes `text` to `path` atomically (temp file + rename), as an operator's editor or
/// configuration management would: a reader never sees half a file.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}
