//! The frame reader with permessage-deflate agreed: compressed messages (RSV1 on the first
//! frame) are inflated, bounded on their inflated size, and checked as text afterwards.

use super::*;
use crate::protocol::deflate::{Deflater, Inflater, compress_alone};

const MASK: [u8; 4] = [0x0f, 0xa5, 0x3c, 0x71];

/// A masked client frame with RSV1 set as asked.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn read_with(reader: FrameReader, stream: &[u8], chunk: usize) -> Vec<String> {
    let mut reader = reader;
    let mut items = Vec::new();
    for part in stream.chunks(chunk.max(1)) {
        reader.feed(part);
        while let Some(item) = reader.pop() {
            items.push(match item {
                Inbound::Text(text) => format!("text {}", &*text),
                Inbound::Binary(bytes) => format!("binary {}", bytes.len()),
                Inbound::Violation(v) => format!("violation {v:?}"),
                other => format!("{other:?}"),
            });
        }
    }
    items
}

fn deflating(max: usize) -> FrameReader {
    FrameReader::new(max).with_inflater(Inflater::default())
}

#[test]
fn a_compressed_message_is_inflated_whatever_the_chunking() {
    let text = "hello hello hello hello hello hello";
    let compressed = compress_alone(text.as_bytes(), 6, 15).unwrap();
    let mut stream = frame(true, true, TEXT, &compressed);
    // Fragmented: RSV1 on the first frame only.
    let (a, b) = compressed.split_at(compressed.len() / 2);
    stream.extend(frame(false, true, TEXT, a));
    stream.extend(frame(true, false, CONTINUATION, b));
    // An uncompressed message between compressed ones.
    stream.extend(frame(true, false, BINARY, &[1, 2, 3]));
    for chunk in [1, 3, 7, 1000] {
        assert_eq!(
            read_with(deflating(1000), &stream, chunk),
            [
                format!("text {text}"),
                format!("text {text}"),
                "binary 3".into()
            ],
            "chunks of {chunk}"
        );
    }
}

#[test]
fn rsv1_is_refused_where_it_means_nothing() {
    let compressed = compress_alone(b"aaaaaaaaaaaaaaaa", 6, 15).unwrap();
    let refused = format!(
        "violation {:?}",
        Violation::Protocol(ProtocolError::ReservedBits)
    );
    // Without permessage-deflate agreed.
    let items = read_with(
        FrameReader::new(100),
        &frame(true, true, TEXT, &compressed),
        100,
    );
    assert_eq!(items, std::slice::from_ref(&refused));
    // On a continuation frame, on a control frame, and RSV2/RSV3 in any case.
    let mut continuation = frame(false, false, TEXT, b"ab");
    continuation.extend(frame(true, true, CONTINUATION, b"cd"));
    assert_eq!(
        read_with(deflating(100), &continuation, 100),
        std::slice::from_ref(&refused)
    );
    assert_eq!(
        read_with(deflating(100), &frame(true, true, PING, b""), 100),
        std::slice::from_ref(&refused)
    );
    let mut rsv2 = frame(true, false, TEXT, b"x");
    rsv2[0] |= 0x20;
    assert_eq!(read_with(deflating(100), &rsv2, 100), [refused]);
}

#[test]
fn the_size_limit_counts_the_inflated_size() {
    // 1 MiB of zeros deflates to about a kilobyte; a 64 KiB limit stops it at 1009.
    let bomb = compress_alone(&vec![0u8; 1 << 20], 9, 15).unwrap();
    let items = read_with(
        deflating(64 * 1024),
        &frame(true, true, BINARY, &bomb),
        4096,
    );
    assert_eq!(items.len(), 1);
    assert!(items[0].starts_with("violation TooBig"), "{items:?}");
    // At the limit exactly it is accepted.
    let exact = compress_alone(&vec![b'a'; 4096], 6, 15).unwrap();
    assert_eq!(
        read_with(deflating(4096), &frame(true, true, TEXT, &exact), 4096),
        [format!("text {}", "a".repeat(4096))]
    );
}

#[test]
fn text_is_checked_once_inflated_and_garbage_is_a_protocol_error() {
    let bad = compress_alone(
        &[b'a', 0xff, b'b', b'a', b'a', b'a', b'a', b'a', b'a', b'a'],
        6,
        15,
    )
    .unwrap();
    assert_eq!(
        read_with(deflating(100), &frame(true, true, TEXT, &bad), 100),
        [format!("violation {:?}", Violation::InvalidUtf8)]
    );
    assert_eq!(
        read_with(deflating(100), &frame(true, true, BINARY, &[0xff; 20]), 100),
        [format!(
            "violation {:?}",
            Violation::Protocol(ProtocolError::BadCompression)
        )]
    );
}

#[test]
fn a_client_context_carries_over_between_messages() {
    let mut deflater = Deflater::new(6, 15);
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend(frame(
            true,
            true,
            TEXT,
            &deflater.compress(b"the same words again"),
        ));
    }
    let reader = FrameReader::new(100).with_inflater(Inflater::with_context());
    assert_eq!(
        read_with(reader, &stream, 5),
        vec!["text the same words again"; 3]
    );
}
