//! WebSockets for axum handlers, run by the host: [`WebSocketUpgrade`] is
//! the extractor (axum's own needs hyper's upgrade, which a plugin cannot
//! reach), [`WebSocket`] the socket a handler gets. The host owns the
//! protocol (framing, pings, limits, the close handshake, 1001 on a swap);
//! the handler sends and receives whole messages.
//!
//! ```ignore
//! use plugin_tower::ws::{Message, WebSocket, WebSocketUpgrade};
//!
//! async fn chat(upgrade: WebSocketUpgrade) -> axum::response::Response {
//!     upgrade.on_upgrade(|mut socket: WebSocket| async move {
//!         while let Some(message) = socket.recv().await {
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use plugin_api::{AppError, Request};

pub use plugin_api::Message;

/// The WebSocket handler an upgrade runs, boxed.
type Handler = Box<dyn FnOnce(WebSocket) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// An accepted WebSocket: whole messages each way.
pub struct WebSocket {
    socket: plugin_api::WebSocket,
    protocol: Option<String>,
}

impl WebSocket {
    /// The next message; `None` once the socket is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        self.socket.recv().await
    }

    /// Sends `message` (a `Close` begins the close handshake).
    pub async fn send(&mut self, message: Message) -> Result<(), plugin_api::ResponseError> {
        self.socket.send(message).await
    }

    /// The subprotocol agreed on, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// What a handler returns for an upgrade: carried in the response's
/// extensions to the adapter, which accepts the socket and runs it (the
/// handler is taken out once; extensions must be `Clone` and `Sync`).
#[derive(Clone)]
pub(crate) struct PendingUpgrade {
    protocol: Option<String>,
    handler: Arc<Mutex<Option<Handler>>>,
}

impl PendingUpgrade {
    /// Accepts the socket (with the response's extra headers) and runs the
    /// handler to its end.
    pub(crate) async fn accept(self, request: &Request, headers: &HeaderMap) -> Result<(), AppError> {
        let extra = super::text_headers(headers);
        let pairs: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let handler = self.handler.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handler = handler.ok_or("the WebSocket upgrade was used twice")?;
        let socket = request.accept_websocket(self.protocol.as_deref(), &pairs)?;
        handler(WebSocket {
            socket,
            protocol: self.protocol,
        })
        .await;
        Ok(())
    }
}

/// An extractor for a WebSocket handshake the host checked. It rejects a
/// request that is not one with 400.
pub struct WebSocketUpgrade {
    offered: Vec<String>,
    chosen: Option<String>,
}

impl WebSocketUpgrade {
    /// The subprotocols the server speaks, in its order of preference: the
    /// first the client offered too is chosen.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.chosen = protocols
            .into_iter()
            .find(|p| self.offered.iter().any(|o| o == p.as_ref()))
            .map(|p| p.as_ref().to_owned());
        self
    }

    /// The response that accepts the socket; `handler` runs with it once
    /// the host answered the handshake.
    pub fn on_upgrade<F, Fut>(self, handler: F) -> axum::response::Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut response = axum::response::Response::new(axum::body::Body::empty());
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        response.extensions_mut().insert(PendingUpgrade {
            protocol: self.chosen,
            handler: Arc::new(Mutex::new(Some(Box::new(move |socket| Box::pin(handler(socket)))))),
        });
        response
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let request = parts.extensions.get::<super::HostRequest>().map(|host| &host.0);
        match request {
            Some(request) if request.is_websocket() => Ok(WebSocketUpgrade {
                offered: parts
                    .headers
                    .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|p| p.trim().to_owned())
                    .collect(),
                chosen: None,
            }),
            _ => Err((http::StatusCode::BAD_REQUEST, "this URL takes a WebSocket handshake\n")),
        }
    }
}
