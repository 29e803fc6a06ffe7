//! The byte stream under a session: the TCP stream itself when the server is hyper over TCP
//! (`melody::serve`, axum's `serve`, hyper's `serve_connection`), else hyper's upgraded stream
//! (an HTTP/2 stream, for one: its writes are gathered by `coalesce.rs`); and [`Socket`], the WebSocket
//! connection on top of it.
//!
//! Reads go through a buffer on the stack into [`FrameReader`]; writes are vectored, straight
//! from the messages' shared payloads. Between bursts a session holds no buffer at all.
//!
//! Taking the TCP stream back from hyper (`Upgraded::downcast`) removes two layers of dynamic
//! dispatch from every read and write and lets the session turn Nagle's algorithm off.

use std::{
    collections::VecDeque,
    future::poll_fn,
    io::{self, IoSlice},
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::{coalesce::Coalesce, serve::ServeStream};
use crate::protocol::{
    deflate::Inflater,
    frames::{Control, FrameReader, Inbound, Violation, put_control},
    message::Message,
};
use hyper::upgrade::Upgraded;
use hyper_util::{rt::TokioIo, server::conn::auto};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

pub(crate) struct Io {
    /// Bytes hyper had read past the HTTP request (a client that did not wait for the 101).
    prefix: Bytes,
    inner: Inner,
}

enum Inner {
    Tcp(TcpStream),
    /// Boxed: a session on the TCP stream itself (the usual case) should not carry its room.
    Upgraded(Box<Coalesce<TokioIo<Upgraded>>>),
}

impl Io {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Self {
                inner: Inner::Tcp(without_nagle(parts.io.into_inner())),
                prefix: leftover(&parts.read_buf),
            },
            Err(upgraded) => match upgraded.downcast::<TokioIo<ServeStream>>() {
                // Served by `melody::serve`: the session's own write wait replaces the
                // server's write timeout, and the stream is used directly.
                Ok(parts) => Self {
                    inner: Inner::Tcp(parts.io.into_inner().into_tcp()),
                    prefix: leftover(&parts.read_buf),
                },
                // Served by hyper-util's version-detecting builder (`axum::serve`), which wraps
                // the stream in a type of its own: taken back the same way.
                Err(upgraded) => match auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
                    Ok(parts) => Self {
                        inner: Inner::Tcp(without_nagle(parts.io.into_inner())),
                        prefix: leftover(&parts.read_buf),
                    },
                    Err(upgraded) => Self {
                        prefix: Bytes::new(),
                        inner: Inner::Upgraded(Box::new(Coalesce::new(TokioIo::new(upgraded)))),
                    },
                },
            },
        }
    }
}

/// What hyper read past the request head, in an allocation of its own: even empty, hyper's
/// slice would keep its whole read buffer alive.
fn leftover(read_buf: &Bytes) -> Bytes {
    if read_buf.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(read_buf)
    }
}

/// Bytes read per system call. The buffer lives on the stack only while a read is parsed.
const READ_CHUNK: usize = 16 * 1024;

/// A WebSocket connection, server side: frames in, frames out.
pub(crate) struct Socket {
    io: Io,
    reader: FrameReader,
    /// Encoded control frames (pongs, pings, the close) waiting for the next write.
    control: BytesMut,
    /// Boxed: most hubs set no frame rate limit, and a session should not carry its room.
    budget: Option<Box<FrameBudget>>,
}

impl Socket {
    /// `budget`: nanoseconds of credit per frame and the tolerance (see
    /// [`Config::frame_budget`](crate::Config)), `None` for no frame rate limit.
    /// `inflater`: permessage-deflate was agreed, and compressed messages are inflated by it.
    pub(crate) fn new(
        io: Io,
        max_message: usize,
        budget: Option<(u64, u64)>,
        inflater: Option<Inflater>,
    ) -> Self {
        Self {
            io,
            reader: frame_reader(max_message, inflater),
            control: BytesMut::new(),
            budget: budget.map(|(per_frame, tolerance)| {
                Box::new(FrameBudget {
                    per_frame,
                    tolerance,
                    next: Instant::now(),
                })
            }),
        }
    }

