//! Logging: one `tracing` subscriber writing to stderr, as text or JSON lines
//! (`server.log_format`), filtered by `RUST_LOG` (default `info`). Installed once per
//! process by the CLI; every log line of the gateway goes through it, written by
//! [`crate::logline::LogWriter`] (access lines buffered, the rest at once).

use crate::config::LogFormat;

/// Installs the process-wide subscriber (a second call changes nothing).
pub(crate) fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: journald and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(crate::logline::LogWriter);
    let _ = match format {
        LogFormat::Json => builder.event_format(crate::logline::JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
