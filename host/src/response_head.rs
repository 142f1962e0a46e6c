//! WSGI's `start_response` rules, shared by every way of serving an app:
//! validating the status and headers, and when they may be replaced.

/// A validated status line and header list, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100–599.
    pub status: u16,
    /// The reason phrase the app gave (may be empty).
    pub reason: String,
    /// Headers in the app's order.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header called `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
    let mut list = Vec::new();
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("invalid header name {name:?}"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name} contains CR, LF or NUL"));
        }
        list.push((name.to_owned(), value.to_owned()));
    }
    Ok(ResponseHead {
        status: code,
        reason: reason.to_owned(),
        headers: list,
    })
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
        assert_eq!((head.status, head.reason.as_str()), (200, "OK"));
        assert_eq!(head.header("content-type"), Some("text/plain"));
        assert_eq!(state.take_for_sending(), Ok(None));
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