    /// Whether this is a plain TCP stream (only those park).
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.io.inner, Inner::Tcp(_))
    }

    /// What is kept of the socket while its session is parked: the TCP stream, the inflater
    /// and the frame budget. `Err` gives the socket back when it cannot be parked: a frame is
    /// half read or not yet taken, control frames wait to be written, hyper's leftover bytes
    /// are not yet read, or the stream is not a plain TCP stream.
    #[allow(
        clippy::result_large_err,
        reason = "handed back by value: parking moves it whole, once per idle period"
    )]
    pub(crate) fn park(self) -> Result<ParkedSocket, Self> {
        let between_frames =
            self.io.prefix.is_empty() && self.reader.is_between_frames() && self.control.is_empty();
        if !between_frames {
            return Err(self);
        }
        let Self {
            io,
            reader,
            control,
            budget,
        } = self;
        match io.inner {
            Inner::Tcp(stream) => Ok(ParkedSocket {
                stream,
                inflater: reader.into_inflater(),
                budget,
            }),
            inner @ Inner::Upgraded(_) => Err(Self {
                io: Io {
                    prefix: io.prefix,
                    inner,
                },
                reader,
                control,
                budget,
            }),
        }
    }

    /// The socket of a parked session, ready to read and write again.
    pub(crate) fn unpark(parked: ParkedSocket, max_message: usize) -> Self {
        Self {
            io: Io {
                prefix: Bytes::new(),
                inner: Inner::Tcp(parked.stream),
            },
            reader: frame_reader(max_message, parked.inflater),
            control: BytesMut::new(),
            budget: parked.budget,
        }
    }

    /// The next thing the client sent. `None` once the stream has ended: the client closed
    /// the TCP stream, or a close frame or a violation ended reading.
    pub(crate) async fn next(&mut self) -> Option<io::Result<Inbound>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Inbound>>> {
        loop {
            if let Some(item) = self.reader.pop() {
                return Poll::Ready(Some(Ok(item)));
            }
            if self.reader.is_done() {
                return Poll::Ready(None);
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut buf);
            if let Err(error) = ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                return Poll::Ready(Some(Err(error)));
            }
            if buf.filled().is_empty() {
                return Poll::Ready(None);
            }
            self.reader.feed(buf.filled());
            // Counted per read, not per frame: one clock read for every frame of the read.
            if let Some(budget) = &mut self.budget {
                let frames = self.reader.take_frames();
                if frames > 0 && !budget.spend(frames) {
                    self.reader.fail(Violation::FrameRate);
                }
            }
        }
    }

    /// Queues a control frame for the next write.
    pub(crate) fn queue_control(&mut self, kind: Control, payload: &[u8]) {
        put_control(&mut self.control, kind, payload);
    }

    /// Frees the buffers a burst grew, if they are empty. (`control` needs nothing: every
    /// completed write already lets it go.)
    pub(crate) fn shrink(&mut self) {
        self.reader.shrink();
    }

    /// Whether control frames are waiting to be written.
    pub(crate) fn has_control(&self) -> bool {
        !self.control.is_empty()
    }

    /// Writes the queued control frames, then `messages`, and flushes. `wire` holds the
    /// compressed payloads of the messages sent compressed (permessage-deflate), by position;
    /// it is empty when nothing is.
    pub(crate) async fn write(
        &mut self,
        messages: &VecDeque<Message>,
        wire: &[Option<Bytes>],
    ) -> io::Result<()> {
        let mut cursor = Cursor::default();
        match self.try_write(messages, wire, &mut cursor) {
            Poll::Ready(result) => result,
            Poll::Pending => self.write_rest(messages, wire, cursor).await,
        }
    }

    /// Writes as much as the socket takes right now, without a future: most writes find room
    /// in the socket buffer and complete here. On `Pending`, [`Socket::write_rest`] goes on from
    /// `cursor`. Keeping the waiting case out of line keeps it out of every session's task.
    pub(crate) fn try_write(
        &mut self,
        messages: &VecDeque<Message>,
        wire: &[Option<Bytes>],
        cursor: &mut Cursor,
    ) -> Poll<io::Result<()>> {
        // A write that cannot go on registers this waker with the reactor; the real one
        // replaces it when `write_rest` polls.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.poll_write(&mut cx, Frames { messages, wire }, cursor)
    }

    /// Finishes a write that [`Socket::try_write`] left pending.
    pub(crate) async fn write_rest(
        &mut self,
        messages: &VecDeque<Message>,
        wire: &[Option<Bytes>],
        mut cursor: Cursor,
    ) -> io::Result<()> {
        poll_fn(|cx| self.poll_write(cx, Frames { messages, wire }, &mut cursor)).await
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        frames: Frames<'_>,
        cursor: &mut Cursor,
    ) -> Poll<io::Result<()>> {
        let (io, prefix) = (&mut self.io, &self.control[..]);
        // Most batches are small: building (and clearing) room for 64 frames on every call
        // showed in profiles.
        ready!(if frames.messages.len() <= SMALL_WRITE {
            poll_write_frames::<SMALL_WRITE, { 2 * SMALL_WRITE + 1 }, _>(
                io, cx, prefix, frames, cursor,
            )
        } else {
            poll_write_frames::<FRAMES_PER_WRITE, { 2 * FRAMES_PER_WRITE + 1 }, _>(
                io, cx, prefix, frames, cursor,
            )
        })?;
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.control = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Ends the TCP stream gracefully: our FIN, then what the peer still had in flight is read
    /// and dropped for a short while. Dropping a socket with unread input makes the kernel reset
    /// the connection, and a reset can destroy the last frames we sent before the peer reads
    /// them.
    pub(crate) async fn finish(&mut self, linger: std::time::Duration) -> io::Result<()> {
        use tokio::io::AsyncReadExt;
        self.io.shutdown().await?;
        let mut discard = [0u8; 512];
        while let Ok(Ok(1..)) = tokio::time::timeout(linger, self.io.read(&mut discard)).await {}
        Ok(())
    }
}

