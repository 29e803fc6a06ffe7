//! Go melody's chat: every message typed in any open page appears in every open page.
//!
//! ```sh
//! cargo run --release --example chat   # then open the printed URL in two tabs
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`). It speaks the subprotocol `chat`: a client
//! offering `x-unknown, chat` gets `chat`, and a client offering none still connects.

use axum::{Router, response::Html, routing::get};
use melody::{Config, Melody};

/// mimalloc rather than the system allocator: it hands memory back to the system after a
/// wave of connections has closed (glibc keeps it for reuse), and the benchmarks
/// (`bench/compare.sh`) run every server with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::with_config(Config::default().subprotocols(["chat"]));
    melody.on_text(|session, text| {
        let _ = session.melody().all().send(text);
    });

    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("chat.html")) }))
        .route("/ws", get(melody.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat: open http://{}/", listener.local_addr()?);
    // `melody::serve`: header timeouts, a cap on unfinished handshakes, TCP_NODELAY.
    melody::serve(listener, app).await
}
