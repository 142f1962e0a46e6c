//! WSGI's `start_response` rules, shared by every way of serving an app:
//! validating the status and headers, and when they may be replaced. The
//! head is validated once, straight into the `http` crate's types, so the
//! HTTP server sends it as it is (no second parse).

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;

/// A validated status and header list, ready to send: the hop-by-hop
/// headers dropped (they are the server's, PEP 3333).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    status: StatusCode,
    /// The reason phrase, where it is not the status's own.
    reason: Option<Bytes>,
    headers: HeaderMap,
    /// The first valid `Content-Length`, if any.
    content_length: Option<u64>,
}

impl ResponseHead {
    /// A head the server makes itself (`headers` are known to be valid;
    /// one that is not is left out).
    pub fn new(status: u16, reason: &str, headers: &[(&str, &str)]) -> Self {
        let pairs = headers.iter().copied();
        let valid = pairs.filter(|(name, value)| checked(name, value).is_ok());
        with_checked_headers(status, reason, valid).expect("only valid headers were kept")
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason phrase: the app's, else the status's own (may be empty).
    pub fn reason(&self) -> &str {
        match &self.reason {
            Some(reason) => std::str::from_utf8(reason).unwrap_or_default(),
            None => self.status.canonical_reason().unwrap_or_default(),
        }
    }

    /// The headers, in the app's order.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// How many header values there are.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The length the `Content-Length` header declares, if it is valid.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The status, the reason phrase where it is not the status's own, and
    /// the headers.
    pub fn into_parts(self) -> (StatusCode, Option<Bytes>, HeaderMap) {
        (self.status, self.reason, self.headers)
    }
}

/// Where one response is in its life: what `start_response` set, whether
/// it went out, and the first thing the app got wrong.
#[derive(Debug, Default)]
pub struct HeadState {
    pending: Option<ResponseHead>,
    sent: bool,
    error: Option<String>,
}

impl HeadState {
    /// Applies one `start_response(status, headers, exc_info)` call.
    /// `Err` goes back to the app (WSGI raises it there).
    pub fn start_response<'h>(
        &mut self,
        status: &str,
        headers: impl Iterator<Item = (&'h str, &'h str)>,
        exc_info: Option<&str>,
    ) -> Result<(), String> {
        if let Some(error) = exc_info {
            log::warn!("app reported an error through start_response: {error}");
            if self.sent {
                return Err(format!(
                    "cannot restart the response after its headers were sent: {error}"
                ));
            }
        } else if self.pending.is_some() || self.sent {
            return self.reject("start_response called twice without exc_info".to_owned());
        }
        match parse_head(status, headers) {
            Ok(head) => {
                self.pending = Some(head);
                self.error = None;
                Ok(())
            }
            Err(problem) => self.reject(problem),
        }
    }

    fn reject(&mut self, problem: String) -> Result<(), String> {
        self.error.get_or_insert_with(|| problem.clone());
        Err(problem)
    }

    /// The head to send now, once; `Err` if the app never gave a valid one.
    pub fn take_for_sending(&mut self) -> Result<Option<ResponseHead>, String> {
        if self.sent {
            return Ok(None);
        }
        match (self.pending.take(), &self.error) {
            (_, Some(problem)) => Err(problem.clone()),
            (Some(head), None) => {
                self.sent = true;
                Ok(Some(head))
            }
            (None, None) => Err("the app did not call start_response".to_owned()),
        }
    }

    /// Whether the head already went out.
    pub fn is_sent(&self) -> bool {
        self.sent
    }

    /// Whether a head was set (and may have gone out).
    pub fn is_started(&self) -> bool {
        self.pending.is_some() || self.sent
    }
}

/// Checks `"200 OK"` and the headers; names the first problem.
fn parse_head<'h>(status: &str, headers: impl Iterator<Item = (&'h str, &'h str)>) -> Result<ResponseHead, String> {
    let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
    let code = Some(code)
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (200..=599).contains(c))
        .ok_or_else(|| {
            format!("invalid status {status:?}: it must start with a 3-digit code 200-599 (1xx are the server's), e.g. \"200 OK\"")
        })?;
    if reason.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "invalid status {status:?}: control characters in the reason phrase"
        ));
    }
    with_checked_headers(code, reason, headers)
}

