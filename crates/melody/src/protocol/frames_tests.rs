use proptest::prelude::*;

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: masked with `MASK`, length in the shortest form.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
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

fn read_all(max: usize, chunks: &[&[u8]]) -> Vec<Inbound> {
    let mut reader = FrameReader::new(max);
    let mut items = Vec::new();
    for chunk in chunks {
        reader.feed(chunk);
        while let Some(item) = reader.pop() {
            items.push(item);
        }
    }
    items
}

fn read(bytes: &[u8]) -> Vec<Inbound> {
    read_all(1 << 20, &[bytes])
}

fn violation(items: &[Inbound]) -> &Violation {
    match items.last() {
        Some(Inbound::Violation(error)) => error,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// A readable form of what was read, to compare runs.
fn describe(items: &[Inbound]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Inbound::Text(text) => format!("text {text:?}"),
            Inbound::Binary(bytes) => format!("binary {bytes:?}"),
            Inbound::Ping(bytes) => format!("ping {bytes:?}"),
            Inbound::Pong => "pong".to_owned(),
            Inbound::Close(frame) => format!("close {frame:?}"),
            Inbound::Violation(error) => format!("violation {error:?}"),
        })
        .collect()
}

#[test]
fn a_masked_text_frame_reads_as_text() {
    let items = read(&frame(true, TEXT, b"hello"));
    assert_eq!(describe(&items), ["text \"hello\""]);
}

#[test]
fn byte_by_byte_arrival_reads_the_same() {
    let mut stream = frame(false, TEXT, "héllo ".as_bytes());
    stream.extend(frame(true, PING, b"p"));
    stream.extend(frame(true, CONTINUATION, "wörld".as_bytes()));
    stream.extend(frame(true, BINARY, &[0u8; 300]));
    stream.extend(frame(true, CLOSE, &[0x03, 0xE8, b'o', b'k']));
    let whole = describe(&read(&stream));
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(describe(&read_all(1 << 20, &bytes)), whole);
    assert_eq!(whole.len(), 4, "{whole:?}");
    assert_eq!(whole[0], "ping b\"p\"");
    assert_eq!(whole[1], "text \"héllo wörld\"");
}

