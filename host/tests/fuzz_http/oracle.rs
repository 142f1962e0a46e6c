//! The fuzzer's oracle: a strict RFC 9112 reading of a request stream,
//! written from the RFC and the host's documented rules (README, "Strict
//! HTTP"), independently of the server's code. It says which requests at
//! the start of a stream a strict server may serve; everything after the
//! first one it refuses must not reach an app.

/// A request the oracle accepts, as the echo app will report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Whether it reaches the app (`OPTIONS *` is the server's).
    pub app: bool,
    /// The method.
    pub method: String,
    /// `PATH_INFO`: the decoded path.
    pub path: String,
    /// `QUERY_STRING`.
    pub query: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The limits the server under test runs with.
pub const MAX_BODY: usize = 1 << 20;
const MAX_HEAD: usize = 32 << 10;
const MAX_FIELDS: usize = 100;
const MAX_TARGET: usize = 8 << 10;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// The requests a strict server serves from the start of `stream`, up to
/// the first it must refuse or the last before the connection ends.
pub fn accepted(stream: &[u8]) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        while stream[at..].starts_with(b"\r\n") {
            at += 2;
        }
        if at >= stream.len() {
            return out;
        }
        match one(&stream[at..]) {
            Some((request, used, keep_alive)) => {
                out.push(request);
                at += used;
                if !keep_alive {
                    return out;
                }
            }
            None => return out,
        }
    }
}

/// One request at the start of `bytes`: it, the bytes it used, and whether
/// the connection stays open after it.
fn one(bytes: &[u8]) -> Option<(Expected, usize, bool)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end > MAX_HEAD {
        return None;
    }
    let head = &bytes[..head_end - 2];
    // Every LF ends a CRLF; no other CR.
    for (i, b) in head.iter().enumerate() {
        match b {
            b'\n' if i == 0 || head[i - 1] != b'\r' => return None,
            b'\r' if head.get(i + 1) != Some(&b'\n') => return None,
            _ => {}
        }
    }
    let mut lines = head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next()?;
    let mut parts = line.split(|b| *b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return None;
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return None,
    };
    let method = String::from_utf8(method.to_vec()).ok()?;
    if method == "CONNECT" || target.len() > MAX_TARGET {
        return None;
    }
    let (path, query, app) = match target {
        b"*" if method == "OPTIONS" => (String::new(), String::new(), false),
        b"*" => return None,
        _ => {
            let (path, query) = origin_or_absolute(target)?;
            (path, query, true)
        }
    };
    let mut fields = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            return None;
        }
        if !value
            .iter()
            .all(|b| *b == b'\t' || (0x20..=0x7e).contains(b) || *b >= 0x80)
        {
            return None;
        }
        let value = value.trim_ascii();
        fields.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec()));
    }
    if fields.len() > MAX_FIELDS {
        return None;
    }
    let all = |name: &'static str| fields.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice());
    let hosts: Vec<&[u8]> = all("host").collect();
    match (hosts.as_slice(), http10) {
        ([], true) => {}
        ([host], _) if is_host(host) => {}
        _ => return None,
    }
    if let Some(expect) = all("expect").next() {
        if !expect.eq_ignore_ascii_case(b"100-continue") {
            return None;
        }
    }
    let lengths: Vec<&[u8]> = all("content-length").collect();
    let codings: Vec<Vec<u8>> = all("transfer-encoding")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|c| c.trim_ascii().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let has_te = all("transfer-encoding").next().is_some();
    let tokens = |v: &[u8]| {
        v.split(|b| *b == b',')
            .all(|t| t.trim_ascii().iter().all(|b| is_tchar(*b)))
    };
    if !all("connection").all(tokens) {
        return None;
    }
    let connection_close = all("connection").any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let keep_alive_10 = all("connection").any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
    });
    let rest = &bytes[head_end..];
    let (body, used) = if has_te {
        if http10 || !lengths.is_empty() || codings != [b"chunked".to_vec()] {
            return None;
        }
        chunked(rest)?
    } else {
        match lengths.as_slice() {
            [] => (Vec::new(), 0),
            [length] => {
                // 1*DIGIT: leading zeros are fine, whatever their number.
                if length.is_empty() || !length.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
                if length > MAX_BODY || rest.len() < length {
                    return None;
                }
                (rest[..length].to_vec(), length)
            }
            _ => return None,
        }
    };
    let keep_alive = !connection_close && (!http10 || keep_alive_10);
    Some((
        Expected {
            app,
            method,
            path,
            query,
            body,
        },
        head_end + used,
        keep_alive,
    ))
}

