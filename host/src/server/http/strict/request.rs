//! Rules checked on each request hyper parsed, before it is routed: the
//! RFC 9110/9112 rules hyper leaves to the application. A request that
//! breaks one is answered here (the status below, a one-line body, the
//! connection closed) and never reaches an app.
//!
//! | rule | status | RFC |
//! |---|---|---|
//! | CONNECT is not served (no tunnels) | 501 | 9110 §9.3.6 |
//! | exactly one Host field in HTTP/1.1, at most one in HTTP/1.0 | 400 | 9112 §3.2 |
//! | HTTP/2 has `:authority` or Host, and a Host beside `:authority` names the same | 400 | 9113 §8.3.1 |
//! | Host is `uri-host [":" port]`: a reg-name, an IPv4 address or a bracketed IP literal | 400 | 9110 §7.2, 3986 §3.2.2 |
//! | origin-form, or absolute-form with `http`/`https` and no userinfo | 400 | 9112 §3.2.1–2, 9110 §4.2.4 |
//! | authority-form only with CONNECT, asterisk-form only with OPTIONS | 400 | 9112 §3.2.3–4 |
//! | the target holds only URI characters, and `%` is always followed by two hex digits | 400 | 3986 §2, §3.3–3.4 |
//! | Transfer-Encoding is exactly `chunked` once | 400 (twice), 501 (other codings) | 9112 §6.1, §7 |
//! | Expect, if present, is `100-continue` | 417 | 9110 §10.1.1 |
//! | Connection is a list of tokens (else its `close` may go unseen) | 400 | 9110 §7.6.1 |
//!
//! The path is percent-decoded by [`decoded_path`], which refuses one that
//! is not UTF-8 or has NUL or another control character (400).

use std::borrow::Cow;

use hyper::header::{HeaderValue, CONNECTION, EXPECT, HOST, TRANSFER_ENCODING};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode, Version};

use crate::plugin::exchange::Refusal;

/// What the server itself allows on any resource (the `Allow` of
/// `OPTIONS *`).
pub const SERVER_METHODS: &str = "GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH";

fn refusal(status: u16, detail: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), detail)
}

/// The request path percent-decoded, as routing and `PATH_INFO` see it:
/// UTF-8 without control characters, or a 400.
pub fn decoded_path(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(path) if !path.chars().any(char::is_control) => Ok(path),
        Ok(_) => Err(refusal(
            400,
            "the path has a control character (e.g. %00) after percent-decoding",
        )),
        Err(_) => Err(refusal(400, "the path is not valid UTF-8 after percent-decoding")),
    }
}

/// Checks the head of a request against every rule above, in one pass
/// over its headers.
pub fn check(request: &Parts) -> Result<(), Refusal> {
    // RFC 8441's extended CONNECT (HTTP/2, with `:protocol`) opens a
    // WebSocket, not a tunnel: its target is an ordinary path.
    let extended_connect = request.extensions.get::<hyper::ext::Protocol>().is_some();
    if !extended_connect {
        check_method(&request.method)?;
    }
    let mut hosts = (0, None);
    let mut codings = Codings::default();
    for (name, value) in &request.headers {
        if name == HOST {
            hosts = (hosts.0 + 1, hosts.1.or(Some(value)));
        } else if name == CONNECTION {
            check_connection(value)?;
        } else if name == TRANSFER_ENCODING {
            codings.add(value)?;
        } else if name == EXPECT && !value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            return Err(refusal(
                417,
                "the only expectation this server meets is Expect: 100-continue",
            ));
        }
    }
    check_host(request, hosts)?;
    check_target(request)?;
    codings.check()
}

/// Any method token may reach an app (WSGI apps see every method); only
/// CONNECT, which would make the connection a tunnel, is refused here.
/// Where no app takes a request, the router answers 405 (static files) or
/// 501 (nothing at all).
fn check_method(method: &Method) -> Result<(), Refusal> {
    if method == Method::CONNECT {
        return Err(refusal(501, "CONNECT is not supported by this server (no tunnels)"));
    }
    Ok(())
}

/// The Host rules, given how many Host headers `request` has and the
/// first one.
fn check_host(request: &Parts, (count, first): (usize, Option<&HeaderValue>)) -> Result<(), Refusal> {
    let authority = request.uri.authority();
    let host = match (first, count > 1) {
        (None, _) if request.version == Version::HTTP_10 => return Ok(()),
        // :authority is checked with the target.
        (None, _) if request.version == Version::HTTP_2 && authority.is_some() => return Ok(()),
        (None, _) if request.version == Version::HTTP_2 => {
            return Err(refusal(400, "an HTTP/2 request needs :authority or a Host header"))
        }
        (Some(host), false)
            if request.version == Version::HTTP_2
                && authority.is_some_and(|a| host.to_str().map_or(true, |h| *a != h)) =>
        {
            return Err(refusal(400, "the Host header names another host than :authority"))
        }
        (None, _) => return Err(refusal(400, "an HTTP/1.1 request needs a Host header")),
        (Some(_), true) => return Err(refusal(400, "the request has more than one Host header")),
        (Some(host), false) => host,
    };
    let host = host
        .to_str()
        .map_err(|_| refusal(400, "the Host header is not ASCII"))?;
    if !is_host_and_port(host) {
        return Err(refusal(400, format!("the Host header {host:?} is not a host[:port]")));
    }
    Ok(())
}

