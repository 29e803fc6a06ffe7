//! The wire forms that travel between nodes: a [`Frame`] (one send: its origin node, its
//! target, its message) and a [`NodePresence`] snapshot. Compact, versioned, self-contained, and
//! decoded without ever panicking (fuzzed: `fuzz/fuzz_targets/wire.rs`).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Message, SessionId, fanout::Target};

/// A node of the cluster: one hub in one process. Random, so ids of different nodes differ.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One send on its way between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The node it was sent from.
    pub origin: NodeId,
    /// Who it is for.
    pub target: Target,
    /// What it carries.
    pub message: Message,
}

/// Bytes that are not a frame or a snapshot of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster frame: {0}")]
pub struct DecodeError(&'static str);

const VERSION: u8 = 1;

impl Frame {
    /// The wire form: version, origin, target, kind, payload. Compact and self-contained.
    ///
    /// ```
    /// use melody::{Message, cluster::{Frame, NodeId}, fanout::Target};
    ///
    /// let frame = Frame {
    ///     origin: NodeId(7),
    ///     target: Target::Topic("room:lobby".into()),
    ///     message: Message::text("hello"),
    /// };
    /// assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
    /// ```
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let payload = self.message.payload();
        let mut out = BytesMut::with_capacity(32 + payload.len());
        out.put_u8(VERSION);
        out.put_u64(self.origin.0);
        let (tag, topic, session) = match &self.target {
            Target::All => (0, None, None),
            Target::AllExcept(id) => (1, None, Some(*id)),
            Target::Topic(topic) => (2, Some(topic), None),
            Target::TopicExcept(topic, id) => (3, Some(topic), Some(*id)),
            Target::Session(id) => (4, None, Some(*id)),
        };
        out.put_u8(tag);
        if let Some(id) = session {
            out.put_u64(id.as_u64());
        }
        if let Some(topic) = topic {
            out.put_u32(u32::try_from(topic.len()).unwrap_or(u32::MAX));
            out.put_slice(topic.as_bytes());
        }
        out.put_u8(u8::from(self.message.is_binary()));
        out.put_slice(payload);
        out.freeze()
    }

    /// Reads the wire form back; never panics on any input.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the bytes are not a delivery of this version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut input = bytes;
        let need = |input: &[u8], n: usize| {
            if input.remaining() < n {
                Err(DecodeError("truncated"))
            } else {
                Ok(())
            }
        };
        need(input, 10)?;
        if input.get_u8() != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let origin = NodeId(input.get_u64());
        let tag = input.get_u8();
        let session = if matches!(tag, 1 | 3 | 4) {
            need(input, 8)?;
            Some(SessionId::from(input.get_u64()))
        } else {
            None
        };
        let topic = if matches!(tag, 2 | 3) {
            need(input, 4)?;
            let len = input.get_u32() as usize;
            need(input, len)?;
            let topic = std::str::from_utf8(&input[..len])
                .map_err(|_| DecodeError("topic is not utf-8"))?;
            let topic = topic.to_owned();
            input.advance(len);
            Some(topic)
        } else {
            None
        };
        let target = match (tag, topic, session) {
            (0, None, None) => Target::All,
            (1, None, Some(id)) => Target::AllExcept(id),
            (2, Some(topic), None) => Target::Topic(topic),
            (3, Some(topic), Some(id)) => Target::TopicExcept(topic, id),
            (4, None, Some(id)) => Target::Session(id),
            _ => return Err(DecodeError("unknown target")),
        };
        need(input, 1)?;
        let message = match input.get_u8() {
            0 => Message::try_text(Bytes::copy_from_slice(input))
                .map_err(|_| DecodeError("text is not utf-8"))?,
            1 => Message::binary(Bytes::copy_from_slice(input)),
            _ => return Err(DecodeError("unknown message kind")),
        };
        Ok(Self {
            origin,
            target,
            message,
        })
    }
}

/// One node's sessions and topic members at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePresence {
    /// The node.
    pub node: NodeId,
    /// How many sessions it has.
    pub sessions: usize,
    /// Each topic with members on the node, and their ids.
    pub topics: Vec<(String, Vec<SessionId>)>,
}

impl NodePresence {
    /// A compact wire form, for backends that store or send snapshots.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        out.put_u64(self.node.0);
        out.put_u64(self.sessions as u64);
        out.put_u32(u32::try_from(self.topics.len()).unwrap_or(u32::MAX));
        for (topic, ids) in &self.topics {
            out.put_u32(u32::try_from(topic.len()).unwrap_or(u32::MAX));
            out.put_slice(topic.as_bytes());
            out.put_u32(u32::try_from(ids.len()).unwrap_or(u32::MAX));
            for id in ids {
                out.put_u64(id.as_u64());
            }
        }
        out.freeze()
    }

    /// Reads a snapshot back; never panics on any input.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the bytes are not a snapshot of this version.
    pub fn decode(mut input: &[u8]) -> Result<Self, DecodeError> {
        fn need(input: &[u8], n: usize) -> Result<(), DecodeError> {
            if input.remaining() < n {
                Err(DecodeError("truncated"))
            } else {
                Ok(())
            }
        }
        need(input, 21)?;
        if input.get_u8() != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let node = NodeId(input.get_u64());
        let sessions =
            usize::try_from(input.get_u64()).map_err(|_| DecodeError("too many sessions"))?;
        let count = input.get_u32() as usize;
        let mut topics = Vec::new();
        for _ in 0..count {
            need(input, 4)?;
            let len = input.get_u32() as usize;
            need(input, len + 4)?;
            let topic = std::str::from_utf8(&input[..len])
                .map_err(|_| DecodeError("topic is not utf-8"))?
                .to_owned();
            input.advance(len);
            let members = input.get_u32() as usize;
            need(input, members.saturating_mul(8))?;
            let ids = (0..members)
                .map(|_| SessionId::from(input.get_u64()))
                .collect();
            topics.push((topic, ids));
        }
        Ok(Self {
            node,
            sessions,
            topics,
        })
    }
}
