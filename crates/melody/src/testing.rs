//! Testing your handlers (feature `testing`): a hub served on a free loopback port and a
//! WebSocket client for it, so an application's tests talk to the real thing — the upgrade, the
//! frames, the handlers — without writing a client.
//!
//! ```
//! use std::time::Duration;
//! use melody::{Melody, testing::TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let melody = Melody::new();
//! melody.on_text(|session, text| {
//!     let _ = session.send(format!("echo: {}", &*text));
//! });
//! let server = TestServer::start(&melody).await;
//! let mut client = server.connect().await;
//! client.send_text("hi").await;
//! assert_eq!(client.recv_text().await, "echo: hi");
//!
//! // The hub is at hand for sends and for closing.
//! server.melody().all().send("to everyone").unwrap();
//! assert_eq!(client.recv_text().await, "to everyone");
//! server.melody().close().unwrap();
//! assert_eq!(client.recv_close().await.map(|(code, _)| code), Some(1001));
//! # }
//! ```
//!
//! Every wait is bounded (by [`TestServer::timeout`], 10 s by default) and panics with what it
//! was waiting for, so a test that goes wrong fails instead of hanging. The client answers pings
//! while it reads, as a browser does.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, WebSocketStream};

use crate::{Bytes, Melody, Message};

/// A hub served with [`serve`](crate::serve()) on `127.0.0.1` at a free port, WebSocket
/// upgrades on every path. It runs until the test's runtime ends.
#[derive(Debug)]
pub struct TestServer {
    melody: Melody,
    addr: SocketAddr,
    timeout: Duration,
}

impl TestServer {
    /// Serves `melody` on a free loopback port.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, or outside a Tokio runtime.
    pub async fn start(melody: &Melody) -> Self {
        let app = axum::Router::new().fallback(melody.handler());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener's address");
        tokio::spawn(async move { crate::serve(listener, app).await });
        Self {
            melody: melody.clone(),
            addr,
            timeout: Duration::from_secs(10),
        }
    }

    /// The longest any wait of this server's clients may take before it panics. Default 10 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The hub.
    #[must_use]
    pub fn melody(&self) -> &Melody {
        &self.melody
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client connected to `/`.
    ///
    /// # Panics
    ///
    /// When the upgrade is refused or does not complete in time.
    pub async fn connect(&self) -> TestClient {
        self.connect_with("/", &[]).await
    }

    /// A client connected to `path` (with its query) with extra request headers.
    ///
    /// # Panics
    ///
    /// When the upgrade is refused (the panic message has the status) or does not complete in
    /// time.
    pub async fn connect_with(&self, path: &str, headers: &[(&str, &str)]) -> TestClient {
        let mut builder = ClientBuilder::new()
            .uri(&format!("ws://{}{path}", self.addr))
            .expect("a valid path");
        for (name, value) in headers {
            builder = builder
                .add_header(
                    HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                    HeaderValue::from_str(value).expect("a valid header value"),
                )
                .expect("a header the client may send");
        }
        let (stream, _) = tokio::time::timeout(self.timeout, builder.connect())
            .await
            .expect("the upgrade did not complete in time")
            .unwrap_or_else(|error| panic!("the upgrade was refused: {error}"));
        TestClient {
            stream,
            timeout: self.timeout,
        }
    }
}

/// A WebSocket client of a [`TestServer`].
#[derive(Debug)]
pub struct TestClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    timeout: Duration,
}

/// What a [`TestClient`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A data message.
    Message(Message),
    /// A close frame: its code (1005 when it had none) and reason.
    Close(u16, String),
}

impl TestClient {
    /// Sends a text message.
    ///
    /// # Panics
    ///
    /// When the connection is gone.
    pub async fn send_text(&mut self, text: &str) {
        self.send(tokio_websockets::Message::text(text.to_owned()))
            .await;
    }

    /// Sends a binary message.
    ///
    /// # Panics
    ///
    /// When the connection is gone.
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) {
        self.send(tokio_websockets::Message::binary(bytes.into()))
            .await;
    }

    async fn send(&mut self, message: tokio_websockets::Message) {
        tokio::time::timeout(self.timeout, self.stream.send(message))
            .await
            .expect("the send did not complete in time")
            .expect("the connection is gone");
    }

    /// The next data message or close frame (pings are answered and skipped); `None` when the
    /// connection ended without one.
    ///
    /// # Panics
    ///
    /// When nothing arrives in time.
    pub async fn recv(&mut self) -> Option<Received> {
        tokio::time::timeout(self.timeout, async {
            loop {
                let message = match self.stream.next().await? {
                    Ok(message) => message,
                    Err(_) => return None,
                };
                if let Some((code, reason)) = message.as_close() {
                    return Some(Received::Close(u16::from(code), reason.to_owned()));
                }
                if let Some(text) = message.as_text() {
                    return Some(Received::Message(Message::text(text)));
                }
                if message.is_binary() {
                    let payload = Bytes::copy_from_slice(&message.into_payload());
                    return Some(Received::Message(Message::binary(payload)));
                }
            }
        })
        .await
        .expect("nothing arrived in time")
    }

    /// The next message, which must be text.
    ///
    /// # Panics
    ///
    /// When nothing arrives in time, or what arrives is not a text message.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Some(Received::Message(message)) if message.is_text() => {
                message.as_str().unwrap_or_default().to_owned()
            }
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads until the server's close frame and returns its code and reason (then reads on to
    /// the end of the stream, which answers the close as a browser would); `None` when the
    /// connection ended without one.
    ///
    /// # Panics
    ///
    /// When it takes longer than the timeout.
    pub async fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.recv().await? {
                Received::Close(code, reason) => {
                    let _ = tokio::time::timeout(self.timeout, async {
                        while self.stream.next().await.is_some() {}
                    })
                    .await;
                    return Some((code, reason));
                }
                Received::Message(_) => {}
            }
        }
    }

    /// Closes the connection with 1000 and waits for the server's answer.
    pub async fn close(mut self) {
        let close =
            tokio_websockets::Message::close(Some(tokio_websockets::CloseCode::NORMAL_CLOSURE), "");
        let _ = tokio::time::timeout(self.timeout, async {
            let _ = self.stream.send(close).await;
            while self.stream.next().await.is_some() {}
        })
        .await;
    }
}
