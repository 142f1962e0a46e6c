//! WebSockets: the echo app's `/ws` over HTTP/1.1 and HTTP/2 (RFC 8441),
//! the close codes the server sends for clients that break the protocol
//! (none of which reaches the app), handshakes refused before the app,
//! pings, and sockets that outlive a swap or a stop until
//! `--graceful-timeout`, then get 1001. Counted in `/metrics` and logged.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use common::fleet::{lines_with, poll, try_get, wait_for_count};
use common::server::Server;
use common::ws;
use common::{app_spec, plugin_lib};

fn async_echo() -> String {
    app_spec(&plugin_lib("echo"), "async_application")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn server(extra: &[&str]) -> Server {
    Server::builder()
        .arg(async_echo())
        .args(["--no-static", "-w", "1"])
        .args(extra)
        .start()
}

/// Echo round trips on `socket`: text as text, binary as binary, and a
/// close answered with the same code.
async fn round_trips<S>(mut socket: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..20 {
        let text = format!("message {i} ✓");
        socket.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws::next_message(&mut socket).await, Some(Message::text(text)));
        let bytes = vec![i as u8; 100 + i * 1000];
        socket.send(Message::binary(bytes.clone())).await.unwrap();
        assert_eq!(ws::next_message(&mut socket).await, Some(Message::binary(bytes)));
    }
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(4001),
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    let reply = ws::next_message(&mut socket).await;
    match reply.expect("a close back") {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected the close back, got {other:?}"),
    }
}

#[test]
fn the_echo_app_echoes_over_http1_and_http2() {
    let server = server(&[]);
    let addr = server.addr;
    runtime().block_on(async move {
        for _ in 0..3 {
            round_trips(ws::connect(addr, "/ws").await).await;
            let (socket, status) = ws::connect_h2(addr, "/ws").await;
            assert_eq!(status, 200, "RFC 8441 answers 200");
            round_trips(socket).await;
        }
    });
    wait_for_count(&server, "\"GET /ws HTTP/1.1\" 101 ", 3, Duration::from_secs(5));
    wait_for_count(&server, "\"CONNECT /ws HTTP/2\" 200 ", 3, Duration::from_secs(5));
    // Not a WebSocket request: the app answers 400 itself.
    assert!(matches!(try_get(addr, "/ws", Duration::from_secs(5)), Ok((400, _))));
}