/// `uri-host [":" port]` (RFC 3986), with a non-empty host.
pub fn is_host_and_port(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, after)) => {
                let literal_ok = literal.parse::<std::net::Ipv6Addr>().is_ok() || is_ipv_future(literal);
                if !literal_ok {
                    return false;
                }
                match after {
                    "" => return true,
                    after => match after.strip_prefix(':') {
                        Some(port) => ("x", port),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (text, ""),
        },
    };
    !host.is_empty() && is_reg_name(host) && port.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 3986 `reg-name` (which includes IPv4 addresses).
fn is_reg_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                if !bytes
                    .get(at + 1..at + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                at += 3;
            }
            b if REG_NAME[usize::from(b)] => at += 1,
            _ => return false,
        }
    }
    true
}

/// RFC 3986 `IPvFuture`: `v` HEXDIG+ `.` (unreserved / sub-delims / `:`)+.
fn is_ipv_future(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, address)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !address.is_empty()
        && address.bytes().all(|b| IPV_FUTURE[usize::from(b)])
}

/// RFC 3986 `unreserved / sub-delims`: the bytes a reg-name holds as they are.
const REG_NAME: [bool; 256] = uri_bytes(b"");
/// Those and `:`: the bytes of an `IPvFuture` address.
const IPV_FUTURE: [bool; 256] = uri_bytes(b":");
/// Those and `: @ / ?`: the bytes a path and query hold as they are.
const TARGET: [bool; 256] = uri_bytes(b":@/?");

/// A table of the bytes that are `unreserved`, `sub-delims` or in `extra`
/// (one lookup per byte on the request path).
const fn uri_bytes(extra: &[u8]) -> [bool; 256] {
    const fn holds(set: &[u8], byte: u8) -> bool {
        let mut at = 0;
        while at < set.len() {
            if set[at] == byte {
                return true;
            }
            at += 1;
        }
        false
    }
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || holds(b"-._~!$&'()*+,;=", b) || holds(extra, b);
        byte += 1;
    }
    table
}

