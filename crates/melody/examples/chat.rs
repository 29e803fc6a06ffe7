//! Go melody's chat: every message typed in any open page appears in every open page.
//!
//! ```sh
//! cargo run --release --example chat   # then open the printed URL in two tabs
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`), for HTTP/1.1 and for HTTP/2 with prior
//! knowledge (h2c), whose clients open their WebSockets with an extended CONNECT (RFC 8441),
//! many over one connection. It speaks the subprotocol `chat`: a client offering
//! `x-unknown, chat` gets `chat`, and a client offering none still connects. Pages
//! that offer permessage-deflate (every browser does) get compressed messages, each compressed
//! once however many pages it goes to. Messages may be up to 512 bytes (Go melody's default),
//! or `MAX_MESSAGE_SIZE` bytes (the benchmarks send 4 KiB).

use axum::{
    Router,
    response::Html,
    routing::{any, get},
};
use melody::{Compression, Config, Melody};

/// mimalloc rather than the system allocator: it hands memory back to the system after a
/// wave of connections has closed (glibc keeps it for reuse), and the benchmarks
/// (`bench/compare.sh`) run every server with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Browsers offer permessage-deflate: a message is compressed once for every page.
    let mut config = Config::default()
        .subprotocols(["chat"])
        .compression(Compression::shared());
    // Go melody's 512-byte limit by default; the benchmarks send bigger messages.
    if let Ok(bytes) = std::env::var("MAX_MESSAGE_SIZE") {
        config = config.max_message_size(bytes.parse().expect("MAX_MESSAGE_SIZE: a byte count"));
    }
    let melody = Melody::with_config(config);
    melody.on_text(|session, text| {
        let _ = session.melody().all().send(text);
    });

    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("chat.html")) }))
        // `any`: an HTTP/1.1 handshake is a GET, an HTTP/2 one (RFC 8441) a CONNECT.
        .route("/ws", any(melody.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat: open http://{}/", listener.local_addr()?);
    // `melody::serve`: header timeouts, a cap on unfinished handshakes, TCP_NODELAY.
    melody::serve(listener, app).await
}
