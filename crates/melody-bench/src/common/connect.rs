//! Opening client connections: many loopback source addresses, tokio-websockets or the raw
//! permessage-deflate client ([`RawWs`]), many handshakes in flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Limits, WebSocketStream};

use crate::client::{Client, RawOptions, RawWs};

/// A client WebSocket connection as the generators use it.
pub type Ws = WebSocketStream<TcpStream>;

/// How many connections share one loopback source address before the next one is used.
///
/// The ephemeral port range is about 28,000 ports per source address; 20,000 leaves room for
/// sockets in `TIME_WAIT`.
pub const CONNECTIONS_PER_SOURCE: u64 = 20_000;

/// Raises this process's open-files soft limit to its hard limit; returns the new soft limit.
///
/// # Errors
///
/// Fails when `getrlimit`/`setrlimit` fails.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Opens WebSocket client connections to one URL, spreading them over the loopback source
/// addresses 127.0.0.1, 127.0.0.2, … (rotating every [`CONNECTIONS_PER_SOURCE`] connections)
/// when the target is a loopback IPv4 address.
#[derive(Debug)]
pub struct Connector {
    uri: String,
    /// `host[:port]` as in the URL, for the raw client's `Host` header.
    authority: String,
    /// Path and query, `/` when the URL has none.
    path: String,
    target: SocketAddr,
    rotate_sources: bool,
    counter: AtomicU64,
}

/// Why a connection attempt failed, as the reports count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectErrorKind {
    /// The TCP connect was refused.
    Refused,
    /// Any other error while binding or connecting the TCP socket.
    Tcp,
    /// The HTTP upgrade failed.
    Handshake,
    /// The connect or handshake did not finish in time.
    Timeout,
}

impl ConnectErrorKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "connect_refused",
            Self::Tcp => "connect_other",
            Self::Handshake => "handshake",
            Self::Timeout => "connect_timeout",
        }
    }
}

impl Connector {
    /// Resolves `url` (`ws://host:port/path`) once.
    ///
    /// # Errors
    ///
    /// Fails when the URL is not `ws://`, has no host, or the host does not resolve.
    pub fn new(url: &str) -> io::Result<Self> {
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {url}"));
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| invalid("only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(invalid("no host in URL"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let target = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid("host does not resolve"))?;
        let rotate_sources = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
        // Validate the URI once so that per-connection failures are only network failures.
        ClientBuilder::new()
            .uri(url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            uri: url.to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            target,
            rotate_sources,
            // Start each process at a different source address, so that a run does not collide
            // with the previous run's sockets still in TIME_WAIT.
            counter: AtomicU64::new(u64::from(std::process::id() % 250) * CONNECTIONS_PER_SOURCE),
        })
    }

    /// The resolved server address.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connects and performs the WebSocket handshake within `timeout`.
    ///
    /// # Errors
    ///
    /// Returns the kind of failure.
    pub async fn connect(&self, timeout: Duration) -> Result<Ws, ConnectErrorKind> {
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectErrorKind::Timeout),
        }
    }

    /// Connects with the raw client ([`RawWs`]) and its hand-written handshake, offering
    /// permessage-deflate when `options` say so, within `timeout`.
    ///
    /// # Errors
    ///
    /// Returns the kind of failure.
    pub async fn connect_raw(
        &self,
        timeout: Duration,
        options: RawOptions,
    ) -> Result<RawWs, ConnectErrorKind> {
        let handshake = async {
            let stream = self.tcp().await?;
            RawWs::connect(stream, &self.authority, &self.path, options)
                .await
                .map_err(|_| ConnectErrorKind::Handshake)
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(ConnectErrorKind::Timeout),
        }
    }

    /// Connects with tokio-websockets (`raw: None`) or with the raw client.
    ///
    /// # Errors
    ///
    /// Returns the kind of failure.
    pub async fn connect_client(
        &self,
        timeout: Duration,
        raw: Option<RawOptions>,
    ) -> Result<Client, ConnectErrorKind> {
        match raw {
            None => self.connect(timeout).await.map(Client::Ws),
            Some(options) => self.connect_raw(timeout, options).await.map(Client::Raw),
        }
    }

    async fn connect_inner(&self) -> Result<Ws, ConnectErrorKind> {
        let stream = self.tcp().await?;
        let builder = ClientBuilder::new()
            .uri(&self.uri)
            .map_err(|_| ConnectErrorKind::Handshake)?
            .limits(Limits::default().max_payload_len(Some(16 * 1024 * 1024)));
        let (ws, _response) = builder
            .connect_on(stream)
            .await
            .map_err(|_| ConnectErrorKind::Handshake)?;
        Ok(ws)
    }

    /// A TCP connection to the target, from the next source address.
    async fn tcp(&self) -> Result<TcpStream, ConnectErrorKind> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let socket = TcpSocket::new_v4()
            .or_else(|_| TcpSocket::new_v6())
            .map_err(|_| ConnectErrorKind::Tcp)?;
        if self.rotate_sources {
            let source = source_address(n);
            socket
                .bind(SocketAddr::new(IpAddr::V4(source), 0))
                .map_err(|_| ConnectErrorKind::Tcp)?;
        }
        let stream = socket.connect(self.target).await.map_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                ConnectErrorKind::Refused
            } else {
                ConnectErrorKind::Tcp
            }
        })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// The loopback source address for the `n`th connection: 127.0.0.1 for the first
