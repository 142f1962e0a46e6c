//! An axum app as a plugin (`plugins/axum_demo`, through `plugin-tower`):
//! its JSON routes, its extractor, its shared state and its WebSocket chat
//! work behind the host, mounted below a prefix, over HTTP/1.1 and HTTP/2.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use common::server::Server;
use common::ws;
use common::{app_spec, plugin_lib};

fn demo() -> Server {
    let mount = format!("/chat={}", app_spec(&plugin_lib("axum_demo"), "application"));
    Server::builder().args(["-w", "1", "--mount", &mount]).start()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn json_routes_an_extractor_and_shared_state_work_behind_a_mount() {
    let server = demo();
    for visit in 1..=3 {
        let status = server.get("/chat/api/status");
        assert_eq!(status.status, 200, "{}", status.text());
        assert_eq!(status.header("content-type"), Some("application/json"));
        assert_eq!(json(&status.text())["visits"], visit, "the count is shared state");
    }
    let greeting = server.request("GET", "/chat/api/greet/Ada?excited=true", &[("X-Visitor", "bob")], b"");
    assert_eq!(
        json(&greeting.text()),
        serde_json::json!({"greeting": "Hello, Ada!", "visitor": "bob"})
    );
    let echoed = server.request(
        "POST",
        "/chat/api/echo",
        &[("Content-Type", "application/json")],
        br#"{"a": [1, 2]}"#,
    );
    assert_eq!(json(&echoed.text()), serde_json::json!({"a": [1, 2], "received": true}));
    // axum's own answers: an unknown route, a bad JSON body, a GET on /ws.
    assert_eq!(server.get("/chat/api/nope").status, 404);
    let bad = server.request(
        "POST",
        "/chat/api/echo",
        &[("Content-Type", "application/json")],
        b"{not json",
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(server.get("/chat/ws").status, 400);
}

#[test]
fn two_chatters_hear_each_other_over_http1_and_http2() {
    let server = demo();
    let addr = server.addr;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let mut ada = ws::connect(addr, "/chat/ws").await;
            let (mut bob, status) = ws::connect_h2(addr, "/chat/ws").await;
            assert_eq!(status, 200, "RFC 8441 answers 200");
            for round in 0..5 {
                let said = format!("ada says {round}");
                ada.send(Message::text(said.clone())).await.unwrap();
                for socket_heard in [ws::next_message(&mut ada).await, ws::next_message(&mut bob).await] {
                    assert_eq!(socket_heard, Some(Message::text(said.clone())));
                }
                let said = format!("bob says {round}");
                bob.send(Message::text(said.clone())).await.unwrap();
                let heard = tokio::time::timeout(Duration::from_secs(5), ws::next_message(&mut ada)).await;
                assert_eq!(heard.unwrap(), Some(Message::text(said.clone())));
                assert_eq!(ws::next_message(&mut bob).await, Some(Message::text(said)));
            }
        });
}
