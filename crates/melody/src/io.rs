//! The byte stream under a session: the TCP stream itself when the server is hyper over TCP
//! (axum's `serve`, hyper's `serve_connection`), else hyper's upgraded stream.
//!
//! Data frames are written here directly (see [`Io::write_frames`]); the WebSocket codec reads,
//! and writes only control frames (pings, pongs, closes).
//!
//! Taking the TCP stream back from hyper (`Upgraded::downcast`) removes two layers of dynamic
//! dispatch from every read and write and lets the session turn Nagle's algorithm off.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use std::collections::VecDeque;

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;

use crate::Message;
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

/// Messages per vectored write: two slices each (header, payload), well under `IOV_MAX`.
const FRAMES_PER_WRITE: usize = 64;

impl Io {
    /// Writes data messages as server frames (RFC 6455 section 5.2: unmasked, one frame per
    /// message) with vectored writes, then flushes. The payloads are written from their shared
    /// buffers, never copied; only the few header bytes are built here.
    pub(crate) async fn write_frames(&mut self, messages: &VecDeque<Message>) -> io::Result<()> {
        let (front, back) = messages.as_slices();
        for chunk in front
            .chunks(FRAMES_PER_WRITE)
            .chain(back.chunks(FRAMES_PER_WRITE))
        {
            let mut headers = [[0u8; 10]; FRAMES_PER_WRITE];
            let mut lens = [0usize; FRAMES_PER_WRITE];
            for (i, message) in chunk.iter().enumerate() {
                lens[i] = frame_header(message, &mut headers[i]);
            }
            let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE * 2];
            let mut used = 0;
            for (i, message) in chunk.iter().enumerate() {
                slices[used] = IoSlice::new(&headers[i][..lens[i]]);
                used += 1;
                if !message.is_empty() {
                    slices[used] = IoSlice::new(message.as_bytes());
                    used += 1;
                }
            }
            self.write_all_vectored(&mut slices[..used]).await?;
        }
        self.flush().await
    }

    async fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !slices.is_empty() {
            let written = self.write_vectored(slices).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        Ok(())
    }
}

/// The header of a final, unmasked text or binary frame; returns its length.
fn frame_header(message: &Message, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | if message.is_text() { 0x1 } else { 0x2 };
    let len = message.len();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        let mut out = [0u8; 10];
        assert_eq!(frame_header(&Message::text("hi"), &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 2]);
        assert_eq!(frame_header(&Message::binary(vec![0u8; 126]), &mut out), 4);
        assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
        assert_eq!(
            frame_header(&Message::binary(vec![0u8; 65_536]), &mut out),
            10
        );
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
