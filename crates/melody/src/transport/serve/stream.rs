//! [`ServeStream`]: an accepted TCP stream whose writes fail once they have made no progress
//! for the write timeout (a client that stopped reading an HTTP response or an SSE stream).

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

/// An accepted TCP stream whose writes may not stall for longer than the write timeout.
///
/// A session upgraded from it takes the TCP stream back out ([`ServeStream::into_tcp`]): its
/// own write wait applies from then on.
#[derive(Debug)]
pub(crate) struct ServeStream {
    pub(super) tcp: TcpStream,
    write_timeout: Duration,
    /// Armed when a write could not make progress; allocated the first time that happens.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl ServeStream {
    pub(super) fn new(tcp: TcpStream, write_timeout: Duration) -> Self {
        Self {
            tcp,
            write_timeout,
            stall: None,
            stalled: false,
        }
    }

    pub(crate) fn into_tcp(self) -> TcpStream {
        self.tcp
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
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
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
