//! The access log: one line per request through `log` (target `access`),
//! as text or as correctly escaped JSON.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use hyper::Uri;

use crate::config::AccessLogFormat;

/// Where finished requests are recorded.
pub struct AccessLog {
    format: AccessLogFormat,
    /// Decided once: asking the logger costs more than a request.
    enabled: bool,
}

/// One finished request.
pub struct Entry<'a> {
    /// The client's address.
    pub remote: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request target (path and query, as sent).
    pub target: &'a str,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a str,
    /// The status sent (0 if none was).
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From arrival to the end of the response.
    pub duration: Duration,
}

impl AccessLog {
    /// An access log in `format`, written if the logger (set up before
    /// this) lets `access` lines through.
    pub fn new(format: AccessLogFormat) -> Self {
        let enabled = format != AccessLogFormat::Off && log::log_enabled!(target: "access", log::Level::Info);
        Self { format, enabled }
    }

    /// Records one request.
    pub fn record(&self, entry: &Entry<'_>) {
        if !self.enabled {
            return;
        }
        let time = httpdate::fmt_http_date(SystemTime::now());
        let millis = entry.duration.as_secs_f64() * 1e3;
        match self.format {
            AccessLogFormat::Off => {}
            AccessLogFormat::Text => log::info!(
                target: "access",
                "{} [{time}] \"{} {} {}\" {} {} {millis:.3}ms",
                entry.remote,
                entry.method,
                entry.target.escape_debug(),
                entry.protocol,
                entry.status,
                entry.bytes
            ),
            AccessLogFormat::Json => log::info!(
                target: "access",
                "{}",
                serde_json::json!({
                    "remote": entry.remote,
                    "time": time,
                    "method": entry.method,
                    "path": entry.target,
                    "protocol": entry.protocol,
                    "status": entry.status,
                    "bytes": entry.bytes,
                    "duration_ms": (millis * 1000.0).round() / 1000.0,
                })
            ),
        }
    }
}

/// A request target as the log shows it: as sent for origin-form, the
/// whole URI for the other forms (absolute, authority, `*`).
pub fn target_of(uri: &Uri) -> Cow<'_, str> {
    match (uri.authority(), uri.path_and_query()) {
        (None, Some(path)) => Cow::Borrowed(path.as_str()),
        _ => Cow::Owned(uri.to_string()),
    }
}