/// An origin-form or absolute-form target: (decoded path, query).
fn origin_or_absolute(target: &[u8]) -> Option<(String, String)> {
    let owned;
    let rest = if target.starts_with(b"/") {
        target
    } else {
        let lower = target.to_ascii_lowercase();
        let after = lower
            .strip_prefix(b"http://")
            .or_else(|| lower.strip_prefix(b"https://"))?;
        let offset = target.len() - after.len();
        let authority_end = after
            .iter()
            .position(|b| *b == b'/' || *b == b'?')
            .unwrap_or(after.len());
        let authority = &target[offset..offset + authority_end];
        if authority.contains(&b'@') || !is_host(authority) {
            return None;
        }
        let rest = &target[offset + authority_end..];
        if rest.starts_with(b"/") {
            rest
        } else {
            // An empty path is "/".
            owned = [b"/", rest].concat();
            &owned
        }
    };
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'%' if rest
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                i += 3
            }
            b if is_unreserved(b) || is_sub_delim(b) || b":@/?".contains(&b) => i += 1,
            _ => return None,
        }
    }
    let text = std::str::from_utf8(rest).ok()?;
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let decoded = percent_decode(path)?;
    if decoded.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    Some((decoded, query.to_owned()))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `uri-host [":" port]`.
fn is_host(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    if let Some(rest) = text.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        return literal.parse::<std::net::Ipv6Addr>().is_ok() && port_ok;
    }
    let (host, port) = text.rsplit_once(':').unwrap_or((text, ""));
    let mut i = 0;
    let b = host.as_bytes();
    while i < b.len() {
        match b[i] {
            b'%' if b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 3,
            c if is_unreserved(c) || is_sub_delim(c) => i += 1,
            _ => return false,
        }
    }
    !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// A strict chunked body at the start of `bytes`: (data, bytes used).
fn chunked(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &bytes[at..line_end];
        if line.len() > 4096 || line.contains(&b'\n') {
            return None;
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return None;
        }
        let significant = line[..digits].iter().skip_while(|b| **b == b'0').count();
        if significant > 16 {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
        if !chunk_ext(&line[digits..]) {
            return None;
        }
        at = line_end + 2;
        if size == 0 {
            // Trailer fields, then CRLF.
            let mut trailers = 0;
            loop {
                let end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
                let field = &bytes[at..end];
                trailers += field.len() + 2;
                if trailers > 16 << 10 || field.contains(&b'\n') {
                    return None;
                }
                at = end + 2;
                if field.is_empty() {
                    return Some((data, at));
                }
                if !trailer_ok(field) {
                    return None;
                }
            }
        }
        if data.len() as u64 + size > MAX_BODY as u64 {
            return None;
        }
        let size = size as usize;
        if bytes.len() < at + size + 2 || &bytes[at + size..at + size + 2] != b"\r\n" {
            return None;
        }
        data.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn chunk_ext(mut ext: &[u8]) -> bool {
    let ws = |s: &[u8]| -> usize { s.iter().take_while(|b| **b == b' ' || **b == b'\t').count() };
    while !ext.is_empty() {
        ext = &ext[ws(ext)..];
        let Some(rest) = ext.strip_prefix(b";") else {
            return false;
        };
        ext = &rest[ws(rest)..];
        let name = ext.iter().take_while(|b| is_tchar(**b)).count();
        if name == 0 {
            return false;
        }
        ext = &ext[name..];
        let after = ws(ext);
        if ext[after..].starts_with(b"=") {
            ext = &ext[after + 1..];
            ext = &ext[ws(ext)..];
            if ext.starts_with(b"\"") {
                let mut i = 1;
                loop {
                    match ext.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => {
                            if !ext.get(i + 1).is_some_and(|b| *b == b'\t' || *b >= 0x20 && *b != 0x7f) {
                                return false;
                            }
                            i += 2;
                        }
                        Some(b) if *b == b'\t' || (*b >= 0x20 && *b != 0x7f) => i += 1,
                        Some(_) => return false,
                    }
                }
                ext = &ext[i + 1..];
            } else {
                let token = ext.iter().take_while(|b| is_tchar(**b)).count();
                if token == 0 {
                    return false;
                }
                ext = &ext[token..];
            }
        } else if after == ext.len() && after > 0 {
            return false; // whitespace with nothing after it
        }
    }
    true
}

/// A trailer field line that is well-formed and allowed as a trailer.
fn trailer_ok(field: &[u8]) -> bool {
    const NOT_TRAILERS: [&[u8]; 14] = [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"trailer",
        b"te",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"expect",
        b"range",
        b"content-encoding",
    ];
    let Some(colon) = field.iter().position(|b| *b == b':') else {
        return false;
    };
    let (name, value) = (&field[..colon], &field[colon + 1..]);
    !name.is_empty()
        && name.iter().all(|b| is_tchar(*b))
        && value
            .iter()
            .all(|b| *b == b'\t' || (0x20..=0x7e).contains(b) || *b >= 0x80)
        && !NOT_TRAILERS.iter().any(|n| n.eq_ignore_ascii_case(name))
}
