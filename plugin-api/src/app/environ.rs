//! [`Environ`]: the request as an app sees it, PEP 3333's `environ` dict.

use std::borrow::Cow;
use std::io;

use crate::abi::{Gateway, RawEnviron, RawHeader};
use crate::host_log;

/// The request environment handed to an app: PEP 3333's `environ`.
///
/// Everything borrows the host's buffers. The CGI/WSGI variables have typed
/// accessors ([`method`](Self::method), [`path_info`](Self::path_info), …)
/// and can also be looked up by their WSGI names with [`get`](Self::get),
/// including `HTTP_*` for every request header.
pub struct Environ<'a> {
    raw: &'a RawEnviron<'a>,
    /// Variables beyond PEP 3333's and the headers (`SSL_CLIENT_*`).
    extra: &'a [RawHeader<'a>],
    /// Where `wsgi.input` reads from: a sync app's gateway; an async app
    /// reads its body with `Request::chunk` instead.
    input: Option<&'a (dyn Gateway + 'a)>,
}

impl<'a> Environ<'a> {
    /// A sync app's environ: its body is read through `gateway`.
    pub(crate) fn new(raw: &'a RawEnviron<'a>, extra: &'a [RawHeader<'a>], gateway: &'a (dyn Gateway + 'a)) -> Self {
        Self {
            raw,
            extra,
            input: Some(gateway),
        }
    }

    /// An async app's environ: no blocking `wsgi.input`.
    pub(crate) fn without_input(raw: &'a RawEnviron<'a>, extra: &'a [RawHeader<'a>]) -> Self {
        Self {
            raw,
            extra,
            input: None,
        }
    }

    /// `REQUEST_METHOD`, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.raw.request_method.as_str()
    }
    /// `SCRIPT_NAME`: where the app is mounted (empty at the root).
    pub fn script_name(&self) -> &'a str {
        self.raw.script_name.as_str()
    }
    /// `PATH_INFO`: the path below the mount point, percent-decoded.
    pub fn path_info(&self) -> &'a str {
        self.raw.path_info.as_str()
    }
    /// `QUERY_STRING`: the part after `?`, still percent-encoded.
    pub fn query_string(&self) -> &'a str {
        self.raw.query_string.as_str()
    }
    /// `SERVER_NAME`.
    pub fn server_name(&self) -> &'a str {
        self.raw.server_name.as_str()
    }
    /// `SERVER_PORT`.
    pub fn server_port(&self) -> &'a str {
        self.raw.server_port.as_str()
    }
    /// `SERVER_PROTOCOL`, e.g. `HTTP/1.1`.
    pub fn server_protocol(&self) -> &'a str {
        self.raw.server_protocol.as_str()
    }
    /// `REMOTE_ADDR`: the client's address.
    pub fn remote_addr(&self) -> &'a str {
        self.raw.remote_addr.as_str()
    }
    /// `REMOTE_PORT`: the client's port.
    pub fn remote_port(&self) -> &'a str {
        self.raw.remote_port.as_str()
    }
    /// `wsgi.url_scheme`: `http` or `https`.
    pub fn url_scheme(&self) -> &'a str {
        self.raw.url_scheme.as_str()
    }
    /// `CONTENT_TYPE`, if the request has one.
    pub fn content_type(&self) -> Option<&'a str> {
        self.header("content-type")
    }
    /// `CONTENT_LENGTH`, if the request declares one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }
    /// `wsgi.multithread`: the app may be called from several threads at once.
    pub fn multithread(&self) -> bool {
        self.raw.multithread
    }
    /// `wsgi.multiprocess`: other processes may run the same app.
    pub fn multiprocess(&self) -> bool {
        self.raw.multiprocess
    }
    /// `wsgi.run_once`: this process handles a single request (CGI).
    pub fn run_once(&self) -> bool {
        self.raw.run_once
    }

    /// The first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every request header, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.raw.headers.as_slice().iter().map(header_pair)
    }

    /// Looks a variable up by its WSGI name: `REQUEST_METHOD`, `PATH_INFO`,
    /// `HTTP_USER_AGENT`, `wsgi.url_scheme`, and the server's extras such
    /// as `SSL_CLIENT_S_DN` (mutual TLS), … Repeated headers are joined
    /// with `", "` as CGI does. A header whose name has an `_` has no
    /// `HTTP_*` key (it would pass for the one spelled with `-`, e.g. a
    /// client's `X_Forwarded_For` for a proxy's `X-Forwarded-For`; nginx and
    /// gunicorn drop it too); [`headers`](Self::headers) still shows it.
    pub fn get(&self, key: &str) -> Option<Cow<'a, str>> {
        if let Some(header_key) = key.strip_prefix("HTTP_") {
            let mut values = self
                .headers()
                .filter(|(name, _)| has_http_key(name) && header_matches(name, header_key))
                .map(|(_, value)| value);
            return join_values(values.next()?, values);
        }
        let simple = match key {
            "REQUEST_METHOD" => self.method(),
            "SCRIPT_NAME" => self.script_name(),
            "PATH_INFO" => self.path_info(),
            "QUERY_STRING" => self.query_string(),
            "SERVER_NAME" => self.server_name(),
            "SERVER_PORT" => self.server_port(),
            "SERVER_PROTOCOL" => self.server_protocol(),
            "REMOTE_ADDR" => self.remote_addr(),
            "REMOTE_PORT" => self.remote_port(),
            "CONTENT_TYPE" => self.content_type()?,
            "CONTENT_LENGTH" => self.header("content-length")?,
            "wsgi.url_scheme" => self.url_scheme(),
            "wsgi.version" => crate::INTERFACE_VERSION,
            "wsgi.multithread" => bool_str(self.multithread()),
            "wsgi.multiprocess" => bool_str(self.multiprocess()),
            "wsgi.run_once" => bool_str(self.run_once()),
            _ => return self.extra_var(key).map(Cow::Borrowed),
        };
        Some(Cow::Borrowed(simple))
    }

    /// Every variable of the environ as `(WSGI name, value)`, like iterating
    /// Python's `environ.items()` (without the `wsgi.input` / `wsgi.errors`
    /// streams, which are [`input`](Self::input) and [`errors`](Self::errors)).
    pub fn vars(&self) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        const FIXED: [&str; 16] = [
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "PATH_INFO",
            "QUERY_STRING",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "wsgi.url_scheme",
            "wsgi.version",
            "wsgi.multithread",
            "wsgi.multiprocess",
            "wsgi.run_once",
        ];
        let mut vars: Vec<_> = FIXED
            .iter()
            .filter_map(|key| Some((Cow::Borrowed(*key), self.get(key)?)))
            .collect();
        vars.extend(
            self.extra
                .iter()
                .map(|var| (Cow::Borrowed(var.name.as_str()), Cow::Borrowed(var.value.as_str()))),
        );
        for (index, (name, _)) in self.headers().enumerate() {
            let first = self.headers().position(|(n, _)| n.eq_ignore_ascii_case(name)) == Some(index);
            if first && has_http_key(name) {
                let key = http_key(name);
                let value = self.get(&key).unwrap_or_default();
                vars.push((Cow::Owned(key), value));
            }
        }
        vars
    }

    /// A variable beyond PEP 3333's and the headers, e.g. `SSL_CLIENT_VERIFY`.
    fn extra_var(&self, key: &str) -> Option<&'a str> {
        self.extra
            .iter()
            .find(|var| var.name.as_str() == key)
            .map(|var| var.value.as_str())
    }

    /// `wsgi.input`: the request body, streamed from the client as it is
    /// read. (An async app reads it with `Request::chunk`; here its reads
    /// fail.)
    pub fn input(&self) -> Input<'a> {
        Input { gateway: self.input }
    }

    /// `wsgi.errors`: each line written here becomes one line of the host's
    /// log (target `wsgi.errors`, level error).
    pub fn errors(&self) -> ErrorStream {
        ErrorStream { line: Vec::new() }
    }
}

