//! Rooms joined and left by message: a line protocol over WebSocket text messages, and the
//! server behind the topic-churn benchmark (`melody-bench topic-churn`).
//!
//! ```sh
//! cargo run --release --example rooms
//! ```
//!
//! A client sends one command per text message:
//!
//! | Command             | Effect                                              | Reply                      |
//! |---------------------|-----------------------------------------------------|----------------------------|
//! | `join ROOM`         | joins ROOM                                          | none (`error: …` if refused) |
//! | `leave ROOM`        | leaves ROOM                                         | none                       |
//! | `say ROOM TEXT`     | sends TEXT to everyone in ROOM                      | none                       |
//! | `sync TOKEN`        | nothing; commands run in order, so this acknowledges all before it | `sync TOKEN N` (N: rooms this session is in) |
//! | `count ROOM`        | nothing                                             | `count ROOM N` (N: members) |
//! | `sessions`          | nothing                                             | `sessions N` (N: open sessions) |
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`) and upgrades on every path. A session may be in
//! at most 128 rooms (`Config::max_topics_per_session`); a refused join is answered, not
//! dropped. The frame rate limit is off, as in the other benchmark servers: one benchmark
//! connection sends tens of thousands of commands a second.

use axum::Router;
use melody::{Config, Melody, Session};

/// mimalloc rather than the system allocator, as in every server `bench/compare.sh` runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::with_config(Config::default().frame_rate_limit(0, 0));
    melody.on_text(|session, text| command(session, text.as_str()));

    let app = Router::new().fallback(melody.handler());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("rooms: ws://{}/", listener.local_addr()?);
    melody::serve(listener, app).await
}

/// Runs one command. Handlers run in arrival order per session, so `sync` acknowledges every
/// command sent before it.
fn command(session: &Session, line: &str) {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    // A full queue means the client reads too slowly; its replies are dropped (the session
    // stays), as a chat would drop messages to a stalled reader.
    let reply = |text: String| {
        let _ = session.send(text);
    };
    match verb {
        "join" => {
            if let Err(error) = session.join(rest) {
                reply(format!("error: {error}"));
            }
        }
        "leave" => {
            session.leave(rest);
        }
        "say" => {
            let (room, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = session.melody().topic(room).send(text.to_owned());
        }
        "sync" => reply(format!("sync {rest} {}", session.topics().len())),
        "count" => reply(format!(
            "count {rest} {}",
            session.melody().topic(rest).len()
        )),
        "sessions" => reply(format!("sessions {}", session.melody().all().len())),
        _ => reply(format!("error: unknown command {verb:?}")),
    }
}
