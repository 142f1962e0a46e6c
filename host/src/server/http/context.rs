//! One request as every layer sees it: its head, the connection it came
//! on, its id and when it arrived. Built once when the request arrives,
//! borrowed down the path, and moved whole where the request leaves the
//! connection's task (an app thread, an async app's body, a WebSocket).
//! The access log, the counters and the in-flight board read it; nothing
//! copies its facts.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use hyper::header::{HeaderValue, REFERER, USER_AGENT};
use hyper::http::request::Parts;
use hyper::{Method, Uri, Version};

use super::connection::Connection;
use super::request_id::RequestId;

/// One request, from its arrival to its response.
pub struct RequestContext {
    /// The request's head (its body goes its own way).
    pub head: Parts,
    /// The connection it came on.
    pub conn: Arc<Connection>,
    /// Its id (`X-Request-Id`).
    pub id: RequestId,
    /// When it arrived: the one clock reading its timings start from.
    pub started: Instant,
}

impl RequestContext {
    /// The request method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// `SERVER_PROTOCOL`: `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub fn protocol(&self) -> &'static str {
        protocol(self.head.version)
    }

    /// The target as the log shows it (see [`target_of`]).
    pub fn target(&self) -> Cow<'_, str> {
        target_of(self.head.version, &self.head.uri)
    }

    /// The client's address (the peer's, or the PROXY header's).
    pub fn client(&self) -> &str {
        &self.conn.info.remote_addr
    }

    /// Whether a large file may go out with `sendfile` (cleartext HTTP/1).
    pub fn sendfile(&self) -> bool {
        self.conn.info.sendfile(self.head.version)
    }

    /// `Referer` and `User-Agent`, for Apache's combined log format.
    pub fn referer_and_agent(&self) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
        (self.head.headers.get(REFERER), self.head.headers.get(USER_AGENT))
    }
}

/// `SERVER_PROTOCOL` for a hyper version.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// A request target as the log shows it: as sent for origin-form, the
/// whole URI for the other forms (absolute, authority, `*`); HTTP/2's
/// `:path` (its `:scheme` and `:authority` are not part of the target).
pub fn target_of(version: Version, uri: &Uri) -> Cow<'_, str> {
    match (uri.authority(), uri.path_and_query()) {
        (_, Some(path)) if version == Version::HTTP_2 => Cow::Borrowed(path.as_str()),
        (None, Some(path)) => Cow::Borrowed(path.as_str()),
        _ => Cow::Owned(uri.to_string()),
    }
}
