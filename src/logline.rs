//! How log lines reach stderr, for `revgate serve`'s subscriber: [`LogWriter`] buffers the
//! access lines (one `write` for many requests, never one per request) and writes every
//! other line at once; [`JsonLines`] is the JSON line format (`server.log_format = "json"`),
//! the same objects as `tracing-subscriber`'s JSON format —
//! `{"timestamp":…,"level":…,"fields":{"message":…,…},"target":…}` — written straight into
//! the line instead of through a map of owned values, so an access line costs about half.
//! Lines carry no span fields (revgate opens no spans).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::proxy::ACCESS_TARGET;

/// Most bytes of access lines held before they are written (one `write` for many lines).
pub const ACCESS_BUFFER_BYTES: usize = 64 * 1024;
/// Longest an access line waits in the buffer before it is written.
pub const ACCESS_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The log writer for stderr (`tracing_subscriber::fmt().with_writer(LogWriter)`): access
/// lines (target [`ACCESS_TARGET`]) are buffered up to [`ACCESS_BUFFER_BYTES`] and written
/// at least every [`ACCESS_FLUSH_INTERVAL`] by a background thread, so a busy proxy does
/// not pay one `write` system call per request (as nginx's `access_log ... buffer=`
/// `flush=`); every other line is written at once, after the access lines before it, so
/// the order of lines is kept. Lines are never split: each is one `write_all` into the
/// buffer. A `kill -9` can lose the access lines of the last interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One line's writer: into the buffer, flushed at once unless it is an access line.
pub struct LogLine {
    access: bool,
}

fn log_buffer() -> &'static std::sync::Mutex<std::io::BufWriter<std::io::Stderr>> {
    static BUFFER: std::sync::OnceLock<std::sync::Mutex<std::io::BufWriter<std::io::Stderr>>> =
        std::sync::OnceLock::new();
    BUFFER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("revgate-log-flush".into())
            .spawn(|| loop {
                std::thread::sleep(ACCESS_FLUSH_INTERVAL);
                flush_logs();
            });
        if let Err(e) = spawned {
            eprintln!(
                "revgate: cannot start the log flusher ({e}); access lines are written at once"
            );
        }
        std::sync::Mutex::new(std::io::BufWriter::with_capacity(
            ACCESS_BUFFER_BYTES,
            std::io::stderr(),
        ))
    })
}

/// Writes out the buffered access lines (the flusher thread does it every
/// [`ACCESS_FLUSH_INTERVAL`], and every other line does it before itself, shutdown's last
/// `stopped` line included).
pub fn flush_logs() {
    use std::io::Write as _;
    let mut buffer = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
    let _ = buffer.flush();
}

impl std::io::Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut buffer = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
        buffer.write_all(bytes)?;
        if self.access {
            Ok(())
        } else {
            buffer.flush()
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { access: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine {
        LogLine {
            access: meta.target() == ACCESS_TARGET,
        }
    }
}

/// The JSON line format (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
        let mut fields = JsonFields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("},\"target\":")?;
        json_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `"name":value` into the line.
struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(',')?;
        }
        json_string(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |w| json_string(w, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities.
        self.put(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `text` as a JSON string, quotes included.
fn json_string(w: &mut impl fmt::Write, text: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(text)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string (RFC 8259 §7).
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in text.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything written, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit() {
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        tracing::info!(
            target: "revgate::access",
            request_id = %"r-1",
            peer = %ip,
            path = %"/a\"b\\c\u{1}",
            route = Some("/api"),
            missing = Option::<u64>::None,
            status = 200u16,
            neg = -3i64,
            ok = true,
            ms = 0.25f64,
            nan = f64::NAN,
            outcome = "allowed",
            debug = ?vec![1, 2],
            "request \"quoted\"\n"
        );
    }

    fn capture(json: bool) -> serde_json::Value {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt().with_writer(move || sink.clone());
        if json {
            tracing::subscriber::with_default(builder.event_format(JsonLines).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.json().finish(), emit);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn json_lines_are_the_objects_of_tracing_subscribers_json_format() {
        let mut ours = capture(true);
        let mut theirs = capture(false);
        let (a, b) = (ours["timestamp"].take(), theirs["timestamp"].take());
        assert!(a.as_str().unwrap().ends_with('Z') && b.as_str().unwrap().ends_with('Z'));
        // tracing-subscriber writes a NaN as a string; JSON has no NaN, ours is null.
        assert_eq!(ours["fields"]["nan"].take(), serde_json::Value::Null);
        theirs["fields"]["nan"].take();
        assert_eq!(ours, theirs);
        assert_eq!(ours["fields"]["path"], "/a\"b\\c\u{1}");
        assert_eq!(ours["fields"]["ms"], 0.25);
    }
}