#[test]
fn clients_that_break_the_protocol_get_its_close_codes_and_never_reach_the_app() {
    let server = server(&["--ws-max-message", "1KiB"]);
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("unmasked client frame", ws::frame(0x1, true, b"hello", true), 1002),
        ("fragmented ping", ws::frame(0x9, false, b"ping", false), 1002),
        (
            "invalid UTF-8 text",
            ws::frame(0x1, true, &[0x68, 0xff, 0xfe, 0x69], false),
            1007,
        ),
        (
            "a message over --ws-max-message",
            ws::frame(0x2, true, &[7u8; 2048], false),
            1009,
        ),
    ];
    for round in 0..3 {
        for (what, bytes, code) in &cases {
            let mut stream = ws::raw(server.addr, "/ws");
            stream.write_all(bytes).unwrap();
            assert_eq!(ws::read_close(&mut stream, false), Some(*code), "round {round}: {what}");
        }
        // The echo answers what is well formed, before and after.
        let mut stream = ws::raw(server.addr, "/ws");
        stream.write_all(&ws::frame(0x1, true, b"fine", false)).unwrap();
        stream
            .write_all(&ws::frame(0x8, true, &1000u16.to_be_bytes(), false))
            .unwrap();
        assert_eq!(ws::read_close(&mut stream, false), Some(1000));
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn bad_handshakes_are_refused_before_the_app() {
    let server = server(&[]);
    let ask = |head: &str| {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
        answer
    };
    let base = |method: &str, version: &str, key: &str, ws_version: &str| {
        format!(
            "{method} /ws {version}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {ws_version}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let status = |answer: String| answer.split(' ').nth(1).unwrap_or_default().to_owned();
    assert_eq!(status(ask(&base("POST", "HTTP/1.1", good_key, "13"))), "400");
    assert_eq!(status(ask(&base("GET", "HTTP/1.0", good_key, "13"))), "400");
    assert_eq!(status(ask(&base("GET", "HTTP/1.1", "c2hvcnQ=", "13"))), "400");
    let old = ask(&base("GET", "HTTP/1.1", good_key, "8"));
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");
    assert!(old.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{old}");
}

#[test]
fn unanswered_pings_close_the_socket_and_answered_ones_keep_it() {
    let server = server(&["--ws-ping-interval", "300ms", "--ws-ping-timeout", "700ms"]);
    // A client that never answers a ping.
    let mut silent = ws::raw(server.addr, "/ws");
    let started = Instant::now();
    assert_eq!(ws::read_close(&mut silent, false), Some(1011));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // One that does (tungstenite answers pings as it reads) stays open.
    let addr = server.addr;
    runtime().block_on(async move {
        let mut socket = ws::connect(addr, "/ws").await;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            socket.send(Message::text("still here")).await.unwrap();
            assert_eq!(ws::next_message(&mut socket).await, Some(Message::text("still here")));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

#[test]
fn idle_sockets_are_closed_with_1001_and_busy_ones_kept() {
    let server = server(&["--ws-idle-timeout", "1s", "--ws-ping-interval", "0"]);
    let addr = server.addr;
    runtime().block_on(async move {
        // Messages every 300 ms for 3 s: three idle timeouts' worth.
        let mut busy = ws::connect(addr, "/ws").await;
        let mut idle = ws::connect(addr, "/ws").await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            busy.send(Message::text("busy")).await.unwrap();
            assert_eq!(ws::next_message(&mut busy).await, Some(Message::text("busy")));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        match tokio::time::timeout(Duration::from_secs(10), ws::next_message(&mut idle)).await {
            Ok(Some(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("the idle socket should have got 1001, got {other:?}"),
        }
    });
}

#[test]
fn bursts_come_back_whole_and_in_order_past_the_queues_and_a_full_socket() {
    let server = server(&[]);
    let addr = server.addr;
    runtime().block_on(async move {
        let socket = ws::connect(addr, "/ws").await;
        let (mut sink, mut stream) = futures_util::StreamExt::split(socket);
        // 2,000 messages of 8 KiB (16 MB) sent without waiting, far more
        // than the 16 queued each way and than the sockets' buffers: the
        // server must stop reading while the app's queue is full, and stop
        // taking the app's messages while the socket is, then go on.
        const COUNT: usize = 2_000;
        let message = |i: usize| {
            let mut text = format!("{i}:");
            text.extend(std::iter::repeat_n('x', 8192 - text.len()));
            Message::text(text)
        };
        let sending = tokio::spawn(async move {
            for i in 0..COUNT {
                sink.feed(message(i)).await.unwrap();
            }
            sink.flush().await.unwrap();
        });
        for i in 0..COUNT {
            let got = tokio::time::timeout(Duration::from_secs(30), ws::next_message(&mut stream))
                .await
                .unwrap_or_else(|_| panic!("message {i} never came back"));
            assert_eq!(got, Some(message(i)), "message {i}");
        }
        sending.await.unwrap();
    });
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Opens a socket to `addr`, and checks it echoes.
async fn open(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let mut socket = ws::connect(addr, "/ws").await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws::next_message(&mut socket).await, Some(Message::text("hello")));
    socket
}

/// Echoes on `socket` until it closes: the close code, and when.
async fn until_closed(mut socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> (Option<u16>, Instant) {
    loop {
        if socket.send(Message::text("ping?")).await.is_err() {
            return (None, Instant::now());
        }
        match tokio::time::timeout(Duration::from_secs(20), ws::next_message(&mut socket)).await {
            Ok(Some(Message::Text(_))) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(Some(Message::Close(frame))) => return (frame.map(|f| u16::from(f.code)), Instant::now()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn open_sockets_outlive_a_swap_and_a_stop_until_the_graceful_timeout_then_get_1001() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut server = server(&["--graceful-timeout", "3s", "--admin-bind", &admin.to_string()]);
    let addr = server.addr;
    let rt = runtime();
    // Two sockets, counted in /metrics.
    let (a, b) = rt.block_on(async { (open(addr).await, open(addr).await) });
    let open_gauge = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let metrics = try_get(admin, "/metrics", Duration::from_secs(5)).ok()?.1;
        metrics
            .lines()
            .any(|l| l.starts_with("host_websockets{") && l.ends_with(" 2"))
            .then_some(metrics)
    });
    let metrics = open_gauge.expect("host_websockets shows the two sockets");
    assert!(
        metrics.contains("host_websocket_messages_total{direction=\"in\"}"),
        "{metrics}"
    );
    // A swap: the old worker drains; its sockets go on, then get 1001.
    let swapped = Instant::now();
    server.signal("HUP");
    let (code, at) = rt.block_on(until_closed(a));
    assert_eq!(code, Some(1001));
    let lived = at - swapped;
    assert!(
        lived >= Duration::from_millis(1500) && lived < Duration::from_secs(10),
        "closed {lived:?} after the swap"
    );
    drop(b);
    // A stop: the same.
    let c = rt.block_on(open(addr));
    let stopped = Instant::now();
    server.signal("TERM");
    let (code, at) = rt.block_on(until_closed(c));
    assert_eq!(code, Some(1001));
    assert!(at - stopped >= Duration::from_millis(1500), "{:?}", at - stopped);
    server.wait_exit(Duration::from_secs(15)).expect("the host exits");
    let log = server.log();
    assert!(lines_with(&log, "\"GET /ws HTTP/1.1\" 101 ").len() >= 3, "{log}");
}
