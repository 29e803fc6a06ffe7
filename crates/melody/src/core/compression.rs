//! [`Compression`]: whether and how sessions use permessage-deflate (RFC 7692).

use crate::protocol::deflate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, Policy};

/// permessage-deflate settings of a hub ([`Config::compression`](crate::Config::compression)).
///
/// Off by default. When on, a session compresses if its client offers permessage-deflate
/// (every browser does); other clients are served uncompressed on the same hub.
///
/// | mode | what it costs | use it for |
/// |---|---|---|
/// | [`shared`](Self::shared) | a message sent to many sessions is compressed **once**, and the one compressed frame goes to every session; no compression memory per session (each worker thread keeps one compressor, about 370 KiB, and one decompressor, 46 KiB) | broadcasts, topics, chat, feeds |
/// | [`dedicated`](Self::dedicated) | each session keeps a compressor (about 370 KiB at the default 15-bit window, 245 KiB at 9 bits) and a decompressor (46 KiB), and compresses what it sends itself | few sessions exchanging long similar messages (better ratio: each message refers back to the last ones) |
///
/// Messages shorter than [`min_size`](Self::min_size) (default 256 bytes) go out as they are,
/// and so does a message that compression would not make smaller (shared mode). Inbound
/// compressed messages count against [`Config::max_message_size`](crate::Config) by their
/// **inflated** size: a small message that inflates to gigabytes is stopped at the limit
/// (1009), having inflated at most the limit.
///
/// ```
/// use melody::{Compression, Config};
///
/// let config = Config::default().compression(Compression::shared());
/// let fast = Config::default().compression(Compression::shared().level(1).min_size(1024));
/// ```
///
/// Compression makes what a page sends guessable from the compressed size when secrets and
/// attacker-chosen text share a message (the CRIME and BREACH attacks on TLS): keep tokens out
/// of messages that also carry text a third party controls, or leave compression off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    mode: Mode,
    level: u32,
    min_size: usize,
    window_bits: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Shared,
    Dedicated,
}

impl Default for Compression {
    fn default() -> Self {
        Self::disabled()
    }
}

impl Compression {
    /// No compression: permessage-deflate offers are not answered (the default).
    #[must_use]
    pub const fn disabled() -> Self {
        Self {
            mode: Mode::Off,
            level: 1,
            min_size: 256,
            window_bits: MAX_WINDOW_BITS,
        }
    }

    /// Every message compressed on its own (`server_no_context_takeover`), and clients asked
    /// to do the same (`client_no_context_takeover`): one compression per message however
    /// many sessions it goes to, and no compression state kept per session. Browsers and
    /// most clients accept that answer; a client configured to insist on keeping its own
    /// context (Node `ws` with `clientNoContextTakeover: false`) fails the handshake and needs
    /// a [`dedicated`](Self::dedicated) hub.
    #[must_use]
    pub const fn shared() -> Self {
        Self {
            mode: Mode::Shared,
            ..Self::disabled()
        }
    }

    /// A compressor and a decompressor per session, each keeping its context between
    /// messages: a better ratio for a stream of similar messages, at the memory cost in the
    /// table above, and one compression per session for a broadcast.
    #[must_use]
    pub const fn dedicated() -> Self {
        Self {
            mode: Mode::Dedicated,
            ..Self::disabled()
        }
    }

    /// The DEFLATE level, 0 (store) to 9 (smallest, slowest); default 1, which takes most of
    /// the saving on JSON at a fraction of the time of level 6.
    #[must_use]
    pub const fn level(mut self, level: u32) -> Self {
        self.level = if level > 9 { 9 } else { level };
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed; default 256.
    #[must_use]
    pub const fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The largest LZ77 window the server compresses with, as a power of two: 9 (512 bytes)
    /// to 15 (32 KiB, the default). Smaller windows cost less memory per compressor and
    /// compress less; a client may ask for a smaller one still.
    #[must_use]
    pub const fn window_bits(mut self, bits: u8) -> Self {
        self.window_bits = if bits < MIN_WINDOW_BITS {
            MIN_WINDOW_BITS
        } else if bits > MAX_WINDOW_BITS {
            MAX_WINDOW_BITS
        } else {
            bits
        };
        self
    }

    /// Whether offers are answered at all.
    #[must_use]
    pub const fn is_enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// Whether each session keeps its own compression contexts.
    #[must_use]
    pub const fn is_dedicated(&self) -> bool {
        matches!(self.mode, Mode::Dedicated)
    }

    /// The configured level.
    #[must_use]
    pub const fn compression_level(&self) -> u32 {
        self.level
    }

    /// The configured threshold in bytes.
    #[must_use]
    pub const fn threshold(&self) -> usize {
        self.min_size
    }

    /// The configured window, in bits.
    #[must_use]
    pub const fn max_window_bits(&self) -> u8 {
        self.window_bits
    }

    /// What the negotiation may agree to, `None` when compression is off.
    pub(crate) fn policy(&self) -> Option<Policy> {
        let context = match self.mode {
            Mode::Off => return None,
            Mode::Shared => false,
            Mode::Dedicated => true,
        };
        Some(Policy {
            window_bits: self.window_bits,
            server_context: context,
            client_context: context,
        })
    }
}
