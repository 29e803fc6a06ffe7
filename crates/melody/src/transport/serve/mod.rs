//! [`serve`]: an HTTP server with the limits a public WebSocket endpoint needs, in one line.
//!
//! `axum::serve` and a bare hyper accept loop trust every client: a request head that trickles
//! in one byte every few seconds is never timed out (slowloris), a client that stops reading
//! keeps its response (an SSE stream) and its file descriptor forever, and the accept loop of a
//! hand-written server ends the whole process when the descriptor limit is reached. [`serve`]
//! closes those holes with defaults that need no tuning, and sets `TCP_NODELAY` on every
//! accepted socket (a session batches its writes itself; Nagle's algorithm only delays them).
//!
//! ```no_run
//! use axum::{Router, routing::any};
//! use melody::Melody;
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let melody = Melody::new();
//! // `any`: a GET for an HTTP/1.1 handshake, a CONNECT for an HTTP/2 one.
//! let app = Router::new().route("/ws", any(melody.handler()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! melody::serve(listener, app).await
//! # }
//! ```
//!
//! | limit | default | what happens at the limit |
//! |---|---|---|
//! | [`header_read_timeout`](Serve::header_read_timeout) | 10 s | a connection's first request head not complete in time (HTTP/2: the preface, the settings and the first request's headers), or the next one on a kept-alive HTTP/1.1 connection: the connection is closed |
//! | [`max_pending`](Serve::max_pending) | 1,024 | connections that have not yet sent a complete request head: the next one waits in the kernel's backlog until one finishes or times out |
//! | [`max_header_size`](Serve::max_header_size) | 16 KiB | a bigger request line and headers: `431 Request Header Fields Too Large` (HTTP/2: the header list size it announces, RFC 9113 section 6.5.2; a bigger list gets `431` on its stream) |
//! | [`write_timeout`](Serve::write_timeout) | 10 s | a write that makes no progress for this long (a client that stopped reading an HTTP response or an SSE stream; over HTTP/2, the whole connection): the connection is closed |
//! | [`max_concurrent_streams`](Serve::max_concurrent_streams) | 100 | HTTP/2 streams open at once on one connection (requests, SSE streams, WebSockets): one more is refused with `REFUSED_STREAM` |
//! | HTTP/2 keep-alive | 20 s | an HTTP/2 connection silent for 20 s is pinged; no answer within 20 s: the connection is closed |
//! | HTTP/2 floods | hyper's | more than 20 streams reset by the client before they were served, or 1,024 streams in error: `GOAWAY`. Flow-control windows of 1 MiB per connection bound what a client can make the server buffer; headers split over too many `CONTINUATION` frames end the connection |
//! | accept errors | | `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: retried after a pause that doubles from 10 ms to 1 s, never fatal |
//!
//! A WebSocket session, once upgraded, leaves these limits behind: its hub's
//! [`Config`](crate::Config) bounds it (`write_wait`, `pong_wait`, sizes and rates), and the
//! session reads and writes the TCP socket directly. Over HTTP/2 a session is one stream of a
//! connection that goes on serving others, so the connection's limits still apply to it (its
//! write timeout, keep-alive, and the stream count), and the session's `write_wait` applies to
//! its stream.
//!
//! Each request carries the peer's and the local address as [`RemoteAddr`](crate::RemoteAddr)
//! and [`LocalAddr`](crate::LocalAddr) extensions (and axum's `ConnectInfo<SocketAddr>` with
//! the `axum` feature), so sessions know both without `into_make_service_with_connect_info`.
//!
//! # HTTP/2
//!
//! A connection that starts with the HTTP/2 preface is served as HTTP/2 (cleartext with prior
//! knowledge, "h2c"), any other as HTTP/1.1, on the same port. WebSockets open over HTTP/2
//! with an extended `CONNECT` (RFC 8441), which `serve` enables: many sessions can share one
//! connection. The route must accept `CONNECT` as well as `GET`
//! (`get(handler.clone()).connect(handler)`, or `any(handler)`, in axum). Browsers speak
//! HTTP/2 only over TLS, so they reach `serve` over HTTP/2 only through a proxy that speaks
//! h2c to it; the `Upgrade: h2c` dance of HTTP/1.1 is not supported. [`Serve::http2`] turns it
//! off. After its first request, an HTTP/2 connection has no header timeout: the stream limit,
//! the header list size and hyper's flood guards bound it instead, and an idle one is not
//! closed while it answers pings.
//!
//! | server | HTTP/2 WebSockets |
//! |---|---|
//! | `melody::serve` | yes (h2c), as above |
//! | `axum::serve` | yes with axum's `http2` feature (it enables extended CONNECT), h2c |
//! | plain hyper | `http2::Builder::enable_connect_protocol()` (hyper-util's `auto::Builder`: `.http2().enable_connect_protocol()`) |
//!
//! What `serve` does not do: TLS (put a proxy in front, or terminate TLS yourself), and limits
//! per client address (a proxy, a firewall, or a tower layer).

