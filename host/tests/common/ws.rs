//! WebSocket clients for the tests: a real one (tokio-tungstenite over a
//! TCP connection, or over an HTTP/2 stream opened with RFC 8441's extended
//! CONNECT) and a raw one that writes frames by hand, to break the rules.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The next data or close message (pings and pongs skipped).
pub async fn next_message<S>(socket: &mut S) -> Option<Message>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match socket.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return Some(message),
            Err(e) => {
                eprintln!("websocket read failed: {e}");
                return None;
            }
        }
    }
}

/// A WebSocket client over TCP, through the real handshake.
pub async fn connect(addr: SocketAddr, path: &str) -> WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let url = format!("ws://{addr}{path}");
    let (socket, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake with {addr}{path} failed: {e}"));
    assert_eq!(response.status(), 101);
    socket
}

/// A WebSocket client over an HTTP/2 stream (cleartext, prior knowledge),
/// opened with extended CONNECT; the handshake's status too.
pub async fn connect_h2(addr: SocketAddr, path: &str) -> (WebSocketStream<H2Stream>, u16) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    // The server's SETTINGS arrive after the handshake.
    let offered = tokio::time::timeout(Duration::from_secs(5), async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(offered.is_ok(), "the server does not offer extended CONNECT (RFC 8441)");
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, send) = client.send_request(request, false).expect("send CONNECT");
    let response = response.await.expect("CONNECT response");
    let status = response.status().as_u16();
    let recv = response.into_body();
    let stream = H2Stream {
        send,
        recv,
        pending: Bytes::new(),
    };
    (
        WebSocketStream::from_raw_socket(stream, Role::Client, None).await,
        status,
    )
}

/// An HTTP/2 stream as a byte stream.
pub struct H2Stream {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    pending: Bytes,
}

impl AsyncRead for H2Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let count = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..count]);
        self.pending.advance(count);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.send.reserve_capacity(buf.len());
        let capacity = match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(capacity)) => capacity,
            Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            None => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        };
        let count = capacity.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..count]), false)
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(count))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// A raw TCP connection after a valid handshake to `path` (the 101 read).
pub fn raw(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read the handshake"),
            1,
            "closed in the handshake"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the accept key of RFC 6455's example: {head}"
    );
    stream
}

/// A client frame: `opcode`, FIN as given, masked unless `unmasked`.
pub fn frame(opcode: u8, fin: bool, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if unmasked {
        frame.extend_from_slice(payload);
    } else {
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    frame
}

/// Reads server frames until a close frame: its code (`None`: the
/// connection ended without one, 1005: a close without a code). Pings are
/// answered if `pong`.
pub fn read_close(stream: &mut TcpStream, pong: bool) -> Option<u16> {
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).ok()?;
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).ok()?;
                u64::from(u16::from_be_bytes(len))
            }
            127 => {
                let mut len = [0u8; 8];
                stream.read_exact(&mut len).ok()?;
                u64::from_be_bytes(len)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).ok()?;
        match opcode {
            0x8 if payload.len() >= 2 => return Some(u16::from_be_bytes([payload[0], payload[1]])),
            0x8 => return Some(1005),
            0x9 if pong => {
                let _ = stream.write_all(&frame(0xA, true, &payload, false));
            }
            _ => {}
        }
    }
}
