//! Conditional and range requests on a static file (RFC 9110 §13–14):
//! `If-None-Match` / `If-Modified-Since` for 304, one `bytes=` range
//! (honouring `If-Range`) for 206 or 416.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{self, HeaderMap, HeaderValue};

/// RFC 9110 §13.1.2–3: If-None-Match wins; else If-Modified-Since.
pub(super) fn not_modified(request: &HeaderMap, etag: &HeaderValue, modified: SystemTime) -> bool {
    if let Some(tags) = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t.as_bytes() == etag.as_bytes());
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match since {
        Some(since) => {
            let modified_secs = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let since_secs = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            modified_secs <= since_secs
        }
        None => false,
    }
}

/// What a Range header asks of a file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// No range, or one to ignore: the whole file (200).
    Whole,
    /// One satisfiable range (206).
    Part(std::ops::Range<u64>),
    /// A range outside the file (416).
    Unsatisfiable,
}

/// One `bytes=` range, honouring If-Range; several ranges are answered
/// with the whole file (RFC 9110 allows ignoring Range).
pub(super) fn requested_range(
    request: &HeaderMap,
    etag: &HeaderValue,
    last_modified: &HeaderValue,
    len: u64,
) -> RangeRequest {
    let Some(spec) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    if let Some(validator) = request.get(header::IF_RANGE) {
        if validator != etag && validator != last_modified {
            return RangeRequest::Whole;
        }
    }
    parse_range(spec, len)
}

fn parse_range(spec: &str, len: u64) -> RangeRequest {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if ranges.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(len),
        (Ok(start), Err(_)) if last.is_empty() => start..len,
        (Err(_), Ok(suffix)) if first.is_empty() => len.saturating_sub(suffix)..len,
        _ => return RangeRequest::Whole,
    };
    if range.start >= len || range.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=50-500", 100), RangeRequest::Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=9-2", 100), RangeRequest::Whole);
    }
}
