//! Inflating permessage-deflate messages (RFC 7692 section 7.2.2): append `00 00 ff ff` to
//! the message's payload and inflate it as raw DEFLATE data.
//!
//! - **With context** (the server did not agree to `server_no_context_takeover`): the
//!   connection keeps its own decompressor between messages, as the server's compressor refers
//!   back to earlier messages.
//! - **Alone** (`server_no_context_takeover`, melody's shared mode): every message inflates on
//!   its own with the thread's decompressor, reset each time, and the connection keeps nothing.
//!   Then the output depends on the payload only, so a payload identical to one inflated
//!   moments ago (the same broadcast, read by the next subscriber) can be looked up instead of
//!   inflated again: a cache per thread of the last [`CACHE_ENTRIES`] distinct payloads,
//!   compared byte for byte. That keeps one generator core ahead of a server that compresses a
//!   broadcast once; `--inflate-every` turns it off to inflate every delivery, as a browser
//!   does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

/// What a sync flush ends with; removed by the sender, appended back here.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest window; a decompressor with it reads data compressed with any smaller one.
const WINDOW_BITS: u8 = 15;

/// Distinct payloads the per-thread cache keeps (alone mode), oldest out first: more than the
/// messages in flight at once (the fan-out window is 64 per publisher).
pub const CACHE_ENTRIES: usize = 1024;

/// One inflated message.
#[derive(Debug, Clone)]
pub struct Inflated {
    /// The message as sent.
    pub data: Bytes,
    /// Taken from the cache (an identical payload was inflated before), not inflated now.
    pub cached: bool,
}

/// The inflate side of one connection's permessage-deflate session.
pub struct Inflater {
    /// The connection's own decompressor, when the server keeps its context.
    context: Option<Box<Context>>,
    cache: bool,
}

struct Context {
    decompress: Decompress,
    /// The server ended its DEFLATE stream (a final block): the next message starts afresh.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("context", &self.context.is_some())
            .field("cache", &self.cache)
            .finish()
    }
}

/// The thread's decompressor and cache for messages inflated alone.
struct Alone {
    decompress: Decompress,
    cache: Cache,
}

/// The last [`CACHE_ENTRIES`] distinct payloads inflated, by a hash of a sample of their
/// bytes; a hit is confirmed by comparing every byte.
#[derive(Default)]
struct Cache {
    index: HashMap<u64, usize, BuildHasherDefault<KeyHasher>>,
    entries: Vec<Entry>,
    /// The entry replaced next, once all are in use.
    next: usize,
}

/// The keys are hashes already: used as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

struct Entry {
    key: u64,
    compressed: Vec<u8>,
    data: Bytes,
}

impl Cache {
    fn get(&self, key: u64, compressed: &[u8]) -> Option<Bytes> {
        let e = &self.entries[*self.index.get(&key)?];
        (e.compressed == compressed).then(|| e.data.clone())
    }

    fn put(&mut self, key: u64, compressed: &[u8], data: Bytes) {
        if self.entries.len() < CACHE_ENTRIES {
            self.index.insert(key, self.entries.len());
            self.entries.push(Entry {
                key,
                compressed: compressed.to_vec(),
                data,
            });
            return;
        }
        let at = self.next;
        self.next = (at + 1) % CACHE_ENTRIES;
        let e = &mut self.entries[at];
        if self.index.get(&e.key) == Some(&at) {
            self.index.remove(&e.key);
        }
        e.key = key;
        e.compressed.clear();
        e.compressed.extend_from_slice(compressed);
        e.data = data;
        self.index.insert(key, at);
    }
}

thread_local! {
    static ALONE: RefCell<Option<Alone>> = const { RefCell::new(None) };
}

impl Inflater {
    /// An inflater for a session in which the server keeps its context between messages
    /// (`context`) or compresses each alone; `cache` allows the per-thread cache (alone only).
    pub fn new(context: bool, cache: bool) -> Self {
        Self {
            context: context.then(|| {
                Box::new(Context {
                    decompress: Decompress::new_with_window_bits(false, WINDOW_BITS),
                    ended: false,
                })
            }),
            cache,
        }
    }

    /// Whether this session keeps a decompressor of its own.
    pub fn has_context(&self) -> bool {
        self.context.is_some()
    }

    /// Inflates one message's payload (all its frames' payloads, concatenated).
    ///
    /// # Errors
    ///
    /// Fails when the payload is not valid DEFLATE data or inflates to more than `max` bytes.
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> io::Result<Inflated> {
        if let Some(context) = &mut self.context {
            if std::mem::take(&mut context.ended) {
                context.decompress.reset(false);
            }
            let (data, ended) = inflate(&mut context.decompress, compressed, max)?;
            context.ended = ended;
            return Ok(Inflated {
                data,
                cached: false,
            });
        }
        let cache = self.cache;
        ALONE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let alone = cell.get_or_insert_with(|| Alone {
                decompress: Decompress::new_with_window_bits(false, WINDOW_BITS),
                cache: Cache::default(),
            });
            let key = cache.then(|| sample_hash(compressed));
            if let Some(data) = key.and_then(|k| alone.cache.get(k, compressed)) {
                return Ok(Inflated { data, cached: true });
            }
            alone.decompress.reset(false);
            let (data, _) = inflate(&mut alone.decompress, compressed, max)?;
            if let Some(key) = key {
                alone.cache.put(key, compressed, data.clone());
            }
            Ok(Inflated {
                data,
                cached: false,
            })
        })
    }
}

