//! The commands that run, check or prepare a gateway: `serve` (the start-up script:
//! config, telemetry, [`Gateway::start`], run until a signal), `demo`, `check-config` and
//! `discover`.

use std::path::Path;

use super::output::CliError;
use super::runtime;
use crate::config::{Config, LogFormat};
use crate::Gateway;

/// `serve`: reads and checks the config file (exit 64 when bad, before any port or store is
/// touched), sets up logging as it says, starts the gateway (store, listeners, keys) and
/// serves until SIGTERM / SIGINT, then drains and flushes.
pub(super) fn serve(path: &Path) -> Result<(), CliError> {
    let config = checked_config(path)?;
    crate::telemetry::init_tracing(config.server.log_format);
    runtime().block_on(async move {
        let gateway = Gateway::start(config, Some(path.to_path_buf()), crate::clock::system())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        gateway.run(crate::server::shutdown_signal()).await;
        Ok(())
    })
}

/// `demo`: [`crate::demo::run_demo`] with text logs.
pub(super) fn demo() -> Result<(), CliError> {
    crate::telemetry::init_tracing(LogFormat::Text);
    runtime()
        .block_on(crate::demo::run_demo())
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// `check-config`: the checks of [`checked_config`], then the effective settings.
pub(super) fn check_config(path: &Path) -> Result<(), CliError> {
    let config = checked_config(path)?;
    println!("# {}: OK", path.display());
    print!("{}", config.effective_toml());
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
    use std::io::Write as _;
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
