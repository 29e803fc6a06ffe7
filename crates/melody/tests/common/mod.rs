//! Shared helpers for the black-box tests: a real server on port 0, real WebSocket clients,
//! a raw-TCP client for malformed input, and an event log to wait on handlers without sleeping.
#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use melody::Melody;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::timeout,
};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// Upper bound for any single wait in a test. Only ever reached when a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves `melody` at `/ws` on a free loopback port (with axum's `ConnectInfo`).
pub async fn spawn_app(melody: &Melody) -> SocketAddr {
    spawn_router(Router::new().route("/ws", get(melody.handler()))).await
}

/// Serves any router on a free loopback port.
pub async fn spawn_router(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// Serves any router on a free loopback port with `melody::serve`, its limits set by
/// `configure` (the default limits with `|serve| serve`).
pub async fn spawn_served<F>(
    app: Router,
    configure: impl FnOnce(
        melody::serve::Serve<Router, std::future::Pending<()>>,
    ) -> melody::serve::Serve<Router, F>,
) -> SocketAddr
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = configure(melody::serve(listener, app));
    tokio::spawn(async move { server.await });
    addr
}

/// A WebSocket client connected to `ws://addr/ws`.
pub async fn connect(addr: SocketAddr) -> Client {
    connect_with(addr, "/ws", &[]).await
}

/// A WebSocket client connected to `ws://addr{path}` with extra request headers.
pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    let mut builder = ClientBuilder::new()
        .uri(&format!("ws://{addr}{path}"))
        .unwrap();
    for (name, value) in headers {
        builder = builder
            .add_header(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            )
            .unwrap();
    }
    let (client, _) = timeout(WAIT, builder.connect())
        .await
        .expect("connect timed out")
        .unwrap();
    client
}

/// The next data message (pings and pongs are skipped; the client answers pings itself).
pub async fn recv(client: &mut Client) -> Message {
    timeout(WAIT, async {
        loop {
            let message = client.next().await.expect("connection ended").unwrap();
            if !message.is_ping() && !message.is_pong() {
                return message;
            }
        }
    })
    .await
    .expect("no message in time")
}

/// The next text message.
pub async fn recv_text(client: &mut Client) -> String {
    let message = recv(client).await;
    message
        .as_text()
        .unwrap_or_else(|| panic!("expected text, got {message:?}"))
        .to_owned()
}

/// Reads the server's close frame and returns its code and reason; then reads on until the end
/// of the stream, which sends the client's answer to the close as a browser would.
pub async fn recv_close(client: &mut Client) -> (u16, String) {
    let message = recv(client).await;
    let (code, reason) = message
        .as_close()
        .map(|(code, reason)| (u16::from(code), reason.to_owned()))
        .unwrap_or_else(|| panic!("expected close, got {message:?}"));
    timeout(WAIT, async { while client.next().await.is_some() {} })
        .await
        .expect("stream did not end after close");
    (code, reason)
}

/// Sends a text message.
pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text.to_owned())).await.unwrap();
}

/// Asserts that nothing but pings arrives before `quiet` elapses (used only to check absence).
pub async fn assert_silent(client: &mut Client, quiet: Duration) {
    let got = timeout(quiet, async {
        loop {
            match client.next().await {
                Some(Ok(m)) if m.is_ping() || m.is_pong() => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(got.is_err(), "expected silence, got {got:?}");
}

/// A log of handler events, to wait on from the test.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<String>,
}

pub struct EventLog {
    rx: mpsc::UnboundedReceiver<String>,
}

pub fn events() -> (Events, EventLog) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Events { tx }, EventLog { rx })
}

impl Events {
    pub fn push(&self, event: impl Into<String>) {
        let _ = self.tx.send(event.into());
    }
}

impl EventLog {
    /// The next event.
    pub async fn next(&mut self) -> String {
        self.next_within(WAIT).await
    }

    /// The next event, waiting at most `limit` (longer than WAIT for tests on paused time
    /// whose timers lie minutes ahead).
    pub async fn next_within(&mut self, limit: Duration) -> String {
        timeout(limit, self.rx.recv())
            .await
            .expect("no event in time")
            .expect("log closed")
    }

    /// Waits for an event equal to `expected`, returning the events seen before it.
    pub async fn wait_for(&mut self, expected: &str) -> Vec<String> {
        self.wait_for_within(expected, WAIT).await
    }

    /// Like `wait_for`, each event awaited at most `limit`.
    pub async fn wait_for_within(&mut self, expected: &str, limit: Duration) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let event = self.next_within(limit).await;
            if event == expected {
                return before;
            }
            before.push(event);
        }
    }

    /// Events already logged, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        while let Ok(event) = self.rx.try_recv() {
            all.push(event);
        }
        all
    }
}

