//! The environ an app sees for an HTTP request (PEP 3333's variables, the
//! request headers), borrowed from the request: nothing is copied but a
//! header value that is not UTF-8.

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::Version;
use plugin_api::host::{Header, RequestVars};

use super::AppCall;
use crate::server::http::request_id;

/// Builds the environ from the request and hands it to `f`: the variables,
/// the headers, and the variables beyond those (`SSL_CLIENT_*`).
pub fn with_environ<R>(
    call: &AppCall,
    parts: &Parts,
    f: impl FnOnce(&RequestVars<'_>, &[Header<'_>], &[Header<'_>]) -> R,
) -> R {
    // An absolute-form target (or HTTP/2's :authority) names the host;
    // Host is then ignored (RFC 9112 §3.2.2), so the app sees the target's.
    let target_host = parts.uri.authority().map(|a| a.as_str());
    // Several Cookie fields (HTTP/2 clients split them to compress
    // better) become one, joined with "; " (RFC 9113 §8.2.3): joined with
    // ", " as other fields are, the first cookie would swallow the rest.
    let cookies = joined_cookies(&parts.headers);
    // The request's id (a trusted proxy's, or ours) is added below.
    let sent = || {
        parts.headers.iter().filter(|(name, _)| {
            **name != request_id::X_REQUEST_ID && (cookies.is_none() || **name != hyper::header::COOKIE)
        })
    };
    // Header values are passed as UTF-8; the rare value that is not gets a
    // lossy copy (no allocation when every value is fine).
    let repaired: Vec<String> = sent()
        .filter(|(name, value)| text_of(name, value, target_host).is_none())
        .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    let mut repaired = repaired.iter();
    // Room for the id, a Host from :authority and the joined cookies.
    let mut headers: Vec<Header<'_>> = Vec::with_capacity(parts.headers.len() + 3);
    headers.extend(sent().map(|(name, value)| {
        let text = text_of(name, value, target_host).unwrap_or_else(|| repaired.next().map_or("", String::as_str));
        Header::new(name.as_str(), text)
    }));
    if let Some(cookies) = &cookies {
        headers.push(Header::new(hyper::header::COOKIE.as_str(), cookies));
    }
    headers.push(Header::new(request_id::X_REQUEST_ID.as_str(), call.facts.id.as_str()));
    // HTTP/2 names the host in :authority, usually without a Host header.
    if let (Some(host), false) = (target_host, parts.headers.contains_key(hyper::header::HOST)) {
        headers.push(Header::new("host", host));
    }
    let conn = &call.conn;
    let forwarded = conn.trusted_proxy.then(|| call.state.proxies.read(&parts.headers));
    let (client, scheme) = match &forwarded {
        Some(f) => (f.client.as_deref(), f.scheme),
        None => (None, None),
    };
    let vars = RequestVars {
        method: parts.method.as_str(),
        script_name: script_name(&call.mount),
        path_info: &call.path_info,
        query_string: parts.uri.query().unwrap_or_default(),
        server_name: &conn.server_name,
        server_port: &conn.server_port,
        server_protocol: protocol(parts.version),
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

/// The request's Cookie fields as one value joined with `"; "`, when it
/// has more than one (else `None`: the one field is passed as it is).
fn joined_cookies(headers: &hyper::HeaderMap) -> Option<String> {
    let mut fields = headers.get_all(hyper::header::COOKIE).iter();
    let first = fields.next()?;
    let mut rest = fields.peekable();
    rest.peek()?;
    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for field in rest {
        joined.push_str("; ");
        joined.push_str(&String::from_utf8_lossy(field.as_bytes()));
    }
    Some(joined)
}

/// `SCRIPT_NAME` for a mount prefix (empty at the root and for suffix
/// patterns, whose app sees the whole path).
pub fn script_name(prefix: &str) -> &str {
    if prefix == "/" || prefix.starts_with('*') {
        ""
    } else {
        prefix
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

/// What the app sees of one header: its value as UTF-8 (`None` if it is
/// not), or for Host the target's host when the target names one.
fn text_of<'a>(name: &HeaderName, value: &'a HeaderValue, target_host: Option<&'a str>) -> Option<&'a str> {
    match target_host {
        Some(host) if name == hyper::header::HOST => Some(host),
        _ => std::str::from_utf8(value.as_bytes()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_cookie_fields_join_with_a_semicolon_and_one_is_left_alone() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(joined_cookies(&headers), None);
        headers.append(hyper::header::COOKIE, HeaderValue::from_static("a=1"));
        assert_eq!(joined_cookies(&headers), None, "one field is passed as it is");
        headers.append(hyper::header::COOKIE, HeaderValue::from_static("b=2"));
        headers.append(hyper::header::COOKIE, HeaderValue::from_static("c=3; d=4"));
        assert_eq!(joined_cookies(&headers).as_deref(), Some("a=1; b=2; c=3; d=4"));
    }
}
