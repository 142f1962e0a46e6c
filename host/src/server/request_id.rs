//! Every request's id (`X-Request-Id`): the one a trusted proxy sent (see
//! [`super::forwarded`]), if it is 1–200 visible ASCII characters, else a
//! new one, 16 hex digits unique to this process (a random start, then a
//! counter). The app sees it as `HTTP_X_REQUEST_ID`, the access log
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

/// Makes sure `headers` carry an id: the proxy's, if `trusted` and sane,
/// else a new one (replacing anything a client sent). Returns it.
pub fn ensure(headers: &mut HeaderMap, trusted: bool) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        let sane = (1..=MAX_LEN).contains(&id.len()) && id.as_bytes().iter().all(u8::is_ascii_graphic);
        if trusted && sane && headers.get_all(&X_REQUEST_ID).iter().count() == 1 {
            return id.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// A new id: 16 hex digits.
fn generate() -> HeaderValue {
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
    HeaderValue::from_bytes(&hex).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxys_id_is_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("proxy-1234"));
        assert_eq!(ensure(&mut headers.clone(), true), "proxy-1234");
        let mut untrusted = headers.clone();
        let made = ensure(&mut untrusted, false);
        assert_ne!(made, "proxy-1234");
        assert_eq!(untrusted.get(&X_REQUEST_ID), Some(&made));
        assert_eq!(made.len(), 16);
        let mut spaced = HeaderMap::new();
        spaced.insert(&X_REQUEST_ID, HeaderValue::from_static("a b"));
        assert_ne!(ensure(&mut spaced, true), "a b");
        let mut none = HeaderMap::new();
        let first = ensure(&mut none, true);
        assert_ne!(ensure(&mut HeaderMap::new(), true), first, "ids are unique");
    }
}
