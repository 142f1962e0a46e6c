//! Precompressed files: `x.br`, `x.zst` or `x.gz` beside `x` are sent
//! instead of `x` (with `Content-Encoding`) to clients whose
//! `Accept-Encoding` takes them (RFC 9110 §12.5.3, q-values included).

use hyper::header::HeaderValue;

/// An encoding a precompressed file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli, `x.br`.
    Brotli,
    /// Zstandard, `x.zst`.
    Zstd,
    /// gzip, `x.gz`.
    Gzip,
}

impl Encoding {
    /// Every encoding, the server's preference first (smallest files).
    pub const ALL: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

    /// The file name suffix of a file precompressed this way.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }

    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The encoding to send, among `available`, for a request's
/// `Accept-Encoding`: the one with the highest q-value above zero (ties go
/// to the server's preference); `None` means the file as it is.
pub fn choose(accept: Option<&HeaderValue>, available: impl Iterator<Item = Encoding>) -> Option<Encoding> {
    let accept = accept?.to_str().ok()?;
    let mut best: Option<(Encoding, u16)> = None;
    for encoding in available {
        let q = quality(accept, encoding.token());
        if q > 0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((encoding, q));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// The q-value (in thousandths) `accept` gives `token`: its own entry, else
/// `*`'s, else 0. `x-gzip` counts as `gzip` (RFC 9110 §8.4.1.3).
fn quality(accept: &str, token: &str) -> u16 {
    let mut wildcard = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map(parse_q)
            .next()
            .unwrap_or(Some(1000));
        let Some(q) = q else { continue }; // a malformed q: ignore the entry
        let named = name.eq_ignore_ascii_case(token) || (token == "gzip" && name.eq_ignore_ascii_case("x-gzip"));
        if named {
            return q;
        }
        if name == "*" {
            wildcard = Some(q);
        }
    }
    wildcard.unwrap_or(0)
}

/// RFC 9110's `qvalue` (`0`, `0.5`, `1.000`, …) in thousandths.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(fraction),
        "1" if fraction == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str, available: &[Encoding]) -> Option<Encoding> {
        choose(Some(&HeaderValue::from_str(accept).unwrap()), available.iter().copied())
    }

    #[test]
    fn the_best_acceptable_encoding_wins() {
        use Encoding::*;
        assert_eq!(pick("gzip, deflate, br, zstd", &Encoding::ALL), Some(Brotli));
        assert_eq!(pick("gzip, deflate", &Encoding::ALL), Some(Gzip));
        assert_eq!(pick("gzip;q=1, br;q=0.5", &Encoding::ALL), Some(Gzip));
        assert_eq!(pick("br;q=0, gzip", &Encoding::ALL), Some(Gzip));
        assert_eq!(pick("br;q=0", &[Brotli]), None);
        assert_eq!(pick("*", &[Zstd, Gzip]), Some(Zstd));
        assert_eq!(pick("*;q=0.1, gzip;q=0.5", &[Brotli, Gzip]), Some(Gzip));
        assert_eq!(pick("*, br;q=0", &[Brotli, Gzip]), Some(Gzip));
        assert_eq!(pick("identity", &Encoding::ALL), None);
        assert_eq!(pick("x-gzip", &[Gzip]), Some(Gzip));
        assert_eq!(pick("GZIP", &[Gzip]), Some(Gzip));
        assert_eq!(pick("gzip", &[Brotli]), None);
        assert_eq!(pick("", &Encoding::ALL), None);
        assert_eq!(choose(None, Encoding::ALL.into_iter()), None);
        // A malformed q-value drops its entry, never the request.
        assert_eq!(pick("br;q=2, gzip;q=0.8", &Encoding::ALL), Some(Gzip));
        assert_eq!(pick("br;q=0.0001", &[Brotli]), None);
    }

    #[test]
    fn q_values_parse_as_the_rfc_writes_them() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("abc"), None);
    }
}