fn header_pair<'a>(header: &RawHeader<'a>) -> (&'a str, &'a str) {
    (header.name.as_str(), header.value.as_str())
}

fn bool_str(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// `Content-Type` and `Content-Length` are `CONTENT_*`, never `HTTP_*`.
fn is_cgi_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("content-length")
}

/// Whether header `name` is an `HTTP_*` variable: not `CONTENT_*`, and
/// without `_` (see [`Environ::get`]).
fn has_http_key(name: &str) -> bool {
    !is_cgi_header(name) && !name.contains('_')
}

/// Whether header `name` is the one CGI calls `HTTP_{key}`.
fn header_matches(name: &str, key: &str) -> bool {
    name.len() == key.len()
        && name.bytes().zip(key.bytes()).all(|(n, k)| {
            let n = if n == b'-' { b'_' } else { n.to_ascii_uppercase() };
            n == k
        })
}

/// `user-agent` → `HTTP_USER_AGENT`.
fn http_key(name: &str) -> String {
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    key
}

fn join_values<'a>(first: &'a str, rest: impl Iterator<Item = &'a str>) -> Option<Cow<'a, str>> {
    let mut joined = Cow::Borrowed(first);
    for value in rest {
        let owned = joined.to_mut();
        owned.push_str(", ");
        owned.push_str(value);
    }
    Some(joined)
}

/// `wsgi.input`: reads the request body as the client sends it.
pub struct Input<'a> {
    gateway: Option<&'a (dyn Gateway + 'a)>,
}

impl io::Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(gateway) = self.gateway else {
            return Err(io::Error::other(
                "an async app reads its request body with Request::chunk().await, not wsgi.input",
            ));
        };
        gateway
            .read_input(buf.into())
            .into_result()
            .map_err(|e| io::Error::other(e.into_string()))
    }
}

/// `wsgi.errors`: a line-buffered stream into the host's log.
pub struct ErrorStream {
    line: Vec<u8>,
}

impl ErrorStream {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        host_log::emit(log::Level::Error, "wsgi.errors", text.trim_end_matches(['\r', '\n']));
        self.line.clear();
    }
}

impl io::Write for ErrorStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for part in buf.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(part);
            if part.ends_with(b"\n") {
                self.emit();
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.emit();
        }
        Ok(())
    }
}