use std::{
    error::Error as StdError,
    fmt,
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

mod connection;
mod stream;

pub(crate) use stream::ServeStream;

use self::connection::Http;

/// Serves `service` (an axum `Router`, or any tower service of hyper requests) on `listener`
/// with the limits described in the [module docs](mod@crate::serve). Await the returned [`Serve`]
/// to run it; it only ends on [`Serve::with_graceful_shutdown`].
///
/// # Errors
///
/// Awaiting it never fails on a client's behalf: accept errors are retried, connection errors
/// end only their connection. The `io::Result` is for signature compatibility with
/// `axum::serve`.
#[must_use = "a server does nothing until awaited"]
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S, std::future::Pending<()>> {
    Serve {
        listener,
        service,
        limits: Limits::default(),
        signal: std::future::pending(),
    }
}

/// A server being configured; created by [`serve`], run by awaiting it.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<S, F> {
    listener: TcpListener,
    service: S,
    limits: Limits,
    signal: F,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    header_read_timeout: Duration,
    max_pending: usize,
    max_header_size: usize,
    write_timeout: Duration,
    nodelay: bool,
    http2: bool,
    max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_pending: 1024,
            max_header_size: 16 * 1024,
            write_timeout: Duration::from_secs(10),
            nodelay: true,
            http2: true,
            // RFC 9113 section 6.5.2 recommends no fewer than 100.
            max_concurrent_streams: 100,
        }
    }
}

impl<S, F> Serve<S, F> {
    /// How long a client has to send a complete request head, counted from when the server
    /// starts waiting for it (at accept, and again after each response on a kept-alive
    /// HTTP/1.1 connection). Default 10 s. Too late: the connection is closed. For an HTTP/2
    /// connection it bounds the first request only (its preface, settings and headers); the
    /// ones after it share the connection with streams in progress.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Most connections at once that have not yet sent their first complete request head.
    /// Default 1,024; at least 1. At the limit the server stops accepting until one of them
    /// sends its head or times out: new clients wait in the kernel's accept backlog instead of
    /// costing a descriptor and memory each.
    pub fn max_pending(mut self, connections: usize) -> Self {
        self.limits.max_pending = connections.max(1);
        self
    }

