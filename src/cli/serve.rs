//! The commands that run, check or prepare a gateway: `serve` (the start-up script:
//! config, telemetry, [`Gateway::start`], run until a signal), `demo`, `check-config` and
//! `discover`.

use std::io::Write as _;
use std::path::Path;

use super::config_file::required_from_env;
use super::output::CliError;
use super::runtime;
use crate::config::{Config, LogFormat};
use crate::Gateway;

/// `serve`: reads and checks the config file (exit 64 when bad, before any port or store is
/// touched), sets up logging as it says, starts the gateway (store, listeners, keys) and
/// serves until SIGTERM / SIGINT, then drains and flushes.
pub(super) fn serve(path: Option<&Path>, env_warnings: &[String]) -> Result<(), CliError> {
    let path = required_from_env(path)?;
    let config = checked_config(&path)?;
    crate::telemetry::init_tracing(config.server.log_format);
    for warning in env_warnings.iter().chain(&config.warnings()) {
        tracing::warn!(config = %path.display(), "{warning}");
    }
    runtime().block_on(async move {
        let gateway = Gateway::start(config, Some(path), crate::clock::system())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        gateway.run(crate::server::shutdown_signal()).await;
        Ok(())
    })
}

/// `demo`: [`crate::demo::run_demo`] with text logs.
pub(super) fn demo(env_warnings: &[String]) -> Result<(), CliError> {
    crate::telemetry::init_tracing(LogFormat::Text);
    for warning in env_warnings {
        tracing::warn!("{warning}");
    }
    runtime()
        .block_on(crate::demo::run_demo())
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// `check-config`: the checks of [`checked_config`], then the effective settings.
/// Settings that are valid but probably wrong are `warning:` lines on stderr (exit 0).
pub(super) fn check_config(path: Option<&Path>) -> Result<(), CliError> {
    let path = required_from_env(path)?;
    let config = checked_config(&path)?;
    println!("# {}: OK", path.display());
    print!("{}", config.effective_toml());
    let mut err = std::io::stderr().lock();
    for warning in config.warnings() {
        let _ = writeln!(
            err,
            "revgate check-config: warning: {}: {warning}",
            path.display()
        );
    }
    Ok(())
}

/// Config file plus its local keys, exactly as a reload checks it (exit 64 when bad).
fn checked_config(path: &Path) -> Result<Config, CliError> {
    crate::reload::check_file(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// `discover`: the `[[issuer]]` block on stdout; the provider, what is left to do and the
/// warnings on stderr.
pub(super) fn discover(
    issuer_url: &str,
    client_id: Option<String>,
    audience: Option<String>,
) -> Result<(), CliError> {
    let options = crate::discover::DiscoverOptions {
        client_id,
        audience,
    };
    let found = runtime()
        .block_on(crate::discover::discover(issuer_url, &options))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    print!("{}", found.toml);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "revgate discover: {} at {issuer_url}",
        found.provider.name()
    );
    for item in &found.todo {
        let _ = writeln!(err, "to do: {item}");
    }
    for warning in &found.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    Ok(())
}