/// Waits until `condition` holds, polling on each tick of a short interval (bounded by WAIT).
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while !condition() {
            tick.tick().await;
        }
    })
    .await
    .expect("condition not reached in time");
}

/// A raw TCP connection that has completed the WebSocket handshake, for sending frames that a
/// well-behaved client library would refuse to build.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

/// Sends a raw HTTP request and returns the status code and the whole response head.
pub async fn http_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    timeout(WAIT, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await
    .expect("no response in time");
    let head = String::from_utf8(head).unwrap();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// A valid upgrade request for `/ws` with extra header lines (each ending in `\r\n`).
pub fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, "").await.0
    }

    /// Connects with extra request header lines (each ending in `\r\n`); returns the
    /// response head too.
    pub async fn connect_with(addr: SocketAddr, extra: &str) -> (Self, String) {
        Self::connect_to(addr, "/ws", extra).await
    }

    /// Connects to `path` (e.g. `/ws?token=x`) with extra request header lines; returns the
    /// response head too.
    pub async fn connect_to(addr: SocketAddr, path: &str, extra: &str) -> (Self, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = upgrade_request(extra).replacen("GET /ws ", &format!("GET {path} "), 1);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Self {
            stream,
            buffer: Vec::new(),
        };
        let head = raw.read_until_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "handshake failed: {head}");
        (raw, head)
    }

    async fn read_until_head(&mut self) -> String {
        timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = self.buffer.drain(..end + 4).collect();
                    return String::from_utf8(head).unwrap();
                }
                self.fill().await;
            }
        })
        .await
        .expect("no handshake response")
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed by server");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    /// Sends one masked frame: the first byte (FIN, RSV bits, opcode) is given whole.
    pub async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![first_byte];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Sends several masked frames in one write, so they arrive together.
    pub async fn send_frames(&mut self, frames: &[(u8, &[u8])]) {
        let mut bytes = Vec::new();
        for (first_byte, payload) in frames {
            let mask = [0x12u8, 0x34, 0x56, 0x78];
            bytes.push(*first_byte);
            assert!(payload.len() < 126, "short frames only");
            bytes.push(0x80 | payload.len() as u8);
            bytes.extend_from_slice(&mask);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next server frame: (opcode, payload).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let (first_byte, payload) = self.read_whole_frame().await;
        (first_byte & 0x0f, payload)
    }

    /// The next server frame with its first byte whole (FIN, RSV bits, opcode).
    pub async fn read_whole_frame(&mut self) -> (u8, Vec<u8>) {
        timeout(WAIT, async {
            loop {
                if let Some((first_byte, payload, used)) = parse_frame(&self.buffer) {
                    self.buffer.drain(..used);
                    return (first_byte, payload);
                }
                self.fill().await;
            }
        })
        .await
        .expect("no frame in time")
    }

    /// Reads until the server closes the connection; what it sends meanwhile is dropped.
    pub async fn read_to_end(&mut self) {
        timeout(WAIT, async {
            let mut chunk = [0u8; 4096];
            while self.stream.read(&mut chunk).await.unwrap_or(0) > 0 {}
        })
        .await
        .expect("the server did not close the connection");
    }

    /// Reads server frames until a close frame; returns its code (1005 if it had none).
    pub async fn read_close_code(&mut self) -> u16 {
        timeout(WAIT, async {
            loop {
                if let Some((first_byte, payload, used)) = parse_frame(&self.buffer) {
                    self.buffer.drain(..used);
                    if first_byte & 0x0f == 0x8 {
                        return if payload.len() >= 2 {
                            u16::from_be_bytes([payload[0], payload[1]])
                        } else {
                            1005
                        };
                    }
                    continue;
                }
                self.fill().await;
            }
        })
        .await
        .expect("no close frame in time")
    }
}

/// Parses one unmasked server frame: (first byte, payload, bytes used).
fn parse_frame(buffer: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buffer.len() < 2 {
        return None;
    }
    let first_byte = buffer[0];
    let (len, header) = match buffer[1] & 0x7f {
        126 if buffer.len() >= 4 => (u16::from_be_bytes([buffer[2], buffer[3]]) as usize, 4),
        127 if buffer.len() >= 10 => (
            u64::from_be_bytes(buffer[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buffer.len() < header + len {
        return None;
    }
    Some((
        first_byte,
        buffer[header..header + len].to_vec(),
        header + len,
    ))
}
