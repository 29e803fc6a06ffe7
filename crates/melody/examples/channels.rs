//! The seed's contrived echo on typed channels (Macaron `sockets`): every JSON message
//! `{"text": "..."}` is echoed back, and the connection is closed with 1000 Normal Closure after
//! a deadline, no matter what.
//!
//! ```sh
//! cargo run --example channels
//! # then, with any WebSocket client:
//! websocat ws://127.0.0.1:5000/    # type {"text":"hi"}
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`); the deadline is `DEADLINE_SECS` seconds
//! (default 1800, the seed's 30 minutes).

use std::time::Duration;

use axum::{Router, routing::get};
use melody::{
    CloseCode,
    channels::{Binding, Channels, seed_config},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    text: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let deadline = std::env::var("DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30 * 60), Duration::from_secs);

    let binding = Binding::json(seed_config(), move |mut ch: Channels<Message>| async move {
        let timer = tokio::time::sleep(deadline);
        tokio::pin!(timer);
        let mut closing = false;
        loop {
            tokio::select! {
                Some(message) = ch.receiver.recv() => {
                    // Here we simply echo the message. In your app, collect the senders of
                    // different clients and do something useful with them.
                    if ch.sender.send(message).await.is_err() {
                        break;
                    }
                }
                () = &mut timer, if !closing => {
                    // Close the connection after the deadline no matter what, to show the
                    // disconnect channel. Any RFC 6455 code will do.
                    closing = true;
                    let _ = ch.disconnect.close(CloseCode::NORMAL_CLOSURE, "deadline reached");
                }
                // The client went away (or our close went through): stop.
                () = ch.done.wait() => break,
                // A message that is not `{"text": ...}`, a timeout…: reported, not fatal.
                Some(error) = ch.errors.recv() => {
                    eprintln!("session {}: {error}", ch.session.id());
                }
            }
        }
    });

    let app = Router::new().route("/", get(binding.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("channels: ws://{local}/ (connect with any WebSocket client)");
    println!("channels: each connection is closed after {deadline:?}");
    melody::serve(listener, app).await
}
