//! The generator's permessage-deflate client against melody's shared compression: every
//! subscriber negotiates, every delivery of a large message arrives compressed and inflates to
//! what was sent, and the bytes on the wire show the saving.

use std::time::Duration;

use axum::{Router, routing::any};
use melody::{Compression, Config, Melody};
use melody_bench::payload::Payload;
use melody_bench::{fanout, idle};
use tokio::net::TcpListener;

/// A chat hub (every text message to everyone) with shared compression; returns its URL.
async fn start_chat() -> String {
    let config = Config::default()
        .compression(Compression::shared())
        .max_message_size(64 * 1024);
    let melody = Melody::with_config(config);
    melody.on_text(|session, text| {
        let _ = session.melody().all().send(text);
    });
    let app = Router::new().route("/ws", any(melody.handler()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { melody::serve(listener, app).await });
    format!("ws://{addr}/ws")
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("load generator run timed out")
}

fn opts(url: String) -> fanout::FanoutOptions {
    let mut opts = fanout::FanoutOptions::new(url);
    opts.subscribers = 20;
    opts.publishers = 2;
    opts.messages = 200;
    opts.size = 2048;
    opts.payload = Payload::Json;
    opts.timeout = Duration::from_secs(20);
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_fanout_delivers_everything_smaller() {
    let url = start_chat().await;
    let mut o = opts(url);
    o.deflate = true;
    let r = bounded(fanout::run(&o)).await.unwrap();
    let s = r.summary();
    assert_eq!(r.compressed_subscribers, 20, "{s}");
    assert_eq!((r.deliveries, r.lost, r.duplicated), (4000, 0, 0), "{s}");
    assert_eq!(r.compressed_deliveries, 4000, "{s}");
    assert_eq!(r.message_bytes, 4000 * 2048, "{s}");
    let ratio = r.compression_ratio.unwrap();
    assert!((2.5..=6.0).contains(&ratio), "{s}");
    assert!(r.wire_bytes_per_delivery < 2048.0 / 2.5, "{s}");
    // Each distinct broadcast inflated about once, the copies found in the cache.
    assert_eq!(r.inflations + r.inflate_cache_hits, 4000, "{s}");
    assert!(r.inflations < 1000, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflate_every_inflates_every_delivery() {
    let url = start_chat().await;
    let mut o = opts(url);
    o.deflate = true;
    o.inflate_cache = false;
    let r = bounded(fanout::run(&o)).await.unwrap();
    assert_eq!(r.deliveries, 4000, "{}", r.summary());
    assert_eq!(
        (r.inflations, r.inflate_cache_hits),
        (4000, 0),
        "{}",
        r.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_twin_and_small_messages_are_not_compressed() {
    let url = start_chat().await;
    // The raw client without the offer: as many bytes on the wire as in the message.
    let mut o = opts(url.clone());
    o.raw = true;
    let r = bounded(fanout::run(&o)).await.unwrap();
    assert_eq!(
        (r.deliveries, r.compressed_subscribers),
        (4000, 0),
        "{}",
        r.summary()
    );
    assert_eq!(r.wire_bytes, r.message_bytes);
    assert_eq!(r.client, "raw");
    assert_eq!(r.compression_ratio, None);
    // Compression negotiated, but 64-byte messages are under the server's threshold.
    let mut o = opts(url);
    o.deflate = true;
    o.size = 64;
    let r = bounded(fanout::run(&o)).await.unwrap();
    assert_eq!(
        (r.deliveries, r.compressed_subscribers),
        (4000, 20),
        "{}",
        r.summary()
    );
    assert_eq!(r.compressed_deliveries, 0);
    assert_eq!(r.wire_bytes_per_delivery, 64.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_negotiate_compression() {
    let url = start_chat().await;
    let mut o = idle::IdleOptions::new(url);
    o.connections = 30;
    o.hold = Duration::from_millis(300);
    o.sample_every = Duration::from_millis(100);
    o.deflate = true;
    let r = bounded(idle::run(&o)).await.unwrap();
    assert_eq!(
        (r.connected, r.compressed_connections),
        (30, 30),
        "{}",
        r.summary()
    );
    assert_eq!(r.open_at_end, 30);
}
