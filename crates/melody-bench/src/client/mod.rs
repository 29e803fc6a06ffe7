//! The generators' client connections: tokio-websockets ([`Ws`]), or — for permessage-deflate,
//! which tokio-websockets does not speak — the raw client [`RawWs`], which offers
//! `permessage-deflate; client_max_window_bits` as a browser does and inflates what the
//! server compresses. [`Client`] is either, read the same way.
//!
//! The raw client only reads (and answers pings and a close): publishers stay on
//! tokio-websockets and send uncompressed.

use std::io;

use futures_util::StreamExt;
use tokio_websockets::Message;

use crate::common::Ws;

pub mod handshake;
pub mod inflate;
pub mod reader;

pub use handshake::Deflate;
pub use reader::{Kind, RawCounters, RawMessage, RawOptions, RawWs};

/// A connection that receives: tokio-websockets or the raw client.
#[derive(Debug)]
pub enum Client {
    /// tokio-websockets (no compression).
    Ws(Ws),
    /// The raw client (permessage-deflate when the server agreed).
    Raw(RawWs),
}

/// One received message of a [`Client`].
#[derive(Debug)]
pub enum Incoming {
    /// From tokio-websockets.
    Ws(Message),
    /// From the raw client.
    Raw(RawMessage),
}

impl Client {
    /// The next message; `None` when the connection has ended.
    ///
    /// # Errors
    ///
    /// The item is an error when the connection failed or broke the protocol.
    pub async fn next(&mut self) -> Option<io::Result<Incoming>> {
        match self {
            Self::Ws(ws) => ws
                .next()
                .await
                .map(|r| r.map(Incoming::Ws).map_err(io::Error::other)),
            Self::Raw(raw) => raw.next().await.map(|r| r.map(Incoming::Raw)),
        }
    }

    /// Whether the session agreed to permessage-deflate.
    pub fn compressed(&self) -> bool {
        matches!(self, Self::Raw(raw) if raw.deflate().is_some())
    }

    /// Inflate work so far (zero for tokio-websockets).
    pub fn counters(&self) -> RawCounters {
        match self {
            Self::Ws(_) => RawCounters::default(),
            Self::Raw(raw) => raw.counters(),
        }
    }
}

impl Incoming {
    /// The payload of a text message, `None` for any other kind.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Self::Ws(m) if m.is_text() => Some(m.as_payload()),
            Self::Raw(m) if m.kind == Kind::Text => Some(&m.payload),
            _ => None,
        }
    }

    /// Payload bytes as received (the compressed size for a compressed message).
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Ws(m) => m.as_payload().len(),
            Self::Raw(m) => m.wire_len,
        }
    }

    /// Whether it arrived compressed.
    pub fn compressed(&self) -> bool {
        matches!(self, Self::Raw(m) if m.compressed)
    }

    /// Whether it is a ping.
    pub fn is_ping(&self) -> bool {
        match self {
            Self::Ws(m) => m.is_ping(),
            Self::Raw(m) => m.kind == Kind::Ping,
        }
    }
}
