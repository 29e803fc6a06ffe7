//! One connection of [`serve`](super::serve): which HTTP version it speaks, its first request's
//! deadline, a graceful end, and the service that gives each request the connection's
//! addresses.

use std::{
    error::Error as StdError,
    future::{Future, poll_fn},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    sync::{OwnedSemaphorePermit, oneshot, watch},
    time::Instant,
};

use super::{Limits, ServeStream};
use crate::transport::handshake::{LocalAddr, RemoteAddr};

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take before the
/// connection is closed: a peer that vanished without closing (its TCP stream open, nothing
/// written to it) is found out, as the last session on it ends its own pings.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The connection builders of a server, shared by its connections: hyper copies what it needs
/// from them when a connection starts.
pub(super) struct Http {
    http1: http1::Builder,
    /// `None`: HTTP/1.1 only.
    http2: Option<http2::Builder<TokioExecutor>>,
    /// For the first request head, whatever the version: see [`expired`].
    header_read_timeout: Duration,
}

impl Http {
    pub(super) fn new(limits: &Limits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_size);
        let http2 = limits.http2.then(|| {
            let mut http2 = http2::Builder::new(TokioExecutor::new());
            // Left at hyper's defaults, all bounded: the flow-control windows (1 MiB per
            // connection, so what a client may make the server buffer), 400 KiB of queued
            // writes per stream, and the reset-flood guards (h2 answers more than 20 streams
            // reset before they were served, or 1,024 streams in error, with GOAWAY).
            http2
                .timer(TokioTimer::new())
                .enable_connect_protocol()
                .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
                .max_concurrent_streams(limits.max_concurrent_streams)
                .keep_alive_interval(HTTP2_KEEP_ALIVE)
                .keep_alive_timeout(HTTP2_KEEP_ALIVE);
            http2
        });
        Self {
            http1,
            http2,
            header_read_timeout: limits.header_read_timeout,
        }
    }
}

/// Serves an accepted connection on a task of its own. `permit` is its place among the
/// pending connections, held until its first request head has arrived.
pub(super) fn spawn<S, B>(
    http: Arc<Http>,
    io: ServeStream,
    service: S,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    stopping: watch::Receiver<bool>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (arrived, first_request) = oneshot::channel();
    let connection = Connection {
        service,
        remote,
        local: io.tcp.local_addr().ok(),
        pending: Mutex::new(Some(Pending {
            _permit: permit,
            _arrived: arrived,
        })),
    };
    let expired = expired(Instant::now() + http.header_read_timeout, first_request);
    tokio::spawn(serve_connection(http, io, connection, expired, stopping));
}

/// Completes at `deadline` unless the connection's first request head has arrived by then
/// (its [`Pending`] dropped); then never.
///
/// hyper's own header read timeout covers each HTTP/1.1 request head, but not the bytes read
/// to tell the version, and HTTP/2 has none: without this, a client that sends a partial
/// preface, or a preface and no request, would hold its pending slot forever.
async fn expired(deadline: Instant, first_request: oneshot::Receiver<()>) {
    if tokio::time::timeout_at(deadline, first_request)
        .await
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
}

/// Serves one HTTP connection, of either version, to its end (or, HTTP/1.1, to its upgrade).
async fn serve_connection<S, B>(
    http: Arc<Http>,
    mut io: ServeStream,
    connection: Connection<S>,
    expired: impl Future<Output = ()>,
    mut stopping: watch::Receiver<bool>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut expired = std::pin::pin!(expired);
    let http2 = match &http.http2 {
        Some(http2) => {
            let sniffed = tokio::select! {
                sniffed = io.sniff_http2() => sniffed,
                () = expired.as_mut() => return,
                // Nothing has been asked yet: nothing to finish.
                Ok(_) = stopping.wait_for(|stop| *stop) => return,
            };
            match sniffed {
                Ok(true) => Some(http2),
                Ok(false) => None,
                Err(error) => {
                    tracing::debug!(%error, "http connection ended before its first request");
                    return;
                }
            }
        }
        None => None,
    };
    let io = TokioIo::new(io);
    match http2 {
        Some(http2) => drive(http2.serve_connection(io, connection), expired, stopping).await,
        None => {
            let conn = http.http1.serve_connection(io, connection).with_upgrades();
            drive(conn, expired, stopping).await;
        }
    }
}

/// Runs a connection until it ends, its first request is overdue, or, once the server stops,
/// until it has finished what it was asked.
async fn drive<C: HttpConnection>(
    conn: C,
    mut expired: Pin<&mut impl Future<Output = ()>>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut conn = std::pin::pin!(conn);
    let mut stop_seen = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => return report(result),
            () = expired.as_mut() => {
                tracing::debug!("http connection closed: no request head in time");
                return;
            }
            stop = stopping.wait_for(|stop| *stop), if !stop_seen => {
                stop_seen = true;
                // An error: the server future itself was dropped, without a graceful
                // shutdown. Go on serving, as any spawned connection would.
                if stop.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// An HTTP connection being served, of either version.
trait HttpConnection: Future<Output = Result<(), hyper::Error>> {
    /// Finishes the requests in progress, takes no more, then ends (HTTP/2: `GOAWAY`; the
    /// connection ends once its open streams, WebSockets included, have).
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<S, B> HttpConnection for http1::UpgradeableConnection<TokioIo<ServeStream>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<S, B> HttpConnection for http2::Connection<TokioIo<ServeStream>, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
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
    /// Held until the first request head is read.
    pending: Mutex<Option<Pending>>,
}

/// What a connection holds until its first request head has arrived; dropped then.
struct Pending {
    /// Its place among the pending connections: see [`Serve::max_pending`](super::Serve::max_pending).
    _permit: OwnedSemaphorePermit,
    /// Dropped, it tells [`expired`] that the first request came.
    _arrived: oneshot::Sender<()>,
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
