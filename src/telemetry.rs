//! Logging: one `tracing` subscriber writing to stderr, as text or JSON lines
//! (`server.log_format`), filtered by `RUST_LOG` (default `info`). Installed once per
//! process by the CLI; every log line of the gateway goes through it.

use crate::config::LogFormat;

/// Installs the process-wide subscriber (a second call changes nothing).
pub(crate) fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