/// A frame reader, inflating compressed messages when `inflater` is given.
fn frame_reader(max_message: usize, inflater: Option<Inflater>) -> FrameReader {
    let reader = FrameReader::new(max_message);
    match inflater {
        Some(inflater) => reader.with_inflater(inflater),
        None => reader,
    }
}

/// A parked session's socket: what [`Socket`] keeps between frames, without its buffers.
pub(crate) struct ParkedSocket {
    stream: TcpStream,
    inflater: Option<Inflater>,
    budget: Option<Box<FrameBudget>>,
}

impl ParkedSocket {
    /// Whether the client has sent something (or closed); `Pending` keeps the waker to wake.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        // An error is readiness too: the read that follows reports it.
        self.stream.poll_read_ready(cx).map(|_| ())
    }
}

/// The frame rate limit as a generic cell rate algorithm: each frame moves `next` (the time
/// at which the peer is back within its average rate) by `per_frame`; the peer is over its
/// burst when `next` runs more than `tolerance` ahead of now. Three words, no allocation.
struct FrameBudget {
    per_frame: u64,
    tolerance: u64,
    next: Instant,
}

impl FrameBudget {
    /// Spends the credit of `frames` frames; `false` when the peer is over its burst.
    fn spend(&mut self, frames: u32) -> bool {
        let now = Instant::now();
        let cost = Duration::from_nanos(self.per_frame.saturating_mul(u64::from(frames)));
        let next = self.next.max(now) + cost;
        if next.duration_since(now) > Duration::from_nanos(self.tolerance) {
            return false;
        }
        self.next = next;
        true
    }
}

/// Messages per vectored write: two slices each (header, payload), well under `IOV_MAX`.
const FRAMES_PER_WRITE: usize = 64;

/// Batches up to this many messages use a smaller set of slices.
const SMALL_WRITE: usize = 8;

/// The messages of one write, with the compressed payloads of those sent compressed.
#[derive(Clone, Copy)]
struct Frames<'a> {
    messages: &'a VecDeque<Message>,
    /// By position; shorter than `messages` (empty, usually) where nothing is compressed.
    wire: &'a [Option<Bytes>],
}

impl Frames<'_> {
    /// The compressed payload of message `index`, if it goes out compressed.
    fn compressed(&self, index: usize) -> Option<&Bytes> {
        self.wire.get(index).and_then(Option::as_ref)
    }

    /// The bytes that go on the wire as message `index`'s payload.
    fn payload(&self, index: usize) -> &[u8] {
        match self.compressed(index) {
            Some(compressed) => compressed,
            None => self.messages[index].as_bytes(),
        }
    }
}

/// How far a write of control bytes and messages has got. The bytes to write are a sequence of
/// segments: the control bytes, then the header and payload of each message.
#[derive(Default)]
pub(crate) struct Cursor {
    segment: usize,
    offset: usize,
}

