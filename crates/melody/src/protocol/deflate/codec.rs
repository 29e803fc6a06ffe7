//! The DEFLATE transform of permessage-deflate (RFC 7692 section 7.2): a message's payload is
//! compressed with a sync flush and its trailing `00 00 ff ff` removed; the receiver appends
//! those four bytes back and inflates.
//!
//! Two ways to hold the state:
//! - **alone**: every message on its own (no context takeover). The compressor and the
//!   decompressor are borrowed from the thread, reset for each message; a session keeps
//!   nothing, and one compressed payload is valid for every session that agreed to the same
//!   window, which is what lets a broadcast compress once.
//! - **with context**: a session's own compressor or decompressor, kept between messages
//!   (better ratio for similar messages, at a cost in memory per session).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::negotiate::MAX_WINDOW_BITS;

/// What a sync flush ends with, removed on the wire and appended back before inflating.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than the limit; `len` is how much had been inflated when that was
    /// found (at most the limit plus one chunk).
    TooBig { len: usize },
    /// The payload is not valid DEFLATE data.
    Corrupt,
}

thread_local! {
    /// Compressors for messages compressed alone, by (level, window bits): a thread serves
    /// every session it runs, and a hub uses one setting.
    static ALONE: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// The decompressor for messages inflated alone (a full window reads any client's data).
    static INFLATE_ALONE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses `payload` on its own: the payload of a compressed frame, or `None` when
/// compressing does not make it smaller (it is then sent as it is).
pub(crate) fn compress_alone(payload: &[u8], level: u32, window_bits: u8) -> Option<Bytes> {
    ALONE.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let at = match compressors
            .iter()
            .position(|(l, w, _)| *l == level && *w == window_bits)
        {
            Some(at) => at,
            None => {
                let compress =
                    Compress::new_with_window_bits(Compression::new(level), false, window_bits);
                compressors.push((level, window_bits, compress));
                compressors.len() - 1
            }
        };
        let compress = &mut compressors[at].2;
        compress.reset();
        let out = deflate(compress, payload);
        (out.len() < payload.len()).then(|| Bytes::from(out))
    })
}

/// A session's own compressor, kept between messages (context takeover).
pub(crate) struct Deflater {
    compress: Compress,
}

impl Deflater {
    pub(crate) fn new(level: u32, window_bits: u8) -> Self {
        Self {
            compress: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
        }
    }

    /// Compresses the next message. Always compressed, even when that is not smaller: the
    /// peer's window must see every message this compressor saw.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        Bytes::from(deflate(&mut self.compress, payload))
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

/// Compresses with a sync flush and removes the flush's trailer.
fn deflate(compress: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        compress
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("compressing into a buffer with room cannot fail");
        let done = (compress.total_in() - start) as usize == payload.len();
        // A sync flush is complete once all input is in and the output did not fill up.
        if done && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    out
}

/// Inflates the messages of one session: alone (thread's decompressor, reset per message) or
/// with its own context.
#[derive(Default)]
pub(crate) struct Inflater {
    context: Option<Box<ContextInflate>>,
}

struct ContextInflate {
    decompress: Decompress,
    /// The peer ended its stream (a final block): the next message starts afresh.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("context", &self.context.is_some())
            .finish()
    }
}

impl Inflater {
    /// An inflater that keeps the client's context between messages.
    pub(crate) fn with_context() -> Self {
        Self {
            context: Some(Box::new(ContextInflate {
                decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
                ended: false,
            })),
        }
    }

    /// Inflates one message's payload, failing once it inflates to more than `max` bytes
    /// (counted on the inflated size: a small payload that inflates to gigabytes stops at the
    /// limit).
    pub(crate) fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<Bytes, InflateError> {
        match &mut self.context {
            Some(context) => {
                if std::mem::take(&mut context.ended) {
                    context.decompress.reset(false);
                }
                let (out, ended) = inflate(&mut context.decompress, compressed, max)?;
                context.ended = ended;
                Ok(out)
            }
            None => INFLATE_ALONE.with(|cell| {
                let mut cell = cell.borrow_mut();
                let decompress = cell.get_or_insert_with(|| {
                    Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)
                });
                decompress.reset(false);
                inflate(decompress, compressed, max).map(|(out, _)| out)
            }),
        }
    }
}

