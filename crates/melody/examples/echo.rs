//! An echo server for the Autobahn|Testsuite: every text and binary message comes back unchanged.
//!
//! ```sh
//! cargo run --release --example echo
//! ../shared/tools/autobahn/run ws://127.0.0.1:5000/ --strict
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`) and upgrades on every path, over HTTP/1.1 and
//! over HTTP/2 with prior knowledge (h2c, RFC 8441's extended CONNECT). The message size
//! limit is raised to 16 MiB and the queue to 4096 messages, as the suite's 9.* cases need, and
//! the frame rate limit is off: those cases send a message as 65,536 fragments at once, and the
//! echo benchmarks drive one connection at hundreds of thousands of messages a second.
//! permessage-deflate is on (shared mode) for clients that offer it:
//! `../shared/tools/autobahn/run ws://127.0.0.1:5000/ --cases '12.*,13.*' --strict`.

use axum::Router;
use melody::{Compression, Config, Melody};

/// mimalloc rather than the system allocator: it hands memory back to the system after a
/// wave of connections has closed (glibc keeps it for reuse), and the benchmarks
/// (`bench/compare.sh`) run every server with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = Config::default()
        .max_message_size(16 * 1024 * 1024)
        .message_buffer_size(4096)
        .frame_rate_limit(0, 0)
        // permessage-deflate whenever a client offers it (Autobahn's 12.* and 13.* cases).
        .compression(Compression::shared());
    let melody = Melody::with_config(config);
    // The session handles at most 64 arrived frames before it writes their replies, so the
    // queue never fills here and `write` (which never waits) loses nothing.
    melody.on_text(|session, text| {
        let _ = session.send(text);
    });
    melody.on_binary(|session, bytes| {
        let _ = session.send(melody::Message::binary(bytes));
    });

    let app = Router::new().fallback(melody.handler());

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "echo: ws://{0}/ (page: http://{0}/)",
        listener.local_addr()?
    );
    // `melody::serve`: header timeouts, a cap on unfinished handshakes, TCP_NODELAY.
    melody::serve(listener, app).await
}