#[test]
fn lengths_use_all_three_forms() {
    for len in [0, 125, 126, 65_535, 65_536, 200_000] {
        let items = read(&frame(true, BINARY, &vec![7u8; len]));
        match &items[..] {
            [Inbound::Binary(bytes)] => {
                assert!(bytes.len() == len && bytes.iter().all(|&b| b == 7))
            }
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn unmasked_and_reserved_frames_are_violations() {
    let mut unmasked = frame(true, TEXT, b"x");
    unmasked[1] &= 0x7F;
    let mut reserved = frame(true, TEXT, b"x");
    reserved[0] |= 0x40;
    for bytes in [
        unmasked,
        reserved,
        frame(true, 0x3, b""),
        frame(true, 0xB, b""),
    ] {
        assert!(matches!(violation(&read(&bytes)), Violation::Protocol(_)));
        // Known from the first two bytes, before the rest of the header arrives.
        let items = read_all(1 << 20, &[&bytes[..2]]);
        assert!(matches!(violation(&items), Violation::Protocol(_)));
    }
}

#[test]
fn control_frames_must_be_whole_and_short() {
    let fragmented = frame(false, PING, b"");
    let long = frame(true, PING, &[0u8; 126]);
    for bytes in [fragmented, long] {
        assert!(matches!(violation(&read(&bytes)), Violation::Protocol(_)));
    }
}

#[test]
fn fragments_must_follow_the_message_order() {
    let orphan = frame(true, CONTINUATION, b"x");
    let mut interleaved = frame(false, TEXT, b"a");
    interleaved.extend(frame(true, BINARY, b"b"));
    for bytes in [orphan, interleaved] {
        assert!(matches!(violation(&read(&bytes)), Violation::Protocol(_)));
    }
}

#[test]
fn a_length_with_the_top_bit_set_is_a_violation() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend_from_slice(&MASK);
    assert!(matches!(violation(&read(&bytes)), Violation::Protocol(_)));
}

#[test]
fn an_oversized_message_fails_from_its_header() {
    let bytes = frame(true, BINARY, &[0u8; 11]);
    let items = read_all(10, &[&bytes[..8]]);
    assert!(matches!(
        violation(&items),
        Violation::TooBig { len: 11, max: 10 }
    ));
    // Across fragments too.
    let mut fragments = frame(false, BINARY, &[0u8; 6]);
    fragments.extend(frame(true, CONTINUATION, &[0u8; 6]));
    assert!(matches!(
        violation(&read_all(10, &[&fragments])),
        Violation::TooBig { len: 12, max: 10 }
    ));
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_byte() {
    let payload = b"valid then \xff and more to come";
    let bytes = frame(true, TEXT, payload);
    // Header (6 bytes) and the payload up to just after the bad byte; the frame is incomplete.
    let items = read_all(1 << 20, &[&bytes[..6 + 12]]);
    assert!(matches!(violation(&items), Violation::InvalidUtf8));
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut bytes = frame(false, TEXT, &euro[..1]);
    bytes.extend(frame(false, CONTINUATION, &euro[1..2]));
    bytes.extend(frame(true, CONTINUATION, &euro[2..]));
    assert_eq!(describe(&read(&bytes)), ["text \"€\""]);
    // But a message may not end inside one.
    let cut = frame(true, TEXT, &euro[..2]);
    assert!(matches!(violation(&read(&cut)), Violation::InvalidUtf8));
}

#[test]
fn close_payloads_are_validated() {
    let close = |payload: &[u8]| read(&frame(true, CLOSE, payload));
    assert_eq!(describe(&close(b"")), ["close None"]);
    let items = close(&[0x0F, 0xA0, b'b', b'y', b'e']);
    match &items[..] {
        [Inbound::Close(Some(frame))] => {
            assert_eq!((frame.code().as_u16(), frame.reason()), (4000, "bye"));
        }
        other => panic!("{other:?}"),
    }
    for code in [
        0u16,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2999,
        5000,
        u16::MAX,
    ] {
        let items = close(&code.to_be_bytes());
        assert!(
            matches!(violation(&items), Violation::Protocol(_)),
            "{code}"
        );
    }
    for code in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
        assert!(
            matches!(&close(&code.to_be_bytes())[..], [Inbound::Close(Some(_))]),
            "{code}"
        );
    }
    assert!(matches!(violation(&close(&[0x03])), Violation::Protocol(_)));
    assert!(matches!(
        violation(&close(&[0x03, 0xE8, 0xFF])),
        Violation::InvalidUtf8
    ));
}

#[test]
fn nothing_is_read_after_a_close() {
    let mut bytes = frame(true, CLOSE, b"");
    bytes.extend(frame(true, TEXT, b"late"));
    let mut reader = FrameReader::new(100);
    reader.feed(&bytes);
    assert!(matches!(reader.pop(), Some(Inbound::Close(None))));
    assert!(reader.pop().is_none());
    assert!(reader.is_done());
}

#[test]
fn unmasking_matches_the_definition_at_every_phase() {
    for phase in 0..4 {
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut bytes = original.clone();
            unmask(&mut bytes, MASK, phase);
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[(phase + i) % 4])
                .collect();
            assert_eq!(bytes, expected, "phase {phase}, len {len}");
        }
    }
}

#[test]
fn control_frames_are_encoded_unmasked() {
    let mut out = BytesMut::new();
    put_control(&mut out, Control::Pong, b"abc");
    put_control(&mut out, Control::Close, &[0x03, 0xE8]);
    assert_eq!(&out[..], &[0x8A, 3, b'a', b'b', b'c', 0x88, 2, 0x03, 0xE8]);
}

/// One message of a generated stream and how it is cut into frames.
#[derive(Debug, Clone)]
enum Sent {
    Text(String, usize),
    Binary(Vec<u8>, usize),
    Ping(Vec<u8>),
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        (any::<String>(), 1usize..5).prop_map(|(s, n)| Sent::Text(s, n)),
        (proptest::collection::vec(any::<u8>(), 0..300), 1usize..5)
            .prop_map(|(b, n)| Sent::Binary(b, n)),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Ping),
    ]
}

/// Cuts a payload into `parts` frames, with a ping between the first two when asked.
fn fragments(opcode: u8, payload: &[u8], parts: usize) -> Vec<u8> {
    let size = payload.len().div_ceil(parts).max(1);
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(size).collect()
    };
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let code = if i == 0 { opcode } else { CONTINUATION };
        out.extend(frame(i + 1 == pieces.len(), code, piece));
    }
    out
}

proptest! {
    #[test]
    fn any_stream_in_any_chunks_reads_back(
        messages in proptest::collection::vec(sent(), 0..12),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for message in &messages {
            match message {
                Sent::Text(text, parts) => {
                    stream.extend(fragments(TEXT, text.as_bytes(), *parts));
                    expected.push(format!("text {text:?}"));
                }
                Sent::Binary(bytes, parts) => {
                    stream.extend(fragments(BINARY, bytes, *parts));
                    expected.push(format!("binary {:?}", Bytes::from(bytes.clone())));
                }
                Sent::Ping(bytes) => {
                    stream.extend(frame(true, PING, bytes));
                    expected.push(format!("ping {:?}", Bytes::from(bytes.clone())));
                }
            }
        }
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        prop_assert_eq!(describe(&read_all(1 << 20, &chunks)), expected);
    }
}
