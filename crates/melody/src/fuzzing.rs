//! Entry points for the fuzz targets in `fuzz/` (feature `__fuzz`). Not part of the API: hidden
//! from the docs, and free to change.

use crate::protocol::{deflate::Inflater, frames::FrameReader};

/// Whether the reader also reads compressed messages (permessage-deflate agreed).
#[derive(Clone, Copy, Debug)]
pub enum Deflate {
    /// Not agreed: RSV1 is a protocol error.
    Off,
    /// Agreed, each message inflated on its own.
    Alone,
    /// Agreed, the client's context kept between messages.
    Context,
}

/// Feeds `data` to a frame reader whole, and again in the chunks `cuts` cuts it into, and
/// checks that both read the same things: what a peer sent must not depend on how TCP split it.
/// Panics (for the fuzzer to find) when they differ, or when the reader panics.
pub fn frames(max_message: usize, deflate: Deflate, data: &[u8], cuts: &[u8]) {
    let whole = read(max_message, deflate, [data]);
    let mut chunks = Vec::new();
    let mut rest = data;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks.push(rest);
    let chunked = read(max_message, deflate, chunks);
    assert_eq!(whole, chunked, "the reading depends on the chunking");
}

fn read<'a>(
    max_message: usize,
    deflate: Deflate,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<String> {
    let reader = FrameReader::new(max_message);
    let mut reader = match deflate {
        Deflate::Off => reader,
        Deflate::Alone => reader.with_inflater(Inflater::default()),
        Deflate::Context => reader.with_inflater(Inflater::with_context()),
    };
    let mut items = Vec::new();
    for chunk in chunks {
        reader.feed(chunk);
        while let Some(item) = reader.pop() {
            items.push(format!("{item:?}"));
        }
        if reader.is_done() {
            break;
        }
    }
    items
}