fn check_target(request: &Parts) -> Result<(), Refusal> {
    let uri = &request.uri;
    let method = &request.method;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(refusal(
                    400,
                    format!("the request target's scheme {scheme:?} is not http or https"),
                ));
            }
            if authority.as_str().contains('@') {
                return Err(refusal(
                    400,
                    "the request target has a user name or password (userinfo)",
                ));
            }
            if !is_host_and_port(authority.as_str()) {
                return Err(refusal(400, "the request target's authority is not a host[:port]"));
            }
        }
        (None, Some(_)) => {
            return Err(refusal(
                400,
                format!("{method} cannot take an authority-form target (host:port); only CONNECT can"),
            ))
        }
        (Some(_), None) => return Err(refusal(400, "the request target has a scheme but no host")),
        (None, None) if uri.path() == "*" => {
            if method != Method::OPTIONS {
                return Err(refusal(
                    400,
                    format!("{method} cannot take the target *; only OPTIONS can"),
                ));
            }
            return Ok(());
        }
        (None, None) => {}
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let bytes = target.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' if bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
            {
                at += 3
            }
            b'%' => {
                return Err(refusal(
                    400,
                    "the request target has a % not followed by two hex digits",
                ))
            }
            b if TARGET[usize::from(b)] => at += 1,
            b => {
                return Err(refusal(
                    400,
                    format!(
                        "the request target has a character that must be percent-encoded: {:?}",
                        b as char
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// One Connection header's rule: a list of tokens.
fn check_connection(value: &HeaderValue) -> Result<(), Refusal> {
    let tokens = value
        .as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .all(|option| option.iter().all(|b| is_tchar(*b)));
    if !tokens {
        return Err(refusal(400, "the Connection header is not a list of tokens"));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The transfer codings of a request, in order, across its
/// Transfer-Encoding headers.
#[derive(Default)]
struct Codings<'h>(Vec<&'h str>);

impl<'h> Codings<'h> {
    /// Adds one Transfer-Encoding header's codings.
    fn add(&mut self, value: &'h HeaderValue) -> Result<(), Refusal> {
        let Ok(value) = value.to_str() else {
            return Err(refusal(400, "the Transfer-Encoding header is not ASCII"));
        };
        self.0.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
        Ok(())
    }

    /// The rules: `chunked` once, and last; no other coding.
    fn check(&self) -> Result<(), Refusal> {
        let codings = &self.0;
        match codings.as_slice() {
            [] => Ok(()),
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(()),
            _ if codings.iter().filter(|c| c.eq_ignore_ascii_case("chunked")).count() > 1 => {
                Err(refusal(400, "chunked is applied more than once in Transfer-Encoding"))
            }
            _ => Err(refusal(
                501,
                format!(
                    "the transfer coding {:?} is not implemented; send the body chunked or with a Content-Length",
                    codings.join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use proptest::prelude::*;

    use hyper::Request;

    use super::*;

    proptest! {
        /// Decoding gives back any text without control characters, however
        /// much of it was percent-encoded.
        #[test]
        fn decoding_inverts_encoding(text in "/[^\\p{Cc}]{0,24}", encode_all in any::<bool>()) {
            let raw = if encode_all {
                utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string()
            } else {
                text.replace('%', "%25")
            };
            prop_assert_eq!(decoded_path(&raw).map_err(|r| r.status.as_u16()), Ok(Cow::Borrowed(text.as_str())));
        }

        /// A control character, raw or encoded, anywhere: 400.
        #[test]
        fn control_characters_are_refused(
            text in "/[a-z/]{0,8}",
            control in prop_oneof![0u32..0x20, Just(0x7f), 0x80u32..0xa0],
            at in any::<prop::sample::Index>(),
        ) {
            let mut text = text;
            text.insert(at.index(text.len() + 1).max(1), char::from_u32(control).unwrap());
            let encoded = utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string();
            prop_assert_eq!(decoded_path(&encoded).map_err(|r| r.status.as_u16()), Err(400));
        }

        /// Bytes that are not UTF-8, percent-encoded: 400.
        #[test]
        fn bytes_that_are_not_utf8_are_refused(bytes in prop::collection::vec(any::<u8>(), 1..16)) {
            prop_assume!(std::str::from_utf8(&bytes).is_err());
            let encoded: String = bytes.iter().map(|b| format!("/%{b:02X}")).collect();
            prop_assert_eq!(decoded_path(&encoded).map_err(|r| r.status.as_u16()), Err(400));
        }
    }

    fn request(line: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
        let (method, target) = line.split_once(' ').unwrap();
        let mut builder = Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        check(&builder.body(()).unwrap().into_parts().0).map_err(|r| r.status.as_u16())
    }

    #[test]
    fn hosts() {
        for good in [
            "a",
            "a.example:80",
            "127.0.0.1",
            "[::1]:8080",
            "[v1.x]",
            "xn--bcher-kva.example",
            "a:",
        ] {
            assert!(is_host_and_port(good), "{good}");
        }
        for bad in [
            "",
            ":80",
            "a b",
            "a/b",
            "user@a",
            "a:8x",
            "[::1",
            "::1",
            "[zz]",
            "a, b",
            "é.example",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
        assert_eq!(request("GET /", &[]), Err(400));
        assert_eq!(request("GET /", &[("Host", "a"), ("Host", "a")]), Err(400));
        assert_eq!(request("GET /", &[("Host", "a")]), Ok(()));
    }

    #[test]
    fn http2_names_its_host_in_the_authority() {
        let h2 = |target: &str, headers: &[(&str, &str)]| {
            let mut builder = Request::builder().version(Version::HTTP_2).uri(target);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            check(&builder.body(()).unwrap().into_parts().0).map_err(|r| r.status.as_u16())
        };
        assert_eq!(h2("https://a.example/p", &[]), Ok(()));
        assert_eq!(h2("https://a.example/p", &[("Host", "a.example")]), Ok(()));
        assert_eq!(h2("https://a.example/p", &[("Host", "b.example")]), Err(400));
        assert_eq!(h2("/p", &[("Host", "a.example")]), Ok(()));
        assert_eq!(h2("/p", &[]), Err(400));
        assert_eq!(h2("https://u@a.example/p", &[]), Err(400));
    }

    #[test]
    fn targets_and_methods() {
        let host = [("Host", "a")];
        for (line, expected) in [
            ("GET /p?q=1&r=%20", Ok(())),
            ("GET http://a/p", Ok(())),
            ("GET http://u:p@a/p", Err(400)),
            ("GET ftp://a/p", Err(400)),
            ("GET a:443", Err(400)),
            ("GET *", Err(400)),
            ("OPTIONS *", Ok(())),
            ("GET /%zz", Err(400)),
            ("GET /a|b", Err(400)),
            ("GET /a{b}", Err(400)),
            ("CONNECT a:443", Err(501)),
            ("FROBNICATE /", Ok(())),
        ] {
            assert_eq!(request(line, &host), expected, "{line}");
        }
    }

    #[test]
    fn transfer_codings_and_expectations() {
        let host = ("Host", "a");
        let te = |value| request("POST /", &[host, ("Transfer-Encoding", value)]);
        assert_eq!(te("chunked"), Ok(()));
        assert_eq!(te("Chunked"), Ok(()));
        assert_eq!(te("chunked, chunked"), Err(400));
        assert_eq!(te("gzip, chunked"), Err(501));
        assert_eq!(
            request(
                "POST /",
                &[host, ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]
            ),
            Err(400)
        );
        assert_eq!(request("POST /", &[host, ("Expect", "100-continue")]), Ok(()));
        assert_eq!(request("POST /", &[host, ("Expect", "teapot")]), Err(417));
        assert_eq!(request("GET /", &[host, ("Connection", "close, keep-alive")]), Ok(()));
        assert_eq!(request("GET /", &[host, ("Connection", "close, a b")]), Err(400));
    }
}
