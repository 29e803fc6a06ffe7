//! A session's side of permessage-deflate: which of its outgoing messages go compressed, and
//! how their compressed payloads are made (shared with the other sessions of a broadcast, on
//! its own, or with the session's own context).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::{
    core::{compression::Compression, stats::Counters},
    protocol::{
        deflate::{Agreed, Deflater, Inflater, compress_alone},
        message::Message,
    },
};

/// What a session agreed to, for its writes.
pub(super) struct Outbound {
    level: u32,
    min_size: usize,
    /// The window agreed for this session.
    window_bits: u8,
    /// The session's own compressor, when it keeps context between messages.
    context: Option<Deflater>,
    /// Compressed payloads of the batch being written, by position (`None`: sent as is).
    pub(super) wire: Vec<Option<Bytes>>,
}

impl Outbound {
    /// The writer and the inflater for a session that agreed to `agreed` under `config`.
    pub(super) fn new(agreed: Agreed, config: &Compression) -> (Self, Inflater) {
        let level = config.compression_level();
        let context = (!agreed.server_no_context_takeover)
            .then(|| Deflater::new(level, agreed.server_window_bits));
        let inflater = if agreed.client_no_context_takeover {
            Inflater::default()
        } else {
            Inflater::with_context()
        };
        let outbound = Self {
            level,
            min_size: config.threshold(),
            window_bits: agreed.server_window_bits,
            context,
            wire: Vec::new(),
        };
        (outbound, inflater)
    }

    /// Compresses what in `batch` should go compressed, into [`Outbound::wire`], counting each
    /// compression in `counters`.
    pub(super) fn prepare(&mut self, batch: &VecDeque<Message>, counters: &Counters) {
        self.wire.clear();
        // Most batches of a chat are short messages: nothing to compress, nothing to record
        // (an empty `wire` sends every message as it is).
        if batch.iter().all(|message| message.len() < self.min_size) {
            return;
        }
        for message in batch {
            let compressed = self.compress(message, counters);
            self.wire.push(compressed);
        }
    }

    /// Lets go of the room a burst grew (called when the session pings).
    pub(super) fn shrink(&mut self) {
        self.wire = Vec::new();
    }

    fn compress(&mut self, message: &Message, counters: &Counters) -> Option<Bytes> {
        if message.len() < self.min_size {
            return None;
        }
        let payload = message.as_bytes();
        if let Some(deflater) = &mut self.context {
            counters.compressed();
            return Some(deflater.compress(payload));
        }
        let (level, window_bits) = (self.level, self.window_bits);
        let alone = || {
            counters.compressed();
            compress_alone(payload, level, window_bits)
        };
        // A broadcast's slot: compressed by the first session that writes it, then shared.
        match message
            .deflated()
            .and_then(|slot| slot.get_or_compress(window_bits, alone))
        {
            Some(shared) => shared,
            None => alone(),
        }
    }
}