/// [`CONNECTIONS_PER_SOURCE`], then 127.0.0.2, and so on (skipping .0 and .255 host bytes).
pub fn source_address(n: u64) -> Ipv4Addr {
    let block = n / CONNECTIONS_PER_SOURCE;
    // 254 usable host bytes per /24; walk 127.0.0.1..127.0.0.254, 127.0.1.1.., ...
    let low = (block % 254) as u8 + 1;
    let mid = ((block / 254) % 256) as u8;
    let high = ((block / (254 * 256)) % 256) as u8;
    Ipv4Addr::new(127, high, mid, low)
}

/// Opens `n` connections with at most `concurrency` handshakes in flight, calling `on_open`
/// for each successful one (index, connection). Returns the number of failures by kind.
pub async fn connect_many<F>(
    connector: &Arc<Connector>,
    n: usize,
    concurrency: usize,
    timeout: Duration,
    on_open: F,
) -> BTreeMap<String, u64>
where
    F: FnMut(usize, Ws),
{
    let connector = connector.clone();
    open_n(
        n,
        concurrency,
        move |_| {
            let c = connector.clone();
            async move { c.connect(timeout).await }
        },
        on_open,
    )
    .await
}

/// [`connect_many`] for [`Client`]s: tokio-websockets when `raw` is `None`, else the raw
/// client with those options.
pub async fn connect_clients<F>(
    connector: &Arc<Connector>,
    n: usize,
    concurrency: usize,
    timeout: Duration,
    raw: Option<RawOptions>,
    on_open: F,
) -> BTreeMap<String, u64>
where
    F: FnMut(usize, Client),
{
    let connector = connector.clone();
    open_n(
        n,
        concurrency,
        move |_| {
            let c = connector.clone();
            async move { c.connect_client(timeout, raw).await }
        },
        on_open,
    )
    .await
}

/// Runs `connect(i)` for `i` in `0..n`, at most `concurrency` at once, handing each success to
/// `on_open` and counting failures by kind.
async fn open_n<T, C, Fut, F>(
    n: usize,
    concurrency: usize,
    connect: C,
    mut on_open: F,
) -> BTreeMap<String, u64>
where
    T: Send + 'static,
    C: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, ConnectErrorKind>> + Send + 'static,
    F: FnMut(usize, T),
{
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut errors = BTreeMap::<String, u64>::new();
    let concurrency = concurrency.max(1);
    while next < n || !set.is_empty() {
        while next < n && set.len() < concurrency {
            let i = next;
            let attempt = connect(i);
            set.spawn(async move { (i, attempt.await) });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok((i, Ok(conn)))) => on_open(i, conn),
            Some(Ok((_, Err(kind)))) => *errors.entry(kind.name().to_owned()).or_default() += 1,
            Some(Err(_)) => *errors.entry("task_panicked".to_owned()).or_default() += 1,
            None => break,
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(19_999), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(20_000), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_address(20_000 * 254), Ipv4Addr::new(127, 0, 1, 1));
    }
}