/// A hash of a payload's length and of 16 bytes at its start, middle and end (a collision
/// only costs an inflate: entries are compared byte for byte).
fn sample_hash(b: &[u8]) -> u64 {
    // Eight bytes from `at`, zero-padded past the end.
    let word = |at: usize| {
        let mut w = [0u8; 8];
        let part = b.get(at..).unwrap_or_default();
        let n = part.len().min(8);
        w[..n].copy_from_slice(&part[..n]);
        u64::from_le_bytes(w)
    };
    let mid = (b.len() / 2).saturating_sub(8);
    let end = b.len().saturating_sub(16);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ b.len() as u64;
    for at in [0, 8, mid, mid + 8, end, end + 8] {
        h = (h ^ word(at))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    h
}

fn corrupt(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("inflate: {e}"))
}

/// Inflates `compressed` followed by the trailer; the output and whether the DEFLATE stream
/// ended (a final block).
fn inflate(
    decompress: &mut Decompress,
    compressed: &[u8],
    max: usize,
) -> io::Result<(Bytes, bool)> {
    let capacity = compressed.len().saturating_mul(4).max(256);
    let mut out: Vec<u8> = Vec::with_capacity(capacity.min(max.saturating_add(1)));
    for mut input in [compressed, &TRAILER[..]] {
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(corrupt(format!("message over {max} bytes")));
                }
                out.reserve(out.len().min(max + 1 - out.len()).max(256));
            }
            let before = decompress.total_in();
            let status = decompress
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(corrupt)?;
            input = &input[(decompress.total_in() - before) as usize..];
            if out.len() > max {
                return Err(corrupt(format!("message over {max} bytes")));
            }
            match status {
                // What follows a final block (the trailer at most) is not DEFLATE data.
                Status::StreamEnd => return Ok((Bytes::from(out), true)),
                // All input used and room left: this part is done.
                _ if input.is_empty() && out.len() < out.capacity() => break,
                // No progress possible with room left: nothing more will come out.
                Status::BufError if out.len() < out.capacity() => break,
                _ => {}
            }
        }
    }
    Ok((Bytes::from(out), false))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses like a permessage-deflate sender: sync flush, trailer removed.
    pub(crate) fn deflate(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let start = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            compress
                .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (compress.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&TRAILER));
        out.truncate(out.len() - 4);
        out
    }

    pub(crate) fn alone(data: &[u8]) -> Vec<u8> {
        deflate(&mut Compress::new(Compression::new(1), false), data)
    }

    #[test]
    fn alone_messages_inflate_and_repeat_from_the_cache() {
        let a = b"hello hello hello hello hello hello, world".repeat(20);
        let b = b"another message, another message".repeat(30);
        let (ca, cb) = (alone(&a), alone(&b));
        let mut inflater = Inflater::new(false, true);
        let first = inflater.inflate(&ca, 1 << 20).unwrap();
        assert_eq!(&first.data[..], &a[..]);
        assert!(!first.cached);
        let again = Inflater::new(false, true).inflate(&ca, 1 << 20).unwrap();
        assert!(again.cached);
        assert_eq!(&again.data[..], &a[..]);
        assert_eq!(&inflater.inflate(&cb, 1 << 20).unwrap().data[..], &b[..]);
        // The oldest entries make room for new ones.
        for i in 0..CACHE_ENTRIES + 1 {
            let c = alone(format!("message {i} message {i} message {i}").as_bytes());
            assert!(!inflater.inflate(&c, 1 << 20).unwrap().cached);
        }
        assert!(!inflater.inflate(&ca, 1 << 20).unwrap().cached);
        assert!(inflater.inflate(&ca, 1 << 20).unwrap().cached);
        // Without the cache, every message is inflated.
        let mut every = Inflater::new(false, false);
        assert!(!every.inflate(&ca, 1 << 20).unwrap().cached);
        assert!(!every.inflate(&ca, 1 << 20).unwrap().cached);
    }

    #[test]
    fn context_takeover_is_followed() {
        let mut compress = Compress::new(Compression::new(6), false);
        let mut inflater = Inflater::new(true, true);
        assert!(inflater.has_context());
        let msgs: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                format!("{{\"n\":{i},\"text\":\"the same words again and again\"}}").into_bytes()
            })
            .collect();
        let mut sizes = Vec::new();
        for m in &msgs {
            let c = deflate(&mut compress, m);
            sizes.push(c.len());
            let got = inflater.inflate(&c, 1 << 20).unwrap();
            assert_eq!(&got.data[..], &m[..]);
            assert!(!got.cached);
        }
        // Later messages refer back to earlier ones: smaller than the first.
        assert!(sizes[4] < sizes[0], "{sizes:?}");
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        let big = vec![b'a'; 100_000];
        let c = alone(&big);
        assert!(Inflater::new(false, false).inflate(&c, 99_999).is_err());
        assert_eq!(
            Inflater::new(false, false)
                .inflate(&c, 100_000)
                .unwrap()
                .data
                .len(),
            100_000
        );
        assert!(
            Inflater::new(false, false)
                .inflate(&[0xff, 0xff, 0xff], 1000)
                .is_err()
        );
    }
}
