//! The byte stream under a session: the TCP stream itself when the server is hyper over TCP
//! (axum's `serve`, hyper's `serve_connection`), else hyper's upgraded stream.
//!
//! Taking the TCP stream back from hyper (`Upgraded::downcast`) removes two layers of dynamic
//! dispatch from every read and write and lets the session turn Nagle's algorithm off.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

pub(crate) struct Io {
    /// Bytes hyper had read past the HTTP request (a client that did not wait for the 101).
    prefix: Bytes,
    inner: Inner,
}

enum Inner {
    Tcp(TcpStream),
    Upgraded(TokioIo<Upgraded>),
}

impl Io {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Self {
                inner: Inner::Tcp(without_nagle(parts.io.into_inner())),
                // Even empty, hyper's leftover slice would keep its whole read buffer alive.
                prefix: if parts.read_buf.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(&parts.read_buf)
                },
            },
            Err(upgraded) => Self {
                prefix: Bytes::new(),
                inner: Inner::Upgraded(TokioIo::new(upgraded)),
            },
        }
    }
}

/// Sessions batch their own writes (many messages, one flush), so Nagle's algorithm would only
/// hold each batch back until the previous one is acknowledged: latency without any saving.
fn without_nagle(stream: TcpStream) -> TcpStream {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    stream
}

impl AsyncRead for Io {
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
                // Release hyper's buffer as soon as it is used up.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.inner {
            Inner::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Inner::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Inner::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Inner::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(io) => io.is_write_vectored(),
            Inner::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_flush(cx),
            Inner::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Inner::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
