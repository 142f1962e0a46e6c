//! The environ an app sees for an HTTP request (PEP 3333's variables, the
//! request headers), borrowed from the request: nothing is copied but a
//! header value that is not UTF-8.

use hyper::http::request::Parts;
use hyper::Version;
use plugin_api::host::{Header, RequestVars};

use super::AppCall;
use crate::server::router;

/// Builds the environ from the request and hands it to `f`.
pub fn with_environ<R>(call: &AppCall, parts: &Parts, f: impl FnOnce(&RequestVars<'_>, &[Header<'_>]) -> R) -> R {
    // Header values are passed as UTF-8; the rare value that is not gets a
    // lossy copy (no allocation when every value is fine).
    let repaired: Vec<String> = parts
        .headers
        .values()
        .filter(|v| std::str::from_utf8(v.as_bytes()).is_err())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut repaired = repaired.iter();
    // An absolute-form target (or HTTP/2's :authority) names the host;
    // Host is then ignored (RFC 9112 §3.2.2), so the app sees the target's.
    let target_host = parts.uri.authority().map(|a| a.as_str());
    let mut headers: Vec<Header<'_>> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match (std::str::from_utf8(value.as_bytes()), target_host) {
                (_, Some(host)) if name == hyper::header::HOST => host,
                (Ok(text), _) => text,
                (Err(_), _) => repaired.next().map_or("", String::as_str),
            };
            Header::new(name.as_str(), value)
        })
        .collect();
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
        script_name: router::script_name(&call.mount),
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
    f(&vars, &headers)
}

/// `SERVER_PROTOCOL` for a hyper version.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}
