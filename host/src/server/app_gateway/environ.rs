//! The environ an app sees for an HTTP request (PEP 3333's variables, the
//! request headers), borrowed from the request: nothing is copied but a
//! header value that is not UTF-8.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, HOST};
use plugin_api::host::{Header, RequestVars};

use super::mount::script_name;
use super::AppRequest;
use crate::server::http::{forwarded, request_id};

/// Builds the environ from the request and hands it to `f`: the variables,
/// the headers, and the variables beyond those (`SSL_CLIENT_*`).
pub fn with_environ<R>(
    request: &AppRequest<'_>,
    f: impl FnOnce(&RequestVars<'_>, &[Header<'_>], &[Header<'_>]) -> R,
) -> R {
    let parts = &request.ctx.head;
    let sent = Sent::of(&parts.headers, parts.uri.authority().map(|a| a.as_str()));
    // Header values are passed as UTF-8; the rare request with a value that
    // is not gets lossy copies (no allocation when every value is fine).
    let repaired: Vec<String>;
    let mut headers = match sent.headers() {
        Some(headers) => headers,
        None => {
            repaired = sent.repaired();
            sent.headers_repaired(&repaired)
        }
    };
    // Several Cookie fields (HTTP/2 clients split them to compress
    // better) become one, joined with "; " (RFC 9113 §8.2.3): joined with
    // ", " as other fields are, the first cookie would swallow the rest.
    let joined;
    if sent.cookies > 1 {
        joined = joined_cookies(&parts.headers);
        headers.retain(|h| h.name() != hyper::header::COOKIE.as_str());
        headers.push(Header::new(hyper::header::COOKIE.as_str(), &joined));
    }
    // The request's id (a trusted proxy's, or ours), in place of any the
    // client sent.
    headers.push(Header::new(request_id::X_REQUEST_ID.as_str(), request.ctx.id.as_str()));
    // HTTP/2 names the host in :authority, usually without a Host header.
    if let (Some(host), false) = (sent.target_host, sent.has_host) {
        headers.push(Header::new("host", host));
    }
    let conn = &request.ctx.conn.info;
    let forwarded = (conn.trusted_proxy && sent.forwarded).then(|| request.state.proxies.read(&parts.headers));
    let (client, scheme) = match &forwarded {
        Some(f) => (f.client.as_deref(), f.scheme),
        None => (None, None),
    };
    let vars = RequestVars {
        method: parts.method.as_str(),
        script_name: script_name(&request.mount.prefix),
        path_info: request.path_info,
        query_string: parts.uri.query().unwrap_or_default(),
        server_name: &conn.server_name,
        server_port: &conn.server_port,
        server_protocol: request.ctx.protocol(),
        remote_addr: client.unwrap_or(&conn.remote_addr),
        // The proxy's port says nothing of the client's.
        remote_port: if client.is_some() { "" } else { &conn.remote_port },
        url_scheme: scheme.unwrap_or(if conn.https { "https" } else { "http" }),
        multithread: true,
        multiprocess: false,
        run_once: false,
    };
    let extra = conn.client_cert.as_ref().map_or(&[][..], |cert| cert.pairs());
    f(&vars, &headers, extra)
}

/// What one pass over the request's headers found: the headers the app
/// gets (all but `X-Request-Id`, which the server sets), and the few the
/// environ treats apart.
struct Sent<'h> {
    headers: &'h HeaderMap,
    /// An absolute-form target (or HTTP/2's :authority) names the host;
    /// Host is then ignored (RFC 9112 §3.2.2), so the app sees the target's.
    target_host: Option<&'h str>,
    has_host: bool,
    cookies: usize,
    /// A forwarding header is there (for a trusted proxy to be read).
    forwarded: bool,
}

impl<'h> Sent<'h> {
    fn of(headers: &'h HeaderMap, target_host: Option<&'h str>) -> Sent<'h> {
        let mut sent = Sent {
            headers,
            target_host,
            has_host: false,
            cookies: 0,
            forwarded: false,
        };
        for (name, _) in headers {
            if name == HOST {
                sent.has_host = true;
            } else if name == COOKIE {
                sent.cookies += 1;
            } else if forwarded::is_forwarding(name) {
                sent.forwarded = true;
            }
        }
        sent
    }

    /// The headers the app gets, in order, with room for three more; `None`
    /// if a value is not UTF-8.
    fn headers(&self) -> Option<Vec<Header<'h>>> {
        let mut utf8 = true;
        let headers = self.collect(|value| {
            std::str::from_utf8(value.as_bytes()).unwrap_or_else(|_| {
                utf8 = false;
                ""
            })
        });
        utf8.then_some(headers)
    }

    /// Every value as UTF-8, lossily where it is not.
    fn repaired(&self) -> Vec<String> {
        self.passed()
            .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    }

    /// The headers the app gets, with the values of [`Sent::repaired`].
    fn headers_repaired<'r>(&self, repaired: &'r [String]) -> Vec<Header<'r>>
    where
        'h: 'r,
    {
        let mut values = repaired.iter();
        self.collect(|_| values.next().map_or("", String::as_str))
    }

    /// The headers the app gets, each value as `text` makes it.
    fn collect<'t>(&self, mut text: impl FnMut(&'h HeaderValue) -> &'t str) -> Vec<Header<'t>>
    where
        'h: 't,
    {
        let mut headers = Vec::with_capacity(self.headers.len() + 3);
        for (name, value) in self.passed() {
            let text = match self.target_host {
                Some(host) if name == HOST => {
                    let _ = text(value);
                    host
                }
                _ => text(value),
            };
            headers.push(Header::new(name.as_str(), text));
        }
        headers
    }

    /// The headers passed on to the app.
    fn passed(&self) -> impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)> {
        self.headers
            .iter()
            .filter(|(name, _)| **name != request_id::X_REQUEST_ID)
    }
}

/// The request's Cookie fields as one value joined with `"; "`.
fn joined_cookies(headers: &HeaderMap) -> String {
    let mut joined = String::new();
    for field in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.push_str("; ");
        }
        joined.push_str(&String::from_utf8_lossy(field.as_bytes()));
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_the_cookies_host_and_forwarding_and_joins_cookies_with_a_semicolon() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        let sent = Sent::of(&headers, None);
        assert_eq!((sent.cookies, sent.has_host, sent.forwarded), (1, false, false));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        headers.append(COOKIE, HeaderValue::from_static("c=3; d=4"));
        headers.append(HOST, HeaderValue::from_static("a.example"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let sent = Sent::of(&headers, None);
        assert_eq!((sent.cookies, sent.has_host, sent.forwarded), (3, true, true));
        assert_eq!(joined_cookies(&headers), "a=1; b=2; c=3; d=4");
    }

    #[test]
    fn a_value_that_is_not_utf8_is_repaired_and_the_target_names_the_host() {
        let mut headers = HeaderMap::new();
        headers.append(HOST, HeaderValue::from_static("ignored.example"));
        headers.append("x-a", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append(request_id::X_REQUEST_ID.clone(), HeaderValue::from_static("client's"));
        let sent = Sent::of(&headers, Some("target.example"));
        assert!(sent.headers().is_none(), "not every value is UTF-8");
        let repaired = sent.repaired();
        let passed: Vec<_> = sent
            .headers_repaired(&repaired)
            .iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect();
        assert_eq!(
            passed,
            [
                ("host".to_owned(), "target.example".to_owned()),
                ("x-a".to_owned(), "caf\u{fffd}".to_owned())
            ]
        );
    }
}
