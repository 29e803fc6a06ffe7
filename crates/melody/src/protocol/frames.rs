//! The WebSocket protocol as a server reads it (RFC 6455 section 5): client frames are parsed as
//! their bytes arrive, whatever the chunking, into whole messages and control frames.
//!
//! The reader owns no read buffer: the connection reads into a stack buffer and feeds the bytes
//! here, where payloads are unmasked straight into a buffer of the message's own size. Only the
//! few header bytes of a frame split across reads are kept, in place. An idle session so holds
//! no buffer at all, which is what keeps its memory at a few hundred bytes.
//!
//! Text is validated as it arrives, so invalid UTF-8 fails the connection at the first bad byte,
//! not at the end of the message.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    close::{CloseCode, CloseFrame, format_close_message},
    deflate::{InflateError, Inflater},
    message::Text,
};

/// A way the peer broke the WebSocket protocol (RFC 6455). The session is closed with 1002
/// Protocol Error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved bit (RSV1-3) is set without an extension that gives it a meaning.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A client frame without a mask.
    #[error("client frame is not masked")]
    Unmasked,
    /// A close, ping or pong frame split into fragments.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A close, ping or pong frame with more than 125 bytes of payload.
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    /// An opcode the protocol does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A 64-bit length with its most significant bit set.
    #[error("frame length has its most significant bit set")]
    LengthOverflow,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    #[error("new message before the previous one ended")]
    UnfinishedMessage,
    /// A close frame whose payload is a single byte.
    #[error("close payload of one byte")]
    ShortClose,
    /// A close frame with a code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A compressed message (permessage-deflate) whose payload is not valid DEFLATE data.
    #[error("compressed message does not inflate")]
    BadCompression,
}

/// Why reading stopped: what the peer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A message over the size limit (so far, if it came in fragments).
    TooBig { len: usize, max: usize },
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A broken frame.
    Protocol(ProtocolError),
    /// More frames than the frame rate limit allows.
    FrameRate,
}

impl From<ProtocolError> for Violation {
    fn from(error: ProtocolError) -> Self {
        Self::Protocol(error)
    }
}

/// What the client sent, in order.
#[derive(Debug)]
pub(crate) enum Inbound {
    Text(Text),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// A close frame: its code and reason, or `None` for an empty payload.
    Close(Option<CloseFrame>),
    /// The client broke the protocol; nothing after this is read.
    Violation(Violation),
}

/// Room of a shared buffer for small messages that arrive whole: one allocation serves many
/// messages, and a message kept by the application keeps at most this much alive.
const ARENA: usize = 4096;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The frame whose payload is arriving.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    fin: bool,
    /// RSV1: the first frame of a compressed message (permessage-deflate).
    compressed: bool,
    mask: [u8; 4],
    /// Payload bytes received so far (the mask's phase).
    received: usize,
    remaining: usize,
}

/// A text or binary message being assembled from one or more frames.
#[derive(Debug)]
struct Assembly {
    text: bool,
    /// The payload is compressed: it is inflated, then checked, when the message ends.
    compressed: bool,
    data: BytesMut,
    /// How many bytes of `data` are known to be valid UTF-8; the rest (at most 3 bytes) are the
    /// start of a character whose end has not arrived.
    checked: usize,
}

#[derive(Debug)]
pub(crate) struct FrameReader {
    max_message: usize,
    header: [u8; MAX_HEADER],
    header_len: u8,
    frame: Option<Frame>,
    message: Option<Assembly>,
    /// Payload of the control frame being received (at most 125 bytes).
    control: BytesMut,
    ready: VecDeque<Inbound>,
    /// Shared room for the payloads of small messages that arrive whole (see [`ARENA`]); kept
    /// only while one read is parsed.
    arena: BytesMut,
    /// A close frame or a violation has been read: the rest of the stream is ignored.
    done: bool,
    /// Frames started since the last [`FrameReader::take_frames`], for the frame rate limit.
    frames: u32,
    /// Set when permessage-deflate was agreed: RSV1 then marks a compressed message.
    inflater: Option<Inflater>,
}