impl Drop for ErrorStream {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RErr, ROk, ROption, RResult, RSlice, RSliceMut, RStr, RString};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn http_keys_follow_cgi_naming() {
        assert_eq!(http_key("user-agent"), "HTTP_USER_AGENT");
        assert!(header_matches("x-forwarded-for", "X_FORWARDED_FOR"));
        assert!(!header_matches("x-forwarded", "X_FORWARDED_FOR"));
        assert!(is_cgi_header("Content-Type"));
    }

    #[test]
    fn repeated_values_are_joined() {
        let joined = join_values("a", ["b", "c"].into_iter()).unwrap();
        assert_eq!(joined, "a, b, c");
        assert!(matches!(join_values("a", std::iter::empty()), Some(Cow::Borrowed("a"))));
    }

    /// A gateway for environs that are only read.
    struct NoGateway;

    impl Gateway for NoGateway {
        fn start_response(
            &self,
            _: RStr<'_>,
            _: RSlice<'_, RawHeader<'_>>,
            _: ROption<RStr<'_>>,
        ) -> RResult<(), RString> {
            RErr(RString::from("read-only"))
        }
        fn write(&self, _: RSlice<'_, u8>) -> RResult<(), RString> {
            RErr(RString::from("read-only"))
        }
        fn read_input(&self, _: RSliceMut<'_, u8>) -> RResult<usize, RString> {
            ROk(0)
        }
        fn send_file(&self, _: i32, _: u64, _: u64) -> RResult<(), RString> {
            RErr(RString::from("read-only"))
        }
        fn extra_vars(&self) -> RSlice<'_, RawHeader<'_>> {
            RSlice::EMPTY
        }
    }

    /// Runs `f` on an environ with `headers`.
    fn with_headers<R>(headers: &[(String, String)], f: impl FnOnce(&Environ<'_>) -> R) -> R {
        let raw_headers: Vec<RawHeader<'_>> = headers
            .iter()
            .map(|(name, value)| RawHeader {
                name: name.as_str().into(),
                value: value.as_str().into(),
            })
            .collect();
        let raw = RawEnviron {
            request_method: "GET".into(),
            script_name: "".into(),
            path_info: "/".into(),
            query_string: "".into(),
            server_name: "localhost".into(),
            server_port: "80".into(),
            server_protocol: "HTTP/1.1".into(),
            remote_addr: "127.0.0.1".into(),
            remote_port: "1".into(),
            url_scheme: "http".into(),
            headers: raw_headers.as_slice().into(),
            multithread: true,
            multiprocess: false,
            run_once: false,
            #[cfg(feature = "fixture-layout-change")]
            layout_change: 0,
        };
        let extra = [RawHeader {
            name: "SSL_CLIENT_VERIFY".into(),
            value: "SUCCESS".into(),
        }];
        f(&Environ::new(&raw, &extra, &NoGateway))
    }

    /// Header names as they arrive (lower case tokens), drawn from a small
    /// alphabet so that repeats, `-`/`_` look-alikes and the CGI names come
    /// up often.
    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("content-type".to_owned()),
            Just("content-length".to_owned()),
            "[a-c][a-c_-]{0,3}",
        ]
    }

    proptest! {
        /// Every `HTTP_*` variable is exactly the values of the headers
        /// that name it, `-` as `_`, joined in order; names with `_`,
        /// `Content-Type` and `Content-Length` have none; `vars()` lists
        /// each variable once, with the value `get` gives.
        #[test]
        fn http_variables_are_the_headers_that_name_them(
            headers in proptest::collection::vec((header_name(), "[ -~]{0,8}"), 0..12)
        ) {
            with_headers(&headers, |environ| {
                let vars = environ.vars();
                let mut seen = std::collections::HashSet::new();
                for (key, value) in &vars {
                    prop_assert!(seen.insert(key.clone()), "{key} listed twice");
                    prop_assert_eq!(environ.get(key), Some(value.clone()));
                }
                for (name, _) in &headers {
                    let key = http_key(name);
                    let expected: Vec<&str> = headers
                        .iter()
                        .filter(|(n, _)| !n.contains('_') && !is_cgi_header(n) && http_key(n) == key)
                        .map(|(_, v)| v.as_str())
                        .collect();
                    let expected = (!expected.is_empty()).then(|| expected.join(", "));
                    prop_assert_eq!(environ.get(&key).map(Cow::into_owned), expected.clone());
                    prop_assert_eq!(seen.contains(key.as_str()), expected.is_some());
                }
                let first = |wanted: &str| headers.iter().find(|(n, _)| n == wanted).map(|(_, v)| Cow::Borrowed(v.as_str()));
                prop_assert_eq!(environ.get("CONTENT_TYPE"), first("content-type"));
                prop_assert_eq!(environ.get("CONTENT_LENGTH"), first("content-length"));
                prop_assert!(environ.get("HTTP_CONTENT_TYPE").is_none());
                prop_assert_eq!(environ.get("SSL_CLIENT_VERIFY"), Some(Cow::Borrowed("SUCCESS")));
                Ok(())
            })?;
        }
    }
}