/// Writes from `cursor` on, up to `N` messages per system call (`S` = 2N + 1 slices). The
/// slices are built on the stack for each system call, so a write that has to wait keeps only
/// the cursor (a session's task stays small).
fn poll_write_frames<const N: usize, const S: usize, W: AsyncWrite + Unpin>(
    out: &mut W,
    cx: &mut Context<'_>,
    prefix: &[u8],
    frames: Frames<'_>,
    cursor: &mut Cursor,
) -> Poll<io::Result<()>> {
    let messages = frames.messages;
    let segments = 1 + 2 * messages.len();
    let segment_len = |segment: usize| match segment {
        0 => prefix.len(),
        odd if odd % 2 == 1 => header_len(frames.payload((odd - 1) / 2).len()),
        even => frames.payload((even - 2) / 2).len(),
    };
    loop {
        while cursor.segment < segments && cursor.offset == segment_len(cursor.segment) {
            cursor.segment += 1;
            cursor.offset = 0;
        }
        if cursor.segment == segments {
            return Poll::Ready(Ok(()));
        }
        let first = cursor.segment.saturating_sub(1) / 2;
        let mut headers = [[0u8; 10]; N];
        for (offset, header) in headers.iter_mut().enumerate() {
            let index = first + offset;
            let Some(message) = messages.get(index) else {
                break;
            };
            let compressed = frames.compressed(index).is_some();
            frame_header(
                message.is_text(),
                compressed,
                frames.payload(index).len(),
                header,
            );
        }
        let end = segments.min(1 + 2 * (first + N));
        let mut slices = [IoSlice::new(&[]); S];
        let mut used = 0;
        for segment in cursor.segment..end {
            let bytes = match segment {
                0 => prefix,
                odd if odd % 2 == 1 => {
                    let index = (odd - 1) / 2;
                    &headers[index - first][..segment_len(odd)]
                }
                even => frames.payload((even - 2) / 2),
            };
            let skip = if segment == cursor.segment {
                cursor.offset
            } else {
                0
            };
            if bytes.len() > skip {
                slices[used] = IoSlice::new(&bytes[skip..]);
                used += 1;
            }
        }
        let mut written = ready!(Pin::new(&mut *out).poll_write_vectored(cx, &slices[..used]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        while written > 0 {
            let left = segment_len(cursor.segment) - cursor.offset;
            if written < left {
                cursor.offset += written;
                break;
            }
            written -= left;
            cursor.segment += 1;
            cursor.offset = 0;
        }
    }
}

/// The length of a server frame header for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The header of a final, unmasked text or binary frame of `len` payload bytes, with RSV1 set
/// when the payload is compressed; returns its length.
fn frame_header(text: bool, compressed: bool, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | u8::from(compressed) << 6 | if text { 0x1 } else { 0x2 };
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

    /// Takes at most 3 bytes per write and is not ready every other time.
    #[derive(Default)]
    struct Trickle {
        written: Vec<u8>,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
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
            let n = buf.len().min(3);
            this.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let mut messages: VecDeque<Message> = (0..150)
            .map(|i| match i % 3 {
                0 => Message::text(format!("message {i}")),
                1 => Message::binary(vec![i as u8; 200]),
                _ => Message::text(""),
            })
            .collect();
        messages.rotate_left(7); // a ring buffer that wraps around
        // Every fifth message goes out "compressed" (any bytes do here), with RSV1 set.
        let wire: Vec<Option<Bytes>> = (0..messages.len())
            .map(|i| (i % 5 == 0).then(|| Bytes::from(vec![0xC0 | (i % 7) as u8; i % 300])))
            .collect();
        let prefix = [0x8A, 1, b'p'];
        let mut expected = prefix.to_vec();
        for (message, compressed) in messages.iter().zip(&wire) {
            let payload = compressed.as_deref().unwrap_or(message.as_bytes());
            let mut header = [0u8; 10];
            let len = frame_header(
                message.is_text(),
                compressed.is_some(),
                payload.len(),
                &mut header,
            );
            assert_eq!(header[0] & 0x40 != 0, compressed.is_some());
            expected.extend_from_slice(&header[..len]);
            expected.extend_from_slice(payload);
        }
        let mut out = Trickle::default();
        let mut cursor = Cursor::default();
        let frames = Frames {
            messages: &messages,
            wire: &wire,
        };
        poll_fn(|cx| poll_write_frames::<4, 9, _>(&mut out, cx, &prefix, frames, &mut cursor))
            .await
            .unwrap();
        assert_eq!(out.written, expected);
    }

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        let mut out = [0u8; 10];
        assert_eq!(frame_header(true, false, 2, &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 2]);
        assert_eq!(frame_header(false, false, 126, &mut out), 4);
        assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
        assert_eq!(frame_header(false, true, 65_536, &mut out), 10);
        assert_eq!(&out[..10], &[0xC2, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
