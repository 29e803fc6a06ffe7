//! [`Coalesce`]: vectored writes for a stream that has none (hyper's HTTP/2 stream), so that a
//! session's batch still leaves in one write; a stream that has them is written directly.
//!
//! A session writes a batch as many slices (each frame's header and payload) and then flushes.
//! A stream without vectored writes takes one slice per call, and hyper's HTTP/2 stream turns
//! each call into a copy, a hand-over to its sending task and a DATA frame of its own: two per
//! message, the header's of two bytes. Gathered here, a batch is one of each.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes gathered before they are handed on: a batch of big messages goes out in pieces
/// of this size rather than copied whole.
const GATHER: usize = 64 * 1024;

/// A stream whose writes are gathered, up to [`GATHER`] bytes, until the next flush; the
/// buffer exists only while a batch is being written.
pub(crate) struct Coalesce<S> {
    inner: S,
    /// Written by the caller, not yet by `inner`.
    pending: BytesMut,
}

impl<S: AsyncWrite> Coalesce<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            pending: BytesMut::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Hands what is gathered to `inner`, then lets the buffer go.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(written);
        }
        self.pending = BytesMut::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.inner.is_write_vectored() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.pending.len() >= GATHER {
            // Full: the writer waits, as it would on a socket, until `inner` has taken it.
            ready!(this.poll_drain(cx))?;
        }
        let mut written = 0;
        for buf in bufs {
            let room = GATHER - this.pending.len();
            let taken = buf.len().min(room);
            this.pending.extend_from_slice(&buf[..taken]);
            written += taken;
            if taken < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Records each write it gets; takes at most `limit` bytes a call, and is ready every
    /// other call only.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        vectored: bool,
        limit: usize,
        calls: usize,
    }

    impl Recorder {
        fn new(vectored: bool, limit: usize) -> Self {
            Self {
                writes: Vec::new(),
                vectored,
                limit,
                calls: 0,
            }
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(this.limit);
            this.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            assert!(self.vectored, "a vectored write to a stream without them");
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write_batch(stream: &mut Coalesce<Recorder>, slices: &[&[u8]]) {
        let mut slices: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *stream).poll_write_vectored(cx, slices))
                .await
                .unwrap();
            IoSlice::advance_slices(&mut slices, n);
        }
        stream.flush().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_of_slices_leaves_in_one_write_and_the_buffer_goes() {
        let mut stream = Coalesce::new(Recorder::new(false, usize::MAX));
        write_batch(&mut stream, &[b"\x81\x02", b"hi", b"\x81\x05", b"there"]).await;
        assert_eq!(stream.inner.writes, [b"\x81\x02hi\x81\x05there".to_vec()]);
        assert_eq!(stream.pending.capacity(), 0);
    }

    #[tokio::test]
    async fn a_big_batch_goes_out_in_bounded_pieces() {
        let big = vec![7u8; 3 * GATHER + 5];
        let mut stream = Coalesce::new(Recorder::new(false, usize::MAX));
        write_batch(&mut stream, &[b"head", &big]).await;
        let written: Vec<u8> = stream.inner.writes.concat();
        assert_eq!(written, [&b"head"[..], &big].concat());
        assert!(stream.inner.writes.iter().all(|w| w.len() <= GATHER));
        assert_eq!(stream.inner.writes.len(), 4);

        // A stream that takes less at a time gets it all the same.
        let mut stream = Coalesce::new(Recorder::new(false, 10_000));
        write_batch(&mut stream, &[b"head", &big]).await;
        assert_eq!(stream.inner.writes.concat(), written);
    }

    #[tokio::test]
    async fn a_stream_with_vectored_writes_is_written_directly() {
        let mut stream = Coalesce::new(Recorder::new(true, usize::MAX));
        write_batch(&mut stream, &[b"ab", b"cd"]).await;
        assert_eq!(stream.inner.writes, [b"abcd".to_vec()]);
        assert_eq!(stream.pending.capacity(), 0);
    }
}