/// Inflates `compressed` plus the trailer; the output and whether the stream ended.
fn inflate(
    decompress: &mut Decompress,
    compressed: &[u8],
    max: usize,
) -> Result<(Bytes, bool), InflateError> {
    // Room for the limit plus one byte, so that going over it shows; never more.
    let room = max.saturating_add(1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(2).max(64).min(room));
    for mut input in [compressed, &TRAILER[..]] {
        loop {
            if out.len() == out.capacity() {
                let grow = out.len().max(4096).min(room - out.len());
                out.reserve_exact(grow);
            }
            let before = decompress.total_in();
            let status = decompress
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            input = &input[(decompress.total_in() - before) as usize..];
            if out.len() > max {
                return Err(InflateError::TooBig { len: out.len() });
            }
            match status {
                // What follows a final block (the trailer at most) is not DEFLATE data.
                Status::StreamEnd => return Ok((Bytes::from(out), true)),
                _ if input.is_empty() && out.len() < out.capacity() => break,
                // No input left to use and room left: nothing more will come out.
                Status::BufError if out.len() < out.capacity() => break,
                _ => {}
            }
        }
    }
    Ok((Bytes::from(out), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"{\"user\":\"alice\",\"text\":\"hello\"}"[i % 31])
            .collect()
    }

    #[test]
    fn compressed_alone_inflates_back() {
        for len in [1, 100, 4096, 100_000] {
            let data = sample(len);
            let Some(compressed) = compress_alone(&data, 1, 15) else {
                assert!(len < 16, "{len} bytes of JSON should compress");
                continue;
            };
            assert!(!compressed.ends_with(&TRAILER));
            let inflated = Inflater::default().inflate(&compressed, len).unwrap();
            assert_eq!(&inflated[..], &data[..]);
        }
    }

    #[test]
    fn incompressible_data_is_left_alone() {
        let mut state = 0x1234_5678_u32;
        let noise: Vec<u8> = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        assert_eq!(compress_alone(&noise, 6, 15), None);
    }

    #[test]
    fn context_takeover_round_trips_a_sequence() {
        let mut deflater = Deflater::new(6, 12);
        let mut inflater = Inflater::with_context();
        let mut sizes = Vec::new();
        for round in 0..5 {
            let data = sample(500 + round);
            let compressed = deflater.compress(&data);
            sizes.push(compressed.len());
            assert_eq!(
                &inflater.inflate(&compressed, 10_000).unwrap()[..],
                &data[..]
            );
        }
        // Later messages refer back to earlier ones: far smaller.
        assert!(sizes[4] < sizes[0] / 2, "{sizes:?}");
    }

    #[test]
    fn the_limit_counts_inflated_bytes() {
        let bomb = compress_alone(&vec![0u8; 10 * 1024 * 1024], 9, 15).unwrap();
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        match Inflater::default().inflate(&bomb, 64 * 1024) {
            Err(InflateError::TooBig { len }) => assert!(len <= 64 * 1024 + 4096 + 1, "{len}"),
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is fine.
        let exact = compress_alone(&vec![7u8; 5000], 6, 15).unwrap();
        assert_eq!(
            Inflater::default().inflate(&exact, 5000).unwrap().len(),
            5000
        );
        assert!(matches!(
            Inflater::default().inflate(&exact, 4999),
            Err(InflateError::TooBig { .. })
        ));
    }

    #[test]
    fn limits_below_the_first_allocation_hold() {
        // A limit smaller than the first buffer once panicked (found by fuzz/run.sh).
        let compressed = compress_alone(&sample(4096), 1, 15).unwrap();
        for max in [0, 1, 10, 63, 64] {
            match Inflater::default().inflate(&compressed, max) {
                Err(InflateError::TooBig { len }) => assert_eq!(len, max + 1),
                other => panic!("{max}: {other:?}"),
            }
        }
        let small = compress_alone(&[b'a'; 40], 1, 15).unwrap();
        assert_eq!(Inflater::default().inflate(&small, 40).unwrap().len(), 40);
        assert!(Inflater::default().inflate(&small, usize::MAX).is_ok());
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for garbage in [
            &[0xffu8; 16][..],
            &[0x07, 0x00],
            &[0x01, 0x05, 0x00, 0xfa, 0xff],
        ] {
            let result = Inflater::default().inflate(garbage, 1000);
            assert!(
                matches!(result, Err(InflateError::Corrupt) | Ok(_)),
                "{result:?}"
            );
        }
        assert_eq!(
            Inflater::default().inflate(&[0xff; 16], 1000),
            Err(InflateError::Corrupt)
        );
    }
}
