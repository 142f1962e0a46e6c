//! WSGI's `start_response` rules, shared by every way of serving an app:
//! validating the status and headers, and when they may be replaced.

use std::ops::Range;

/// A validated status line and header list, ready to send. All its text
/// lives in one buffer (one allocation per response, not two per header):
/// the reason phrase, then `\n name \0 value` per header, which is
/// unambiguous because names are tokens and values hold no CR, LF or NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 200–599.
    pub status: u16,
    text: String,
    /// How many headers there are.
    count: usize,
    /// The first valid `Content-Length`, if any.
    content_length: Option<u64>,
}

impl ResponseHead {
    /// A head the server makes itself (its text is not checked).
    pub fn new(status: u16, reason: &str, headers: &[(&str, &str)]) -> Self {
        let mut head = ResponseHead::with_reason(status, reason, headers.len());
        for (name, value) in headers {
            head.push(name, value);
        }
        head
    }

    fn with_reason(status: u16, reason: &str, headers: usize) -> Self {
        let mut text = String::with_capacity(reason.len() + headers * 32);
        text.push_str(reason);
        ResponseHead {
            status,
            text,
            count: 0,
            content_length: None,
        }
    }

    fn push(&mut self, name: &str, value: &str) {
        if self.content_length.is_none() && name.eq_ignore_ascii_case("content-length") {
            self.content_length = value.trim().parse().ok();
        }
        self.count += 1;
        self.text.push('\n');
        self.text.push_str(name);
        self.text.push('\0');
        self.text.push_str(value);
    }

    /// The reason phrase the app gave (may be empty).
    pub fn reason(&self) -> &str {
        self.text.split('\n').next().unwrap_or_default()
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The length the `Content-Length` header declares, if it is valid.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The headers in the app's order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans().map(|(name, value)| (&self.text[name], &self.text[value]))
    }

    /// Where each header's name and value lie in [`ResponseHead::into_text`].
    pub fn spans(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        header_spans(self.text.as_bytes())
    }

    /// The buffer [`ResponseHead::spans`] points into (give it to
    /// [`header_spans`] to find them again).
    pub fn into_text(self) -> String {
        self.text
    }

    /// The first header called `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Where each header's name and value lie in a [`ResponseHead`]'s text.
pub fn header_spans(text: &[u8]) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let mut offset = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
    text[offset..].split(|&b| b == b'\n').skip(1).map(move |line| {
        offset += 1;
        let name_len = line.iter().position(|&b| b == 0).unwrap_or(line.len());
        let name = offset..offset + name_len;
        let value = (offset + name_len + 1).min(offset + line.len())..offset + line.len();
        offset += line.len();
        (name, value)
    })
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

/// A head with a status the server chose (unchecked) and `headers`, checked
/// as `start_response` checks an app's.
pub fn with_checked_headers<'h>(
    status: u16,
    reason: &str,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
) -> Result<ResponseHead, String> {
    let mut head = ResponseHead::with_reason(status, reason, headers.size_hint().0);
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("invalid header name {name:?}"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name} contains CR, LF or NUL"));
        }
        head.push(name, value);
    }
    Ok(head)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
        assert_eq!((head.status, head.reason()), (200, "OK"));
        assert_eq!(head.header("content-type"), Some("text/plain"));
        assert_eq!(state.take_for_sending(), Ok(None));
    }

    #[test]
    fn the_one_buffer_gives_back_every_header_in_order() {
        let headers = [("A", "1"), ("Set-Cookie", ""), ("X-Long-Name", "a: b\tc")];
        let head = ResponseHead::new(418, "I'm a teapot", &headers);
        assert_eq!(head.reason(), "I'm a teapot");
        assert_eq!((head.len(), head.content_length()), (3, None));
        assert_eq!(
            ResponseHead::new(200, "OK", &[("content-LENGTH", " 12 ")]).content_length(),
            Some(12)
        );
        assert_eq!(head.headers().collect::<Vec<_>>(), headers);
        assert_eq!(ResponseHead::new(204, "", &[]).headers().count(), 0);
        let text = head.clone().into_text();
        let spans: Vec<_> = head.spans().map(|(n, v)| (&text[n], &text[v])).collect();
        assert_eq!(spans, headers);
    }

    #[test]
    fn second_call_needs_exc_info_and_an_unsent_head() {
        let mut state = HeadState::default();
        start(&mut state, "200 OK", &[], None).unwrap();
        assert!(start(&mut state, "500 Oops", &[], None).is_err());
        let mut state = HeadState::default();
        start(&mut state, "200 OK", &[], None).unwrap();
        start(&mut state, "500 Internal Server Error", &[], Some("boom")).unwrap();
        assert_eq!(state.take_for_sending().unwrap().unwrap().status, 500);
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
