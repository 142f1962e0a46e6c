//! The PROXY protocol (`--proxy-protocol`): a TCP load balancer (HAProxy,
//! AWS NLB, …) that passes connections through starts each one with a
//! header naming the client — HAProxy's v1 text line or v2 binary block,
//! parsed by the `ppp` crate. The header is taken only from trusted peers
//! (`--forwarded-allow-ips`); a connection without a valid one is closed
//! before HTTP starts. Bytes read past the header go to hyper first
//! ([`crate::server::streams::rewound::Rewound`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest header: v2's 16 fixed bytes and a 16-bit payload length
/// (v1's line is at most 107 bytes).
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address, as the proxy saw it.
    Client(SocketAddr),
    /// The proxy's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or a unix
    /// socket): keep the peer's address.
    Proxy,
}

/// Reads the PROXY header at the start of `stream` (within `timeout`);
/// returns what it says and the bytes read past it.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S, timeout: Duration) -> Result<(Source, Bytes), String> {
    tokio::time::timeout(timeout, read_header_now(stream))
        .await
        .map_err(|_| format!("no PROXY header within {} ms", timeout.as_millis()))?
}

async fn read_header_now<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Source, Bytes), String> {
    let mut buffer = BytesMut::with_capacity(256);
    loop {
        if buffer.len() >= MAX_HEADER {
            return Err("the PROXY header is too long".to_owned());
        }
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|e| format!("reading the PROXY header: {e}"))?;
        if read == 0 {
            return Err("the connection ended before its PROXY header".to_owned());
        }
        let parsed = parse(&buffer);
        if let Some((source, len)) = parsed? {
            buffer.advance(len);
            return Ok((source, buffer.freeze()));
        }
    }
}

/// The header at the start of `bytes` and its length; `None` while it is
/// incomplete.
fn parse(bytes: &[u8]) -> Result<Option<(Source, usize)>, String> {
    let header = HeaderResult::parse(bytes);
    if header.is_incomplete() {
        return Ok(None);
    }
    let from = |ip: IpAddr, port| Source::Client(SocketAddr::new(ip, port));
    let parsed = match header {
        HeaderResult::V1(Ok(header)) => {
            let source = match header.addresses {
                v1::Addresses::Tcp4(a) => from(a.source_address.into(), a.source_port),
                v1::Addresses::Tcp6(a) => from(a.source_address.into(), a.source_port),
                v1::Addresses::Unknown => Source::Proxy,
            };
            (source, header.header.len())
        }
        HeaderResult::V2(Ok(header)) => {
            let source = match (header.command, header.addresses) {
                (v2::Command::Local, _) | (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => Source::Proxy,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => from(a.source_address.into(), a.source_port),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => from(a.source_address.into(), a.source_port),
            };
            (source, header.len())
        }
        HeaderResult::V1(Err(e)) => return Err(format!("not a PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => return Err(format!("not a PROXY v2 header: {e}")),
    };
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::streams::rewound::Rewound;

    fn v2_header(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    #[test]
    fn v1_and_v2_headers_name_the_client() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (source, len) = parse(v1).unwrap().unwrap();
        assert_eq!(source, Source::Client("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(&v1[len..], b"GET / HTTP/1.1\r\n");

        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n";
        assert_eq!(
            parse(v6).unwrap().unwrap().0,
            Source::Client("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0, Source::Proxy);

        // v2, PROXY over TCP/IPv4: 198.51.100.9:8080 → 10.0.0.1:443.
        let v2 = v2_header(1, 0x11, &[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        let (source, len) = parse(&v2).unwrap().unwrap();
        assert_eq!(source, Source::Client("198.51.100.9:8080".parse().unwrap()));
        assert_eq!(len, v2.len());
        // LOCAL (a health check from the proxy itself).
        assert_eq!(parse(&v2_header(0, 0, &[])).unwrap().unwrap().0, Source::Proxy);
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_are_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0.113.7").unwrap(), None);
        assert_eq!(parse(b"\r\n\r\n\0\r\n").unwrap(), None);
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?} was taken", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn the_bytes_after_the_header_are_read_again() {
        let sent = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
        let mut stream = std::io::Cursor::new(sent);
        let (source, rest) = read_header(&mut stream, Duration::from_secs(5)).await.unwrap();
        assert_eq!(source, Source::Client("203.0.113.7:51234".parse().unwrap()));
        let mut rewound = Rewound::new(rest, stream);
        let mut request = String::new();
        rewound.read_to_string(&mut request).await.unwrap();
        assert_eq!(request, "GET / HTTP/1.1\r\n\r\n");
        let mut empty = std::io::Cursor::new(Vec::new());
        assert!(read_header(&mut empty, Duration::from_secs(5)).await.is_err());
    }
}
