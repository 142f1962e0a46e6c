//! The WebSocket handshake (RFC 6455 §4, RFC 8441 §4): what a request
//! asks for, checked before the app sees it.

use base64::Engine;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode, Version};

use crate::plugin::exchange::Refusal;
use crate::server::http::body::Body;
use crate::server::http::responses;

/// The WebSocket protocol version this server speaks.
const VERSION: &str = "13";

/// What a request asks of WebSockets.
pub enum Handshake {
    /// Nothing: an ordinary request.
    None,
    /// A valid handshake.
    Valid(Offer),
    /// A handshake the server refuses (400, 426 with the version it speaks,
    /// 501), without calling the app.
    Invalid(hyper::Response<Body>),
}

/// A valid handshake's particulars.
pub struct Offer {
    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`).
    pub protocols: Vec<String>,
    /// HTTP/1.1's `Sec-WebSocket-Key` (HTTP/2 has none).
    pub(super) key: Option<String>,
}

/// Whether `request` asks for a WebSocket, and if so whether its handshake
/// is valid.
pub fn handshake(request: &Parts) -> Handshake {
    let headers = &request.headers;
    let wants = if request.version == Version::HTTP_2 {
        match request.extensions.get::<hyper::ext::Protocol>() {
            None => return Handshake::None,
            Some(protocol) if !protocol.as_str().eq_ignore_ascii_case("websocket") => {
                return Handshake::Invalid(refused(
                    StatusCode::NOT_IMPLEMENTED,
                    "the only protocol extended CONNECT serves here is websocket",
                ));
            }
            Some(_) => true,
        }
    } else {
        has_token(headers, header::UPGRADE, "websocket")
    };
    if !wants {
        return Handshake::None;
    }
    let key = if request.version == Version::HTTP_2 {
        None
    } else {
        if request.version != Version::HTTP_11 {
            return Handshake::Invalid(refused(
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake needs HTTP/1.1 (or HTTP/2)",
            ));
        }
        if request.method != Method::GET {
            return Handshake::Invalid(refused(
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake is a GET request",
            ));
        }
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Handshake::Invalid(refused(
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake needs Connection: Upgrade",
            ));
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok());
        let decodes_to_16 = key.is_some_and(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .is_ok_and(|bytes| bytes.len() == 16)
        });
        if !decodes_to_16 {
            return Handshake::Invalid(refused(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)",
            ));
        }
        key.map(|key| key.trim().to_owned())
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes);
    if version != Some(VERSION.as_bytes()) {
        let mut response = responses::error(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13 (Sec-WebSocket-Version)",
        );
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION));
        return Handshake::Invalid(response);
    }
    let protocols = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Handshake::Valid(Offer { protocols, key })
}

/// A refusal's response (the connection closed after it).
fn refused(status: StatusCode, detail: &str) -> hyper::Response<Body> {
    responses::refusal(&Refusal::new(status, detail))
}

/// Whether header `name` lists `token` (case-insensitively).
fn has_token(headers: &hyper::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;

    fn request(version: Version, method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/ws").version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    /// What `handshake` makes of `request`: None, 101 (valid) or the refusal's status.
    fn status(request: Request<()>) -> Option<u16> {
        match handshake(&request.into_parts().0) {
            Handshake::None => None,
            Handshake::Valid(_) => Some(101),
            Handshake::Invalid(response) => Some(response.status().as_u16()),
        }
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn handshakes_are_checked_as_rfc_6455_asks() {
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &GOOD)), Some(101));
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &[])), None, "not asked");
        assert_eq!(status(request(Version::HTTP_11, Method::POST, &GOOD)), Some(400));
        assert_eq!(status(request(Version::HTTP_10, Method::GET, &GOOD)), Some(400));
        let mut short_key = GOOD;
        short_key[2].1 = "c2hvcnQ=";
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &short_key)), Some(400));
        let mut old = GOOD;
        old[3].1 = "8";
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &old)), Some(426));
        let no_connection = [GOOD[0], GOOD[2], GOOD[3]];
        assert_eq!(
            status(request(Version::HTTP_11, Method::GET, &no_connection)),
            Some(400)
        );
    }
}
