//! [`ServeStream`]: an accepted TCP stream whose writes fail once they have made no progress
//! for the write timeout (a client that stopped reading an HTTP response or an SSE stream),
//! and which tells HTTP/2 from HTTP/1 by the connection's first bytes.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

/// What an HTTP/2 client sends first (RFC 9113 section 3.4); with prior knowledge, its first
/// bytes on the connection. No HTTP/1 request starts with it: `HTTP/2.0` is no HTTP/1 version.
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An accepted TCP stream whose writes may not stall for longer than the write timeout.
///
/// A session upgraded from it takes the TCP stream back out ([`ServeStream::into_tcp`]): its
/// own write wait applies from then on.
#[derive(Debug)]
pub(crate) struct ServeStream {
    pub(super) tcp: TcpStream,
    /// Bytes read to tell the version, given to hyper before anything else.
    prefix: Bytes,
    write_timeout: Duration,
    /// Armed when a write could not make progress; allocated the first time that happens.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl ServeStream {
    pub(super) fn new(tcp: TcpStream, write_timeout: Duration) -> Self {
        Self {
            tcp,
            prefix: Bytes::new(),
            write_timeout,
            stall: None,
            stalled: false,
        }
    }

    /// The TCP stream, for a session upgraded from this HTTP/1.1 connection. Nothing is lost:
    /// the bytes read by [`ServeStream::sniff_http2`] were the connection's first (at most 24),
    /// and hyper has read them all, since it parsed the upgrade request's whole head, which is
    /// longer.
    pub(crate) fn into_tcp(self) -> TcpStream {
        debug_assert!(self.prefix.is_empty(), "hyper left sniffed bytes unread");
        self.tcp
    }

    /// Whether the connection starts with the HTTP/2 preface: reads until its first bytes
    /// either differ from it or are all of it, and keeps them for hyper. A client that closes
    /// before is taken for HTTP/1 (hyper then sees what it sent, and the end).
    ///
    /// Reading, not peeking: a peek at a partial preface would return at once, again and
    /// again, until the rest arrives.
    pub(super) async fn sniff_http2(&mut self) -> io::Result<bool> {
        let mut read = [0u8; HTTP2_PREFACE.len()];
        let mut filled = 0;
        let http2 = loop {
            let n = self.tcp.read(&mut read[filled..]).await?;
            if n == 0 || read[filled..filled + n] != HTTP2_PREFACE[filled..filled + n] {
                filled += n;
                break false;
            }
            filled += n;
            if filled == HTTP2_PREFACE.len() {
                break true;
            }
        };
        self.prefix = Bytes::copy_from_slice(&read[..filled]);
        Ok(http2)
    }

    /// Passes a write's result through, failing it when it has been pending for too long.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = false;
            return poll;
        }
        let deadline = Instant::now() + self.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            self.stalled = true;
            stall.as_mut().reset(deadline);
        }
        ready!(stall.as_mut().poll(cx));
        self.stalled = false;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading: no write progress within the write timeout",
        )))
    }
}

impl AsyncRead for ServeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // An empty slice would still hold its allocation for the connection's life.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (ServeStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (ServeStream::new(server, Duration::from_secs(10)), client)
    }

    /// Everything the client sent, as the server reads it after the sniff.
    async fn read_all(mut stream: ServeStream, mut client: TcpStream) -> Vec<u8> {
        use tokio::io::AsyncWriteExt;
        client.shutdown().await.unwrap();
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.unwrap();
        read
    }

    #[tokio::test]
    async fn the_http2_preface_is_recognised_however_it_is_split_and_given_back() {
        use tokio::io::AsyncWriteExt;
        let (mut stream, mut client) = pair().await;
        let sniff = tokio::spawn(async move {
            let http2 = stream.sniff_http2().await.unwrap();
            (http2, stream)
        });
        for piece in HTTP2_PREFACE.chunks(5) {
            client.write_all(piece).await.unwrap();
            client.flush().await.unwrap();
        }
        let (http2, stream) = sniff.await.unwrap();
        assert!(http2);
        client.write_all(b"frames").await.unwrap();
        assert_eq!(
            read_all(stream, client).await,
            [&HTTP2_PREFACE[..], b"frames"].concat()
        );
    }

    #[tokio::test]
    async fn anything_else_is_http1_and_hyper_reads_it_whole() {
        use tokio::io::AsyncWriteExt;
        let request = b"GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let (mut stream, mut client) = pair().await;
        client.write_all(request).await.unwrap();
        assert!(!stream.sniff_http2().await.unwrap());
        assert_eq!(read_all(stream, client).await, request);

        // Even a request that starts like the preface.
        let (mut stream, mut client) = pair().await;
        client.write_all(b"PRI * HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(!stream.sniff_http2().await.unwrap());
        assert_eq!(read_all(stream, client).await, b"PRI * HTTP/1.1\r\n\r\n");

        // A client that leaves at once.
        let (mut stream, client) = pair().await;
        drop(client);
        assert!(!stream.sniff_http2().await.unwrap());
    }

    #[tokio::test]
    async fn a_write_that_makes_no_progress_times_out() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = ServeStream::new(server, Duration::from_millis(100));
        // The client never reads: the socket buffers fill, then the write stalls.
        let chunk = vec![0u8; 64 * 1024];
        let error = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(error) = stream.write_all(&chunk).await {
                    return error;
                }
            }
        })
        .await
        .expect("the stalled write never timed out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