impl FrameReader {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            max_message,
            header: [0; MAX_HEADER],
            header_len: 0,
            frame: None,
            message: None,
            control: BytesMut::new(),
            ready: VecDeque::new(),
            arena: BytesMut::new(),
            done: false,
            frames: 0,
            inflater: None,
        }
    }

    /// Reads compressed messages too (permessage-deflate was agreed), inflated by `inflater`.
    pub(crate) fn with_inflater(mut self, inflater: Inflater) -> Self {
        self.inflater = Some(inflater);
        self
    }

    /// The next complete item, if one has been read.
    pub(crate) fn pop(&mut self) -> Option<Inbound> {
        self.ready.pop_front()
    }

    /// Frees what a burst left behind (the session calls this when it pings, so an idle session
    /// holds nothing, while a busy one does not reallocate at every read).
    pub(crate) fn shrink(&mut self) {
        // A control payload's buffer leaves with the frame (see `end_frame`), so only the
        // queue can be left holding room.
        if self.ready.is_empty() {
            self.ready = VecDeque::new();
        }
    }

    /// Ends reading with `violation`: what was parsed but not yet taken is dropped.
    pub(crate) fn fail(&mut self, violation: Violation) {
        self.ready.clear();
        self.ready.push_back(Inbound::Violation(violation));
        self.done = true;
    }

    /// How many frames have started since the last call.
    pub(crate) fn take_frames(&mut self) -> u32 {
        std::mem::take(&mut self.frames)
    }

    /// Whether the stream has ended for the reader (close frame or violation read).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the reader is between frames with nothing read and not yet taken: it can then
    /// be dropped and made again with [`FrameReader::new`] (a parked session keeps only its
    /// inflater).
    pub(crate) fn is_between_frames(&self) -> bool {
        self.header_len == 0
            && self.frame.is_none()
            && self.message.is_none()
            && self.ready.is_empty()
            && self.control.is_empty()
            && !self.done
    }

    /// The inflater, for a reader that is dropped between frames.
    pub(crate) fn into_inflater(self) -> Option<Inflater> {
        self.inflater
    }

    /// Parses bytes as they came off the socket.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.done {
            let step = match self.frame {
                None => self.read_header(data),
                Some(_) => Ok(self.read_payload(data)),
            };
            match step {
                Ok(used) => data = &data[used..],
                Err(violation) => {
                    self.ready.push_back(Inbound::Violation(violation));
                    self.done = true;
                }
            }
        }
        self.arena = BytesMut::new();
    }

    /// Consumes header bytes; a complete header starts a frame. Returns the bytes used.
    fn read_header(&mut self, data: &[u8]) -> Result<usize, Violation> {
        let have = usize::from(self.header_len);
        let take = (MAX_HEADER - have).min(data.len());
        self.header[have..have + take].copy_from_slice(&data[..take]);
        let available = have + take;
        if have < 2 && available >= 2 {
            // The first two bytes tell most violations: fail before waiting for the rest.
            check_start(self.header[0], self.header[1], self.inflater.is_some())?;
        }
        let Some(header_len) = header_len(&self.header[..available]) else {
            self.header_len = available as u8;
            return Ok(take);
        };
        let header = self.header;
        self.header_len = 0;
        self.start_frame(&header[..header_len])?;
        let used = header_len - have;
        Ok(used + self.take_whole(&data[used..])?)
    }

    /// The common case, taken in one step: a whole message in one frame that has fully arrived.
    /// Its payload is unmasked into the shared arena. Returns the bytes used (0 when the case
    /// does not apply).
    fn take_whole(&mut self, rest: &[u8]) -> Result<usize, Violation> {
        let Some(frame) = self.frame.as_ref() else {
            return Ok(0);
        };
        let len = frame.remaining;
        let single = frame.fin && !frame.compressed && matches!(frame.opcode, TEXT | BINARY);
        if !single || len > rest.len() || len > ARENA {
            return Ok(0);
        }
        if self.arena.capacity() < len {
            self.arena = BytesMut::with_capacity(ARENA.min(rest.len()));
        }
        self.arena.put_slice(&rest[..len]);
        unmask(&mut self.arena, frame.mask, 0);
        let text = frame.opcode == TEXT;
        self.frame = None;
        self.message = None;
        let payload = self.arena.split().freeze();
        let item = if text {
            Inbound::Text(Text::from_checked(payload).ok_or(Violation::InvalidUtf8)?)
        } else {
            Inbound::Binary(payload)
        };
        self.ready.push_back(item);
        Ok(len)
    }

    fn start_frame(&mut self, header: &[u8]) -> Result<(), Violation> {
        self.frames = self.frames.saturating_add(1);
        let (b0, b1) = (header[0], header[1]);
        let (fin, opcode, compressed) = (b0 & 0x80 != 0, b0 & 0x0F, b0 & 0x40 != 0);
        let (len, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => {
                let len = u64::from_be_bytes(header[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow.into());
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = header[mask_at..mask_at + 4].try_into().expect("4 bytes");
        if opcode < CLOSE {
            self.start_data(opcode, len, compressed)?;
        }
        self.frame = Some(Frame {
            opcode,
            fin,
            compressed,
            mask,
            received: 0,
            remaining: len as usize,
        });
        if len == 0 {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Checks a data frame against the message in progress and the size limit. A compressed
    /// message may carry a little more than the limit (DEFLATE grows data that does not
    /// compress by a few bytes per block); its inflated size is checked when it ends.
    fn start_data(&mut self, opcode: u8, len: u64, compressed: bool) -> Result<(), Violation> {
        let so_far = match (&self.message, opcode) {
            (None, CONTINUATION) => return Err(ProtocolError::UnexpectedContinuation.into()),
            (Some(_), TEXT | BINARY) => {
                return Err(ProtocolError::UnfinishedMessage.into());
            }
            (Some(message), _) => message.data.len(),
            (None, _) => 0,
        };
        let compressed = compressed || self.message.as_ref().is_some_and(|m| m.compressed);
        let max = if compressed {
            self.max_message.saturating_add(self.max_message / 64 + 64)
        } else {
            self.max_message
        };
        let fits = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(so_far))
            .is_some_and(|total| total <= max);
        if !fits {
            return Err(Violation::TooBig {
                len: usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .saturating_add(so_far),
                max: self.max_message,
            });
        }
        // Nothing is allocated here: the payload may still take the arena.
        self.message.get_or_insert_with(|| Assembly {
            text: opcode == TEXT,
            compressed,
            data: BytesMut::new(),
            checked: 0,
        });
        Ok(())
    }

    /// Consumes payload bytes of the current frame. Returns the bytes used.
    fn read_payload(&mut self, data: &[u8]) -> usize {
        let frame = self.frame.as_mut().expect("a frame is in progress");
        let take = frame.remaining.min(data.len());
        let target = if frame.opcode >= CLOSE {
            &mut self.control
        } else {
            &mut self
                .message
                .as_mut()
                .expect("data frames belong to a message")
                .data
        };
        let start = target.len();
        if target.capacity() - start < take {
            // Grow with what has arrived (doubling what is there), never ahead of it: a header
            // may announce any length up to the limit, and a peer that then stalls must not
            // hold memory it never sent.
            target.reserve(take.max(start).min(frame.remaining));
        }
        target.put_slice(&data[..take]);
        unmask(&mut target[start..], frame.mask, frame.received);
        frame.received += take;
        frame.remaining -= take;
        let (is_data, done) = (frame.opcode < CLOSE, frame.remaining == 0);
        let mut result = Ok(());
        if is_data {
            result = self.check_text();
        }
        if result.is_ok() && done {
            result = self.end_frame();
        }
        if let Err(violation) = result {
            self.ready.push_back(Inbound::Violation(violation));
            self.done = true;
        }
        take
    }

    /// Validates the newly arrived bytes of a text message.
    fn check_text(&mut self) -> Result<(), Violation> {
        let Some(message) = self.message.as_mut().filter(|m| m.text && !m.compressed) else {
            return Ok(());
        };
        match std::str::from_utf8(&message.data[message.checked..]) {
            Ok(_) => message.checked = message.data.len(),
            // The end of the input cuts a character short: wait for the rest.
            Err(error) if error.error_len().is_none() => message.checked += error.valid_up_to(),
            Err(_) => return Err(Violation::InvalidUtf8),
        }
        Ok(())
    }

    fn end_frame(&mut self) -> Result<(), Violation> {
        let frame = self.frame.take().expect("a frame is in progress");
        let item = match frame.opcode {
            PING => Inbound::Ping(std::mem::take(&mut self.control).freeze()),
            PONG => {
                self.control = BytesMut::new();
                Inbound::Pong
            }
            CLOSE => {
                let close = parse_close(&self.control)?;
                self.control = BytesMut::new();
                self.done = true;
                Inbound::Close(close)
            }
            _ if !frame.fin => return Ok(()),
            _ => {
                let message = self
                    .message
                    .take()
                    .expect("data frames belong to a message");
                let data = if message.compressed {
                    self.inflate(&message.data)?
                } else {
                    message.data.freeze()
                };
                if message.compressed && message.text {
                    // Checked whole, now that it is inflated.
                    Inbound::Text(Text::from_checked(data).ok_or(Violation::InvalidUtf8)?)
                } else if !message.text {
                    Inbound::Binary(data)
                } else if message.checked == data.len() {
                    Inbound::Text(Text::from_checked(data).ok_or(Violation::InvalidUtf8)?)
                } else {
                    // The message ended inside a character.
                    return Err(Violation::InvalidUtf8);
                }
            }
        };
        self.ready.push_back(item);
        Ok(())
    }
}

impl FrameReader {
    /// Inflates a compressed message, bounded by the message size limit on its inflated size.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Bytes, Violation> {
        let max = self.max_message;
        let inflater = self
            .inflater
            .as_mut()
            .expect("compressed messages are only read with an inflater");
        inflater
            .inflate(compressed, max)
            .map_err(|error| match error {
                InflateError::TooBig { len } => Violation::TooBig { len, max },
                InflateError::Corrupt => ProtocolError::BadCompression.into(),
            })
    }
}

/// Checks what the first two bytes of a client frame say on their own. With permessage-deflate
/// agreed, RSV1 may mark the first frame of a text or binary message, and nothing else.
fn check_start(b0: u8, b1: u8, deflate: bool) -> Result<(), Violation> {
    let rsv1_allowed = deflate && matches!(b0 & 0x0F, TEXT | BINARY);
    if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && !rsv1_allowed) {
        return Err(ProtocolError::ReservedBits.into());
    }
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked.into());
    }
    match b0 & 0x0F {
        CLOSE | PING | PONG if b0 & 0x80 == 0 => Err(ProtocolError::FragmentedControl.into()),
        CLOSE | PING | PONG if b1 & 0x7F > 125 => Err(ProtocolError::ControlTooLong.into()),
        CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG => Ok(()),
        opcode => Err(ProtocolError::UnknownOpcode(opcode).into()),
    }
}

