//! Every request's id (`X-Request-Id`): the one a trusted proxy sent (see
//! [`super::forwarded`]), if it is 1–200 visible ASCII characters, else a
//! new one, 16 hex digits unique to this process (a random start, then a
//! counter). The app sees it as `HTTP_X_REQUEST_ID` (in place of any
//! id an untrusted client sent), the access log
//! records it, so a line in a proxy's log, the app's and ours can be
//! matched.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a proxy.
const MAX_LEN: usize = 200;

/// A request's id: one this process made (kept inline: no allocation per
/// request), or one given as text (a trusted proxy's, or one read back
/// from the in-flight board).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// Made here: 16 hex digits.
    Made([u8; 16]),
    /// Given as text.
    Given(HeaderValue),
}

impl RequestId {
    /// The id as text (visible ASCII either way).
    pub fn as_str(&self) -> &str {
        let bytes = match self {
            RequestId::Made(hex) => &hex[..],
            RequestId::Given(value) => value.as_bytes(),
        };
        std::str::from_utf8(bytes).unwrap_or("-")
    }
}

/// The id of a request with `headers`: the proxy's, if `trusted` and sane,
/// else a new one (a client's own is ignored, and replaced in the environ).
pub fn of(headers: &HeaderMap, trusted: bool) -> RequestId {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        let sane = (1..=MAX_LEN).contains(&id.len()) && id.as_bytes().iter().all(u8::is_ascii_graphic);
        if trusted && sane && headers.get_all(&X_REQUEST_ID).iter().count() == 1 {
            return RequestId::Given(id.clone());
        }
    }
    RequestId::Made(generate())
}

/// A new id: 16 hex digits.
fn generate() -> [u8; 16] {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    let mut hex = [0u8; 16];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxys_id_is_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("proxy-1234"));
        assert_eq!(of(&headers, true).as_str(), "proxy-1234");
        let made = of(&headers, false);
        assert_ne!(made.as_str(), "proxy-1234");
        assert_eq!(made.as_str().len(), 16);
        assert!(made.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut spaced = HeaderMap::new();
        spaced.insert(&X_REQUEST_ID, HeaderValue::from_static("a b"));
        assert_ne!(of(&spaced, true).as_str(), "a b");
        let first = of(&HeaderMap::new(), true);
        assert_ne!(of(&HeaderMap::new(), true), first, "ids are unique");
    }
}