    /// Largest request line and headers, in bytes. Default 16 KiB; at least 8 KiB. A bigger
    /// head gets `431 Request Header Fields Too Large`. Over HTTP/2 it is the announced
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` (which counts 32 bytes more per header), and a bigger
    /// header list gets `431` on its stream.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.limits.max_header_size = bytes.max(8 * 1024);
        self
    }

    /// How long a write may make no progress before the connection is closed: a client that
    /// stopped reading its response or its SSE stream. Default 10 s (the same as
    /// [`Config::write_wait`](crate::Config::write_wait)). WebSocket sessions use their hub's
    /// `write_wait` instead.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.limits.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY`. Default `true`.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.limits.nodelay = nodelay;
        self
    }

    /// Whether connections that start with the HTTP/2 preface are served as HTTP/2 (h2c with
    /// prior knowledge, WebSockets over RFC 8441's extended CONNECT). Default `true`. Off, the
    /// server speaks HTTP/1.1 only and reads nothing ahead of hyper.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.limits.http2 = enabled;
        self
    }

    /// Most streams an HTTP/2 client may have open at once on one connection: requests in
    /// progress, SSE streams and WebSockets alike. Default 100; at least 1. The client learns
    /// the limit when the connection starts; a stream over it is refused (`REFUSED_STREAM`).
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.limits.max_concurrent_streams = streams.max(1);
        self
    }

    /// Stops accepting when `signal` completes, asks every open HTTP connection to finish its
    /// request in progress and close, and returns once they have. Upgraded WebSocket sessions
    /// are not HTTP connections any more: end them with [`Melody::shutdown`](crate::Melody::shutdown)
    /// inside `signal` (it also ends SSE streams). Over HTTP/2 a session is a stream of an
    /// HTTP connection, which takes no new streams from then on but ends only after its
    /// sessions: one more reason to shut the hub down inside `signal`.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(melody: melody::Melody, app: axum::Router, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// melody::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         melody.shutdown(Duration::from_secs(5)).await;
    ///     })
    ///     .await
    /// # }
    /// ```
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<S, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            service: self.service,
            limits: self.limits,
            signal,
        }
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<S, F> fmt::Debug for Serve<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<S, B, F> IntoFuture for Serve<S, F>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The first pause after an accept error; it doubles on each error in a row up to
/// [`ACCEPT_PAUSE_MAX`].
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

impl<S, B, F> Serve<S, F>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    F: Future<Output = ()> + Send + 'static,
{
    async fn run(self) -> io::Result<()> {
        let Self {
            listener,
            service,
            limits,
            signal,
        } = self;
        let mut signal = std::pin::pin!(signal);
        let pending = Arc::new(Semaphore::new(limits.max_pending));
        let (stop, stopping) = watch::channel(false);
        let http = Arc::new(Http::new(&limits));
        let mut pause = ACCEPT_PAUSE_MIN;
        loop {
            let permit = tokio::select! {
                permit = pending.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = signal.as_mut() => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = signal.as_mut() => break,
            };
            match accepted {
                Ok((tcp, remote)) => {
                    pause = ACCEPT_PAUSE_MIN;
                    connection::spawn(
                        http.clone(),
                        prepare(tcp, &limits),
                        service.clone(),
                        remote,
                        permit,
                        stopping.clone(),
                    );
                }
                // The peer gave up before we got to it: nothing to wait for.
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    // Out of descriptors or memory: wait for some to be freed, never give up
                    // (the sessions already open must not go down with the listener).
                    tracing::error!(%error, ?pause, "accept failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = signal.as_mut() => break,
                    }
                    pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                }
            }
        }
        drop(listener);
        drop(stopping);
        stop.send_replace(true);
        // Every connection task holds a receiver: this returns when the last one has ended.
        stop.closed().await;
        Ok(())
    }
}

/// An accepted socket, ready for hyper: `TCP_NODELAY` set (a session batches its writes
/// itself, so Nagle's algorithm would only hold each batch back), writes watched.
fn prepare(tcp: TcpStream, limits: &Limits) -> ServeStream {
    if limits.nodelay {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    }
    ServeStream::new(tcp, limits.write_timeout)
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn accepted_sockets_get_nodelay_unless_turned_off() {
        let (server, _client) = pair().await;
        assert!(!server.nodelay().unwrap());
        let io = prepare(server, &Limits::default());
        assert!(io.tcp.nodelay().unwrap());

        let (server, _client) = pair().await;
        let limits = Limits {
            nodelay: false,
            ..Limits::default()
        };
        assert!(!prepare(server, &limits).tcp.nodelay().unwrap());
    }
}
