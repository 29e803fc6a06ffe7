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
//! use axum::{Router, routing::get};
//! use melody::Melody;
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let melody = Melody::new();
//! let app = Router::new().route("/ws", get(melody.handler()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! melody::serve(listener, app).await
//! # }
//! ```
//!
//! | limit | default | what happens at the limit |
//! |---|---|---|
//! | [`header_read_timeout`](Serve::header_read_timeout) | 10 s | a request head (the first, or the next on a kept-alive connection) not complete in time: the connection is closed |
//! | [`max_pending`](Serve::max_pending) | 1,024 | connections that have not yet sent a complete request head: the next one waits in the kernel's backlog until one finishes or times out |
//! | [`max_header_size`](Serve::max_header_size) | 16 KiB | a bigger request line and headers: `431 Request Header Fields Too Large` |
//! | [`write_timeout`](Serve::write_timeout) | 10 s | a write that makes no progress for this long (a client that stopped reading an HTTP response or an SSE stream): the connection is closed |
//! | accept errors | | `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: retried after a pause that doubles from 10 ms to 1 s, never fatal |
//!
//! A WebSocket session, once upgraded, leaves these limits behind: its hub's
//! [`Config`](crate::Config) bounds it (`write_wait`, `pong_wait`, sizes and rates), and the
//! session reads and writes the TCP socket directly.
//!
//! Each request carries the peer's and the local address as [`RemoteAddr`] and [`LocalAddr`]
//! extensions (and axum's `ConnectInfo<SocketAddr>` with the `axum` feature), so sessions know
//! both without `into_make_service_with_connect_info`.
//!
//! What `serve` does not do: TLS (put a proxy in front, or terminate TLS yourself), limits per
//! client address (a proxy, a firewall, or a tower layer), and HTTP/2.

use std::{
    error::Error as StdError,
    fmt,
    future::{Future, IntoFuture, poll_fn},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

mod stream;

pub(crate) use stream::ServeStream;

use super::handshake::{LocalAddr, RemoteAddr};

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_pending: 1024,
            max_header_size: 16 * 1024,
            write_timeout: Duration::from_secs(10),
            nodelay: true,
        }
    }
}

impl<S, F> Serve<S, F> {
    /// How long a client has to send a complete request head, counted from when the server
    /// starts waiting for it (at accept, and again after each response on a kept-alive
    /// connection). Default 10 s. Too late: the connection is closed.
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
    /// head gets `431 Request Header Fields Too Large`.
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

    /// Stops accepting when `signal` completes, asks every open HTTP connection to finish its
    /// request in progress and close, and returns once they have. Upgraded WebSocket sessions
    /// are not HTTP connections any more: end them with [`Melody::shutdown`](crate::Melody::shutdown)
    /// inside `signal` (it also ends SSE streams).
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
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_size);
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
                    let connection = Connection {
                        service: service.clone(),
                        remote,
                        local: tcp.local_addr().ok(),
                        pending: Mutex::new(Some(permit)),
                    };
                    tokio::spawn(serve_connection(
                        http.clone(),
                        prepare(tcp, &limits),
                        connection,
                        stopping.clone(),
                    ));
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
fn prepare(tcp: TcpStream, limits: &Limits) -> TokioIo<ServeStream> {
    if limits.nodelay {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    }
    TokioIo::new(ServeStream::new(tcp, limits.write_timeout))
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one HTTP connection to its end, or to its upgrade.
async fn serve_connection<S, B>(
    http: http1::Builder,
    io: TokioIo<ServeStream>,
    connection: Connection<S>,
    mut stopping: watch::Receiver<bool>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let conn = http.serve_connection(io, connection).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let graceful = tokio::select! {
        result = conn.as_mut() => return report(result),
        // An error: the server future itself was dropped, without a graceful shutdown. Go on
        // serving, as any spawned connection would.
        stop = stopping.wait_for(|stop| *stop) => stop.is_ok(),
    };
    if graceful {
        conn.as_mut().graceful_shutdown();
    }
    report(conn.await);
}

fn report(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "http connection ended with an error");
    }
}

/// The service of one connection: adds the addresses to each request and releases the
/// connection's pending slot once its first request head has arrived.
struct Connection<S> {
    service: S,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    /// Held until the first request head is read: see [`Serve::max_pending`].
    pending: Mutex<Option<OwnedSemaphorePermit>>,
}

type ResponseFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<B, S::Error>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Ok(mut pending) = self.pending.lock() {
            pending.take();
        }
        let extensions = req.extensions_mut();
        extensions.insert(RemoteAddr(self.remote));
        if let Some(local) = self.local {
            extensions.insert(LocalAddr(local));
        }
        #[cfg(feature = "axum")]
        extensions.insert(::axum::extract::ConnectInfo(self.remote));
        let mut service = self.service.clone();
        Box::pin(async move {
            poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req).await
        })
    }
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
        assert!(io.inner().tcp.nodelay().unwrap());

        let (server, _client) = pair().await;
        let limits = Limits {
            nodelay: false,
            ..Limits::default()
        };
        assert!(!prepare(server, &limits).inner().tcp.nodelay().unwrap());
    }
}
