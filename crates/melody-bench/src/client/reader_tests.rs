use flate2::{Compress, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::client::inflate::tests::{alone, deflate};

/// A server frame (unmasked).
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(n as u8),
        n @ 126..=0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

const SHARED: Deflate = Deflate {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: None,
    client_max_window_bits: None,
};

fn pair(deflate: Option<Deflate>, cache: bool) -> (RawWs<DuplexStream>, DuplexStream) {
    let (client, server) = duplex(1 << 20);
    (
        RawWs::from_parts(client, BytesMut::new(), deflate, cache, 1),
        server,
    )
}

/// Reads one masked client frame from the server side: opcode and unmasked payload.
async fn client_frame(server: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 6];
    server.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0x80, "client frames are masked");
    let len = usize::from(head[1] & 0x7f);
    let mut payload = vec![0u8; len];
    server.read_exact(&mut payload).await.unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= head[2 + i % 4];
    }
    (head[0] & 0x0f, payload)
}

#[tokio::test]
async fn plain_frames_fragments_ping_and_close() {
    let (mut ws, mut server) = pair(None, false);
    let mut bytes = frame(true, false, 0x1, b"hello");
    bytes.extend(frame(false, false, 0x1, b"frag"));
    bytes.extend(frame(true, false, 0x9, b"p1"));
    bytes.extend(frame(true, false, 0x0, b"mented"));
    bytes.extend(frame(true, false, 0x2, &[0u8; 300]));
    bytes.extend(frame(true, false, 0x8, &[0x03, 0xe8]));
    server.write_all(&bytes).await.unwrap();

    let m = ws.next().await.unwrap().unwrap();
    assert_eq!(
        (m.kind, &m.payload[..], m.wire_len),
        (Kind::Text, &b"hello"[..], 5)
    );
    // A ping in the middle of a fragmented message comes out first.
    let ping = ws.next().await.unwrap().unwrap();
    assert_eq!(ping.kind, Kind::Ping);
    let m = ws.next().await.unwrap().unwrap();
    assert_eq!((m.kind, &m.payload[..]), (Kind::Text, &b"fragmented"[..]));
    assert_eq!(client_frame(&mut server).await, (0xA, b"p1".to_vec()));
    let m = ws.next().await.unwrap().unwrap();
    assert_eq!(
        (m.kind, m.payload.len(), m.wire_len),
        (Kind::Binary, 300, 300)
    );
    assert_eq!(ws.next().await.unwrap().unwrap().kind, Kind::Close);
    assert!(ws.next().await.is_none());
    assert_eq!(client_frame(&mut server).await, (0x8, vec![0x03, 0xe8]));
    assert_eq!(ws.counters(), RawCounters::default());
}

#[tokio::test]
async fn compressed_messages_alone_with_the_cache() {
    let (mut ws, mut server) = pair(Some(SHARED), true);
    let text = r#"{"user":"ana","text":"hello hello hello hello"}"#.repeat(20);
    let c = alone(text.as_bytes());
    let mut bytes = frame(true, true, 0x1, &c);
    bytes.extend(frame(true, true, 0x1, &c));
    // Fragmented: RSV1 on the first frame only.
    let (a, b) = c.split_at(c.len() / 2);
    bytes.extend(frame(false, true, 0x1, a));
    bytes.extend(frame(true, false, 0x0, b));
    // Uncompressed messages stay allowed.
    bytes.extend(frame(true, false, 0x1, b"short"));
    server.write_all(&bytes).await.unwrap();
    for _ in 0..3 {
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.payload, text.as_bytes());
        assert!(m.compressed);
        assert_eq!(m.wire_len, c.len());
        assert!(m.wire_len * 5 < m.payload.len());
    }
    let m = ws.next().await.unwrap().unwrap();
    assert!(!m.compressed && m.payload == b"short"[..]);
    let counters = ws.counters();
    assert_eq!(counters.inflated + counters.cache_hits, 3);
    assert!(counters.cache_hits >= 2, "{counters:?}");
}

#[tokio::test]
async fn compressed_messages_with_context() {
    let context = Deflate {
        server_no_context_takeover: false,
        ..SHARED
    };
    let (mut ws, mut server) = pair(Some(context), true);
    let mut compress = Compress::new(Compression::new(1), false);
    let texts: Vec<String> = (0..4)
        .map(|i| format!("message {i}: ").repeat(30))
        .collect();
    for t in &texts {
        let c = deflate(&mut compress, t.as_bytes());
        server.write_all(&frame(true, true, 0x1, &c)).await.unwrap();
    }
    for t in &texts {
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.payload, t.as_bytes());
    }
    assert_eq!(ws.counters().inflated, 4);
    assert_eq!(ws.counters().cache_hits, 0);
}

#[tokio::test]
async fn protocol_errors_are_errors() {
    for bad in [
        frame(true, true, 0x1, &alone(b"x".repeat(300).as_slice())), // RSV1, no deflate agreed
        vec![0x81, 0x81, 0, 0, 0, 0, b'x'],                          // masked server frame
        frame(true, false, 0x0, b"x"),                               // stray continuation
        frame(true, false, 0x3, b"x"),                               // unknown opcode
        frame(false, false, 0x9, b"x"),                              // fragmented ping
        frame(true, false, 0x1, &[0xff, 0xfe]),                      // text not UTF-8
    ] {
        let (mut ws, mut server) = pair(None, false);
        server.write_all(&bad).await.unwrap();
        assert!(ws.next().await.unwrap().is_err(), "{bad:?}");
    }
    let (mut ws, server) = pair(None, false);
    drop(server);
    assert!(
        ws.next().await.is_none(),
        "a clean end of stream ends the messages"
    );
}

#[tokio::test]
async fn handshake_offers_and_reads_the_agreement() {
    let (client, mut server) = duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut req = Vec::new();
        while !req.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            server.read_exact(&mut b).await.unwrap();
            req.push(b[0]);
        }
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("permessage-deflate; client_max_window_bits"));
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_no_context_takeover; client_no_context_takeover\r\n\r\n",
            handshake::accept_key(key)
        )
        .into_bytes();
        // The first frame in the same write as the response.
        answer.extend(frame(
            true,
            true,
            0x1,
            &alone(b"abc".repeat(100).as_slice()),
        ));
        server.write_all(&answer).await.unwrap();
        server
    });
    let options = RawOptions {
        offer_deflate: true,
        inflate_cache: false,
    };
    let mut ws = RawWs::connect(client, "127.0.0.1:1", "/ws?x=1", options)
        .await
        .unwrap();
    assert_eq!(ws.deflate(), Some(SHARED));
    let m = ws.next().await.unwrap().unwrap();
    assert_eq!(m.payload, b"abc".repeat(100));
    drop(server.await.unwrap());
}