/// The length of the header at the start of `bytes`, once all of it is there.
fn header_len(bytes: &[u8]) -> Option<usize> {
    let len = match bytes.get(1)? & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    };
    (bytes.len() >= len).then_some(len)
}

/// A close payload as RFC 6455 section 7.4 allows it: empty, or a code that may be sent
/// followed by UTF-8.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, Violation> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::ShortClose.into()),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    let code = CloseCode::new(code)
        .filter(|&code| code.may_be_sent())
        .ok_or(ProtocolError::InvalidCloseCode(code))?;
    let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
    Ok(Some(CloseFrame::new(code, reason)))
}

/// The payload of a close frame we send: the code and reason, or nothing when the code may not
/// travel (1005 stands for "no code").
pub(crate) fn close_payload(code: CloseCode, reason: &str) -> Bytes {
    if code.may_be_sent() {
        format_close_message(code, reason)
    } else {
        Bytes::new()
    }
}

/// XORs client payload bytes with the frame's mask; `phase` is how many payload bytes of the
/// frame came before these.
fn unmask(bytes: &mut [u8], mask: [u8; 4], phase: usize) {
    let key: [u8; 4] = std::array::from_fn(|i| mask[(phase + i) % 4]);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Encodes a server control frame (unmasked, at most 125 bytes of payload) onto `out`.
pub(crate) fn put_control(out: &mut BytesMut, opcode: Control, payload: &[u8]) {
    debug_assert!(payload.len() <= 125);
    out.reserve(2 + payload.len());
    out.put_u8(0x80 | opcode as u8);
    out.put_u8(payload.len() as u8);
    out.put_slice(payload);
}

/// The control frames a server sends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Control {
    Close = CLOSE as isize,
    Ping = PING as isize,
    Pong = PONG as isize,
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "frames_deflate_tests.rs"]
mod deflate_tests;