/// A head with a status the server chose (200-599, unchecked otherwise)
/// and `headers`, checked as `start_response` checks an app's.
pub fn with_checked_headers<'h>(
    status: u16,
    reason: &str,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
) -> Result<ResponseHead, String> {
    let status = StatusCode::from_u16(status).map_err(|_| format!("invalid status {status}"))?;
    let reason = (!reason.is_empty() && Some(reason) != status.canonical_reason())
        .then(|| Bytes::copy_from_slice(reason.as_bytes()));
    // Room for what a server adds (Server, Connection: close).
    let mut map = HeaderMap::with_capacity(headers.size_hint().0 + 2);
    let mut content_length = None;
    for (name, value) in headers {
        let (name, value) = checked(name, value)?;
        if name == header::CONTENT_LENGTH && content_length.is_none() {
            content_length = value.to_str().ok().and_then(|v| v.trim().parse().ok());
        }
        if is_hop_by_hop(&name) {
            log::debug!("dropped the app's hop-by-hop header {name}");
            continue;
        }
        map.append(name, value);
    }
    Ok(ResponseHead {
        status,
        reason,
        headers: map,
        content_length,
    })
}

/// The header, if the name is a token and the value holds no control
/// character but tab (each checked once, by the `http` crate's parsers);
/// the error names the problem, CR, LF and NUL first (they would split or
/// end the head).
fn checked(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
    match HeaderValue::from_str(value) {
        Ok(value) => Ok((name, value)),
        Err(_) if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
            Err(format!("header {name} contains CR, LF or NUL"))
        }
        Err(_) => Err(format!("header {name} contains a control character")),
    }
}

/// Hop-by-hop headers belong to the server, not the app (PEP 3333).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(state: &mut HeadState, status: &str, headers: &[(&str, &str)], exc: Option<&str>) -> Result<(), String> {
        state.start_response(status, headers.iter().copied(), exc)
    }

    #[test]
    fn a_valid_head_is_sent_once() {
        let mut state = HeadState::default();
        start(&mut state, "200 OK", &[("Content-Type", "text/plain")], None).unwrap();
        let head = state.take_for_sending().unwrap().unwrap();
        assert_eq!((head.status().as_u16(), head.reason()), (200, "OK"));
        assert_eq!(head.header("content-type"), Some("text/plain"));
        assert_eq!(state.take_for_sending(), Ok(None));
    }

    #[test]
    fn every_header_comes_back_in_order_but_the_hop_by_hop_ones() {
        let headers = [
            ("A", "1"),
            ("Set-Cookie", ""),
            ("Connection", "close"),
            ("X-Long-Name", "a: b\tc"),
            ("set-cookie", "b=2"),
        ];
        let head = ResponseHead::new(418, "I'm a teapot", &headers);
        assert_eq!(head.reason(), "I'm a teapot");
        assert_eq!((head.len(), head.content_length()), (4, None));
        let kept: Vec<_> = head
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            kept,
            [
                ("a", "1"),
                ("set-cookie", ""),
                ("set-cookie", "b=2"),
                ("x-long-name", "a: b\tc")
            ]
        );
        assert_eq!(
            ResponseHead::new(200, "OK", &[("content-LENGTH", " 12 ")]).content_length(),
            Some(12)
        );
        assert_eq!(ResponseHead::new(204, "", &[]).headers().len(), 0);
        let custom = ResponseHead::new(200, "Fine", &[]);
        assert_eq!(custom.reason(), "Fine");
        assert_eq!(custom.into_parts().1.as_deref(), Some(&b"Fine"[..]));
        assert_eq!(
            ResponseHead::new(200, "OK", &[]).into_parts().1,
            None,
            "the status's own"
        );
    }

    #[test]
    fn second_call_needs_exc_info_and_an_unsent_head() {
        let mut state = HeadState::default();
        start(&mut state, "200 OK", &[], None).unwrap();
        assert!(start(&mut state, "500 Oops", &[], None).is_err());
        let mut state = HeadState::default();
        start(&mut state, "200 OK", &[], None).unwrap();
        start(&mut state, "500 Internal Server Error", &[], Some("boom")).unwrap();
        assert_eq!(state.take_for_sending().unwrap().unwrap().status(), 500);
        assert!(start(&mut state, "503 Later", &[], Some("again")).is_err());
    }

    #[test]
    fn bad_status_and_headers_are_refused_and_remembered() {
        for status in [
            "OK",
            "20 OK",
            "2000 OK",
            "600 Nope",
            "099 X",
            "101 Switching",
            "200\r\nX: y",
            "+20 OK",
        ] {
            let mut state = HeadState::default();
            assert!(start(&mut state, status, &[], None).is_err(), "{status}");
            assert!(state.take_for_sending().is_err(), "{status}");
        }
        let mut state = HeadState::default();
        assert!(start(&mut state, "200 OK", &[("X-A", "1\r\nSet-Cookie: evil")], None).is_err());
        assert!(start(&mut state, "200 OK", &[("Bad Name", "1")], None).is_err());
        assert!(start(&mut state, "200 OK", &[("X-Bell", "\u{7}")], None).is_err());
        assert!(state.take_for_sending().unwrap_err().contains("header"));
    }

    #[test]
    fn never_calling_start_response_is_an_error() {
        assert!(HeadState::default()
            .take_for_sending()
            .unwrap_err()
            .contains("start_response"));
    }
}
