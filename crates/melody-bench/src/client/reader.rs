//! [`RawWs`]: the client side of a WebSocket over a raw stream, written for one purpose:
//! reading what a server sends, including permessage-deflate (RSV1) messages.
//!
//! It reads server frames (unmasked) into one buffer, reassembles fragmented messages,
//! inflates compressed ones ([`Inflater`]), answers pings and a close, and writes nothing
//! else: the generators' subscribers only listen. It counts each message's bytes as received
//! (compressed size) beside its bytes as sent (inflated size).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handshake::{self, Deflate};
use super::inflate::Inflater;

/// Largest message accepted (compressed or inflated), as for the tokio-websockets clients.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How the raw client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawOptions {
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`).
    pub offer_deflate: bool,
    /// Look up payloads identical to one inflated moments ago instead of inflating them again
    /// (only when the server compresses each message alone; see [`Inflater`]).
    pub inflate_cache: bool,
}

/// What a message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message (valid UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A ping (already answered).
    Ping,
    /// A pong.
    Pong,
    /// The server's close frame (already answered); nothing follows.
    Close,
}

/// One message as the raw client received it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Its kind.
    pub kind: Kind,
    /// The payload as the server's application sent it (inflated when compressed).
    pub payload: Bytes,
    /// Payload bytes as received: the sum of its frames' payload lengths (compressed size).
    pub wire_len: usize,
    /// Whether it arrived compressed (RSV1).
    pub compressed: bool,
}

/// Inflate work done by one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawCounters {
    /// Compressed messages inflated.
    pub inflated: u64,
    /// Compressed messages taken from the per-thread cache instead.
    pub cache_hits: u64,
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    kind: Kind,
    compressed: bool,
    data: BytesMut,
    wire_len: usize,
}

/// A client WebSocket connection that reads server frames itself.
#[derive(Debug)]
pub struct RawWs<S = TcpStream> {
    stream: S,
    buf: BytesMut,
    /// Control frames to write (pongs, the close answer), flushed before the next read.
    out: Vec<u8>,
    deflate: Option<Deflate>,
    inflater: Option<Inflater>,
    partial: Option<Partial>,
    closed: bool,
    /// State of the masking-key generator.
    mask: u64,
    counters: RawCounters,
}

static SEED: AtomicU64 = AtomicU64::new(0x5eed);

impl<S: AsyncRead + AsyncWrite + Unpin> RawWs<S> {
    /// Performs the upgrade on `stream` (for `path` on `authority`) and returns the connection,
    /// compressed or not as the server answered.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors and on an answer that is not a valid upgrade for this request.
    pub async fn connect(
        mut stream: S,
        authority: &str,
        path: &str,
        options: RawOptions,
    ) -> io::Result<Self> {
        let seed = SEED.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 40);
        let key = handshake::new_key(seed);
        let (deflate, buf) =
            handshake::upgrade(&mut stream, authority, path, &key, options.offer_deflate).await?;
        Ok(Self::from_parts(
            stream,
            buf,
            deflate,
            options.inflate_cache,
            seed,
        ))
    }

    /// A connection whose upgrade is done: `buf` holds what was read past the response, and
    /// `deflate` is the agreement (`None`: uncompressed).
    pub fn from_parts(
        stream: S,
        buf: BytesMut,
        deflate: Option<Deflate>,
        inflate_cache: bool,
        seed: u64,
    ) -> Self {
        Self {
            stream,
            buf,
            out: Vec::new(),
            inflater: deflate.map(|d| Inflater::new(!d.server_no_context_takeover, inflate_cache)),
            deflate,
            partial: None,
            closed: false,
            mask: crate::payload::splitmix64(seed),
            counters: RawCounters::default(),
        }
    }

    /// The permessage-deflate agreement, `None` when the session is uncompressed.
    pub fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    /// Inflate work so far.
    pub fn counters(&self) -> RawCounters {
        self.counters
    }

    /// The next message; `None` once the connection has closed (after the server's close
    /// frame, or at end of stream).
    ///
    /// Cancel-safe: everything read or parsed is kept in `self`.
    pub async fn next(&mut self) -> Option<io::Result<RawMessage>> {
        self.next_inner().await.transpose()
    }

    async fn next_inner(&mut self) -> io::Result<Option<RawMessage>> {
        while !self.out.is_empty() {
            let n = self.stream.write(&self.out).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.out.drain(..n);
        }
        loop {
            if self.closed {
                let _ = self.stream.flush().await;
                return Ok(None);
            }
            if let Some(msg) = self.parse()? {
                return Ok(Some(msg));
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() && self.partial.is_none() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Takes the frames in the buffer until one completes a message; `None` when more bytes
    /// are needed (room for the incomplete frame is reserved).
    fn parse(&mut self) -> io::Result<Option<RawMessage>> {
        loop {
            let Some(header) = Header::parse(&self.buf)? else {
                return Ok(None);
            };
            let total = header.len + header.payload_len;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(header.len);
            let payload = self.buf.split_to(header.payload_len);
            let (fin, rsv1) = (header.fin, header.rsv1);
            match header.opcode {
                0x8..=0xA => {
                    if !fin || rsv1 || payload.len() > 125 {
                        return Err(invalid("bad control frame"));
                    }
                    return Ok(Some(self.control(header.opcode, payload.freeze())));
                }
                opcode @ (0x1 | 0x2) => {
                    if self.partial.is_some() {
                        return Err(invalid("new message inside a fragmented one"));
                    }
                    if rsv1 && self.inflater.is_none() {
                        return Err(invalid("RSV1 without permessage-deflate"));
                    }
                    let kind = if opcode == 0x1 {
                        Kind::Text
                    } else {
                        Kind::Binary
                    };
                    if fin {
                        let wire_len = payload.len();
                        return self
                            .finish(kind, rsv1, payload.freeze(), wire_len)
                            .map(Some);
                    }
                    self.partial = Some(Partial {
                        kind,
                        compressed: rsv1,
                        wire_len: payload.len(),
                        data: payload,
                    });
                }
                0x0 => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(invalid("continuation without a message"));
                    };
                    if rsv1 {
                        return Err(invalid("RSV1 on a continuation frame"));
                    }
                    partial.wire_len += payload.len();
                    if partial.wire_len > MAX_MESSAGE {
                        return Err(invalid("message too big"));
                    }
                    partial.data.extend_from_slice(&payload);
                    if fin {
                        let p = self.partial.take().expect("checked above");
                        return self
                            .finish(p.kind, p.compressed, p.data.freeze(), p.wire_len)
                            .map(Some);
                    }
                }
                other => return Err(invalid(format!("unknown opcode {other}"))),
            }
        }
    }

    /// A complete data message: inflated when compressed, text checked to be UTF-8.
    fn finish(
        &mut self,
        kind: Kind,
        compressed: bool,
        data: Bytes,
        wire_len: usize,
    ) -> io::Result<RawMessage> {
        let payload = if compressed {
            let inflater = self
                .inflater
                .as_mut()
                .expect("RSV1 checked at the first frame");
            let inflated = inflater.inflate(&data, MAX_MESSAGE)?;
            if inflated.cached {
                // Identical bytes inflated (and checked) before: identical text.
                self.counters.cache_hits += 1;
                return Ok(RawMessage {
                    kind,
                    payload: inflated.data,
                    wire_len,
                    compressed,
                });
            }
            self.counters.inflated += 1;
            inflated.data
        } else {
            data
        };
        if kind == Kind::Text && std::str::from_utf8(&payload).is_err() {
            return Err(invalid("text message is not UTF-8"));
        }
        Ok(RawMessage {
            kind,
            payload,
            wire_len,
            compressed,
        })
    }

    /// A control frame: a ping is answered with a pong, a close with a close.
    fn control(&mut self, opcode: u8, payload: Bytes) -> RawMessage {
        let kind = match opcode {
            0x9 => {
                self.queue(0xA, &payload);
                Kind::Ping
            }
            0xA => Kind::Pong,
            _ => {
                // Echo the status code, as RFC 6455 section 5.5.1 suggests.
                let code = payload.get(..2).unwrap_or_default().to_vec();
                self.queue(0x8, &code);
                self.closed = true;
                Kind::Close
            }
        };
        RawMessage {
            kind,
            wire_len: payload.len(),
            payload,
            compressed: false,
        }
    }

    /// Queues a masked control frame.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        self.mask = crate::payload::splitmix64(self.mask);
        let key = (self.mask as u32).to_le_bytes();
        self.out.push(0x80 | opcode);
        self.out.push(0x80 | payload.len() as u8);
        self.out.extend_from_slice(&key);
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A server frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    /// Header length in bytes.
    len: usize,
    payload_len: usize,
}

impl Header {
    /// The header at the start of `buf`; `None` when incomplete.
    fn parse(buf: &[u8]) -> io::Result<Option<Self>> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x30 != 0 {
            return Err(invalid("RSV2/RSV3 set"));
        }
        if b1 & 0x80 != 0 {
            return Err(invalid("masked server frame"));
        }
        let (len, payload_len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (4, usize::from(u16::from_be_bytes([b[0], b[1]]))),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let n = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    (10, usize::try_from(n).unwrap_or(usize::MAX))
                }
                None => return Ok(None),
            },
            n => (2, usize::from(n)),
        };
        if payload_len > MAX_MESSAGE {
            return Err(invalid("frame too big"));
        }
        Ok(Some(Self {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            len,
            payload_len,
        }))
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
