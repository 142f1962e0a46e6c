//! `axum_demo`: an ordinary axum app, served by the host as a plugin. It
//! has JSON routes, an extractor of its own, shared state, and a WebSocket
//! chat that `html/chat.html` uses; `make run` mounts it at `/chat`.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/status` | `{"visits": n, "pid": p}`: requests this worker's app has seen |
//! | `GET /api/greet/{name}?excited=true` | `{"greeting": "Hello, NAME!", "visitor": "…"}` |
//! | `POST /api/echo` | the JSON body back, with a `received` field added |
//! | `GET /ws` | a WebSocket: every text message goes to every socket of this worker |
//!
//! The visitor is the `X-Visitor` header, or `anonymous` (the
//! [`Visitor`] extractor). Chat rooms live in one worker process: with
//! several workers, sockets only hear those of their own worker (a shared
//! room needs a store outside the server, such as Redis).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use plugin_tower::ws::{Message, WebSocket, WebSocketUpgrade};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What every request shares: a counter and the chat room.
#[derive(Clone)]
struct AppState {
    visits: Arc<AtomicU64>,
    room: broadcast::Sender<String>,
}

/// The app, built once when the host loads the library.
fn router() -> Router {
    let state = AppState {
        visits: Arc::default(),
        room: broadcast::channel(256).0,
    };
    Router::new()
        .route("/api/status", get(status))
        .route("/api/greet/{name}", get(greet))
        .route("/api/echo", post(echo))
        .route("/ws", get(chat))
        .with_state(state)
}

#[derive(Serialize)]
struct Status {
    visits: u64,
    pid: u32,
}

async fn status(State(state): State<AppState>) -> Json<Status> {
    let visits = state.visits.fetch_add(1, Ordering::Relaxed) + 1;
    Json(Status {
        visits,
        pid: std::process::id(),
    })
}

/// Who is asking: the `X-Visitor` header, or `anonymous`.
struct Visitor(String);

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let name = parts
            .headers
            .get("x-visitor")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous");
        Ok(Visitor(name.to_owned()))
    }
}

#[derive(Deserialize)]
struct GreetOptions {
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    visitor: String,
}

async fn greet(
    Path(name): Path<String>,
    Query(options): Query<GreetOptions>,
    Visitor(visitor): Visitor,
) -> Json<Greeting> {
    let end = if options.excited { "!" } else { "." };
    Json(Greeting {
        greeting: format!("Hello, {name}{end}"),
        visitor,
    })
}

async fn echo(Json(mut body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    if let Some(object) = body.as_object_mut() {
        object.insert("received".to_owned(), true.into());
    }
    Json(body)
}

async fn chat(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| talk(socket, state.room))
}

/// One chatter: what they say goes to the room, what the room hears comes
/// back to them.
async fn talk(mut socket: WebSocket, room: broadcast::Sender<String>) {
    let mut heard = room.subscribe();
    loop {
        tokio::select! {
            said = socket.recv() => match said {
                Some(Message::Text(text)) => {
                    let _ = room.send(text);
                }
                Some(Message::Close { .. }) | None => break,
                Some(_) => {}
            },
            line = heard.recv() => match line {
                Ok(line) => {
                    if socket.send(Message::Text(line)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

plugin_tower::export_service!(application = router);
