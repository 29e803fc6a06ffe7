//! permessage-deflate from the wire: what the handshake answers, compressed frames both ways,
//! one compression per broadcast, the inflated-size limit, and refusals. The client here is a
//! raw socket that builds and reads frames itself (with flate2, as any RFC 7692 peer would);
//! interoperability with a real client (Node's `ws`) and browsers is in `deflate_interop.rs`
//! and `browser.rs`.

mod common;

use std::net::SocketAddr;

use common::*;
use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};
use melody::{Compression, Config, Melody};

/// Offers permessage-deflate the way browsers do.
const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A compressor on the client side (messages compressed alone unless `context`).
struct ClientDeflate {
    compress: Compress,
    context: bool,
}

impl ClientDeflate {
    fn new(context: bool) -> Self {
        Self {
            compress: Compress::new(Level::new(6), false),
            context,
        }
    }

    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.context {
            self.compress.reset();
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        let start = self.compress.total_in();
        loop {
            let used = (self.compress.total_in() - start) as usize;
            out.reserve(256);
            self.compress
                .compress_vec(&data[used..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.compress.total_in() - start) as usize == data.len()
                && out.len() < out.capacity()
            {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflates what the server sent; `context` keeps the window between messages.
struct ClientInflate(Decompress);

impl ClientInflate {
    fn new() -> Self {
        Self(Decompress::new(false))
    }

    fn inflate(&mut self, data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 16);
        let start = self.0.total_in();
        loop {
            let used = (self.0.total_in() - start) as usize;
            if used == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(1 << 16);
            self.0
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .unwrap();
        }
    }
}

/// The `Sec-WebSocket-Extensions` answer in a response head.
fn extensions(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

/// An echo hub with `compression`, messages up to `max` bytes.
async fn echo(compression: Compression, max: usize) -> (Melody, SocketAddr) {
    let melody = Melody::with_config(
        Config::default()
            .compression(compression)
            .max_message_size(max),
    );
    melody.on_text(|session, text| {
        let _ = session.send(text);
    });
    melody.on_binary(|session, bytes| {
        let _ = session.send(melody::Message::binary(bytes));
    });
    let addr = spawn_app(&melody).await;
    (melody, addr)
}

fn json(len: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < len {
        out.push_str(&format!(
            "{{\"user\":\"user{}\",\"text\":\"hello there\"}},",
            i % 7
        ));
        i += 1;
    }
    out.truncate(len);
    out
}

#[tokio::test]
async fn the_handshake_answers_offers_as_the_mode_says() {
    let (_, off) = echo(Compression::disabled(), 1 << 16).await;
    let (_, head) = Raw::connect_with(off, BROWSER_OFFER).await;
    assert_eq!(extensions(&head), None, "compression off answers nothing");

    let (_, shared) = echo(Compression::shared(), 1 << 16).await;
    let (_, head) = Raw::connect_with(shared, BROWSER_OFFER).await;
    assert_eq!(
        extensions(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let (_, head) = Raw::connect_with(shared, "").await;
    assert_eq!(extensions(&head), None, "no offer, no answer");
    // An offer the server cannot serve is declined; the next one is taken.
    let (_, head) = Raw::connect_with(
        shared,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, \
         permessage-deflate; server_max_window_bits=10\r\n",
    )
    .await;
    assert!(
        extensions(&head)
            .unwrap()
            .ends_with("server_max_window_bits=10"),
        "{head}"
    );

    let (_, dedicated) = echo(Compression::dedicated(), 1 << 16).await;
    let (_, head) = Raw::connect_with(dedicated, BROWSER_OFFER).await;
    assert_eq!(extensions(&head).as_deref(), Some("permessage-deflate"));
}

#[tokio::test]
async fn compressed_messages_go_both_ways_and_small_ones_stay_plain() {
    let (melody, addr) = echo(Compression::shared(), 1 << 20).await;
    let (mut raw, _) = Raw::connect_with(addr, BROWSER_OFFER).await;
    let mut deflate = ClientDeflate::new(false);
    let mut inflate = ClientInflate::new();
    for len in [300, 4096, 100_000] {
        let text = json(len);
        raw.send_frame(0xC1, &deflate.compress(text.as_bytes()))
            .await; // FIN, RSV1, text
        let (first_byte, payload) = raw.read_whole_frame().await;
        assert_eq!(first_byte, 0xC1, "the echo comes back compressed");
        assert!(payload.len() < len / 3, "{} of {len}", payload.len());
        assert_eq!(inflate.inflate(&payload), text.as_bytes());
    }
    // Under the 256-byte threshold: plain, also when the client compressed it.
    raw.send_frame(0xC2, &deflate.compress(b"tiny binary"))
        .await;
    assert_eq!(
        raw.read_whole_frame().await,
        (0x82, b"tiny binary".to_vec())
    );
    // A plain message from a compressing client is fine too.
    raw.send_frame(0x81, json(400).as_bytes()).await;
    let (first_byte, payload) = raw.read_whole_frame().await;
    assert_eq!(first_byte, 0xC1);
    assert_eq!(inflate.inflate(&payload), json(400).as_bytes());

    let stats = melody.stats();
    assert_eq!(stats.compressions, 4);
    assert!(stats.wire_bytes_out * 3 < stats.bytes_out, "{stats:?}");
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_for_every_session() {
    let melody = Melody::with_config(Config::default().compression(Compression::shared()));
    let addr = spawn_app(&melody).await;
    let mut compressing = Vec::new();
    for _ in 0..5 {
        compressing.push(Raw::connect_with(addr, BROWSER_OFFER).await.0);
    }
    let (mut plain, _) = Raw::connect_with(addr, "").await;
    eventually(|| melody.all().len() == 6).await;

    let text = json(4096);
    assert_eq!(melody.all().send(text.clone()).unwrap(), 6);
    let mut frames = Vec::new();
    for raw in &mut compressing {
        let (first_byte, payload) = raw.read_whole_frame().await;
        assert_eq!(first_byte, 0xC1);
        assert_eq!(ClientInflate::new().inflate(&payload), text.as_bytes());
        frames.push(payload);
    }
    assert!(
        frames.windows(2).all(|pair| pair[0] == pair[1]),
        "one compressed frame for all"
    );
    assert_eq!(plain.read_whole_frame().await, (0x81, text.into_bytes()));
    eventually(|| melody.stats().messages_out == 6).await;
    assert_eq!(melody.stats().compressions, 1, "compressed once");
}

#[tokio::test]
async fn dedicated_sessions_keep_their_context() {
    let (melody, addr) = echo(Compression::dedicated(), 1 << 20).await;
    let (mut raw, head) = Raw::connect_with(addr, BROWSER_OFFER).await;
    assert_eq!(extensions(&head).as_deref(), Some("permessage-deflate"));
    // Both sides keep their window: later messages refer back to earlier ones.
    let mut deflate = ClientDeflate::new(true);
    let mut inflate = ClientInflate::new();
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let text = json(2000);
        raw.send_frame(0xC1, &deflate.compress(text.as_bytes()))
            .await;
        let (first_byte, payload) = raw.read_whole_frame().await;
        assert_eq!(first_byte, 0xC1);
        sizes.push(payload.len());
        assert_eq!(inflate.inflate(&payload), text.as_bytes());
    }
    assert!(sizes[3] * 2 < sizes[0], "context takeover: {sizes:?}");
    assert_eq!(melody.stats().compressions, 4);
}

#[tokio::test]
async fn the_limit_counts_inflated_bytes_and_bad_data_is_refused() {
    // 16 MiB of zeros compress to about 16 KiB; the limit is 64 KiB.
    let (melody, addr) = echo(Compression::shared(), 64 * 1024).await;
    let (mut raw, _) = Raw::connect_with(addr, BROWSER_OFFER).await;
    let bomb = ClientDeflate::new(false).compress(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    raw.send_frame(0xC2, &bomb).await;
    assert_eq!(raw.read_close_code().await, 1009);
    eventually(|| melody.stats().rejections.too_big == 1).await;

    let (mut raw, _) = Raw::connect_with(addr, BROWSER_OFFER).await;
    raw.send_frame(0xC2, &[0xff; 40]).await;
    assert_eq!(raw.read_close_code().await, 1002);

    // Inflated text is checked as UTF-8.
    let (mut raw, _) = Raw::connect_with(addr, BROWSER_OFFER).await;
    let mut bad = json(300).into_bytes();
    bad[100] = 0xff;
    raw.send_frame(0xC1, &ClientDeflate::new(false).compress(&bad))
        .await;
    assert_eq!(raw.read_close_code().await, 1007);

    // RSV1 without the extension agreed is a protocol error.
    let (mut raw, _) = Raw::connect_with(addr, "").await;
    raw.send_frame(0xC1, &ClientDeflate::new(false).compress(b"hello"))
        .await;
    assert_eq!(raw.read_close_code().await, 1002);
}
