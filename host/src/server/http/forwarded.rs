//! Behind a proxy (`--forwarded-allow-ips`, gunicorn's name): from a
//! trusted peer, `Forwarded` (RFC 7239) or else `X-Forwarded-For` /
//! `X-Forwarded-Proto` name the client and the scheme it used, and become
//! `REMOTE_ADDR` and `wsgi.url_scheme`; from any other peer they are
//! ignored (a client cannot claim another address). Unix-socket peers are
//! trusted: only a local process can connect there.
//!
//! The client is the rightmost address in the list that is not itself a
//! trusted proxy: each proxy appends what it saw, so addresses left of the
//! first untrusted one could have been written by the client.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, FORWARDED};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether `name` is one of the forwarding headers a trusted proxy sets.
pub fn is_forwarding(name: &HeaderName) -> bool {
    *name == FORWARDED || *name == X_FORWARDED_FOR || *name == X_FORWARDED_PROTO
}

pub use crate::config::ProxyNet;

impl ProxyNet {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self, ip) {
            (ProxyNet::Any, _) => true,
            (ProxyNet::Net(IpAddr::V4(net), bits), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (ProxyNet::Net(IpAddr::V6(net), bits), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<ProxyNet>);

/// The client as a trusted proxy describes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `REMOTE_ADDR`, if a proxy named one.
    pub client: Option<String>,
    /// `wsgi.url_scheme`, if a proxy named one (`http` or `https`).
    pub scheme: Option<&'static str>,
}

impl TrustedProxies {
    /// Trusts peers in `nets`.
    pub fn new(nets: &[ProxyNet]) -> TrustedProxies {
        TrustedProxies(nets.to_vec())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Whether the peer at `remote_addr` (empty for a unix socket) is a
    /// trusted proxy.
    pub fn trusts_peer(&self, remote_addr: &str) -> bool {
        remote_addr.is_empty() || remote_addr.parse().is_ok_and(|ip| self.trusts(ip))
    }

    /// What the forwarding headers say, for a request from a trusted peer.
    pub fn read(&self, headers: &HeaderMap) -> Forwarded {
        // Most requests carry none: no parsing, no allocation.
        if !headers.keys().any(is_forwarding) {
            return Forwarded::default();
        }
        let values = |name: &HeaderName| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|part| part.trim().to_owned())
                .filter(|part| !part.is_empty())
                .collect()
        };
        let forwarded = values(&FORWARDED);
        let (fors, proto): (Vec<String>, Option<String>) = if forwarded.is_empty() {
            (values(&X_FORWARDED_FOR), values(&X_FORWARDED_PROTO).pop())
        } else {
            let param = |element: &str, key: &str| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case(key)
                        .then(|| v.trim().trim_matches('"').to_owned())
                })
            };
            let fors = forwarded.iter().filter_map(|e| param(e, "for")).collect();
            (fors, forwarded.last().and_then(|e| param(e, "proto")))
        };
        Forwarded {
            client: self.client_of(&fors),
            scheme: match proto.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("https") => Some("https"),
                Some("http") => Some("http"),
                _ => None,
            },
        }
    }

    /// The rightmost address not of a trusted proxy (or the leftmost, if
    /// all are trusted).
    fn client_of(&self, fors: &[String]) -> Option<String> {
        let addresses: Vec<IpAddr> = fors.iter().filter_map(|f| parse_node(f)).collect();
        if addresses.len() != fors.len() {
            return None; // an unknown or obfuscated node: name no client
        }
        let client = addresses
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(addresses.first())?;
        Some(client.to_canonical().to_string())
    }
}

/// An address from `X-Forwarded-For` or a `Forwarded` `for=`: `1.2.3.4`,
/// `1.2.3.4:5678`, `[::1]`, `[::1]:5678`, `::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?
        .0
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&nets.iter().map(|n| n.parse().unwrap()).collect::<Vec<_>>())
    }

    fn read(proxies: &TrustedProxies, headers: &[(&'static str, &str)]) -> Forwarded {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().unwrap());
        }
        proxies.read(&map)
    }

    #[test]
    fn networks_parse_and_match() {
        let local = proxies(&["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
        assert!(local.trusts_peer("127.0.0.1"));
        assert!(local.trusts_peer("10.200.3.4"));
        assert!(local.trusts_peer("fd12::1"));
        assert!(local.trusts_peer("::ffff:127.0.0.1"));
        assert!(local.trusts_peer("")); // a unix socket
        assert!(!local.trusts_peer("11.0.0.1"));
        assert!(!local.trusts_peer("::1"));
        assert!(proxies(&["*"]).trusts_peer("8.8.8.8"));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", ""] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad}");
        }
        assert_eq!("10.0.0.0/8".parse::<ProxyNet>().unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let got = read(
            &p,
            &[
                ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5"),
                ("x-forwarded-proto", "https"),
            ],
        );
        assert_eq!(
            got,
            Forwarded {
                client: Some("1.2.3.4".into()),
                scheme: Some("https")
            }
        );
        let got = read(&p, &[("x-forwarded-for", "10.0.0.7"), ("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(got.client.as_deref(), Some("10.0.0.7"));
        let got = read(
            &p,
            &[(
                "forwarded",
                "for=1.2.3.4;proto=http, for=\"[2001:db8::1]:443\";proto=https",
            )],
        );
        assert_eq!(
            got,
            Forwarded {
                client: Some("2001:db8::1".into()),
                scheme: Some("https")
            }
        );
        assert_eq!(read(&p, &[("x-forwarded-for", "unknown")]).client, None);
        assert_eq!(read(&p, &[("x-forwarded-proto", "gopher")]).scheme, None);
        assert_eq!(
            read(&p, &[]),
            Forwarded {
                client: None,
                scheme: None
            }
        );
    }
}
