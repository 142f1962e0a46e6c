//! Any [`tower::Service`](tower_service::Service) over `http` types (an
//! axum `Router`, a tower stack, hand-written) served as a host app, so an
//! existing Rust web service runs as a crash-isolated, hot-swappable plugin.
//!
//! ```ignore
//! use axum::{routing::get, Router};
//!
//! fn router() -> Router {
//!     Router::new().route("/", get(|| async { "hello from axum\n" }))
//! }
//!
//! plugin_tower::export_service!(application = router);
//! ```
//!
//! Then `host --mount /api=libmy_service.so:application` serves it.
//!
//! - **Requests** cross through plugin-api's async interface: the service
//!   sees the method, the path below its mount (`PATH_INFO`, so a service
//!   mounted at `/api` routes `/users` for `/api/users`; `SCRIPT_NAME` is in
//!   the [`MountPrefix`] extension), the query, the headers and a streamed
//!   body. With the `axum` feature, `ConnectInfo<SocketAddr>` holds the
//!   client's address.
//! - **Responses** stream back chunk by chunk, each send waiting for the
//!   client (backpressure); a response body's trailers are dropped.
//! - **WebSockets**: axum's own `WebSocketUpgrade` needs hyper's upgrade
//!   internals, which a plugin cannot reach. [`ws::WebSocketUpgrade`] is
//!   the extractor to use instead: the host then runs the protocol (limits,
//!   pings, the close handshake, 1001 on a swap), the handler gets whole
//!   messages.
//! - The service's own I/O (tokio timers, sockets, clients, pools) runs on
//!   the plugin's runtime (see plugin-api's "Async apps").
//!
//! The service is built once, when the host loads the library, and cloned
//! for each request (an axum `Router` clones cheaply).

#[cfg(feature = "axum")]
pub mod ws;

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use plugin_api::{AppError, AppFuture, AsyncApp, Request};
use tower_service::Service;

/// Exports a tower service (built once by calling the given function or
/// closure when the host loads the library) as an async app under a
/// symbol name.
///
/// `plugin_tower::export_service!(application = router);` exports what
/// `router()` returns under the symbol `application`.
#[macro_export]
macro_rules! export_service {
    ($symbol:ident = $make:expr) => {
        $crate::plugin_api::export_async_app!($symbol = $crate::ServiceApp::new(($make)()));
    };
}

/// The interface crate, for [`export_service!`]'s expansion.
#[doc(hidden)]
pub use plugin_api;

/// The errors a service and its bodies may have.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `SCRIPT_NAME`: where the service is mounted (empty at the root), for
/// building links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPrefix(pub String);

/// A plugin-api request, for extractors that answer it themselves (the
/// WebSocket upgrade).
#[derive(Clone)]
pub(crate) struct HostRequest(pub(crate) Request);

/// A tower service as an async app.
pub struct ServiceApp<S> {
    service: S,
}

impl<S> ServiceApp<S> {
    /// `service`, served for every request (a clone each).
    pub fn new(service: S) -> Self {
        ServiceApp { service }
    }
}

impl<S, B> AsyncApp for ServiceApp<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    fn call(&self, request: Request) -> AppFuture {
        let mut service = self.service.clone();
        Box::pin(async move {
            let http_request = to_http(&request)?;
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| boxed("the service is not ready", e))?;
            let mut response = service
                .call(http_request)
                .await
                .map_err(|e| boxed("the service failed", e))?;
            #[cfg(feature = "axum")]
            if let Some(upgrade) = response.extensions_mut().remove::<ws::PendingUpgrade>() {
                return upgrade.accept(&request, response.headers()).await;
            }
            respond(&request, response).await
        })
    }
}

/// An error with what was being done.
fn boxed(doing: &str, error: impl Into<BoxError>) -> AppError {
    format!("{doing}: {}", error.into()).into()
}

/// The `http` request for a plugin-api one.
fn to_http(request: &Request) -> Result<http::Request<RequestBody>, AppError> {
    let environ = request.environ();
    // A WebSocket over HTTP/2 comes as an extended CONNECT; the service sees
    // the handshake as over HTTP/1.1, a GET, so `get(handler)` routes serve
    // both.
    let method = match Method::from_bytes(environ.method().as_bytes())? {
        Method::CONNECT if request.is_websocket() => Method::GET,
        method => method,
    };
    let mut target = encode_path(environ.path_info());
    if target.is_empty() {
        target.push('/');
    }
    if !environ.query_string().is_empty() {
        target.push('?');
        target.push_str(environ.query_string());
    }
    let mut headers = HeaderMap::new();
    for (name, value) in environ.headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let version = match environ.server_protocol() {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/2" => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut http_request = http::Request::builder()
        .method(method)
        .uri(target.parse::<Uri>()?)
        .version(version)
        .body(RequestBody {
            request: Some(request.clone()),
        })?;
    *http_request.headers_mut() = headers;
    let extensions = http_request.extensions_mut();
    extensions.insert(MountPrefix(environ.script_name().to_owned()));
    extensions.insert(HostRequest(request.clone()));
    #[cfg(feature = "axum")]
    if let Ok(ip) = environ.remote_addr().parse::<std::net::IpAddr>() {
        let port = environ.remote_port().parse().unwrap_or(0);
        extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(ip, port)));
    }
    Ok(http_request)
}

/// A decoded path as a URI path: every byte that may not stand for itself
/// percent-encoded again.
fn encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        let stands = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if stands {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Sends `response` back: its status and headers, then its body, each
/// chunk once the client took the last.
async fn respond<B>(request: &Request, response: http::Response<B>) -> Result<(), AppError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let status = format!(
        "{} {}",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    let headers = text_headers(&parts.headers);
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut sender = request.start(&status, &pairs)?;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| boxed("the response body failed", e))?;
        if let Ok(data) = frame.into_data() {
            sender.send(Vec::from(data)).await?;
        }
    }
    Ok(())
}

/// Headers whose values are text (the interface's); others are dropped.
fn text_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// A request body read from the host as the service polls it.
pub struct RequestBody {
    /// `None` once the body ended.
    request: Option<Request>,
}

// Nothing in it is pinned: the request is a handle.
impl Unpin for RequestBody {}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(request) = this.request.as_mut() else {
            return Poll::Ready(None);
        };
        match request.poll_chunk(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(chunk))) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk))))),
            Poll::Ready(Ok(None)) => {
                this.request = None;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.request = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.request.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_back_so_they_parse_as_uris() {
        assert_eq!(encode_path("/a b/中"), "/a%20b/%E4%B8%AD");
        assert_eq!(encode_path("/users/42;x=1"), "/users/42;x=1");
        assert_eq!(encode_path("/100%"), "/100%25");
        assert!(encode_path("/a?b#c").parse::<Uri>().is_ok());
    }
}
